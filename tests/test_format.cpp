// The model format contract: config.json validation, safetensors validation
// (every malformed file is an Error naming the file and the tensor or key,
// never a crash), dtype conversions, save/load round trips, token files.
#include "ttt/error.hpp"
#include "ttt/model.hpp"
#include "ttt/params.hpp"
#include "ttt/token_io.hpp"
#include "tests/common.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace ttt::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// A scratch model directory holding a copy of the tiny golden model.
class FormatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ttt_format_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    fs::copy_file(golden_dir("tiny") + "/config.json", dir_ / "config.json");
    fs::copy_file(golden_dir("tiny") + "/model.safetensors", dir_ / "model.safetensors");
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string file(const char* name) const { return (dir_ / name).string(); }
  std::string read(const char* name) const {
    std::ifstream f(file(name), std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  }
  void write(const char* name, const std::string& s) const { std::ofstream(file(name), std::ios::binary) << s; }
  json config() const { return json::parse(read("config.json")); }
  void set_config(const json& j) const { write("config.json", j.dump()); }

  // Splits model.safetensors into its header and data; rebuild() writes them back.
  json header() const {
    const std::string s = read("model.safetensors");
    uint64_t n;
    std::memcpy(&n, s.data(), 8);
    return json::parse(s.substr(8, n));
  }
  std::string data() const {
    const std::string s = read("model.safetensors");
    uint64_t n;
    std::memcpy(&n, s.data(), 8);
    return s.substr(8 + n);
  }
  void rebuild(const json& h, const std::string& d) const {
    const std::string hs = h.dump();
    std::string out(8, '\0');
    const uint64_t n = hs.size();
    std::memcpy(out.data(), &n, 8);
    write("model.safetensors", out + hs + d);
  }
  // The message of the Error that loading throws ("" if it loads).
  std::string load_error() const {
    try {
      Model::load(dir_.string());
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }
  fs::path dir_;
};

#define EXPECT_ERROR_HAS(msg, ...)                                                              \
  do {                                                                                          \
    const std::string m_ = (msg);                                                               \
    EXPECT_FALSE(m_.empty()) << "expected an error";                                            \
    for (const char* part : {__VA_ARGS__}) EXPECT_NE(m_.find(part), std::string::npos) << m_;   \
  } while (0)

TEST_F(FormatTest, LoadsTheGoldenModel) { EXPECT_EQ(load_error(), ""); }

TEST_F(FormatTest, TruncatedFile) {
  write("model.safetensors", read("model.safetensors").substr(0, 5));
  EXPECT_ERROR_HAS(load_error(), "model.safetensors", "truncated");
}

TEST_F(FormatTest, TruncatedData) {
  const std::string s = read("model.safetensors");
  write("model.safetensors", s.substr(0, s.size() - 100));
  EXPECT_ERROR_HAS(load_error(), "model.safetensors", "outside");
}

TEST_F(FormatTest, HeaderLengthPastEndOfFile) {
  std::string s = read("model.safetensors");
  const uint64_t n = s.size() + 1;
  std::memcpy(s.data(), &n, 8);
  write("model.safetensors", s);
  EXPECT_ERROR_HAS(load_error(), "model.safetensors", "header length");
}

TEST_F(FormatTest, BadHeaderJson) {
  std::string s = read("model.safetensors");
  s[9] = '#';
  write("model.safetensors", s);
  EXPECT_ERROR_HAS(load_error(), "model.safetensors", "JSON");
}

TEST_F(FormatTest, WrongShape) {
  auto h = header();
  h["blocks.1.attn.wq"]["shape"] = {16, 64};  // same byte count, wrong shape
  rebuild(h, data());
  EXPECT_ERROR_HAS(load_error(), "blocks.1.attn.wq", "[16, 64]", "[32, 32]");
}

TEST_F(FormatTest, MissingTensor) {
  auto h = header();
  h.erase("blocks.2.prime.w3");
  rebuild(h, data());
  EXPECT_ERROR_HAS(load_error(), "missing tensor", "blocks.2.prime.w3");
}

TEST_F(FormatTest, UnknownDtype) {
  auto h = header();
  h["ln_f"]["dtype"] = "F8_E4M3";
  rebuild(h, data());
  EXPECT_ERROR_HAS(load_error(), "ln_f", "unknown dtype", "F8_E4M3");
}

TEST_F(FormatTest, OverlappingOffsets) {
  auto h = header();
  auto a = h["blocks.0.attn.wq"]["data_offsets"];
  h["blocks.0.attn.wk"]["data_offsets"] = a;  // same size, same place
  rebuild(h, data());
  EXPECT_ERROR_HAS(load_error(), "overlapping", "blocks.0.attn.w");
}

TEST_F(FormatTest, OutOfFileOffsets) {
  auto h = header();
  const size_t n = data().size();
  h["ln_f"]["data_offsets"] = {n, n + 128};
  rebuild(h, data());
  EXPECT_ERROR_HAS(load_error(), "ln_f", "outside");
}

TEST_F(FormatTest, OffsetsDisagreeWithShape) {
  auto h = header();
  h["ln_f"]["data_offsets"][1] = h["ln_f"]["data_offsets"][1].get<size_t>() - 4;
  rebuild(h, data());
  EXPECT_ERROR_HAS(load_error(), "ln_f", "needs");
}

TEST_F(FormatTest, NonFiniteWeight) {
  auto h = header();
  std::string d = data();
  const size_t at = h["ln_f"]["data_offsets"][0].get<size_t>() + 8;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(d.data() + at, &nan, 4);
  rebuild(h, d);
  EXPECT_ERROR_HAS(load_error(), "ln_f", "non-finite");
}

TEST_F(FormatTest, ExtraTensorIsAWarning) {
  auto h = header();
  h["unused.bias"] = {{"dtype", "F32"}, {"shape", json::array({0})}, {"data_offsets", {0, 0}}};
  rebuild(h, data());
  Model m = Model::load(dir_.string());
  ASSERT_EQ(m.warnings.size(), 1u);
  EXPECT_NE(m.warnings[0].find("unused.bias"), std::string::npos);
}

TEST_F(FormatTest, MissingFiles) {
  fs::remove(file("model.safetensors"));
  EXPECT_ERROR_HAS(load_error(), "model.safetensors", "missing");
  fs::remove(file("config.json"));
  EXPECT_ERROR_HAS(load_error(), "config.json");
}

TEST_F(FormatTest, ConfigBadJson) {
  write("config.json", "{\"format\": \"ttt-e2e\",");
  EXPECT_ERROR_HAS(load_error(), "config.json", "invalid JSON");
}

TEST_F(FormatTest, ConfigEveryKeyIsRequired) {
  for (const char* key : {"format", "format_version", "vocab_size", "hidden_size", "num_hidden_layers",
                          "num_attention_heads", "intermediate_size", "rms_norm_eps", "rope_theta",
                          "tie_word_embeddings", "qk_norm", "pre_norm", "post_norm", "sliding_window_size",
                          "mini_batch_size", "suffix_len", "prime", "inner_lr", "inner_clip_gradient", "bos_token_id",
                          "eos_token_id"}) {
    SetUp();
    auto j = config();
    j.erase(key);
    set_config(j);
    EXPECT_ERROR_HAS(load_error(), "config.json", "missing key", key);
  }
}

TEST_F(FormatTest, ConfigImpossibleValues) {
  const std::vector<std::pair<json, const char*>> cases = {
      {{{"num_attention_heads", 3}}, "num_attention_heads"},  // 32 % 3
      {{{"num_attention_heads", 32}}, "num_attention_heads"}, // head_dim 1 is odd
      {{{"suffix_len", 4}}, "suffix_len"},
      {{{"vocab_size", 0}}, "vocab_size"},
      {{{"sliding_window_size", 0}}, "sliding_window_size"},
      {{{"mini_batch_size", -1}}, "mini_batch_size"},
      {{{"bos_token_id", 97}}, "bos_token_id"},
      {{{"inner_lr", -1.0}}, "inner_lr"},
      {{{"rms_norm_eps", 0.0}}, "rms_norm_eps"},
      {{{"format_version", 2}}, "format_version"},
      {{{"hidden_size", "32"}}, "hidden_size"},
      {{{"qk_norm", 1}}, "qk_norm"},
  };
  const json original = config();
  for (const auto& [patch, key] : cases) {
    auto j = original;
    j.update(patch);
    set_config(j);
    EXPECT_ERROR_HAS(load_error(), "config.json", key);
  }
}

TEST_F(FormatTest, SaveLoadRoundTripInEveryDtype) {
  Config c = Model::load(dir_.string()).config;
  c.tie_word_embeddings = false;
  const Model m = Model::random(c, 3);
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    const std::string out = (dir_ / dtype_name(t)).string();
    m.save(out, t);
    const Model back = Model::load(out);
    // Relative rounding of the type, plus half the f16 subnormal step for tiny values.
    const double rtol = t == DType::F32 ? 0 : t == DType::F16 ? 1e-3 : 4e-3, atol = t == DType::F16 ? 3e-8 : 0;
    EXPECT_TRUE(all_close(back.lm_head, m.lm_head, atol, rtol)) << dtype_name(t);
    EXPECT_TRUE(all_close(back.blocks[2].prime.w2, m.blocks[2].prime.w2, atol, rtol)) << dtype_name(t);
    EXPECT_EQ(back.config.to_json(), m.config.to_json());
  }
}

