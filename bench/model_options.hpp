// The model a ttt-bench command measures, declared and read the same way in
// every command: a whole model (a directory or a randomly initialised
// preset), or only its shapes (the GEMM commands); and the commands' JSON.
#pragma once

#include "apps/app.hpp"
#include "ttt/config.hpp"

#include <nlohmann/json.hpp>

#include <string>

namespace ttt::bench {

// "-m DIR" or "--preset NAME", exactly one (prefill, compare, train); preset_help says what becomes of a preset.
void add_model_options(app::po::options_description& opts, const char* preset_help);
// The model the two name: its directory, or "preset:NAME"; neither or both is a UsageError.
std::string model_name(const app::po::variables_map& vm);

// "--preset NAME" (default 125m) or "-m DIR" for a command that uses only the
// model's GEMM shapes (copies, tune); `verb` ends the preset's help ("timed").
void add_shape_options(app::po::options_description& opts, const char* verb);
// Their configuration: DIR/config.json, or the preset's.
Config shape_config(const app::po::variables_map& vm);

// "--json FILE": the format Paths checks an existing FILE against (a JSON record of ttt-bench), and the writer: j
// with "written_by" on stdout, and in FILE when the flag is given.
OwnFormat json_file_format();
void emit_json(const app::po::variables_map& vm, nlohmann::json j);

}  // namespace ttt::bench
