// The autodiff's tape, its gradient sweep, and the ops: each forward is a
// plain loop, each backward rule is built from ops so that it can itself be
// differentiated. matmul is the only op that matters for time: blocked rows,
// split across std::thread workers when large.
#include "lib/reference/autodiff.hpp"

#include "ttt/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstdlib>
#include <thread>
#include <unordered_map>

namespace ttt::ref::ad {
namespace {

void check(bool ok, const char* op, Var a, Var b = nullptr) {
  if (ok) return;
  throw Error(fmt::format("autodiff {}: shapes ({}, {}) and ({}, {}) do not fit", op, a->rows, a->cols,
                          b ? b->rows : 0, b ? b->cols : 0));
}

// A new node of a's tape; its backward is set only if it carries gradient.
Var node(Var a, int rows, int cols, std::vector<Var> in) { return a->tape->make(rows, cols, std::move(in)); }

using Rule = std::function<void(Node&, Var, Var*)>;
void set_back(Var y, Rule r) {
  if (y->req) y->back = std::move(r);
}

// Threads of one product: every core, or $TTT_REF_THREADS (a trainer that already runs one
// document per core sets 1 rather than oversubscribe the machine).
int product_threads() {
  if (const char* e = std::getenv("TTT_REF_THREADS"); e && *e) {
    char* end = nullptr;
    const long n = std::strtol(e, &end, 10);
    if (*end == '\0' && n >= 1 && n <= 4096) return int(n);
  }
  return std::max(1, int(std::thread::hardware_concurrency()));
}

// Runs f(r0, r1) over [0, M) split on up to product_threads() threads when the work is large.
template <typename Fn>
void parallel_rows(int M, double flops, Fn f) {
  static const int cores = product_threads();
  const int parts = std::min(cores, M / 8);
  if (flops < 1e6 || parts < 2) {
    f(0, M);
    return;
  }
  std::vector<std::thread> pool;
  const int step = (M / parts + 3) / 4 * 4;
  for (int r = step; r < M; r += step) pool.emplace_back(f, r, std::min(M, r + step));
  f(0, std::min(M, step));
  for (auto& t : pool) t.join();
}

// An MR x NR tile of C = A (M, K) @ B (K, N), all row-major, held in
// registers across the whole K loop; fixed sizes let the compiler keep it
// there and vectorise along the columns (the sums run in k order, as matmul in matmul.cpp).
template <int MR, int NR>
void gemm_tile(double* C, const double* A, const double* B, int m, int n, int N, int K) {
  double c[MR][NR] = {};
  for (int k = 0; k < K; ++k) {
    const double* b = B + size_t(k) * N + n;
    for (int i = 0; i < MR; ++i) {
      const double a = A[size_t(m + i) * K + k];
      for (int j = 0; j < NR; ++j) c[i][j] += a * b[j];
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) C[size_t(m + i) * N + n + j] = c[i][j];
}

// x86-64: an AVX2 clone picked at load time where the CPU has it (no FMA: the same roundings).
#if defined(__x86_64__)
#define TTT_GEMM_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define TTT_GEMM_CLONES
#endif

// Rows [m0, m1) of C: 4 x 8 tiles, then the ragged right and bottom edges.
TTT_GEMM_CLONES void gemm_rows(double* C, const double* A, const double* B, int m0, int m1, int N, int K) {
  int m = m0;
  for (; m + 4 <= m1; m += 4) {
    int n = 0;
    for (; n + 8 <= N; n += 8) gemm_tile<4, 8>(C, A, B, m, n, N, K);
    for (; n < N; ++n) gemm_tile<4, 1>(C, A, B, m, n, N, K);
  }
  for (; m < m1; ++m) {
    int n = 0;
    for (; n + 8 <= N; n += 8) gemm_tile<1, 8>(C, A, B, m, n, N, K);
    for (; n < N; ++n) gemm_tile<1, 1>(C, A, B, m, n, N, K);
  }
}

std::vector<double> transpose(const std::vector<double>& a, int R, int C) {
  std::vector<double> t(a.size());
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) t[size_t(c) * R + r] = a[size_t(r) * C + c];
  return t;
}

template <typename Fn>
Var unary(Var a, Fn f) {
  Var y = node(a, a->rows, a->cols, {a});
  for (size_t i = 0; i < a->size(); ++i) y->v[i] = f(a->v[i]);
  return y;
}

}  // namespace

Var Tape::make(int rows, int cols, std::vector<Var> in) {
  auto n = std::make_unique<Node>();
  n->rows = rows;
  n->cols = cols;
  n->v.assign(size_t(rows) * size_t(cols), 0.0);
  n->tape = this;
  n->id = int64_t(nodes_.size());
  if (!no_grad)
    for (Var x : in) n->req = n->req || x->req;
  if (n->req) n->in = std::move(in);
  nodes_.push_back(std::move(n));
  return nodes_.back().get();
}

Var Tape::leaf(int rows, int cols, std::vector<double> v, bool requires_grad) {
  Var n = make(rows, cols, {});
  if (v.size() != n->v.size()) throw Error("autodiff leaf: value size does not match its shape");
  n->v = std::move(v);
  n->req = requires_grad;
  return n;
}

Var Tape::constant(int rows, int cols, std::vector<double> v) { return leaf(rows, cols, std::move(v), false); }

size_t Tape::bytes() const {
  size_t b = 0;
  for (const auto& n : nodes_) b += n->v.capacity() * sizeof(double);
  return b;
}

std::vector<Var> grad(Var y, const std::vector<Var>& xs, bool create_graph) {
  Tape& t = *y->tape;
  std::unordered_map<Var, bool> is_x, dep;
  int64_t min_id = std::numeric_limits<int64_t>::max();
  for (Var x : xs) {
    is_x[x] = true;
    min_id = std::min(min_id, x->id);
  }
  // Post-order of the nodes between the xs and y; dep: lies on a path from an x.
  std::vector<Var> order;
  if (y->req) {
    std::vector<std::pair<Var, size_t>> stack{{y, 0}};
    std::unordered_map<Var, bool> seen{{y, true}};
    while (!stack.empty()) {
      auto& [n, i] = stack.back();
      if (!is_x.count(n) && i < n->in.size()) {
        Var c = n->in[i++];
        if (c->req && c->id >= min_id && !seen.count(c)) {
          seen[c] = true;
          stack.push_back({c, 0});
        }
        continue;
      }
      bool d = is_x.count(n) > 0;
      if (!d)
        for (Var c : n->in) d = d || (dep.count(c) && dep[c]);
      dep[n] = d;
      order.push_back(n);
      stack.pop_back();
    }
  }
  const int64_t sweep_start = int64_t(t.nodes_.size());
  const bool saved = t.no_grad;
  t.no_grad = !create_graph;
  std::unordered_map<Var, Var> g;
  std::unordered_map<Var, int> refs;  // how many entries of g hold a node
  auto release = [&](Var n) {
    if (!create_graph && n->id >= sweep_start && refs[n] == 0) std::vector<double>().swap(n->v);
  };
  if (y->req && dep[y]) {
    g[y] = t.constant(1, 1, {1.0});
    refs[g[y]] = 1;
  }
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    Var n = *it;
    if (is_x.count(n) || !g.count(n)) continue;
    Var gn = g[n];
    const size_t mark = t.nodes_.size();
    // A rule computes gin[i] only where it finds a non-null marker: inputs on a path from an x.
    static Node want;
    std::vector<Var> gi(n->in.size(), nullptr);
    for (size_t i = 0; i < gi.size(); ++i)
      if (dep.count(n->in[i]) && dep[n->in[i]]) gi[i] = &want;
    n->back(*n, gn, gi.data());
    for (size_t i = 0; i < gi.size(); ++i) {
      Var c = n->in[i];
      if (!gi[i] || gi[i] == &want || !dep.count(c) || !dep[c]) continue;
      Var& slot = g[c];
      if (slot) {
        Var old = slot;
        slot = add(old, gi[i]);
        --refs[old];
        release(old);
      } else {
        slot = gi[i];
      }
      ++refs[slot];
    }
    g.erase(n);
    --refs[gn];
    release(gn);
    if (!create_graph)
      for (size_t k = mark; k < t.nodes_.size(); ++k) release(t.nodes_[k].get());
  }
  t.no_grad = saved;
  std::vector<Var> out;
  for (Var x : xs) out.push_back(g.count(x) ? g[x] : t.constant(x->rows, x->cols, std::vector<double>(x->size())));
  return out;
}

