#pragma once
// dppf::gloo_communicator: the communicator of processes on one or several machines over Gloo's
// TCP transport (host buffers). Needs Gloo and hiredis (link dppf::gloo), not MPI.
//
// * Rendezvous through a store: a directory every process sees (gloo's FileStore) or a
//   redis-server (RedisStore). Every key lives under a prefix, one per run, so several groups
//   can share a store. Each process first claims its rank atomically (a file created with
//   O_EXCL, or Redis SETNX): a second process claiming the same rank raises instead of Gloo's
//   stores silently overwriting the first one's address.
// * Every operation has a timeout (gloo_options::timeout): a dead, hung or unreachable peer makes
//   it raise dppf::timeout_error (or communication_error when the connection failed outright)
//   naming the operation, the elapsed time and this rank. After a failure the context is
//   unusable: every later operation on it raises at once (start_all_reduce has a context of its
//   own, below). The broken Gloo context is leaked deliberately, since closing pairs whose peer is
//   hung can block.
// * Before every buffer collective, one all-to-all of 11 integers (detail/agreement.hpp, the
//   encoding dppf::mpi_communicator uses; one message latency) makes all ranks agree that they call the same
//   collective with the same sizes, element types, reduce_op and root and that no rank rejected
//   its arguments, so bad input raises invalid_argument_error on every rank.
// * All-reduce picks Gloo's algorithm by size (detail::gloo_algorithm): ring (bandwidth-optimal)
//   for large buffers, bcube (recursive halving/doubling: 2 log2 M steps instead of the ring's
//   4 (M - 1) dependent segment exchanges) for small ones. Both sum in the element type, each
//   element reduced on one rank and copied to the others, so every rank gets the same bits; the
//   choice depends only on N, the element size and M, which the ranks agreed on. avg scales the
//   sum by 1/M afterwards. Scalars (double) support sum, avg, min and max.
// * start_all_reduce (the async_communicator concept), and start_all_to_all / start_all_gather
//   (async_exchange_communicator), run on a communication thread that owns a
//   second Gloo context, made from the same store under the prefix "<prefix>/async": blocking
//   collectives on the main context and asynchronous ones never share a context, so they never
//   interleave on one. The thread starts at the first start_all_reduce and connects its context
//   first (every rank makes that first start, so it is collective like any other; bounded by the
//   timeout; the store must still be reachable then): a communicator that never starts one costs
//   no thread, sockets or second rendezvous. The thread runs the started all-reduces one at a
//   time in the order they were started (every rank starts them in the same order), each one the
//   blocking all_reduce of that context: the same argument agreement (on the thread, so a start
//   never blocks on the network and a late rank's start stalls nobody else's), the same algorithm
//   by size, the same bits. The reduction proceeds while the caller computes; test() / wait() only
//   look at the result. Errors and timeouts are the thread's operation's, raised at test() / wait()
//   as the blocking ones are (on every rank alike), and wait() is bounded by the Gloo timeouts of
//   the operations ahead of it, as a blocking call is. A failure of one context leaves the other
//   usable (each raises at once after its own failure), but once either failed, both are leaked
//   when the communicator goes away: the peer at fault may be the other context's too.
// * One thread at a time per communicator, and every rank calls the collectives in the same order.

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/alltoall.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/common/error.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/rendezvous/redis_store.h>
#include <gloo/transport/tcp/device.h>
#include <gloo/transport/unbound_buffer.h>
#include <gloo/types.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "../async_communicator.hpp"
#include "../buffer.hpp"
#include "../communicator.hpp"
#include "../error.hpp"
#include "../exchange_communicator.hpp"
#include "detail/agreement.hpp"

