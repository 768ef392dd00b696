// Reading JSON Lines corpora into documents.
#include "apps/corpus.hpp"

#include "ttt/error.hpp"
#include "ttt/tokenizer.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>

namespace ttt {

std::vector<Document> load_jsonl_documents(const std::string& path, const std::string& field, const Tokenizer& tok,
                                           bool parse_special, int bos) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("{}: cannot open", path));
  std::vector<Document> docs;
  std::string line;
  for (size_t no = 1; std::getline(in, line); ++no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = fmt::format("{}:{}", path, no);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw Error(fmt::format("{}: not valid JSON ({})", where, e.what()));
    }
    if (!j.is_object()) throw Error(fmt::format("{}: expected a JSON object", where));
    const auto it = j.find(field);
    if (it == j.end()) throw Error(fmt::format("{}: no field \"{}\" (see --field)", where, field));
    if (!it->is_string()) throw Error(fmt::format("{}: field \"{}\" is not a string", where, field));
    const std::string& text = it->get_ref<const std::string&>();
    if (text.empty()) throw Error(fmt::format("{}: empty text in field \"{}\"", where, field));
    Document d{where, {}};
    if (bos >= 0) d.tokens.push_back(bos);
    const auto ids = tok.encode(text, parse_special);
    d.tokens.insert(d.tokens.end(), ids.begin(), ids.end());
    docs.push_back(std::move(d));
  }
  if (docs.empty()) throw Error(fmt::format("{}: no documents (every line is blank)", path));
  return docs;
}

}  // namespace ttt
