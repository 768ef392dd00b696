// The OpenCL host layer: device selection and its errors, launch checks and
// their messages, the on-disk program cache, build failures with the log,
// $TTT_CL_DIR, and the CLBlast GEMM wrapper against the reference matmul.
#include "host/error.hpp"
#include "host/gemm.hpp"
#include "host/kernel.hpp"
#include "lib/reference/ops.hpp"
#include "tests/cases.hpp"
#include "tests/common.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <future>
#include <thread>

namespace ttt::test {
namespace {

namespace fs = std::filesystem;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

class Host : public DeviceTest {};

TEST_F(Host, DeviceSelectionBySpecSubstringAndEnvironment) {
  const auto all = host::list_devices();
  ASSERT_FALSE(all.empty());
  const auto& d = all.front();
  EXPECT_EQ(host::select_device(d.spec()).id, d.id);
  std::string upper = d.name.substr(0, 4);
  for (auto& ch : upper) ch = char(std::toupper(static_cast<unsigned char>(ch)));
  EXPECT_EQ(host::select_device(upper).id, host::select_device(d.name.substr(0, 4)).id);
  {
    ScopedEnv env("TTT_DEVICE", d.spec());
    EXPECT_EQ(host::select_device().id, d.id);
  }
  const std::string err = error_of([] { host::select_device("no-such-device-xyz"); });
  EXPECT_NE(err.find("'no-such-device-xyz' matches no OpenCL device"), std::string::npos) << err;
  EXPECT_NE(err.find(d.spec()), std::string::npos) << "the message lists the devices: " << err;
  ScopedEnv env("TTT_DEVICE", "99:99");
  const std::string env_err = error_of([] { host::select_device(); });
  EXPECT_NE(env_err.find("TTT_DEVICE '99:99'"), std::string::npos) << env_err;
}

TEST(HostErrors, SymbolicNames) {
  EXPECT_STREQ(host::cl_error_name(CL_INVALID_WORK_GROUP_SIZE), "CL_INVALID_WORK_GROUP_SIZE");
  EXPECT_STREQ(host::cl_error_name(-5), "CL_OUT_OF_RESOURCES");
  EXPECT_STREQ(host::cl_error_name(-9999), "CL_UNKNOWN_ERROR");
  const std::string e = error_of([] { host::check(CL_INVALID_VALUE, "clFoo", "kernel 'bar'"); });
  EXPECT_EQ(e, "CL_INVALID_VALUE (-30) in clFoo: kernel 'bar'");
}

// Marks show how far the device got without waiting for it: a marker behind
// work that cannot run yet (a user event holds the queue) is not passed; once
// the work runs it is, seen from the host while nothing waits; finish() starts
// the count again; marking off enqueues nothing.
//
// mark() flushes, and a driver whose clFlush waits for the queue to finish
// blocks there until the gate opens: Oclgrind's does (its clFlush calls
// clFinish, which spins on the user event). So the marks are enqueued on
// another thread and waited for with a deadline; past it the gate is opened
// anyway, so the queue drains and the rest of the test still runs. On Oclgrind
// that is a skip naming the behaviour: nothing of ours is wrong, but "not yet
// passed" cannot be observed through a flush that waits. On any other driver
// it is a failure: a progress display marks a slow run precisely so that it
// can report while the device works, which a waiting flush would stall.
TEST_F(Host, MarksShowHowFarTheQueueGotWithoutWaiting) {
  host::Context& ctx = dev();
  ctx.finish();
  EXPECT_EQ(ctx.passed(), "");
  ctx.mark("not marking");
  EXPECT_EQ(ctx.passed(), "");
  ctx.set_marking(true);
  cl_int err = CL_SUCCESS;
  cl_event gate = clCreateUserEvent(ctx.context(), &err);
  ASSERT_EQ(err, CL_SUCCESS);
  ASSERT_EQ(clEnqueueBarrierWithWaitList(ctx.queue(), 1, &gate, nullptr), CL_SUCCESS);
  // The queue's thread for now: this one only calls passed() and opens the gate until it is joined.
  std::promise<void> marked;
  std::future<void> returned = marked.get_future();
  std::thread marker([&] {
    try {
      ctx.mark("first");
      ctx.mark("second");
      ctx.flush();
      marked.set_value();
    } catch (...) {
      marked.set_exception(std::current_exception());
    }
  });
  const auto deadline = std::chrono::seconds(5);
  const bool without_waiting = returned.wait_for(deadline) == std::future_status::ready;
  if (without_waiting) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_EQ(ctx.passed(), "") << "a marker behind a closed gate was passed";
  }
  EXPECT_EQ(clSetUserEventStatus(gate, CL_COMPLETE), CL_SUCCESS);  // either way: the queue drains
  marker.join();
  returned.get();  // an error of mark() or flush(), if any
  std::string seen;
  for (int i = 0; i < 200 && seen != "second"; ++i) {
    seen = ctx.passed();
    if (seen != "second") std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  EXPECT_EQ(seen, "second");
  EXPECT_EQ(ctx.passed(), "second");  // stays until the next finish
  ctx.finish();
  EXPECT_EQ(ctx.passed(), "");
  ctx.set_marking(false);
  ctx.mark("off again");
  ctx.finish();
  EXPECT_EQ(ctx.passed(), "");
  clReleaseEvent(gate);
  if (without_waiting) return;
  const std::string what = fmt::format(
      "mark() and flush() did not return within {} s while a user event held the queue on '{}' ({}): its "
      "clFlush waits for the queue to finish, so a marker cannot be seen unpassed",
      deadline.count(), ctx.device().name, ctx.device().platform_name);
  if (ctx.device().platform_name.find("Oclgrind") != std::string::npos)
    GTEST_SKIP() << what << " (Oclgrind's clFlush calls clFinish)";
  ADD_FAILURE() << what << "; progress marks would stall a slow run";
}

TEST_F(Host, LaunchChecksNameKernelSizesAndDevice) {
  host::Buffer out(dev(), 64 * 4, "out"), ids(dev(), 64 * 4, "ids"), wte(dev(), 64 * 4, "wte");
  host::Kernel k(dev(), "embedding", "embedding_fwd");
  k.args(out, ids, wte, int32_t(1), int32_t(8));
  std::string e = error_of([&] { k.launch({65, 1}, {64, 1}); });
  EXPECT_NE(e.find("CL_INVALID_WORK_GROUP_SIZE"), std::string::npos) << e;
  EXPECT_NE(e.find("kernel 'embedding_fwd' global=[65,1] local=[64,1]"), std::string::npos) << e;
  EXPECT_NE(e.find(dev().device().name), std::string::npos) << e;
  const size_t too_big = dev().device().max_work_group * 2;
  e = error_of([&] { k.launch({too_big, 1}, {too_big, 1}); });
  EXPECT_NE(e.find("CL_INVALID_"), std::string::npos) << e;
  e = error_of([&] { host::Kernel(dev(), "embedding", "no_such_kernel"); });
  EXPECT_NE(e.find("CL_INVALID_KERNEL_NAME"), std::string::npos) << e;
  EXPECT_NE(e.find("no_such_kernel"), std::string::npos) << e;
}

TEST_F(Host, BufferErrorsNameTheBuffer) {
  host::Buffer b(dev(), 16, "my buffer");
  float x[8] = {};
  const std::string e = error_of([&] { b.write(x, 32); });
  EXPECT_NE(e.find("overruns my buffer of 16 bytes"), std::string::npos) << e;
  const std::string big = error_of([&] { host::Buffer(dev(), dev().device().max_alloc + 1, "huge"); });
  EXPECT_NE(big.find("huge"), std::string::npos) << big;
  EXPECT_NE(big.find("CL_DEVICE_MAX_MEM_ALLOC_SIZE"), std::string::npos) << big;
}

TEST_F(Host, ProgramCacheStoresAndReloadsBinaries) {
  const fs::path dir = fs::temp_directory_path() / ("ttt_cache_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  ScopedEnv env("TTT_CACHE_DIR", dir.string());
  std::vector<std::string> compiled;  // what the compile hook saw (a tool's "compiling kernels" notice)
  {
    host::Context c(dev().device());
    c.on_compile([&](const std::string& family) { compiled.push_back(family); });
    host::Kernel(c, "swiglu", "swiglu_fwd", "-DTEST_CACHE=1");
    EXPECT_EQ(c.programs().built_from_source(), 1);
    EXPECT_EQ(c.programs().loaded_from_cache(), 0);
  }
  EXPECT_EQ(compiled, std::vector<std::string>{"swiglu"});
  ASSERT_TRUE(fs::exists(dir));
  EXPECT_FALSE(fs::is_empty(dir));
  host::Context c2(dev().device());
  c2.on_compile([&](const std::string& family) { compiled.push_back(family); });
  host::Kernel(c2, "swiglu", "swiglu_fwd", "-DTEST_CACHE=1");
  EXPECT_EQ(compiled.size(), 1u) << "a cached program is not announced as compiled";
  EXPECT_EQ(c2.programs().built_from_source(), 0);
  EXPECT_EQ(c2.programs().loaded_from_cache(), 1);
  // A corrupt cache entry falls back to the source.
  for (const auto& f : fs::directory_iterator(dir)) std::ofstream(f.path(), std::ios::binary) << "garbage";
  host::Context c3(dev().device());
  host::Kernel(c3, "swiglu", "swiglu_fwd", "-DTEST_CACHE=1");
  EXPECT_EQ(c3.programs().built_from_source(), 1);
  fs::remove_all(dir);
}

// PoCL keeps its own kernel cache, and asking it for a binary makes it compile
// every kernel once more (a generic form): there ours keeps a stamp, unless
// PoCL's cache is off (POCL_KERNEL_CACHE=0), when it keeps the binary.
TEST_F(Host, ProgramCacheKeepsAStampWherePoclCaches) {
  if (dev().device().platform_name != "Portable Computing Language") GTEST_SKIP() << "PoCL only";
  const fs::path dir = fs::temp_directory_path() / ("ttt_stamp_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  ScopedEnv env("TTT_CACHE_DIR", dir.string());
  ScopedEnv pocl("POCL_KERNEL_CACHE", nullptr);  // on, as by default
  auto entries = [&] {
    std::vector<std::string> out;
    for (const auto& f : fs::directory_iterator(dir)) {
      std::ifstream in(f.path(), std::ios::binary);
      out.emplace_back((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    }
    return out;
  };
  {
    host::Context c(dev().device());
    host::Kernel(c, "swiglu", "swiglu_fwd", "-DTEST_STAMP=1");
    EXPECT_EQ(c.programs().built_from_source(), 1);
  }
  auto kept = entries();
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_EQ(kept[0].rfind("ttt-cl program stamp 1:", 0), 0u) << kept[0].substr(0, 64);
  {
    host::Context c(dev().device());
    std::vector<std::string> compiled;
    c.on_compile([&](const std::string& family) { compiled.push_back(family); });
    host::Kernel k(c, "swiglu", "swiglu_fwd", "-DTEST_STAMP=1");
    EXPECT_EQ(c.programs().built_from_source(), 0);
    EXPECT_EQ(c.programs().loaded_from_cache(), 1);
    EXPECT_TRUE(compiled.empty()) << "a stamped program is not announced as compiled";
  }
  {  // PoCL's cache emptied: the stamp is not trusted, and the build is announced and counted as one.
    const fs::path empty = dir / "empty-pocl-cache";
    fs::create_directories(empty);
    ScopedEnv gone("POCL_CACHE_DIR", empty.string());
    host::Context c(dev().device());
    std::vector<std::string> compiled;
    c.on_compile([&](const std::string& family) { compiled.push_back(family); });
    host::Kernel k(c, "swiglu", "swiglu_fwd", "-DTEST_STAMP=1");
    EXPECT_EQ(c.programs().built_from_source(), 1);
    EXPECT_EQ(compiled, std::vector<std::string>{"swiglu"});
    fs::remove_all(empty);
  }
  fs::remove_all(dir);
  {
    ScopedEnv off("POCL_KERNEL_CACHE", "0");
    host::Context c(dev().device());
    host::Kernel(c, "swiglu", "swiglu_fwd", "-DTEST_STAMP=2");
  }
  kept = entries();
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_NE(kept[0].rfind("ttt-cl program stamp", 0), 0u) << "POCL_KERNEL_CACHE=0: the binary itself";
  EXPECT_GT(kept[0].size(), 1000u);
  fs::remove_all(dir);
}

TEST_F(Host, ClDirOverridesEmbeddedSourcesAndBuildErrorsCarryTheLog) {
  const fs::path dir = fs::temp_directory_path() / ("ttt_cl_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "common.cl") << "// empty\n";
  std::ofstream(dir / "broken.cl") << "__kernel void broken_fwd(__global float* x) { x[0] = undefined_name; }\n";
  ScopedEnv env("TTT_CL_DIR", dir.string());
  ScopedEnv cache("TTT_CACHE_DIR", "off");
  EXPECT_EQ(host::kernel_source("broken").find("// empty"), 0u);
  host::Context c(dev().device());
  const std::string e = error_of([&] { host::Kernel(c, "broken", "broken_fwd", "-DFOO=1"); });
  EXPECT_NE(e.find("CL_BUILD_PROGRAM_FAILURE"), std::string::npos) << e;
  EXPECT_NE(e.find("family 'broken'"), std::string::npos) << e;
  EXPECT_NE(e.find("-DFOO=1"), std::string::npos) << e;
  EXPECT_NE(e.find("undefined_name"), std::string::npos) << "the build log is included: " << e;
  fs::remove_all(dir);
}

// Under every GemmPlan: as asked and column-major, whole and in panels that
// do not divide the sizes (K panels sum into C with beta applied once).
TEST_F(Host, GemmMatchesReferenceWithOffsetsAndTransposes) {
  const host::GemmPlan plans[] = {{}, {true, 0, 0}, {true, 16, 32}, {false, 17, 16}};
  for (const host::GemmPlan& plan : plans)
  for (const cases::Gemm& c : cases::gemm()) {
    host::set_gemm_plan(dev(), plan);
    const int lda = (c.ta ? c.M : c.K) + 3, ldb = (c.tb ? c.K : c.N) + 1, ldc = c.N + 2, off = 5;
    const int arows = c.ta ? c.K : c.M, brows = c.tb ? c.N : c.K;
    auto A = random_vec(size_t(arows) * lda + off, 1), B = random_vec(size_t(brows) * ldb + off, 2),
         C = random_vec(size_t(c.M) * ldc + off, 3);
    // Reference on packed copies.
    std::vector<float> pa(size_t(arows) * (c.ta ? c.M : c.K)), pb(size_t(brows) * (c.tb ? c.K : c.N)),
        want(size_t(c.M) * c.N);
    for (int r = 0; r < arows; ++r)
      for (int q = 0; q < (c.ta ? c.M : c.K); ++q) pa[size_t(r) * (c.ta ? c.M : c.K) + q] = A[off + size_t(r) * lda + q];
    for (int r = 0; r < brows; ++r)
      for (int q = 0; q < (c.tb ? c.K : c.N); ++q) pb[size_t(r) * (c.tb ? c.K : c.N) + q] = B[off + size_t(r) * ldb + q];
    for (int r = 0; r < c.M; ++r)
      for (int q = 0; q < c.N; ++q) want[size_t(r) * c.N + q] = 0.5f * C[off + size_t(r) * ldc + q];
    ref::matmul(want.data(), pa.data(), pb.data(), c.M, c.N, c.K, c.ta, c.tb, true);
    Canaried dA(dev(), A), dB(dev(), B), dC(dev(), C);
    // C = 1 * op(A) op(B) + 0.5 * C
    host::gemm(dev(), c.ta ? host::Trans::T : host::Trans::N, c.tb ? host::Trans::T : host::Trans::N, c.M, c.N, c.K,
               1.f, dA.buf, off, lda, dB.buf, off, ldb, 0.5f, dC.buf, off, ldc);
    auto got = dC.get();
    std::vector<float> g(want.size());
    for (int r = 0; r < c.M; ++r)
      for (int q = 0; q < c.N; ++q) g[size_t(r) * c.N + q] = got[off + size_t(r) * ldc + q];
    EXPECT_TRUE(all_close(g, want, 1e-4, 1e-4))
        << c.M << "x" << c.N << "x" << c.K << " col " << plan.col_major << " K panels " << plan.k_block
        << " N panels " << plan.n_block;
    EXPECT_TRUE(dC.canary_intact());
  }
  host::set_gemm_plan(dev(), {});
}

// Operands at aligned offsets, in K panels whose starts are aligned too: with
// views (the default) host::gemm hands each over as a sub-buffer starting
// there, so CLBlast copies none of them for its offset; the numbers are the
// same bits as without views (CLBlast's copy is exact), and right. One operand
// is itself a sub-buffer, so its views are made from its parent. Under
// Oclgrind, which interprets every work-item, the 512x512x768 product takes
// minutes: there a 64x48 one in K panels of an alignment or so, kept on
// CLBlast's indirect Xgemm (the one that copies offset operands) by lowering
// XGEMM_MIN_INDIRECT_SIZE for the test.
TEST_F(Host, GemmViewsOfAlignedPanelsGiveTheSameBits) {
  const size_t al = host::Buffer::view_align(dev()) / sizeof(float);  // floats per base address alignment
  const bool simulator = dev().device().platform_name.find("Oclgrind") != std::string::npos;
  // Panels of 512x512x256: past any XGEMM_MIN_INDIRECT_SIZE default (indirect Xgemm).
  const size_t kb = simulator ? al * ((32 + al - 1) / al) : 256;  // a multiple of al: every panel start aligned
  const int M = simulator ? 64 : 512, N = simulator ? 64 : 512, K = int(3 * kb);
  struct Restore {  // CLBlast's parameters are process-wide: the next tests get them back as they were
    host::Context& ctx;
    std::map<std::string, size_t> params;
    ~Restore() {
      if (!params.empty()) host::clblast_override(ctx, "GemmRoutine", params);
    }
  } restore{dev(), {}};
  if (simulator) {
    restore.params = host::clblast_parameters(dev(), "GemmRoutine");
    auto small = restore.params;
    small["XGEMM_MIN_INDIRECT_SIZE"] = 8;
    host::clblast_override(dev(), "GemmRoutine", small);
  }
  const size_t off = 3 * al;
  auto A = random_vec(off + size_t(M) * K, 7), B = random_vec(off + size_t(K) * N, 8), C0 = random_vec(off + size_t(M) * N, 9);
  std::vector<float> pa(A.begin() + off, A.end()), pb(B.begin() + off, B.end()), want(size_t(M) * N);
  for (size_t i = 0; i < want.size(); ++i) want[i] = 0.5f * C0[off + i];
  ref::matmul(want.data(), pa.data(), pb.data(), M, N, K, false, false, true);
  Canaried dA(dev(), A), dB(dev(), B);
  // B seen through a view of its buffer that starts one alignment in: the operand offset shrinks by as much.
  const host::Buffer Bv = dB.buf.view(al * sizeof(float), (B.size() - al) * sizeof(float), "test view of B");
  std::vector<float> got[2];
  for (const bool views : {false, true}) {
    host::set_gemm_plan(dev(), {true, kb, 0, views});  // K panels: every panel start aligned
    Canaried dC(dev(), C0);
    host::gemm(dev(), host::Trans::N, host::Trans::N, M, N, K, 1.f, dA.buf, off, K, Bv, off - al, N, 0.5f, dC.buf, off,
               N);
    got[views] = dC.get();
    EXPECT_TRUE(dC.canary_intact()) << "views " << views;
    EXPECT_TRUE(all_close(std::vector<float>(got[views].begin() + off, got[views].end()), want, 1e-4, 1e-4))
        << "views " << views;
    EXPECT_TRUE(std::equal(got[views].begin(), got[views].begin() + off, C0.begin())) << "C before the offset kept";
  }
  EXPECT_EQ(got[0], got[1]) << "a view changed the numbers";
  host::set_gemm_plan(dev(), {});
}

TEST_F(Host, GemmStridedBatchedAndOperandChecks) {
  const int M = 5, N = 3, K = 4, batch = 3;
  auto A = random_vec(size_t(batch) * M * K, 4), B = random_vec(size_t(batch) * K * N, 5);
  Canaried dA(dev(), A), dB(dev(), B), dC(dev(), size_t(batch) * M * N);
  for (const bool col : {false, true}) {
    host::set_gemm_plan(dev(), {col, 16, 16});
    host::gemm_strided_batched(dev(), host::Trans::N, host::Trans::N, M, N, K, 1.f, dA.buf, 0, K, M * K, dB.buf, 0,
                               N, K * N, 0.f, dC.buf, 0, N, M * N, batch);
    auto got = dC.get();
    for (int b = 0; b < batch; ++b) {
      std::vector<float> want(size_t(M) * N), g(got.begin() + b * M * N, got.begin() + (b + 1) * M * N);
      ref::matmul(want.data(), A.data() + b * M * K, B.data() + b * K * N, M, N, K, false, false, false);
      EXPECT_TRUE(all_close(g, want, 1e-5, 1e-5)) << "batch " << b << " col " << col;
    }
  }
  host::set_gemm_plan(dev(), {});
  const std::string e = error_of([&] {
    host::gemm(dev(), host::Trans::N, host::Trans::N, 100, 100, 100, 1.f, dA.buf, 0, 100, dB.buf, 0, 100, 0.f, dC.buf,
               0, 100, "gemm_test");
  });
  EXPECT_NE(e.find("matrix A needs"), std::string::npos) << e;
  EXPECT_NE(e.find("gemm_test"), std::string::npos) << e;
}

}  // namespace
}  // namespace ttt::test
