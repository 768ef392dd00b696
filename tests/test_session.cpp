// Sessions on one engine: documents interleaved mini-batch by mini-batch give
// exactly what each gives alone; TTT and no-TTT sessions share one engine's
// weights; the phases (forward, score, logits, train, sync) agree with step();
// misuse is an error naming the phase; each session costs only its own state;
// a state restored on another session continues the document, also from f16
// key/value rings.
#include "ttt/engine.hpp"
#include "ttt/error.hpp"
#include "ttt/params.hpp"
#include "ttt/safetensors.hpp"
#include "lib/engine/options.hpp"
#include "lib/ops/ops.hpp"
#include "tests/common.hpp"
#include "tests/model_fixtures.hpp"

#include "ttt/batch.hpp"
#include "ttt/opencl.hpp"
#include "host/program.hpp"
#include "host/runtime.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <cstring>
#include <thread>

namespace ttt::test {
namespace {

class SessionTest : public DeviceTest {};

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::vector<float> prime_values(const Model& m) {
  std::vector<float> v;
  int64_t n = 0;
  for (const TensorOut& t : m.prime_tensors()) {
    n = 1;
    for (auto d : t.shape) n *= d;
    v.insert(v.end(), t.data, t.data + n);
  }
  return v;
}

TEST_F(SessionTest, InterleavedDocumentsEqualEachAlone) {
  const Model m = Model::random(tiny_config(), 21, 0.3f);
  const int B = m.config.mini_batch_size;
  const auto doc_a = pattern_tokens(23, 23, 7, 3), doc_b = pattern_tokens(17, 23, 5, 1);
  Engine e(rt(), m);
  const auto alone_a = e.session().evaluate(doc_a);
  Model adapted_a = m;
  e.session().download_prime(adapted_a);
  const auto alone_b = e.session().evaluate(doc_b);

  Session a(e), b(e);
  std::vector<float> got_a, got_b;
  auto chunk = [&](Session& s, const std::vector<int32_t>& doc, std::vector<float>& out) {
    const size_t at = out.size(), n = std::min<size_t>(size_t(B), doc.size() - 1 - at);
    if (n == 0) return;
    s.forward({doc.data() + at, n});
    s.score({doc.data() + at + 1, n});
    s.train();
    const auto& nll = s.sync();
    out.insert(out.end(), nll.begin(), nll.end());
  };
  while (got_a.size() < doc_a.size() - 1 || got_b.size() < doc_b.size() - 1) {
    chunk(a, doc_a, got_a);
    chunk(b, doc_b, got_b);
  }
  EXPECT_TRUE(same_bits(got_a, alone_a));
  EXPECT_TRUE(same_bits(got_b, alone_b));
  EXPECT_EQ(a.position(), int64_t(doc_a.size() - 1));
  Model from_session = m;
  a.download_prime(from_session);
  EXPECT_TRUE(same_bits(prime_values(from_session), prime_values(adapted_a)));
}

TEST_F(SessionTest, StateRestoredOnAnotherSessionContinuesTheDocument) {
  const Model m = Model::random(tiny_config(), 24, 0.3f);
  const size_t B = size_t(m.config.mini_batch_size);
  const auto doc = pattern_tokens(int(5 * B + 3), 23, 7, 3);
  Engine e(rt(), m);
  const auto alone = e.session().evaluate(doc);
  // Two mini-batches (two test-time steps) on one session, the rest on another from its state.
  Session a(e), b(e);
  std::vector<float> got(doc.size() - 1);
  const std::span<const int32_t> d(doc);
  for (size_t s = 0; s < 2 * B; s += B) a.step(d.subspan(s, B), d.subspan(s + 1, B), std::span<float>(got).subspan(s, B));
  const SessionState st = a.state();
  EXPECT_EQ(st.position, int64_t(2 * B));
  EXPECT_EQ(st.keys.size(), size_t(m.config.num_hidden_layers));
  b.restore(st);
  EXPECT_EQ(b.position(), int64_t(2 * B));
  EXPECT_THROW(b.logits(0), Error) << "a restored session has no last forward";
  for (size_t s = 2 * B; s < got.size(); s += B) {
    const size_t n = std::min(B, got.size() - s);
    b.step(d.subspan(s, n), d.subspan(s + 1, n), std::span<float>(got).subspan(s, n));
  }
  EXPECT_TRUE(same_bits(got, alone));
  // A state for other ring sizes (another window) is refused, naming what differs.
  EngineOptions wide_opts;
  wide_opts.window = m.config.sliding_window_size * 2;
  Engine wide(rt(), m, wide_opts);
  Session c(wide);
  try {
    c.restore(st);
    ADD_FAILURE() << "a state of another window was restored";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("ring"), std::string::npos) << err.what();
  }
}

TEST_F(SessionTest, NoTttSessionSharesTheEngine) {
  const Model m = Model::random(tiny_config(), 22, 0.3f);
  const auto doc = pattern_tokens(19, 23);
  Engine plain(rt(), m, {.ttt = false, .inner_lr = std::nullopt});
  const auto want = plain.session().evaluate(doc);
  Engine e(rt(), m);
  Session off(e, {.ttt = false, .inner_lr = std::nullopt});
  EXPECT_FALSE(off.ttt());
  EXPECT_TRUE(same_bits(off.evaluate(doc), want));
  EXPECT_FALSE(same_bits(e.session().evaluate(doc), want)) << "the TTT session must differ once an update was taken";
  EXPECT_THROW(Session(plain, {.ttt = true, .inner_lr = std::nullopt}), Error);
}

TEST_F(SessionTest, LogitsAgreeWithScore) {
  Config c = tiny_config();
  c.tie_word_embeddings = false;  // the untied head takes the other GEMM layout
  for (bool tied : {true, false}) {
    c.tie_word_embeddings = tied;
    const Model m = Model::random(c, 23, 0.3f);
    Engine e(rt(), m);
    Session s(e);
    const auto doc = pattern_tokens(5, 23, 3, 4);
    s.forward({doc.data(), 4});
    s.score({doc.data() + 1, 4});
    const std::vector<float> nll = s.sync();
    for (int row = 0; row < 4; ++row) {
      const auto z = s.logits(row);
      ASSERT_EQ(z.size(), size_t(c.vocab_size));
      double mx = z[0], sum = 0;
      for (float v : z) mx = std::max(mx, double(v));
      for (float v : z) sum += std::exp(double(v) - mx);
      const double want = mx + std::log(sum) - z[size_t(doc[size_t(row) + 1])];
      EXPECT_NEAR(nll[size_t(row)], want, 1e-4) << "row " << row << (tied ? " tied" : " untied");
    }
  }
}

TEST_F(SessionTest, PhasesCheckTheirOrder) {
  const Model m = Model::random(tiny_config(), 24, 0.3f);
  Engine e(rt(), m);
  Session a(e), b(e);
  const auto doc = pattern_tokens(12, 23);
  auto error_of = [](auto f) {
    try {
      f();
    } catch (const Error& x) {
      return std::string(x.what());
    }
    return std::string();
  };
  EXPECT_NE(error_of([&] { a.score({doc.data(), 3}); }).find("no forward"), std::string::npos);
  a.forward({doc.data(), 5});
  EXPECT_NE(error_of([&] { a.train(); }).find("score the mini-batch first"), std::string::npos);
  b.forward({doc.data(), 5});
  EXPECT_NE(error_of([&] { a.score({doc.data() + 1, 5}); }).find("another session"), std::string::npos);
  EXPECT_NE(error_of([&] { b.score({doc.data() + 1, 4}); }).find("4 targets for a forward of 5"), std::string::npos);
  EXPECT_NE(error_of([&] { b.forward({doc.data(), 6}); }).find("expected 1..5"), std::string::npos);
  b.score({doc.data() + 1, 5});
  EXPECT_TRUE(b.train());
  EXPECT_NE(error_of([&] { b.train(); }).find("already took its step"), std::string::npos);
  b.sync();
  EXPECT_TRUE(b.last_step().updated);
  EXPECT_GT(b.last_step().grad_norm, 0.f);
  b.forward({doc.data() + 5, 3});  // a partial mini-batch only scores
  b.score({doc.data() + 6, 3});
  EXPECT_FALSE(b.train());
}

// Runtime::mark_progress: the device's way through a mini-batch is seen from
// the host as it goes (held back by a gate here, so the test sees it before and
// after), ending with the update; marking changes no number.
TEST_F(SessionTest, MarksNameTheMiniBatchAndPhaseTheDeviceHasPassed) {
  const Model m = Model::random(tiny_config(), 25, 0.3f);
  const auto doc = pattern_tokens(13, 23);
  Engine e(rt(), m);
  const std::vector<float> want = e.session().evaluate(doc);
  struct Off {
    Runtime& r;
    ~Off() { r.mark_progress(false); }
  } off{rt()};
  rt().mark_progress(true);
  EXPECT_TRUE(same_bits(e.session().evaluate(doc), want));
  EXPECT_EQ(rt().reached(), "") << "evaluate waited for its work: nothing is in flight";
  Session s(e);
  const int B = s.mini_batch(), L = m.config.num_hidden_layers, lowest = m.config.first_prime_block();
  cl_int err = CL_SUCCESS;
  cl_event gate = clCreateUserEvent(opencl::context(rt()), &err);
  ASSERT_EQ(err, CL_SUCCESS);
  ASSERT_EQ(clEnqueueBarrierWithWaitList(opencl::queue(rt()), 1, &gate, nullptr), CL_SUCCESS);
  s.forward({doc.data(), size_t(B)});
  s.score({doc.data() + 1, size_t(B)});
  ASSERT_TRUE(s.train());
  clFlush(opencl::queue(rt()));
  EXPECT_EQ(rt().reached(), "");
  ASSERT_EQ(clSetUserEventStatus(gate, CL_COMPLETE), CL_SUCCESS);
  const std::string last = fmt::format("tokens 0-{}: update done", B - 1);
  std::vector<std::string> seen;
  for (int i = 0; i < 400 && (seen.empty() || seen.back() != last); ++i) {
    const std::string r = rt().reached();
    if (!r.empty() && (seen.empty() || seen.back() != r)) seen.push_back(r);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  clReleaseEvent(gate);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back(), last);
  // Whatever was seen on the way is one of the pass's marks, in order.
  std::vector<std::string> marks;
  for (int l = 1; l <= L; ++l) marks.push_back(fmt::format("tokens 0-{}: forward, block {}/{} done", B - 1, l, L));
  marks.push_back(fmt::format("tokens 0-{}: loss done", B - 1));
  for (int k = 1; k <= L - lowest; ++k)
    marks.push_back(fmt::format("tokens 0-{}: backward, block {}/{} done", B - 1, k, L - lowest));
  marks.push_back(last);
  size_t at = 0;
  for (const std::string& r : seen) {
    while (at < marks.size() && marks[at] != r) ++at;
    EXPECT_LT(at, marks.size()) << "unexpected or out-of-order mark: " << r;
  }
  s.sync();
  EXPECT_EQ(rt().reached(), "");
  EXPECT_TRUE(s.last_step().updated);
}

// The compile progress ("3/12 attention") numbers every program an engine's
// sessions use: the engine plans them all in one batch, so scoring documents
// one at a time and batched, a one-token chunk (attention_decode) and a logits
// row ask for no program outside it, whatever the weight and key/value types.
TEST_F(SessionTest, EngineBatchPlansEveryProgramItsSessionsUse) {
  const Model m = Model::random(tiny_config(), 26, 0.3f);
  const int B = m.config.mini_batch_size;
  const auto doc = pattern_tokens(size_t(2 * B + 2), 23);  // chunks of B, B and 1
  for (const auto& [weights, kv] : {std::pair{DType::F32, DType::F32}, std::pair{DType::BF16, DType::F16},
                                    std::pair{DType::F16, DType::F32}}) {
    Runtime fresh = host::make_runtime(std::make_unique<host::Context>(test_device()));  // asks for every program anew
    const host::ProgramCache& programs = host::context(fresh).programs();
    EngineOptions eo;
    eo.weight_dtype = weights;
    eo.kv_dtype = kv;
    Engine e(fresh, m, eo);
    e.session().evaluate(doc);
    Session s(e, {.ttt = false, .inner_lr = std::nullopt});
    s.evaluate(doc);
    s.logits(0);
    BatchSession batch(e, 2);
    batch.evaluate({doc, std::span(doc).first(size_t(B + 3))});
    EXPECT_TRUE(programs.unplanned().empty())
        << dtype_name(weights) << " weights, " << dtype_name(kv) << " kv: built outside the engine's batch: "
        << fmt::format("{}", fmt::join(programs.unplanned(), "; "));
  }
}

// A session holds its rings (2 L C D floats), live prime weights and, when it
// trains, their gradients: nothing that depends on the document's length or
// on the number of other sessions.
// f16 rings: the state holds their values widened exactly (f32, each one an
// f16 number), restore() puts back the same bits (state -> restore -> state is
// the identity) and the restored session continues the document exactly; the
// rings take half the bytes; bf16 rings are refused.
TEST_F(SessionTest, F16RingsRoundTripThroughTheF32State) {
  const Model m = Model::random(tiny_config(), 24, 0.3f);
  const Config& c = m.config;
  const size_t B = size_t(c.mini_batch_size);
  const auto doc = pattern_tokens(int(5 * B + 3), 23, 7, 3);
  EngineOptions o16;
  o16.kv_dtype = DType::F16;
  Engine e(rt(), m, o16), e32(rt(), m);
  EXPECT_EQ(e.kv_dtype(), DType::F16);
  EXPECT_EQ(e32.kv_dtype(), DType::F32);
  const auto alone = e.session().evaluate(doc);
  Session a(e), b(e);
  std::vector<float> got(doc.size() - 1);
  const std::span<const int32_t> d(doc);
  for (size_t s = 0; s < 2 * B; s += B)
    a.step(d.subspan(s, B), d.subspan(s + 1, B), std::span<float>(got).subspan(s, B));
  const SessionState st = a.state();
  size_t nonzero = 0;
  for (const auto* rings : {&st.keys, &st.values})
    for (const auto& ring : *rings)
      for (float x : ring) {
        ASSERT_EQ(f16_to_f32(f32_to_f16(x)), x) << "a ring value that is no f16 number";
        nonzero += x != 0.f;
      }
  EXPECT_GT(nonzero, size_t(0));
  b.restore(st);
  const SessionState back = b.state();
  for (size_t l = 0; l < st.keys.size(); ++l) {
    EXPECT_TRUE(same_bits(back.keys[l], st.keys[l])) << "block " << l;
    EXPECT_TRUE(same_bits(back.values[l], st.values[l])) << "block " << l;
  }
  for (size_t s = 2 * B; s < got.size(); s += B) {
    const size_t n = std::min(B, got.size() - s);
    b.step(d.subspan(s, n), d.subspan(s + 1, n), std::span<float>(got).subspan(s, n));
  }
  EXPECT_TRUE(same_bits(got, alone));
  // Half the ring bytes: a no-TTT session is its rings and its prime weights.
  const size_t C = size_t(c.sliding_window_size + c.mini_batch_size - 1);
  const size_t rings = 2 * size_t(c.num_hidden_layers) * C * size_t(c.hidden_size);
  Session off16(e, {.ttt = false, .inner_lr = std::nullopt}), off32(e32, {.ttt = false, .inner_lr = std::nullopt});
  EXPECT_EQ(off32.device_bytes() - off16.device_bytes(), rings * 2);
  EXPECT_LT(e.device_bytes(), e32.device_bytes());
  EngineOptions bf;
  bf.kv_dtype = DType::BF16;
  EXPECT_THROW(Engine(rt(), m, bf), Error);
}

TEST_F(SessionTest, EachSessionCostsOnlyItsOwnState) {
  const Model m = Model::random(tiny_config(), 25, 0.3f);
  const Config& c = m.config;
  Engine e(rt(), m);
  const size_t C = size_t(c.sliding_window_size + c.mini_batch_size - 1);
  size_t prime = 0;
  int trainable = 0;
  for (const DeviceTensor& d : param_table(c).device)
    if (d.trainable) prime += size_t(d.size()), ++trainable;
  ASSERT_EQ(trainable, 2 * c.num_prime_blocks());  // W13 and W2 of each prime MLP
  const size_t rings = 2 * size_t(c.num_hidden_layers) * C * size_t(c.hidden_size);
  Session s(e), off(e, {.ttt = false, .inner_lr = std::nullopt});
  // + the norm partials and the gradient and weight statistics (3 floats each)
  EXPECT_EQ(s.device_bytes(), (rings + 2 * prime + size_t(ops::sgd_partials(trainable)) + 6) * sizeof(float));
  // A session without test-time training reads the engine's prime weights: no copies, no gradients.
  EXPECT_EQ(off.device_bytes(), rings * sizeof(float));
  EXPECT_EQ(e.session_bytes(), s.device_bytes());
  Engine plain(rt(), m, {.ttt = false, .inner_lr = std::nullopt});
  EXPECT_EQ(plain.session_bytes(), rings * sizeof(float));
  size_t sum = 0;
  for (const auto& [part, n] : device_parts(plain)) {
    sum += n;
    EXPECT_TRUE(part.find("prime") == std::string::npos || n == 0) << part << ": " << n << " bytes";
  }
  EXPECT_EQ(sum, plain.device_bytes());
  const size_t before = e.device_bytes();
  {
    Session extra(e);
    EXPECT_EQ(e.device_bytes(), before);  // the engine's own bytes do not grow
  }
}

// A session without test-time training holds its own prime weights only while
// a restored state gives it weights other than the engine's; it continues a
// document as a no-TTT engine holding those weights does.
TEST_F(SessionTest, NoTttSessionCopiesPrimeWeightsOnlyWhenRestoredWithOthers) {
  Model m = Model::random(tiny_config(), 26, 0.3f);
  const Config& c = m.config;
  const size_t B = size_t(c.mini_batch_size);
  const auto doc = pattern_tokens(int(4 * B + 3), 23, 7, 3);
  const std::span<const int32_t> d(doc);
  const size_t rings = 2 * size_t(c.num_hidden_layers) * size_t(c.sliding_window_size + B - 1) * size_t(c.hidden_size);
  size_t prime = 0;
  for (const DeviceTensor& t : param_table(c).device)
    if (t.trainable) prime += size_t(t.size());
  Engine e(rt(), m);
  Session a(e), fresh(e), off(e, {.ttt = false, .inner_lr = std::nullopt});
  std::vector<float> got(doc.size() - 1), want(doc.size() - 1);
  for (size_t s = 0; s < 2 * B; s += B) a.step(d.subspan(s, B), d.subspan(s + 1, B), std::span<float>(got).subspan(s, B));
  const SessionState adapted = a.state(), own = off.state();
  ASSERT_EQ(own.prime.size(), fresh.state().prime.size());
  for (size_t k = 0; k < own.prime.size(); ++k)
    EXPECT_TRUE(same_bits(own.prime[k], fresh.state().prime[k])) << "the engine's weights, as a session starts from them";
  off.restore(own);
  EXPECT_EQ(off.device_bytes(), rings * sizeof(float)) << "its own state: still the engine's weights";
  off.restore(adapted);
  EXPECT_EQ(off.device_bytes(), (rings + prime) * sizeof(float));
  for (size_t k = 0; k < adapted.prime.size(); ++k) EXPECT_TRUE(same_bits(off.state().prime[k], adapted.prime[k]));
  // The same continuation from a no-TTT engine whose weights are the adapted ones (then no copy either).
  a.download_prime(m);
  Engine plain(rt(), m, {.ttt = false, .inner_lr = std::nullopt});
  Session& p = plain.session();
  p.restore(adapted);
  EXPECT_EQ(p.device_bytes(), rings * sizeof(float));
  for (size_t s = 2 * B; s < got.size(); s += B) {
    const size_t n = std::min(B, got.size() - s);
    off.step(d.subspan(s, n), d.subspan(s + 1, n), std::span<float>(got).subspan(s, n));
    p.step(d.subspan(s, n), d.subspan(s + 1, n), std::span<float>(want).subspan(s, n));
  }
  EXPECT_TRUE(same_bits(std::vector<float>(got.begin() + 2 * B, got.end()),
                        std::vector<float>(want.begin() + 2 * B, want.end())));
  off.reset();
  EXPECT_EQ(off.device_bytes(), rings * sizeof(float)) << "reset goes back to the engine's weights";
}

// The engine's scratch of one mini-batch: blocks whose activations are not kept
// share the first kept set (no set of their own), no set keeps the normed
// inputs and gates (ForwardOnly), and the test-time backward's scratch lives in
// memory dead while it runs, all but dL/d(final norm). Numbers stay the same:
// the golden, paths and interleaving tests.
TEST_F(SessionTest, EngineScratchSharesWhatLifetimesAllow) {
  const Model m = Model::random(tiny_config(), 27, 0.3f);
  const Config& c = m.config;
  const size_t B = size_t(c.mini_batch_size), D = size_t(c.hidden_size), H = size_t(c.num_attention_heads),
               I = size_t(c.intermediate_size), S = size_t(c.num_prime_blocks());
  ASSERT_GT(S, size_t(0));
  auto part = [](const Engine& e, const std::string& name) {
    for (const auto& [p, n] : device_parts(e))
      if (p == name) return n;
    return size_t(0);
  };
  const size_t attn = 7 * D + 3 * H + 2, mlp = D + 2 * I + 2, fwd_only = D + I;  // floats per row, kept
  Engine e(rt(), m), plain(rt(), m, {.ttt = false, .inner_lr = std::nullopt});
  EXPECT_EQ(part(e, "activations"), B * (S * (attn + 2 * mlp) + fwd_only) * sizeof(float));
  EXPECT_EQ(part(plain, "activations"), B * (attn + mlp + fwd_only) * sizeof(float));
  const size_t all = B * (9 * D + 3 * I + H) * sizeof(float);  // dx, dhf, dm, dg, dh13, dhn, dqkv, dq, dk, dsum
  EXPECT_GE(part(e, "backward scratch"), B * D * sizeof(float));
  EXPECT_LT(part(e, "backward scratch"), all / 2);
  EXPECT_EQ(part(plain, "backward scratch"), size_t(0));
}

// Forwards with no sync() in between (one token at a time, two sessions on two
// engines interleaved, as a decoder or a Python session may call them): each
// forward's ids and positions are staged until the queue has read them, so the
// logits equal those of the same tokens forwarded as one chunk. (The staging
// was overwritten by the next forward while its transfer was still queued: the
// logits came out wrong now and then.)
TEST_F(SessionTest, ForwardsWithoutSyncKeepTheirInputs) {
  const Model m = Model::random(tiny_config(), 41, 0.3f);
  const auto t = pattern_tokens(5, m.config.vocab_size, 7, 2);
  Engine ref_engine(rt(), m);
  Session& ref = ref_engine.session();
  ref.forward(t);
  const auto want = ref.logits(int(t.size()) - 1);
  for (int round = 0; round < 6; ++round) {
    Engine e1(rt(), m), e2(rt(), m);
    Session &a = e1.session(), &b = e2.session();
    for (size_t i = 0; i < t.size(); ++i) {
      a.forward({&t[i], 1});
      b.forward({&t[i], 1});
    }
    const auto la = a.logits(0), lb = b.logits(0);
    EXPECT_TRUE(all_close(la, std::vector<double>(want.begin(), want.end()), 1e-5, 1e-5)) << "round " << round;
    EXPECT_TRUE(all_close(lb, std::vector<double>(want.begin(), want.end()), 1e-5, 1e-5)) << "round " << round;
  }
}

}  // namespace
}  // namespace ttt::test