namespace dppf {

/// Where the ranks meet: exactly one of file_dir (a directory every process can write) or
/// redis_host (a redis-server every process reaches).
struct gloo_store {
  std::string file_dir;
  std::string redis_host;
  int redis_port = 6379;
  /// Every key of this group lives under it: use one per run (e.g. a job id).
  std::string prefix = "dppf";
};

struct gloo_options {
  /// Longest wait of any operation, rendezvous included, before it raises timeout_error.
  std::chrono::milliseconds timeout{std::chrono::seconds(30)};
  /// The address (or host name) this process listens on; empty: use `iface`, else the host name.
  std::string address;
  /// The network interface to bind (e.g. eth0), when `address` is empty.
  std::string iface;
  /// Agree on the arguments of every buffer collective first (see the top of this header).
  bool check_arguments = true;
};

namespace detail {

// Gloo's element-wise reductions, picked out of their overload sets.
using gloo_reduce_fn = void (*)(void*, const void*, const void*, std::size_t);
template <class T>
inline constexpr gloo_reduce_fn gloo_sum = &::gloo::sum<T>;
template <class T>
inline constexpr gloo_reduce_fn gloo_min = &::gloo::min<T>;
template <class T>
inline constexpr gloo_reduce_fn gloo_max = &::gloo::max<T>;

// A Gloo context given up deliberately (closing the pairs of a context whose peer is hung can
// block): kept, never closed, until the process exits; reachable from here, so leak checkers do
// not report it.
inline void gloo_keep_until_exit(std::shared_ptr<::gloo::Context> context) {
  if (!context) return;
  static auto* const guard = new std::mutex;
  static auto* const kept = new std::vector<std::shared_ptr<::gloo::Context>>;
  std::lock_guard lock(*guard);
  kept->push_back(std::move(context));
}

struct gloo_state {
  std::shared_ptr<::gloo::Context> context;
  bool failed = false;
  std::string failure;
  // Set when any context of the group failed (a communicator has two: the main one and its
  // communication thread's), read when a state is destroyed: a context whose sibling failed is
  // leaked too, since its peer may be the hung one and closing its pairs can block.
  std::shared_ptr<std::atomic<bool>> group_failed = std::make_shared<std::atomic<bool>>(false);
  gloo_state() = default;
  gloo_state(const gloo_state&) = delete;
  gloo_state& operator=(const gloo_state&) = delete;
  ~gloo_state() {
    if (group_failed->load()) gloo_keep_until_exit(std::move(context));
  }
};

// The rank is claimed before anything else is written, so two processes given one rank never
// overwrite each other's address in the store. The claim is bounded by the timeout: a store that
// accepts connections but never answers (a hung redis-server) raises instead of blocking forever.
inline void gloo_claim_rank(const gloo_store& s, int rank, const std::string& me, std::chrono::milliseconds timeout) {
  const std::string key = s.prefix + "/claim/" + std::to_string(rank);
  const std::string where = s.file_dir.empty() ? "redis " + s.redis_host + ":" + std::to_string(s.redis_port)
                                               : "directory " + s.file_dir;
  if (!s.file_dir.empty()) {
    std::string file = key;
    for (char& c : file)
      if (c == '/') c = '.';
    const std::string path = s.file_dir + "/" + file;
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) {
      if (errno == EEXIST)
        throw_invalid("gloo_communicator: rank " + std::to_string(rank) + " is already claimed under prefix '" + s.prefix +
                      "' in " + where + " (" + path + "); two processes were given the same rank, or the prefix was used by an earlier run");
      throw communication_error("dppf::gloo_communicator: cannot create " + path + ": " + std::strerror(errno));
    }
    [[maybe_unused]] const auto written = ::write(fd, me.data(), me.size());
    ::close(fd);
    return;
  }
  const timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  redisContext* c = redisConnectWithTimeout(s.redis_host.c_str(), s.redis_port, tv);
  if (c != nullptr && !c->err) redisSetTimeout(c, tv);
  if (c == nullptr || c->err) {
    const std::string why = c ? c->errstr : "out of memory";
    if (c) redisFree(c);
    throw communication_error("dppf::gloo_communicator: cannot reach the store, " + where + ": " + why);
  }
  auto* reply = static_cast<redisReply*>(redisCommand(c, "SETNX %b %b", key.data(), key.size(), me.data(), me.size()));
  const bool ok = reply && reply->type == REDIS_REPLY_INTEGER;
  const bool claimed = ok && reply->integer == 1;
  const std::string why = reply ? std::string() : std::string(c->errstr);
  const bool timed_out = !reply && c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK);
  if (reply) freeReplyObject(reply);
  redisFree(c);
  if (timed_out)
    throw timeout_error("dppf::gloo_communicator: the store, " + where + ", did not answer the claim of rank " +
                        std::to_string(rank) + " within the timeout of " + std::to_string(timeout.count()) + " ms");
  if (!ok) throw communication_error("dppf::gloo_communicator: SETNX failed on " + where + ": " + why);
  if (!claimed)
    throw_invalid("gloo_communicator: rank " + std::to_string(rank) + " is already claimed under prefix '" + s.prefix + "' in " +
                  where + "; two processes were given the same rank, or the prefix was used by an earlier run");
}

