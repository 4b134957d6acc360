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
//   naming the operation, the elapsed time and this rank. After a failure the group is unusable:
//   every later operation raises at once. The broken Gloo context is leaked deliberately, since
//   closing pairs whose peer is hung can block.
// * Before every buffer collective, one all-reduce of 7 integers makes all ranks agree that
//   sizes, element types and roots match and that no rank rejected its arguments, so bad input
//   raises invalid_argument_error on every rank (as dppf::mpi_communicator does).
// * All-reduce picks Gloo's algorithm by size (detail::gloo_algorithm): ring (bandwidth-optimal)
//   for large buffers, bcube (recursive halving/doubling: 2 log2 M steps instead of the ring's
//   4 (M - 1) dependent segment exchanges) for small ones. Both sum in the element type, each
//   element reduced on one rank and copied to the others, so every rank gets the same bits; the
//   choice depends only on N, the element size and M, which the ranks agreed on. avg scales the
//   sum by 1/M afterwards. Scalars (double) support sum, avg, min and max.
// * One thread at a time per communicator, and every rank calls the collectives in the same order.

#include <fcntl.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/common/error.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/rendezvous/redis_store.h>
#include <gloo/transport/tcp/device.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <ranges>
#include <string>
#include <type_traits>
#include <vector>

#include "../buffer.hpp"
#include "../communicator.hpp"
#include "../error.hpp"

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

struct gloo_state {
  std::shared_ptr<::gloo::Context> context;
  bool failed = false;
  std::string failure;
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

/// One rank of a group of processes connected by Gloo. Construction is collective: it returns
/// once all `size` ranks met in the store and connected (or raises after options.timeout).
class gloo_communicator {
 public:
  using memory_space = host_space;

  gloo_communicator(const gloo_store& store, int rank, int size, gloo_options options = {})
      : options_(std::move(options)), state_(std::make_shared<detail::gloo_state>()), rank_(rank), size_(size) {
    detail::require_option(size >= 1, "gloo_communicator", "size", size, "must be >= 1");
    detail::require_option(rank >= 0 && rank < size, "gloo_communicator", "rank", rank,
                           ("must be in [0, " + std::to_string(size) + ")").c_str());
    detail::require_option(options_.timeout.count() > 0, "gloo_options", "timeout (ms)", options_.timeout.count(), "must be > 0");
    detail::require(store.file_dir.empty() != store.redis_host.empty(),
                    "gloo_communicator: give exactly one of gloo_store::file_dir and gloo_store::redis_host");
    detail::require(!store.prefix.empty(), "gloo_communicator: gloo_store::prefix must not be empty");
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
    agree_on_arguments("broadcast", n, sizeof(T), root, error);
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

 private:
  [[noreturn]] void fail(const char* operation, std::chrono::steady_clock::time_point start, const std::string& what) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
    const std::string msg = std::string("dppf::gloo_communicator::") + operation + " failed on rank " + std::to_string(rank_) +
                            " of " + std::to_string(size_) + " after " + std::to_string(ms) + " ms (timeout " +
                            std::to_string(options_.timeout.count()) + " ms): " + what;
    state_->failed = true;
    state_->failure = msg;
    // Deliberately leaked: closing the pairs of a context whose peer is hung can block.
    if (state_->context) new std::shared_ptr<::gloo::Context>(std::move(state_->context));
    if (what.find("Timed out") != std::string::npos || what.find("imed out") != std::string::npos ||
        ms >= options_.timeout.count())
      throw timeout_error(msg);
    throw communication_error(msg);
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
    agree_on_arguments("all_reduce", n_in, sizeof(T), 0, error);
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

  // One all-reduce (max) of {n, -n, bytes, -bytes, root, -root, failed rank + 1}; on a mismatch
  // an all-gather names the ranks that differ. The same protocol as dppf::mpi_communicator.
  void agree_on_arguments(const char* operation, std::size_t n, std::size_t element_size, int root, const std::string& error) {
    if (!options_.check_arguments || size_ == 1) {
      if (!error.empty()) detail::throw_invalid(error);
      return;
    }
    const auto count = static_cast<std::int64_t>(n), bytes = static_cast<std::int64_t>(element_size);
    std::int64_t v[7] = {count, -count, bytes, -bytes, root, -root, error.empty() ? 0 : rank_ + std::int64_t{1}};
    run(operation, [&] { reduce_raw(v, v, 7, detail::gloo_max<std::int64_t>); });
    if (!error.empty()) detail::throw_invalid(error);
    if (v[6] != 0)
      throw communication_error(std::string("dppf::gloo_communicator::") + operation + ": rank " + std::to_string(v[6] - 1) +
                                " rejected its arguments, so rank " + std::to_string(rank_) + " stops too");
    if (v[0] == -v[1] && v[2] == -v[3] && v[4] == -v[5]) return;

    std::int64_t mine[3] = {count, bytes, root};
    std::vector<std::int64_t> all(3 * static_cast<std::size_t>(size_));
    run(operation, [&] {
      ::gloo::AllgatherOptions o(state_->context);
      o.setInput(mine, 3);
      o.setOutput(all.data(), all.size());
      o.setTimeout(options_.timeout);
      ::gloo::allgather(o);
    });
    const bool sizes_differ = v[0] != -v[1] || v[2] != -v[3];
    std::string msg = std::string("gloo_communicator::") + operation + ": " + (sizes_differ ? "buffer sizes" : "roots") +
                      " differ across ranks (";
    for (std::size_t r = 0; r < static_cast<std::size_t>(size_); ++r)
      msg += (r ? ", rank " : "rank ") + std::to_string(r) + " has " +
             (sizes_differ ? std::to_string(all[3 * r]) + " elements of " + std::to_string(all[3 * r + 1]) + " bytes"
                           : "root " + std::to_string(all[3 * r + 2]));
    detail::throw_invalid(msg + "; this is rank " + std::to_string(rank_) + ")");
  }

  gloo_options options_;
  std::shared_ptr<detail::gloo_state> state_;
  int rank_;
  int size_;
};

}  // namespace dppf