Var matmul(Var a, Var b, bool ta, bool tb) {
  const int M = ta ? a->cols : a->rows, K = ta ? a->rows : a->cols;
  const int Kb = tb ? b->cols : b->rows, N = tb ? b->rows : b->cols;
  check(K == Kb, "matmul", a, b);
  Var y = node(a, M, N, {a, b});
  std::vector<double> at, bt;
  const double* A = a->v.data();
  const double* B = b->v.data();
  if (ta) A = (at = transpose(a->v, a->rows, a->cols)).data();
  if (tb) B = (bt = transpose(b->v, b->rows, b->cols)).data();
  double* C = y->v.data();
  parallel_rows(M, 2.0 * M * N * K, [=](int m0, int m1) { gemm_rows(C, A, B, m0, m1, N, K); });
  set_back(y, [ta, tb](Node& s, Var g, Var* gi) {
    Var A = s.in[0], B = s.in[1];
    if (!ta && !tb) {  // C = A B
      if (gi[0]) gi[0] = matmul(g, B, false, true);
      if (gi[1]) gi[1] = matmul(A, g, true, false);
    } else if (!ta && tb) {  // C = A B^T
      if (gi[0]) gi[0] = matmul(g, B, false, false);
      if (gi[1]) gi[1] = matmul(g, A, true, false);
    } else if (ta && !tb) {  // C = A^T B
      if (gi[0]) gi[0] = matmul(B, g, false, true);
      if (gi[1]) gi[1] = matmul(A, g, false, false);
    } else {  // C = A^T B^T
      if (gi[0]) gi[0] = matmul(B, g, true, true);
      if (gi[1]) gi[1] = matmul(g, A, true, true);
    }
  });
  return y;
}

