// The CLBlast tuning file (host/tuning.*): missing or written for another
// device it changes nothing; corrupt it is one warning line and CLBlast's
// defaults; for this device its parameters are applied and GEMMs stay exact.
// With no record of the device's own, PoCL CPUs start from the built-in
// record, which a user's record overrides and other devices never get.
// ctest runs each test in its own process, so overrides do not leak.
#include "host/gemm.hpp"
#include "host/tuning.hpp"
#include "lib/reference/ops.hpp"
#include "tests/common.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <unistd.h>

namespace ttt::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

class Tuning : public DeviceTest {
 protected:
  fs::path path;
  void SetUp() override {
    DeviceTest::SetUp();
    if (IsSkipped()) return;
    path = fs::temp_directory_path() /
           fmt_path(::testing::UnitTest::GetInstance()->current_test_info()->name());
    ::setenv("TTT_TUNING_FILE", path.c_str(), 1);
    // These tests read what tuning prints on stderr; a cold kernel cache on a loaded machine would
    // add host::gemm's "compiling CLBlast kernels ... N s so far" notice (after 5 s) to it.
    ::setenv("TTT_SLOW_NOTICE_S", "1e9", 1);
  }
  void TearDown() override {
    ::unsetenv("TTT_SLOW_NOTICE_S");
    ::unsetenv("TTT_TUNING_FILE");
    ::unsetenv("TTT_TUNING_BUILTIN");
    if (!path.empty()) fs::remove(path);
  }
  static std::string fmt_path(const std::string& test) {
    return "ttt-tuning-" + test + "-" + std::to_string(::getpid()) + ".json";
  }
  void write(const std::string& text) { std::ofstream(path) << text; }
  json record(const host::TuningKey& k, const json& kernels) {
    return {{"format", "ttt-cl clblast tuning"},
            {"version", 1},
            {"devices", {{{"device", k.device}, {"platform", k.platform}, {"driver", k.driver},
                          {"clblast", k.clblast}, {"kernels", kernels}}}}};
  }
  // A fresh context (tuning is applied once per context, at its first GEMM),
  // one GEMM at awkward sizes checked against the reference; returns the state.
  host::TuningState::Kind gemm_on_fresh_context(std::string* stderr_text = nullptr) {
    return gemm_state_on_fresh_context(stderr_text).kind;
  }
  // Whether the test device is one the built-in record is for.
  bool builtin_device() { return host::builtin_record(host::DeviceClass::of(dev().device())) != nullptr; }
  // Its name ("pocl-cpu-vec16" on AVX-512); call only where builtin_device().
  std::string builtin_name() { return host::builtin_record(host::DeviceClass::of(dev().device()))->name; }
  host::TuningState gemm_state_on_fresh_context(std::string* stderr_text = nullptr) {
    host::Context c(host::select_device());
    const int M = 93, N = 144, K = 7;
    auto A = random_vec(size_t(M) * K, 11), B = random_vec(size_t(N) * K, 12);
    std::vector<float> want(size_t(M) * N);
    ref::matmul(want.data(), A.data(), B.data(), M, N, K, false, true, false);
    Canaried dA(c, A), dB(c, B), dC(c, size_t(M) * N);
    ::testing::internal::CaptureStderr();
    host::gemm(c, host::Trans::N, host::Trans::T, M, N, K, 1.f, dA.buf, 0, K, dB.buf, 0, K, 0.f, dC.buf, 0, N);
    const std::string err = ::testing::internal::GetCapturedStderr();
    if (stderr_text) *stderr_text = err;
    EXPECT_TRUE(all_close(dC.get(), want, 1e-5, 1e-5));
    EXPECT_TRUE(dC.canary_intact());
    return host::tuning_state(c);
  }
};

