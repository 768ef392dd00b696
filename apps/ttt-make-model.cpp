// ttt-make-model: a randomly initialised model directory (format v1) with an
// official configuration, for benchmarks, tests and trying the tools out.
#include "apps/app.hpp"
#include "ttt/error.hpp"
#include "ttt/model.hpp"
#include "ttt/output.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstdio>

namespace {

int body(int argc, char** argv) {
  namespace po = ttt::app::po;
  std::string names;
  for (const auto& n : ttt::preset_names()) names += (names.empty() ? "" : ", ") + n;
  po::options_description opts("Options");
  opts.add_options()
      ("preset", po::value<std::string>()->required(), ("configuration: " + names).c_str())
      ("out,o", po::value<std::string>()->required(),
       "model directory to write (created if needed; an existing one must be empty unless --force)")
      ("force", po::bool_switch(), "write into a non-empty --out directory, replacing its config.json and model.safetensors")
      ("seed", po::value<int64_t>()->default_value(0), "random seed of the initialisation (>= 0)")
      ("dtype", po::value<std::string>()->default_value("f32"), "weight type on disk: f32, f16 or bf16")
      ("init-std", po::value<float>()->default_value(0.02f),
       "standard deviation of the normal initialisation of linears and the embedding (norms are ones)");
  po::variables_map vm;
  if (!ttt::app::parse(argc, argv, opts, vm, "ttt-make-model --preset NAME --out DIR [--seed S] [--dtype f32|f16|bf16]",
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
  ttt::app::Paths().output_dir("--out", out, {"config.json", "model.safetensors"}).check();
  ttt::check_output_dir(out, "--out", vm["force"].as<bool>());
  std::fprintf(stderr, "initialising preset %s (seed %llu) ...\n", vm["preset"].as<std::string>().c_str(),
               static_cast<unsigned long long>(seed));
  const ttt::Model m = ttt::Model::random(c, seed, std_dev);
  m.save(out, dtype);
  fmt::print("wrote {} : {} parameters ({:.1f} M), {} layers, width {}, {} heads, vocabulary {}, {} on disk\n", out,
             m.num_parameters(), m.num_parameters() / 1e6, c.num_hidden_layers, c.hidden_size, c.num_attention_heads,
             c.vocab_size, ttt::dtype_name(dtype));
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return ttt::app::run("ttt-make-model", argc, argv, body); }
