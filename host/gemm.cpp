// CLBlast wrappers: argument checks that name the operands, status codes
// turned into ttt errors, and profiling events recorded under a label.
#include "host/gemm.hpp"
#include "host/error.hpp"
#include "host/tuning.hpp"

#include <clblast.h>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

namespace ttt::host {

void clear_gemm_cache() { clblast::ClearCache(); }

const char* clblast_status_name(int s) {
  using clblast::StatusCode;
  switch (StatusCode(s)) {
    case StatusCode::kNotImplemented: return "kNotImplemented";
    case StatusCode::kInvalidMatrixA: return "kInvalidMatrixA";
    case StatusCode::kInvalidMatrixB: return "kInvalidMatrixB";
    case StatusCode::kInvalidMatrixC: return "kInvalidMatrixC";
    case StatusCode::kInvalidVectorX: return "kInvalidVectorX";
    case StatusCode::kInvalidVectorY: return "kInvalidVectorY";
    case StatusCode::kInvalidDimension: return "kInvalidDimension";
    case StatusCode::kInvalidLeadDimA: return "kInvalidLeadDimA";
    case StatusCode::kInvalidLeadDimB: return "kInvalidLeadDimB";
    case StatusCode::kInvalidLeadDimC: return "kInvalidLeadDimC";
    case StatusCode::kInsufficientMemoryA: return "kInsufficientMemoryA";
    case StatusCode::kInsufficientMemoryB: return "kInsufficientMemoryB";
    case StatusCode::kInsufficientMemoryC: return "kInsufficientMemoryC";
    case StatusCode::kInvalidBatchCount: return "kInvalidBatchCount";
    case StatusCode::kInvalidOverrideKernel: return "kInvalidOverrideKernel";
    case StatusCode::kMissingOverrideParameter: return "kMissingOverrideParameter";
    case StatusCode::kInvalidLocalMemUsage: return "kInvalidLocalMemUsage";
    case StatusCode::kNoHalfPrecision: return "kNoHalfPrecision";
    case StatusCode::kNoDoublePrecision: return "kNoDoublePrecision";
    case StatusCode::kUnknownError: return "kUnknownError";
    default: return s <= 0 && s > -1000 ? cl_error_name(s) : "CLBLAST_UNKNOWN_STATUS";
  }
}

std::string clblast_version() {
  return fmt::format("{}.{}.{}", CLBLAST_VERSION_MAJOR, CLBLAST_VERSION_MINOR, CLBLAST_VERSION_PATCH);
}

void clblast_override(Context& ctx, const std::string& kernel, const std::map<std::string, size_t>& params) {
  const std::unordered_map<std::string, size_t> p(params.begin(), params.end());
  const clblast::StatusCode st = clblast::OverrideParameters(ctx.device().id, kernel, clblast::Precision::kSingle, p);
  if (st != clblast::StatusCode::kSuccess)
    throw ClError(int(st), fmt::format("{} ({}) in clblast::OverrideParameters: kernel '{}' ({} parameters) on '{}'",
                                       clblast_status_name(int(st)), int(st), kernel, params.size(),
                                       ctx.device().name));
}

std::map<std::string, size_t> clblast_parameters(Context& ctx, const std::string& kernel) {
  std::unordered_map<std::string, size_t> p;
  const clblast::StatusCode st = clblast::RetrieveParameters(ctx.device().id, kernel, clblast::Precision::kSingle, p);
  if (st != clblast::StatusCode::kSuccess)
    throw ClError(int(st), fmt::format("{} ({}) in clblast::RetrieveParameters: kernel '{}' on '{}'",
                                       clblast_status_name(int(st)), int(st), kernel, ctx.device().name));
  return {p.begin(), p.end()};
}

namespace {

clblast::Transpose tr(Trans t) { return t == Trans::N ? clblast::Transpose::kNo : clblast::Transpose::kYes; }

// Elements a row-major op(X) of rows x cols with leading dimension ld spans.
size_t span(Trans t, size_t rows, size_t cols, size_t ld) {
  const size_t r = t == Trans::N ? rows : cols, c = t == Trans::N ? cols : rows;
  return r == 0 || c == 0 ? 0 : (r - 1) * ld + c;
}

void check_operand(const char* which, const Buffer& buf, size_t off, size_t need, const std::string& where) {
  if ((off + need) * sizeof(float) > buf.bytes())
    throw Error(fmt::format("{}: matrix {} needs {} floats from offset {} but its buffer holds {}", where, which,
                            need, off, buf.bytes() / sizeof(float)));
}

// CLBlast compiles its kernels inside the first call of each routine and shape:
// minutes on a cold PoCL cache, with nothing else on screen. The first call of
// each `where` in a process is watched: still running after TTT_SLOW_NOTICE_S
// seconds (default 5; 0: at once), it says so on stderr, and again every 20 s. A warm call
// ends long before, and later calls are not watched (no thread per GEMM).
class FirstCallNotice {
 public:
  explicit FirstCallNotice(const std::string& where) {
    static std::mutex seen_mutex;
    static std::set<std::string> seen;
    {
      std::lock_guard<std::mutex> lk(seen_mutex);
      if (!seen.insert(where).second) return;
    }
    const char* env = std::getenv("TTT_SLOW_NOTICE_S");
    const double first = env && *env ? std::atof(env) : 5.0;
    if (first <= 0) {  // TTT_SLOW_NOTICE_S=0: every first call says it, at once (what a test checks)
      std::fprintf(stderr, "ttt-cl: compiling CLBlast kernels (first run only, cached after): %s\n", where.c_str());
      return;
    }
    thread_ = std::thread([this, where, first] {
      using namespace std::chrono;
      const auto t0 = steady_clock::now();
      double next = first;
      std::unique_lock<std::mutex> lk(m_);
      while (!cv_.wait_until(lk, t0 + duration_cast<steady_clock::duration>(duration<double>(next)),
                             [&] { return done_; })) {
        std::fprintf(stderr, "ttt-cl: compiling CLBlast kernels (first run only, cached after): %s: %.0f s so far\n",
                     where.c_str(), duration<double>(steady_clock::now() - t0).count());
        std::fflush(stderr);
        next += 20;
      }
    });
  }
  ~FirstCallNotice() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard<std::mutex> lk(m_);
      done_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  FirstCallNotice(const FirstCallNotice&) = delete;
  FirstCallNotice& operator=(const FirstCallNotice&) = delete;