// Which devices the built-in records are for: PoCL on a CPU with 16-wide
// float vectors (AVX-512) or 8-wide ones (AVX2), each its own; never a GPU,
// another CPU driver or narrower vectors.
TEST(TuningBuiltin, IsForPoclCpusWithWideVectorsOnly) {
  using host::DeviceClass;
  const host::BuiltinRecord* avx512 = host::builtin_record(DeviceClass{true, true, 16});
  const host::BuiltinRecord* avx2 = host::builtin_record(DeviceClass{true, true, 8});
  ASSERT_NE(avx512, nullptr);
  ASSERT_NE(avx2, nullptr);
  EXPECT_EQ(std::string(avx512->name), "pocl-cpu-vec16");
  EXPECT_EQ(std::string(avx2->name), "pocl-cpu-vec8");
  EXPECT_EQ(host::builtin_record(DeviceClass{true, true, 32}), avx512);
  EXPECT_EQ(host::builtin_record(DeviceClass{true, true, 4}), nullptr);  // SSE: 8-wide vectors would split
  EXPECT_EQ(host::builtin_record(DeviceClass{false, true, 16}), nullptr);  // a PoCL GPU (or any non-CPU device)
  EXPECT_EQ(host::builtin_record(DeviceClass{false, false, 16}), nullptr);
  EXPECT_EQ(host::builtin_record(DeviceClass{true, false, 16}), nullptr);  // another CPU driver
  for (const host::BuiltinRecord* rec : {avx512, avx2}) {
    // Its plan is one gemm_plan_from_params accepts, and it keeps the kernels a record needs.
    EXPECT_EQ(host::gemm_plan_from_params(rec->kernels.at(host::kGemmPlanKernel)), (host::GemmPlan{true, 512, 0}));
    EXPECT_EQ(rec->kernels.count("Xgemm"), 1u);
    EXPECT_EQ(rec->kernels.count("GemmRoutine"), 1u);
  }
  // The 16-wide record keeps 16 vectors of C per work-item: all of AVX2's registers, half of AVX-512's.
  const auto& x = avx512->kernels.at("Xgemm");
  EXPECT_EQ(x.at("MWG") / x.at("MDIMC") / x.at("VWM") * (x.at("NWG") / x.at("NDIMC")), 16u);
}

// The class is read from the device: type, platform and vector width.
TEST_F(Tuning, DeviceClassIsReadFromTheDevice) {
  const host::DeviceClass c = host::DeviceClass::of(dev().device());
  EXPECT_EQ(c.cpu, (dev().device().type & CL_DEVICE_TYPE_CPU) != 0);
  EXPECT_EQ(c.pocl, dev().device().platform_name == "Portable Computing Language");
  EXPECT_GE(c.vector_width, 1u);
}

// The built-in record's parameters are ones CLBlast takes, and GEMMs stay
// exact with them, on whatever device the tests run (applied by hand here).
TEST_F(Tuning, BuiltinRecordKeepsGemmsExact) {
  for (const unsigned width : {16u, 8u}) {
    SCOPED_TRACE(fmt::format("the record for {}-wide vectors", width));
    host::Context c(host::select_device());
    host::skip_tuning_file(c);
    const host::BuiltinRecord* rec = host::builtin_record(host::DeviceClass{true, true, width});
    for (const auto& [kernel, params] : rec->kernels)
      if (kernel != host::kGemmPlanKernel) host::clblast_override(c, kernel, params);
    host::set_gemm_plan(c, host::gemm_plan_from_params(rec->kernels.at(host::kGemmPlanKernel)));
    // Sizes that are multiples of no tile: three K panels of 512, every operand padded. Both
    // orientations of B (the weights' NN and the head's NT).
    const int M = 93, N = 145, K = 1025;
    auto A = random_vec(size_t(M) * K, 21), B = random_vec(size_t(K) * N, 22);
    for (const bool bt : {false, true}) {
      std::vector<float> want(size_t(M) * N);
      ref::matmul(want.data(), A.data(), B.data(), M, N, K, false, bt, false);
      Canaried dA(c, A), dB(c, B), dC(c, size_t(M) * N);
      host::gemm(c, host::Trans::N, bt ? host::Trans::T : host::Trans::N, M, N, K, 1.f, dA.buf, 0, K, dB.buf, 0,
                 bt ? K : N, 0.f, dC.buf, 0, N);
      EXPECT_TRUE(all_close(dC.get(), want, 1e-4, 1e-4)) << (bt ? "NT" : "NN");
      EXPECT_TRUE(dC.canary_intact());
    }
  }
}

