// What every command-line tool shares, so that a new tool gets it for free:
// main() turns exceptions into one clear line and an exit code (2 for usage
// errors, 1 for runtime errors, 130 for an interrupt), the --help and --version
// flags, -d/--device, -f - for standard input, and the check that no output
// replaces an input or another output. The library never exits; only these do.
#pragma once

#include "ttt/output.hpp"       // OwnFormat
#include "ttt/safetensors.hpp"  // DType

#include <boost/program_options.hpp>

#include <csignal>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ttt {
class Progress;
class Runtime;
class Tokenizer;
struct Config;
}

namespace ttt::app {

namespace po = boost::program_options;

// Runs body(argc, argv); prints "NAME: error: ..." on failure: exit 2 for a
// usage error (po::error, UsageError), 1 for any other. Until the tool calls
// catch_interrupts(), SIGINT ends it at once with status 130.
int run(const char* name, int argc, char** argv, int (*body)(int, char**));

// Parses argv against opts (and positional, if any); --help prints usage +
// opts, --version the tool's name and version, and both return false (the
// caller exits 0). An empty --device is a usage error.
bool parse(int argc, char** argv, const po::options_description& opts, po::variables_map& vm, const char* usage,
           const char* about, const po::positional_options_description* positional = nullptr);

// A bad option value: exits 2 like Boost's own parse errors. The message names the flag.
struct UsageError : po::error {
  explicit UsageError(const std::string& what) : po::error(what) {}
};

// Range-checked numeric options, declared as po::value<int64_t> or <float>:
// a value outside [min, max] (or a NaN) is a UsageError naming --name, so a
// negative count cannot wrap into a huge one.
int64_t int_option(const po::variables_map& vm, const char* name, int64_t min,
                   int64_t max = std::numeric_limits<int64_t>::max());
float nonneg_float_option(const po::variables_map& vm, const char* name);  // finite and >= 0

// "-d/--device": the same flag and help in every tool; `what` says what it runs on the device, if not everything.
void add_device_option(po::options_description& opts, const char* what = nullptr);
// The device the flag names, for ttt::Runtime ("" when --device was not given: $TTT_DEVICE, else the
// first GPU, else the first device); an empty --device '' is a UsageError.
std::string device_spec(const po::variables_map& vm);

// "--weight-dtype auto|f32|f16|bf16": the same flag in every tool that runs a model.
void add_weight_dtype_option(po::options_description& opts);
// Its choice: nullopt for auto (the model file's type); a bad value is a UsageError naming the flag.
std::optional<DType> weight_dtype(const po::variables_map& vm);
// "bf16 weights": the storage an engine with that choice gives a model of file type `file`, for header lines.
using ttt::dtype_flag;  // a storage type as the --weight-dtype and --kv-dtype flags spell it (ttt/safetensors.hpp)
std::string weight_label(const std::optional<DType>& choice, DType file);
// "--kv-dtype f32|f16": the same flag in every tool that runs a model (EngineOptions::kv_dtype).
void add_kv_dtype_option(po::options_description& opts);
// Its choice (f32 when absent); a bad value is a UsageError naming the flag.
DType kv_dtype(const po::variables_map& vm);
// "f16 kv": the rings' storage, for header lines.
std::string kv_label(DType t);
// "--head-tiles": the same switch in every tool that prefills (EngineOptions::head_tiles).
void add_head_tiles_option(po::options_description& opts);
bool head_tiles(const po::variables_map& vm);

// The text of a file, or of standard input for "-"; errors name `flag` and the path.
std::string read_text(const std::string& path, const std::string& flag);

// The tokenizer file given with --tokenizer, checked against the model's vocabulary (errors name the flag).
Tokenizer tokenizer_for(const std::string& path, const Config& cfg);

// Every file a run reads and writes, each with the flag that named it. check(),
// before any work: an output that is an input or another output (after
// resolving links and "..", the same file by inode where both exist) is a
// UsageError naming both flags; then every output must be writable, by the
// library's one check (ttt::check_output_file, ttt::check_output_dir: a
// ttt::Error naming the user's path and the reason), and an existing output
// file is replaced only when it is empty or shows its format's signature, as a
// file this tool wrote (ttt::check_own_file: else a ttt::Error naming the flag,
// the path and what is missing; the file is left untouched). "-" (standard
// input) is never compared; "-" as an output is a UsageError (stdout carries the report).
class Paths {
 public:
  Paths& input(const std::string& flag, const std::string& path);
  Paths& inputs(const std::string& flag, const std::vector<std::string>& paths);
  // A model directory: the files a tool reads from it.
  Paths& model(const std::string& flag, const std::string& dir);
  // An output file in `format` (json_format(), svg_format(), a binary format's magic ...).
  Paths& output(const std::string& flag, const std::string& path, OwnFormat format);
  // An output whose writer judges an existing file itself (the --journal, which it appends to or refuses).
  Paths& output(const std::string& flag, const std::string& path);
  // An output written with write_output that an interrupt can leave partial: PATH and PATH.partial.
  Paths& report(const std::string& flag, const std::string& path, const OwnFormat& format);
  // A directory the tool creates or fills, and the names of the files it writes
  // there: compared with the rest; the directory itself must be creatable or
  // writable, never a model() directory, and empty unless force.
  Paths& output_dir(const std::string& flag, const std::string& dir, const std::vector<std::string>& files,
                    bool force = true);
  // Optional flags: added only when given (flag is "--name").
  Paths& input(const po::variables_map& vm, const char* name);
  Paths& output(const po::variables_map& vm, const char* name, const OwnFormat& format);
  Paths& output(const po::variables_map& vm, const char* name);
  Paths& report(const po::variables_map& vm, const char* name, const OwnFormat& format);
  void check() const;

