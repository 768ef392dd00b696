// `ttt-bench decode`: per-token decode latency against context length.
#pragma once

namespace ttt::bench {
int decode(int argc, char** argv);
}
