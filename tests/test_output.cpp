// Output files (ttt/output.hpp): paths checked before work starts, writes
// that publish the whole file or nothing, and model directories that refuse
// the input model and non-empty directories.
#include "ttt/error.hpp"
#include "ttt/output.hpp"
#include "ttt/safetensors.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <fstream>
#include <unistd.h>

namespace ttt::test {
namespace {

namespace fs = std::filesystem;

class OutputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ttt_output_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  static std::string read(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  }
  // Names in the scratch directory, hidden temporaries included.
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  static std::string error_of(const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }

  fs::path dir_;
};

TEST_F(OutputTest, WriteReplacesTheFileAndLeavesNoTemporary) {
  write_file_atomic(path("a.json"), "first");
  write_file_atomic(path("a.json"), "second, longer");
  EXPECT_EQ(read(path("a.json")), "second, longer");
  EXPECT_EQ(listing(), std::vector<std::string>{"a.json"});
  // The mode an ordinary open() gives (mkstemp alone would make it 0600).
  const mode_t mask = ::umask(0);
  ::umask(mask);
  EXPECT_EQ(fs::status(path("a.json")).permissions() & fs::perms::all, fs::perms(0666 & ~mask));
}

TEST_F(OutputTest, AnUncommittedFileLeavesTheOldOneAndNoTemporary) {
  write_file_atomic(path("r.txt"), "complete old report");
  {
    AtomicFile f(path("r.txt"));
    f.write("half a new rep");
    // no commit: the run died here
  }
  EXPECT_EQ(read(path("r.txt")), "complete old report");
  EXPECT_EQ(listing(), std::vector<std::string>{"r.txt"});
}

TEST_F(OutputTest, SafetensorsAreWrittenAtomically) {
  const float v[3] = {1, 2, 3};
  write_safetensors(path("m.safetensors"), {{"w", {3}, v}}, DType::F32);
  EXPECT_EQ(listing(), std::vector<std::string>{"m.safetensors"});
  const std::string err = error_of([&] { write_safetensors(path("missing/m.safetensors"), {{"w", {3}, v}}, DType::F32); });
  EXPECT_NE(err.find("missing/m.safetensors"), std::string::npos) << err;
}

TEST_F(OutputTest, WriteErrorsNameThePath) {
  const std::string err = error_of([&] { write_file_atomic(path("no/such/dir/x.svg"), "x"); });
  EXPECT_NE(err.find("no/such/dir/x.svg"), std::string::npos) << err;
}

TEST_F(OutputTest, CheckOutputFile) {
  EXPECT_EQ(error_of([&] { check_output_file(path("new.json"), "--json"); }), "");
  std::string err = error_of([&] { check_output_file(path("missing/r.json"), "--json"); });
  EXPECT_NE(err.find("--json"), std::string::npos) << err;
  EXPECT_NE(err.find("does not exist"), std::string::npos) << err;
  err = error_of([&] { check_output_file(dir_.string(), "--plot"); });
  EXPECT_NE(err.find("is a directory"), std::string::npos) << err;
  write_file_atomic(path("file"), "x");
  err = error_of([&] { check_output_file(path("file/r.json"), "--nll-out"); });  // parent is a file
  EXPECT_NE(err.find("not a directory"), std::string::npos) << err;
  EXPECT_EQ(error_of([&] { check_output_file("relative-name.json", "--json"); }), "");  // "." is the directory
}

// access() answers yes to root for any directory that is not on a read-only
// file system: /proc then looks writable. Making a file there is the true test.
TEST_F(OutputTest, CheckOwnFileReplacesOnlyEmptyOrSignedFiles) {
  const OwnFormat magic{OwnFormat::magic, std::string("TTT-SES\n", 8), {}, "a session file"};
  const OwnFormat line{OwnFormat::line, "<!-- written by ttt-niah ", {}, "an SVG plot of ttt-niah"};
  const OwnFormat json{OwnFormat::json_key, "ttt-niah ", "written_by", "a JSON record of ttt-niah"};
  const OwnFormat none{OwnFormat::none, {}, {}, "ttt-tokenize's output"};
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(path(name), std::ios::binary) << text;
    return path(name);
  };
  const std::string notes = write("notes.txt", "my notes\n"), empty = write("empty", "");
  for (const OwnFormat* f : {&magic, &line, &json, &none}) {
    EXPECT_NO_THROW(check_own_file(path("missing"), "--out", *f));
    EXPECT_NO_THROW(check_own_file(empty, "--out", *f));
    EXPECT_NO_THROW(check_own_file(dir_.string(), "--out", *f));  // a directory: check_output_file's to judge
    const std::string e = error_of([&] { check_own_file(notes, "--out", *f); });
    EXPECT_EQ(e.rfind("--out " + notes + ": the file exists", 0), 0u) << e;
    EXPECT_NE(e.find("left untouched"), std::string::npos) << e;
    EXPECT_EQ(read(notes), "my notes\n");
  }
  EXPECT_NE(error_of([&] { check_own_file(notes, "--out", magic); }).find("is not a session file (no TTT-SES header)"),
            std::string::npos);
  EXPECT_NO_THROW(check_own_file(write("a.ses", std::string("TTT-SES\n", 8) + "body"), "--out", magic));
  EXPECT_THROW(check_own_file(write("short.ses", "TTT-S"), "--out", magic), Error);
  // A comment line: the first line, or the second after an XML declaration; never a later one, nor inside a line.
  EXPECT_NO_THROW(check_own_file(write("a.svg", "<?xml version=\"1.0\"?>\n<!-- written by ttt-niah 1 -->\n<svg/>"),
                                 "--plot", line));
  EXPECT_NO_THROW(check_own_file(write("b.svg", "<!-- written by ttt-niah 1 -->\n<svg/>"), "--plot", line));
  EXPECT_THROW(check_own_file(write("c.svg", "<svg><!-- written by ttt-niah 1 --></svg>"), "--plot", line), Error);
  EXPECT_THROW(check_own_file(write("d.svg", std::string(600, '\n') + "<!-- written by ttt-niah 1 -->"), "--plot", line),
               Error);
  EXPECT_THROW(check_own_file(write("e.svg", "<!-- written by ttt-perplexity 1 -->\n"), "--plot", line), Error);
  EXPECT_THROW(check_own_file(write("f.txt", "my notes\n<!-- written by ttt-niah 1 -->\n"), "--plot", line), Error);
  // JSON: an object whose key is the tool's "TOOL VERSION (ttt-cl)"; another tool's is named in the message.
  EXPECT_NO_THROW(check_own_file(write("a.json", "\n {\"a\": 1, \"written_by\": \"ttt-niah 0.1.0 (ttt-cl)\"}\n"),
                                 "--json", json));
  const std::string other = write("b.json", "{\"written_by\": \"ttt-generate 0.1.0 (ttt-cl)\"}");
  EXPECT_NE(error_of([&] { check_own_file(other, "--json", json); })
                .find("is not a JSON record of ttt-niah (its \"written_by\" is \"ttt-generate 0.1.0 (ttt-cl)\", not "
                      "\"ttt-niah ...\")"),
            std::string::npos);
  EXPECT_NE(error_of([&] { check_own_file(notes, "--json", json); })
                .find("is not a JSON record of ttt-niah (no \"written_by\": \"ttt-niah ...\" field)"),
            std::string::npos);
  for (const char* text : {"{\"written_by\": 1}", "[{\"written_by\": \"ttt-niah 1\"}]", "{\"written_by\": \"ttt-niah 1\"",
                           "{\"results\": []}", "{\"written_by\": \"ttt-niah 1\"}", "{\"written_by\": \"ttt-niah is mine\"}"})
    EXPECT_THROW(check_own_file(write("c.json", text), "--json", json), Error) << text;
  // No signature at all: only an empty file is replaced, and the message says why.
  EXPECT_NE(error_of([&] { check_own_file(notes, "-o", none); }).find("carries no signature"), std::string::npos);
}