 private:
  std::mutex m_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

// A CLBlast routine may run several kernels (pad, transpose, gemm) and its
// event covers only the last, so with profiling on a GEMM is timed on the
// host between two queue drains instead: exact, at the cost of two waits.
template <typename Call>
void timed_call(Context& ctx, const char* label, const std::string& where, Call call) {
  const bool profile = ctx.profiler().enabled();
  if (profile) ctx.finish();
  const auto t0 = std::chrono::steady_clock::now();
  const clblast::StatusCode st = [&] {
    FirstCallNotice notice(where);
    return call();
  }();
  if (st != clblast::StatusCode::kSuccess)
    throw ClError(int(st), fmt::format("{} ({}) in {}", clblast_status_name(int(st)), int(st), where));
  if (profile) {
    ctx.finish();
    ctx.profiler().add(label, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
}

// An operand as handed to CLBlast: the buffer and element offset as given,
// or (plan.views, offset > 0 and aligned) a sub-buffer starting at the offset,
// so that CLBlast sees offset 0 and copies nothing on that account. A view of
// a view is made from its parent (OpenCL has no sub-buffers of sub-buffers).
class Operand {
 public:
  Operand(const Buffer& b, size_t off, bool views, size_t align) : mem_(b.get()), off_(off) {
    if (!views || off == 0) return;
    cl_mem parent = nullptr;
    size_t origin = 0;
    check(clGetMemObjectInfo(b.get(), CL_MEM_ASSOCIATED_MEMOBJECT, sizeof parent, &parent, nullptr),
          "clGetMemObjectInfo", "CL_MEM_ASSOCIATED_MEMOBJECT");
    if (parent) check(clGetMemObjectInfo(b.get(), CL_MEM_OFFSET, sizeof origin, &origin, nullptr),
                      "clGetMemObjectInfo", "CL_MEM_OFFSET");
    const size_t at = origin + off * sizeof(float), end = origin + b.bytes();
    if (at % align || at >= end) return;  // CLBlast copies this one, as it always did
    cl_buffer_region region{at, end - at};
    cl_int err = CL_SUCCESS;
    cl_mem v = clCreateSubBuffer(parent ? parent : b.get(), CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &region,
                                 &err);
    check(err, "clCreateSubBuffer", fmt::format("GEMM operand view at byte {} of a buffer of {} bytes", at, b.bytes()));
    view_ = mem_ = v;
    off_ = 0;
  }
  ~Operand() {
    if (view_) clReleaseMemObject(view_);  // CLBlast's enqueued kernels hold their own references
  }
  Operand(const Operand&) = delete;
  Operand& operator=(const Operand&) = delete;
  cl_mem mem() const { return mem_; }
  size_t off() const { return off_; }

 private:
  cl_mem mem_;
  size_t off_;
  cl_mem view_ = nullptr;
};

size_t base_align(Context& ctx) {
  struct Align {
    size_t bytes;
  };
  return ctx.memo<Align>("gemm-view-align", [&] { return Align{Buffer::view_align(ctx)}; }).bytes;
}

}  // namespace

namespace {
// Once per process, at the first model-sized GEMM (512^3 multiply-adds: a 125m
// projection is 14x that, the bundled byte models' largest a quarter) on a CPU
// with no record for it, neither in the file nor built in: CLBlast's defaults
// run 7x slower there than a tuned record with its plan (docs/performance.md),
// which a user cannot guess.
void suggest_tuning(Context& ctx, size_t mnk, const TuningState& st) {
  static std::atomic<bool> said{false};
  if (mnk < (size_t(1) << 27) || !(ctx.device().type & CL_DEVICE_TYPE_CPU) ||
      (st.kind != TuningState::Missing && st.kind != TuningState::Stale) || st.source != TuningState::None ||
      said.exchange(true))
    return;
  std::fprintf(stderr,
               "ttt-cl: note: no CLBlast tuning record for '%s' in '%s': GEMMs run with CLBlast's defaults, several "
               "times slower on a CPU; 'ttt-bench tune --no-tuners' writes one (a few minutes, once)\n",
               ctx.device().name.c_str(), st.path.c_str());
}

struct PlanSlot {
  mutable GemmPlan plan;
};
// Created from the tuning file's record (so that the file is read first and a
// plan set by hand before the first GEMM is never overwritten by it).
const PlanSlot& plan_slot(Context& ctx) {
  return ctx.memo<PlanSlot>("gemm-plan", [&] {
    PlanSlot s{tuning_state(ctx).plan};
    s.plan.views = env_switch("TTT_GEMM_VIEWS").value_or(s.plan.views);  // off: CLBlast copies offset operands (A/B)
    return s;
  });
}
}  // namespace

void set_gemm_plan(Context& ctx, const GemmPlan& plan) { plan_slot(ctx).plan = plan; }
GemmPlan gemm_plan(Context& ctx) { return plan_slot(ctx).plan; }
void set_gemm_views(Context& ctx, bool on) { plan_slot(ctx).plan.views = env_switch("TTT_GEMM_VIEWS").value_or(on); }

void gemm(Context& ctx, Trans ta, Trans tb, size_t M, size_t N, size_t K, float alpha, const Buffer& A,
          size_t a_off, size_t lda, const Buffer& B, size_t b_off, size_t ldb, float beta, Buffer& C, size_t c_off,
          size_t ldc, const char* label) {
  if (M == 0 || N == 0) return;
  const std::string where = fmt::format("clblast::Gemm '{}' M={} N={} K={} ta={} tb={} on '{}'", label, M, N, K,
                                        ta == Trans::T ? "T" : "N", tb == Trans::T ? "T" : "N", ctx.device().name);
  check_operand("A", A, a_off, span(ta, M, K, lda), where);
  check_operand("B", B, b_off, span(tb, K, N, ldb), where);
  check_operand("C", C, c_off, span(Trans::N, M, N, ldc), where);
  suggest_tuning(ctx, M * N * K, tuning_state(ctx));  // the tuning file, applied before this context's first GEMM
  cl_command_queue q = ctx.queue();
  const GemmPlan plan = gemm_plan(ctx);
  // Panels: [n0, n0 + nb) of C's columns, [k0, k0 + kb) of the sum. K = 0 is one call, as before the
  // plans: CLBlast refuses it (kInvalidDimension), and the error names the GEMM.
  const size_t kb = std::max<size_t>(1, plan.k_block && K > plan.k_block ? plan.k_block : K);
  const size_t nb = plan.n_block && N > plan.n_block ? plan.n_block : N;
  const size_t align = plan.views ? base_align(ctx) : 1;
  timed_call(ctx, label, where, [&] {
    for (size_t n0 = 0; n0 < N; n0 += nb)
      for (size_t k0 = 0; k0 == 0 || k0 < K; k0 += kb) {
        const size_t n = std::min(nb, N - n0), k = std::min(kb, K - k0);
        const Operand a(A, a_off + (ta == Trans::N ? k0 : k0 * lda), plan.views, align);
        const Operand bm(B, b_off + (tb == Trans::N ? k0 * ldb + n0 : n0 * ldb + k0), plan.views, align);
        const Operand c(C, c_off + n0, plan.views, align);
        const float b = k0 == 0 ? beta : 1.f;
        const clblast::StatusCode st =
            plan.col_major  // C^T = B^T A^T, column-major: the same numbers, other copies inside CLBlast
                ? clblast::Gemm<float>(clblast::Layout::kColMajor, tr(tb), tr(ta), n, M, k, alpha, bm.mem(),
                                       bm.off(), ldb, a.mem(), a.off(), lda, b, c.mem(), c.off(), ldc, &q)
                : clblast::Gemm<float>(clblast::Layout::kRowMajor, tr(ta), tr(tb), M, n, k, alpha, a.mem(), a.off(),
                                       lda, bm.mem(), bm.off(), ldb, b, c.mem(), c.off(), ldc, &q);
        if (st != clblast::StatusCode::kSuccess) return st;
      }
    return clblast::StatusCode::kSuccess;
  });
}

void gemm_strided_batched(Context& ctx, Trans ta, Trans tb, size_t M, size_t N, size_t K, float alpha,
                          const Buffer& A, size_t a_off, size_t lda, size_t a_stride, const Buffer& B, size_t b_off,
                          size_t ldb, size_t b_stride, float beta, Buffer& C, size_t c_off, size_t ldc,
                          size_t c_stride, size_t batch, const char* label) {
  if (M == 0 || N == 0 || batch == 0) return;
  const std::string where =
      fmt::format("clblast::GemmStridedBatched '{}' M={} N={} K={} batch={} on '{}'", label, M, N, K, batch,
                  ctx.device().name);
  check_operand("A", A, a_off + (batch - 1) * a_stride, span(ta, M, K, lda), where);
  check_operand("B", B, b_off + (batch - 1) * b_stride, span(tb, K, N, ldb), where);
  check_operand("C", C, c_off + (batch - 1) * c_stride, span(Trans::N, M, N, ldc), where);
  tuning_state(ctx);
  cl_command_queue q = ctx.queue();
  timed_call(ctx, label, where, [&] {
    if (gemm_plan(ctx).col_major)
      return clblast::GemmStridedBatched<float>(clblast::Layout::kColMajor, tr(tb), tr(ta), N, M, K, alpha, B.get(),
                                                b_off, ldb, b_stride, A.get(), a_off, lda, a_stride, beta, C.get(),
                                                c_off, ldc, c_stride, batch, &q);
    return clblast::GemmStridedBatched<float>(clblast::Layout::kRowMajor, tr(ta), tr(tb), M, N, K, alpha, A.get(),
                                              a_off, lda, a_stride, B.get(), b_off, ldb, b_stride, beta, C.get(),
                                              c_off, ldc, c_stride, batch, &q);
  });
}

void scal(Context& ctx, size_t n, float alpha, Buffer& x, size_t off, const char* label) {
  if (n == 0) return;
  const std::string where = fmt::format("clblast::Scal '{}' n={} on '{}'", label, n, ctx.device().name);
  check_operand("x", x, off, n, where);
  cl_command_queue q = ctx.queue();
  timed_call(ctx, label, where, [&] { return clblast::Scal<float>(n, alpha, x.get(), off, 1, &q); });
}

void gemv(Context& ctx, Trans ta, size_t M, size_t N, float alpha, const Buffer& A, size_t a_off, size_t lda,
          const Buffer& x, size_t x_off, float beta, Buffer& y, size_t y_off, const char* label) {
  if (M == 0 || N == 0) return;
  const std::string where = fmt::format("clblast::Gemv '{}' M={} N={} ta={} on '{}'", label, M, N,
                                        ta == Trans::T ? "T" : "N", ctx.device().name);
  const size_t nx = ta == Trans::N ? N : M, ny = ta == Trans::N ? M : N;
  check_operand("A", A, a_off, span(Trans::N, M, N, lda), where);
  check_operand("x", x, x_off, nx, where);
  check_operand("y", y, y_off, ny, where);
  // CLBlast computes alpha * A x + beta * y even when beta is 0, so a NaN left
  // in y (fresh buffers hold anything) would survive: clear it first.
  if (beta == 0.f) y.fill(0.f, ny, y_off);
  cl_command_queue q = ctx.queue();
  timed_call(ctx, label, where, [&] {
    return clblast::Gemv<float>(clblast::Layout::kRowMajor, tr(ta), M, N, alpha, A.get(), a_off, lda, x.get(), x_off,
                                1, beta, y.get(), y_off, 1, &q);
  });
}

}  // namespace ttt::host
