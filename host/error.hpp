// The one error type of ttt-cl and the helpers that raise it. Messages name the
// symbolic OpenCL code, the call and whatever context the caller has (kernel,
// device, sizes), e.g. "CL_INVALID_WORK_GROUP_SIZE (-54) in clEnqueueNDRangeKernel: ...".
#pragma once

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include <stdexcept>
#include <string>

namespace ttt {

// Every failure the library reports is a ttt::Error (or derives from it).
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

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
