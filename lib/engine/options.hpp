// Engine settings the public API does not offer: knobs kept to measure
// alternatives (ttt-bench decode --matvec), not to tune a deployment.
#pragma once

#include "ttt/engine.hpp"

#include <string>
#include <utility>
#include <vector>

namespace ttt {

// How single-token forwards and the logits of one row multiply by a weight
// matrix: the matvec kernels (cl/matvec.cl, the default), CLBlast's GEMV, or a
// 1-row GEMM. Measured in docs/design.md ("Decode").
enum class MatVec { Kernels, ClblastGemv, Gemm };
void set_matvec(Engine& engine, MatVec m);

// Engine::device_bytes by part, in allocation order within the engine and then
// its own session ("session ..."): weights, widening scratch, activations,
// residual streams, loss and inputs, backward scratch; the session's key/value
// rings, prime weights, prime gradients and step statistics. Views carved from
// other scratch (engine.cpp) take no bytes of their own. Sums to device_bytes().
std::vector<std::pair<std::string, size_t>> device_parts(const Engine& engine);

}  // namespace ttt