Var add(Var a, Var b) {
  check(a->rows == b->rows && a->cols == b->cols, "add", a, b);
  Var y = node(a, a->rows, a->cols, {a, b});
  for (size_t i = 0; i < y->size(); ++i) y->v[i] = a->v[i] + b->v[i];
  set_back(y, [](Node&, Var g, Var* gi) { gi[0] = gi[1] = g; });
  return y;
}

Var sub(Var a, Var b) {
  check(a->rows == b->rows && a->cols == b->cols, "sub", a, b);
  Var y = node(a, a->rows, a->cols, {a, b});
  for (size_t i = 0; i < y->size(); ++i) y->v[i] = a->v[i] - b->v[i];
  set_back(y, [](Node& s, Var g, Var* gi) {
    gi[0] = g;
    if (gi[1]) gi[1] = scale(g, -1.0);
  });
  return y;
}

Var mul(Var a, Var b) {
  check(a->rows == b->rows && a->cols == b->cols, "mul", a, b);
  Var y = node(a, a->rows, a->cols, {a, b});
  for (size_t i = 0; i < y->size(); ++i) y->v[i] = a->v[i] * b->v[i];
  set_back(y, [](Node& s, Var g, Var* gi) {
    if (gi[0]) gi[0] = mul(g, s.in[1]);
    if (gi[1]) gi[1] = mul(g, s.in[0]);
  });
  return y;
}

Var scale(Var a, double k) {
  Var y = unary(a, [k](double x) { return x * k; });
  set_back(y, [k](Node&, Var g, Var* gi) { gi[0] = scale(g, k); });
  return y;
}

Var add_const(Var a, double c) {
  Var y = unary(a, [c](double x) { return x + c; });
  set_back(y, [](Node&, Var g, Var* gi) { gi[0] = g; });
  return y;
}

Var powc(Var a, double p) {
  Var y = unary(a, [p](double x) { return p == -0.5 ? 1.0 / std::sqrt(x) : std::pow(x, p); });
  set_back(y, [p](Node& s, Var g, Var* gi) { gi[0] = mul(g, scale(powc(s.in[0], p - 1.0), p)); });
  return y;
}

Var exp(Var a) {
  Var y = unary(a, [](double x) { return std::exp(x); });
  set_back(y, [](Node& s, Var g, Var* gi) { gi[0] = mul(g, &s); });
  return y;
}

Var log(Var a) {
  Var y = unary(a, [](double x) { return std::log(x); });
  set_back(y, [](Node& s, Var g, Var* gi) { gi[0] = mul(g, powc(s.in[0], -1.0)); });
  return y;
}

Var sigmoid(Var a) {
  Var y = unary(a, [](double x) { return 1.0 / (1.0 + std::exp(-x)); });
  set_back(y, [](Node& s, Var g, Var* gi) { gi[0] = mul(g, sub(&s, mul(&s, &s))); });
  return y;
}

