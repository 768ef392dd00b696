// KL divergence against a base run, as llama.cpp's llama-perplexity checks a
// port: --kl-divergence-base FILE saves a run's log-probabilities over the
// whole vocabulary for every predicted token; --kl-divergence reads them back
// for the same tokens and compares (mean KLD, Δp of the target token, same top
// token). The file format is described in kld.cpp.
#pragma once

#include "lib/eval/documents.hpp"
#include "ttt/output.hpp"
#include "ttt/report.hpp"

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace ttt {

// The first bytes of every KL-divergence base: an existing file is replaced only when it starts with them.
inline constexpr char kKldMagic[8] = {'T', 'T', 'T', '-', 'K', 'L', 'D', '\n'};
// The same as a check_own_file format (ttt-perplexity --kl-divergence-base).
inline OwnFormat kld_format() {
  return {OwnFormat::magic, std::string(kKldMagic, sizeof kKldMagic), {}, "a KL-divergence base"};
}

// What a base file is of: its vocabulary, the model it came from, and each
// document's token hash and predicted tokens (T - 1 for T tokens).
struct KldHeader {
  uint32_t vocab = 0;
  uint64_t model = 0;  // model_fingerprint of the base's model directory (informative: a port may differ)
  struct Doc {
    uint64_t hash = 0;  // FNV-1a over the document's token ids
    uint64_t predicted = 0;
    std::string name;  // for messages; not stored
  };
  std::vector<Doc> docs;
  uint64_t tokens() const;
};
KldHeader kld_header(const std::vector<Document>& docs, int vocab, uint64_t model);

// One predicted token as the file stores it: log-prob j is
//   lp_j = (max_logit - log_sum_exp) - scale * q[j],
// q quantised to uint16 over at most kKldRange nats below the top token (what
// lies further below is stored at the floor: its probability is under e^-kKldRange
// of the top one's, far below what any KLD figure shows).
constexpr float kKldRange = 24.f;
struct KldRow {
  float max_logit = 0, log_sum_exp = 0, scale = 0;
  uint32_t top = 0;  // index of the largest logit (the lowest on a tie)
  std::vector<uint16_t> q;
  float log_prob(size_t j) const { return (max_logit - log_sum_exp) - scale * float(q[j]); }
};
KldRow quantize_logits(std::span<const float> logits);

// Writes a base file, rows in order: document by document, position by
// position (checked). Published atomically by commit(); an uncommitted one
// (an interrupted run) leaves nothing behind.
class KldWriter {
 public:
  KldWriter(const std::string& path, KldHeader header);
  void row(size_t doc, size_t pos, std::span<const float> logits);
  void commit();

 private:
  std::string path_;
  KldHeader header_;
  AtomicFile file_;
  size_t doc_ = 0, pos_ = 0;
};

// Reads a base file and compares this run's rows with it, token by token.
class KldComparer {
 public:
  // Throws ttt::Error naming path when it is not a base file, or one of other
  // documents, another vocabulary or another token count than `expect`.
  KldComparer(const std::string& path, const KldHeader& expect);
  // Whether the base came from another model directory's bytes (a port check).
  bool other_model() const { return other_model_; }
  // This run's logits of document doc, position pos (predicting target).
  void row(size_t doc, size_t pos, int32_t target, std::span<const float> logits);
  KldSummary summary() const;

 private:
  std::string path_;
  KldHeader header_;
  std::ifstream in_;
  std::vector<uint64_t> first_;  // each document's first row index
  size_t data_ = 0;              // byte offset of the first row
  bool other_model_ = false;
  KldRow base_;
  std::vector<char> buf_;
  double sum_kld_ = 0, sum_kld2_ = 0, sum_dp_ = 0, sum_dp2_ = 0;
  size_t same_top_ = 0;
  std::vector<float> kld_, dp_;
};

}  // namespace ttt