// A deferred model reads each tensor when asked (an engine's upload, save):
// the same values as a held one, from the file or the preset's seed, in any order.
TEST_F(FormatTest, DeferredWeightsEqualHeldOnes) {
  const Model held = Model::load(dir_.string());
  Model lazy = Model::load(dir_.string(), Weights::deferred);
  EXPECT_TRUE(lazy.wte.empty());
  EXPECT_EQ(lazy.dtype, held.dtype);
  EXPECT_THROW(lazy.prime_tensors(), Error);  // nothing held to point at
  const ParamTable table = param_table(held.config);
  std::vector<float> scratch;
  for (auto it = table.params.rbegin(); it != table.params.rend(); ++it) {  // backwards: a random source restarts
    const std::span<const float> v = lazy.values(*it, scratch);
    EXPECT_TRUE(std::equal(v.begin(), v.end(), it->host(const_cast<Model&>(held)).begin(),
                           it->host(const_cast<Model&>(held)).end()))
        << it->name;
  }
  lazy.save(file("copy"));
  EXPECT_EQ(Model::load(file("copy")).wte, held.wte);
  lazy.hold_weights();
  EXPECT_EQ(lazy.wte, held.wte);
  EXPECT_FALSE(lazy.source);

  Config c = held.config;
  c.tie_word_embeddings = false;
  const Model r = Model::random(c, 5), d = Model::random(c, 5, 0.02f, Weights::deferred);
  const ParamTable tc = param_table(c);
  for (const ParamSpec& p : {tc.params.back(), tc.params.front(), tc.params[3], tc.params.back()}) {
    const std::span<const float> v = d.values(p, scratch);
    EXPECT_TRUE(std::equal(v.begin(), v.end(), p.host(const_cast<Model&>(r)).begin(), p.host(const_cast<Model&>(r)).end()))
        << p.name;
  }
  Model dh = d;
  dh.hold_weights();
  EXPECT_EQ(dh.lm_head, r.lm_head);
  EXPECT_EQ(dh.blocks[2].prime.w2, r.blocks[2].prime.w2);
}

