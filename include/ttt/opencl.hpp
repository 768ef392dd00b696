// OpenCL interop, the one public header that names OpenCL types: run the
// library on a context and queue the caller already has (sharing buffers and
// ordering with its own kernels), or reach the ones a Runtime made.
#pragma once

#include "ttt/device.hpp"

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

namespace ttt::opencl {

// A Runtime on the caller's context and in-order queue of that context; both
// are retained, so the caller may release its own references. Kernel timing
// (profiling) needs the queue created with CL_QUEUE_PROFILING_ENABLE.
Runtime wrap(cl_context context, cl_command_queue queue);

// The Runtime's OpenCL objects; they live as long as the Runtime (retain them to keep them longer).
cl_context context(const Runtime& rt);
cl_command_queue queue(const Runtime& rt);
cl_device_id device(const Runtime& rt);

}  // namespace ttt::opencl
