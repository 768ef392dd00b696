// Progress display of long evaluations (ttt-perplexity): a bar redrawn in
// place with \r on a terminal, and short plain lines in logs, so a harness
// reading the log gets a few parseable lines instead of a stream of redraws.
// The tools draw it on stderr: stdout carries the report alone.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace ttt {

// One thread calls update() and finish(); watch()'s timer thread may show
// "still working" between them (a mutex keeps the two apart).
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
  // Still working (watch()): after kStillAfter seconds without an update the
  // bar shows what the probe says; plain lines say it then and every
  // kPlainStillEvery seconds after, so one slow mini-batch is never silent.
  static constexpr double kStillAfter = 5.0;
  static constexpr double kPlainStillEvery = 15.0;
  using Probe = std::function<std::string()>;  // where the work is now, e.g. "tokens 0-63: forward, block 7/12 done"

  Progress(size_t total, std::string label, Mode mode = Mode::Auto, std::FILE* out = stdout, Clock clock = {});
  // Ends a bar left open with a newline, so whatever is printed next (an
  // error, say) starts on its own line; prints no "done" line.
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void update(size_t done);  // tokens done so far (not an increment)
  void finish();             // final line with elapsed time and rate; later calls do nothing
  Mode mode() const { return mode_; }  // never Auto

  // Starts a timer thread that calls tick() twice a second until finish() or
  // the destructor. probe runs on that thread (Runtime::reached is made for it);
  // wall: monotonic seconds for the idle time, a steady clock when empty (the
  // Clock of the constructor may be one only the updating thread can read).
  void watch(Probe probe, Clock wall = {});
  // What the timer does, for tests: when no update() came for kStillAfter
  // seconds of wall time, shows "still working" with the probe's text. A
  // watch(..., wall) without a thread: set_probe.
  void set_probe(Probe probe, Clock wall = {});
  void tick();

 private:
  double now() const;
  double wall() const;
  void stop_watch();
  // "4096/16384 tokens (25.0%), 812.3 tok/s, ETA 15s"; final: "... (100.0%) in 20s, 812.3 tok/s"
  std::string status(bool final) const;
  void draw_bar(bool final);                              // with the status now
  void draw_line(const std::string& text, bool final);  // with this text

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

  std::mutex mutex_;  // update/finish against tick
  Probe probe_;
  Clock wall_;
  double last_update_wall_ = 0, last_still_ = -1;
  std::thread watcher_;
  std::condition_variable wake_;
  bool stop_ = false;
};

// "15s", "2m05s", "1h02m": compact durations for ETAs.
std::string format_duration(double seconds);

}  // namespace ttt
