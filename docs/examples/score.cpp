// Scores a text file with a TTT-E2E model through the installed library:
//   score MODEL_DIR TEXT_FILE   ->   "N tokens, PPL = x +/- err"
// Build: see CMakeLists.txt beside it, or
//   g++ -std=c++20 score.cpp $(pkg-config --cflags --libs tttcl) -o score
#include <ttt/engine.hpp>
#include <ttt/report.hpp>
#include <ttt/tokenizer.hpp>

#include <cstdio>
#include <fstream>
#include <iterator>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s MODEL_DIR TEXT_FILE\n", argv[0]);
    return 2;
  }
  try {
    const ttt::Model model = ttt::Model::load(argv[1]);
    const ttt::Tokenizer tokenizer = ttt::Tokenizer::for_model(argv[1], model.config);
    std::ifstream file(argv[2], std::ios::binary);
    if (!file) throw ttt::Error(std::string(argv[2]) + ": cannot open");
    const std::string text{std::istreambuf_iterator<char>(file), {}};
    std::vector<int32_t> ids;
    if (model.config.bos_token_id >= 0) ids.push_back(model.config.bos_token_id);
    for (int32_t id : tokenizer.encode(text)) ids.push_back(id);

    ttt::Runtime device;                // --device rules: $TTT_DEVICE, first GPU, first device
    ttt::Engine engine(device, model);  // test-time training on, as configured
    const ttt::PplStats s = ttt::ppl_stats(engine.session().evaluate(ids));
    std::printf("%zu tokens, PPL = %.4f +/- %.5f\n", s.count, s.ppl, s.ppl_err);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "score: error: %s\n", e.what());
    return 1;
  }
}
