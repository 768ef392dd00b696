// _tttcl: the nanobind core of the Python module tttcl (python/tttcl wraps it
// with the documented API). Scoring goes through lib/eval's evaluate_pass and
// generation through lib/generate's Decoder, Sampler and TextStream, so the
// numbers are the command-line tools'. Device work runs with the GIL released
// under the model's mutex; between mini-batches the GIL is taken back to hear
// Ctrl-C (PyErr_CheckSignals) and to call progress callbacks.
#include "python/doc_session.hpp"

#include "lib/eval/corpus.hpp"
#include "lib/eval/evaluate.hpp"
#include "lib/eval/journal.hpp"
#include "lib/eval/modes.hpp"
#include "lib/generate/session_file.hpp"
#include "ttt/decode.hpp"
#include "ttt/device.hpp"
#include "ttt/engine.hpp"
#include "ttt/error.hpp"
#include "ttt/model.hpp"
#include "ttt/report.hpp"
#include "ttt/sampling.hpp"
#include "ttt/tokenizer.hpp"

#include <cctype>
#include <fmt/format.h>
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <memory>
#include <mutex>
#include <optional>

namespace nb = nanobind;
using namespace nb::literals;

namespace ttt::py {
namespace {

using Ids = nb::ndarray<const int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using Floats = nb::ndarray<nb::numpy, float, nb::ndim<1>>;
using IdArray = nb::ndarray<nb::numpy, int32_t, nb::ndim<1>>;

template <class T>
nb::ndarray<nb::numpy, T, nb::ndim<1>> to_numpy(std::vector<T> v) {
  auto* p = new std::vector<T>(std::move(v));
  nb::capsule owner(p, [](void* q) noexcept { delete static_cast<std::vector<T>*>(q); });
  return nb::ndarray<nb::numpy, T, nb::ndim<1>>(p->data(), {p->size()}, owner);
}

std::span<const int32_t> span_of(const Ids& a) { return {a.data(), a.shape(0)}; }

// One model on one device: the weights, the tokenizer, the runtime and the
// sliding-window engine (test-time training on; sessions turn it off), plus a
// full-attention engine made when first asked for. mu serialises device work.
struct Core {
  std::string dir;
  Model model;
  std::optional<Tokenizer> tok;
  std::string tok_error;  // why there is no tokenizer (token-id models)
  Runtime rt;
  EngineOptions base;  // the weight and key/value storage every engine of this model uses
  Engine sliding;
  std::optional<Engine> full;
  std::mutex mu;
  std::optional<uint64_t> fingerprint_;  // model_fingerprint(dir), read when a session file first needs it (under mu)

  uint64_t fingerprint() {
    if (!fingerprint_) fingerprint_ = model_fingerprint(dir);
    return *fingerprint_;
  }

  static EngineOptions storage(const std::string& weight_dtype, const std::string& kv_dtype) {
    EngineOptions o;
    if (kv_dtype == "f16") o.kv_dtype = DType::F16;
    else if (kv_dtype != "f32") throw Error(fmt::format("kv_dtype='{}': give 'f32' or 'f16'", kv_dtype));
    if (weight_dtype == "f32") o.weight_dtype = DType::F32;
    else if (weight_dtype == "f16") o.weight_dtype = DType::F16;
    else if (weight_dtype == "bf16") o.weight_dtype = DType::BF16;
    else if (weight_dtype != "auto")
      throw Error(fmt::format("weight_dtype='{}': give 'auto', 'f32', 'f16' or 'bf16'", weight_dtype));
    return o;
  }

  Core(const std::string& path, const std::string& device, const std::string& weight_dtype, const std::string& kv_dtype)
      : dir(path),
        model(Model::load(path, Weights::deferred)),
        rt(device),
        base(storage(weight_dtype, kv_dtype)),
        sliding(rt, model, base) {
    try {
      tok.emplace(Tokenizer::for_model(path, model.config));
      if (const std::string why = tokenizer_mismatch(*tok, model.config); !why.empty()) throw Error(why);
    } catch (const Error& e) {
      tok.reset();
      tok_error = e.what();
    }
  }

  const Tokenizer& tokenizer() const {
    if (!tok) throw Error(fmt::format("{}: text needs a tokenizer: {}", dir, tok_error));
    return *tok;
  }

