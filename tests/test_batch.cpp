// Batched sessions: N documents of different lengths (shorter than B, exactly
// B + 1, several mini-batches, BOS targets that change a slot's token count)
// scored together give each document's one-at-a-time NLLs to 1e-5, with and
// without test-time training, for 1, 2 and 3 slots; finished slots take the
// next document; done() reports each document once.
#include "ttt/batch.hpp"
#include "ttt/engine.hpp"
#include "ttt/error.hpp"
#include "tests/common.hpp"
#include "tests/model_fixtures.hpp"

#include <map>

namespace ttt::test {
namespace {

class BatchTest : public DeviceTest, public ::testing::WithParamInterface<int> {};

std::vector<std::vector<int32_t>> documents(int vocab) {
  // B = 5 in the tiny config: 2 tokens (1 prediction), 4, 6 (= B + 1), 23, 17, 11, 31; pattern tokens
  // hit BOS as a target now and then, so slots' loss counts differ.
  const size_t lengths[] = {23, 2, 17, 4, 6, 11, 31};
  std::vector<std::vector<int32_t>> docs;
  size_t k = 0;
  for (size_t n : lengths) {
    docs.push_back(pattern_tokens(n, vocab, 5 + 2 * k, k));
    ++k;
  }
  // All targets BOS (2 in the tiny config): a full chunk with nothing to learn from, beside slots that learn.
  docs.push_back(std::vector<int32_t>(12, 2));
  return docs;
}

void check_batch(Runtime& rt, bool ttt_on, int slots) {
  const Model m = Model::random(tiny_config(), 21, 0.3f);
  EngineOptions eo;
  eo.ttt = ttt_on;
  Engine e(rt, m, eo);
  const auto docs = documents(m.config.vocab_size);
  std::vector<std::span<const int32_t>> spans;
  for (const auto& d : docs) spans.emplace_back(d);
  BatchSession b(e, slots);
  const auto got = b.evaluate(spans);
  ASSERT_EQ(got.size(), docs.size());
  for (size_t i = 0; i < docs.size(); ++i) {
    const auto alone = e.session().evaluate(docs[i]);
    std::vector<double> want(alone.begin(), alone.end());
    EXPECT_TRUE(all_close(got[i], want, 1e-5, 0)) << "document " << i << " (" << docs[i].size() << " tokens), "
                                                  << slots << " slots, ttt " << ttt_on;
  }
}

TEST_P(BatchTest, EqualsOneDocumentAtATimeWithTtt) { check_batch(rt(), true, GetParam()); }
TEST_P(BatchTest, EqualsOneDocumentAtATimeWithoutTtt) { check_batch(rt(), false, GetParam()); }

INSTANTIATE_TEST_SUITE_P(Slots, BatchTest, ::testing::Values(1, 2, 3),
                         [](const auto& i) { return "N" + std::to_string(i.param); });

TEST_F(BatchTest, FinishedSlotsTakeTheNextDocumentAndEachIsReportedOnce) {
  const Model m = Model::random(tiny_config(), 22, 0.3f);
  Engine e(rt(), m);
  const auto docs = documents(m.config.vocab_size);
  BatchSession b(e, 2);
  size_t next = 0, scored = 0;
  std::vector<int> seen(docs.size(), 0);
  std::vector<size_t> order;
  b.run([&]() -> std::optional<BatchDocument> {
          if (next == docs.size()) return std::nullopt;
          ++next;
          return BatchDocument{next - 1, docs[next - 1]};
        },
        [&](size_t i, std::vector<float> nll) {
          ++seen[i];
          order.push_back(i);
          EXPECT_EQ(nll.size(), docs[i].size() - 1);
        },
        [&](size_t n) { scored += n; });
  size_t total = 0;
  for (const auto& d : docs) total += d.size() - 1;
  EXPECT_EQ(scored, total);
  for (int s : seen) EXPECT_EQ(s, 1);
  EXPECT_EQ(order[0], 1u) << "the 2-token document finishes first, while the 23-token one is still running";
}

TEST_F(BatchTest, StopCutsEveryDocumentInFlightAfterTheStep) {
  // B = 5: documents of 23 and 17 tokens in two slots, stopped after the second step. Both are cut
  // there with their first 10 NLLs (the whole run's prefix), none is reported done, and the batch
  // takes no further document; the same session then scores a whole run as before.
  const Model m = Model::random(tiny_config(), 24, 0.3f);
  Engine e(rt(), m);
  const auto docs = documents(m.config.vocab_size);
  const std::vector<std::span<const int32_t>> two = {docs[0], docs[2], docs[4]};
  BatchSession b(e, 2);
  const auto whole = b.evaluate(two);
  size_t next = 0, steps = 0, done = 0;
  std::map<size_t, std::vector<float>> cut;
  b.run([&]() -> std::optional<BatchDocument> {
          if (next == two.size()) return std::nullopt;
          ++next;
          return BatchDocument{next - 1, two[next - 1]};
        },
        [&](size_t, std::vector<float>) { ++done; }, [&](size_t) { ++steps; }, [&] { return steps == 2; },
        [&](size_t i, std::vector<float> nll) { cut[i] = std::move(nll); });
  EXPECT_EQ(steps, 2u);
  EXPECT_EQ(done, 0u);
  EXPECT_EQ(next, 2u) << "no document taken after the stop";
  ASSERT_EQ(cut.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    ASSERT_EQ(cut[i].size(), 10u) << "document " << i;
    const std::vector<double> want(whole[i].begin(), whole[i].begin() + 10);
    EXPECT_TRUE(all_close(cut[i], want, 1e-6, 0)) << "document " << i;
  }
  const auto again = b.evaluate(two);
  for (size_t i = 0; i < two.size(); ++i) EXPECT_EQ(again[i], whole[i]) << "document " << i << " after a stopped run";
}

TEST_F(BatchTest, RejectsBadDocumentsAndSlotCounts) {
  const Model m = Model::random(tiny_config(), 23, 0.3f);
  Engine e(rt(), m);
  EXPECT_THROW(BatchSession(e, 0), Error);
  BatchSession b(e, 2);
  const std::vector<int32_t> one = {1}, bad = {1, 99};
  EXPECT_THROW(b.evaluate({std::span<const int32_t>(one)}), Error);
  EXPECT_THROW(b.evaluate({std::span<const int32_t>(bad)}), Error);
}

}  // namespace
}  // namespace ttt::test