Var mul_col(Var a, Var c) {
  check(c->rows == a->rows && c->cols == 1, "mul_col", a, c);
  Var y = node(a, a->rows, a->cols, {a, c});
  for (int r = 0; r < a->rows; ++r)
    for (int j = 0; j < a->cols; ++j) y->v[size_t(r) * a->cols + j] = a->v[size_t(r) * a->cols + j] * c->v[size_t(r)];
  set_back(y, [](Node& s, Var g, Var* gi) {
    if (gi[0]) gi[0] = mul_col(g, s.in[1]);
    if (gi[1]) gi[1] = rowsum(mul(g, s.in[0]));
  });
  return y;
}

Var mul_row(Var a, Var r) {
  check(r->rows == 1 && r->cols == a->cols, "mul_row", a, r);
  Var y = node(a, a->rows, a->cols, {a, r});
  for (int i = 0; i < a->rows; ++i)
    for (int j = 0; j < a->cols; ++j) y->v[size_t(i) * a->cols + j] = a->v[size_t(i) * a->cols + j] * r->v[size_t(j)];
  set_back(y, [](Node& s, Var g, Var* gi) {
    if (gi[0]) gi[0] = mul_row(g, s.in[1]);
    if (gi[1]) gi[1] = colsum(mul(g, s.in[0]));
  });
  return y;
}

Var mul_s(Var a, Var k) {
  check(k->rows == 1 && k->cols == 1, "mul_s", a, k);
  Var y = node(a, a->rows, a->cols, {a, k});
  for (size_t i = 0; i < y->size(); ++i) y->v[i] = a->v[i] * k->v[0];
  set_back(y, [](Node& s, Var g, Var* gi) {
    if (gi[0]) gi[0] = mul_s(g, s.in[1]);
    if (gi[1]) gi[1] = sum_all(mul(g, s.in[0]));
  });
  return y;
}

Var rowsum(Var a) {
  Var y = node(a, a->rows, 1, {a});
  for (int r = 0; r < a->rows; ++r) {
    double acc = 0;
    for (int j = 0; j < a->cols; ++j) acc += a->v[size_t(r) * a->cols + j];
    y->v[size_t(r)] = acc;
  }
  set_back(y, [](Node& s, Var g, Var* gi) { gi[0] = expand_col(g, s.in[0]->cols); });
  return y;
}

Var colsum(Var a) {
  Var y = node(a, 1, a->cols, {a});
  for (int r = 0; r < a->rows; ++r)
    for (int j = 0; j < a->cols; ++j) y->v[size_t(j)] += a->v[size_t(r) * a->cols + j];
  set_back(y, [](Node& s, Var g, Var* gi) { gi[0] = expand_row(g, s.in[0]->rows); });
  return y;
}

Var sum_all(Var a) {
  Var y = node(a, 1, 1, {a});
  double acc = 0;
  for (double x : a->v) acc += x;
  y->v[0] = acc;
  set_back(y, [](Node& s, Var g, Var* gi) { gi[0] = expand_all(g, s.in[0]->rows, s.in[0]->cols); });
  return y;
}

Var expand_col(Var c, int C) {
  check(c->cols == 1, "expand_col", c);
  Var y = node(c, c->rows, C, {c});
  for (int r = 0; r < c->rows; ++r) std::fill_n(y->v.begin() + long(r) * C, C, c->v[size_t(r)]);
  set_back(y, [](Node&, Var g, Var* gi) { gi[0] = rowsum(g); });
  return y;
}

Var expand_row(Var r, int R) {
  check(r->rows == 1, "expand_row", r);
  Var y = node(r, R, r->cols, {r});
  for (int i = 0; i < R; ++i) std::copy(r->v.begin(), r->v.end(), y->v.begin() + long(i) * r->cols);
  set_back(y, [](Node&, Var g, Var* gi) { gi[0] = colsum(g); });
  return y;
}

Var expand_all(Var k, int R, int C) {
  check(k->rows == 1 && k->cols == 1, "expand_all", k);
  Var y = node(k, R, C, {k});
  std::fill(y->v.begin(), y->v.end(), k->v[0]);
  set_back(y, [](Node&, Var g, Var* gi) { gi[0] = sum_all(g); });
  return y;
}

Var reshape(Var a, int R, int C) {
  check(size_t(R) * size_t(C) == a->size(), "reshape", a);
  Var y = node(a, R, C, {a});
  y->v = a->v;
  set_back(y, [](Node& s, Var g, Var* gi) { gi[0] = reshape(g, s.in[0]->rows, s.in[0]->cols); });
  return y;
}

