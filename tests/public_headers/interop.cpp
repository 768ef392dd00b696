// The interop header (include/ttt/opencl.hpp) compiled as a user would, with
// the real <CL/cl.h>: a caller's own context and queue wrapped in a Runtime
// score a document exactly as a Runtime the library made does, and the
// Runtime hands back the very context and queue it was given.
#include "ttt/engine.hpp"
#include "ttt/error.hpp"
#include "ttt/opencl.hpp"

#include <cstdio>
#include <cstring>

int main() {
  try {
    if (ttt::list_devices().empty()) return 77;  // ctest: skipped
    ttt::Runtime own;                              // the library's own context and queue
    cl_device_id id = ttt::opencl::device(own);
    cl_int err = CL_SUCCESS;
    cl_context ctx = clCreateContext(nullptr, 1, &id, nullptr, nullptr, &err);
    if (err != CL_SUCCESS) throw ttt::Error("clCreateContext failed: " + std::to_string(err));
    cl_command_queue queue = clCreateCommandQueue(ctx, id, 0, &err);
    if (err != CL_SUCCESS) throw ttt::Error("clCreateCommandQueue failed: " + std::to_string(err));
    ttt::Runtime wrapped = ttt::opencl::wrap(ctx, queue);
    // The Runtime holds its own references: the caller's may go now.
    clReleaseCommandQueue(queue);
    clReleaseContext(ctx);
    const bool same_objects = ttt::opencl::context(wrapped) == ctx && ttt::opencl::queue(wrapped) == queue &&
                              ttt::opencl::device(wrapped) == id && wrapped.device().name == own.device().name;

    const ttt::Model m = ttt::Model::random(ttt::preset("tiny"), 5);
    std::vector<int32_t> doc(40);
    for (size_t i = 0; i < doc.size(); ++i) doc[i] = int32_t((i * 7 + 3) % size_t(m.config.vocab_size));
    ttt::Engine a(own, m), b(wrapped, m);
    const std::vector<float> x = a.session().evaluate(doc), y = b.session().evaluate(doc);
    const bool same_nll = x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;

    std::string refused;  // an out-of-order queue is refused, naming why
    cl_command_queue ooo = clCreateCommandQueue(ttt::opencl::context(own), id,
                                                CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE, &err);
    if (err == CL_SUCCESS) {
      try {
        ttt::opencl::wrap(ttt::opencl::context(own), ooo);
      } catch (const ttt::Error& e) {
        refused = e.what();
      }
      clReleaseCommandQueue(ooo);
    } else {
      refused = "out of order";  // the device has no out-of-order queues to refuse
    }
    std::printf("wrapped %s: same objects %d, NLLs identical to an own Runtime's %d, out-of-order queue: %s\n",
                wrapped.device().label().c_str(), same_objects, same_nll, refused.c_str());
    return same_objects && same_nll && refused.find("out of order") != std::string::npos ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "public_headers_opencl: %s\n", e.what());
    return 1;
  }
}