TEST_F(OutputTest, ADirectoryThatTakesNoNewFileIsRefusedEvenForRoot) {
  if (!fs::is_directory("/proc/self")) GTEST_SKIP() << "no /proc";
  std::string err = error_of([&] { check_output_file("/proc/ttt-output-test.nll", "--nll-out"); });
  EXPECT_NE(err.find("--nll-out /proc/ttt-output-test.nll: cannot write in directory '/proc'"), std::string::npos)
      << err;
  err = error_of([&] { check_output_dir("/proc/ttt-output-test/model", "--save-weights", false); });
  EXPECT_NE(err.find("--save-weights /proc/ttt-output-test/model: cannot write in directory '/proc'"), std::string::npos)
      << err;
}

TEST_F(OutputTest, CheckOutputDir) {
  const std::string model = path("model");
  fs::create_directories(model);
  write_file_atomic(model + "/config.json", "{}");
  // The input model, however it is spelt, even with force.
  for (const std::string& spelling : {model, model + "/", model + "/../model", model + "/."}) {
    const std::string err = error_of([&] { check_output_dir(spelling, "--save-weights", true, {model}); });
    EXPECT_NE(err.find("input model"), std::string::npos) << spelling << ": " << err;
  }
  fs::create_directory_symlink(model, path("link"));
  EXPECT_NE(error_of([&] { check_output_dir(path("link"), "--out", true, {model}); }), "");
  // A non-empty directory only with force; an empty or new one always.
  // The library names the setting, not a flag (Python users read it too); the tools add "--force".
  try {
    check_output_dir(model, "--out", false);
    ADD_FAILURE() << "a non-empty directory without force was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not empty"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("--force"), std::string::npos) << e.what();
    EXPECT_EQ(e.setting(), "force");
  }
  EXPECT_EQ(error_of([&] { check_output_dir(model, "--out", true); }), "");
  fs::create_directories(path("empty"));
  EXPECT_EQ(error_of([&] { check_output_dir(path("empty"), "--out", false); }), "");
  EXPECT_EQ(error_of([&] { check_output_dir(path("new/deeper"), "--out", false); }), "");
  EXPECT_NE(error_of([&] { check_output_dir(model + "/config.json", "--out", true); }).find("not a directory"),
            std::string::npos);
  EXPECT_NE(error_of([&] { check_output_dir(model + "/config.json/sub", "--out", true); }), "");
}

}  // namespace
}  // namespace ttt::test
