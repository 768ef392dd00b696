// A session file, little-endian as the host writes it:
//   char[8] "TTT-SES\n", uint32 version (2; 1 is still read),
//   uint64 model fingerprint, uint32 ttt, float inner_lr, int32 window, int32 mini_batch, int32 vocab,
//   uint32 weight storage, uint32 key/value storage (0 f32, 1 f16, 2 bf16; version 2 only),
//   int64 mini-batches stepped, int64 test-time steps, int64 position,
//   uint64 n, int32 tokens[n],
//   uint64 blocks L, uint64 ring floats R, L x (float keys[R], float values[R]),
//   uint64 trainable tensors P, P x (uint64 n, float[n]),
//   uint64 FNV-1a of every byte before it.
#include "lib/generate/session_file.hpp"

#include "ttt/error.hpp"
#include "ttt/output.hpp"

#include <fmt/format.h>

#include <cstring>
#include <fstream>
#include <sstream>

namespace ttt {
namespace {

constexpr uint32_t kVersion = 2;

// Storage types as the file numbers them (fixed, whatever the enum's order).
uint32_t storage_code(DType t) { return t == DType::F16 ? 1 : t == DType::BF16 ? 2 : 0; }

uint64_t fnv(const char* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ uint8_t(p[i])) * 1099511628211ull;
  return h;
}

template <class T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

template <class T>
void put_all(std::string& out, const std::vector<T>& v) {
  out.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// Bounds-checked reads over the file's bytes.
struct Reader {
  const std::string& b;
  const std::string& origin;
  size_t at = 0, end = 0;
  void need(size_t n, const char* what) {
    if (n > end - at) throw Error(fmt::format("{}: session file truncated in {}", origin, what));
  }
  template <class T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, b.data() + at, sizeof v);
    at += sizeof v;
    return v;
  }
  template <class T>
  std::vector<T> get_n(uint64_t n, const char* what) {
    if (n > (end - at) / sizeof(T)) throw Error(fmt::format("{}: session file truncated in {}", origin, what));
    std::vector<T> v(n);
    if (n) std::memcpy(v.data(), b.data() + at, n * sizeof(T));
    at += n * sizeof(T);
    return v;
  }
};

}  // namespace

void save_session_file(const std::string& path, const SessionKey& key, const Decoder::Saved& s) {
  std::string out(kSessionMagic, sizeof kSessionMagic);
  put(out, kVersion);
  put(out, key.model);
  put(out, uint32_t(key.ttt));
  put(out, key.inner_lr);
  put(out, key.window);
  put(out, key.mini_batch);
  put(out, key.vocab);
  put(out, storage_code(key.weights));
  put(out, storage_code(key.kv));
  put(out, s.done);
  put(out, s.steps);
  put(out, s.session.position);
  put(out, uint64_t(s.tokens.size()));
  put_all(out, s.tokens);
  put(out, uint64_t(s.session.keys.size()));
  put(out, uint64_t(s.session.keys.empty() ? 0 : s.session.keys[0].size()));
  for (size_t l = 0; l < s.session.keys.size(); ++l) put_all(out, s.session.keys[l]), put_all(out, s.session.values[l]);
  put(out, uint64_t(s.session.prime.size()));
  for (const auto& p : s.session.prime) put(out, uint64_t(p.size())), put_all(out, p);
  put(out, fnv(out.data(), out.size()));
  write_file_atomic(path, out);
}

