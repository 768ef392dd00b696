// ttt-perplexity: per-token losses of a TTT-E2E model on documents, with
// test-time training on (the default) or off, on any OpenCL device.
#include "apps/app.hpp"
#include "host/device.hpp"
#include "host/error.hpp"
#include "lib/engine/engine.hpp"
#include "lib/token_io.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

namespace {

using Clock = std::chrono::steady_clock;

int body(int argc, char** argv) {
  namespace po = ttt::app::po;
  po::options_description opts("Options");
  opts.add_options()
      ("model,m", po::value<std::string>()->required(), "model directory (config.json + model.safetensors)")
      ("tokens", po::value<std::string>()->required(),
       "token ids of one document: whitespace-separated decimal text, or a .npy array of int32, uint32, int64 or uint16")
      ("no-ttt", po::bool_switch(), "turn test-time training off (a plain sliding-window Transformer)")
      ("inner-lr", po::value<float>(), "test-time SGD step size, overriding the model's inner_lr; 0 gives exactly the --no-ttt numbers")
      ("max-tokens", po::value<size_t>(), "use only the first N tokens of the document")
      ("nll-out", po::value<std::string>(), "write one natural-log NLL per predicted token, one per line (T-1 lines for T tokens)")
      ("json", po::value<std::string>(), "write the results as JSON to this file")
      ("save-weights", po::value<std::string>(), "write a model directory whose prime MLP weights are those adapted at the end of the document")
      ("device,d", po::value<std::string>()->default_value(""), "OpenCL device: P:D indices or part of its name (default: $TTT_DEVICE, else the first GPU, else the first device; see ttt-info)");
  po::variables_map vm;
  if (!ttt::app::parse(argc, argv, opts, vm, "ttt-perplexity -m MODEL_DIR --tokens FILE [options]",
                       "Evaluates a TTT-E2E model on a document and reports the per-token loss, the mean NLL and the\n"
                       "perplexity. With test-time training on (the default) the model takes one clipped SGD step on\n"
                       "its prime MLPs after every full mini-batch of B tokens, so later tokens are predicted by\n"
                       "weights that have learned from the earlier ones. The window W and mini-batch B are\n"
                       "properties of the trained model and cannot be changed."))
    return 0;
  const bool ttt_on = !vm["no-ttt"].as<bool>();
  if (vm.count("save-weights") && !ttt_on)
    throw ttt::Error("--save-weights needs test-time training on (without it the prime weights never change)");

  const std::string model_dir = vm["model"].as<std::string>();
  ttt::Model model = ttt::Model::load(model_dir);
  for (const auto& w : model.warnings) std::fprintf(stderr, "ttt-perplexity: warning: %s\n", w.c_str());
  const std::string tokens_path = vm["tokens"].as<std::string>();
  std::vector<int32_t> tokens = ttt::read_token_file(tokens_path);
  if (vm.count("max-tokens") && vm["max-tokens"].as<size_t>() < tokens.size())
    tokens.resize(vm["max-tokens"].as<size_t>());
  ttt::check_token_ids(tokens, model.config.vocab_size, tokens_path);
  if (tokens.size() < 2) throw ttt::Error(fmt::format("{}: a document needs at least 2 tokens, got {}", tokens_path, tokens.size()));

  const auto device = ttt::host::select_device(vm["device"].as<std::string>());
  ttt::host::Context ctx(device);
  ttt::EngineOptions eo;
  eo.ttt = ttt_on;
  if (vm.count("inner-lr")) eo.inner_lr = vm["inner-lr"].as<float>();
  fmt::print("model:  {} ({:.1f} M parameters, {} layers, window {}, mini-batch {})\n", model_dir,
             model.num_parameters() / 1e6, model.config.num_hidden_layers, model.config.sliding_window_size,
             model.config.mini_batch_size);
  fmt::print("device: {}\n", device.label());
  std::fflush(stdout);
  ttt::Engine engine(ctx, model, eo);
  fmt::print("test-time training: {}\n", ttt_on ? fmt::format("on (inner lr {})", engine.inner_lr()) : "off");

  const auto t0 = Clock::now();
  auto last = t0;
  auto nll = engine.evaluate(tokens, [&](size_t done, size_t total) {
    const auto now = Clock::now();
    if (std::chrono::duration<double>(now - last).count() > 5.0 || done == total) {
      const double s = std::chrono::duration<double>(now - t0).count();
      fmt::print("progress: {}/{} tokens, {:.1f} tokens/s\n", done, total, done / s);
      std::fflush(stdout);
      last = now;
    }
  });
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();

  double sum = 0, sum2 = 0;
  for (float v : nll) {
    sum += v;
    sum2 += double(v) * v;
  }
  const double n = double(nll.size()), mean = sum / n;
  const double err = nll.size() > 1 ? std::sqrt(std::max(0.0, sum2 / n - mean * mean) / (n - 1)) : 0.0;
  const double ppl = std::exp(mean);
  fmt::print("tokens: {} ({} predicted)\nmean NLL: {:.6f}\nPPL = {:.4f} +/- {:.4f}\ntokens/s: {:.1f}\n", tokens.size(),
             nll.size(), mean, ppl, ppl * err, n / secs);

  if (vm.count("nll-out")) {
    const std::string p = vm["nll-out"].as<std::string>();
    std::FILE* f = std::fopen(p.c_str(), "w");
    if (!f) throw ttt::Error(fmt::format("{}: cannot write", p));
    for (float v : nll) std::fprintf(f, "%.9g\n", v);
    if (std::fclose(f) != 0) throw ttt::Error(fmt::format("{}: write failed", p));
  }
  if (vm.count("json")) {
    nlohmann::json j = {{"model", model_dir},     {"device", device.name}, {"ttt", ttt_on},
                        {"inner_lr", engine.inner_lr()}, {"tokens", tokens.size()}, {"predicted", nll.size()},
                        {"mean_nll", mean},       {"ppl", ppl},            {"ppl_err", ppl * err},
                        {"seconds", secs},        {"tokens_per_s", n / secs}};
    std::ofstream(vm["json"].as<std::string>()) << j.dump(2) << "\n";
  }
  if (vm.count("save-weights")) {
    engine.download_prime(model);
    model.save(vm["save-weights"].as<std::string>());
    fmt::print("adapted weights: {}\n", vm["save-weights"].as<std::string>());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return ttt::app::run("ttt-perplexity", argc, argv, body); }
