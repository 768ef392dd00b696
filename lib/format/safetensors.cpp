// safetensors: mmap-based reader with header validation, dtype conversion,
// and an atomic writer.
#include "ttt/safetensors.hpp"
#include "ttt/output.hpp"

#include "ttt/error.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace ttt {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
  }
  return "?";
}

const char* dtype_flag(DType t) { return t == DType::F32 ? "f32" : t == DType::F16 ? "f16" : "bf16"; }

size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }

DType parse_dtype(const std::string& s, const std::string& what) {
  std::string u = s;
  std::transform(u.begin(), u.end(), u.begin(), ::toupper);
  if (u == "F32") return DType::F32;
  if (u == "F16") return DType::F16;
  if (u == "BF16") return DType::BF16;
  throw Error(fmt::format("{}: unknown dtype '{}' (supported: F32, F16, BF16)", what, s));
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::string TensorView::shape_str() const { return fmt::format("[{}]", fmt::join(shape, ", ")); }

float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ffu, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while (!(mant & 0x400u)) {
        mant <<= 1;
        --exp;
      }
      bits = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float bf16_to_f32(uint16_t b) {
  const uint32_t bits = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t f32_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40);  // quiet NaN
  x += 0x7fffu + ((x >> 16) & 1);
  return uint16_t(x >> 16);
}

uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) return uint16_t(sign | 0x7e00u);  // NaN
  if (x >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // overflow (rounds to) inf
  if (x < 0x38800000u) {  // subnormal or zero in f16
    if (x < 0x33000000u) return uint16_t(sign);
    // |f| = m * 2^(e-150) with a 24-bit m; in units of the f16 subnormal step 2^-24 that is m >> (126 - e).
    const uint32_t e = x >> 23, m = (x & 0x7fffffu) | 0x800000u;
    const uint32_t drop = 126 - e;  // 14..24 here
    uint32_t v = m >> drop;
    const uint32_t rem = m & ((1u << drop) - 1), half = 1u << (drop - 1);
    if (rem > half || (rem == half && (v & 1))) ++v;
    return uint16_t(sign | v);
  }
  uint32_t v = ((x >> 13) - ((127 - 15) << 10));
  const uint32_t rem = x & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (v & 1))) ++v;
  return uint16_t(sign | v);
}

// ---------------------------------------------------------------------------

SafeTensors::SafeTensors(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw Error(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw Error(fmt::format("{}: cannot stat: {}", path, std::strerror(errno)));
  }
  size_ = size_t(st.st_size);
  if (size_ < 8) {
    ::close(fd);
    throw Error(fmt::format("{}: truncated: {} bytes, shorter than the 8-byte header length", path, size_));
  }
  map_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    throw Error(fmt::format("{}: cannot mmap: {}", path, std::strerror(errno)));
  }
  try {
    const auto* base = static_cast<const uint8_t*>(map_);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | base[i];
    if (hlen > size_ - 8)
      throw Error(fmt::format("{}: header length {} runs past the end of the file ({} bytes): truncated or not "
                              "safetensors",
                              path, hlen, size_));
    nlohmann::json header;
    try {
      header = nlohmann::json::parse(base + 8, base + 8 + hlen);
    } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for a number like 1E999
      throw Error(fmt::format("{}: header is not valid JSON: {}", path, e.what()));
    }
    if (!header.is_object()) throw Error(fmt::format("{}: header is not a JSON object", path));
    const uint8_t* data = base + 8 + hlen;
    const size_t data_size = size_ - 8 - hlen;
    for (auto& [name, v] : header.items()) {
      if (name == "__metadata__") continue;
      const std::string what = fmt::format("{}: tensor '{}'", path, name);
      if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
        throw Error(what + ": entry needs dtype, shape and data_offsets");
      if (!v["dtype"].is_string()) throw Error(what + ": dtype is not a string");
      TensorView t;
      t.name = name;
      t.dtype = parse_dtype(v["dtype"].get<std::string>(), what);
      if (!v["shape"].is_array()) throw Error(what + ": shape is not an array");
      for (auto& d : v["shape"]) {
        if (!d.is_number_unsigned() || d.get<uint64_t>() > (1ull << 40))
          throw Error(fmt::format("{}: bad shape {}", what, v["shape"].dump()));
        t.shape.push_back(d.get<int64_t>());
      }
      const auto& off = v["data_offsets"];
      if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
        throw Error(fmt::format("{}: data_offsets must be two non-negative integers, got {}", what, off.dump()));
      const uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
      if (b > e || e > data_size)
        throw Error(fmt::format("{}: data_offsets [{}, {}] lie outside the {} data bytes of the file", what, b, e,
                                data_size));
      if (e - b != uint64_t(t.numel()) * dtype_size(t.dtype))
        throw Error(fmt::format("{}: data_offsets [{}, {}] hold {} bytes but shape {} of {} needs {}", what, b, e,
                                e - b, t.shape_str(), dtype_name(t.dtype), t.numel() * dtype_size(t.dtype)));
      t.data = data + b;
      t.bytes = size_t(e - b);
      index_[name] = tensors_.size();
      tensors_.push_back(std::move(t));
    }
    // Overlap check over the non-empty ranges, sorted by start.
    std::vector<const TensorView*> by_start;
    for (auto& t : tensors_)
      if (t.bytes) by_start.push_back(&t);
    std::sort(by_start.begin(), by_start.end(), [](auto* a, auto* b) { return a->data < b->data; });
    for (size_t i = 1; i < by_start.size(); ++i)
      if (by_start[i]->data < by_start[i - 1]->data + by_start[i - 1]->bytes)
        throw Error(fmt::format("{}: tensors '{}' and '{}' have overlapping data_offsets", path,
                                by_start[i - 1]->name, by_start[i]->name));
  } catch (...) {
    ::munmap(map_, size_);
    map_ = nullptr;
    throw;
  }
}