// No file: the built-in record on the devices it is for, CLBlast's defaults
// elsewhere; never a note on a device the built-in record covers.
TEST_F(Tuning, MissingFileMeansTheBuiltinRecordWhereOneFits) {
  std::string err;
  const host::TuningState st = gemm_state_on_fresh_context(&err);
  EXPECT_EQ(st.kind, host::TuningState::Missing);
  EXPECT_EQ(err, "");
  if (builtin_device()) {
    EXPECT_EQ(st.source, host::TuningState::Builtin);
    EXPECT_EQ(st.record(), "built-in '" + builtin_name() + "'");
    EXPECT_EQ(st.plan, (host::GemmPlan{true, 512, 0}));
  } else {
    EXPECT_EQ(st.source, host::TuningState::None);
    EXPECT_EQ(st.record(), "none (CLBlast defaults)");
    EXPECT_EQ(st.plan, host::GemmPlan{});
  }
}

// A record of the device's own in the user's file wins over the built-in one;
// one for another driver leaves the built-in record in place.
TEST_F(Tuning, UserRecordWinsOverTheBuiltinRecord) {
  const host::ClblastKernels mine = {{"GemmRoutine", {{"XGEMM_MIN_INDIRECT_SIZE", 64}}},
                                     {host::kGemmPlanKernel, {{"COL_MAJOR", 0}, {"K_BLOCK", 64}, {"N_BLOCK", 0}}}};
  host::TuningKey other = host::TuningKey::of(dev().device());
  other.driver += "-other";
  host::save_tuning(path.string(), other, mine, "");
  host::TuningState st = gemm_state_on_fresh_context();
  EXPECT_EQ(st.kind, host::TuningState::Stale);
  EXPECT_EQ(st.source, builtin_device() ? host::TuningState::Builtin : host::TuningState::None);
  host::save_tuning(path.string(), host::TuningKey::of(dev().device()), mine, "");
  st = gemm_state_on_fresh_context();
  EXPECT_EQ(st.kind, host::TuningState::Applied);
  EXPECT_EQ(st.source, host::TuningState::File);
  EXPECT_EQ(st.record(), "user file '" + path.string() + "'");
  EXPECT_EQ(st.plan, (host::GemmPlan{false, 64, 0}));
}

// TTT_TUNING_FILE=off is CLBlast's defaults everywhere; TTT_TUNING_BUILTIN=off
// keeps the file and drops the built-in record.
TEST_F(Tuning, OffSwitchesDropTheBuiltinRecord) {
  ::setenv("TTT_TUNING_FILE", "off", 1);
  EXPECT_EQ(gemm_state_on_fresh_context().source, host::TuningState::None);
  ::setenv("TTT_TUNING_FILE", path.c_str(), 1);
  ::setenv("TTT_TUNING_BUILTIN", "off", 1);
  const host::TuningState st = gemm_state_on_fresh_context();
  EXPECT_EQ(st.kind, host::TuningState::Missing);
  EXPECT_EQ(st.source, host::TuningState::None);
  EXPECT_EQ(st.plan, host::GemmPlan{});
}

// On a CPU, the first model-sized GEMM without a record (in the file or built
// in) suggests tuning, once per process; the small GEMMs above (and every test
// model's) never do, nor does a CPU with the built-in record.
TEST_F(Tuning, MissingRecordOnACpuIsOneNoteAtTheFirstLargeGemm) {
  if (!(dev().device().type & CL_DEVICE_TYPE_CPU)) GTEST_SKIP() << "the note is for CPU devices";
  if (builtin_device()) {  // with the built-in record: no note
    host::Context c(host::select_device());
    const size_t n = 512;
    host::Buffer a(c, n * n * 4, "a"), b(c, n * n * 4, "b"), out(c, n * n * 4, "c");
    a.zero(n * n * 4), b.zero(n * n * 4);
    ::testing::internal::CaptureStderr();
    host::gemm(c, host::Trans::N, host::Trans::N, n, n, n, 1.f, a, 0, n, b, 0, n, 0.f, out, 0, n);
    EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
    EXPECT_EQ(host::tuning_state(c).source, host::TuningState::Builtin);
  }
  ::setenv("TTT_TUNING_BUILTIN", "off", 1);
  host::Context c(host::select_device());
  const size_t n = 512;
  host::Buffer a(c, n * n * 4, "a"), b(c, n * n * 4, "b"), out(c, n * n * 4, "c");
  a.zero(n * n * 4), b.zero(n * n * 4);
  auto large_gemm = [&] {
    ::testing::internal::CaptureStderr();
    host::gemm(c, host::Trans::N, host::Trans::N, n, n, n, 1.f, a, 0, n, b, 0, n, 0.f, out, 0, n);
    return ::testing::internal::GetCapturedStderr();
  };
  const std::string first = large_gemm();
  EXPECT_EQ(first.rfind("ttt-cl: note: no CLBlast tuning record for '" + c.device().name + "' in '" + path.string() +
                            "'", 0), 0u) << first;
  EXPECT_NE(first.find("ttt-bench tune --no-tuners"), std::string::npos) << first;
  EXPECT_EQ(std::count(first.begin(), first.end(), '\n'), 1) << first;
  EXPECT_EQ(large_gemm(), "");
}