Decoder::Saved parse_session(const std::string& bytes, const std::string& origin, const SessionKey& expect) {
  if (bytes.size() < sizeof kSessionMagic + 8 || std::memcmp(bytes.data(), kSessionMagic, sizeof kSessionMagic) != 0)
    throw Error(fmt::format("{}: not a session file (no TTT-SES header)", origin));
  const size_t body = bytes.size() - 8;
  uint64_t sum;
  std::memcpy(&sum, bytes.data() + body, sizeof sum);
  if (sum != fnv(bytes.data(), body)) throw Error(fmt::format("{}: session file corrupt (checksum mismatch)", origin));
  Reader r{bytes, origin, sizeof kSessionMagic, body};
  const auto version = r.get<uint32_t>("the header");
  if (version != 1 && version != kVersion)
    throw Error(fmt::format("{}: session file version {}, this build reads 1 to {}", origin, version, kVersion));
  SessionKey k;
  k.model = r.get<uint64_t>("the header");
  k.ttt = r.get<uint32_t>("the header") != 0;
  k.inner_lr = r.get<float>("the header");
  k.window = r.get<int32_t>("the header");
  k.mini_batch = r.get<int32_t>("the header");
  k.vocab = r.get<int32_t>("the header");
  k.weights = expect.weights, k.kv = expect.kv;  // not recorded before version 2
  if (version >= 2) {
    const uint32_t w = r.get<uint32_t>("the header"), kv = r.get<uint32_t>("the header");
    if (w > 2 || kv > 2) throw Error(fmt::format("{}: session file corrupt (storage codes {} and {})", origin, w, kv));
    constexpr DType types[] = {DType::F32, DType::F16, DType::BF16};
    k.weights = types[w];
    k.kv = types[kv];
  }
  if (k.model != expect.model)
    throw Error(fmt::format("{}: a session of another model (its files differ from this model's)", origin));
  auto onoff = [](bool b) { return b ? "on" : "off"; };
  if (k.ttt != expect.ttt || k.inner_lr != expect.inner_lr || k.window != expect.window ||
      k.mini_batch != expect.mini_batch || k.vocab != expect.vocab)
    throw Error(fmt::format("{}: a session with other options (test-time training {}, inner_lr {}, window {}, "
                            "mini-batch {}); this run has test-time training {}, inner_lr {}, window {}, mini-batch {}",
                            origin, onoff(k.ttt), k.inner_lr, k.window, k.mini_batch, onoff(expect.ttt),
                            expect.inner_lr, expect.window, expect.mini_batch));
  if (k.weights != expect.weights || k.kv != expect.kv)
    throw Error(fmt::format("{}: a session run with {} weights and {} keys/values; this run has {} weights and {} "
                            "keys/values (the tools' --weight-dtype and --kv-dtype, Python's weight_dtype and kv_dtype): continuing "
                            "it would mix two storages' numbers",
                            origin, dtype_flag(k.weights), dtype_flag(k.kv), dtype_flag(expect.weights),
                            dtype_flag(expect.kv)));
  Decoder::Saved s;
  s.done = r.get<int64_t>("the header");
  s.steps = r.get<int64_t>("the header");
  s.session.position = r.get<int64_t>("the header");
  s.tokens = r.get_n<int32_t>(r.get<uint64_t>("the tokens"), "the tokens");
  for (size_t i = 0; i < s.tokens.size(); ++i)
    if (s.tokens[i] < 0 || s.tokens[i] >= expect.vocab)
      throw Error(fmt::format("{}: token {} is {}, outside the vocabulary of {}", origin, i, s.tokens[i], expect.vocab));
  const auto blocks = r.get<uint64_t>("the rings"), ring = r.get<uint64_t>("the rings");
  if (blocks > 4096) throw Error(fmt::format("{}: session file corrupt ({} blocks)", origin, blocks));
  for (uint64_t l = 0; l < blocks; ++l) {
    s.session.keys.push_back(r.get_n<float>(ring, "the key rings"));
    s.session.values.push_back(r.get_n<float>(ring, "the value rings"));
  }
  const auto tensors = r.get<uint64_t>("the prime weights");
  if (tensors > 65536) throw Error(fmt::format("{}: session file corrupt ({} trainable tensors)", origin, tensors));
  for (uint64_t i = 0; i < tensors; ++i) s.session.prime.push_back(r.get_n<float>(r.get<uint64_t>("the prime weights"), "the prime weights"));
  if (r.at != body) throw Error(fmt::format("{}: session file corrupt ({} stray bytes)", origin, body - r.at));
  return s;
}

Decoder::Saved load_session_file(const std::string& path, const SessionKey& expect) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  if (!f) throw Error(fmt::format("{}: cannot read the session file", path));
  return parse_session(ss.str(), path, expect);
}

}  // namespace ttt