Var slice_rows(Var a, int r0, int n) {
  check(r0 >= 0 && n >= 0 && r0 + n <= a->rows, "slice_rows", a);
  Var y = node(a, n, a->cols, {a});
  std::copy_n(a->v.begin() + long(r0) * a->cols, size_t(n) * a->cols, y->v.begin());
  set_back(y, [r0](Node& s, Var g, Var* gi) { gi[0] = pad_rows(g, r0, s.in[0]->rows); });
  return y;
}

Var pad_rows(Var a, int r0, int R) {
  check(r0 >= 0 && r0 + a->rows <= R, "pad_rows", a);
  Var y = node(a, R, a->cols, {a});
  std::copy(a->v.begin(), a->v.end(), y->v.begin() + long(r0) * a->cols);
  set_back(y, [r0](Node& s, Var g, Var* gi) { gi[0] = slice_rows(g, r0, s.in[0]->rows); });
  return y;
}

Var slice_cols(Var a, int c0, int n) {
  check(c0 >= 0 && n >= 0 && c0 + n <= a->cols, "slice_cols", a);
  Var y = node(a, a->rows, n, {a});
  for (int r = 0; r < a->rows; ++r) std::copy_n(a->v.begin() + long(r) * a->cols + c0, n, y->v.begin() + long(r) * n);
  set_back(y, [c0](Node& s, Var g, Var* gi) { gi[0] = pad_cols(g, c0, s.in[0]->cols); });
  return y;
}

Var pad_cols(Var a, int c0, int C) {
  check(c0 >= 0 && c0 + a->cols <= C, "pad_cols", a);
  Var y = node(a, a->rows, C, {a});
  for (int r = 0; r < a->rows; ++r)
    std::copy_n(a->v.begin() + long(r) * a->cols, a->cols, y->v.begin() + long(r) * C + c0);
  set_back(y, [c0](Node& s, Var g, Var* gi) { gi[0] = slice_cols(g, c0, s.in[0]->cols); });
  return y;
}

Var concat_rows(Var a, Var b) {
  check(a->cols == b->cols, "concat_rows", a, b);
  Var y = node(a, a->rows + b->rows, a->cols, {a, b});
  std::copy(a->v.begin(), a->v.end(), y->v.begin());
  std::copy(b->v.begin(), b->v.end(), y->v.begin() + long(a->size()));
  set_back(y, [](Node& s, Var g, Var* gi) {
    if (gi[0]) gi[0] = slice_rows(g, 0, s.in[0]->rows);
    if (gi[1]) gi[1] = slice_rows(g, s.in[0]->rows, s.in[1]->rows);
  });
  return y;
}

Var concat_cols(const std::vector<Var>& parts) {
  int C = 0;
  for (Var p : parts) {
    check(p->rows == parts[0]->rows, "concat_cols", parts[0], p);
    C += p->cols;
  }
  Var y = node(parts[0], parts[0]->rows, C, parts);
  int c0 = 0;
  for (Var p : parts) {
    for (int r = 0; r < p->rows; ++r)
      std::copy_n(p->v.begin() + long(r) * p->cols, p->cols, y->v.begin() + long(r) * C + c0);
    c0 += p->cols;
  }
  set_back(y, [](Node& s, Var g, Var* gi) {
    int c = 0;
    for (size_t i = 0; i < s.in.size(); ++i) {
      if (gi[i]) gi[i] = slice_cols(g, c, s.in[i]->cols);
      c += s.in[i]->cols;
    }
  });
  return y;
}

Var gather_rows(Var table, std::vector<int32_t> ids) {
  const int C = table->cols;
  Var y = node(table, int(ids.size()), C, {table});
  for (size_t i = 0; i < ids.size(); ++i) {
    check(ids[i] >= 0 && ids[i] < table->rows, "gather_rows (id out of range)", table);
    std::copy_n(table->v.begin() + long(ids[i]) * C, C, y->v.begin() + long(i) * C);
  }
  set_back(y, [ids](Node& s, Var g, Var* gi) { gi[0] = scatter_rows(g, ids, s.in[0]->rows); });
  return y;
}

Var scatter_rows(Var a, std::vector<int32_t> ids, int R) {
  const int C = a->cols;
  check(size_t(a->rows) == ids.size(), "scatter_rows", a);
  Var y = node(a, R, C, {a});
  for (size_t i = 0; i < ids.size(); ++i)
    for (int j = 0; j < C; ++j) y->v[size_t(ids[i]) * C + j] += a->v[i * C + j];
  set_back(y, [ids](Node&, Var g, Var* gi) { gi[0] = gather_rows(g, ids); });
  return y;
}