  // The full-attention engine for these documents: the CLI's (lib/eval/modes).
  Engine& full_engine(const std::vector<Document>& docs) {
    Corpus c;
    c.docs = docs;
    const EngineOptions eo = mode_engine_options(Mode::full, base, c, model.config);
    if (!full || full->window() != eo.window) {
      full.reset();
      full.emplace(rt, model, eo);
    }
    return *full;
  }
};

// Between mini-batches, with the GIL taken back: Ctrl-C and callback errors.
// Once one is pending it stays set (the Python error indicator holds it) until
// the binding re-raises it with the GIL held.
struct Interrupts {
  bool raised = false;
  bool check() {
    nb::gil_scoped_acquire gil;
    if (!raised && PyErr_CheckSignals() != 0) raised = true;
    return raised;
  }
  void call(const nb::object& f, size_t done, size_t total) {
    if (!f || f.is_none()) return;
    nb::gil_scoped_acquire gil;
    if (raised) return;
    try {
      f(done, total);
    } catch (nb::python_error& e) {
      e.restore();
      raised = true;
    }
  }
  void rethrow() {
    if (raised) throw nb::python_error();
  }
};

std::vector<Floats> score(Core& core, const std::vector<Ids>& docs_in, bool ttt, std::optional<float> inner_lr,
                          bool full_attention, int parallel, nb::object progress) {
  if (parallel < 1 || parallel > 4096) throw Error(fmt::format("parallel={} must be in 1..4096", parallel));
  if (full_attention && inner_lr)
    throw Error("full_attention turns test-time training off; it does not combine with inner_lr");
  if (inner_lr && !(*inner_lr >= 0)) throw Error(fmt::format("inner_lr={} must be >= 0", *inner_lr));
  if (docs_in.empty()) throw Error("no documents to score");
  std::vector<Document> docs(docs_in.size());
  size_t total = 0;
  for (size_t i = 0; i < docs.size(); ++i) {
    docs[i].name = fmt::format("document {}", i);
    const auto ids = span_of(docs_in[i]);
    docs[i].tokens.assign(ids.begin(), ids.end());
    check_token_ids(docs[i].tokens, core.model.config.vocab_size, docs[i].name);
    if (docs[i].tokens.size() < 2)
      throw Error(fmt::format("{}: a document needs at least 2 tokens to score, got {}", docs[i].name,
                              docs[i].tokens.size()));
    total += docs[i].tokens.size() - 1;
  }
  std::vector<std::vector<float>> nll(docs.size());
  Interrupts irq;
  {
    nb::gil_scoped_release release;
    std::lock_guard lock(core.mu);
    Engine& engine = full_attention ? core.full_engine(docs) : core.sliding;
    std::vector<size_t> todo(docs.size());
    for (size_t i = 0; i < todo.size(); ++i) todo[i] = i;
    LocalScheduler sched(todo, [&](size_t i, std::vector<float> v, double, bool) { nll[i] = std::move(v); });
    const SessionOptions so{.ttt = ttt && !full_attention, .inner_lr = inner_lr};
    size_t done = 0;
    evaluate_pass(
        engine, so, docs, parallel, sched,
        [&](size_t n) {
          done += n;
          irq.call(progress, done, total);
        },
        [&] { return irq.check(); });
  }
  irq.rethrow();
  std::vector<Floats> out;
  for (auto& v : nll) out.push_back(to_numpy(std::move(v)));
  return out;
}

// Generation on its own session: prefill, then one token per next() (GIL released).
class Generator {
 public:
  Generator(std::shared_ptr<Core> core, const Ids& prompt, SamplingOptions so, std::vector<std::string> stops,
            bool ttt, int max_tokens)
      : core_(std::move(core)),
        s_(core_->sliding, SessionOptions{.ttt = ttt, .inner_lr = std::nullopt}),
        dec_(s_),
        sampler_(so),
        text_(std::move(stops)),
        prompt_(span_of(prompt).begin(), span_of(prompt).end()),
        max_tokens_(max_tokens) {
    if (max_tokens < 0) throw Error(fmt::format("max_tokens={} must be >= 0", max_tokens));
    if (prompt_.empty()) throw Error("the prompt is empty and the model has no BOS token to start from");
    check_token_ids(prompt_, core_->model.config.vocab_size, "prompt");
    const int eos = core_->model.config.eos_token_id;
    eos_ = eos >= 0 ? eos : core_->tok ? core_->tok->eos_id() : -1;
    if (core_->tok) {  // never an id the tokenizer cannot decode (a model's vocabulary may be wider)
      so.vocab = core_->tok->vocab_size();
      so.eos = eos_;
      sampler_ = Sampler(so);
    }
  }

