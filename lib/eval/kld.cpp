// KL-divergence base files and the comparison against one. A base file holds,
// little-endian as the host writes it:
//   char[8]  "TTT-KLD\n"
//   uint32   version (1)
//   uint32   vocab V
//   uint64   model fingerprint (config.json + model.safetensors, as the journal's)
//   uint64   documents N
//   uint64   predicted tokens in all (sum of the counts below)
//   N x { uint64 FNV-1a of the document's token ids, uint64 predicted tokens }
//   then per predicted token, documents in order: float max_logit,
//   float log_sum_exp, float scale, uint32 top, uint16 q[V] (see KldRow).
// So a row is 16 + 2V bytes, and any token's row is found by its index.
#include "lib/eval/kld.hpp"

#include "lib/eval/journal.hpp"
#include "ttt/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

namespace ttt {
namespace {

constexpr uint32_t kVersion = 1;
constexpr size_t kRowHead = 16;

size_t row_bytes(uint32_t vocab) { return kRowHead + 2 * size_t(vocab); }

template <class T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

template <class T>
T take(const char*& p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  p += sizeof v;
  return v;
}

// Linear interpolation between the closest ranks of sorted v; p in [0, 1].
double percentile(const std::vector<float>& v, double p) {
  if (v.empty()) return 0;
  const double x = p * double(v.size() - 1);
  const size_t i = size_t(x);
  const double f = x - double(i);
  return i + 1 < v.size() ? double(v[i]) * (1 - f) + double(v[i + 1]) * f : double(v[i]);
}

std::vector<std::pair<std::string, double>> percentiles(std::vector<float> v, const std::vector<double>& at) {
  std::sort(v.begin(), v.end());
  std::vector<std::pair<std::string, double>> out;
  for (double p : at) {
    const std::string name = p == 1 ? "max" : p == 0 ? "min" : p == 0.5 ? "median" : fmt::format("{:g}%", p * 100);
    out.emplace_back(name, percentile(v, p));
  }
  return out;
}

}  // namespace

uint64_t KldHeader::tokens() const {
  uint64_t n = 0;
  for (const Doc& d : docs) n += d.predicted;
  return n;
}

KldHeader kld_header(const std::vector<Document>& docs, int vocab, uint64_t model) {
  KldHeader h;
  h.vocab = uint32_t(vocab);
  h.model = model;
  for (const Document& d : docs)
    h.docs.push_back({fnv1a(d.tokens.data(), d.tokens.size() * sizeof(int32_t)), d.tokens.size() - 1, d.name});
  return h;
}

KldRow quantize_logits(std::span<const float> logits) {
  KldRow r;
  const size_t V = logits.size();
  float lo = logits[0];
  r.max_logit = logits[0];
  for (size_t j = 1; j < V; ++j) {
    if (logits[j] > r.max_logit) r.max_logit = logits[j], r.top = uint32_t(j);
    lo = std::min(lo, logits[j]);
  }
  double sum = 0;
  for (float x : logits) sum += std::exp(double(x) - double(r.max_logit));
  r.log_sum_exp = float(double(r.max_logit) + std::log(sum));
  const float range = std::min(r.max_logit - lo, kKldRange);
  r.scale = range / 65535.f;
  r.q.resize(V);
  for (size_t j = 0; j < V; ++j) {
    const float below = r.max_logit - logits[j];  // lp_top - lp_j
    r.q[j] = r.scale > 0 ? uint16_t(std::min(65535.f, std::nearbyint(below / r.scale))) : 0;
  }
  return r;
}

KldWriter::KldWriter(const std::string& path, KldHeader header)
    : path_(path), header_(std::move(header)), file_(path) {
  std::string head(kKldMagic, sizeof kKldMagic);
  put(head, kVersion);
  put(head, header_.vocab);
  put(head, header_.model);
  put(head, uint64_t(header_.docs.size()));
  put(head, header_.tokens());
  for (const auto& d : header_.docs) put(head, d.hash), put(head, d.predicted);
  file_.write(head);
  while (doc_ < header_.docs.size() && header_.docs[doc_].predicted == 0) ++doc_;
}

void KldWriter::row(size_t doc, size_t pos, std::span<const float> logits) {
  if (doc != doc_ || pos != pos_ || doc >= header_.docs.size() || logits.size() != header_.vocab)
    throw Error(fmt::format("{}: KL-divergence base rows out of order: document {} position {} ({} logits), expected "
                            "document {} position {} ({})",
                            path_, doc, pos, logits.size(), doc_, pos_, header_.vocab));
  const KldRow r = quantize_logits(logits);
  std::string out;
  out.reserve(row_bytes(header_.vocab));
  put(out, r.max_logit);
  put(out, r.log_sum_exp);
  put(out, r.scale);
  put(out, r.top);
  out.append(reinterpret_cast<const char*>(r.q.data()), r.q.size() * sizeof(uint16_t));
  file_.write(out);
  if (++pos_ == header_.docs[doc_].predicted) {
    pos_ = 0;
    ++doc_;
    while (doc_ < header_.docs.size() && header_.docs[doc_].predicted == 0) ++doc_;
  }
}

void KldWriter::commit() {
  if (doc_ != header_.docs.size())
    throw Error(fmt::format("{}: KL-divergence base incomplete (document {} of {})", path_, doc_, header_.docs.size()));
  file_.commit();
}

KldComparer::KldComparer(const std::string& path, const KldHeader& expect) : path_(path), header_(expect) {
  in_.open(path, std::ios::binary);
  if (!in_) throw Error(fmt::format("{}: cannot read the KL-divergence base", path));
  auto fail = [&](const std::string& why) {
    return Error(fmt::format("{}: {}; make a base for this run first (a run that writes the base, not one that compares)",
                             path, why),
                 "kl-divergence-base");
  };
  char fixed[40];
  if (!in_.read(fixed, sizeof fixed) || std::memcmp(fixed, kKldMagic, sizeof kKldMagic) != 0)
    throw fail("not a KL-divergence base (no TTT-KLD header)");
  const char* p = fixed + sizeof kKldMagic;
  const auto version = take<uint32_t>(p);
  const auto vocab = take<uint32_t>(p);
  const auto model = take<uint64_t>(p);
  const auto docs = take<uint64_t>(p);
  const auto tokens = take<uint64_t>(p);
  if (version != kVersion) throw fail(fmt::format("KL-divergence base version {}, this build reads {}", version, kVersion));
  if (vocab != expect.vocab)
    throw fail(fmt::format("base of a vocabulary of {} tokens, this model has {}", vocab, expect.vocab));
  if (docs != expect.docs.size())
    throw fail(fmt::format("base of {} document(s), this run has {}", docs, expect.docs.size()));
  if (tokens != expect.tokens())
    throw fail(fmt::format("base of {} predicted tokens, this run predicts {}", tokens, expect.tokens()));
  std::vector<char> table(size_t(docs) * 16);
  if (!in_.read(table.data(), std::streamsize(table.size()))) throw fail("truncated document table");
  p = table.data();
  uint64_t first = 0;
  for (size_t i = 0; i < docs; ++i) {
    const auto hash = take<uint64_t>(p);
    const auto predicted = take<uint64_t>(p);
    const auto& d = expect.docs[i];
    if (hash != d.hash || predicted != d.predicted)
      throw fail(fmt::format("document {} ({}) has other tokens than the base's ({} predicted there, {} here)", i,
                             d.name, predicted, d.predicted));
    first_.push_back(first);
    first += predicted;
  }
  data_ = sizeof fixed + table.size();
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  const uint64_t want = data_ + tokens * row_bytes(vocab);
  if (ec || size != want) throw fail(fmt::format("{} bytes, a base of this header has {}", size, want));
  other_model_ = model != expect.model;
  buf_.resize(row_bytes(vocab));
  base_.q.resize(vocab);
}

void KldComparer::row(size_t doc, size_t pos, int32_t target, std::span<const float> logits) {
  if (doc >= header_.docs.size() || pos >= header_.docs[doc].predicted || logits.size() != header_.vocab ||
      target < 0 || uint32_t(target) >= header_.vocab)
    throw Error(fmt::format("{}: no base row for document {} position {}", path_, doc, pos));
  in_.seekg(std::streamoff(data_ + (first_[doc] + pos) * buf_.size()));
  if (!in_.read(buf_.data(), std::streamsize(buf_.size())))
    throw Error(fmt::format("{}: cannot read the base row of document {} position {}", path_, doc, pos));
  const char* p = buf_.data();
  base_.max_logit = take<float>(p);
  base_.log_sum_exp = take<float>(p);
  base_.scale = take<float>(p);
  base_.top = take<uint32_t>(p);
  std::memcpy(base_.q.data(), p, base_.q.size() * sizeof(uint16_t));
  // This run is seen at the file's resolution too, so a run against its own base gives exactly 0.
  const KldRow cur = quantize_logits(logits);
  double kld = 0;
  for (size_t j = 0; j < base_.q.size(); ++j) {
    const double lb = base_.log_prob(j);
    kld += std::exp(lb) * (lb - double(cur.log_prob(j)));
  }
  const double dp = std::exp(double(cur.log_prob(size_t(target)))) - std::exp(double(base_.log_prob(size_t(target))));
  sum_kld_ += kld, sum_kld2_ += kld * kld;
  sum_dp_ += dp, sum_dp2_ += dp * dp;
  same_top_ += cur.top == base_.top;
  kld_.push_back(float(kld));
  dp_.push_back(float(dp));
}

KldSummary KldComparer::summary() const {
  KldSummary s;
  s.base = path_;
  s.other_model = other_model_;
  const size_t n = kld_.size();
  s.count = n;
  if (n == 0) return s;
  auto err = [n](double sum, double sum2) {
    const double m = sum / double(n), v = sum2 / double(n) - m * m;
    return n > 1 && v > 0 ? std::sqrt(v / double(n - 1)) : 0.0;
  };
  s.kld_mean = sum_kld_ / double(n);
  s.kld_err = err(sum_kld_, sum_kld2_);
  s.dp_mean = sum_dp_ / double(n);
  s.dp_err = err(sum_dp_, sum_dp2_);
  s.dp_rms = std::sqrt(sum_dp2_ / double(n));
  s.same_top = double(same_top_) / double(n);
  s.same_top_err = n > 1 ? std::sqrt(s.same_top * (1 - s.same_top) / double(n - 1)) : 0.0;
  s.kld_percentiles = percentiles(kld_, {1, 0.999, 0.99, 0.95, 0.9, 0.5, 0.1, 0.05, 0.01, 0});
  s.dp_percentiles = percentiles(dp_, {1, 0.999, 0.99, 0.95, 0.9, 0.75, 0.5, 0.25, 0.1, 0.05, 0.01, 0.001, 0});
  return s;
}

}  // namespace ttt
