// Global-norm clipping and the fused SGD step on the device vs the
// reference: clipped, unclipped, clip disabled, awkward sizes, and a NaN
// gradient that must leave the weights untouched and report non-finite.
#include "lib/ops/ops.hpp"
#include "lib/reference/ops.hpp"
#include "tests/common.hpp"

#include <limits>

namespace ttt::test {
namespace {

class Sgd : public DeviceTest {
 protected:
  // Runs one step over params of the given sizes; returns stats {norm, scale, finite}.
  std::vector<float> step(const std::vector<int>& sizes, float gmag, float lr, float clip, bool nan = false) {
    std::vector<std::vector<float>> w, g;
    std::vector<std::unique_ptr<Canaried>> dw, dg;
    std::vector<ops::SgdParam> params;
    for (size_t i = 0; i < sizes.size(); ++i) {
      w.push_back(random_vec(size_t(sizes[i]), uint32_t(10 + i)));
      g.push_back(random_vec(size_t(sizes[i]), uint32_t(20 + i), -gmag, gmag));
      if (nan && i == sizes.size() - 1) g.back()[size_t(sizes[i]) / 2] = std::numeric_limits<float>::quiet_NaN();
      dw.push_back(std::make_unique<Canaried>(dev(), w.back()));
      dg.push_back(std::make_unique<Canaried>(dev(), g.back()));
      params.push_back({&dw.back()->buf, &dg.back()->buf, sizes[i]});
    }
    host::Buffer partial(dev(), size_t(ops::sgd_partials(int(sizes.size()))) * 4, "partial"), stats(dev(), 12, "stats");
    ops::sgd_step(dev(), params, partial, stats, lr, clip);
    std::vector<const float*> ptrs;
    std::vector<size_t> ns;
    for (auto& v : g) {
      ptrs.push_back(v.data());
      ns.push_back(v.size());
    }
    const float norm = ref::global_norm(ptrs.data(), ns.data(), int(g.size()));
    const float scale = ref::clip_scale(norm, clip);
    auto st = stats.download<float>(3);
    for (size_t i = 0; i < w.size(); ++i) {
      auto want = w[i];
      if (!nan) ref::sgd_update(want.data(), g[i].data(), want.size(), lr, scale);
      EXPECT_TRUE(all_close(dw[i]->get(), want, 1e-6, 1e-5)) << "param " << i;
      EXPECT_TRUE(dw[i]->canary_intact());
    }
    if (!nan) {
      EXPECT_NEAR(st[0], norm, 1e-5 * norm);
      EXPECT_NEAR(st[1], scale, 1e-6);
    }
    return st;
  }
};

TEST_F(Sgd, ClipsWhenNormExceedsClip) {
  auto st = step({1, 7, 1025, 100003}, 1.f, 0.5f, 1.f);
  EXPECT_GT(st[0], 1.f);
  EXPECT_LT(st[1], 1.f);
  EXPECT_EQ(st[2], 1.f);
}

TEST_F(Sgd, NoClipBelowThreshold) {
  auto st = step({93, 1024}, 1e-3f, 1.f, 1.f);
  EXPECT_LT(st[0], 1.f);
  EXPECT_EQ(st[1], 1.f);
}

TEST_F(Sgd, ClipZeroDisablesClipping) {
  auto st = step({4096, 5}, 1.f, 0.1f, 0.f);
  EXPECT_GT(st[0], 1.f);
  EXPECT_EQ(st[1], 1.f);
}

TEST_F(Sgd, NanGradientLeavesWeightsUntouched) {
  auto st = step({64, 257}, 1.f, 1.f, 1.f, true);
  EXPECT_EQ(st[2], 0.f);
  EXPECT_FALSE(std::isfinite(st[0]));
}

}  // namespace
}  // namespace ttt::test
