// Byte documents from text files and their deterministic sampler.
#include "lib/train/data.hpp"

#include "ttt/error.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

namespace ttt::train {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t fnv1a(const void* data, size_t n, uint64_t h) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

ByteCorpus ByteCorpus::load(const std::vector<std::string>& files, int seq_len) {
  ByteCorpus c;
  c.files = files;
  const size_t len = size_t(seq_len) + 1;
  c.fingerprint = fnv1a(&seq_len, sizeof seq_len);
  for (const std::string& path : files) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw Error(fmt::format("{}: cannot read: {}", path, std::strerror(errno)));
    const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (f.bad()) throw Error(fmt::format("{}: read error", path));
    c.bytes += text.size();
    c.fingerprint = fnv1a(text.data(), text.size(), c.fingerprint);
    const uint64_t size = text.size();
    c.fingerprint = fnv1a(&size, sizeof size, c.fingerprint);  // file boundaries count
    for (size_t at = 0; at + len <= text.size(); at += len) {
      std::vector<int32_t> doc(len);
      for (size_t i = 0; i < len; ++i) doc[i] = int32_t(static_cast<unsigned char>(text[at + i]));
      c.docs.push_back(std::move(doc));
    }
  }
  return c;
}

Sampler::Sampler(size_t num_docs, uint64_t seed, uint64_t dealt) : n_(num_docs), seed_(seed), dealt_(dealt) {
  if (n_ == 0) throw Error("Sampler: no documents");
}

void Sampler::shuffle(uint64_t epoch) {
  order_.resize(n_);
  for (size_t i = 0; i < n_; ++i) order_[i] = i;
  uint64_t state = seed_ ^ (0xD1B54A32D192ED03ull * (epoch + 1));
  for (size_t i = n_ - 1; i > 0; --i) {
    const size_t j = size_t(splitmix64(state) % (i + 1));  // modulo bias is irrelevant at corpus sizes
    std::swap(order_[i], order_[j]);
  }
  epoch_ = epoch;
}

size_t Sampler::next() {
  const uint64_t epoch = dealt_ / n_;
  if (epoch != epoch_) shuffle(epoch);
  return order_[size_t(dealt_++ % n_)];
}

}  // namespace ttt::train
