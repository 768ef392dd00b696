// Sliding-window attention over the key/value ring: device forward and
// backward vs the reference for T < W, T = W, T > W, ring wrap-around, large
// positions and head_dim 16/64/80/256, single queries (the split decode
// kernels); dk/dv written into strided slices of a fused matrix; the batched
// (several documents) kernels per segment; all of it again with keys and values
// stored in f16 (against the reference on the rounded numbers); the f16
// narrowing of rows entering a ring; the reference backward against finite
// differences.
#include "lib/ops/ops.hpp"
#include "lib/reference/ops.hpp"
#include "tests/cases.hpp"
#include "tests/common.hpp"
#include "ttt/safetensors.hpp"

#include <cstring>
#include "ttt/error.hpp"

namespace ttt::test {
namespace {

using Case = cases::Attention;

// Keys and values stored as kv: f32 as they are; f16 rounded to nearest even,
// so that the reference, on the rounded numbers, sees what the kernels widen.
std::vector<float> rounded(std::vector<float> x, DType kv) {
  if (kv == DType::F16)
    for (float& v : x) v = f16_to_f32(f32_to_f16(v));
  return x;
}
// A ring as a device buffer of kv elements (f16 packed two to a float), with its canary after.
Canaried stored(host::Context& ctx, const std::vector<float>& ring, DType kv) {
  if (kv == DType::F32) return Canaried(ctx, ring);
  const std::vector<uint16_t> h = ref::narrow(ring, DType::F16);
  std::vector<float> packed((h.size() + 1) / 2, 0.f);
  std::memcpy(packed.data(), h.data(), h.size() * sizeof(uint16_t));
  return Canaried(ctx, packed);
}
// Runs f; false when the launcher refused it for the device's loop budget
// (host::loop_budget: llvmpipe, or $TTT_LOOP_BUDGET), which only the forms of
// attention.cl may do: the flash form takes the window in passes instead.
template <typename F>
bool within_loop_budget(F f) {
  try {
    f();
    return true;
  } catch (const Error& e) {
    if (std::string(e.what()).find("loop budget") == std::string::npos) throw;
    return false;
  }
}

// Whether the explicit CPU forms (the sweeps: register-blocked loops,
// always inlined and unrolled) are tried on this device: not on Mesa's
// llvmpipe, which never takes them (host::cpu_forms) and whose compiler
// takes minutes over them (rusticl.test_attention ran 746 s of its 900 in CI
// with them); PoCL and Oclgrind (oclgrind.test_attention_cpu_forms) check them.
bool tries_cpu_forms(const host::DeviceInfo& d) {
  return d.name.find("llvmpipe") == std::string::npos;
}

class Attention : public DeviceTest, public ::testing::WithParamInterface<Case> {
 protected:
  void forward_and_backward(DType store);
};

TEST_P(Attention, ForwardAndBackwardMatchReference) { forward_and_backward(DType::F32); }
// f16 rings: every kernel form (forward tiles and sweeps, decode per item and
// per group, the backward) on the stored keys and values, widened exactly.
TEST_P(Attention, F16KeysAndValuesMatchReference) { forward_and_backward(DType::F16); }

void Attention::forward_and_backward(DType store) {
  const auto c = GetParam();
  const int D = c.H * c.E, C = c.W + c.T - 1 + c.extra_ring;
  const int64_t kpos0 = std::max<int64_t>(0, c.pos0 - (c.W - 1));
  const int Tk = int(c.pos0 + c.T - kpos0);
  auto q = random_vec(size_t(c.T) * D, 1), k = rounded(random_vec(size_t(Tk) * D, 2), store),
       v = rounded(random_vec(size_t(Tk) * D, 3), store), dout = random_vec(size_t(c.T) * D, 4);
  // Reference.
  std::vector<float> out(size_t(c.T) * D), lse(size_t(c.T) * c.H), dq(q.size()), dk(k.size()), dv(v.size());
  ref::attention_fwd(out.data(), lse.data(), q.data(), k.data(), v.data(), c.T, Tk, c.pos0, kpos0, c.H, c.E, c.W);
  ref::attention_bwd(dq.data(), dk.data(), dv.data(), dout.data(), q.data(), k.data(), v.data(), lse.data(), c.T, Tk,
                     c.pos0, kpos0, c.H, c.E, c.W);
  // Device: keys in the ring at row p % C; rows no query may see hold garbage.
  auto kring = random_vec(size_t(C) * D, 5, 50, 60), vring = random_vec(size_t(C) * D, 6, 50, 60);
  for (int j = 0; j < Tk; ++j)
    for (int d = 0; d < D; ++d) {
      kring[size_t((kpos0 + j) % C) * D + d] = k[size_t(j) * D + d];
      vring[size_t((kpos0 + j) % C) * D + d] = v[size_t(j) * D + d];
    }
  Canaried dq_(dev(), q), dk_ring = stored(dev(), kring, store), dv_ring = stored(dev(), vring, store),
      ddout(dev(), dout), dout_(dev(), out.size()), dlse(dev(), lse.size()), ddq(dev(), q.size()),
      dsum(dev(), lse.size()), dkv(dev(), size_t(c.T) * 3 * D, 7.f);
  const ops::AttnShape s{c.T, c.H, c.E, C, c.W, c.pos0, store};
  ops::attention_fwd(dev(), dout_.buf, dlse.buf, dq_.buf, dk_ring.buf, dv_ring.buf, s);
  ops::attention_bwd(dev(), ddq.buf, ops::mat(dkv.buf, 3 * D, D), ops::mat(dkv.buf, 3 * D, 2 * D), dsum.buf, ddout.buf,
                     dout_.buf, dq_.buf, dlse.buf, dk_ring.buf, dv_ring.buf, s);
  EXPECT_TRUE(all_close(dout_.get(), out, 1e-5, 1e-4));
  EXPECT_TRUE(all_close(dlse.get(), lse, 1e-5, 1e-5));
  EXPECT_TRUE(all_close(ddq.get(), dq, 1e-5, 1e-4));
  auto kv = dkv.get();
  std::vector<float> got_dk, got_dv, want_dk(dk.end() - long(c.T) * D, dk.end()), want_dv(dv.end() - long(c.T) * D, dv.end());
  for (int t = 0; t < c.T; ++t)
    for (int d = 0; d < D; ++d) {
      EXPECT_EQ(kv[size_t(t) * 3 * D + d], 7.f) << "dq slice of the fused matrix was written";
      got_dk.push_back(kv[size_t(t) * 3 * D + D + d]);
      got_dv.push_back(kv[size_t(t) * 3 * D + 2 * D + d]);
    }
  EXPECT_TRUE(all_close(got_dk, want_dk, 1e-5, 1e-4));
  EXPECT_TRUE(all_close(got_dv, want_dv, 1e-5, 1e-4));
  for (auto* b : {&dq_, &dk_ring, &dv_ring, &ddout, &dout_, &dlse, &ddq, &dsum, &dkv}) EXPECT_TRUE(b->canary_intact());
  // Every backward kernel, whichever this device's attention_bwd picked.
  for (auto kind : {ops::BackwardKernel::tiles, ops::BackwardKernel::sweeps, ops::BackwardKernel::flash}) {
    // (one program with the CPU forward: the same compile)
    if (kind == ops::BackwardKernel::sweeps && !tries_cpu_forms(dev().device())) continue;
    Canaried g(dev(), q.size(), 9.f), ds(dev(), lse.size(), 9.f), gkv(dev(), size_t(c.T) * 3 * D, 7.f);
    if (!within_loop_budget([&] {
          ops::attention_bwd(dev(), g.buf, ops::mat(gkv.buf, 3 * D, D), ops::mat(gkv.buf, 3 * D, 2 * D), ds.buf,
                             ddout.buf, dout_.buf, dq_.buf, dlse.buf, dk_ring.buf, dv_ring.buf, s, kind);
        })) {
      EXPECT_NE(kind, ops::BackwardKernel::flash);
      continue;
    }
    EXPECT_TRUE(all_close(g.get(), dq, 1e-5, 1e-4)) << "backward kernel " << int(kind);
    const auto k2 = gkv.get();
    std::vector<float> k2_dk, k2_dv;
    for (int t = 0; t < c.T; ++t)
      for (int d = 0; d < D; ++d) {
        ASSERT_EQ(k2[size_t(t) * 3 * D + d], 7.f) << "backward kernel " << int(kind) << " wrote the dq slice";
        k2_dk.push_back(k2[size_t(t) * 3 * D + D + d]);
        k2_dv.push_back(k2[size_t(t) * 3 * D + 2 * D + d]);
      }
    EXPECT_TRUE(all_close(k2_dk, want_dk, 1e-5, 1e-4)) << "backward kernel " << int(kind);
    EXPECT_TRUE(all_close(k2_dv, want_dv, 1e-5, 1e-4)) << "backward kernel " << int(kind);
    EXPECT_TRUE(g.canary_intact() && ds.canary_intact() && gkv.canary_intact());
  }
  // Every forward kernel, whichever this device's attention_fwd picked.
  for (auto kind : {ops::ForwardKernel::tiles, ops::ForwardKernel::sweeps, ops::ForwardKernel::flash}) {
    if (kind == ops::ForwardKernel::sweeps && !tries_cpu_forms(dev().device())) continue;
    Canaried o(dev(), out.size(), 9.f), l(dev(), lse.size(), 9.f);
    if (!within_loop_budget([&] { ops::attention_fwd(dev(), o.buf, l.buf, dq_.buf, dk_ring.buf, dv_ring.buf, s, kind); })) {
      EXPECT_NE(kind, ops::ForwardKernel::flash);
      continue;
    }
    EXPECT_TRUE(all_close(o.get(), out, 1e-5, 1e-4)) << "forward kernel " << int(kind);
    EXPECT_TRUE(all_close(l.get(), lse, 1e-5, 1e-5)) << "forward kernel " << int(kind);
    EXPECT_TRUE(o.canary_intact() && l.canary_intact());
  }
  // A single query: both decode kernels, whichever this device's attention_fwd picked.
  if (c.T == 1)
    for (auto kind : {ops::DecodeKernel::per_item, ops::DecodeKernel::per_group}) {
      Canaried o(dev(), out.size()), l(dev(), lse.size());
      ops::attention_decode(dev(), o.buf, l.buf, dq_.buf, dk_ring.buf, dv_ring.buf, s, kind);
      EXPECT_TRUE(all_close(o.get(), out, 1e-5, 1e-4)) << "decode kernel " << int(kind);
      EXPECT_TRUE(all_close(l.get(), lse, 1e-5, 1e-5)) << "decode kernel " << int(kind);
      EXPECT_TRUE(o.canary_intact() && l.canary_intact());
    }
}

TEST_P(Attention, DeterministicAcrossRuns) {
  const auto c = GetParam();
  const int D = c.H * c.E, C = c.W + c.T - 1 + c.extra_ring;
  Canaried q(dev(), random_vec(size_t(c.T) * D, 8)), kr(dev(), random_vec(size_t(C) * D, 9)),
      vr(dev(), random_vec(size_t(C) * D, 10)), o1(dev(), size_t(c.T) * D), o2(dev(), size_t(c.T) * D),
      l(dev(), size_t(c.T) * c.H);
  const ops::AttnShape s{c.T, c.H, c.E, C, c.W, c.pos0};
  ops::attention_fwd(dev(), o1.buf, l.buf, q.buf, kr.buf, vr.buf, s);
  ops::attention_fwd(dev(), o2.buf, l.buf, q.buf, kr.buf, vr.buf, s);
  EXPECT_EQ(o1.get(), o2.get());
}

// A NaN in one key reaches the output of every query that sees it, in both
// forward kernels; queries before it stay finite. The CPU form masks scores by
// position, never by value: a NaN score among finite ones must not become a 0
// weight (key 1 of 5), and a tile whose only visible key is the NaN one (key
// 64 starts a tile of 64 or 32 keys, and query 64 sees nothing else in it)
// must not be skipped as empty.
TEST_F(DeviceTest, AttentionNanKeyReachesTheQueriesThatSeeIt) {
  struct Case {
    int T, W, nan_key;
  };
  for (const Case c : {Case{5, 8, 1}, Case{70, 128, 64}}) {
    const int H = 1, E = 16, C = c.W + c.T - 1;
    auto q = random_vec(size_t(c.T) * E, 1), k = random_vec(size_t(C) * E, 2), v = random_vec(size_t(C) * E, 3);
    k[size_t(c.nan_key) * E + 3] = std::numeric_limits<float>::quiet_NaN();
    Canaried dq(dev(), q), dk(dev(), k), dv(dev(), v);
    for (auto kind : {ops::ForwardKernel::tiles, ops::ForwardKernel::sweeps, ops::ForwardKernel::flash}) {
      if (kind == ops::ForwardKernel::sweeps && !tries_cpu_forms(dev().device())) continue;
      Canaried o(dev(), size_t(c.T) * E), l(dev(), size_t(c.T));
      ops::attention_fwd(dev(), o.buf, l.buf, dq.buf, dk.buf, dv.buf, {c.T, H, E, C, c.W, 0}, kind);
      const auto out = o.get();
      for (int t = 0; t < c.T; ++t)
        EXPECT_EQ(std::isnan(out[size_t(t) * E]), t >= c.nan_key)
            << "T " << c.T << " kernel " << int(kind) << " query " << t;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, Attention, ::testing::ValuesIn(cases::attention()),
                         [](const auto& i) { return i.param.name(); });

struct Seg {
  int64_t pos;
  int n;
};
struct BatchCase {
  int R, W, H, E;
  std::vector<Seg> segs;
};
// Segments of lengths 0, 1 and R at small and huge positions.
const BatchCase kSegments{20, 12, 2, 16, {{0, 20}, {37, 7}, {5, 1}, {100, 0}, {1000003, 20}}};

class AttentionBatched : public DeviceTest {
 protected:
  void segments(DType store, const BatchCase& bc = kSegments);
};

// The batched kernels: segments of different lengths (including 0 and 1) at
// different positions, each against its own ring, vs the reference per
// segment; padding rows are never written; one segment gives exactly what the
// plain kernels give.
TEST_F(AttentionBatched, SegmentsMatchReferenceEach) { segments(DType::F32); }
TEST_F(AttentionBatched, F16KeysAndValuesMatchReference) { segments(DType::F16); }
// Segments longer than a work-group's rows in every form (the CPU forward's 32
// queries at head_dim 80, the tiles' 64), windows longer than a key tile with
// rings that wrap inside one, f16 keys and values.
TEST_F(AttentionBatched, SegmentsLongerThanAWorkGroup) {
  segments(DType::F16, {70, 90, 1, 80, {{0, 70}, {280, 65}, {1000, 0}, {77, 33}}});
}

void AttentionBatched::segments(DType store, const BatchCase& bc) {
  const int R = bc.R, W = bc.W, H = bc.H, E = bc.E, D = H * E, C = W + R - 1;
  const std::vector<Seg>& segs = bc.segs;
  const int S = int(segs.size());
  auto q = random_vec(size_t(S) * R * D, 31), dout = random_vec(size_t(S) * R * D, 32);
  auto kring = random_vec(size_t(S) * C * D, 33, 50, 60), vring = random_vec(size_t(S) * C * D, 34, 50, 60);
  std::vector<int64_t> seg;
  std::vector<std::vector<float>> want_o(S), want_l(S), want_dq(S), want_dk(S), want_dv(S);
  for (int s = 0; s < S; ++s) {
    const auto [pos0, n] = segs[s];
    seg.push_back(pos0);
    seg.push_back(n);
    if (n == 0) continue;
    const int64_t kpos0 = std::max<int64_t>(0, pos0 - (W - 1));
    const int Tk = int(pos0 + n - kpos0);
    auto k = rounded(random_vec(size_t(Tk) * D, 40 + s), store), v = rounded(random_vec(size_t(Tk) * D, 50 + s), store);
    for (int j = 0; j < Tk; ++j)
      for (int d = 0; d < D; ++d) {
        kring[(size_t(s) * C + size_t((kpos0 + j) % C)) * D + d] = k[size_t(j) * D + d];
        vring[(size_t(s) * C + size_t((kpos0 + j) % C)) * D + d] = v[size_t(j) * D + d];
      }
    const float* qs = q.data() + size_t(s) * R * D;
    const float* ds = dout.data() + size_t(s) * R * D;
    want_o[s].resize(size_t(n) * D);
    want_l[s].resize(size_t(n) * H);
    want_dq[s].resize(size_t(n) * D);
    std::vector<float> dk(k.size()), dv(v.size());
    ref::attention_fwd(want_o[s].data(), want_l[s].data(), qs, k.data(), v.data(), n, Tk, pos0, kpos0, H, E, W);
    ref::attention_bwd(want_dq[s].data(), dk.data(), dv.data(), ds, qs, k.data(), v.data(), want_l[s].data(), n, Tk,
                       pos0, kpos0, H, E, W);
    want_dk[s].assign(dk.end() - long(n) * D, dk.end());
    want_dv[s].assign(dv.end() - long(n) * D, dv.end());
  }
  host::Buffer dseg(dev(), seg.size() * 8, "segments");
  dseg.write(seg.data(), seg.size() * 8);
  const size_t rows = size_t(S) * R;
  // Every form, whichever this device's launchers pick.
  for (auto [fkind, bkind] : {std::pair{ops::ForwardKernel::automatic, ops::BackwardKernel::automatic},
                              std::pair{ops::ForwardKernel::tiles, ops::BackwardKernel::tiles},
                              std::pair{ops::ForwardKernel::sweeps, ops::BackwardKernel::sweeps},
                              std::pair{ops::ForwardKernel::flash, ops::BackwardKernel::flash}}) {
  if (fkind == ops::ForwardKernel::sweeps && !tries_cpu_forms(dev().device())) continue;
  SCOPED_TRACE(testing::Message() << "forms " << int(fkind) << " " << int(bkind));
  Canaried dq_(dev(), q), dk_ring = stored(dev(), kring, store), dv_ring = stored(dev(), vring, store), ddout(dev(), dout),
      dout_(dev(), rows * D, 9.f), dlse(dev(), rows * H, 9.f), ddq(dev(), rows * D, 9.f), dsum(dev(), rows * H),
      dkv(dev(), rows * 3 * D, 7.f);
  const ops::AttnBatch b{S, R, H, E, C, W, store};
  if (!within_loop_budget([&] {
        ops::attention_fwd_batched(dev(), dout_.buf, dlse.buf, dq_.buf, dk_ring.buf, dv_ring.buf, dseg, b, fkind);
        ops::attention_bwd_batched(dev(), ddq.buf, ops::mat(dkv.buf, 3 * D, D), ops::mat(dkv.buf, 3 * D, 2 * D),
                                   dsum.buf, ddout.buf, dout_.buf, dq_.buf, dlse.buf, dk_ring.buf, dv_ring.buf, dseg, b,
                                   bkind);
      })) {
    EXPECT_NE(fkind, ops::ForwardKernel::flash);  // the flash forms take the window in passes
    continue;
  }
  const auto o = dout_.get(), l = dlse.get(), dq = ddq.get(), kv = dkv.get();
  for (int s = 0; s < S; ++s) {
    const int n = segs[s].n;
    auto rows_of = [&](const std::vector<float>& x, int width, int ld, int off, int first, int count) {
      std::vector<float> r;
      for (int t = first; t < first + count; ++t)
        for (int d = 0; d < width; ++d) r.push_back(x[(size_t(s) * R + size_t(t)) * size_t(ld) + size_t(off + d)]);
      return r;
    };
    EXPECT_TRUE(all_close(rows_of(o, D, D, 0, 0, n), want_o[s], 1e-5, 1e-4)) << "segment " << s;
    EXPECT_TRUE(all_close(rows_of(l, H, H, 0, 0, n), want_l[s], 1e-5, 1e-5)) << "segment " << s;
    EXPECT_TRUE(all_close(rows_of(dq, D, D, 0, 0, n), want_dq[s], 1e-5, 1e-4)) << "segment " << s;
    EXPECT_TRUE(all_close(rows_of(kv, D, 3 * D, D, 0, n), want_dk[s], 1e-5, 1e-4)) << "segment " << s;
    EXPECT_TRUE(all_close(rows_of(kv, D, 3 * D, 2 * D, 0, n), want_dv[s], 1e-5, 1e-4)) << "segment " << s;
    for (float x : rows_of(o, D, D, 0, n, R - n)) ASSERT_EQ(x, 9.f) << "padding row written, segment " << s;
    for (float x : rows_of(kv, D, 3 * D, D, n, R - n)) ASSERT_EQ(x, 7.f) << "padding dk written, segment " << s;
  }
  for (auto* c : {&dq_, &dk_ring, &dv_ring, &ddout, &dout_, &dlse, &ddq, &dsum, &dkv}) EXPECT_TRUE(c->canary_intact());
  }
}

TEST_F(AttentionBatched, OneSegmentEqualsThePlainKernels) {
  const int T = 13, W = 9, H = 2, E = 16, D = H * E, C = W + T - 1;
  const int64_t pos0 = 29;
  Canaried q(dev(), random_vec(size_t(T) * D, 60)), kr(dev(), random_vec(size_t(C) * D, 61)),
      vr(dev(), random_vec(size_t(C) * D, 62)), o1(dev(), size_t(T) * D), o2(dev(), size_t(T) * D),
      l1(dev(), size_t(T) * H), l2(dev(), size_t(T) * H);
  const std::vector<int64_t> seg = {pos0, T};
  host::Buffer dseg(dev(), 16, "segments");
  dseg.write(seg.data(), 16);
  ops::attention_fwd(dev(), o1.buf, l1.buf, q.buf, kr.buf, vr.buf, {T, H, E, C, W, pos0});
  ops::attention_fwd_batched(dev(), o2.buf, l2.buf, q.buf, kr.buf, vr.buf, dseg, {1, T, H, E, C, W});
  EXPECT_EQ(o1.get(), o2.get());
  EXPECT_EQ(l1.get(), l2.get());
}

// Rows entering an f16 ring: a (R, C) block from a strided f32 matrix (the
// v-slice of qkv) into a strided f16 one at an offset, rounded to nearest even
// bit for bit as the reference rounds: ties (to even, also among subnormals),
// overflow to infinity, the largest finite, signed zero; nothing else written.
TEST_F(DeviceTest, NarrowingToF16MatchesReference) {
  const float ties[] = {1.f + 0x1p-11f, 1.f + 3 * 0x1p-11f, 0x1p-25f, 3 * 0x1p-25f, 65520.f, 65519.f, -0.f,
                        -65504.f, 1e-9f, -7e-6f, 1e6f};
  for (auto [R, C] : {std::pair{1, 1}, {7, 93}, {93, 7}, {3, 1025}, {2, 11}}) {
    const int ldi = 3 * C + 2, in_off = 5, ldo = C + 3, out_off = 9;
    auto in = random_vec(size_t(in_off) + size_t(R) * ldi, 7, -3.f, 3.f);
    for (size_t i = 0; i < std::size(ties) && i < size_t(C); ++i) in[size_t(in_off) + i] = ties[i];
    const size_t n16 = size_t(out_off) + size_t(R) * ldo;
    std::vector<uint16_t> want(n16 + 1, 0x7777);  // + 1: an even count, packed two to a float
    ref::narrow_rows_f16(want.data() + out_off, size_t(ldo), in.data() + in_off, size_t(ldi), size_t(R), size_t(C));
    std::vector<float> init(want.size() / 2);
    const std::vector<uint16_t> fill(want.size(), 0x7777);
    std::memcpy(init.data(), fill.data(), fill.size() * 2);
    Canaried din(dev(), in), out(dev(), init);
    ops::convert_narrow_f16(dev(), out.buf, size_t(out_off), ldo, din.buf, size_t(in_off), ldi, R, C);
    const auto packed = out.get();
    std::vector<uint16_t> got(want.size());
    std::memcpy(got.data(), packed.data(), got.size() * 2);
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_EQ(got[i], want[i]) << "R=" << R << " C=" << C << " at " << i;
    EXPECT_TRUE(out.canary_intact());
  }
  // The reference rounds as the format's f32_to_f16 does (ties to even).
  uint16_t h[4];
  const float x[4] = {1.f + 0x1p-11f, 1.f + 3 * 0x1p-11f, 0x1p-25f, 65520.f};
  ref::narrow_rows_f16(h, 4, x, 4, 1, 4);
  EXPECT_EQ(h[0], 0x3c00);
  EXPECT_EQ(h[1], 0x3c02);
  EXPECT_EQ(h[2], 0x0000);
  EXPECT_EQ(h[3], 0x7c00);
}

TEST(AttentionReference, BackwardMatchesFiniteDifferences) {
  const int T = 5, W = 3, H = 2, E = 4, D = H * E;
  const int64_t pos0 = 2, kpos0 = 0;
  const int Tk = 7;
  auto q = to_double(random_vec(T * D, 20)), k = to_double(random_vec(Tk * D, 21)), v = to_double(random_vec(Tk * D, 22)),
       w = to_double(random_vec(T * D, 23));
  auto f = [&](const std::vector<double>& qq, const std::vector<double>& kk, const std::vector<double>& vv) {
    std::vector<double> out(T * D), lse(T * H);
    ref::attention_fwd(out.data(), lse.data(), qq.data(), kk.data(), vv.data(), T, Tk, pos0, kpos0, H, E, W);
    return dot(out, w);
  };
  std::vector<double> out(T * D), lse(T * H), dq(T * D), dk(Tk * D), dv(Tk * D);
  ref::attention_fwd(out.data(), lse.data(), q.data(), k.data(), v.data(), T, Tk, pos0, kpos0, H, E, W);
  ref::attention_bwd(dq.data(), dk.data(), dv.data(), w.data(), q.data(), k.data(), v.data(), lse.data(), T, Tk, pos0,
                     kpos0, H, E, W);
  EXPECT_TRUE(all_close(dq, numeric_grad(q, [&](const auto& x) { return f(x, k, v); }), 1e-7, 1e-6));
  EXPECT_TRUE(all_close(dk, numeric_grad(k, [&](const auto& x) { return f(q, x, v); }), 1e-7, 1e-6));
  EXPECT_TRUE(all_close(dv, numeric_grad(v, [&](const auto& x) { return f(q, k, x); }), 1e-7, 1e-6));
}

}  // namespace
}  // namespace ttt::test
