// GPU readiness on any device: every kernel launched at the official models'
// sizes (head_dim 64 and 80, D up to 2560, I up to 5632, vocabulary tile 8192)
// on a Context whose limits are clamped to NVIDIA's OpenCL ones (1024
// work-items per group, 1024 x 1024 x 64 per dimension, 48 KB of local
// memory). The launchers size their groups from the device and launch()
// checks local size and local memory before enqueueing, so a kernel that would
// not fit an NVIDIA GPU fails here with the launch check's error.
#include "lib/ops/ops.hpp"
#include "tests/common.hpp"

namespace ttt::test {
namespace {

constexpr size_t kNvidiaWorkGroup = 1024, kNvidiaLocalMem = 48 * 1024;

host::DeviceInfo clamped(size_t local_mem, size_t work_group) {
  return test::clamped(host::select_device(), local_mem, work_group);
}

struct Sizes {
  const char* name;
  int D, H, I;
};

// Every launcher once at model sizes with a few rows (group sizes depend on
// D, E, I and the tile, not on the number of rows).
void run_all(host::Context& c, const Sizes& z) {
  const int T = 8, W = 16, C = W + T - 1, E = z.D / z.H, V = 8192 + 77, tile = 8192;
  auto buf = [&](size_t n) {
    host::Buffer b(c, std::max<size_t>(n, 1) * 4, "limits");
    const auto v = random_vec(n, uint32_t(n), -0.5f, 0.5f);
    b.write(v.data(), n * 4);
    return b;
  };
  std::vector<int32_t> ids(T);
  for (int t = 0; t < T; ++t) ids[size_t(t)] = (t * 977) % V;
  auto id_buf = int_buffer(c, ids);
  auto x = buf(size_t(T) * z.D), y = buf(size_t(T) * z.D), g = buf(size_t(z.D)), rs = buf(size_t(T) * z.H);
  auto wte = buf(size_t(V) * z.D);
  ops::embedding_fwd(c, x, id_buf, wte, T, z.D);
  const ops::Mat res = ops::mat(x, z.D);
  ops::rmsnorm_fwd(c, ops::mat(y, z.D), rs, ops::mat(x, z.D), g, &res, T, 1, z.D, 1e-6f);
  ops::rmsnorm_bwd(c, ops::mat(y, z.D), true, ops::mat(x, z.D), ops::mat(x, z.D), g, rs, T, 1, z.D);
  ops::rmsnorm_fwd(c, ops::mat(y, z.D), rs, ops::mat(x, z.D), g, nullptr, T, z.H, E, 1e-6f);  // qk-norm
  const auto table = ops::rope_table(100, T, E, 500000.0);
  auto cs = buf(table.size());
  cs.write(table.data(), table.size() * 4);
  ops::rope_fwd(c, ops::mat(y, z.D), ops::mat(x, z.D), cs, T, z.H, E);
  ops::rope_bwd(c, ops::mat(y, z.D), ops::mat(x, z.D), cs, T, z.H, E);
  auto h = buf(size_t(T) * 2 * z.I), gg = buf(size_t(T) * z.I), dh = buf(size_t(T) * 2 * z.I);
  ops::swiglu_fwd(c, gg, h, T, z.I);
  ops::swiglu_bwd(c, dh, gg, h, T, z.I);
  auto kc = buf(size_t(C) * z.D), vc = buf(size_t(C) * z.D), o = buf(size_t(T) * z.D), lse = buf(size_t(T) * z.H);
  auto dq = buf(size_t(T) * z.D), dk = buf(size_t(T) * z.D), dv = buf(size_t(T) * z.D), dsum = buf(size_t(T) * z.H);
  const ops::AttnShape s{T, z.H, E, C, W, 40};
  ops::attention_fwd(c, o, lse, y, kc, vc, s);
  ops::attention_bwd(c, dq, ops::mat(dk, z.D), ops::mat(dv, z.D), dsum, x, o, y, lse, kc, vc, s);
  ops::XentScratch xs(c, T, z.D, tile);
  auto nll = buf(size_t(T)), dhf = buf(size_t(T) * z.D);
  ops::xent(c, xs, nll, &dhf, y, wte, true, id_buf, T, z.D, V, -1, 1.f / T);
  auto w1 = buf(size_t(z.D) * z.I), g1 = buf(size_t(z.D) * z.I), partial = buf(size_t(ops::sgd_partials(2))),
       stats = buf(3);
  ops::sgd_step(c, {{&w1, &g1, z.D * z.I}, {&x, &y, T * z.D}}, partial, stats, 0.1f, 1.f);
  c.finish();
}

class GpuLimits : public DeviceTest {};

TEST_F(GpuLimits, EveryKernelFitsNvidiaWorkGroupAndLocalMemoryLimits) {
  host::Context c(clamped(kNvidiaLocalMem, kNvidiaWorkGroup));
  for (const Sizes& z : {Sizes{"125m", 768, 12, 1664}, Sizes{"1b", 2048, 32, 4352}, Sizes{"3b", 2560, 32, 5632}}) {
    SCOPED_TRACE(z.name);
    EXPECT_NO_THROW(run_all(c, z));
  }
}

// The smallest limits ttt-cl meets (rusticl on llvmpipe caps some kernels at
// 32 work-items; 16 KiB of local memory is an older GPU's): every launcher
// takes its group from the kernel's own limit (host::Kernel::fit) or compiles
// a smaller one (host::fit_shape), so nothing is refused. The kernel tests run
// against their twins on such a context too (ctest label limits).
TEST_F(GpuLimits, EveryKernelFits32WorkItemsAnd16KiB) {
  host::Context c(clamped(16 * 1024, 32));
  for (const Sizes& z : {Sizes{"125m", 768, 12, 1664}, Sizes{"1b", 2048, 32, 4352}}) {
    SCOPED_TRACE(z.name);
    EXPECT_NO_THROW(run_all(c, z));
  }
}

// The check is live: with 256 bytes of local memory (attention's key/value
// tiles need more even at one key) a launch refuses, and a launch asking for
// more work-items than the device allows is refused before it is enqueued.
// Devices with less local memory (Oclgrind's 32 KB, older GPUs' 16 KB or less):
// attention halves its key tile until each of its kernels fits, so nothing is refused.
TEST_F(GpuLimits, AttentionShrinksItsTileToFitSmallLocalMemory) {
  for (size_t mem : {size_t(32768), size_t(8192)}) {
    host::Context c(clamped(mem, kNvidiaWorkGroup));
    EXPECT_NO_THROW(run_all(c, Sizes{"125m", 768, 12, 1664})) << mem << " bytes of local memory";
  }
}

TEST_F(GpuLimits, TheLaunchCheckRefusesWhatDoesNotFit) {
  {
    host::Context c(clamped(256, kNvidiaWorkGroup));
    try {
      run_all(c, Sizes{"125m", 768, 12, 1664});
      FAIL() << "no launch was refused with 256 bytes of local memory";
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("before clEnqueueNDRangeKernel"), std::string::npos) << m;
      EXPECT_NE(m.find("bytes of local memory"), std::string::npos) << m;
    }
  }
  host::Context c(clamped(kNvidiaLocalMem, 32));
  host::Kernel k(c, "embedding", "embedding_fwd");
  EXPECT_EQ(k.max_work_group(), 32u);
  EXPECT_EQ(k.fit(64), 32u);
  EXPECT_EQ(k.fit(16), 16u);
  try {
    k.launch({64, 1}, {64, 1});
    FAIL() << "a 64-item group was not refused with 32 work-items";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("before clEnqueueNDRangeKernel"), std::string::npos) << m;
    EXPECT_NE(m.find("CL_INVALID_WORK_ITEM_SIZE"), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace ttt::test
