// `ttt-bench decode --plot`: latency against context, one line per mode, as SVG.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ttt::bench {

struct Point {
  std::string mode;
  int64_t context;
  double median, p90, min;  // min: the least disturbed token on a shared machine
  double busy;              // CPU time of this process over wall time x hardware threads, while timing
};

// An SVG of median latency against context (log scale), one line per mode.
std::string svg_plot(const std::vector<Point>& pts, const std::string& title, const std::string& subtitle);

}  // namespace ttt::bench