// "off" reads as "no file" and yet drops the built-in record too, so where
// there is one to drop it says so on stderr, and ttt-info's line says so too.
TEST_F(Tuning, OffDisablesTheFileAndTheBuiltinRecord) {
  ::setenv("TTT_TUNING_FILE", "off", 1);
  EXPECT_EQ(host::tuning_file_path(), "");
  std::string err;
  const host::TuningState st = gemm_state_on_fresh_context(&err);
  EXPECT_EQ(st.kind, host::TuningState::Off);
  EXPECT_EQ(st.source, host::TuningState::None);
  const std::string line = host::describe_tuning(dev().device());
  if (builtin_device()) {
    EXPECT_EQ(err.rfind("ttt-cl: note: TTT_TUNING_FILE=off: GEMMs run with CLBlast's defaults, without the built-in "
                        "record '" + builtin_name() + "' either",
                        0),
              0u)
        << err;
    EXPECT_NE(err.find("TTT_TUNING_FILE=none"), std::string::npos) << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    EXPECT_NE(line.find("without the built-in record '" + builtin_name() + "'"), std::string::npos) << line;
  } else {
    EXPECT_EQ(err, "");
    EXPECT_EQ(line, "none (TTT_TUNING_FILE=off: CLBlast's defaults)");
  }
  ::setenv("TTT_TUNING_BUILTIN", "off", 1);  // both asked off: nothing to say
  EXPECT_EQ(gemm_on_fresh_context(&err), host::TuningState::Off);
  EXPECT_EQ(err, "");
}

// "none": no file read, none written by default, and the built-in record
// where one fits, as out of the box; TTT_TUNING_BUILTIN=off still drops it.
TEST_F(Tuning, NoneReadsNoFileAndKeepsTheBuiltinRecord) {
  write("{ not read: not json");  // were it read, a warning
  ::setenv("TTT_TUNING_FILE", "none", 1);
  EXPECT_EQ(host::tuning_file_path(), "");
  std::string err;
  const host::TuningState st = gemm_state_on_fresh_context(&err);
  EXPECT_EQ(err, "");
  EXPECT_EQ(st.kind, host::TuningState::NoFile);
  EXPECT_STREQ(st.name(), "none");
  const std::string line = host::describe_tuning(dev().device());
  if (builtin_device()) {
    EXPECT_EQ(st.source, host::TuningState::Builtin);
    EXPECT_EQ(st.plan, (host::GemmPlan{true, 512, 0}));
    EXPECT_EQ(line, "built-in '" + builtin_name() + "' (TTT_TUNING_FILE=none; 'ttt-bench tune --no-tuners' refines it)");
  } else {
    EXPECT_EQ(st.source, host::TuningState::None);
    EXPECT_EQ(line.rfind("none (TTT_TUNING_FILE=none: CLBlast's defaults", 0), 0u) << line;
  }
  try {
    host::save_tuning(host::tuning_file_path(), host::TuningKey::of(dev().device()), {}, "");
    ADD_FAILURE() << "saved a tuning file with TTT_TUNING_FILE=none";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("off or none"), std::string::npos) << e.what();
  }
  ::setenv("TTT_TUNING_BUILTIN", "off", 1);
  const host::TuningState plain = gemm_state_on_fresh_context(&err);
  EXPECT_EQ(plain.kind, host::TuningState::NoFile);
  EXPECT_EQ(plain.source, host::TuningState::None);
  EXPECT_EQ(plain.plan, host::GemmPlan{});
}

