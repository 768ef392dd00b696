// The link-boundary check: this program links only the CPU layers (format,
// tokenizer, reference, report, and generate's sampling part ttt_sampling: the
// sampler and the text stream) and is compiled with a poisoned <CL/cl.h> first
// on its include path, so it builds only while none of them needs OpenCL. Run,
// it scores the golden "tiny" case with the reference model and checks the NLLs.
#include "lib/reference/model.hpp"
#include "ttt/model.hpp"
#include "ttt/report.hpp"
#include "ttt/sampling.hpp"
#include "ttt/tokenizer.hpp"

#include <cmath>
#include <cstdio>
#include <fstream>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s GOLDEN_CASE_DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  ttt::Model m = ttt::Model::load(dir);
  std::ifstream tf(dir + "/tokens.txt"), nf(dir + "/nll_ttt.txt");
  std::vector<int32_t> tokens;
  for (long long x; tf >> x;) tokens.push_back(int32_t(x));
  ttt::ref::RefModel<double> r(m);
  const std::vector<double> nll = r.evaluate(tokens, true);
  double max_diff = 0, want;
  size_t n = 0;
  for (; nf >> want && n < nll.size(); ++n) max_diff = std::max(max_diff, std::abs(nll[n] - want));
  const ttt::PplStats s = ttt::ppl_stats(std::vector<float>(nll.begin(), nll.end()));
  const std::string text = "link boundary";
  const auto bytes = ttt::Tokenizer::bytes();
  ttt::TextStream stream;
  const bool round_trip = bytes.decode(bytes.encode(text)) == text && stream.push(text) == text &&
                          ttt::Sampler().sample(std::vector<float>{0.f, 1.f}, {}) == 1;
  std::printf("%zu NLLs, max |diff| vs golden %.3g, PPL %.4f, byte tokenizer round trip %s\n", n, max_diff, s.ppl,
              round_trip ? "ok" : "FAILED");
  return n == nll.size() && n > 0 && max_diff < 1e-5 && round_trip ? 0 : 1;
}
