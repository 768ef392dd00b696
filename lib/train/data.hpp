// Training data: text files read as bytes (token id = byte value), cut into
// documents of seq_len + 1 tokens, and a deterministic sampler that deals
// them out epoch by epoch in an order fixed by the seed. Its whole state is
// (seed, documents dealt), so a checkpoint resumes it exactly.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace ttt::train {

struct ByteCorpus {
  std::vector<std::string> files;
  std::vector<std::vector<int32_t>> docs;  // each seq_len + 1 tokens
  size_t bytes = 0;                        // read in all
  uint64_t fingerprint = 0;                // FNV-1a over the files' bytes and seq_len

  // Each file cut into consecutive, non-overlapping documents of seq_len + 1
  // bytes; a file's tail shorter than that is left out. Errors (ttt::Error)
  // name a file that cannot be read.
  static ByteCorpus load(const std::vector<std::string>& files, int seq_len);
};

class Sampler {
 public:
  Sampler(size_t num_docs, uint64_t seed, uint64_t dealt = 0);
  // The index of the next document; every document once per epoch, in an
  // order drawn from (seed, epoch) by a portable generator (splitmix64 and
  // Fisher-Yates, not std::shuffle, whose results differ between libraries).
  size_t next();
  uint64_t dealt() const { return dealt_; }

 private:
  void shuffle(uint64_t epoch);
  size_t n_;
  uint64_t seed_, dealt_;
  uint64_t epoch_ = UINT64_MAX;
  std::vector<size_t> order_;
};

uint64_t splitmix64(uint64_t& state);
uint64_t fnv1a(const void* data, size_t n, uint64_t h = 1469598103934665603ull);

}  // namespace ttt::train
