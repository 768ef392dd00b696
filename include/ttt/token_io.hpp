// Reading token-id files: whitespace-separated decimal text, or NumPy .npy
// arrays of int32, uint32, int64 or uint16. Errors name the file and where.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ttt {

// Dispatches on content: a file starting with the .npy magic is read as NumPy,
// anything else as text. An empty result is an error.
std::vector<int32_t> read_token_file(const std::string& path);
std::vector<int32_t> read_token_text(const std::string& text, const std::string& origin);
std::vector<int32_t> read_token_npy(const std::string& bytes, const std::string& origin);

}  // namespace ttt