// Gloo's stores wait their own 30 s in get() and wait(keys), whatever the context's timeout; this
// view of a store waits `timeout`, so connecting raises on time when a rank never comes.
class gloo_timed_store : public ::gloo::rendezvous::Store {
 public:
  gloo_timed_store(::gloo::rendezvous::Store& store, std::chrono::milliseconds timeout) : store_(store), timeout_(timeout) {}
  void set(const std::string& key, const std::vector<char>& data) override { store_.set(key, data); }
  std::vector<char> get(const std::string& key) override {
    store_.wait({key}, timeout_);
    return store_.get(key);
  }
  void wait(const std::vector<std::string>& keys) override { store_.wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override {
    store_.wait(keys, std::min(timeout, timeout_));
  }

 private:
  ::gloo::rendezvous::Store& store_;
  std::chrono::milliseconds timeout_;
};

// Bcube from M elements up to this many bytes, ring otherwise. Measured on 4 emulated hosts
// (bench/cluster, docs/performance.md "Across hosts"): below M elements most of the ring's 2M
// segments are empty and it sends fewer messages than bcube; from M elements to 256 KiB bcube
// took half the ring's time at 1 Gbit/s and the same at 100 Mbit/s; from 1 MiB the ring is as
// fast or faster.
inline constexpr std::size_t gloo_bcube_max_bytes = std::size_t{256} << 10;

inline ::gloo::AllreduceOptions::Algorithm gloo_algorithm(std::size_t n, std::size_t element_size, int size) {
  const bool small = n >= static_cast<std::size_t>(size) && n * element_size <= gloo_bcube_max_bytes;
  return small ? ::gloo::AllreduceOptions::Algorithm::BCUBE : ::gloo::AllreduceOptions::Algorithm::RING;
}

}  // namespace detail

namespace detail {
// Gloo writes to its sockets with writev, which raises SIGPIPE when the peer is gone (killed,
// or it gave up on us): the default action would kill this rank silently instead of letting it
// raise and name the operation. Ignored unless the program installed its own disposition.
// (Python ignores SIGPIPE at start-up, which is why PyTorch's gloo never meets this.)
inline void gloo_ignore_sigpipe() {
  struct sigaction current {};
  if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) ::signal(SIGPIPE, SIG_IGN);
}

// Which context a gloo_communicator is: the main one (with the communication thread for
// start_all_reduce, when size > 1) or that thread's own.
enum class gloo_context_role { main, asynchronous };
class gloo_async_engine;  // below: the communication thread and its context
}  // namespace detail

class gloo_all_reduce_handle;  // below

/// One rank of a group of processes connected by Gloo. Construction is collective: it returns
/// once all `size` ranks met in the store and connected (or raises after options.timeout).
class gloo_communicator {
 public:
  using memory_space = host_space;

  gloo_communicator(const gloo_store& store, int rank, int size, gloo_options options = {})
      : gloo_communicator(store, rank, size, std::move(options), detail::gloo_context_role::main) {}

  /// (detail) role asynchronous: one context and no communication thread; the thread's own.
  gloo_communicator(const gloo_store& store, int rank, int size, gloo_options options, detail::gloo_context_role role)
      : options_(std::move(options)), state_(std::make_shared<detail::gloo_state>()), rank_(rank), size_(size) {
    detail::require_option(size >= 1, "gloo_communicator", "size", size, "must be >= 1");
    detail::require_option(rank >= 0 && rank < size, "gloo_communicator", "rank", rank,
                           ("must be in [0, " + std::to_string(size) + ")").c_str());
    detail::require_option(options_.timeout.count() > 0, "gloo_options", "timeout (ms)", options_.timeout.count(), "must be > 0");
    detail::require(store.file_dir.empty() != store.redis_host.empty(),
                    "gloo_communicator: give exactly one of gloo_store::file_dir and gloo_store::redis_host");
    detail::require(!store.prefix.empty(), "gloo_communicator: gloo_store::prefix must not be empty");
    detail::gloo_ignore_sigpipe();
    detail::gloo_claim_rank(store, rank, std::to_string(::getpid()), options_.timeout);
    const auto start = std::chrono::steady_clock::now();
    try {
      ::gloo::transport::tcp::attr attr;
      if (!options_.address.empty())
        attr.hostname = options_.address;
      else if (!options_.iface.empty())
        attr.iface = options_.iface;
      auto device = ::gloo::transport::tcp::CreateDevice(attr);
      std::unique_ptr<::gloo::rendezvous::Store> base;
      if (!store.file_dir.empty())
        base = std::make_unique<::gloo::rendezvous::FileStore>(store.file_dir);
      else
        base = std::make_unique<::gloo::rendezvous::RedisStore>(store.redis_host, store.redis_port);
      ::gloo::rendezvous::PrefixStore prefixed(store.prefix, *base);
      detail::gloo_timed_store timed(prefixed, options_.timeout);
      auto context = std::make_shared<::gloo::rendezvous::Context>(rank, size);
      context->setTimeout(options_.timeout);
      context->connectFullMesh(timed, device);
      state_->context = std::move(context);
    } catch (const ::gloo::Exception& e) {
      fail("connect", start, e.what());
    } catch (const std::exception& e) {
      // gloo's stores raise plain exceptions (e.g. an unreachable redis-server)
      fail("connect", start, e.what());
    }
    if (role == detail::gloo_context_role::main && size_ > 1) start_async_engine(store);
  }

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  const gloo_options& options() const noexcept { return options_; }
  /// The Gloo context (e.g. for collectives dppf does not wrap).
  const std::shared_ptr<::gloo::Context>& native_handle() const noexcept { return state_->context; }

