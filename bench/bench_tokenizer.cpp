// bench-tokenizer: encoding speed of each vocabulary and file format on the
// test corpus (or given files). Prints a JSON array, one object per tokenizer;
// "seconds"/"mb_per_s" are a first pass on a fresh tokenizer (empty word
// cache), "warm_*" the best later pass, MB = 10^6 bytes.
#include "ttt/error.hpp"
#include "ttt/tokenizer.hpp"

#include <boost/program_options.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
namespace po = boost::program_options;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw ttt::Error(path + ": cannot open");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Every file under the given paths (directories are walked, sorted, hidden
// files skipped).
std::vector<std::string> collect(const std::vector<std::string>& paths) {
  std::vector<std::string> files;
  for (const auto& p : paths) {
    if (fs::is_directory(p)) {
      std::vector<std::string> in_dir;
      for (const auto& e : fs::recursive_directory_iterator(p))
        if (e.is_regular_file() && e.path().filename().string()[0] != '.') in_dir.push_back(e.path().string());
      std::sort(in_dir.begin(), in_dir.end());
      files.insert(files.end(), in_dir.begin(), in_dir.end());
    } else if (fs::exists(p)) {
      files.push_back(p);
    } else {
      throw ttt::Error(p + ": no such file or directory");
    }
  }
  if (files.empty()) throw ttt::Error("no input files");
  return files;
}

}  // namespace

int main(int argc, char** argv) {
  po::options_description opts(
      "Usage: bench-tokenizer [--fixtures DIR] [--repeat N] [FILE|DIR ...]\n\n"
      "Encodes the files (default: the tokenizer test corpus) with the llama3 and gpt2 vocabularies from\n"
      "both tokenizer.json and tokenizer.model, and prints the throughput as JSON.\n\nOptions");
  opts.add_options()("help,h", "print this help and exit")  //
      ("fixtures", po::value<std::string>()->default_value(TTT_TOKENIZER_FIXTURES),
       "directory holding llama3/ and gpt2/ with tokenizer.json and tokenizer.model")  //
      ("repeat", po::value<int>()->default_value(3), "passes per tokenizer: the first cold, the rest warm")  //
      ("input", po::value<std::vector<std::string>>(), "files or directories to encode");
  po::positional_options_description pos;
  pos.add("input", -1);
  try {
    po::variables_map vm;
    po::store(po::command_line_parser(argc, argv).options(opts).positional(pos).run(), vm);
    po::notify(vm);
    if (vm.count("help")) {
      std::cout << opts << "\n";
      return 0;
    }
    const int repeat = std::max(1, vm["repeat"].as<int>());
    const std::string fixtures = vm["fixtures"].as<std::string>();
    if (!fs::is_directory(fixtures)) throw ttt::Error(fixtures + ": no tokenizer fixtures there (see --fixtures)");
    const auto files = collect(vm.count("input") ? vm["input"].as<std::vector<std::string>>()
                                                 : std::vector<std::string>{TTT_TOKENIZER_CORPUS});
    std::vector<std::string> texts;
    size_t bytes = 0;
    for (const auto& f : files) {
      texts.push_back(read_file(f));
      bytes += texts.back().size();
    }

    nlohmann::json out = nlohmann::json::array();
    for (const char* vocab : {"llama3", "gpt2"}) {
      for (const char* file : {"tokenizer.json", "tokenizer.model"}) {
        const std::string path = (fs::path(fixtures) / vocab / file).string();
        double t0 = now();
        const ttt::Tokenizer tok = ttt::Tokenizer::from_file(path);
        const double load = now() - t0;
        double cold = 0, warm = 1e30;
        size_t tokens = 0;
        for (int r = 0; r < repeat; ++r) {
          tokens = 0;
          t0 = now();
          for (const auto& t : texts) tokens += tok.encode(t).size();
          const double dt = now() - t0;
          if (r == 0) cold = dt;
          else warm = std::min(warm, dt);
        }
        nlohmann::json j = {{"tokenizer", fmt::format("{}/{}", vocab, file)},
                            {"bytes", bytes},
                            {"tokens", tokens},
                            {"seconds", cold},
                            {"mb_per_s", bytes / cold / 1e6},
                            {"load_seconds", load}};
        if (repeat > 1) {
          j["warm_seconds"] = warm;
          j["warm_mb_per_s"] = bytes / warm / 1e6;
        }
        out.push_back(j);
      }
    }
    std::cout << "[\n";
    for (size_t i = 0; i < out.size(); ++i) std::cout << "  " << out[i].dump() << (i + 1 < out.size() ? ",\n" : "\n");
    std::cout << "]\n";
    return 0;
  } catch (const po::error& e) {
    std::cerr << "bench-tokenizer: error: " << e.what() << " (see --help)\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "bench-tokenizer: error: " << e.what() << "\n";
    return 1;
  }
}
