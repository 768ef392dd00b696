// Progress: the terminal bar and the plain log lines, with their rate limits,
// and the timer that says "still working" while one long step runs.
#include "lib/report/progress.hpp"

#include <fmt/format.h>

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>

namespace ttt {

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "--";
  const auto t = static_cast<long long>(std::llround(s));
  if (t < 60) return fmt::format("{}s", t);
  if (t < 3600) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}h{:02}m", t / 3600, (t % 3600) / 60);
}

Progress::Progress(size_t total, std::string label, Mode mode, std::FILE* out, Clock clock)
    : total_(total), label_(std::move(label)), mode_(mode), out_(out), clock_(std::move(clock)) {
  if (!out_) mode_ = Mode::Quiet;
  if (mode_ == Mode::Auto) mode_ = isatty(fileno(out_)) ? Mode::Tty : Mode::Plain;
  start_ = now();
  last_update_wall_ = wall();
}

Progress::~Progress() {
  stop_watch();
  if (mode_ == Mode::Tty && !finished_ && bar_len_ > 0) {
    std::fputc('\n', out_);
    std::fflush(out_);
  }
}

double Progress::now() const {
  if (clock_) return clock_();
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

double Progress::wall() const {
  if (wall_) return wall_();
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

std::string Progress::status(bool final) const {
  const double elapsed = now() - start_;
  const double rate = elapsed > 0 ? double(done_) / elapsed : 0;
  const double pct = total_ ? 100.0 * double(std::min(done_, total_)) / double(total_) : 100.0;
  std::string s = fmt::format("{}/{} tokens ({:.1f}%)", done_, total_, pct);
  if (final) s += " in " + format_duration(elapsed);
  s += rate > 0 ? fmt::format(", {:.1f} tok/s", rate) : ", -- tok/s";
  if (!final)
    s += ", ETA " + (rate > 0 && done_ < total_ ? format_duration(double(total_ - done_) / rate)
                                                : std::string(done_ >= total_ ? "0s" : "--"));
  return s;
}

void Progress::draw_bar(bool final) { draw_line(status(final), final); }

void Progress::draw_line(const std::string& text, bool final) {
  int cols = 80;
  winsize ws{};
  if (isatty(fileno(out_)) && ioctl(fileno(out_), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) cols = ws.ws_col;
  // The bar takes what the label and status leave, within [10, 40]; on a
  // narrow terminal the line is cut short, since a wrapped line breaks \r.
  const int room = cols - 1 - int(label_.size() + text.size() + 5);
  const size_t w = size_t(std::clamp(room, 10, 40));
  const double frac = total_ ? std::min(1.0, double(done_) / double(total_)) : 1.0;
  const size_t fill = size_t(frac * double(w));
  std::string bar(w, ' ');
  std::fill_n(bar.begin(), fill, '=');
  if (fill < w) bar[fill] = '>';
  std::string line = fmt::format("{} [{}] {}", label_, bar, text);
  if (line.size() > size_t(cols - 1)) line.resize(size_t(std::max(cols - 1, 1)));
  const size_t len = line.size();
  if (len < bar_len_) line += std::string(bar_len_ - len, ' ');
  bar_len_ = len;
  std::fputc('\r', out_);
  std::fputs(line.c_str(), out_);
  if (final) std::fputc('\n', out_);
  std::fflush(out_);
}

void Progress::update(size_t done) {
  if (mode_ == Mode::Quiet) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (finished_) return;
  done_ = done;
  last_update_wall_ = wall();
  last_still_ = -1;
  const double t = now();
  if (mode_ == Mode::Tty) {
    if (last_draw_ >= 0 && t - last_draw_ < kTtyInterval) return;
    last_draw_ = t;
    draw_bar(false);
    return;
  }
  const size_t decile = total_ ? std::min<size_t>(10, done_ * 10 / total_) : 10;
  const double since = last_draw_ >= 0 ? t - last_draw_ : t - start_;
  if (since < kPlainMinGap) return;
  if (decile <= last_decile_ && since < kPlainHeartbeat) return;
  last_draw_ = t;
  last_decile_ = std::max(last_decile_, decile);
  std::fprintf(out_, "%s: %s\n", label_.c_str(), status(false).c_str());
  std::fflush(out_);
}

void Progress::finish() {
  stop_watch();
  std::lock_guard<std::mutex> lock(mutex_);
  if (finished_) return;
  finished_ = true;
  if (mode_ == Mode::Quiet) return;
  if (mode_ == Mode::Tty) {
    draw_bar(true);
    return;
  }
  std::fprintf(out_, "%s: done, %s\n", label_.c_str(), status(true).c_str());
  std::fflush(out_);
}

void Progress::set_probe(Probe probe, Clock wall) {
  std::lock_guard<std::mutex> lock(mutex_);
  probe_ = std::move(probe);
  wall_ = std::move(wall);
  last_update_wall_ = this->wall();
}

void Progress::watch(Probe probe, Clock wall) {
  if (mode_ == Mode::Quiet || watcher_.joinable()) return;
  set_probe(std::move(probe), std::move(wall));
  watcher_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stop_) {
      wake_.wait_for(lock, std::chrono::milliseconds(500));
      if (stop_) break;
      lock.unlock();
      tick();
      lock.lock();
    }
  });
}

void Progress::stop_watch() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (watcher_.joinable()) watcher_.join();
}

void Progress::tick() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (finished_ || mode_ == Mode::Quiet) return;
  const double t = wall(), idle = t - last_update_wall_;
  if (idle < kStillAfter) return;
  if (mode_ == Mode::Plain && last_still_ >= 0 && t - last_still_ < kPlainStillEvery) return;
  last_still_ = t;
  const std::string where = probe_ ? probe_() : std::string();
  const std::string at = where.empty() ? "" : ": " + where;
  if (mode_ == Mode::Tty) {  // short, for the width of a terminal: the rate and ETA wait for the next update
    draw_line(fmt::format("{}/{} tokens, still working {}{}", done_, total_, format_duration(idle), at), false);
  } else {
    std::fprintf(out_, "%s: still working (%s since the last update)%s\n", label_.c_str(),
                 format_duration(idle).c_str(), at.c_str());
    std::fflush(out_);
  }
}

}  // namespace ttt
