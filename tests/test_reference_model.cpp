// The CPU reference model (double precision) against the golden cases of an
// independent implementation: NLL with and without test-time training, and
// the prime weights after the last update. This pins down the semantics that
// every device test then compares against.
#include "lib/reference/model.hpp"
#include "tests/common.hpp"
#include "tests/model_fixtures.hpp"

namespace ttt::test {
namespace {

class ReferenceGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(ReferenceGolden, NllWithoutTtt) {
  const std::string dir = golden_dir(GetParam());
  Model m = Model::load(dir);
  ref::RefModel<double> r(m);
  auto nll = r.evaluate(read_ints(dir + "/tokens.txt"), false);
  EXPECT_TRUE(all_close(nll, read_doubles(dir + "/nll_no_ttt.txt"), 1e-5, 0));
}

TEST_P(ReferenceGolden, NllWithTttAndPrimeAfter) {
  const std::string dir = golden_dir(GetParam());
  Model m = Model::load(dir);
  ref::RefModel<double> r(m);
  auto nll = r.evaluate(read_ints(dir + "/tokens.txt"), true);
  EXPECT_TRUE(all_close(nll, read_doubles(dir + "/nll_ttt.txt"), 1e-5, 0));
  Model after = m;
  load_prime_weights(after, dir + "/prime_after.safetensors");
  auto params = r.prime_params();
  auto want = after.prime_tensors();
  ASSERT_EQ(params.size(), want.size());
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_LT(rel_l2(*params[i], want[i].data), 1e-5) << want[i].name;
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, ReferenceGolden, ::testing::ValuesIn(golden_cases()), golden_case_name);

}  // namespace
}  // namespace ttt::test
