/* First on the include path of the public-header test (tests/public_headers):
   a public header other than ttt/opencl.hpp that includes <clblast.h> fails the build here. */
#error "a public header (include/ttt, not ttt/opencl.hpp) included <clblast.h>"
