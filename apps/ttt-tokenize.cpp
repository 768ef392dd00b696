// ttt-tokenize: text (stdin or -f FILE) -> token ids on stdout or -o FILE (one
// line, separated by spaces), or with --decode token ids -> the text, byte for
// byte. The tokenizer comes from a model directory (-m) or a tokenizer file.
#include "apps/app.hpp"
#include "ttt/error.hpp"
#include "ttt/output.hpp"
#include "ttt/config.hpp"
#include "ttt/tokenizer.hpp"

#include <charconv>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace po = ttt::app::po;

std::vector<int32_t> parse_ids(const std::string& s, const std::string& origin) {
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
      throw ttt::Error(origin + ": \"" + s.substr(i, std::min<size_t>(end - i, 40)) + "\" (word " + std::to_string(word) +
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

int body(int argc, char** argv) {
  std::ios::sync_with_stdio(false);
  po::options_description opts("Options");
  opts.add_options()  //
      ("model,m", po::value<std::string>()->value_name("DIR"),
       "model directory: \"tokenizer\": \"bytes\" in its config.json selects the byte tokenizer (ids 0..255 "
       "are the bytes); otherwise DIR/tokenizer.json, else DIR/tokenizer.model")  //
      ("tokenizer,t", po::value<std::string>()->value_name("FILE"),
       "tokenizer file: an HF tokenizer.json (byte-level BPE) or a tiktoken rank file (tokenizer.model) of "
       "the Llama-3 or GPT-2 size, which gets that family's regex and special tokens")  //
      ("file,f", po::value<std::string>()->value_name("FILE")->default_value("-"),
       "read the input from this file (- for standard input, the default); also given as the one positional "
       "argument")  //
      ("output,o", po::value<std::string>()->value_name("FILE")->default_value("-"),
       "write the result to this file (- for standard output, the default); an existing file is never replaced "
       "(neither ids nor text can show that this tool wrote it), unless it is empty")  //
      ("decode", po::bool_switch(), "read token ids (integers separated by white space) and write their text")  //
      ("parse-special", po::bool_switch(),
       "turn special-token strings in the text, such as <|begin_of_text|>, into their ids; without it they "
       "are encoded as plain text, so a document cannot inject control tokens");
  po::variables_map vm;
  po::positional_options_description positional;
  positional.add("file", 1);  // ttt-tokenize --tokenizer T hw.txt: the same as -f hw.txt
  if (!ttt::app::parse(argc, argv, opts, vm,
                       "ttt-tokenize (-m MODEL_DIR | --tokenizer FILE) [--decode] [--parse-special] [-f IN | IN] [-o OUT]",
                       "Encodes text into token ids, written on one line separated by spaces. With --decode it\n"
                       "reads token ids and writes the text they stand for. Any bytes encode, invalid UTF-8 included,\n"
                       "and decoding gives them back exactly. No BOS token is added. Input is standard input or -f,\n"
                       "output standard output or -o.",
                       &positional))
    return 0;
  using Usage = ttt::app::UsageError;
  if (vm.count("model") == vm.count("tokenizer"))
    throw Usage("give exactly one of -m/--model DIR and --tokenizer FILE");
  const bool decode = vm["decode"].as<bool>();
  if (decode && vm["parse-special"].as<bool>())
    throw Usage("--parse-special only applies to encoding; decoding always writes special tokens as text");
  const std::string in_path = vm["file"].as<std::string>(), out_path = vm["output"].as<std::string>();
  ttt::app::Paths paths;
  if (vm.count("model")) paths.model("-m", vm["model"].as<std::string>());
  paths.input(vm, "tokenizer").input("-f", in_path);
  if (out_path != "-")  // "-": standard output. Neither ids nor text can carry a mark of this tool: no file is replaced.
    paths.output("-o", out_path, {ttt::OwnFormat::none, {}, {}, "ttt-tokenize's output (token ids or text)"});
  paths.check();

  const ttt::Tokenizer tok = open_tokenizer(vm);
  const std::string input = ttt::app::read_text(in_path, "-f");
  std::string result;
  if (decode) {
    result = tok.decode(parse_ids(input, in_path == "-" ? "stdin" : in_path));
  } else {
    const std::vector<int32_t> ids = tok.encode(input, vm["parse-special"].as<bool>());
    result.reserve(ids.size() * 7 + 1);
    char buf[16];
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i) result += ' ';
      result.append(buf, std::to_chars(buf, buf + sizeof buf, ids[i]).ptr);
    }
    result += '\n';
  }
  if (out_path != "-") {
    ttt::write_file_atomic(out_path, result);
    return 0;
  }
  std::cout.write(result.data(), std::streamsize(result.size()));
  std::cout.flush();
  if (!std::cout) throw ttt::Error("cannot write to stdout");
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return ttt::app::run("ttt-tokenize", argc, argv, body); }
