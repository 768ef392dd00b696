// Documents for evaluation: text files (or every file of a directory)
// tokenised with the model's tokenizer, or token-id files. Each document is
// evaluated from a fresh state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ttt {

class Tokenizer;

struct Document {
  std::string name;  // the file it came from
  std::vector<int32_t> tokens;
  size_t bytes = 0;  // UTF-8 bytes that tokens[1..] (the scored ones) decode to; 0 for token-id documents
};

// Expands directories into their regular files, sorted by name; errors name a
// path that does not exist or a directory with no files. A directory's hidden
// files and the tools' own outputs (is_tool_output) are skipped, and listed in
// *skipped when given. "-" (standard input, for text documents) is kept as it is.
std::vector<std::string> expand_paths(const std::vector<std::string>& paths,
                                      std::vector<std::string>* skipped = nullptr);
// Whether a file name is one the tools write, never a document: .nll, .json,
// .jsonl, .svg, .journal and .partial files.
bool is_tool_output(const std::string& filename);

// Each file's text encoded by tok, with bos prepended when bos >= 0. An empty
// file (or one that encodes to nothing) is an error naming it.
std::vector<Document> load_text_documents(const std::vector<std::string>& files, const Tokenizer& tok,
                                          bool parse_special, int bos);
// Token-id files (text ids or .npy), see lib/token_io.hpp.
std::vector<Document> load_token_documents(const std::vector<std::string>& files);

}  // namespace ttt
