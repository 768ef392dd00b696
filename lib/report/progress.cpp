// Progress: the terminal bar and the plain log lines, with their rate limits.
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
}

Progress::~Progress() {
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

void Progress::draw_bar(bool final) {
  int cols = 80;
  winsize ws{};
  if (isatty(fileno(out_)) && ioctl(fileno(out_), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) cols = ws.ws_col;
  const std::string text = status(final);
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
  if (finished_ || mode_ == Mode::Quiet) return;
  done_ = done;
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

}  // namespace ttt
