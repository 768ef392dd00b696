// The byte-level BPE merge: a doubly linked list of symbols and a min-heap of
// candidate pairs keyed by (rank, position), so a piece of n bytes merges in
// O(n log n); the pair table; and the cache of merged words.
#include "lib/tokenizer/tokenizer_internal.hpp"

#include <algorithm>
#include <bit>

namespace ttt::tok {

void MergeTable::reserve(size_t n) {
  size_t cap = 16;
  while (cap < 2 * n) cap *= 2;  // load factor <= 1/2 keeps probe chains short
  std::vector<Entry> old;
  old.swap(slots_);
  slots_.assign(cap, Entry{});
  mask_ = cap - 1;
  shift_ = 64 - std::countr_zero(cap);
  size_ = 0;
  for (const Entry& e : old)
    if (e.key != kEmpty) insert(int32_t(e.key >> 32), int32_t(uint32_t(e.key)), e.rank, e.id);
}

void MergeTable::insert(int32_t left, int32_t right, uint32_t rank, int32_t id) {
  if (2 * (size_ + 1) > slots_.size()) reserve(2 * (size_ + 1));
  const uint64_t k = key(left, right);
  for (size_t i = hash(k);; i = (i + 1) & mask_) {
    Entry& e = slots_[i];
    if (e.key == kEmpty) {
      e = Entry{k, rank, id};
      ++size_;
      return;
    }
    if (e.key == k) {
      e.rank = rank;
      e.id = id;
      return;
    }
  }
}

void PieceTable::reserve(size_t n) {
  size_t cap = 16;
  while (cap < 2 * n) cap *= 2;
  slots_.assign(cap, Slot{});
  mask_ = cap - 1;
}

int32_t PieceTable::insert(const std::vector<std::string>& tokens, int32_t id) {
  // The loaders reserve for every token first, so the load factor stays <= 1/2.
  tokens_ = &tokens;
  const std::string& s = tokens[id];
  const uint64_t h = hash_bytes(s.data(), s.size());
  const auto tag = uint32_t(h >> 32);
  for (size_t i = h & mask_;; i = (i + 1) & mask_) {
    Slot& e = slots_[i];
    if (e.id < 0) {
      e = Slot{tag, id};
      return -1;
    }
    if (e.tag == tag && tokens[e.id] == s) return e.id;
  }
}

bool PieceCache::get(std::string_view piece, uint64_t hash, std::vector<int32_t>& out) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (slots_.empty()) return false;
  const Slot& e = slots_[hash & (kSlots - 1)];
  if (e.hash != hash || e.len != piece.size() || std::memcmp(e.bytes, piece.data(), piece.size()) != 0) return false;
  out.insert(out.end(), e.ids, e.ids + e.n_ids);
  return true;
}

void PieceCache::put(std::string_view piece, uint64_t hash, const int32_t* ids, size_t n) const {
  if (piece.size() > kMaxPiece || n > kMaxIds) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (slots_.empty()) slots_.resize(kSlots);
  Slot& e = slots_[hash & (kSlots - 1)];
  e.hash = hash;
  e.len = uint8_t(piece.size());
  e.n_ids = uint8_t(n);
  std::memcpy(e.bytes, piece.data(), piece.size());
  std::copy(ids, ids + n, e.ids);
}

void Bpe::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.size() == 1) {
    out.push_back(byte_id[static_cast<unsigned char>(piece[0])]);
    return;
  }
  if (whole_piece_first) {
    if (const int32_t id = piece_id.find(piece); id >= 0) {
      out.push_back(id);
      return;
    }
  }
  const bool cacheable = piece.size() <= PieceCache::kMaxPiece;
  const uint64_t hash = cacheable ? hash_bytes(piece.data(), piece.size()) : 0;
  if (cacheable && cache.get(piece, hash, out)) return;
  const size_t first = out.size();
  merge(piece, out);
  if (cacheable) cache.put(piece, hash, out.data() + first, out.size() - first);
}

namespace {

struct Symbol {
  int32_t id;  // -1 once merged into its left neighbour
  int32_t prev, next;
};

// A pair that could merge. It is stale when either side has changed since it
// was pushed, which the ids tell (a merge always changes the left id).
struct Candidate {
  uint32_t rank;
  int32_t pos;  // index of the left symbol: order of positions is text order
  int32_t left, right, merged;
  // std heap is a max-heap: "greater" pops the lowest rank, then the leftmost,
  // which is the order of HF's BPE and of tiktoken's linear scan.
  bool operator<(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

}  // namespace

void Bpe::merge(std::string_view piece, std::vector<int32_t>& out) const {
  // Scratch reused across calls on this thread: most pieces are short and an
  // allocation per piece would cost more than the merge.
  thread_local std::vector<Symbol> sym;
  thread_local std::vector<Candidate> heap;
  const int n = int(piece.size());
  sym.resize(n);
  heap.clear();
  for (int i = 0; i < n; ++i) sym[i] = Symbol{byte_id[static_cast<unsigned char>(piece[i])], i - 1, i + 1 < n ? i + 1 : -1};

  auto push = [&](int pos) {
    const int nx = sym[pos].next;
    if (nx < 0) return;
    if (const MergeTable::Entry* e = merges.find(sym[pos].id, sym[nx].id)) {
      heap.push_back(Candidate{e->rank, pos, sym[pos].id, sym[nx].id, e->id});
      std::push_heap(heap.begin(), heap.end());
    }
  };
  for (int i = 0; i + 1 < n; ++i) push(i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const Candidate c = heap.back();
    heap.pop_back();
    Symbol& l = sym[c.pos];
    if (l.id != c.left || l.next < 0) continue;
    Symbol& r = sym[l.next];
    if (r.id != c.right) continue;
    l.id = c.merged;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = c.pos;
    r.id = -1;
    if (l.prev >= 0) push(l.prev);
    push(c.pos);
  }
  for (int i = 0; i >= 0; i = sym[i].next) out.push_back(sym[i].id);
}

}  // namespace ttt::tok
