// Engine settings the public API does not offer: knobs kept to measure
// alternatives (ttt-bench decode --matvec), not to tune a deployment.
#pragma once

#include "ttt/engine.hpp"

namespace ttt {

// How single-token forwards and the logits of one row multiply by a weight
// matrix: the matvec kernels (cl/matvec.cl, the default), CLBlast's GEMV, or a
// 1-row GEMM. Measured in docs/design.md ("Decode").
enum class MatVec { Kernels, ClblastGemv, Gemm };
void set_matvec(Engine& engine, MatVec m);

}  // namespace ttt
