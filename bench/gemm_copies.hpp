// ttt-bench copies: CLBlast's indirect Xgemm pads and transposes into a
// temporary buffer every operand that is not already in its kernel's
// orientation, padded size and offset 0. This times each GEMM of a 125m
// mini-batch with the operands as the engine passes them, with aligned panels
// handed over as sub-buffer views, with the weight already laid out as the
// kernel wants, and with every operand so (the kernel alone), and says which
// operands CLBlast copies in each (docs/performance.md, "CLBlast's copies").
#pragma once

#include <nlohmann/json.hpp>

namespace ttt::bench {

int gemm_copies(int argc, char** argv);

}  // namespace ttt::bench
