// Move-only RAII device buffer. Sizes and offsets are in bytes unless a
// method says otherwise; transfers go through the Context's in-order queue.
#pragma once

#include "host/device.hpp"

#include <cstddef>
#include <vector>

namespace ttt::host {

class Buffer {
 public:
  Buffer() = default;
  // Allocates `bytes` (>= 1) on the context's device; `what` names the buffer in errors.
  Buffer(Context& ctx, size_t bytes, const char* what = "buffer");
  ~Buffer();
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  cl_mem get() const { return mem_; }
  size_t bytes() const { return bytes_; }
  explicit operator bool() const { return mem_ != nullptr; }

  // A view of bytes [offset, offset + bytes) as a buffer of its own (an OpenCL
  // sub-buffer sharing this one's memory), for kernels that take no offset.
  // offset must be a multiple of view_align(); the view must not outlive this buffer.
  Buffer view(size_t offset, size_t bytes, const char* what = "view") const;
  // CL_DEVICE_MEM_BASE_ADDR_ALIGN in bytes: what a view's offset must be a multiple of.
  static size_t view_align(const Context& ctx);

  // Host -> device. Non-blocking writes require `src` to stay alive until the queue drains.
  void write(const void* src, size_t bytes, size_t offset = 0, bool blocking = true);
  // Device -> host. Non-blocking reads require `dst` to stay alive until the queue drains.
  void read(void* dst, size_t bytes, size_t offset = 0, bool blocking = true) const;
  // Device -> device.
  void copy_from(const Buffer& src, size_t bytes, size_t src_offset = 0, size_t dst_offset = 0);
  // Fills `bytes` from `offset` with zero bytes.
  void zero(size_t bytes, size_t offset = 0);
  void zero() { zero(bytes_); }
  // Sets `count` floats from float index `first` to `value`.
  void fill(float value, size_t count, size_t first = 0);

  // Typed conveniences (counts in elements of T).
  template <typename T>
  void upload(const std::vector<T>& v) { write(v.data(), v.size() * sizeof(T)); }
  template <typename T>
  std::vector<T> download(size_t count, size_t first = 0) const {
    std::vector<T> v(count);
    if (count) read(v.data(), count * sizeof(T), first * sizeof(T));
    return v;
  }

 private:
  void check_range(size_t bytes, size_t offset, const char* op) const;
  void fill_pattern(const void* pattern, size_t pattern_bytes, size_t bytes, size_t offset);
  Context* ctx_ = nullptr;
  cl_mem mem_ = nullptr;
  size_t bytes_ = 0;
  const char* what_ = "buffer";
};

// A 2-D strided copy of `rows` rows of `row_bytes` (clEnqueueCopyBufferRect).
void copy_rows(Context& ctx, const Buffer& src, size_t src_offset, size_t src_pitch, Buffer& dst,
               size_t dst_offset, size_t dst_pitch, size_t row_bytes, size_t rows);

}  // namespace ttt::host
