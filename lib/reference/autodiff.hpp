// A small reverse-mode autodiff on row-major double matrices, for the
// training objectives' oracle (meta.cpp). Every backward rule is written with
// the same differentiable ops, so grad(..., create_graph = true) returns a
// gradient that is itself a graph: differentiating it again gives the
// second-order terms (Hessian-vector products) of the TTT-E2E meta gradient.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace ttt::ref::ad {

struct Node;
using Var = Node*;  // owned by its Tape; valid until the Tape dies
class Tape;

struct Node {
  int rows = 0, cols = 0;
  std::vector<double> v;  // (rows, cols)
  std::vector<Var> in;    // its inputs, kept only when it carries gradient
  // Gradients of the inputs given the output's gradient g. gin[i] arrives non-null (a marker)
  // exactly where that input needs one; the rule overwrites those entries.
  std::function<void(Node& self, Var g, Var* gin)> back;
  bool req = false;  // depends on a leaf that wants a gradient
  int64_t id = 0;    // creation order: a node depends only on smaller ids
  Tape* tape = nullptr;
  size_t size() const { return v.size(); }
};

// Owns every node of one computation. While no_grad is set, new nodes record
// no inputs (a plain evaluation).
class Tape {
 public:
  Var make(int rows, int cols, std::vector<Var> in);
  Var leaf(int rows, int cols, std::vector<double> v, bool requires_grad);
  Var constant(int rows, int cols, std::vector<double> v);
  size_t num_nodes() const { return nodes_.size(); }
  size_t bytes() const;  // values held now
  bool no_grad = false;

 private:
  friend std::vector<Var> grad(Var y, const std::vector<Var>& xs, bool create_graph);
  std::vector<std::unique_ptr<Node>> nodes_;
};

// d y / d xs for a 1x1 y: one gradient per x, same shape (zeros where y does
// not depend on x). Paths through nodes older than every x are not followed,
// so state computed before the xs (a carried window) is held constant. With
// create_graph the gradients are differentiable nodes; without, constants,
// and the temporaries of the sweep are freed as it goes.
std::vector<Var> grad(Var y, const std::vector<Var>& xs, bool create_graph);

// C = op(A) @ op(B); op transposes when ta / tb. Large products run on all cores.
Var matmul(Var a, Var b, bool ta = false, bool tb = false);
Var add(Var a, Var b);
Var sub(Var a, Var b);
Var mul(Var a, Var b);  // elementwise
Var scale(Var a, double s);
Var add_const(Var a, double c);
Var powc(Var a, double p);  // a^p elementwise
Var exp(Var a);
Var log(Var a);
Var sigmoid(Var a);
Var mul_col(Var a, Var c);  // a (R, C) * c (R, 1)
Var mul_row(Var a, Var r);  // a (R, C) * r (1, C)
Var mul_s(Var a, Var s);    // a * s (1, 1)
Var rowsum(Var a);          // (R, 1)
Var colsum(Var a);          // (1, C)
Var sum_all(Var a);         // (1, 1)
Var expand_col(Var c, int C);         // (R, 1) -> (R, C)
Var expand_row(Var r, int R);         // (1, C) -> (R, C)
Var expand_all(Var s, int R, int C);  // (1, 1) -> (R, C)
Var reshape(Var a, int R, int C);
Var slice_rows(Var a, int r0, int n);
Var pad_rows(Var a, int r0, int R);  // a placed at rows r0.. of an (R, C) zero matrix
Var slice_cols(Var a, int c0, int n);
Var pad_cols(Var a, int c0, int C);
Var concat_rows(Var a, Var b);
Var concat_cols(const std::vector<Var>& parts);
Var gather_rows(Var table, std::vector<int32_t> ids);          // (n, C) = table[ids]
Var scatter_rows(Var a, std::vector<int32_t> ids, int R);      // (R, C), row ids[i] += a[i]
Var pick(Var a, std::vector<int32_t> cols);                    // (R, 1) = a[r][cols[r]]
Var place(Var a, std::vector<int32_t> cols, int C);            // (R, C) zero but [r][cols[r]] = a[r]
// Interleaved RoPE on x (T, H*E) at positions pos0.. (inverse: the transpose).
Var rope(Var x, int64_t pos0, int H, double theta, bool inverse = false);
// Row-wise softmax of scores (T, Tk): query t at position pos0+t sees keys at
// positions kpos0+j in (p-W, p]; the others get probability 0.
Var softmax_window(Var s, int64_t pos0, int64_t kpos0, int W);

// Composites.
Var rmsnorm(Var x, Var g, double eps);  // rows of x; g (1, C) or null (no gain)
Var silu(Var a);
Var nll_rows(Var logits, const std::vector<int32_t>& targets);  // (R, 1): logsumexp - logit[target]

}  // namespace ttt::ref::ad
