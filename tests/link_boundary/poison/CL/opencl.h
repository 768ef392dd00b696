/* Put first on the include path of the link-boundary test: any CPU-only layer
   header that pulls in OpenCL fails the build here. */
#error "a CPU-only layer (format, tokenizer, reference, report) included <CL/cl.h>"
