// The MPI side of a corpus run: rank 0 answers requests for documents and
// collects results between its own mini-batches (poll), so it computes too;
// a pass ends when every other rank has said it is done, then all ranks meet
// at a barrier before the next pass. Messages: REQUEST (empty) -> ASSIGN
// (document index, -1 for none), RESULT (doc, seconds, NLLs as doubles:
// floats travel exactly), DONE.
#include "lib/eval/mpi_shard.hpp"

#include "ttt/device.hpp"
#include "ttt/error.hpp"

#include <fmt/format.h>

#include <cstdlib>
#include <deque>

#if TTT_HAVE_MPI
#include <mpi.h>
#endif

namespace ttt::mpi {

#if TTT_HAVE_MPI
namespace {

enum Tag { kRequest = 1, kAssign = 2, kResult = 3, kDone = 4 };

bool launched_by_mpirun() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"})
    if (std::getenv(v)) return true;
  return false;
}

class Rank0 : public Scheduler {
 public:
  Rank0(int size, std::vector<size_t> todo, LocalScheduler::Done done)
      : size_(size), todo_(todo.begin(), todo.end()), done_(std::move(done)) {}
  std::optional<size_t> next() override {
    poll();
    if (todo_.empty()) return std::nullopt;
    const size_t i = todo_.front();
    todo_.pop_front();
    return i;
  }
  void finished(size_t doc, std::vector<float> nll, double seconds) override {
    done_(doc, std::move(nll), seconds, false);
  }
  void poll() override {
    for (;;) {
      int flag = 0;
      MPI_Status st;
      MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &st);
      if (!flag) return;
      handle(st);
    }
  }
  void drain() override {
    while (finished_ranks_ < size_ - 1) {
      MPI_Status st;
      MPI_Probe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &st);
      handle(st);
    }
  }

 private:
  void handle(const MPI_Status& st) {
    if (st.MPI_TAG == kRequest || st.MPI_TAG == kDone) {
      int dummy = 0;
      MPI_Recv(&dummy, 1, MPI_INT, st.MPI_SOURCE, st.MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      if (st.MPI_TAG == kDone) {
        ++finished_ranks_;
        return;
      }
      long long i = -1;
      if (!todo_.empty()) {
        i = (long long)todo_.front();
        todo_.pop_front();
      }
      MPI_Send(&i, 1, MPI_LONG_LONG, st.MPI_SOURCE, kAssign, MPI_COMM_WORLD);
    } else if (st.MPI_TAG == kResult) {
      int count = 0;
      MPI_Get_count(&st, MPI_DOUBLE, &count);
      std::vector<double> msg(static_cast<size_t>(count));
      MPI_Recv(msg.data(), count, MPI_DOUBLE, st.MPI_SOURCE, kResult, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      std::vector<float> nll(msg.begin() + 2, msg.end());
      done_(size_t(msg[0]), std::move(nll), msg[1], true);
    } else {
      throw Error(fmt::format("MPI: unexpected message tag {} from rank {}", st.MPI_TAG, st.MPI_SOURCE));
    }
  }
  int size_, finished_ranks_ = 0;
  std::deque<size_t> todo_;
  LocalScheduler::Done done_;
};

class Worker : public Scheduler {
 public:
  std::optional<size_t> next() override {
    int dummy = 0;
    long long i = -1;
    MPI_Send(&dummy, 1, MPI_INT, 0, kRequest, MPI_COMM_WORLD);
    MPI_Recv(&i, 1, MPI_LONG_LONG, 0, kAssign, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    if (i < 0) return std::nullopt;
    return size_t(i);
  }
  void finished(size_t doc, std::vector<float> nll, double seconds) override {
    std::vector<double> msg{double(doc), seconds};
    msg.insert(msg.end(), nll.begin(), nll.end());
    MPI_Send(msg.data(), int(msg.size()), MPI_DOUBLE, 0, kResult, MPI_COMM_WORLD);
  }
  void drain() override {
    int dummy = 0;
    MPI_Send(&dummy, 1, MPI_INT, 0, kDone, MPI_COMM_WORLD);
  }
};

}  // namespace

World::World(int& argc, char**& argv) {
  if (!launched_by_mpirun()) return;
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  active_ = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &local_rank_);
  MPI_Comm_free(&node);
}

World::~World() {
  if (active_) MPI_Finalize();
}

void World::barrier() const {
  if (active_) MPI_Barrier(MPI_COMM_WORLD);
}

void World::abort(int code) const {
  if (active_) MPI_Abort(MPI_COMM_WORLD, code);
}

std::unique_ptr<Scheduler> World::scheduler(std::vector<size_t> todo, LocalScheduler::Done done) const {
  if (size_ == 1) return Workers::scheduler(std::move(todo), std::move(done));
  if (rank_ == 0) return std::make_unique<Rank0>(size_, std::move(todo), std::move(done));
  return std::make_unique<Worker>();
}

#else  // built without MPI: always one rank

World::World(int&, char**&) {}
World::~World() = default;
void World::barrier() const {}
void World::abort(int) const {}
std::unique_ptr<Scheduler> World::scheduler(std::vector<size_t> todo, LocalScheduler::Done done) const {
  return Workers::scheduler(std::move(todo), std::move(done));
}

#endif

std::string device_spec(const World& w, const std::string& given) {
  if (!given.empty() || w.size() == 1 || std::getenv("TTT_DEVICE")) return given;
  const auto all = list_devices();
  std::vector<const Device*> pick;
  for (const auto& d : all)
    if (d.type == DeviceType::GPU) pick.push_back(&d);
  if (pick.empty())
    for (const auto& d : all) pick.push_back(&d);
  if (pick.empty()) return given;  // select_device reports that there is none
  return pick[size_t(w.local_rank()) % pick.size()]->spec();
}

}  // namespace ttt::mpi