  // The next piece of text (whole UTF-8 characters, as bytes: a byte-level
  // model may produce invalid UTF-8), or None at the end.
  nb::object next() {
    if (done_) return nb::none();
    const Tokenizer& tok = core_->tokenizer();
    Interrupts irq;
    std::string piece;
    {
      nb::gil_scoped_release release;
      std::lock_guard lock(core_->mu);
      const size_t B = size_t(core_->model.config.mini_batch_size);
      for (; fed_ < prompt_.size() && !irq.check(); fed_ = std::min(prompt_.size(), fed_ + B))
        dec_.append({prompt_.data() + fed_, std::min(B, prompt_.size() - fed_)});
      // The order of ttt-generate's loop: sample, stop at EOS, print, stop at a stop string or
      // the limit, append (here deferred to the next call, so a finished text appends nothing).
      bool end = false;
      while (fed_ == prompt_.size() && !irq.raised && piece.empty() && !end) {
        if (last_) dec_.append({&*last_, 1});
        last_.reset();
        if (produced_ == max_tokens_) {
          end = true;
          break;
        }
        const int32_t id = sampler_.sample(dec_.logits(), dec_.tokens());
        if (id == eos_) {
          end = true;
          break;
        }
        ++produced_;
        piece += text_.push(tok.decode({id}));
        end = text_.stopped();
        last_ = id;
        if (piece.empty() && !end && irq.check()) break;
      }
      if (end) {
        done_ = true;
        piece += text_.finish();
      }
    }
    irq.rethrow();
    if (piece.empty()) return nb::none();
    return nb::bytes(piece.data(), piece.size());
  }

  int produced() const { return produced_; }

 private:
  std::shared_ptr<Core> core_;
  Session s_;
  Decoder dec_;
  Sampler sampler_;
  TextStream text_;
  std::vector<int32_t> prompt_;
  int max_tokens_, produced_ = 0;
  int32_t eos_ = -1;
  size_t fed_ = 0;  // prompt tokens appended
  std::optional<int32_t> last_;  // sampled, appended on the next call
  bool done_ = false;
};

// A Python session: a DocSession that keeps its model alive.
struct PySession {
  std::shared_ptr<Core> core;
  DocSession s;
  PySession(std::shared_ptr<Core> c, bool ttt, std::optional<float> inner_lr)
      : core(c), s(c->sliding, SessionOptions{.ttt = ttt, .inner_lr = inner_lr}) {}

  Floats feed(const Ids& ids) {
    Interrupts irq;
    std::vector<float> out;
    {
      nb::gil_scoped_release release;
      std::lock_guard lock(core->mu);
      out = s.feed(span_of(ids), [&] { return irq.check(); });
      if (irq.raised) s.hold(std::move(out));
    }
    irq.rethrow();
    return to_numpy(std::move(out));
  }
  template <class F>
  auto locked(F f) {
    nb::gil_scoped_release release;
    std::lock_guard lock(core->mu);
    return f();
  }
  // What a session file must match: ttt-generate's key for the same model and options.
  SessionKey key() {
    const Config& c = core->model.config;
    return SessionKey{core->fingerprint(),  s.ttt(),
                      s.session().inner_lr(), c.sliding_window_size,
                      c.mini_batch_size,      c.vocab_size,
                      core->sliding.weight_dtype(), core->sliding.kv_dtype()};
  }
  void save(const std::string& path) {
    check_output_file(path, "Session.save");  // a directory, an empty name, an unwritable place: said first
    check_own_file(path, "Session.save", session_file_format());  // the rule of the tools' --save-session
    locked([&] { save_session_file(path, key(), s.save()); });
  }
  void load(const std::string& path) {
    locked([&] { s.load(load_session_file(path, key())); });
  }
};

}  // namespace
}  // namespace ttt::py

