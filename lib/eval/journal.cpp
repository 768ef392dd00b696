// The results journal: JSON lines with a checksum each, appended with
// write + fsync, read back on --resume with a torn last line cut off.
#include "lib/eval/journal.hpp"

#include "ttt/error.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

namespace ttt {
namespace {

using json = nlohmann::json;

// The line of j with its checksum: the FNV-1a of j's own dump without "sum".
std::string sealed_line(json j) {
  j.erase("sum");
  const std::string body = j.dump();
  j["sum"] = hex64(fnv1a(body.data(), body.size()));
  return j.dump() + "\n";
}

bool intact(const json& j) {
  if (!j.is_object() || !j.contains("sum") || !j["sum"].is_string()) return false;
  json k = j;
  k.erase("sum");
  const std::string body = k.dump();
  return j["sum"].get<std::string>() == hex64(fnv1a(body.data(), body.size()));
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_all(int fd, const std::string& s, const std::string& path) {
  size_t at = 0;
  while (at < s.size()) {
    const ssize_t n = ::write(fd, s.data() + at, s.size() - at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(fmt::format("{}: cannot write the journal: {}", path, std::strerror(errno)));
    at += size_t(n);
  }
  if (::fsync(fd) != 0) throw Error(fmt::format("{}: fsync failed: {}", path, std::strerror(errno)));
}

}  // namespace

uint64_t fnv1a(const void* data, size_t n, uint64_t h) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

std::string hex64(uint64_t v) { return fmt::format("{:016x}", v); }

uint64_t model_fingerprint(const std::string& model_dir) {
  uint64_t h = 1469598103934665603ull;
  for (const char* name : {"config.json", "model.safetensors"}) {
    std::ifstream in(std::filesystem::path(model_dir) / name, std::ios::binary);
    std::vector<char> buf(1 << 20);
    while (in) {
      in.read(buf.data(), std::streamsize(buf.size()));
      h = fnv1a(buf.data(), size_t(in.gcount()), h);
    }
  }
  return h;
}

std::string journal_fingerprint(const std::string& model_dir, bool ttt, float inner_lr, const std::string& modes,
                                const std::string& cut, const std::string& storage) {
  std::string options = fmt::format("ttt={} inner_lr={} modes={}", ttt, inner_lr, modes);
  if (!cut.empty()) options += " " + cut;
  if (!storage.empty()) options += " " + storage;
  return hex64(model_fingerprint(model_dir)) + "-" + hex64(fnv1a(options.data(), options.size()));
}

std::string tokens_hash(std::span<const int32_t> tokens) {
  return hex64(fnv1a(tokens.data(), tokens.size_bytes()));
}

Journal::Journal(const std::string& path, const std::string& fingerprint, bool resume) : path_(path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const bool exists = fs::exists(path, ec);
  if (exists && !resume && fs::file_size(path, ec) > 0) {
    // Someone's other file is named no journal: say what it is, not how to continue it.
    const std::string text = read_all(path);
    const size_t nl = text.find('\n');
    const json j = nl == std::string::npos ? json() : json::parse(text.begin(), text.begin() + long(nl), nullptr, false);
    if (j.is_discarded() || !j.is_object() || !intact(j) || j.value("journal", "") != "ttt-perplexity")
      throw Error(fmt::format("{}: not a ttt-perplexity journal (its first line is not a journal header); left "
                              "untouched: name a new file",
                              path));
    throw Error(fmt::format("{}: journal exists; resume it to continue, or remove it to start over", path), "resume");
  }
  size_t good = 0;  // bytes of intact lines
  bool header = false;
  if (exists && resume) {
    const std::string text = read_all(path);
    size_t at = 0, line_no = 0;
    while (at < text.size()) {
      const size_t nl = text.find('\n', at);
      ++line_no;
      json j;
      bool ok = nl != std::string::npos;
      if (ok) {
        j = json::parse(text.begin() + long(at), text.begin() + long(nl), nullptr, false);
        ok = !j.is_discarded() && intact(j);
      }
      if (!ok && !header)  // the file must show itself a journal before anything in it is cut off or replaced
        throw Error(fmt::format("{}: not a ttt-perplexity journal (its first line is not a journal header); left "
                                "untouched: name a new file or an existing journal",
                                path));
      if (!ok) {
        // Only the last line can be torn (the run died while writing it); anything earlier is damage.
        if (nl != std::string::npos && text.find_first_not_of('\0', nl + 1) != std::string::npos)
          throw Error(fmt::format("{}:{}: damaged journal line (not the last one); fix or remove the journal", path,
                                  line_no));
        torn_ = true;
        break;
      }
      if (!header) {
        if (j.value("journal", "") != "ttt-perplexity")
          throw Error(fmt::format("{}: not a ttt-perplexity journal", path));
        if (j.value("fingerprint", "") != fingerprint)
          throw Error(fmt::format("{}: journal written for another model or other options (fingerprint {}, this run "
                                  "{}); use a new journal",
                                  path, j.value("fingerprint", ""), fingerprint));
        header = true;
      } else {
        JournalRecord r;
        r.doc = j.at("doc").get<size_t>();
        r.mode = j.at("mode").get<std::string>();
        r.name = j.at("name").get<std::string>();
        r.tokens_hash = j.at("tokens").get<std::string>();
        r.seconds = j.at("seconds").get<double>();
        for (const auto& v : j.at("nll")) r.nll.push_back(float(v.get<double>()));
        done_[{r.doc, r.mode}] = std::move(r);
      }
      at = nl + 1;
      good = at;
    }
  }
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(fmt::format("{}: cannot open the journal: {}", path, std::strerror(errno)));
  if (::ftruncate(fd_, off_t(good)) != 0 || ::lseek(fd_, off_t(good), SEEK_SET) < 0)
    throw Error(fmt::format("{}: cannot cut the journal back to its intact lines: {}", path, std::strerror(errno)));
  if (!header)
    write_all(fd_, sealed_line({{"journal", "ttt-perplexity"}, {"version", 1}, {"fingerprint", fingerprint}}), path_);
}

Journal::~Journal() {
  if (fd_ >= 0) ::close(fd_);
}

void Journal::append(const JournalRecord& r) {
  json nll = json::array();
  for (float v : r.nll) nll.push_back(double(v));
  write_all(fd_,
            sealed_line({{"doc", r.doc},
                         {"mode", r.mode},
                         {"name", r.name},
                         {"tokens", r.tokens_hash},
                         {"seconds", r.seconds},
                         {"nll", std::move(nll)}}),
            path_);
}

}  // namespace ttt
