// Collecting a corpus: JSON Lines, text or token files into checked documents.
#include "lib/eval/corpus.hpp"

#include "ttt/config.hpp"
#include "ttt/engine.hpp"
#include "ttt/error.hpp"
#include "ttt/token_io.hpp"
#include "ttt/tokenizer.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <optional>

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
    if (it == j.end()) throw Error(fmt::format("{}: no field \"{}\" (the field that holds the text is a setting)", where, field), "field");
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

namespace {

std::vector<Document> cut_windows(std::vector<Document> docs, size_t n, size_t max_windows) {
  if (n < 2) throw Error(fmt::format("a window needs at least 2 tokens, got {}", n));
  std::vector<Document> out;
  for (const Document& d : docs)
    for (size_t at = 0, k = 0; at + n <= d.tokens.size() && out.size() < max_windows; at += n, ++k)
      out.push_back({fmt::format("{}#{}", d.name, k), {d.tokens.begin() + long(at), d.tokens.begin() + long(at + n)}});
  if (out.empty())
    throw Error(fmt::format("no document holds a whole window of {} tokens (the longest has {})", n,
                            longest_document(docs)));
  return out;
}

}  // namespace

Corpus collect_corpus(const CorpusSpec& spec, const std::string& model_dir, const Config& cfg) {
  if (int(!spec.text.empty()) + int(!spec.tokens.empty()) + int(spec.jsonl.has_value()) != 1)
    throw Error("a corpus is text files, token-id files or a JSON Lines file: exactly one of the three");
  Corpus c;
  std::optional<Tokenizer> text_tok;
  if (spec.tokens.empty()) {
    const Tokenizer& tok = text_tok.emplace(
        spec.tokenizer ? Tokenizer::from_file(*spec.tokenizer) : Tokenizer::for_model(model_dir, cfg));
    if (const std::string why = tokenizer_mismatch(tok, cfg); !why.empty()) throw Error(why);
    c.tokenizer = tok.name();
    c.docs = spec.jsonl ? load_jsonl_documents(*spec.jsonl, spec.field, tok, spec.parse_special, cfg.bos_token_id)
                        : load_text_documents(expand_paths(spec.text), tok, spec.parse_special, cfg.bos_token_id);
  } else {
    c.docs = load_token_documents(expand_paths(spec.tokens));
  }
  for (auto& d : c.docs) {
    if (spec.max_tokens < d.tokens.size()) d.tokens.resize(spec.max_tokens);
    check_token_ids(d.tokens, cfg.vocab_size, d.name);
    if (d.tokens.size() < 2 && spec.window_tokens == 0)
      throw Error(fmt::format("{}: a document needs at least 2 tokens to score, got {}", d.name, d.tokens.size()));
  }
  if (spec.window_tokens > 0) c.docs = cut_windows(std::move(c.docs), spec.window_tokens, spec.max_windows);
  for (auto& d : c.docs) {
    c.tokens += d.tokens.size() - 1;
    if (text_tok) d.bytes = text_tok->decode({d.tokens.begin() + 1, d.tokens.end()}).size();
  }
  return c;
}

size_t longest_document(const std::vector<Document>& docs) {
  size_t longest = 0;
  for (const auto& d : docs) longest = std::max(longest, d.tokens.size());
  return longest;
}

}  // namespace ttt
