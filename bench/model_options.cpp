// The model options of ttt-bench's commands (bench/model_options.hpp).
#include "bench/model_options.hpp"

#include "ttt/output.hpp"

#include <fmt/format.h>

#include <iostream>

namespace ttt::bench {

namespace po = app::po;

void add_model_options(po::options_description& opts, const char* preset_help) {
  opts.add_options()("model,m", po::value<std::string>(), "model directory")(
      "preset", po::value<std::string>(), (std::string("or: a randomly initialised preset, ") + preset_help).c_str());
}

std::string model_name(const po::variables_map& vm) {
  if (vm.count("model") == vm.count("preset")) throw app::UsageError("give exactly one of --model and --preset");
  return vm.count("model") ? vm["model"].as<std::string>() : "preset:" + vm["preset"].as<std::string>();
}

void add_shape_options(po::options_description& opts, const char* verb) {
  opts.add_options()("preset", po::value<std::string>()->default_value("125m"),
                     fmt::format("model preset whose GEMM shapes are {}", verb).c_str())(
      "model,m", po::value<std::string>(), "or: a model directory (its config.json)");
}

Config shape_config(const po::variables_map& vm) {
  return vm.count("model") ? Config::load(vm["model"].as<std::string>() + "/config.json")
                           : preset(vm["preset"].as<std::string>());
}

OwnFormat json_file_format() { return app::json_format("a JSON record of ttt-bench"); }

void emit_json(const po::variables_map& vm, nlohmann::json j) {
  j["written_by"] = app::written_by();
  const std::string out = j.dump(2) + "\n";
  std::cout << out;
  std::cout.flush();
  if (vm.count("json")) write_file_atomic(vm["json"].as<std::string>(), out);
}

}  // namespace ttt::bench