SafeTensors::~SafeTensors() {
  if (map_) ::munmap(map_, size_);
}

const TensorView* SafeTensors::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::vector<float> SafeTensors::to_f32(const std::string& name) const {
  const TensorView* t = find(name);
  if (!t) throw Error(fmt::format("{}: missing tensor '{}'", path_, name));
  return to_f32(*t);
}

void SafeTensors::release(const TensorView& t) const {
  if (!map_ || !t.bytes) return;
  const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = uintptr_t(t.data) & ~(page - 1), end = uintptr_t(t.data) + t.bytes;
  ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);  // advice: a failure changes nothing
}

std::vector<float> SafeTensors::to_f32(const TensorView& t) {
  const size_t n = size_t(t.numel());
  std::vector<float> out(n);
  switch (t.dtype) {
    case DType::F32:
      if (n) std::memcpy(out.data(), t.data, n * 4);  // an empty vector's data() may be null
      break;
    case DType::F16:
    case DType::BF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, t.data + 2 * i, 2);
        out[i] = t.dtype == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
      }
      break;
  }
  return out;
}

void write_safetensors(const std::string& path, const std::vector<TensorOut>& tensors, DType dtype) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  header["__metadata__"] = {{"format", "pt"}, {"producer", "ttt-cl"}};
  size_t offset = 0;
  for (const auto& t : tensors) {
    int64_t n = 1;
    for (auto d : t.shape) n *= d;
    const size_t bytes = size_t(n) * dtype_size(dtype);
    header[t.name] = {{"dtype", dtype_name(dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string h = header.dump();
  while (h.size() % 8) h.push_back(' ');  // keep the data 8-byte aligned, as other writers do
  AtomicFile f(path);  // an interrupted write leaves the old file or none, never half a model
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(h.size()) >> (8 * i));
  f.write(len, 8);
  f.write(h);
  std::vector<uint8_t> buf;
  for (const auto& t : tensors) {
    int64_t n = 1;
    for (auto d : t.shape) n *= d;
    if (dtype == DType::F32) {
      f.write(t.data, size_t(n) * 4);
    } else {
      buf.resize(size_t(n) * 2);
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t v = dtype == DType::F16 ? f32_to_f16(t.data[i]) : f32_to_bf16(t.data[i]);
        std::memcpy(&buf[size_t(i) * 2], &v, 2);
      }
      f.write(buf.data(), buf.size());
    }
  }
  f.commit();
}

}  // namespace ttt
