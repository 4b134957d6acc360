// The doctest main of the MPI tests, run on every rank by mpiexec. Every rank runs the same test
// cases in the same order (so their collectives match); each output line is prefixed with the
// rank, ranks other than 0 report failures only, and the process fails when any rank failed.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <dppf/communicators/mpi.hpp>

#include <cstdlib>
#include <iostream>
#include <streambuf>
#include <string>

// Under AddressSanitizer: Open MPI's libraries have no frame pointers, so leak reports need the
// slow unwinder to reach a frame in libmpi that tests/sanitizers/lsan.supp can name.
extern "C" const char* __asan_default_options() { return "fast_unwind_on_malloc=0"; }

namespace {

// Prefixes every line written through it with "[rank r] " and forwards it to `out` whole.
class rank_prefix_buf : public std::streambuf {
 public:
  rank_prefix_buf(std::ostream& out, int rank) : out_(out), prefix_("[rank " + std::to_string(rank) + "] ") {}
  ~rank_prefix_buf() override { flush_line(); }

 protected:
  int_type overflow(int_type c) override {
    if (traits_type::eq_int_type(c, traits_type::eof())) return traits_type::not_eof(c);
    line_ += traits_type::to_char_type(c);
    if (c == '\n') flush_line();
    return c;
  }
  int sync() override {
    flush_line();
    return 0;
  }

 private:
  void flush_line() {
    if (line_.empty()) return;
    out_ << prefix_ << line_ << std::flush;
    line_.clear();
  }
  std::ostream& out_;
  std::string prefix_;
  std::string line_;
};

}  // namespace

int main(int argc, char** argv) {
  // Keep Open MPI's plugins loaded until exit, so sanitizer reports can name them.
  ::setenv("OMPI_MCA_mca_base_component_disable_dlclose", "1", 0);
  dppf::mpi_environment env(argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);

  int failed = 0;
  {
    rank_prefix_buf buf(std::cout, rank);
    std::ostream out(&buf);
    doctest::Context context(argc, argv);
    context.setCout(&out);
    context.setOption("no-colors", true);  // mpiexec gives ranks a terminal, but the output ends up in logs
    if (rank != 0) context.setOption("minimal", true);
    failed = context.run() != 0 ? 1 : 0;
    out.flush();
    if (context.shouldExit()) return failed;  // --help, --list-test-cases, ...: the same on every rank
  }
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0 && any_failed) std::cout << "[rank 0] some rank failed its tests\n" << std::flush;
  return any_failed;
}
