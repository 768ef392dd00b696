// The results journal of a corpus run (ttt-perplexity --journal, --resume):
// one JSON line per finished document and pass, appended and fsync'ed as soon
// as it is scored, so a run killed at any moment (SIGKILL included) loses only the
// documents in flight. The first line names the fingerprint of the model and
// of every option that changes the numbers; each record carries its
// document's name and a hash of its tokens and a checksum of itself, so a
// torn or half-written last line is detected, ignored and cut off.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace ttt {

// 64-bit FNV-1a, as 16 hex digits where text is wanted.
uint64_t fnv1a(const void* data, size_t n, uint64_t h = 1469598103934665603ull);
std::string hex64(uint64_t v);
// The model directory's config.json and model.safetensors bytes.
uint64_t model_fingerprint(const std::string& model_dir);
// What a journal's first line must match: the model and every option that
// changes the numbers (test-time training, its step size, the modes scored
// as "ttt,swa,full", the windows as "ctx=N chunks=K", the storage types on
// the device as "weights=bf16 kv=f16": empty for f32 and f32, so that the
// journals of f32 runs written before storage types keep their fingerprint).
std::string journal_fingerprint(const std::string& model_dir, bool ttt, float inner_lr, const std::string& modes,
                                const std::string& cut = "", const std::string& storage = "");

struct JournalRecord {
  size_t doc = 0;
  std::string mode = "ttt";  // the pass: "ttt", "swa" or "full" (lib/eval/modes.hpp)
  std::string name;
  std::string tokens_hash;
  double seconds = 0;
  std::vector<float> nll;
};

class Journal {
 public:
  // Opens path for appending. resume: reads what is there (a missing file is
  // an empty journal), checks the fingerprint and cuts off a torn last line;
  // otherwise a non-empty existing file is an error (nothing is overwritten).
  Journal(const std::string& path, const std::string& fingerprint, bool resume);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Records read at open, by (document, mode).
  const std::map<std::pair<size_t, std::string>, JournalRecord>& done() const { return done_; }
  // Whether a torn last line was found (and cut off) at open.
  bool had_torn_line() const { return torn_; }
  const std::string& path() const { return path_; }
  // Appends one record and fsyncs it.
  void append(const JournalRecord& r);

 private:
  std::string path_;
  int fd_ = -1;
  bool torn_ = false;
  std::map<std::pair<size_t, std::string>, JournalRecord> done_;
};

std::string tokens_hash(std::span<const int32_t> tokens);

}  // namespace ttt
