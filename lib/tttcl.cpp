// libtttcl.so: the library's layers (format, tokenizer, report, reference,
// sampling, host, ops, engine, generate) linked whole into one shared object for installation.
// This file only gives the target a source; the code lives in the layers.
#include "ttt/engine.hpp"

namespace ttt {
const char* tttcl_version() { return TTT_VERSION; }
}  // namespace ttt