  /// out = sum (or average) over ranks of in. `in` and `out` may be the same buffer.
  template <host_buffer In, host_buffer Out>
  void all_reduce(const In& in, Out&& out, reduce_op op) {
    using T = std::remove_cv_t<buffer_element_t<Out>>;
    static_assert(!std::is_const_v<buffer_element_t<Out>>, "dppf::gloo_communicator::all_reduce: the output buffer is read-only");
    static_assert(std::is_same_v<T, std::remove_cv_t<buffer_element_t<const In&>>>, "input and output element types differ");
    reduce_buffer<T>(std::ranges::data(in), std::ranges::data(out), std::ranges::size(in), std::ranges::size(out), op);
  }

  /// inout = sum (or average) over ranks of inout.
  template <host_buffer B>
  void all_reduce(B&& inout, reduce_op op) {
    using T = std::remove_cv_t<buffer_element_t<B>>;
    static_assert(!std::is_const_v<buffer_element_t<B>>, "dppf::gloo_communicator::all_reduce: the buffer is read-only");
    T* p = std::ranges::data(inout);
    reduce_buffer<T>(p, p, std::ranges::size(inout), std::ranges::size(inout), op);
  }

  /// Sum, average, minimum or maximum of one double over ranks. Every rank must pass the same op.
  double all_reduce(double v, reduce_op op) {
    detail::gloo_reduce_fn f = nullptr;
    switch (op) {
      case reduce_op::sum:
      case reduce_op::avg: f = detail::gloo_sum<double>; break;
      case reduce_op::min: f = detail::gloo_min<double>; break;
      case reduce_op::max: f = detail::gloo_max<double>; break;
      default:
        detail::throw_invalid("gloo_communicator::all_reduce: invalid reduce_op " + std::to_string(static_cast<int>(op)) + " for a scalar");
    }
    run("all_reduce", [&] { reduce_raw(&v, &v, 1, f); });
    return op == reduce_op::avg ? v / size_ : v;
  }

  /// Every rank's v, in rank order.
  std::vector<double> all_gather(double v) {
    std::vector<double> all(static_cast<std::size_t>(size_));
    run("all_gather", [&] {
      ::gloo::AllgatherOptions o(state_->context);
      o.setInput(&v, 1);
      o.setOutput(all.data(), all.size());
      o.setTimeout(options_.timeout);
      ::gloo::allgather(o);
    });
    return all;
  }

  /// Copies root's buffer into every rank's buffer.
  template <host_buffer B>
  void broadcast(B&& b, int root) {
    using T = std::remove_cv_t<buffer_element_t<B>>;
    static_assert(!std::is_const_v<buffer_element_t<B>>, "dppf::gloo_communicator::broadcast: the buffer is read-only");
    const std::size_t n = std::ranges::size(b);
    std::string error;
    if (root < 0 || root >= size_)
      error = "gloo_communicator::broadcast: root " + std::to_string(root) + " is outside [0, " + std::to_string(size_) + ")";
    agree_on_arguments("broadcast", {.kind = detail::collective::broadcast, .n = n, .element_size = sizeof(T), .root = root}, error);
    if (n == 0 || size_ == 1) return;
    T* p = std::ranges::data(b);
    run("broadcast", [&] {
      ::gloo::BroadcastOptions o(state_->context);
      o.setOutput(p, n);
      o.setRoot(root);
      o.setTimeout(options_.timeout);
      ::gloo::broadcast(o);
    });
  }

  void barrier() {
    run("barrier", [&] {
      ::gloo::BarrierOptions o(state_->context);
      o.setTimeout(options_.timeout);
      ::gloo::barrier(o);
    });
  }

