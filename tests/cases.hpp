// The shape lists that both the kernel tests and `ttt-bench kernels` walk, so
// that tests and benchmarks never disagree on cases (CLBlast's routine
// descriptions do the same). Sizes are awkward on purpose: 1, 7, 93, 1023-1025,
// head_dim 2..256, T < W, T = W, T > W, ring wrap-around, huge positions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ttt::cases {

struct Attention {
  int T, W, H, E;
  int64_t pos0;
  int extra_ring;  // ring rows beyond the minimum W + T - 1
  std::string name() const {
    return "T" + std::to_string(T) + "_W" + std::to_string(W) + "_H" + std::to_string(H) + "_E" + std::to_string(E) +
           "_pos" + std::to_string(pos0);
  }
};
inline const std::vector<Attention>& attention() {
  static const std::vector<Attention> c = {
      {1, 1, 1, 16, 0, 0},     {7, 16, 2, 16, 0, 0},      {16, 16, 2, 64, 21, 0}, {93, 32, 1, 64, 50, 3},
      {33, 40, 2, 80, 100, 0}, {130, 64, 2, 64, 1000, 7}, {9, 12, 1, 256, 5, 0},  {17, 5, 3, 16, 3, 0},
      {20, 24, 2, 16, 1000003, 1}, {64, 1024, 1, 64, 64, 0}, {11, 9, 2, 6, 3, 0}, {5, 4, 3, 2, 7, 2},
      // Two blocks of 64 queries (the CPU forward's), the second of 6; key tiles of 32 that every query
      // of the first block sees whole, one of them across the ring's wrap (C = 280).
      {70, 100, 2, 16, 300, 111},
      // T = 1 (decode): keys split across work-groups, wrapped rings, partly filled windows.
      {1, 2048, 1, 64, 5000, 0}, {1, 1000, 2, 80, 999, 3}, {1, 600, 1, 16, 100, 0}, {1, 1500, 1, 256, 4096, 1},
      {1, 7, 3, 6, 1000003, 2},
  };
  return c;
}

struct Xent {
  int T, D, V, tile;
  bool tied;
  std::string name() const {
    return "T" + std::to_string(T) + "_D" + std::to_string(D) + "_V" + std::to_string(V) + "_tile" +
           std::to_string(tile) + (tied ? "_tied" : "_untied");
  }
};
inline const std::vector<Xent>& xent() {
  static const std::vector<Xent> c = {{1, 1, 2, 1024, true},      {7, 16, 93, 10, true},       {5, 33, 1000, 93, false},
                                      {93, 64, 300, 300, true},   {17, 80, 1025, 1024, false}, {3, 8, 7, 1, true}};
  return c;
}

struct RmsNorm {
  int T, H, N;  // T rows of H slices of N
  std::string name() const {
    return "T" + std::to_string(T) + "_H" + std::to_string(H) + "_N" + std::to_string(N);
  }
};
inline const std::vector<RmsNorm>& rmsnorm() {
  static const std::vector<RmsNorm> c = {{1, 1, 1},    {7, 1, 93},  {93, 1, 7},  {3, 1, 1023}, {2, 1, 1024},
                                         {2, 1, 1025}, {5, 3, 16},  {4, 12, 64}, {3, 2, 80}};
  return c;
}

struct Gemm {
  int M, N, K;
  bool ta, tb;
  std::string name() const {
    return std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) + (ta ? "_At" : "") + (tb ? "_Bt" : "");
  }
};
inline const std::vector<Gemm>& gemm() {
  static const std::vector<Gemm> c = {
      {1, 1, 1, false, false}, {7, 93, 13, false, true}, {93, 7, 1024, true, false}, {64, 33, 5, true, true},
      {1025, 3, 7, false, false}};
  return c;
}

}  // namespace ttt::cases
