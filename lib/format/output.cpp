// Output path checks and atomic file writes (temporary + fsync + rename),
// shared by the tools' reports and the model writers.
#include "ttt/output.hpp"

#include "ttt/error.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace ttt {

namespace fs = std::filesystem;

namespace {

// The directory a file path lives in ("." for a bare name).
fs::path parent_of(const std::string& path) {
  const fs::path p = fs::path(path).parent_path();
  return p.empty() ? fs::path(".") : p;
}

// Whether a new file can be made in dir: the one sure test (read-only file
// systems, /proc, ACLs, root, whom access() never refuses) is to make one.
// Returns 0 or the errno.
int probe_dir(const fs::path& dir) {
  std::string tmp = (dir / ".ttt-write-probe.XXXXXX").string();
  const int fd = ::mkstemp(tmp.data());
  if (fd < 0) return errno;
  ::close(fd);
  ::unlink(tmp.c_str());
  return 0;
}

// dir exists, is a directory and takes a new file; errors name `what` (flag and path).
void check_dir_takes_files(const fs::path& dir, const std::string& what) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0)
    throw Error(fmt::format("{}: cannot write: directory '{}' does not exist ({})", what, dir.string(),
                            std::strerror(errno)));
  if (!S_ISDIR(st.st_mode)) throw Error(fmt::format("{}: cannot write: '{}' is not a directory", what, dir.string()));
  if (const int e = probe_dir(dir))
    throw Error(fmt::format("{}: cannot write in directory '{}': {}", what, dir.string(), std::strerror(e)));
}

}  // namespace

std::string canonical_path(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::absolute(path), ec);
  if (ec) p = fs::absolute(path).lexically_normal();
  while (!p.has_filename() && p.has_relative_path()) p = p.parent_path();
  return p.string();
}

void check_not_protected(const std::string& dir, const std::string& flag, const std::vector<std::string>& protect) {
  const std::string canon = canonical_path(dir);
  for (const std::string& p : protect)
    if (canonical_path(p) == canon)
      throw Error(fmt::format("{} {}: is the input model directory '{}'; write the output somewhere else", flag, dir,
                              p));
}

bool written_through(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode);
}

void check_output_file(const std::string& path, const std::string& flag) {
  if (path.empty()) throw Error(fmt::format("{}: empty file name", flag));
  const std::string what = fmt::format("{} {}", flag, path);
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) throw Error(fmt::format("{}: is a directory, expected a file name", what));
    if (::access(path.c_str(), W_OK) != 0) throw Error(fmt::format("{}: cannot write: {}", what, std::strerror(errno)));
  }
  if (written_through(path)) return;
  check_dir_takes_files(parent_of(path), what);
}

namespace {

// Whether the text of an existing file shows `f`'s signature.
bool has_signature(const std::string& path, const OwnFormat& f) {
  std::ifstream in(path, std::ios::binary);
  std::string head(f.kind == OwnFormat::magic ? f.text.size() : 512, '\0');
  in.read(head.data(), std::streamsize(head.size()));
  head.resize(size_t(in.gcount()));
  switch (f.kind) {
    case OwnFormat::magic:
      return head == f.text;
    case OwnFormat::line: {  // the first line, or the second after an XML declaration (an SVG's)
      if (head.compare(0, f.text.size(), f.text) == 0) return true;
      const size_t second = head.find('\n') + 1;
      return head.rfind("<?xml", 0) == 0 && second > 0 && head.compare(second, f.text.size(), f.text) == 0;
    }
    case OwnFormat::json_key: {
      const size_t first = head.find_first_not_of(" \t\r\n");
      if (first == std::string::npos || head[first] != '{') return false;  // not an object: not read further
      in.clear();
      in.seekg(0);
      const auto j = nlohmann::json::parse(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>(),
                                           nullptr, false);
      if (j.is_discarded() || !j.is_object() || !j.contains(f.key) || !j[f.key].is_string()) return false;
      // The text itself (a format's name), or a tool's "TOOL VERSION (ttt-cl)" when the text is "TOOL ".
      const std::string v = j[f.key].get<std::string>();
      const std::string_view tail = " (ttt-cl)";
      return v == f.text || (v.rfind(f.text, 0) == 0 && v.size() > f.text.size() + tail.size() &&
                             v.compare(v.size() - tail.size(), tail.size(), tail) == 0);
    }
    case OwnFormat::none:
      return false;
  }
  return false;
}

// A JSON file's `key`, when it is a string: "ttt-bench 0.1.0 (ttt-cl)" for a record of another tool.
std::string json_string(const std::string& path, const std::string& key) {
  std::ifstream in(path, std::ios::binary);
  const auto j = nlohmann::json::parse(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>(), nullptr,
                                       false);
  return !j.is_discarded() && j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
}

// "(no TTT-SES header)": the signature the file lacks, as the message shows it.
std::string missing(const std::string& path, const OwnFormat& f) {
  std::string shown;  // "TTT-SES\n" as "TTT-SES"
  for (char ch : f.text)
    if (std::isprint(static_cast<unsigned char>(ch))) shown += ch;
  switch (f.kind) {
    case OwnFormat::magic: return fmt::format("no {} header", shown);
    case OwnFormat::line: return fmt::format("no line \"{}...\"", shown);
    case OwnFormat::json_key:
      if (const std::string by = json_string(path, f.key); !by.empty())
        return fmt::format("its \"{}\" is \"{}\", not \"{}...\"", f.key, by, shown);
      return fmt::format("no \"{}\": \"{}...\" field", f.key, shown);
    case OwnFormat::none: break;
  }
  return {};
}

}  // namespace