  /// Block j of out <- block rank() of rank j's in (exchange_communicator.hpp), within the
  /// timeout. Blocks of 16 KiB or more go pairwise: in step k = 1 .. M - 1 rank r sends to
  /// r + k and receives from r - k, so each host's link carries one flow each way at a time, as
  /// in a ring. Gloo's alltoall (smaller blocks: one latency instead of M - 1) posts every pair
  /// at once, and the M - 1 flows converging on a host lose to one another: 0.73 of a 100 Mbit/s
  /// link against 0.97 pairwise (4 emulated hosts, docs/performance.md).
  void all_to_all(std::span<const std::uint16_t> in, std::span<std::uint16_t> out) {
    exchange("all_to_all", true, in, out, [&] {
      const std::size_t block_bytes = in.size_bytes() / static_cast<std::size_t>(size_);
      if (block_bytes < pairwise_all_to_all_bytes) {
        ::gloo::AlltoallOptions o(state_->context);
        o.setInput(const_cast<std::uint16_t*>(in.data()), in.size());  // Gloo reads inputs only
        o.setOutput(out.data(), out.size());
        o.setTimeout(options_.timeout);
        ::gloo::alltoall(o);
        return;
      }
      const auto deadline = std::chrono::steady_clock::now() + options_.timeout;
      auto& context = *state_->context;
      auto sent = context.createUnboundBuffer(const_cast<std::uint16_t*>(in.data()), in.size_bytes());
      auto received = context.createUnboundBuffer(out.data(), out.size_bytes());
      const auto slot = ::gloo::Slot::build(::gloo::kAlltoallSlotPrefix, pairwise_all_to_all_tag);
      const auto own = static_cast<std::size_t>(rank_) * block_bytes / sizeof(std::uint16_t);
      std::copy_n(in.begin() + static_cast<std::ptrdiff_t>(own), block_bytes / sizeof(std::uint16_t),
                  out.begin() + static_cast<std::ptrdiff_t>(own));
      // What is left of the timeout, at least 1 ms (-1 ms would mean "the context's default").
      const auto left = [deadline] {
        return std::max(std::chrono::milliseconds(1), std::chrono::duration_cast<std::chrono::milliseconds>(
                                                          deadline - std::chrono::steady_clock::now()));
      };
      for (int k = 1; k < size_; ++k) {
        const int to = (rank_ + k) % size_, from = (rank_ + size_ - k) % size_;
        received->recv(from, slot, static_cast<std::size_t>(from) * block_bytes, block_bytes);
        sent->send(to, slot, static_cast<std::size_t>(to) * block_bytes, block_bytes);
        if (!received->waitRecv(left()) || !sent->waitSend(left()))
          throw ::gloo::IoException("the pairwise exchange with ranks " + std::to_string(from) + " and " +
                                    std::to_string(to) + " was aborted");
      }
    });
  }

  /// Block j of out <- rank j's in (gloo::allgather, bounded by the timeout).
  void all_gather(std::span<const std::uint16_t> in, std::span<std::uint16_t> out) {
    exchange("all_gather", false, in, out, [&] {
      ::gloo::AllgatherOptions o(state_->context);
      o.setInput(const_cast<std::uint16_t*>(in.data()), in.size());
      o.setOutput(out.data(), out.size());
      o.setTimeout(options_.timeout);
      ::gloo::allgather(o);
    });
  }

  /// Starts out = sum (or average) over ranks of in on the communication thread and returns at
  /// once (see the top of this header and async_communicator.hpp for the handle's contract).
  template <host_buffer In, host_buffer Out>
  gloo_all_reduce_handle start_all_reduce(const In& in, Out&& out, reduce_op op);

  /// Starts inout = sum (or average) over ranks of inout.
  template <host_buffer B>
  gloo_all_reduce_handle start_all_reduce(B&& inout, reduce_op op);

  /// Start all_to_all / all_gather on the communication thread (the same thread and order as
  /// start_all_reduce) and return at once, with the same handle.
  gloo_all_reduce_handle start_all_to_all(std::span<const std::uint16_t> in, std::span<std::uint16_t> out);
  gloo_all_reduce_handle start_all_gather(std::span<const std::uint16_t> in, std::span<std::uint16_t> out);

 private:
  // all_to_all's blocks of at least this many bytes go pairwise, on their own slot (Gloo's
  // collectives use tag 0).
  static constexpr std::size_t pairwise_all_to_all_bytes = std::size_t{16} << 10;
  static constexpr std::uint32_t pairwise_all_to_all_tag = 1;

