// Collecting and tokenising the documents of an evaluation.
#include "lib/eval/documents.hpp"

#include "ttt/error.hpp"
#include "ttt/token_io.hpp"
#include "ttt/tokenizer.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

namespace ttt {
namespace fs = std::filesystem;

bool is_tool_output(const std::string& filename) {
  const std::string ext = fs::path(filename).extension().string();
  for (const char* e : {".nll", ".json", ".jsonl", ".svg", ".journal", ".partial"})
    if (ext == e) return true;
  return false;
}

namespace {
// A text output of a ttt-cl tool under any name (ttt-perplexity --nll-out nll.txt): its first line says so.
bool signed_by_a_tool(const fs::path& file) {
  constexpr std::string_view mark = "# written by ttt-";
  std::ifstream in(file, std::ios::binary);
  std::string head(mark.size(), '\0');
  in.read(head.data(), std::streamsize(head.size()));
  return in.gcount() == std::streamsize(mark.size()) && head == mark;
}
}  // namespace

std::vector<std::string> expand_paths(const std::vector<std::string>& paths, std::vector<std::string>* skipped) {
  std::vector<std::string> out;
  for (const auto& p : paths) {
    std::error_code ec;
    if (p == "-") {  // standard input
      out.push_back(p);
    } else if (fs::is_directory(p, ec)) {
      std::vector<std::string> files;
      std::vector<std::string> outputs;
      for (const auto& e : fs::directory_iterator(p, ec)) {
        const std::string name = e.path().filename().string();
        if (!e.is_regular_file() || name[0] == '.') continue;
        (is_tool_output(name) || signed_by_a_tool(e.path()) ? outputs : files).push_back(e.path().string());
      }
      std::sort(outputs.begin(), outputs.end());
      if (skipped) skipped->insert(skipped->end(), outputs.begin(), outputs.end());
      if (files.empty())
        throw Error(fmt::format("{}: directory holds no files to evaluate{}", p,
                                outputs.empty() ? "" : " (only tool outputs: .nll, .json, .jsonl, .svg, .journal, "
                                                       ".partial files and files whose first line is '# written by "
                                                       "ttt-...' are skipped)"));
      std::sort(files.begin(), files.end());
      out.insert(out.end(), files.begin(), files.end());
    } else if (fs::exists(p, ec)) {
      out.push_back(p);
    } else {
      throw Error(fmt::format("{}: no such file or directory", p));
    }
  }
  return out;
}

std::vector<Document> load_text_documents(const std::vector<std::string>& files, const Tokenizer& tok,
                                          bool parse_special, int bos) {
  std::vector<Document> docs;
  for (const auto& f : files) {
    std::ostringstream ss;
    if (f == "-") {
      ss << std::cin.rdbuf();
    } else {
      std::ifstream in(f, std::ios::binary);
      if (!in) throw Error(fmt::format("{}: cannot open", f));
      ss << in.rdbuf();
    }
    const std::string text = ss.str();
    if (text.empty()) throw Error(fmt::format("{}: empty document (0 bytes)", f));
    Document d{f, {}};
    if (bos >= 0) d.tokens.push_back(bos);
    const auto ids = tok.encode(text, parse_special);
    d.tokens.insert(d.tokens.end(), ids.begin(), ids.end());
    docs.push_back(std::move(d));
  }
  return docs;
}

std::vector<Document> load_token_documents(const std::vector<std::string>& files) {
  std::vector<Document> docs;
  for (const auto& f : files) docs.push_back({f, read_token_file(f)});
  return docs;
}

}  // namespace ttt