NB_MODULE(_tttcl, m) {
  using namespace ttt;
  using namespace ttt::py;
  m.doc() = "The native core of tttcl (use the tttcl package, not this module).";
  nb::exception<ttt::Error>(m, "Error", PyExc_RuntimeError);

  nb::class_<Device>(m, "Device", "An OpenCL device that tttcl can run on.")
      .def_ro("name", &Device::name)
      .def_ro("vendor", &Device::vendor)
      .def_ro("platform_name", &Device::platform_name)
      .def_ro("driver_version", &Device::driver_version)
      .def_ro("device_version", &Device::device_version)
      .def_ro("compute_units", &Device::compute_units)
      .def_ro("global_mem", &Device::global_mem)
      .def_ro("fp16", &Device::fp16)
      .def_prop_ro("type", &Device::type_name)
      .def_prop_ro("spec", &Device::spec, "'P:D', accepted by tttcl.Model(device=...)")
      .def_prop_ro("label", &Device::label)
      .def("__repr__", [](const Device& d) { return fmt::format("<tttcl.Device {}>", d.label()); });
  m.def("devices", &list_devices, "Every OpenCL device of every platform, in platform order.");
  m.def("select_device", &select_device, "spec"_a = "");

  nb::class_<Core>(m, "Core")
      .def(nb::new_([](const std::string& path, const std::string& device, const std::string& weight_dtype,
                       const std::string& kv_dtype) {
             nb::gil_scoped_release release;
             return std::make_shared<Core>(path, device, weight_dtype, kv_dtype);
           }),
           "path"_a, "device"_a = "", "weight_dtype"_a = "auto", "kv_dtype"_a = "f32")
      .def_prop_ro("kv_dtype", [](const Core& c) { return c.sliding.kv_dtype() == DType::F16 ? "f16" : "f32"; })
      .def_prop_ro("weight_dtype", [](const Core& c) {
        std::string n = dtype_name(c.sliding.weight_dtype());  // "BF16" -> "bf16", as the tools' flag spells it
        for (char& ch : n) ch = char(std::tolower(static_cast<unsigned char>(ch)));
        return n;
      })
      .def_prop_ro("path", [](const Core& c) { return c.dir; })
      .def_prop_ro("device", [](const Core& c) { return c.rt.device(); })
      .def_prop_ro("vocab_size", [](const Core& c) { return c.model.config.vocab_size; })
      .def_prop_ro("mini_batch_size", [](const Core& c) { return c.model.config.mini_batch_size; })
      .def_prop_ro("sliding_window_size", [](const Core& c) { return c.model.config.sliding_window_size; })
      .def_prop_ro("inner_lr", [](const Core& c) { return c.sliding.inner_lr(); })
      .def_prop_ro("bos_id", [](const Core& c) { return c.model.config.bos_token_id; })
      .def_prop_ro("has_tokenizer", [](const Core& c) { return c.tok.has_value(); })
      .def_prop_ro("tokenizer_name", [](const Core& c) { return c.tokenizer().name(); })
      .def("encode",
           [](const Core& c, const std::string& text, bool parse_special) {
             return to_numpy(c.tokenizer().encode(text, parse_special));
           },
           "text"_a, "parse_special"_a = false)
      .def("decode",
           [](const Core& c, const Ids& ids) {
             const auto s = span_of(ids);
             const std::string out = c.tokenizer().decode({s.begin(), s.end()});
             return nb::bytes(out.data(), out.size());
           },
           "ids"_a)
      .def("score", &score, "docs"_a, "ttt"_a, "inner_lr"_a.none(), "full_attention"_a, "parallel"_a,
           "progress"_a.none())
      .def_static("stats",
                  [](const nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu>& nll) {
                    const std::vector<float> v(nll.data(), nll.data() + nll.shape(0));
                    const PplStats s = ppl_stats(v);
                    return std::make_tuple(s.mean_nll, s.ppl, s.ppl_err, s.nll_err);
                  },
                  "nll"_a);

  nb::class_<Generator>(m, "Generator")
      .def(nb::new_([](std::shared_ptr<Core> core, const Ids& prompt, float temperature, int top_k, float top_p,
                       float repeat_penalty, int repeat_last_n, uint64_t seed, std::vector<std::string> stops,
                       bool ttt, int max_tokens) {
             SamplingOptions so{temperature, top_k, top_p, repeat_penalty, repeat_last_n, seed};
             for (const auto& s : stops)
               if (s.empty()) throw Error("stop=['']: an empty stop string would stop before the first token");
             nb::gil_scoped_release release;
             std::lock_guard lock(core->mu);
             return std::make_unique<Generator>(core, prompt, so, std::move(stops), ttt, max_tokens);
           }),
           "core"_a, "prompt"_a, "temperature"_a, "top_k"_a, "top_p"_a, "repeat_penalty"_a, "repeat_last_n"_a,
           "seed"_a, "stops"_a, "ttt"_a, "max_tokens"_a)
      .def("next", &Generator::next)
      .def_prop_ro("produced", &Generator::produced);

  nb::class_<PySession>(m, "DocSession")
      .def(nb::new_([](std::shared_ptr<Core> core, bool ttt, std::optional<float> inner_lr) {
             if (inner_lr && !(*inner_lr >= 0)) throw Error(fmt::format("inner_lr={} must be >= 0", *inner_lr));
             nb::gil_scoped_release release;
             std::lock_guard lock(core->mu);
             return std::make_unique<PySession>(core, ttt, inner_lr);
           }),
           "core"_a, "ttt"_a, "inner_lr"_a.none())
      .def("feed", &PySession::feed, "ids"_a)
      .def("flush", [](PySession& p) { return to_numpy(p.locked([&] { return p.s.flush(); })); })
      .def("logits", [](PySession& p) { return to_numpy(p.locked([&] { return p.s.logits(); })); })
      .def("reset", [](PySession& p) { p.locked([&] { p.s.reset(); }); })
      .def("save", &PySession::save, "path"_a)
      .def("load", &PySession::load, "path"_a)
      .def_prop_ro("position", [](const PySession& p) { return p.s.position(); })
      .def_prop_ro("pending", [](const PySession& p) { return p.s.pending(); })
      .def_prop_ro("ended", [](const PySession& p) { return p.s.ended(); })
      .def_prop_ro("ttt", [](const PySession& p) { return p.s.ttt(); });
}