  [[noreturn]] void fail(const char* operation, std::chrono::steady_clock::time_point start, const std::string& what) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
    const std::string msg = std::string("dppf::gloo_communicator::") + operation + " failed on rank " + std::to_string(rank_) +
                            " of " + std::to_string(size_) + " after " + std::to_string(ms) + " ms (timeout " +
                            std::to_string(options_.timeout.count()) + " ms): " + what;
    state_->failed = true;
    state_->failure = msg;
    state_->group_failed->store(true);
    // Deliberately leaked: closing the pairs of a context whose peer is hung can block.
    detail::gloo_keep_until_exit(std::move(state_->context));
    if (what.find("Timed out") != std::string::npos || what.find("imed out") != std::string::npos ||
        ms >= options_.timeout.count())
      throw timeout_error(msg);
    throw communication_error(msg);
  }

  // The exchange collectives' common part: this rank's own check, the argument agreement, then
  // the collective (a copy in a group of one).
  template <class F>
  void exchange(const char* operation, bool all_to_all, std::span<const std::uint16_t> in, std::span<std::uint16_t> out, F&& f) {
    const std::string who = std::string("gloo_communicator::") + operation;
    agree_on_arguments(operation,
                       {.kind = all_to_all ? detail::collective::all_to_all : detail::collective::buffer_all_gather,
                        .n = in.size(),
                        .element_size = sizeof(std::uint16_t)},
                       detail::exchange_problem(who.c_str(), all_to_all, in.size(), out.size(), size_, in.data(), out.data()));
    if (in.empty()) return;
    if (size_ == 1) {
      std::copy(in.begin(), in.end(), out.begin());
      return;
    }
    run(operation, f);
  }

  template <class F>
  void run(const char* operation, F&& f) {
    if (state_->failed)
      throw communication_error(std::string("dppf::gloo_communicator::") + operation + ": the group failed earlier (" +
                                state_->failure + ")");
    if (size_ == 1 && !state_->context) return;
    const auto start = std::chrono::steady_clock::now();
    try {
      f();
    } catch (const ::gloo::Exception& e) {
      fail(operation, start, e.what());
    }
  }

  template <class T>
  void reduce_raw(const T* in, T* out, std::size_t n, detail::gloo_reduce_fn f) {
    ::gloo::AllreduceOptions o(state_->context);
    if (in != out) o.setInput(const_cast<T*>(in), n);  // Gloo reads inputs only
    o.setOutput(out, n);
    o.setReduceFunction(f);
    o.setAlgorithm(detail::gloo_algorithm(n, sizeof(T), size_));
    o.setTimeout(options_.timeout);
    ::gloo::allreduce(o);
  }

  template <class T>
  void reduce_buffer(const T* in, T* out, std::size_t n_in, std::size_t n_out, reduce_op op) {
    std::string error;
    if (op != reduce_op::sum && op != reduce_op::avg) {
      error = std::string("gloo_communicator::all_reduce of a buffer supports sum and avg, not ") + to_string(op);
    } else if (n_in != n_out) {
      error = "gloo_communicator::all_reduce output has " + std::to_string(n_out) + " elements, expected " + std::to_string(n_in) +
              " (the input's size)";
    } else if (in != out && n_in != 0) {
      const auto a = reinterpret_cast<std::uintptr_t>(in), b = reinterpret_cast<std::uintptr_t>(out);
      const std::uintptr_t bytes = n_in * sizeof(T);
      if (a < b + bytes && b < a + bytes) error = "gloo_communicator::all_reduce: the input and output buffers overlap";
    }
    agree_on_arguments("all_reduce", {.kind = detail::collective::buffer_all_reduce, .n = n_in, .element_size = sizeof(T), .op = op},
                       error);
    if (n_in == 0) return;
    if (size_ == 1) {
      if (in != out) std::copy_n(in, n_in, out);
      return;
    }
    run("all_reduce", [&] { reduce_raw(in, out, n_in, detail::gloo_sum<T>); });
    if (op == reduce_op::avg) {
      const double inv = 1.0 / static_cast<double>(size_);
      for (std::size_t i = 0; i < n_in; ++i) out[i] = static_cast<T>(out[i] * inv);
    }
  }

  // One all-to-all of the arguments' encoding (detail/agreement.hpp): every rank sends its own
  // to every other and so learns every rank's, whether any rank rejected its arguments and
  // whether the rest agree, and all raise together. Gloo's all-to-all posts every send and
  // receive at once, so it costs one message latency where an all-reduce of the same 11
  // integers costs 2 log2 M dependent steps (bcube) (measured: the agreement was most of dppf's
  // gap to Gloo's bare ring below 2^20 floats, docs/performance.md "Across hosts"); its M - 1
  // messages per rank are cheap for the group sizes Gloo over TCP serves. A mismatch is named
  // from the same exchange, without a second one.
  void agree_on_arguments(const char* operation, detail::collective_args args, const std::string& error) {
    if (!options_.check_arguments || size_ == 1) {
      if (!error.empty()) detail::throw_invalid(error);
      return;
    }
    const std::string who = std::string("gloo_communicator::") + operation;
    args.rejected = !error.empty();
    const auto ranks = static_cast<std::size_t>(size_);
    std::vector<detail::agreement_vector> sent(ranks, detail::encode(args, rank_)), all(ranks);
    run(operation, [&] {
      ::gloo::AlltoallOptions o(state_->context);
      o.setInput(sent.front().data(), ranks * detail::agreement_words);
      o.setOutput(all.front().data(), ranks * detail::agreement_words);
      o.setTimeout(options_.timeout);
      ::gloo::alltoall(o);
    });
    std::vector<detail::collective_args> args_of(ranks);
    for (std::size_t r = 0; r < ranks; ++r) args_of[r] = detail::decode(all[r]);
    detail::raise_unless_agreed(who.c_str(), rank_, error, detail::agree(args_of), [&] { return args_of; });
  }

  friend class detail::gloo_async_engine;  // shares group_failed with the thread's communicator

  // The communication thread's engine, idle until the first start_all_reduce.
  void start_async_engine(const gloo_store& store);

  template <class T>
  gloo_all_reduce_handle start_reduce(const T* in, T* out, std::size_t n_in, std::size_t n_out, reduce_op op);
  // Runs `run` (a blocking collective) on the communication thread's communicator, or here with
  // size 1.
  gloo_all_reduce_handle start_on_thread(const char* operation, std::function<void(gloo_communicator&)> run);

  gloo_options options_;
  std::shared_ptr<detail::gloo_state> state_;
  // Shared by the copies of this communicator and by the handles of its started all-reduces;
  // null with size 1 and in the thread's own communicator.
  std::shared_ptr<detail::gloo_async_engine> async_;
  int rank_;
  int size_;
};

