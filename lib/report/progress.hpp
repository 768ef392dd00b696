// Progress display of long evaluations (ttt-perplexity): a bar redrawn in
// place with \r on a terminal, and short plain lines in logs, so a harness
// reading the log gets a few parseable lines instead of a stream of redraws.
// The tools draw it on stderr: stdout carries the report alone.
#pragma once

#include <cstddef>
#include <cstdio>
#include <functional>
#include <string>

namespace ttt {

// Not thread-safe: one thread calls update() and finish().
class Progress {
 public:
  enum class Mode {
    Auto,   // Tty when `out` is a terminal, Plain otherwise
    Tty,    // one line redrawn with \r, at most every kTtyInterval seconds
    Plain,  // "label: 4096/16384 tokens (25.0%), 812.3 tok/s, ETA 15s" lines
    Quiet,  // nothing
  };
  using Clock = std::function<double()>;  // monotonic seconds; tests inject one

  static constexpr double kTtyInterval = 0.1;
  // Plain lines: one each time another 10% is done, or after kPlainHeartbeat
  // seconds without one (a slow run still shows life), never two within
  // kPlainMinGap seconds.
  static constexpr double kPlainMinGap = 2.0;
  static constexpr double kPlainHeartbeat = 60.0;

  Progress(size_t total, std::string label, Mode mode = Mode::Auto, std::FILE* out = stdout, Clock clock = {});
  // Ends a bar left open with a newline, so whatever is printed next (an
  // error, say) starts on its own line; prints no "done" line.
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void update(size_t done);  // tokens done so far (not an increment)
  void finish();             // final line with elapsed time and rate; later calls do nothing
  Mode mode() const { return mode_; }  // never Auto

 private:
  double now() const;
  // "4096/16384 tokens (25.0%), 812.3 tok/s, ETA 15s"; final: "... (100.0%) in 20s, 812.3 tok/s"
  std::string status(bool final) const;
  void draw_bar(bool final);

  size_t total_;
  std::string label_;
  Mode mode_;
  std::FILE* out_;
  Clock clock_;
  double start_ = 0, last_draw_ = -1;
  size_t done_ = 0;
  size_t last_decile_ = 0;  // of the last plain line
  size_t bar_len_ = 0;      // length of the line on screen, to blank leftovers
  bool finished_ = false;
};

// "15s", "2m05s", "1h02m": compact durations for ETAs.
std::string format_duration(double seconds);

}  // namespace ttt
