// ttt-tokenize: text on stdin -> token ids on stdout (one line, separated by
// spaces), or with --decode token ids on stdin -> the text, byte for byte.
// The tokenizer comes from a model directory (-m) or a tokenizer file.
#include "ttt/error.hpp"
#include "ttt/config.hpp"
#include "ttt/tokenizer.hpp"

#include <boost/program_options.hpp>

#include <charconv>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace po = boost::program_options;

namespace {

std::string read_stdin() {
  std::ostringstream ss;
  ss << std::cin.rdbuf();
  if (std::cin.bad()) throw ttt::Error("cannot read stdin");
  return ss.str();
}

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  size_t i = 0, word = 0;
  while (true) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    if (i == s.size()) break;
    size_t end = i;
    while (end < s.size() && !std::isspace(static_cast<unsigned char>(s[end]))) ++end;
    ++word;
    int32_t id = 0;
    const auto [p, ec] = std::from_chars(s.data() + i, s.data() + end, id);
    if (ec != std::errc() || p != s.data() + end)
      throw ttt::Error("stdin: \"" + s.substr(i, std::min<size_t>(end - i, 40)) + "\" (word " + std::to_string(word) +
                       ") is not a token id");
    ids.push_back(id);
    i = end;
  }
  return ids;
}

ttt::Tokenizer open_tokenizer(const po::variables_map& vm) {
  namespace fs = std::filesystem;
  if (vm.count("tokenizer")) return ttt::Tokenizer::from_file(vm["tokenizer"].as<std::string>());
  const std::string dir = vm["model"].as<std::string>();
  if (!fs::is_directory(dir)) throw ttt::Error(dir + ": not a directory (-m takes a model directory)");
  // A directory holding only a tokenizer is fine: without config.json nothing
  // selects the byte tokenizer and no vocab_size is checked.
  const std::string config_path = (fs::path(dir) / "config.json").string();
  const ttt::Config config = fs::exists(config_path) ? ttt::Config::load(config_path) : ttt::Config{};
  return ttt::Tokenizer::for_model(dir, config);
}

}  // namespace

int main(int argc, char** argv) {
  std::ios::sync_with_stdio(false);
  po::options_description opts(
      "Usage: ttt-tokenize (-m MODEL_DIR | --tokenizer FILE) [--decode] [--parse-special] < input > output\n\n"
      "Encodes the text on stdin into token ids, written on one line separated by spaces. With --decode it\n"
      "reads token ids and writes the text they stand for. Any bytes encode, invalid UTF-8 included, and\n"
      "decoding gives them back exactly. No BOS token is added.\n\nOptions");
  opts.add_options()                                      //
      ("help,h", "print this help and exit")              //
      ("model,m", po::value<std::string>()->value_name("DIR"),
       "model directory: \"tokenizer\": \"bytes\" in its config.json selects the byte tokenizer (ids 0..255 "
       "are the bytes); otherwise DIR/tokenizer.json, else DIR/tokenizer.model")  //
      ("tokenizer,t", po::value<std::string>()->value_name("FILE"),
       "tokenizer file: an HF tokenizer.json (byte-level BPE) or a tiktoken rank file (tokenizer.model) of "
       "the Llama-3 or GPT-2 size, which gets that family's regex and special tokens")  //
      ("decode,d", "read token ids (integers separated by white space) from stdin and write their text")  //
      ("parse-special",
       "turn special-token strings in the text, such as <|begin_of_text|>, into their ids; without it they "
       "are encoded as plain text, so a document cannot inject control tokens");
  try {
    po::variables_map vm;
    po::store(po::command_line_parser(argc, argv).options(opts).run(), vm);
    po::notify(vm);
    if (vm.count("help")) {
      std::cout << opts << "\n";
      return 0;
    }
    if (vm.count("model") == vm.count("tokenizer"))
      throw ttt::Error("give exactly one of -m/--model DIR and --tokenizer FILE (see --help)");
    if (vm.count("decode") && vm.count("parse-special"))
      throw ttt::Error("--parse-special only applies to encoding; decoding always writes special tokens as text");

    const ttt::Tokenizer tok = open_tokenizer(vm);
    const std::string input = read_stdin();
    if (vm.count("decode")) {
      const std::string text = tok.decode(parse_ids(input));
      std::cout.write(text.data(), std::streamsize(text.size()));
    } else {
      const std::vector<int32_t> ids = tok.encode(input, vm.count("parse-special") > 0);
      std::string line;
      line.reserve(ids.size() * 7 + 1);
      char buf[16];
      for (size_t i = 0; i < ids.size(); ++i) {
        if (i) line += ' ';
        line.append(buf, std::to_chars(buf, buf + sizeof buf, ids[i]).ptr);
      }
      line += '\n';
      std::cout.write(line.data(), std::streamsize(line.size()));
    }
    std::cout.flush();
    if (!std::cout) throw ttt::Error("cannot write to stdout");
    return 0;
  } catch (const po::error& e) {
    std::cerr << "ttt-tokenize: error: " << e.what() << " (see --help)\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "ttt-tokenize: error: " << e.what() << "\n";
    return 1;
  }
}