namespace detail {

// Runs f; an error comes back (not thrown) with its message naming the started operation and
// its type kept, so that test() / wait() raise what the blocking collective would have.
template <class F>
std::exception_ptr gloo_run_started(const char* operation, F&& f) {
  const auto named = [operation](const std::exception& e) {
    return std::string("dppf::gloo_communicator::") + operation + " (asynchronous): " + e.what();
  };
  try {
    f();
  } catch (const invalid_argument_error& e) {
    return std::make_exception_ptr(invalid_argument_error(named(e)));
  } catch (const timeout_error& e) {
    return std::make_exception_ptr(timeout_error(named(e)));
  } catch (const communication_error& e) {
    return std::make_exception_ptr(communication_error(named(e)));
  } catch (...) {
    return std::current_exception();
  }
  return nullptr;
}

// One started collective: the work the thread runs and, once done, its error (null: the result
// is in the output). done and error are guarded by the engine's mutex.
struct gloo_async_op {
  const char* operation = "start_all_reduce";
  std::function<void(gloo_communicator&)> run;
  bool done = false;
  std::exception_ptr error;
};

// The communication thread and the communicator of its own context. The thread starts with the
// first submitted all-reduce and connects that context first; then it takes the started
// all-reduces in the order they were started and runs each as that communicator's blocking
// all_reduce, so each is bounded by the Gloo timeouts of its operations (and after a failure of
// that context, every later one raises at once; after a failed connect, with its error). Nothing
// on the thread refers to the engine's owners. The engine lives as long as the communicator's
// copies and the handles, and a handle waits for its operation before it lets go: when the
// engine is destroyed its queue is empty and the idle thread joins at once. Its context is closed
// normally then, or leaked if any context of the group failed (see gloo_state).
class gloo_async_engine {
 public:
  gloo_async_engine(gloo_store store, int rank, int size, gloo_options options, std::shared_ptr<std::atomic<bool>> group_failed)
      : store_(std::move(store)), options_(std::move(options)), group_failed_(std::move(group_failed)), rank_(rank), size_(size) {}
  gloo_async_engine(const gloo_async_engine&) = delete;
  gloo_async_engine& operator=(const gloo_async_engine&) = delete;
  ~gloo_async_engine() {
    {
      std::lock_guard lock(mutex);
      stop_ = true;
    }
    ready_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  void submit(std::shared_ptr<gloo_async_op> op) {
    {
      std::lock_guard lock(mutex);
      // The thread first (it waits for this lock): if it cannot start, nothing is queued that a
      // later start would run into buffers whose handle is gone.
      if (!thread_.joinable()) thread_ = std::thread([this] { serve(); });
      queue_.push_back(std::move(op));
    }
    ready_.notify_one();
  }

  std::mutex mutex;                  // guards the queue, the stop flag and every op's done / error
  std::condition_variable finished;  // an op is done

 private:
  void serve() {
    // A failed connect fails every started collective with its error (named after each); it may
    // be a hung peer, so the main context is leaked too when it goes.
    std::exception_ptr connect_error;
    try {
      comm_.emplace(store_, rank_, size_, options_, gloo_context_role::asynchronous);
      comm_->state_->group_failed = group_failed_;
    } catch (...) {
      connect_error = std::current_exception();
    }
    if (connect_error) group_failed_->store(true);
    std::unique_lock lock(mutex);
    for (;;) {
      ready_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing left to run
      const std::shared_ptr<gloo_async_op> op = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      std::exception_ptr error;
      try {
        error = gloo_run_started(op->operation, [&] {
          if (connect_error) std::rethrow_exception(connect_error);
          op->run(*comm_);
        });
      } catch (...) {  // naming the error ran out of memory
        error = std::current_exception();
      }
      lock.lock();
      op->error = std::move(error);
      op->done = true;
      finished.notify_all();
    }
  }

  const gloo_store store_;  // prefix "<prefix>/async"
  const gloo_options options_;
  const std::shared_ptr<std::atomic<bool>> group_failed_;
  const int rank_, size_;
  std::optional<gloo_communicator> comm_;  // connected on the thread
  std::condition_variable ready_;          // something was queued, or stop
  std::deque<std::shared_ptr<gloo_async_op>> queue_;
  bool stop_ = false;
  std::thread thread_;  // started by the first submit
};

}  // namespace detail

/// The handle of gloo_communicator's started collectives (start_all_reduce, start_all_to_all,
/// start_all_gather; see async_communicator.hpp). The
/// communication thread makes the progress; test() and wait() only look at what it delivered.
/// The destructor waits (errors swallowed), so no buffer is written after the handle is gone.
class gloo_all_reduce_handle {
 public:
  gloo_all_reduce_handle(gloo_all_reduce_handle&& o) noexcept
      : engine_(std::move(o.engine_)), op_(std::move(o.op_)), error_(std::exchange(o.error_, nullptr)) {}
  gloo_all_reduce_handle& operator=(gloo_all_reduce_handle&& o) noexcept {
    if (this != &o) {
      wait_noexcept();
      engine_ = std::move(o.engine_);
      op_ = std::move(o.op_);
      error_ = std::exchange(o.error_, nullptr);
    }
    return *this;
  }
  ~gloo_all_reduce_handle() { wait_noexcept(); }

