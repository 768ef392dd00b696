// JSON Lines corpora (one JSON object per line, the text in one field), the
// format most evaluation sets ship in. Each line is one document, named
// FILE:LINE; blank lines are skipped.
#pragma once

#include "apps/documents.hpp"

#include <string>
#include <vector>

namespace ttt {

// Errors name the file and line: invalid JSON, not an object, no such field,
// a field that is not a string, or an empty text.
std::vector<Document> load_jsonl_documents(const std::string& path, const std::string& field, const Tokenizer& tok,
                                           bool parse_special, int bos);

}  // namespace ttt
