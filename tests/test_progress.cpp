// The progress display in each mode (plain lines, a redrawn terminal bar,
// quiet), driven by an injected clock and captured output.
#include "lib/report/progress.hpp"
#include "tests/text_util.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <mutex>
#include <thread>
#include <cstdlib>
#include <string>
#include <vector>

namespace ttt {
namespace {
// Captures what a FILE* receives.
struct Capture {
  char* buf = nullptr;
  size_t len = 0;
  std::FILE* f = open_memstream(&buf, &len);
  std::string str() {
    std::fflush(f);
    return std::string(buf, len);
  }
  ~Capture() {
    std::fclose(f);
    std::free(buf);
  }
};

TEST(reportProgress, FormatDuration) {
  EXPECT_EQ(format_duration(0), "0s");
  EXPECT_EQ(format_duration(15.2), "15s");
  EXPECT_EQ(format_duration(125), "2m05s");
  EXPECT_EQ(format_duration(3720), "1h02m");
  EXPECT_EQ(format_duration(-1), "--");
  EXPECT_EQ(format_duration(INFINITY), "--");
}

TEST(reportProgress, PlainLinesAreFewAndHaveNoCarriageReturn) {
  Capture cap;
  double t = 0;
  {
    Progress p(16384, "eval", Progress::Mode::Plain, cap.f, [&] { return t; });
    EXPECT_EQ(p.mode(), Progress::Mode::Plain);
    for (size_t done = 64; done <= 16384; done += 64) {  // 256 updates, 0.25 s apart: 64 s in all
      t = double(done) / 256;
      p.update(done);
    }
    p.finish();
  }
  const std::string out = cap.str();
  EXPECT_EQ(out.find('\r'), std::string::npos);
  const auto ls = lines(out);
  // One per 10% at most (the 2 s gap merges none here: 10% takes 6.4 s), plus the final line.
  EXPECT_GE(ls.size(), 5u);
  EXPECT_LE(ls.size(), 11u);
  for (const auto& l : ls) EXPECT_EQ(l.rfind("eval: ", 0), 0u) << l;
  EXPECT_NE(ls[0].find("/16384 tokens ("), std::string::npos) << ls[0];
  EXPECT_NE(ls[0].find(" tok/s, ETA "), std::string::npos) << ls[0];
  EXPECT_EQ(ls.back().rfind("eval: done, 16384/16384 tokens (100.0%) in ", 0), 0u) << ls.back();
  EXPECT_NE(ls.back().find("256.0 tok/s"), std::string::npos) << ls.back();  // 16384 tokens / 64 s
}

TEST(reportProgress, PlainExampleLine) {
  Capture cap;
  double t = 0;
  Progress p(16384, "progress", Progress::Mode::Plain, cap.f, [&] { return t; });
  t = 4096 / 812.3;  // past the 2 s gap, at 25%
  p.update(4096);
  EXPECT_EQ(cap.str(), "progress: 4096/16384 tokens (25.0%), 812.3 tok/s, ETA 15s\n");
}

TEST(reportProgress, PlainHeartbeatOnSlowRuns) {
  Capture cap;
  double t = 0;
  Progress p(1000000, "slow", Progress::Mode::Plain, cap.f, [&] { return t; });
  for (int k = 1; k <= 60; ++k) {  // 10 minutes, 0.6% of the work
    t = 10.0 * k;
    p.update(size_t(k) * 100);
  }
  // No 10% step was reached: one line a minute.
  EXPECT_EQ(lines(cap.str()).size(), 10u);
}

TEST(reportProgress, TtyRedrawsInPlaceAtMostTenTimesASecond) {
  Capture cap;
  double t = 0;
  {
    Progress p(1000, "eval", Progress::Mode::Tty, cap.f, [&] { return t; });
    for (size_t done = 1; done <= 1000; ++done) {  // 1000 updates within 1 s
      t += 0.001;
      p.update(done);
    }
    p.finish();
  }
  const std::string out = cap.str();
  const size_t draws = count(out, "\r");
  EXPECT_GE(draws, 9u);
  EXPECT_LE(draws, 12u);  // ~10 in the second, plus the final one
  EXPECT_EQ(count(out, "\n"), 1u);  // only finish() ends the line
  EXPECT_EQ(out.back(), '\n');
  EXPECT_NE(out.find("eval ["), std::string::npos);
  EXPECT_NE(out.find("1000/1000 tokens (100.0%) in "), std::string::npos);
  EXPECT_NE(out.find("ETA "), std::string::npos);
}

TEST(reportProgress, TtyLeftOpenEndsItsLine) {
  Capture cap;
  double t = 0;
  {
    Progress p(100, "x", Progress::Mode::Tty, cap.f, [&] { return t; });
    p.update(10);
  }
  const std::string out = cap.str();
  EXPECT_EQ(out.front(), '\r');
  EXPECT_EQ(out.back(), '\n');
  EXPECT_EQ(out.find("in "), std::string::npos);  // no claim of completion
}

TEST(reportProgress, QuietAndAutoAndZeroTotal) {
  Capture cap;
  double t = 0;
  {
    Progress q(100, "q", Progress::Mode::Quiet, cap.f, [&] { return t; });
    q.update(50);
    q.finish();
  }
  EXPECT_EQ(cap.str(), "");
  Progress a(100, "a", Progress::Mode::Auto, cap.f);
  EXPECT_EQ(a.mode(), Progress::Mode::Plain);  // a memory stream is no terminal
  {
    Progress z(0, "z", Progress::Mode::Plain, cap.f, [&] { return t; });
    t = 5;
    z.update(0);
    z.finish();
    z.finish();  // twice: one line
  }
  const auto ls = lines(cap.str());
  ASSERT_EQ(ls.size(), 2u);
  EXPECT_NE(ls[0].find("0/0 tokens (100.0%)"), std::string::npos) << ls[0];
  EXPECT_EQ(ls[1].rfind("z: done", 0), 0u) << ls[1];
}


// One mini-batch that takes a minute (a slow device): no update comes, and the
// timer's ticks say what the probe says, after kStillAfter and then every
// kPlainStillEvery seconds in a log; an update starts the count again.
TEST(reportProgress, PlainStillWorkingDuringOneLongStep) {
  Capture cap;
  double t = 0, w = 100;
  Progress p(81, "progress", Progress::Mode::Plain, cap.f, [&] { return t; });
  std::string where = "tokens 0-63: forward, block 7/12 done";
  p.set_probe([&] { return where; }, [&] { return w; });
  for (int k = 1; k <= 4; ++k) {  // 2 s: not yet
    w += 0.5;
    p.tick();
  }
  EXPECT_EQ(cap.str(), "");
  for (int k = 1; k <= 116; ++k) {  // to 60 s, ticking twice a second
    w += 0.5;
    if (k == 60) where = "tokens 0-63: backward, block 2/10 done";
    p.tick();
  }
  const auto ls = lines(cap.str());
  ASSERT_EQ(ls.size(), 4u) << cap.str();  // at 5, 20, 35 and 50 s
  EXPECT_EQ(ls[0], "progress: still working (5s since the last update): tokens 0-63: forward, block 7/12 done");
  EXPECT_EQ(ls[3], "progress: still working (50s since the last update): tokens 0-63: backward, block 2/10 done");
  t = 60;
  p.update(63);  // the mini-batch ends: a plain line (past the 2 s gap and a decile)
  w += 4;
  p.tick();  // 4 s after it: quiet again
  EXPECT_EQ(lines(cap.str()).size(), 5u) << cap.str();
  w += 1;
  p.tick();
  const auto after = lines(cap.str());
  ASSERT_EQ(after.size(), 6u) << cap.str();
  EXPECT_EQ(after[5], "progress: still working (5s since the last update): tokens 0-63: backward, block 2/10 done");
  p.finish();
  const size_t n = lines(cap.str()).size();
  w += 100;
  p.tick();  // finished: nothing more
  EXPECT_EQ(lines(cap.str()).size(), n);
}

TEST(reportProgress, TtyStillWorkingRedrawsTheBarWithTheProbe) {
  Capture cap;
  double t = 0, w = 0;
  Progress p(100, "eval", Progress::Mode::Tty, cap.f, [&] { return t; });
  std::string where;  // nothing to say yet
  p.set_probe([&] { return where; }, [&] { return w; });
  t = 1;
  p.update(10);
  w = 6;
  p.tick();
  w = 7;
  where = "tokens 0-63: loss done";
  p.tick();  // a terminal is redrawn every tick
  const std::string out = cap.str();
  EXPECT_EQ(count(out, "\r"), 3u) << out;
  EXPECT_EQ(count(out, "\n"), 0u) << out;
  EXPECT_NE(out.find("] 10/100 tokens, still working 6s\r"), std::string::npos) << out;
  EXPECT_NE(out.find("] 10/100 tokens, still working 7s: tokens 0-63: loss done"), std::string::npos) << out;
}

// The timer thread itself: a probe that counts its calls, a real clock.
TEST(reportProgress, WatchThreadStopsAtFinish) {
  Capture cap;
  std::atomic<int> calls{0};
  double t = 0;
  Progress p(10, "w", Progress::Mode::Plain, cap.f, [&] { return t; });
  double w = 0;
  std::mutex m;
  p.watch(
      [&] {
        ++calls;
        return std::string("somewhere");
      },
      [&] {
        std::lock_guard<std::mutex> lock(m);
        return w += 3;  // 6 s a tick: every tick is past kStillAfter
      });
  for (int i = 0; i < 100 && calls.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  p.finish();
  const int seen = calls.load();
  EXPECT_GE(seen, 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  EXPECT_EQ(calls.load(), seen);  // no tick after finish()
  EXPECT_NE(cap.str().find("w: still working ("), std::string::npos) << cap.str();
}

}  // namespace
}  // namespace ttt