  /// True once the result is in the output; raises the all-reduce's error once it is known.
  bool test() {
    if (op_) {
      std::lock_guard lock(engine_->mutex);
      if (!op_->done) return false;
    }
    finish();
    return true;
  }

  /// Returns when the result is in the output, or raises its error.
  void wait() {
    if (op_) {
      std::unique_lock lock(engine_->mutex);
      engine_->finished.wait(lock, [&] { return op_->done; });
    }
    finish();
  }

 private:
  friend class gloo_communicator;
  gloo_all_reduce_handle(std::shared_ptr<detail::gloo_async_engine> engine, std::shared_ptr<detail::gloo_async_op> op,
                         std::exception_ptr error)
      : engine_(std::move(engine)), op_(std::move(op)), error_(std::move(error)) {}

  // Once done: nothing writes the op any more. The handle lets go of the engine first.
  void finish() {
    if (op_) {
      error_ = std::move(op_->error);
      op_.reset();
      engine_.reset();
    }
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }
  void wait_noexcept() noexcept {
    try {
      wait();
    } catch (...) {
    }
  }

  std::shared_ptr<detail::gloo_async_engine> engine_;
  std::shared_ptr<detail::gloo_async_op> op_;  // null once finished (or with size 1)
  std::exception_ptr error_;
};

inline void gloo_communicator::start_async_engine(const gloo_store& store) {
  gloo_store own = store;
  own.prefix += "/async";
  async_ = std::make_shared<detail::gloo_async_engine>(std::move(own), rank_, size_, options_, state_->group_failed);
}

template <host_buffer In, host_buffer Out>
gloo_all_reduce_handle gloo_communicator::start_all_reduce(const In& in, Out&& out, reduce_op op) {
  using T = std::remove_cv_t<buffer_element_t<Out>>;
  static_assert(!std::is_const_v<buffer_element_t<Out>>, "dppf::gloo_communicator::start_all_reduce: the output buffer is read-only");
  static_assert(std::is_same_v<T, std::remove_cv_t<buffer_element_t<const In&>>>, "input and output element types differ");
  return start_reduce<T>(std::ranges::data(in), std::ranges::data(out), std::ranges::size(in), std::ranges::size(out), op);
}

template <host_buffer B>
gloo_all_reduce_handle gloo_communicator::start_all_reduce(B&& inout, reduce_op op) {
  using T = std::remove_cv_t<buffer_element_t<B>>;
  static_assert(!std::is_const_v<buffer_element_t<B>>, "dppf::gloo_communicator::start_all_reduce: the buffer is read-only");
  T* p = std::ranges::data(inout);
  return start_reduce<T>(p, p, std::ranges::size(inout), std::ranges::size(inout), op);
}

// The thread runs exactly the blocking all_reduce (reduce_buffer) on its own context. With size 1
// there is no thread: the blocking one runs here (a copy, and the argument checks).
template <class T>
gloo_all_reduce_handle gloo_communicator::start_reduce(const T* in, T* out, std::size_t n_in, std::size_t n_out, reduce_op op) {
  return start_on_thread("start_all_reduce", [=](gloo_communicator& c) { c.reduce_buffer<T>(in, out, n_in, n_out, op); });
}

inline gloo_all_reduce_handle gloo_communicator::start_all_to_all(std::span<const std::uint16_t> in, std::span<std::uint16_t> out) {
  return start_on_thread("start_all_to_all", [=](gloo_communicator& c) { c.all_to_all(in, out); });
}

inline gloo_all_reduce_handle gloo_communicator::start_all_gather(std::span<const std::uint16_t> in, std::span<std::uint16_t> out) {
  return start_on_thread("start_all_gather", [=](gloo_communicator& c) { c.all_gather(in, out); });
}

inline gloo_all_reduce_handle gloo_communicator::start_on_thread(const char* operation, std::function<void(gloo_communicator&)> run) {
  if (!async_) return gloo_all_reduce_handle(nullptr, nullptr, detail::gloo_run_started(operation, [&] { run(*this); }));
  auto started = std::make_shared<detail::gloo_async_op>();
  started->operation = operation;
  started->run = std::move(run);
  async_->submit(started);
  return gloo_all_reduce_handle(async_, std::move(started), nullptr);
}

}  // namespace dppf
