// Output path checks and atomic file writes (temporary + fsync + rename),
// shared by the tools' reports and the model writers.
#include "ttt/output.hpp"

#include "ttt/error.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
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

void check_writable_dir(const fs::path& dir, const std::string& path, const std::string& flag) {
  std::error_code ec;
  const auto st = fs::status(dir, ec);
  if (!fs::exists(st))
    throw Error(fmt::format("{} {}: directory '{}' does not exist", flag, path, dir.string()));
  if (!fs::is_directory(st)) throw Error(fmt::format("{} {}: '{}' is not a directory", flag, path, dir.string()));
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    throw Error(fmt::format("{} {}: directory '{}' is not writable: {}", flag, path, dir.string(), std::strerror(errno)));
}

// Symlinks resolved, "." and ".." folded, no trailing separator: two
// spellings of one directory compare equal.
fs::path canonical_dir(const std::string& dir) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::absolute(dir), ec);
  if (ec) p = fs::absolute(dir).lexically_normal();
  while (!p.has_filename() && p.has_relative_path()) p = p.parent_path();
  return p;
}

}  // namespace

void check_output_file(const std::string& path, const std::string& flag) {
  if (path.empty()) throw Error(fmt::format("{}: empty file name", flag));
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw Error(fmt::format("{} {}: is a directory, expected a file name", flag, path));
  check_writable_dir(parent_of(path), path, flag);
  if (fs::exists(path, ec) && ::access(path.c_str(), W_OK) != 0)
    throw Error(fmt::format("{} {}: not writable: {}", flag, path, std::strerror(errno)));
}

void check_output_dir(const std::string& dir, const std::string& flag, bool force,
                      const std::vector<std::string>& protect) {
  if (dir.empty()) throw Error(fmt::format("{}: empty directory name", flag));
  std::error_code ec;
  const fs::path canon = canonical_dir(dir);
  for (const std::string& p : protect) {
    if (canonical_dir(p) == canon)
      throw Error(fmt::format("{} {}: is the input model directory '{}'; write the output somewhere else", flag, dir, p));
  }
  const auto st = fs::status(dir, ec);
  if (fs::exists(st)) {
    if (!fs::is_directory(st)) throw Error(fmt::format("{} {}: exists and is not a directory", flag, dir));
    if (!force && !fs::is_empty(dir, ec))
      throw Error(fmt::format("{} {}: directory is not empty; pass --force to write into it anyway", flag, dir));
    check_writable_dir(dir, dir, flag);
    return;
  }
  // Created later: the nearest existing ancestor must be a writable directory.
  fs::path up = fs::absolute(dir).parent_path();
  while (!up.empty() && !fs::exists(up, ec) && up != up.parent_path()) up = up.parent_path();
  check_writable_dir(up, dir, flag);
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  const fs::path target(path_);
  tmp_ = (parent_of(path_) / ("." + target.filename().string() + ".tmp.XXXXXX")).string();
  fd_ = ::mkstemp(tmp_.data());
  if (fd_ < 0) throw Error(fmt::format("{}: cannot create a temporary file beside it: {}", path_, std::strerror(errno)));
  // mkstemp makes 0600; give the file the mode an ordinary open() would.
  const mode_t mask = ::umask(0);
  ::umask(mask);
  ::fchmod(fd_, 0666 & ~mask);
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
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