// A non-finite value in a deferred model's file is found when it is read, naming the tensor.
TEST_F(FormatTest, DeferredNonFiniteValueIsReportedWhenRead) {
  Model m = Model::load(dir_.string());
  m.blocks[1].wo[5] = std::nanf("");
  m.save(file("nan"));
  Model lazy = Model::load(file("nan"), Weights::deferred);  // the header is fine
  const std::string err = [&] {
    try {
      lazy.hold_weights();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  }();
  EXPECT_NE(err.find("blocks.1.attn.wo"), std::string::npos) << err;
  EXPECT_NE(err.find("non-finite"), std::string::npos) << err;
}

// A value that f16 cannot hold (a bf16 or f32 file stored as f16 on the device) is refused, named as
// the file names it: the file's tensor and its index there, not the device tensor it shares with others.
TEST_F(FormatTest, F16OverflowNamesTheFileTensor) {
  Model m = Model::load(dir_.string());
  const ParamTable table = param_table(m.config);
  int di = -1;
  for (size_t i = 0; i < table.device.size(); ++i)
    if (table.device[i].parts.size() > 1) di = int(i);  // a fused tensor (wq|wk|wv, w1|w3)
  ASSERT_GE(di, 0);
  ParamTable t16 = table;
  t16.store_weights(DType::F16);
  const DeviceTensor& d = t16.device[size_t(di)];
  const ParamSpec& second = t16.params[size_t(d.parts[1])];
  const int64_t w = second.size() / d.rows;
  second.host(m)[size_t(w + 2)] = 70000.f;  // row 1, column 2 of the second part
  const std::string err = [&] {
    try {
      t16.pack_stored(di, m);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  }();
  EXPECT_NE(err.find(fmt::format("tensor '{}' at index {}", second.name, w + 2)), std::string::npos) << err;
  EXPECT_NE(err.find(d.name), std::string::npos) << err;
  EXPECT_NE(err.find("f16 storage"), std::string::npos) << err;
  EXPECT_NE(err.find("bf16 or f32"), std::string::npos) << err;
  t16.store_weights(DType::BF16);
  EXPECT_NO_THROW(t16.pack_stored(di, m)) << "bf16 holds 70000";
}

TEST(Dtype, HalfConversionsRoundTripEveryValue) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = f16_to_f32(uint16_t(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_f16(f), h) << "f16 " << h;
    const float b = bf16_to_f32(uint16_t(h));
    if (!std::isnan(b)) {
      ASSERT_EQ(f32_to_bf16(b), h) << "bf16 " << h;
    }
  }
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(f32_to_f16(65520.f), 0x7c00);                // rounds to inf
  EXPECT_EQ(f32_to_bf16(1.00390625f), 0x3f80);           // tie to even
}

// ---------------------------------------------------------------------------

TEST(TokenFiles, TextIds) {
  EXPECT_EQ(read_token_text(" 1 2\n3\t4 \r\n", "t"), (std::vector<int32_t>{1, 2, 3, 4}));
  EXPECT_EQ(read_token_text("-5 7", "t"), (std::vector<int32_t>{-5, 7}));
}

TEST(TokenFiles, TextErrorsNameFileAndPlace) {
  auto err = [](const std::string& s) {
    try {
      read_token_text(s, "doc.txt");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_ERROR_HAS(err(""), "doc.txt", "no token ids");
  EXPECT_ERROR_HAS(err(" \n\t "), "doc.txt", "no token ids");
  EXPECT_ERROR_HAS(err("1 2\n3 x4"), "doc.txt:2:3", "'x4'");
  EXPECT_ERROR_HAS(err("1.5"), "doc.txt:1:1", "not a decimal token id");
  EXPECT_ERROR_HAS(err("99999999999"), "out of range");
}

std::string npy(const char* descr, const std::string& shape, const std::string& payload) {
  std::string h = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + h.size() + 1) % 64) h += ' ';
  h += '\n';
  std::string out = "\x93NUMPY\x01";
  out += '\0';
  out += char(h.size() & 0xff);
  out += char(h.size() >> 8);
  return out + h + payload;
}

template <typename T>
std::string raw(std::initializer_list<T> v) {
  std::string s;
  for (T x : v) s.append(reinterpret_cast<const char*>(&x), sizeof x);
  return s;
}

TEST(TokenFiles, NpyEveryIntegerType) {
  const std::vector<int32_t> want = {5, 0, 65535};
  EXPECT_EQ(read_token_npy(npy("<i4", "(3,)", raw<int32_t>({5, 0, 65535})), "a.npy"), want);
  EXPECT_EQ(read_token_npy(npy("<u4", "(3,)", raw<uint32_t>({5, 0, 65535})), "a.npy"), want);
  EXPECT_EQ(read_token_npy(npy("<i8", "(1, 3)", raw<int64_t>({5, 0, 65535})), "a.npy"), want);
  EXPECT_EQ(read_token_npy(npy("<u2", "(3, 1)", raw<uint16_t>({5, 0, 65535})), "a.npy"), want);
  EXPECT_EQ(read_token_npy(npy(">i4", "(1,)", std::string("\0\0\1\0", 4)), "a.npy"), std::vector<int32_t>{256});
  EXPECT_EQ(read_token_npy(npy("<i8", "(1,)", raw<int64_t>({-3})), "a.npy"), std::vector<int32_t>{-3});
}

TEST(TokenFiles, NpyErrors) {
  auto err = [](const std::string& s) {
    try {
      read_token_npy(s, "a.npy");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_ERROR_HAS(err(npy("<f4", "(1,)", raw<float>({1.f}))), "a.npy", "integer");
  EXPECT_ERROR_HAS(err(npy("<i2", "(1,)", raw<int16_t>({1}))), "a.npy", "not supported");
  EXPECT_ERROR_HAS(err(npy("<i4", "(2, 2)", raw<int32_t>({1, 2, 3, 4}))), "a.npy", "dimension");
  EXPECT_ERROR_HAS(err(npy("<i4", "(5,)", raw<int32_t>({1, 2}))), "a.npy", "bytes");
  EXPECT_ERROR_HAS(err(npy("<i4", "(0,)", "")), "a.npy", "no token ids");
  EXPECT_ERROR_HAS(err(npy("<i8", "(1,)", raw<int64_t>({int64_t(1) << 40}))), "a.npy", "does not fit");
  EXPECT_ERROR_HAS(err("\x93NUMPY\x01"), "a.npy");
}

}  // namespace
}  // namespace ttt::test
