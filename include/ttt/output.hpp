// Output files that are never left half written: the tools check every path
// they will write before any work starts, and every file is written to a
// temporary in its own directory, flushed, synced and renamed over the target,
// so an interrupted or failed run leaves the old file or none, never a torso.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace ttt {

// The one check of an output path, run before any work (the tools' Paths
// and the Python module use it): throws ttt::Error naming `flag` (the option
// or argument that gave the path) and `path` with the reason (strerror) when
// `path` cannot be written as a file: it is a directory or an unwritable
// file, or its directory is missing, not a directory, or does not take a new
// file. The last is tried by making one (read-only file systems, /proc, ACLs
// and root, whom access() never refuses, all answer truly).
void check_output_file(const std::string& path, const std::string& flag);

// Whether `path` is an existing device, FIFO or socket (/dev/null, /dev/stdout, a pipe): an output there is
// written through, as a shell's redirection would, never replaced by a regular file (AtomicFile), and needs no
// directory that takes new files.
bool written_through(const std::string& path);

// How a tool knows an existing file for one it wrote, and so may replace it
// (a tool never overwrites a file it did not write): `magic`, the file starts
// with `text` (a binary format's header); `line`, its first line does, or its
// second after an XML declaration (a text format's comment: "# written by
// ttt-perplexity", "<!-- written by ttt-niah"); `json_key`, it is a JSON object
// whose top-level `key` is the string `text`, or, for `text` "TOOL ", a string
// "TOOL VERSION (ttt-cl)"; `none`, the tool cannot tell its
// output from another file. `what` says what such a file is ("a session file").
struct OwnFormat {
  enum Kind { magic, line, json_key, none } kind = none;
  std::string text, key, what;
};

// The one check before a tool replaces `path` (the tools' Paths and the Python
// module use it): throws ttt::Error "FLAG PATH: the file exists and is not WHAT
// (no ... header), so this tool did not write it; left untouched: ..." when
// `path` is a non-empty regular file without the format's signature. A missing
// or empty file passes; so does anything else, which check_output_file judges.
void check_own_file(const std::string& path, const std::string& flag, const OwnFormat& format);

// A path with links resolved, "." and ".." folded and no trailing separator
// (the file need not exist): two spellings of one file or directory are equal.
std::string canonical_path(const std::string& path);

// The one rule that keeps an output directory off an input model's: throws
// ttt::Error "FLAG DIR: is the input model directory 'P'; ..." when dir is one
// of `protect`, however spelt (canonical_path). check_output_dir runs it; the
// tools' Paths runs it first, as a usage error.
void check_not_protected(const std::string& dir, const std::string& flag, const std::vector<std::string>& protect);

// For a directory a tool fills (a model directory). Throws ttt::Error naming
// `flag` when `dir` is an existing non-directory; is one of `protect` (the
// same directory by canonical path, e.g. the input model: refused even with
// force); is a non-empty directory and force is off (Error::setting()
// "force"); or cannot take new files (it, or its nearest existing ancestor
// when it is to be created, tried as check_output_file does).
void check_output_dir(const std::string& dir, const std::string& flag, bool force,
                      const std::vector<std::string>& protect = {});

// A file written in pieces and published atomically by commit(); the
// destructor of an uncommitted one removes its temporary. The new file keeps
// the mode of the one it replaces. An existing device, FIFO or socket
// (/dev/null, /dev/stdout) is written through instead, never replaced. Every write is
// checked: errors throw ttt::Error naming the target path and the reason.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t bytes);
  void write(std::string_view s) { write(s.data(), s.size()); }
  void commit();  // fsync, close, rename over the target

 private:
  std::string path_, tmp_;
  int fd_ = -1;
};

// write_file_atomic(p, s): AtomicFile(p), write(s), commit().
void write_file_atomic(const std::string& path, std::string_view data);

}  // namespace ttt
