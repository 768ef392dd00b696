// ttt-make-model: a randomly initialised model directory (format v1) with an
// official configuration, for benchmarks, tests and trying the tools out.
#include "apps/app.hpp"
#include "ttt/error.hpp"
#include "ttt/model.hpp"
#include "ttt/output.hpp"
#include "ttt/tokenizer.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <cstdio>
#include <algorithm>
#include <filesystem>
#include <optional>
#include <vector>

namespace {

// An HF tokenizer.json is a JSON object; anything else is read as a tiktoken rank file (as Tokenizer::from_file).
bool json_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return std::filesystem::path(path).extension() != ".model";
  int ch = 0;
  while ((ch = std::fgetc(f)) == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
  }
  std::fclose(f);
  return ch == '{';
}

int body(int argc, char** argv) {
  namespace po = ttt::app::po;
  std::string names;
  for (const auto& n : ttt::preset_names()) names += (names.empty() ? "" : ", ") + n;
  po::options_description opts("Options");
  opts.add_options()
      ("preset", po::value<std::string>()->required(), ("configuration: " + names).c_str())
      ("out,o", po::value<std::string>()->required(),
       "model directory to write (created if needed; an existing one must be empty unless --force)")
      ("force", po::bool_switch(), "write into a non-empty --out directory that holds a model's files only (config.json, "
       "model.safetensors, and tokenizer.json or tokenizer.model with --tokenizer), replacing them; a folder "
       "holding other files is refused")
      ("seed", po::value<int64_t>()->default_value(0), "random seed of the initialisation (>= 0)")
      ("tokenizer", po::value<std::string>()->value_name("FILE"),
       "copy this tokenizer.json or tokenizer.model into --out (checked against the vocabulary first); the official "
       "presets read Meta's Llama-3 tokenizer")
      ("dtype", po::value<std::string>()->default_value("f32"), "weight type on disk: f32, f16 or bf16")
      ("init-std", po::value<float>()->default_value(0.02f, "0.02"),
       "standard deviation of the normal initialisation of linears and the embedding (norms are ones)");
  po::variables_map vm;
  if (!ttt::app::parse(argc, argv, opts, vm, "ttt-make-model --preset NAME --out DIR [--tokenizer FILE] [--seed S] [--dtype f32|f16|bf16]",
                       "Writes config.json and model.safetensors of an untrained TTT-E2E model. Presets 125m..3b are\n"
                       "the official configurations (Llama-3 vocabulary, window 8192, mini-batch 1024, e2e suffix\n"
                       "lengths and prime widths); 'tiny' is a byte-level model small enough for a CPU."))
    return 0;
  const float std_dev = vm["init-std"].as<float>();
  if (!(std_dev > 0.f) || !std::isfinite(std_dev))
    throw ttt::app::UsageError(fmt::format("--init-std {}: must be a finite number > 0", std_dev));
  const uint64_t seed = uint64_t(ttt::app::int_option(vm, "seed", 0));
  ttt::DType dtype = ttt::DType::F32;
  ttt::Config c;
  try {  // a bad name is a usage error, as in every tool
    dtype = ttt::parse_dtype(vm["dtype"].as<std::string>(), "--dtype");
    c = ttt::preset(vm["preset"].as<std::string>());
  } catch (const ttt::Error& e) {
    throw ttt::app::UsageError(e.what());
  }
  const std::string out = vm["out"].as<std::string>();
  namespace fs = std::filesystem;
  // The tokenizer keeps its kind's name in the model directory, where the tools look for it.
  const std::optional<std::string> tok_path =
      vm.count("tokenizer") ? std::optional(vm["tokenizer"].as<std::string>()) : std::nullopt;
  const std::string tok_name = tok_path && !json_file(*tok_path) ? "tokenizer.model" : "tokenizer.json";
  ttt::app::Paths paths;
  std::vector<std::string> files = {"config.json", "model.safetensors"};
  if (tok_path) files.push_back(tok_name);
  paths.input(vm, "tokenizer").output_dir("--out", out, files, vm["force"].as<bool>()).check();
  if (tok_path && c.tokenizer == "bytes")
    throw ttt::app::UsageError(fmt::format("--tokenizer: preset {} reads bytes (\"tokenizer\": \"bytes\"); it takes no "
                                           "tokenizer file", vm["preset"].as<std::string>()));
  if (tok_path) ttt::app::tokenizer_for(*tok_path, c);  // a bad or too large tokenizer fails before anything is written
  // --force replaces the files of a model, never part of one: a folder holding anything else (a trained model's
  // README.md or training.json, another tokenizer) would describe a model it no longer holds.
  if (std::error_code ec; fs::is_directory(out, ec)) {
    std::vector<std::string> others;
    for (const auto& e : fs::directory_iterator(out, ec))
      if (std::find(files.begin(), files.end(), e.path().filename().string()) == files.end())
        others.push_back(e.path().filename().string());
    std::sort(others.begin(), others.end());
    if (!others.empty())
      throw ttt::Error(fmt::format(
          "--out {}: --force replaces only {}, but the folder also holds {}; remove them or choose another folder",
          out, fmt::join(files, ", "), fmt::join(others, ", ")));
  }
  std::fprintf(stderr, "initialising preset %s (seed %llu) ...\n", vm["preset"].as<std::string>().c_str(),
               static_cast<unsigned long long>(seed));
  const ttt::Model m = ttt::Model::random(c, seed, std_dev);
  m.save(out, dtype);
  if (tok_path) ttt::write_file_atomic((fs::path(out) / tok_name).string(), ttt::app::read_text(*tok_path, "--tokenizer"));
  fmt::print("wrote {} : {} parameters ({:.1f} M), {} layers, width {}, {} heads, vocabulary {}, {} on disk\n", out,
             m.num_parameters(), m.num_parameters() / 1e6, c.num_hidden_layers, c.hidden_size, c.num_attention_heads,
             c.vocab_size, ttt::dtype_name(dtype));
  if (tok_path) {
    fmt::print("copied tokenizer {} to {}\n", *tok_path, (fs::path(out) / tok_name).string());
  } else if (c.tokenizer != "bytes") {
    std::fprintf(stderr,
                 "ttt-make-model: note: %s has no tokenizer, so it scores token ids (--tokens) but not text; %s "
                 "(--tokenizer FILE)\n",
                 out.c_str(), ttt::tokenizer_hint(c, out).c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return ttt::app::run("ttt-make-model", argc, argv, body); }
