// Device buffers: allocation with size checks against the device limits,
// transfers and copies whose failures name the buffer, the sizes and the device.
#include "host/buffer.hpp"
#include "host/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

namespace ttt::host {

Buffer::Buffer(Context& ctx, size_t bytes, const char* what) : ctx_(&ctx), bytes_(bytes), what_(what) {
  const auto& dev = ctx.device();
  if (bytes == 0) bytes = 1;  // OpenCL rejects empty buffers; callers may legitimately ask for none
  if (bytes > dev.max_alloc)
    throw Error(fmt::format("{} of {:.1f} MiB exceeds the largest allocation of '{}' "
                            "(CL_DEVICE_MAX_MEM_ALLOC_SIZE = {:.1f} MiB)",
                            what, bytes / 1048576.0, dev.name, dev.max_alloc / 1048576.0));
  cl_int err = CL_SUCCESS;
  mem_ = clCreateBuffer(ctx.context(), CL_MEM_READ_WRITE, bytes, nullptr, &err);
  check(err, "clCreateBuffer",
        fmt::format("{} of {} bytes on '{}'", what, bytes, dev.name));
}

size_t Buffer::view_align(const Context& ctx) {
  cl_uint bits = 0;
  check(clGetDeviceInfo(ctx.device().id, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof bits, &bits, nullptr),
        "clGetDeviceInfo", "CL_DEVICE_MEM_BASE_ADDR_ALIGN");
  return std::max<size_t>(bits / 8, 1);
}

Buffer Buffer::view(size_t offset, size_t bytes, const char* what) const {
  check_range(bytes, offset, "view");
  const size_t align = view_align(*ctx_);
  if (offset % align)
    throw Error(fmt::format("view of {} at byte {}: not a multiple of the device's base address alignment ({} bytes)",
                            what_, offset, align));
  cl_buffer_region region{offset, std::max<size_t>(bytes, 1)};
  cl_int err = CL_SUCCESS;
  Buffer b;
  b.ctx_ = ctx_;
  b.bytes_ = bytes;
  b.what_ = what;
  b.mem_ = clCreateSubBuffer(mem_, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &region, &err);
  check(err, "clCreateSubBuffer", fmt::format("{} of {} bytes at {} in {}", what, bytes, offset, what_));
  return b;
}

Buffer::~Buffer() {
  if (mem_) clReleaseMemObject(mem_);
}

Buffer::Buffer(Buffer&& o) noexcept
    : ctx_(o.ctx_), mem_(std::exchange(o.mem_, nullptr)), bytes_(std::exchange(o.bytes_, 0)), what_(o.what_) {}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    if (mem_) clReleaseMemObject(mem_);
    ctx_ = o.ctx_;
    mem_ = std::exchange(o.mem_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
    what_ = o.what_;
  }
  return *this;
}

void Buffer::check_range(size_t bytes, size_t offset, const char* op) const {
  if (!mem_) throw Error(fmt::format("{} on an empty {}", op, what_));
  if (offset > bytes_ || bytes > bytes_ - offset)
    throw Error(fmt::format("{} of {} bytes at offset {} overruns {} of {} bytes", op, bytes, offset,
                            what_, bytes_));
}

void Buffer::write(const void* src, size_t bytes, size_t offset, bool blocking) {
  if (bytes == 0) return;
  check_range(bytes, offset, "write");
  check(clEnqueueWriteBuffer(ctx_->queue(), mem_, blocking ? CL_TRUE : CL_FALSE, offset, bytes, src, 0,
                             nullptr, nullptr),
        "clEnqueueWriteBuffer", fmt::format("{} ({} bytes at {}) on '{}'", what_, bytes, offset, ctx_->device().name));
}

void Buffer::read(void* dst, size_t bytes, size_t offset, bool blocking) const {
  if (bytes == 0) return;
  check_range(bytes, offset, "read");
  check(clEnqueueReadBuffer(ctx_->queue(), mem_, blocking ? CL_TRUE : CL_FALSE, offset, bytes, dst, 0, nullptr, nullptr),
        "clEnqueueReadBuffer", fmt::format("{} ({} bytes at {}) on '{}'", what_, bytes, offset, ctx_->device().name));
}

void Buffer::copy_from(const Buffer& src, size_t bytes, size_t src_offset, size_t dst_offset) {
  if (bytes == 0) return;
  src.check_range(bytes, src_offset, "copy");
  check_range(bytes, dst_offset, "copy");
  check(clEnqueueCopyBuffer(ctx_->queue(), src.mem_, mem_, src_offset, dst_offset, bytes, 0, nullptr, nullptr),
        "clEnqueueCopyBuffer", fmt::format("{} -> {} ({} bytes) on '{}'", src.what_, what_, bytes, ctx_->device().name));
}

void Buffer::zero(size_t bytes, size_t offset) {
  const cl_uchar pattern = 0;
  fill_pattern(&pattern, 1, bytes, offset);
}

void Buffer::fill(float value, size_t count, size_t first) {
  fill_pattern(&value, sizeof value, count * sizeof(float), first * sizeof(float));
}

void Buffer::fill_pattern(const void* pattern, size_t pattern_bytes, size_t bytes, size_t offset) {
  if (bytes == 0) return;
  check_range(bytes, offset, "fill");
  if (bytes % pattern_bytes || offset % pattern_bytes)
    throw Error(fmt::format("fill of {}: {} bytes at {} is not a whole number of {}-byte patterns", what_, bytes,
                            offset, pattern_bytes));
  check(clEnqueueFillBuffer(ctx_->queue(), mem_, pattern, pattern_bytes, offset, bytes, 0, nullptr, nullptr),
        "clEnqueueFillBuffer", fmt::format("{} ({} bytes) on '{}'", what_, bytes, ctx_->device().name));
}

void copy_rows(Context& ctx, const Buffer& src, size_t src_offset, size_t src_pitch, Buffer& dst,
               size_t dst_offset, size_t dst_pitch, size_t row_bytes, size_t rows) {
  if (rows == 0 || row_bytes == 0) return;
  const size_t src_end = src_offset + (rows - 1) * src_pitch + row_bytes;
  const size_t dst_end = dst_offset + (rows - 1) * dst_pitch + row_bytes;
  if (src_end > src.bytes() || dst_end > dst.bytes())
    throw Error(fmt::format("copy_rows of {} rows x {} bytes overruns a buffer ({} > {} or {} > {})", rows,
                            row_bytes, src_end, src.bytes(), dst_end, dst.bytes()));
  const size_t so[3] = {src_offset, 0, 0}, dso[3] = {dst_offset, 0, 0}, region[3] = {row_bytes, rows, 1};
  check(clEnqueueCopyBufferRect(ctx.queue(), src.get(), dst.get(), so, dso, region, src_pitch, 0, dst_pitch, 0,
                                0, nullptr, nullptr),
        "clEnqueueCopyBufferRect",
        fmt::format("{} rows x {} bytes on '{}'", rows, row_bytes, ctx.device().name));
}

}  // namespace ttt::host