void check_own_file(const std::string& path, const std::string& flag, const OwnFormat& format) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec) || fs::file_size(path, ec) == 0 || has_signature(path, format)) return;
  const std::string where = flag.empty() ? path : fmt::format("{} {}", flag, path);
  if (format.kind == OwnFormat::none)
    throw Error(fmt::format("{}: the file exists, and {} carries no signature that would tell this tool's own file "
                            "from another; left untouched: name a new file, or remove it first",
                            where, format.what));
  throw Error(fmt::format("{}: the file exists and is not {} ({}), so this tool did not write it; left untouched: "
                          "name a new file, or remove it first",
                          where, format.what, missing(path, format)));
}

void check_output_dir(const std::string& dir, const std::string& flag, bool force,
                      const std::vector<std::string>& protect) {
  if (dir.empty()) throw Error(fmt::format("{}: empty directory name", flag));
  const std::string what = fmt::format("{} {}", flag, dir);
  check_not_protected(dir, flag, protect);
  std::error_code ec;
  const auto st = fs::status(dir, ec);
  if (fs::exists(st)) {
    if (!fs::is_directory(st)) throw Error(fmt::format("{}: exists and is not a directory", what));
    if (!force && !fs::is_empty(dir, ec))
      throw Error(fmt::format("{}: directory is not empty; writing into it must be asked for", what), "force");
    check_dir_takes_files(dir, what);
    return;
  }
  // Created later: the nearest existing ancestor must be a directory that takes new entries.
  fs::path up = fs::absolute(dir).parent_path();
  while (!up.empty() && !fs::exists(up, ec) && up != up.parent_path()) up = up.parent_path();
  check_dir_takes_files(up, what);
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  if (written_through(path_)) {  // opened as it is; commit() only closes it
    fd_ = ::open(path_.c_str(), O_WRONLY);
    if (fd_ < 0) throw Error(fmt::format("{}: cannot open for writing: {}", path_, std::strerror(errno)));
    return;
  }
  struct stat st {};
  const bool exists = ::stat(path_.c_str(), &st) == 0;
  const fs::path target(path_);
  tmp_ = (parent_of(path_) / ("." + target.filename().string() + ".tmp.XXXXXX")).string();
  fd_ = ::mkstemp(tmp_.data());
  if (fd_ < 0) throw Error(fmt::format("{}: cannot create a temporary file beside it: {}", path_, std::strerror(errno)));
  // mkstemp makes 0600; give the file the mode of the one it replaces (a private file stays private), else the
  // mode an ordinary open() would.
  const mode_t mask = ::umask(0);
  ::umask(mask);
  ::fchmod(fd_, exists ? (st.st_mode & 07777) : (0666 & ~mask));
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    if (!tmp_.empty()) ::unlink(tmp_.c_str());
  }
}

void AtomicFile::write(const void* data, size_t bytes) {
  if (fd_ < 0) throw Error(fmt::format("{}: write after commit", path_));
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::write(fd_, p, bytes);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw Error(fmt::format("{}: write failed: {}", path_, n < 0 ? std::strerror(errno) : "no progress"));
    p += n;
    bytes -= size_t(n);
  }
}

void AtomicFile::commit() {
  if (fd_ < 0) throw Error(fmt::format("{}: committed twice", path_));
  const int fd = fd_;
  fd_ = -1;
  if (tmp_.empty()) {  // written through (a device, FIFO or socket): nothing to sync or rename
    if (::close(fd) != 0) throw Error(fmt::format("{}: close failed: {}", path_, std::strerror(errno)));
    return;
  }
  auto fail = [&](const char* what) {
    const int e = errno;
    ::unlink(tmp_.c_str());
    throw Error(fmt::format("{}: {} failed: {}", path_, what, std::strerror(e)));
  };
  if (::fsync(fd) != 0) {
    ::close(fd);
    fail("fsync");
  }
  if (::close(fd) != 0) fail("close");
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) fail("rename");
}

void write_file_atomic(const std::string& path, std::string_view data) {
  AtomicFile f(path);
  f.write(data);
  f.commit();
}

}  // namespace ttt
