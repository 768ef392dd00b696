// S-NIAH's shared pieces (lib/eval/niah): sentences, needle values, prompts
// (length, needle placement by depth, the same prompt for the same seed) and
// the heat map, on the byte tokenizer.
#include "lib/eval/niah.hpp"

#include <gtest/gtest.h>

#include <regex>

namespace ttt::niah {
namespace {

std::string text_of(const Tokenizer& tok, const std::vector<int32_t>& ids) { return tok.decode(ids); }

TEST(Niah, SentencesKeepTheirWhiteSpaceAndSplitOnlyBetweenSentences) {
  const auto s = sentences("One. Two!  Three? 3.5 is a number\nlast");
  ASSERT_EQ(s.size(), 5u);
  EXPECT_EQ(s[0], "One. ");
  EXPECT_EQ(s[1], "Two!  ");
  EXPECT_EQ(s[2], "Three? ");
  EXPECT_EQ(s[3], "3.5 is a number\n");
  EXPECT_EQ(s[4], "last ");
}

TEST(Niah, NeedleValuesHaveTheirShapes) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 20; ++i) {
    EXPECT_TRUE(std::regex_match(needle_value(1, rng), std::regex("[1-9][0-9]{4}")));
    EXPECT_TRUE(std::regex_match(needle_value(2, rng), std::regex("[1-9][0-9]{6}")));
    EXPECT_TRUE(std::regex_match(needle_value(3, rng),
                                 std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")));
  }
  EXPECT_EQ(prompt_seed(1, 2, 1024, 0.5, 3), prompt_seed(1, 2, 1024, 0.5, 3));
  EXPECT_NE(prompt_seed(1, 2, 1024, 0.5, 3), prompt_seed(1, 2, 1024, 0.5, 4));
  EXPECT_NE(prompt_seed(1, 2, 1024, 0.5, 3), prompt_seed(1, 2, 1024, 0.75, 3));
}

TEST(Niah, PromptsFitTheContextWithTheNeedleAtItsDepth) {
  const Tokenizer tok = Tokenizer::bytes();
  const PromptBuilder b(tok, kFiller, -1);
  ASSERT_FALSE(b.empty());
  for (const Needle& n : kNeedles)
    for (double depth : {0.0, 0.5, 1.0}) {
      std::mt19937_64 rng(prompt_seed(0, n.id, 600, depth, 0));
      const Prompt p = b.make(n, 600, depth, rng);
      EXPECT_LE(p.ids.size(), 600u);
      EXPECT_GT(p.ids.size(), 600u - 40);  // within a sentence of it
      EXPECT_EQ(p.answer_tokens, int(p.answer.size()) + 1);  // " answer" in bytes
      const std::string text = text_of(tok, p.ids), needle = b.needle_text(n, p.answer);
      ASSERT_EQ(text.rfind(b.prefix(n), 0), 0u) << text.substr(0, 80);
      const size_t at = text.find(needle);
      ASSERT_NE(at, std::string::npos);
      const size_t hay_begin = b.prefix(n).size(), hay_end = text.size() - b.question(n).size();
      ASSERT_EQ(text.substr(hay_end), b.question(n));
      const double where = double(at - hay_begin) / double(hay_end - hay_begin - needle.size());
      EXPECT_NEAR(where, depth, 0.06) << "S-NIAH-" << n.id << " at depth " << depth;
      std::mt19937_64 again(prompt_seed(0, n.id, 600, depth, 0));
      EXPECT_EQ(b.make(n, 600, depth, again).ids, p.ids);  // the same prompt in every mode
    }
  EXPECT_TRUE(is_answer(" 12345\n", "12345"));
  EXPECT_FALSE(is_answer("12345.", "12345"));
}

TEST(Niah, HeatMapHasACellPerContextAndDepthInEachPanel) {
  std::vector<Cell> cells = {{Mode::ttt, 1, 1024, 0.0, 4, 3, 4000}, {Mode::ttt, 2, 1024, 0.0, 4, 1, 4000},
                             {Mode::ttt, 1, 2048, 0.5, 4, 4, 8000}, {Mode::swa, 1, 1024, 0.0, 4, 0, 4000}};
  const std::string svg = heat_map_svg(cells, {Mode::ttt, Mode::swa}, {1024, 2048}, {0.0, 0.5}, "a <title> & more");
  auto count = [&](const std::string& what) {
    size_t n = 0;
    for (size_t at = svg.find(what); at != std::string::npos; at = svg.find(what, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("<rect class=\"cell\""), 8u);  // 2 panels of 2 x 2
  EXPECT_EQ(count("class=\"panel\""), 2u);
  EXPECT_NE(svg.find("ttt: context 1024, depth 0: 4/8 correct"), std::string::npos);  // both needles
  EXPECT_NE(svg.find(">50%<"), std::string::npos);
  EXPECT_NE(svg.find("ttt: context 2048, depth 0.5: 4/4 correct"), std::string::npos);
  EXPECT_NE(svg.find("swa: context 2048, depth 0.5: 0/0 correct"), std::string::npos);  // nothing scored: "-"
  EXPECT_NE(svg.find("a &lt;title&gt; &amp; more"), std::string::npos);
  EXPECT_NE(svg.find(">1K<"), std::string::npos);
}

}  // namespace
}  // namespace ttt::niah
