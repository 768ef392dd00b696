// Regression tests for inputs the fuzzers (tests/fuzz) found: each once
// crashed a parser, escaped it as something other than a ttt::Error (so the
// message named no file), or tripped a sanitizer (caught in the
// -DTTT_SANITIZE=address,undefined run of this suite).
#include "ttt/config.hpp"
#include "ttt/error.hpp"
#include "ttt/safetensors.hpp"
#include "ttt/token_io.hpp"
#include "ttt/tokenizer.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

namespace ttt::test {
namespace {

namespace fs = std::filesystem;

// A file in a scratch directory removed with the fixture.
class Parsers : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ttt_parsers_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const char* name, const std::string& content) const {
    const std::string p = (dir_ / name).string();
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
  fs::path dir_;
};

std::string safetensors(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

// The message of the ttt::Error that f throws; any other exception fails the test.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// An empty F32 tensor was converted with memcpy(nullptr, p, 0): undefined
// behaviour (UBSan: "null pointer passed as argument 1").
TEST_F(Parsers, SafetensorsEmptyF32Tensor) {
  const std::string p = file("a.safetensors", safetensors(R"({"e": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}})", ""));
  SafeTensors st(p);
  EXPECT_TRUE(SafeTensors::to_f32(st.tensors().at(0)).empty());
}

// A number too large for a double made nlohmann throw out_of_range, which
// the parse_error handler let through: the message named no file.
TEST_F(Parsers, SafetensorsHeaderNumberOverflow) {
  const std::string p = file("a.safetensors", safetensors(R"({"a": {"dtype": "F32", "shape": [1E999], "data_offsets": [0, 0]}})", ""));
  const std::string e = error_of([&] { SafeTensors st(p); });
  EXPECT_NE(e.find(p), std::string::npos) << e;
  EXPECT_NE(e.find("JSON"), std::string::npos) << e;
}

TEST_F(Parsers, ConfigNumberOverflow) {
  const std::string p = file("config.json", R"({"vocab_size": 1e999})");
  const std::string e = error_of([&] { Config::load(p); });
  EXPECT_NE(e.find(p), std::string::npos) << e;
  EXPECT_NE(e.find("invalid JSON"), std::string::npos) << e;
}

// A .npy v2 header may be 4 GiB long; std::regex's recursive matcher
// overflowed the stack on ~300 KB of it (ASan: stack-overflow; a plain
// SIGSEGV in a release build with a longer header).
std::string npy_v2(const std::string& header, const std::string& payload) {
  std::string out = "\x93NUMPY\x02";
  out += '\0';
  const uint32_t n = uint32_t(header.size());
  out.append(reinterpret_cast<const char*>(&n), 4);
  return out + header + payload;
}

TEST(NpyParser, LongHeader) {
  const std::string h = "{'descr': '<i4', 'fortran_order': False, 'shape': (" + std::string(300000, ' ') + "2,), }\n";
  const int32_t ids[2] = {7, 9};
  EXPECT_EQ(read_token_npy(npy_v2(h, std::string(reinterpret_cast<const char*>(ids), 8)), "a.npy"),
            (std::vector<int32_t>{7, 9}));
}

// A dimension of 20+ digits escaped std::stoll as std::out_of_range; one whose
// byte count wraps size_t passed the size check and asked for a 2^62-element vector.
TEST(NpyParser, HugeDimensions) {
  for (const char* shape : {"(12345678901234567890123,)", "(4611686018427387904,)", "(3a,)", "(,)"}) {
    const std::string h = std::string("{'descr': '<i4', 'fortran_order': False, 'shape': ") + shape + ", }\n";
    const std::string e = error_of([&] { read_token_npy(npy_v2(h, std::string(16, '\0')), "a.npy"); });
    EXPECT_NE(e.find("a.npy"), std::string::npos) << shape << ": " << e;
  }
}

// A model.type that is not a string made nlohmann throw type_error out of
// Tokenizer::from_file (found by fuzz_tokenizer_file).
TEST_F(Parsers, TokenizerJsonMemberOfWrongType) {
  for (const char* text : {R"({"model": {"type": 5, "vocab": {}, "merges": []}})",
                           R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "added_tokens": [1]})"}) {
    const std::string p = file("tokenizer.json", text);
    const std::string e = error_of([&] { Tokenizer::from_file(p); });
    EXPECT_NE(e.find(p), std::string::npos) << text << ": " << e;
  }
}

}  // namespace
}  // namespace ttt::test
