// safetensors reading (memory-mapped, fully validated) and writing. Every
// error names the file and, where there is one, the tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace ttt {

enum class DType { F32, F16, BF16 };
const char* dtype_name(DType t);  // "F32", "F16", "BF16", as safetensors headers spell it
const char* dtype_flag(DType t);  // "f32", "f16", "bf16", as the tools' flags spell it
size_t dtype_size(DType t);
DType parse_dtype(const std::string& s, const std::string& what);  // "f32"/"F32"/... ; throws naming `what`

struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // inside the mapping
  size_t bytes = 0;
  int64_t numel() const;
  std::string shape_str() const;  // "[768, 1664]"
};

class SafeTensors {
 public:
  // Maps `path` and validates the header: length, JSON, dtypes, shapes and
  // data offsets (inside the file, matching the shape, not overlapping).
  explicit SafeTensors(const std::string& path);
  ~SafeTensors();
  SafeTensors(const SafeTensors&) = delete;
  SafeTensors& operator=(const SafeTensors&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find(const std::string& name) const;
  // The tensor converted to float32, or an Error naming it if it is absent.
  std::vector<float> to_f32(const std::string& name) const;
  static std::vector<float> to_f32(const TensorView& t);
  // Drops the pages of t's data from this process's memory (they are read
  // from the file again if touched): mapped pages count in the resident set.
  void release(const TensorView& t) const;

 private:
  std::string path_;
  void* map_ = nullptr;
  size_t size_ = 0;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t> index_;
};

struct TensorOut {
  std::string name;
  std::vector<int64_t> shape;
  const float* data;  // numel floats
};

// Writes tensors converted to `dtype`, in the given order (atomically: a
// temporary file renamed over `path`).
void write_safetensors(const std::string& path, const std::vector<TensorOut>& tensors, DType dtype);

// Scalar conversions, exposed for tests.
float f16_to_f32(uint16_t h);
float bf16_to_f32(uint16_t b);
uint16_t f32_to_f16(float f);   // round to nearest even
uint16_t f32_to_bf16(float f);  // round to nearest even

}  // namespace ttt