TEST_F(Tuning, StaleRecordForAnotherDeviceOrDriverIsIgnoredQuietly) {
  host::TuningKey k = host::TuningKey::of(dev().device());
  k.driver += "-other";
  write(record(k, {{"Xgemm", {{"NOT_A_PARAMETER", 1}}}}).dump());
  std::string err;
  EXPECT_EQ(gemm_on_fresh_context(&err), host::TuningState::Stale);
  EXPECT_EQ(err, "");
}

TEST_F(Tuning, CorruptFileIsOneWarningLineNeverACrash) {
  const host::TuningKey k = host::TuningKey::of(dev().device());
  const std::vector<std::string> bad = {
      "{ this is not json",
      json{{"format", "something else"}}.dump(),
      record(k, {{"Xgemm", {{"MWG", -4}}}}).dump(),            // not a size
      record(k, {{"Xgemm", {{"NOT_A_PARAMETER", 1}}}}).dump(),  // CLBlast refuses it
  };
  for (size_t i = 0; i < bad.size(); ++i) {
    path.replace_filename(fmt_path("corrupt" + std::to_string(i)));
    ::setenv("TTT_TUNING_FILE", path.c_str(), 1);
    write(bad[i]);
    std::string err;
    EXPECT_EQ(gemm_on_fresh_context(&err), host::TuningState::Invalid) << bad[i];
    EXPECT_EQ(err.rfind("ttt-cl: warning: ignoring CLBlast tuning file '" + path.string() + "'", 0), 0u) << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    fs::remove(path);
  }
}

TEST_F(Tuning, RecordForThisDeviceIsAppliedAndGemmsStayExact) {
  // The issue's hand-found shape of kernel: no local memory, 8x8 per work-item.
  const host::ClblastKernels kernels = {
      {"Xgemm", {{"GEMMK", 0}, {"KREG", 1}, {"KWG", 32}, {"KWI", 2}, {"MDIMA", 8}, {"MDIMC", 8}, {"MWG", 64},
                 {"NDIMB", 8}, {"NDIMC", 8}, {"NWG", 64}, {"SA", 0}, {"SB", 0}, {"STRM", 0}, {"STRN", 0},
                 {"VWM", 4}, {"VWN", 4}}},
      {"GemmRoutine", {{"XGEMM_MIN_INDIRECT_SIZE", 64}}},
      {host::kGemmPlanKernel, {{"COL_MAJOR", 1}, {"K_BLOCK", 16}, {"N_BLOCK", 32}}}};
  host::save_tuning(path.string(), host::TuningKey::of(dev().device()), kernels, R"({"note": "test"})");
  // save_tuning keeps other devices' records and replaces this one's.
  host::ClblastKernels back;
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  ASSERT_TRUE(host::parse_tuning(ss.str(), host::TuningKey::of(dev().device()), back));
  EXPECT_EQ(back, kernels);
  std::string err;
  EXPECT_EQ(gemm_on_fresh_context(&err), host::TuningState::Applied);  // K = 7, N = 144: three N panels
  EXPECT_EQ(err, "");
  host::Context c(host::select_device());
  host::tuning_state(c);
  EXPECT_EQ(host::gemm_plan(c), (host::GemmPlan{true, 16, 32}));
}

TEST_F(Tuning, BadGemmPlanIsOneWarningAndNoPlanOfTheFile) {
  const auto key = host::TuningKey::of(dev().device());
  for (const json& plan : {json{{"COL_MAJOR", 2}}, json{{"K_BLOCK", 3}}, json{{"LAYOUT", 1}}}) {
    write(record(key, {{"GemmRoutine", {{"XGEMM_MIN_INDIRECT_SIZE", 64}}}, {"TttGemm", plan}}).dump());
    EXPECT_EQ(gemm_on_fresh_context(), host::TuningState::Invalid) << plan;  // warns once per file and process
    host::Context c(host::select_device());
    EXPECT_NE(host::tuning_state(c).message.find("kernel 'TttGemm'"), std::string::npos)
        << host::tuning_state(c).message;
    // The file's record is dropped whole: the built-in record where one fits, else the defaults.
    const host::GemmPlan want = builtin_device() ? host::GemmPlan{true, 512, 0} : host::GemmPlan{};
    EXPECT_EQ(host::gemm_plan(c), want) << plan;
  }
}

}  // namespace
}  // namespace ttt::test
