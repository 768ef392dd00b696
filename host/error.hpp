// ClError (a ttt::Error for failed OpenCL calls) and the helpers that raise it. Messages name the
// symbolic OpenCL code, the call and whatever context the caller has (kernel,
// device, sizes), e.g. "CL_INVALID_WORK_GROUP_SIZE (-54) in clEnqueueNDRangeKernel: ...".
#pragma once

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#include "ttt/error.hpp"

#include <string>

namespace ttt {
namespace host {

// An OpenCL call failed; code() keeps the raw status.
class ClError : public Error {
 public:
  ClError(cl_int code, const std::string& what) : Error(what), code_(code) {}
  cl_int code() const { return code_; }

 private:
  cl_int code_;
};

// "CL_OUT_OF_RESOURCES" for -5, "CL_UNKNOWN_ERROR" for codes OpenCL does not define.
const char* cl_error_name(cl_int code);

// Throws ClError "NAME (code) in CALL[: context]" when code != CL_SUCCESS.
void check(cl_int code, const char* call, const std::string& context = {});

}  // namespace host
}  // namespace ttt
