// Session files: a document's whole state (its tokens, the mini-batches
// stepped, the session's position, key/value rings and adapted prime weights),
// with the model's fingerprint and the options that change the numbers, so
// that generation continues later exactly where a run left it
// (ttt-generate --save-session / --load-session). Checksummed, written atomically.
#pragma once

#include "ttt/decode.hpp"
#include "ttt/output.hpp"
#include "ttt/safetensors.hpp"

#include <cstdint>
#include <string>

namespace ttt {

// The first bytes of every session file: an existing file is replaced only when it starts with them.
inline constexpr char kSessionMagic[8] = {'T', 'T', 'T', '-', 'S', 'E', 'S', '\n'};
// The same as a check_own_file format (the tools' --save-session, the Python module's Session.save).
inline OwnFormat session_file_format() {
  return {OwnFormat::magic, std::string(kSessionMagic, sizeof kSessionMagic), {}, "a session file"};
}

// What a session must match to be continued.
struct SessionKey {
  uint64_t model = 0;  // fingerprint of the model's files
  bool ttt = true;
  float inner_lr = 0;
  int32_t window = 0, mini_batch = 0, vocab = 0;
  // The storage the session ran in (the engine's, resolved: never "auto"): a
  // session continued in another storage would mix two runs' numbers.
  DType weights = DType::F32, kv = DType::F32;
};

void save_session_file(const std::string& path, const SessionKey& key, const Decoder::Saved& saved);
// Throws ttt::Error naming path on a file that is not a session, is corrupt
// (checksum, sizes), or is of another model, other options or another storage
// than `expect` (a version 1 file, written before the storage was recorded,
// is taken in any storage).
Decoder::Saved load_session_file(const std::string& path, const SessionKey& expect);
// The same from the file's bytes (the fuzz target's entry point).
Decoder::Saved parse_session(const std::string& bytes, const std::string& origin, const SessionKey& expect);

}  // namespace ttt
