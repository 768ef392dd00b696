// ttt-generate: text generation with a TTT-E2E model on any OpenCL device.
// The prompt is prefilled with test-time training, then tokens are decoded
// one at a time against the key/value window while the prime MLPs keep taking
// their step every B tokens. Text streams to stdout as it is produced (whole
// UTF-8 characters only); progress and timing go to stderr.
#include "apps/app.hpp"
#include "lib/eval/journal.hpp"
#include "lib/generate/session_file.hpp"
#include "lib/report/progress.hpp"
#include "ttt/decode.hpp"
#include "ttt/device.hpp"
#include "ttt/engine.hpp"
#include "ttt/error.hpp"
#include "ttt/output.hpp"
#include "ttt/sampling.hpp"
#include "ttt/tokenizer.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void write_out(const std::string& s) {
  if (s.empty()) return;
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

int body(int argc, char** argv) {
  namespace po = ttt::app::po;
  po::options_description opts("Options");
  opts.add_options()
      ("model,m", po::value<std::string>()->required(), "model directory (config.json + model.safetensors [+ tokenizer])")
      ("prompt,p", po::value<std::string>(), "the prompt text")
      ("file,f", po::value<std::string>(), "or: read the prompt from this file (- for standard input)")
      ("n-predict,n", po::value<int>()->default_value(256), "generate at most N tokens")
      ("temperature", po::value<float>()->default_value(0.f), "sampling temperature; 0 (the default) is greedy decoding")
      ("top-k", po::value<int>()->default_value(0), "sample among the K most likely tokens only (0: all)")
      ("top-p", po::value<float>()->default_value(1.f), "sample among the most likely tokens whose probabilities add up to P (1: all)")
      ("repeat-penalty", po::value<float>()->default_value(1.f), "divide the logits of recently seen tokens by R (> 1 discourages repeats; 1: off)")
      ("repeat-last-n", po::value<int>()->default_value(64), "how many recent tokens the repeat penalty looks at")
      ("seed", po::value<uint64_t>()->default_value(0), "random seed of the sampler: the same seed gives the same text")
      ("stop", po::value<std::vector<std::string>>()->composing(), "stop when the text contains this string (not printed); repeatable")
      ("no-ttt", po::bool_switch(), "turn test-time training off: a plain sliding-window Transformer")
      ("full-attention", po::bool_switch(), "full attention over the whole context (the key/value cache grows with it), no test-time training: the baseline")
      ("inner-lr", po::value<float>(), "test-time SGD step size, overriding the model's inner_lr")
      ("tokenizer", po::value<std::string>()->value_name("FILE"), "tokenizer.json or tokenizer.model for the prompt and "
       "the text, instead of the one in the model directory")
      ("parse-special", po::bool_switch(), "turn special-token strings in the prompt (e.g. <|eot_id|>) into their ids")
      ("save-session", po::value<std::string>(),
       "write the whole session at the end to FILE (the tokens, position, key/value rings and adapted prime weights, "
       "with the model's fingerprint and options; checksummed, written atomically), to continue it with --load-session. An existing FILE is replaced only if it "
       "is a session file (or empty); an interrupted run's session goes to FILE.partial when FILE exists")
      ("load-session", po::value<std::string>(),
       "continue a session saved with --save-session (same model and options): the prompt (-p/-f, may be empty or "
       "left out) is appended to its document, then generation goes on exactly as one uninterrupted run")
      ("json", po::value<std::string>(), "write prompt, generated text and ids, timing and settings as JSON (also on Ctrl-C); an existing FILE is replaced only if this tool wrote it (or it is empty)")
      ("quiet,q", po::bool_switch(), "no progress and timing on stderr");
  ttt::app::add_device_option(opts);
  ttt::app::add_weight_dtype_option(opts);
  ttt::app::add_kv_dtype_option(opts);
  po::variables_map vm;
  if (!ttt::app::parse(argc, argv, opts, vm,
                       "ttt-generate -m MODEL_DIR (-p PROMPT | -f PROMPT_FILE | --load-session FILE) [-n 256] [sampling options] "
                       "[--no-ttt | --full-attention] [--json FILE]",
                       "Generates text with a TTT-E2E model. The prompt is prefilled with test-time training (one\n"
                       "clipped SGD step on the prime MLPs per full mini-batch of B tokens), then tokens are decoded\n"
                       "one at a time against a window of W keys/values, so the cost per token does not grow with the\n"
                       "context; every B tokens (counted from the start, generated ones included) the model takes its\n"
                       "step on them, exactly as scoring the finished text would. Generation stops at the end-of-text\n"
                       "token, at a --stop string or after -n tokens; Ctrl-C stops it cleanly (exit status 130) with\n"
                       "what was generated so far, on stdout and in the JSON. The text goes to stdout as it is\n"
                       "produced, never splitting a UTF-8 character; progress and timing go to stderr."))
    return 0;
  using Usage = ttt::app::UsageError;
  const bool load = vm.count("load-session") > 0;
  if (vm.count("prompt") && vm.count("file")) throw Usage("give the prompt with -p TEXT or -f FILE (one of the two)");
  if (!load && !vm.count("prompt") && !vm.count("file"))
    throw Usage("give the prompt with -p TEXT or -f FILE (one of the two), or continue a --load-session FILE");
  const bool full = vm["full-attention"].as<bool>(), no_ttt = vm["no-ttt"].as<bool>() || full;
  if (full && vm["no-ttt"].as<bool>()) throw Usage("--full-attention already turns test-time training off; drop --no-ttt");
  if (full && vm.count("inner-lr")) throw Usage("--inner-lr needs test-time training, which --full-attention turns off");
  if (full && (load || vm.count("save-session")))
    throw Usage("--full-attention sizes its key/value cache for one run's context; sessions (--save-session, "
                "--load-session) keep the sliding window's");
  const std::optional<ttt::DType> weight_dtype = ttt::app::weight_dtype(vm);  // usage errors before the model loads
  const ttt::DType kv_dtype = ttt::app::kv_dtype(vm);
  const int n_predict = vm["n-predict"].as<int>();
  if (n_predict < 0) throw Usage(fmt::format("-n {}: must be >= 0", n_predict));
  if (vm.count("stop"))
    for (const auto& stop : vm["stop"].as<std::vector<std::string>>())
      if (stop.empty()) throw Usage("--stop '': an empty stop string would stop before the first token");
  ttt::SamplingOptions so;
  so.temperature = vm["temperature"].as<float>();
  so.top_k = vm["top-k"].as<int>();
  so.top_p = vm["top-p"].as<float>();
  so.repeat_penalty = vm["repeat-penalty"].as<float>();
  so.repeat_last_n = vm["repeat-last-n"].as<int>();
  so.seed = vm["seed"].as<uint64_t>();
  try {
    so.validate();
  } catch (const ttt::Error& e) {
    throw Usage(e.what());
  }
  const bool quiet = vm["quiet"].as<bool>();

  const std::string model_dir = vm["model"].as<std::string>();
  ttt::app::Paths paths;
  paths.model("-m", model_dir).input(vm, "tokenizer").input(vm, "file").input(vm, "load-session");
  paths.report(vm, "json", ttt::app::json_format("a JSON record of ttt-generate"));
  if (vm.count("save-session"))
    paths.report("--save-session", vm["save-session"].as<std::string>(), ttt::session_file_format());
  paths.check();
  const ttt::Model model = ttt::Model::load(model_dir, ttt::Weights::deferred);  // read as the engine uploads
  for (const auto& w : model.warnings) std::fprintf(stderr, "ttt-generate: warning: %s\n", w.c_str());
  const ttt::Config& cfg = model.config;
  const ttt::Tokenizer tok = vm.count("tokenizer") ? ttt::app::tokenizer_for(vm["tokenizer"].as<std::string>(), cfg)
                                                  : ttt::Tokenizer::for_model(model_dir, cfg);
  const std::string prompt = vm.count("prompt")  ? vm["prompt"].as<std::string>()
                             : vm.count("file") ? ttt::app::read_text(vm["file"].as<std::string>(), "-f")
                                                : std::string();
  std::vector<int32_t> ids;
  if (cfg.bos_token_id >= 0 && !load) ids.push_back(cfg.bos_token_id);  // a loaded session's document has its start
  const auto enc = tok.encode(prompt, vm["parse-special"].as<bool>());
  ids.insert(ids.end(), enc.begin(), enc.end());
  if (ids.empty() && !load) throw ttt::Error("the prompt is empty and the model has no BOS token to start from");
  ttt::check_token_ids(ids, cfg.vocab_size, "prompt");
  const int eos = cfg.eos_token_id >= 0 ? cfg.eos_token_id : tok.eos_id();
  so.vocab = tok.vocab_size();  // never an id the tokenizer cannot decode (a model's vocabulary may be wider)
  so.eos = eos;

  // A session must match the model's files and every option that changes the numbers; a loaded one is checked
  // before any work.
  const ttt::SessionKey key{ttt::model_fingerprint(model_dir), !no_ttt && cfg.num_prime_blocks() > 0,
                            vm.count("inner-lr") ? vm["inner-lr"].as<float>() : cfg.inner_lr, cfg.sliding_window_size,
                            cfg.mini_batch_size, cfg.vocab_size, weight_dtype.value_or(model.dtype), kv_dtype};
  std::optional<ttt::Decoder::Saved> saved;
  if (load) saved = ttt::load_session_file(vm["load-session"].as<std::string>(), key);

  ttt::Runtime rt(ttt::app::device_spec(vm));
  const ttt::Device& device = rt.device();
  ttt::app::announce_compiles(rt, "ttt-generate");
  ttt::EngineOptions eo;
  eo.ttt = !no_ttt;
  eo.weight_dtype = weight_dtype;
  eo.kv_dtype = kv_dtype;
  if (vm.count("inner-lr")) eo.inner_lr = vm["inner-lr"].as<float>();
  if (full) {
    const int64_t context = int64_t(ids.size()) + n_predict;
    if (context > INT32_MAX / 2) throw ttt::Error(fmt::format("--full-attention: a context of {} tokens is too long", context));
    eo.window = std::max<int>(int(context), cfg.sliding_window_size);
  }
  ttt::Engine engine(rt, model, eo);
  const std::string mode = full ? "full attention" : no_ttt ? "sliding window, no test-time training" : "test-time training";
  if (!quiet)
    std::fprintf(stderr, "ttt-generate: %zu prompt tokens, %s (window %d, mini-batch %d), %s, %s, on %s\n",
                 ids.size(), mode.c_str(), engine.window(), cfg.mini_batch_size,
                 ttt::app::weight_label(engine.weight_dtype(), model.dtype).c_str(),
                 ttt::app::kv_label(engine.kv_dtype()).c_str(), device.label().c_str());

  // The first Ctrl-C stops generation after the current token; a second one ends the process at once.
  ttt::app::catch_interrupts("ttt-generate", "stopping after the current token");
  auto interrupted = [] { return ttt::app::interrupted() != 0; };
  std::optional<ttt::Decoder> dec_;
  if (saved)
    dec_.emplace(engine.session(), *saved);
  else
    dec_.emplace(engine.session());
  ttt::Decoder& dec = *dec_;
  if (load && dec.tokens().empty() && ids.empty()) throw ttt::Error("the loaded session and the prompt are both empty");
  ttt::Sampler sampler(so);
  ttt::TextStream text(vm.count("stop") ? vm["stop"].as<std::vector<std::string>>() : std::vector<std::string>{});
  std::string stopped = "length";

  // Prefill in mini-batches, so that Ctrl-C is heard during a long prompt; a long one shows its
  // progress (a bar on a terminal, a line each 10% after the first 2 s in a log).
  const auto t0 = Clock::now();
  const size_t B = size_t(cfg.mini_batch_size);
  size_t read = 0;  // prompt tokens appended: fewer than ids.size() when Ctrl-C came during the prefill
  {
    ttt::Progress progress(ids.size(), "prefill", quiet ? ttt::Progress::Mode::Quiet : ttt::Progress::Mode::Auto,
                           stderr);
    for (; read < ids.size() && !interrupted(); read += std::min(B, ids.size() - read)) {
      dec.append({ids.data() + read, std::min(B, ids.size() - read)});
      progress.update(read + std::min(B, ids.size() - read));
    }
    if (progress.mode() == ttt::Progress::Mode::Tty && read == ids.size()) progress.finish();
  }
  const bool prompt_read = read == ids.size();
  const int64_t prefill_steps = dec.steps();
  std::vector<int32_t> generated;
  const size_t document_start = dec.tokens().size();  // generated tokens are appended after these
  double prefill_s = 0;
  Clock::time_point t1;
  if (!interrupted() && !dec.tokens().empty()) dec.logits();  // forwards the prompt's tail: part of the prefill, also with -n 0
  prefill_s = seconds_since(t0);
  t1 = Clock::now();
  if (!interrupted() && n_predict > 0) {
    while (!interrupted()) {
      const int32_t id = sampler.sample(dec.logits(), dec.tokens());
      if (id == eos) {
        stopped = "eos";
        break;
      }
      generated.push_back(id);
      write_out(text.push(tok.decode({id})));
      if (text.stopped()) {
        stopped = "stop";
        break;
      }
      if (int(generated.size()) == n_predict) break;
      dec.append({&id, 1});
    }
  }
  if (interrupted()) stopped = "interrupt";
  if (vm.count("save-session") && !prompt_read) {
    // A session of part of the prompt would continue a document the user never gave: as ttt-perplexity, none.
    std::fprintf(stderr, "ttt-generate: --save-session not written: interrupted after %zu of the prompt's %zu tokens\n",
                 read, ids.size());
  } else if (vm.count("save-session")) {
    // The last generated token is part of the document too (it was sampled, not yet appended).
    const size_t appended = dec.tokens().size() - document_start;
    if (generated.size() > appended) dec.append({generated.data() + appended, generated.size() - appended});
    // An interrupted run's session replaces no existing one (as write_output's partial results): FILE.partial.
    const std::string path = ttt::app::output_target(vm["save-session"].as<std::string>());
    ttt::save_session_file(path, key, dec.save());
    if (!quiet || path != vm["save-session"].as<std::string>())
      std::fprintf(stderr, "ttt-generate: session of %zu tokens written to %s\n", dec.tokens().size(), path.c_str());
  }
  write_out(text.finish(!interrupted()));  // an interrupt leaves whole characters only
  const double decode_s = seconds_since(t1);
  const int64_t steps = dec.steps();
  const double prefill_tps = double(read) / std::max(prefill_s, 1e-9);
  const double decode_tps = double(generated.size()) / std::max(decode_s, 1e-9);
  if (!quiet)
    std::fprintf(stderr,
                 "\nttt-generate: prompt %s token%s in %.2f s (%.1f tok/s); generated %zu token%s in %.2f s (%.2f tok/s); "
                 "test-time steps %lld (%lld in the prefill, %lld while generating); stopped: %s\n",
                 prompt_read ? fmt::format("{}", ids.size()).c_str() : fmt::format("{} of {}", read, ids.size()).c_str(),
                 ids.size() == 1 ? "" : "s", prefill_s, prefill_tps, generated.size(),
                 generated.size() == 1 ? "" : "s", decode_s, decode_tps, (long long)steps,
                 (long long)prefill_steps, (long long)(steps - prefill_steps), stopped.c_str());
  if (vm.count("json")) {
    using json = nlohmann::json;
    json j = {{"written_by", ttt::app::written_by()},
              {"model", model_dir},
              {"device", device.name},
              {"mode", full ? "full" : no_ttt ? "swa" : "ttt"},
              {"window", engine.window()},
              {"mini_batch", cfg.mini_batch_size},
              {"weight_dtype", ttt::app::dtype_flag(engine.weight_dtype())},
              {"kv_dtype", ttt::app::dtype_flag(engine.kv_dtype())},
              {"prompt", prompt},
              {"prompt_tokens", ids.size()},
              {"prompt_tokens_read", read},  // fewer when Ctrl-C came during the prefill
              {"text", text.text()},
              {"ids", generated},
              {"generated_tokens", generated.size()},
              {"stopped", stopped},
              {"prefill_seconds", prefill_s},
              {"prefill_tokens_per_s", prefill_tps},
              {"decode_seconds", decode_s},
              {"decode_tokens_per_s", decode_tps},
              {"ttt_steps", steps},
              {"ttt_steps_prefill", prefill_steps},
              {"sampling",
               {{"temperature", so.temperature}, {"top_k", so.top_k}, {"top_p", so.top_p},
                {"repeat_penalty", so.repeat_penalty}, {"repeat_last_n", so.repeat_last_n}, {"seed", so.seed}}}};
    ttt::app::write_output(vm["json"].as<std::string>(), j.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
  }
  return interrupted() ? 130 : 0;
}

}  // namespace

int main(int argc, char** argv) { return ttt::app::run("ttt-generate", argc, argv, body); }
