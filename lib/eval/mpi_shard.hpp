// A corpus run across MPI ranks: documents are handed out dynamically by
// rank 0 (a rank that finishes asks for the next), each rank picks its device
// from its node-local rank, and every finished document's NLLs travel to rank
// 0, which alone writes the journal, the report, the JSON and the plot. MPI is
// initialised only when the process was started by mpirun and ttt-cl was built
// with it (TTT_WITH_MPI); otherwise World is a single rank. Target
// ttt_eval_mpi, outside libtttcl: only the programs that link it need MPI.
#pragma once

#include "lib/eval/evaluate.hpp"

#include <memory>
#include <string>

namespace ttt::mpi {

class World : public Workers {
 public:
  World(int& argc, char**& argv);
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const { return local_rank_; }
  // Rank 0 hands out todo to any rank that asks (itself included); the other
  // ranks ask rank 0 and send it their results. A single rank: a LocalScheduler.
  std::unique_ptr<Scheduler> scheduler(std::vector<size_t> todo, LocalScheduler::Done done) const override;
  void barrier() const override;
  // Ends every rank of the job (MPI_Abort) when there are several; one process alone: does nothing.
  void abort(int code) const;

 private:
  bool active_ = false;
  int rank_ = 0, size_ = 1, local_rank_ = 0;
};

// The device of this rank: `given` (or $TTT_DEVICE) when set, else device
// local_rank % count among the GPUs (all devices when there is no GPU).
std::string device_spec(const World& w, const std::string& given);

}  // namespace ttt::mpi