 private:
  struct Entry {
    std::string flag, path;
    // in_dir: a file of an output directory, which is checked as a whole; dir_force: one that may hold files
    enum Kind { file, dir, dir_force, in_dir } kind = file;
    std::optional<OwnFormat> format = {};  // what an existing file must show to be replaced; none: its writer judges
  };
  std::vector<Entry> in_, out_;
  std::vector<std::string> models_;  // model() directories: never an output directory
};

// The signatures of the tools' text outputs, each naming the tool that runs (written_by(): "ttt-niah 0.9.0 (ttt-cl)"):
// a writer puts it in, Paths knows the file by it. A JSON object carries "written_by": written_by(); an SVG the
// comment "<!-- written by ... -->" (svg_signed() puts it after the XML declaration); a text file a first line
// "# written by ..." (comment_header()). An existing file is the tool's own when it names the same tool.
std::string written_by();
OwnFormat json_format(const char* what);                       // what: "a ttt-perplexity JSON report"
OwnFormat svg_format();
std::string svg_signed(std::string_view svg);
OwnFormat commented_format(const char* what);                  // a "# written by TOOL " first line
std::string comment_header(std::string_view about);            // "# written by TOOL VERSION (ttt-cl): ABOUT\n"

// Prints "TOOL: compiling kernels for DEVICE (first run only, cached in DIR)"
// on stderr before rt builds its first kernel program from source, then a
// line per program built ("TOOL: compiling kernels: 3/8 attention"), redrawn
// in place on a terminal.
void announce_compiles(Runtime& rt, const char* tool);

// A progress display that one slow mini-batch (a minute on a slow device)
// does not silence: after Progress::kStillAfter seconds without an update it
// says "still working" and which block the device has passed. Those marks
// (Runtime::mark_progress) are enqueued for the first step, then only while
// steps are slow (kSlowStep seconds or more apart) or once the display found
// one slow: a fast run's queue stays as it was. Nothing for a quiet display.
class DeviceProgress {
 public:
  static constexpr double kSlowStep = 1.0;
  DeviceProgress(Progress& progress, Runtime& rt);
  void update(size_t done);  // progress.update(done), and marks on or off
 private:
  Progress& progress_;
  Runtime& rt_;
  bool watching_ = false;
  double last_ = 0;
};

// Interrupts: after catch_interrupts(), SIGINT and SIGTERM only raise a flag
// that long loops poll between mini-batches (and say so on stderr); a second
// signal ends the process at once. interrupted() returns the signal (0: none).
// `then` is what the notice says the tool does before it stops.
void catch_interrupts(const char* tool, const char* then = "finishing the current mini-batch, then writing partial results");
int interrupted();

// Writes a tool's output file atomically (ttt::write_file_atomic). After an
// interrupt the data is partial and replaces no complete file: where PATH exists it stays, and the data
// goes to PATH.partial instead (said on stderr). Paths::output checks PATH.partial with PATH.
void write_output(const std::string& path, std::string_view data);
// "PATH.partial": where write_output puts the partial results of an interrupted run when PATH exists.
std::string partial_path(const std::string& path);
// Where an output file goes now: PATH, or, after an interrupt, PATH.partial where PATH exists (said on stderr);
// a device, FIFO or socket (ttt::written_through) is always PATH. write_output writes there.
std::string output_target(const std::string& path);

}  // namespace ttt::app