Var pick(Var a, std::vector<int32_t> cols) {
  check(size_t(a->rows) == cols.size(), "pick", a);
  Var y = node(a, a->rows, 1, {a});
  for (int r = 0; r < a->rows; ++r) y->v[size_t(r)] = a->v[size_t(r) * a->cols + cols[size_t(r)]];
  set_back(y, [cols](Node& s, Var g, Var* gi) { gi[0] = place(g, cols, s.in[0]->cols); });
  return y;
}

Var place(Var a, std::vector<int32_t> cols, int C) {
  check(a->cols == 1 && size_t(a->rows) == cols.size(), "place", a);
  Var y = node(a, a->rows, C, {a});
  for (int r = 0; r < a->rows; ++r) y->v[size_t(r) * C + cols[size_t(r)]] = a->v[size_t(r)];
  set_back(y, [cols](Node&, Var g, Var* gi) { gi[0] = pick(g, cols); });
  return y;
}

Var rope(Var x, int64_t pos0, int H, double theta, bool inverse) {
  const int T = x->rows, E = x->cols / H;
  check(E * H == x->cols && E % 2 == 0, "rope", x);
  Var y = node(x, T, x->cols, {x});
  for (int t = 0; t < T; ++t)
    for (int j = 0; j < E / 2; ++j) {
      // The same angle formula as rope.cpp, so the forward matches it bit for bit.
      const double ang = double(pos0 + t) * std::pow(theta, -2.0 * j / E);
      const double c = std::cos(ang), s = (inverse ? -1.0 : 1.0) * std::sin(ang);
      for (int h = 0; h < H; ++h) {
        const size_t i = size_t(t) * x->cols + size_t(h) * E + 2 * j;
        const double a = x->v[i], b = x->v[i + 1];
        y->v[i] = a * c - b * s;
        y->v[i + 1] = a * s + b * c;
      }
    }
  set_back(y, [pos0, H, theta, inverse](Node&, Var g, Var* gi) { gi[0] = rope(g, pos0, H, theta, !inverse); });
  return y;
}

Var softmax_window(Var s, int64_t pos0, int64_t kpos0, int W) {
  const int T = s->rows, Tk = s->cols;
  Var y = node(s, T, Tk, {s});
  for (int t = 0; t < T; ++t) {
    const int64_t p = pos0 + t;
    const int lo = int(std::clamp<int64_t>(p - W + 1 - kpos0, 0, Tk));
    const int hi = int(std::clamp<int64_t>(p + 1 - kpos0, 0, Tk));
    const double* sr = s->v.data() + size_t(t) * Tk;
    double* yr = y->v.data() + size_t(t) * Tk;
    if (lo >= hi) continue;
    double mx = -std::numeric_limits<double>::infinity(), sum = 0;
    for (int j = lo; j < hi; ++j) mx = std::max(mx, sr[j]);
    for (int j = lo; j < hi; ++j) sum += (yr[j] = std::exp(sr[j] - mx));
    for (int j = lo; j < hi; ++j) yr[j] /= sum;
  }
  // dS = P * (dP - rowsum(dP * P)); masked entries have P = 0.
  set_back(y, [](Node& n, Var g, Var* gi) { gi[0] = mul(&n, sub(g, expand_col(rowsum(mul(g, &n)), n.cols))); });
  return y;
}

Var rmsnorm(Var x, Var g, double eps) {
  Var ms = scale(rowsum(mul(x, x)), 1.0 / x->cols);
  Var y = mul_col(x, powc(add_const(ms, eps), -0.5));
  return g ? mul_row(y, g) : y;
}

Var silu(Var a) { return mul(a, sigmoid(a)); }

Var nll_rows(Var logits, const std::vector<int32_t>& targets) {
  const int R = logits->rows, C = logits->cols;
  std::vector<double> mx(size_t(R), -std::numeric_limits<double>::infinity());
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < C; ++j) mx[size_t(r)] = std::max(mx[size_t(r)], logits->v[size_t(r) * C + j]);
  Var m = logits->tape->constant(R, 1, mx);  // the shift cancels in the gradient: a constant
  Var lse = add(log(rowsum(exp(sub(logits, expand_col(m, C))))), m);
  return sub(lse, pick(logits, targets));
}

}  // namespace ttt::ref::ad
