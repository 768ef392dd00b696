// A corpus to evaluate: text files, token-id files or a JSON Lines corpus
// (one JSON object per line, the text in one field, the format most evaluation
// sets ship in; each line is one document, named FILE:LINE, blank lines
// skipped), tokenised, cut to a length and checked against the model.
#pragma once

#include "lib/eval/documents.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ttt {

struct Config;

// Where the documents come from: exactly one of text, tokens and jsonl.
struct CorpusSpec {
  std::vector<std::string> text;    // text files or directories (each file a document)
  std::vector<std::string> tokens;  // token-id files or directories
  std::optional<std::string> jsonl;      // a JSON Lines corpus, its text in `field`
  std::string field = "text";
  std::optional<std::string> tokenizer;  // tokenizer.json / tokenizer.model for text; none: the model directory's
  bool parse_special = false;       // special-token strings in text become their ids
  size_t max_tokens = SIZE_MAX;     // keep the first max_tokens tokens of each document
  // The official evaluation's windows: 0 scores whole documents; N cuts each
  // into disjoint windows of exactly N tokens (a shorter tail is dropped), each
  // scored from a fresh state as a document of its own, named "NAME#k".
  size_t window_tokens = 0;
  size_t max_windows = SIZE_MAX;    // with window_tokens: keep the first max_windows windows of the corpus
};

struct Corpus {
  std::vector<Document> docs;
  std::string tokenizer = "(token ids)";  // the name of the tokenizer that encoded text
  size_t tokens = 0;                      // tokens to score in one pass: each document's length - 1
};

// Text is encoded by the spec's tokenizer or the model directory's, with the
// model's BOS prepended when it has one. Errors name the file at fault: a
// tokenizer with more ids than the model's vocabulary, an id out of range, a
// document shorter than 2 tokens (after max_tokens), a corpus with no whole
// window (window_tokens).
Corpus collect_corpus(const CorpusSpec& spec, const std::string& model_dir, const Config& cfg);

// The length of the longest document (full attention needs a window that long).
size_t longest_document(const std::vector<Document>& docs);

// Errors name the file and line: invalid JSON, not an object, no such field,
// a field that is not a string, or an empty text.
std::vector<Document> load_jsonl_documents(const std::string& path, const std::string& field, const Tokenizer& tok,
                                           bool parse_special, int bos);

}  // namespace ttt
