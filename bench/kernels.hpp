// ttt-bench kernels: the kernel test cases (tests/cases.hpp) timed on a device.
#pragma once

namespace ttt::bench {
int kernels(int argc, char** argv);
}  // namespace ttt::bench
