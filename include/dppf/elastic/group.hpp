#pragma once
// dppf::elastic_group: workers that keep training when one is lost and let new ones in, over Gloo
// and an elastic_store. The protocol (docs/elastic.md has the full statement):
//
// * Membership comes in numbered generations. Generation g is the key gen/<g>/commit, created
//   once (the store's create is a compare-and-set), holding its members' ids; each generation is
//   a fresh gloo_communicator among exactly those members (context under gen/<g>/ctx). Ranks are
//   the members' positions in id order. Ids are claimed once per process (ids/<n>).
// * Losing a worker: a collective raises (a dead, hung or cut-off peer, after the timeout). Each
//   survivor writes gen/<g+1>/join/<id> and waits: once every member of g joined, or after
//   join_window with at least the quorum (min_workers, by default a strict majority of the largest
//   generation seen), one of them creates gen/<g+1>/commit with those who joined; a member not in
//   it is excluded. Fewer than the quorum after quorum_wait: communication_error on each of them
//   (a partitioned minority stops; at most one group can create g+1, so there is no split brain).
// * A sync is committed or discarded everywhere (run_committed): its collectives run tentatively;
//   then a barrier; then rank 0 creates gen/<g>/outcome/<seq> = "commit" and an all-reduce tells
//   everyone. A rank that fails after its collectives creates the same key = "abort" and follows
//   whatever the key says; one that failed in its collectives cannot see "commit" (rank 0 passes
//   the barrier only after every rank finished them). Discarded: every survivor undoes it and runs
//   it again in the next generation. Committed: every survivor keeps it (and regroups before its
//   next sync).
// * Adding a worker: a process that finds a group running registers pending/<id>. At a committed
//   sync rank 0 sees it and creates generation g+1 = members + newcomers, marking the newcomers
//   fresh; the elastic trainer then sends them the parameters' mean and state. A process once
//   excluded (e.g. stopped, then continued) finds a generation without it, has no say in any
//   later one, and registers again as new.
// * A store restarted empty (within the timeout, or between two store accesses): rank 0 finds its
//   generation's record gone at the next committed sync and writes it back with every id claimed
//   so far; newcomers register again and give up an id a member holds.
// * Not survived: the loss of the store (unreachable beyond the timeout), a store that empties
//   during a regroup, and a failure before a group's first generation formed.

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../communicators/gloo.hpp"
#include "../error.hpp"
#include "store.hpp"

namespace dppf {

struct elastic_group_options {
  /// Timeout of every collective and of connecting a generation; address / iface to listen on.
  gloo_options gloo{};
  /// Smallest group that may continue; 0: a strict majority of the largest generation seen.
  int min_workers = 0;
  /// How long survivors wait for the other members before going on without them (0: twice the
  /// timeout: a member that noticed the failure only by its timeout is still let in).
  std::chrono::milliseconds join_window{0};
  /// How long a survivor waits for a quorum before it stops (0: join_window + the timeout).
  std::chrono::milliseconds quorum_wait{0};
  /// How long a founder waits for the group to form, and a newcomer to be let in.
  std::chrono::milliseconds admit_timeout{std::chrono::seconds(120)};
  /// Regroups within one operation before it gives up.
  int max_regroups = 16;
  /// Called with one line at every membership change (e.g. to print it).
  std::function<void(const std::string&)> on_change;

  void validate() const {
    detail::require_option(gloo.timeout.count() > 0, "elastic_group_options", "gloo.timeout (ms)", gloo.timeout.count(), "must be > 0");
    detail::require_option(min_workers >= 0, "elastic_group_options", "min_workers", min_workers, "must be >= 0");
    detail::require_option(join_window.count() >= 0, "elastic_group_options", "join_window (ms)", join_window.count(), "must be >= 0");
    detail::require_option(quorum_wait.count() >= 0, "elastic_group_options", "quorum_wait (ms)", quorum_wait.count(), "must be >= 0");
    detail::require_option(admit_timeout.count() > 0, "elastic_group_options", "admit_timeout (ms)", admit_timeout.count(), "must be > 0");
    detail::require_option(max_regroups >= 1, "elastic_group_options", "max_regroups", max_regroups, "must be >= 1");
  }
};

/// One committed generation, as stored in gen/<g>/commit.
struct elastic_generation {
  std::int64_t number = 0;
  std::vector<std::int64_t> members;  ///< ids, ascending: rank r is members[r]
  std::vector<std::int64_t> fresh;    ///< newcomers that must receive state first
  int largest = 0;                    ///< the largest generation so far (for the quorum)
  bool reseeded = false;              ///< written back by a member into a store restarted empty

  bool has(std::int64_t id) const { return std::find(members.begin(), members.end(), id) != members.end(); }
  bool is_fresh(std::int64_t id) const { return std::find(fresh.begin(), fresh.end(), id) != fresh.end(); }

  static std::string join(const std::vector<std::int64_t>& ids) {
    std::string s;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (i) s += ',';
      s += std::to_string(ids[i]);
    }
    return s;
  }
  std::string encode() const {
    return "largest=" + std::to_string(largest) + ";members=" + join(members) + ";fresh=" + join(fresh) +
           (reseeded ? ";reseeded=1" : "");
  }
  static elastic_generation decode(std::int64_t number, const std::string& s) {
    elastic_generation g;
    g.number = number;
    std::istringstream in(s);
    std::string field;
    while (std::getline(in, field, ';')) {
      const auto eq = field.find('=');
      if (eq == std::string::npos) continue;
      const std::string name = field.substr(0, eq);
      std::istringstream values(field.substr(eq + 1));
      std::string v;
      while (std::getline(values, v, ','))
        if (!v.empty()) {
          if (name == "largest") g.largest = std::stoi(v);
          if (name == "members") g.members.push_back(std::stoll(v));
          if (name == "fresh") g.fresh.push_back(std::stoll(v));
          if (name == "reseeded") g.reseeded = true;
        }
    }
    return g;
  }
  std::string describe() const {
    std::string s = "generation " + std::to_string(number) + " (" + std::to_string(members.size()) + " workers: ids " + join(members);
    if (!fresh.empty()) s += "; new " + join(fresh);
    return s + ")";
  }
};

class elastic_group {
 public:
  /// Claims this process's id in the store (cheap); join() then waits until it is a member.
  /// `founders`: how many workers form generation 0.
  elastic_group(const gloo_store& store, int founders, elastic_group_options options)
      : options_(std::move(options)), store_(store, checked(options_).gloo.timeout), founders_(founders) {
    detail::require_option(founders >= 1, "elastic_group", "founders", founders, "must be >= 1");
    detail::gloo_ignore_sigpipe();  // also for the store's sockets, before any communicator
    claim_id();
  }
  elastic_group(const elastic_group&) = delete;
  elastic_group& operator=(const elastic_group&) = delete;

  /// Fixed once join() returned; a newcomer can give up an id a member holds while it waits.
  std::int64_t id() const noexcept { return id_; }
  const elastic_generation& generation() const noexcept { return gen_; }
  int rank() const noexcept { return rank_; }
  int size() const noexcept { return static_cast<int>(gen_.members.size()); }
  const elastic_group_options& options() const noexcept { return options_; }
  /// This process was left out of a generation (or lost its state); rejoin() lets it in again.
  bool excluded() const noexcept { return excluded_; }
  /// This process holds training state (false for a newcomer until it received it).
  bool has_state() const noexcept { return has_state_; }
  /// The current generation has newcomers that still need state.
  bool transfer_pending() const noexcept { return transfer_pending_; }
  /// The rank that sends state to newcomers: the first member that is not new.
  int seed_rank() const {
    for (std::size_t r = 0; r < gen_.members.size(); ++r)
      if (!gen_.is_fresh(gen_.members[r])) return static_cast<int>(r);
    return 0;
  }
  int holders() const { return size() - static_cast<int>(gen_.fresh.size()); }
  std::int64_t regroups() const noexcept { return regroups_; }
  /// The members of the generation in which the last committed sync ran.
  const std::vector<std::int64_t>& committed_members() const noexcept { return committed_members_; }

  /// The current generation's communicator.
  gloo_communicator& comm() {
    if (!comm_) throw communication_error("dppf::elastic_group: worker " + std::to_string(id_) + " is in no generation");
    return *comm_;
  }

  /// Blocks until this process is a member: a founder of generation 0, or a newcomer let in at a
  /// sync of the running group (then has_state() is false until the trainer sent it state).
  void join() {
    const auto deadline = std::chrono::steady_clock::now() + options_.admit_timeout;
    if (!store_.get(commit_key(0))) {
      store_.create(join_key(0) + std::to_string(id_), "");
      for (int polls = 1;; ++polls) {
        if (auto rec = store_.get(commit_key(0))) {
          const auto g = elastic_generation::decode(0, *rec);
          // (a re-seeded record may hold this id for another process: this one never saw it formed)
          if (g.has(id_) && !g.reseeded) {
            has_state_ = true;
            try {
              adopt(g);
            } catch (const communication_error& e) {
              // a founder slow to connect (a loaded machine): the founders that are there go on
              failed(std::string("connecting ") + g.describe() + ": " + e.what());
              regroup(e.what());
            }
            return;
          }
          break;  // the group formed without this process: join as new
        }
        if (polls % 20 == 0 && newest_generation() > 0) break;  // a running group whose store restarted empty (200 ms)
        auto joined = ids_under(join_key(0));
        if (static_cast<int>(joined.size()) >= founders_) {
          joined.resize(static_cast<std::size_t>(founders_));
          store_.create(commit_key(0), elastic_generation{0, joined, {}, founders_}.encode());
          continue;
        }
        if (std::chrono::steady_clock::now() > deadline)
          throw timeout_error("dppf::elastic_group: only " + std::to_string(joined.size()) + " of " + std::to_string(founders_) +
                              " founders joined in " + store_.describe() + " within " +
                              std::to_string(options_.admit_timeout.count()) + " ms");
        pause();
      }
    }
    wait_for_admission(deadline);
  }

  /// After exclusion: register as new and wait to be let in (has_state() false until state came).
  void rejoin() {
    leave_generation();
    excluded_ = false;
    has_state_ = false;
    wait_for_admission(std::chrono::steady_clock::now() + options_.admit_timeout);
  }

  /// The newcomers of this generation received their state.
  void transfer_done() {
    transfer_pending_ = false;
    has_state_ = true;
  }

  /// Runs `attempt` (the collectives of one sync, applied tentatively) so that it is committed on
  /// every survivor or discarded on every one (`undo` puts back what attempt changed); a discarded
  /// attempt runs again in the next generation. Throws communication_error when the quorum is
  /// lost or this process was excluded (then excluded() is true).
  /// `admit`: newcomers may be let in after it (not at a final average, after which no sync
  /// would send them state).
  template <class Attempt, class Undo>
  void run_committed(Attempt&& attempt, Undo&& undo, bool admit = true) {
    for (int tries = 0;; ++tries) {
      if (broken_) regroup(broken_reason_);
      bool tentative = false;
      std::int64_t next_generation = -1;
      try {
        attempt();
        tentative = true;
        comm().barrier();
        double next = 0.0;
        if (rank_ == 0) {
          const std::string key = outcome_key();
          if (!store_.create(key, "commit") && store_.get(key) != std::optional<std::string>("commit"))
            throw communication_error("dppf::elastic_group: another member aborted sync " + std::to_string(seq_) + " of " +
                                      gen_.describe());
          if (seq_ > 0) store_.erase(outcome_key(seq_ - 1));
          if (!store_.get(commit_key(gen_.number)) || !store_.get("ids/" + std::to_string(id_))) reseed();
          if (admit) next = static_cast<double>(admit_pending());
        }
        next = comm().all_reduce(next, reduce_op::max);
        ++seq_;
        committed_members_ = gen_.members;
        if (recovering_) {
          recovering_ = false;
          note("first committed sync after the change, " + std::to_string(ms_since(failed_at_)) + " ms after the failure");
        }
        // Outside the try: the sync is committed, whatever moving to the next generation does.
        if (next > 0.0) next_generation = static_cast<std::int64_t>(next);
      } catch (const communication_error& e) {
        if (excluded_) throw;
        const std::string key = outcome_key();
        store_.create(key, "abort");
        const bool committed = tentative && store_.get(key) == std::optional<std::string>("commit");
        if (!committed) undo();
        failed(std::string(committed ? "committed sync, then " : "sync discarded: ") + e.what());
        if (committed) {  // kept; the regroup comes before the next sync
          committed_members_ = gen_.members;
          return;
        }
        if (tries + 1 >= options_.max_regroups)
          throw communication_error("dppf::elastic_group: worker " + std::to_string(id_) + " gave up after " +
                                    std::to_string(tries + 1) + " regroups: " + e.what());
        regroup(e.what());
        continue;
      }
      if (next_generation > 0) move_to(next_generation);
      return;
    }
  }

  /// After a failure outside run_committed (e.g. sending state to a newcomer): regroup now.
  void recover(const std::string& why) {
    failed(why);
    regroup(why);
  }

 private:
  static const elastic_group_options& checked(const elastic_group_options& o) {
    o.validate();
    return o;
  }
  static void pause() { std::this_thread::sleep_for(std::chrono::milliseconds(10)); }
  static long long ms_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t).count();
  }

  static std::string commit_key(std::int64_t g) { return "gen/" + std::to_string(g) + "/commit"; }
  static std::string join_key(std::int64_t g) { return "gen/" + std::to_string(g) + "/join/"; }
  std::string outcome_key(std::int64_t seq) const {
    return "gen/" + std::to_string(gen_.number) + "/outcome/" + std::to_string(seq);
  }
  std::string outcome_key() const { return outcome_key(seq_); }

  std::vector<std::int64_t> ids_under(std::string dir) {
    if (!dir.empty() && dir.back() == '/') dir.pop_back();
    std::vector<std::int64_t> ids;
    for (const auto& n : store_.list(dir))
      if (!n.empty() && n.find_first_not_of("0123456789") == std::string::npos) ids.push_back(std::stoll(n));
    std::sort(ids.begin(), ids.end());
    return ids;
  }

  std::optional<elastic_generation> read(std::int64_t g) {
    auto rec = store_.get(commit_key(g));
    if (!rec) return std::nullopt;
    return elastic_generation::decode(g, *rec);
  }

  int quorum() const {
    // newcomers count once they hold state (a refused one must not raise the quorum)
    const int counted = transfer_pending_ ? holders() : size();
    return options_.min_workers > 0 ? options_.min_workers : std::max(gen_.largest, counted) / 2 + 1;
  }

  void note(const std::string& line) {
    if (options_.on_change) options_.on_change("elastic worker " + std::to_string(id_) + ": " + line);
  }

  void failed(const std::string& why) {
    if (!recovering_) failed_at_ = std::chrono::steady_clock::now();
    recovering_ = true;
    broken_ = true;
    broken_reason_ = why;
    note("failure in " + gen_.describe() + ": " + why);
  }

  // The generation's context is given up deliberately: closing Gloo pairs whose peer is hung can
  // block (as in gloo_communicator), and a failed one already leaked its context.
  void leave_generation() {
    if (comm_) new gloo_communicator(std::move(*comm_));
    comm_.reset();
  }

  void adopt(const elastic_generation& g) {
    if (broken_)
      leave_generation();
    else
      comm_.reset();  // a planned change: every peer is there to close its side
    gen_ = g;
    seq_ = 0;
    broken_ = false;
    for (auto id : g.members) highest_id_ = std::max(highest_id_, id);
    rank_ = static_cast<int>(std::find(g.members.begin(), g.members.end(), id_) - g.members.begin());
    transfer_pending_ = !g.fresh.empty();
    if (g.is_fresh(id_)) has_state_ = false;
    note("now rank " + std::to_string(rank_) + " of " + g.describe());
    comm_.emplace(store_.generation_store("gen/" + std::to_string(g.number) + "/ctx"), rank_, size(), options_.gloo);
  }

  // Moves to generation `target` (created already): adopt it, or regroup when connecting fails.
  void move_to(std::int64_t target) {
    auto g = read(target);
    if (!g) throw communication_error("dppf::elastic_group: generation " + std::to_string(target) + " is missing from " + store_.describe());
    if (!g->has(id_)) {
      excluded_ = true;
      note("excluded: " + g->describe() + " goes on without this worker");
      throw communication_error("dppf::elastic_group: worker " + std::to_string(id_) + " was excluded from " + g->describe());
    }
    try {
      adopt(*g);
    } catch (const communication_error& e) {
      failed(std::string("connecting ") + g->describe() + ": " + e.what());
      regroup(e.what());
    }
  }

  // The next generation among the members of this one that are still there (see the top).
  void regroup(const std::string& why) {
    for (int attempt = 0; attempt < options_.max_regroups; ++attempt) {
      ++regroups_;
      if (!has_state_) {
        excluded_ = true;
        note("lost the group before receiving state; registering again as new");
        throw communication_error("dppf::elastic_group: worker " + std::to_string(id_) + " had no state when " + gen_.describe() +
                                  " failed (" + why + ")");
      }
      const std::int64_t target = gen_.number + 1;
      const auto start = std::chrono::steady_clock::now();
      const auto window = options_.join_window.count() > 0 ? options_.join_window : 2 * options_.gloo.timeout;
      const auto wait = options_.quorum_wait.count() > 0 ? options_.quorum_wait : window + options_.gloo.timeout;
      bool joined_target = false;
      for (;;) {
        if (auto g = read(target)) {
          if (!g->has(id_)) {
            excluded_ = true;
            note("excluded: " + g->describe() + " formed without this worker");
            throw communication_error("dppf::elastic_group: worker " + std::to_string(id_) + " was excluded from " + g->describe() +
                                      " (it failed with: " + why + ")");
          }
          try {
            adopt(*g);
            return;
          } catch (const communication_error& e) {
            failed(std::string("connecting ") + g->describe() + ": " + e.what());
            break;  // regroup again, from the generation just adopted
          }
        }
        if (!joined_target) {
          store_.create(join_key(target) + std::to_string(id_), "");
          joined_target = true;
        }
        std::vector<std::int64_t> joined;
        for (auto id : ids_under(join_key(target)))
          if (gen_.has(id)) joined.push_back(id);
        const auto waited = std::chrono::steady_clock::now() - start;
        const int q = quorum();
        if (joined.size() == gen_.members.size() || (waited >= window && static_cast<int>(joined.size()) >= q)) {
          store_.create(commit_key(target),
                        elastic_generation{target, joined, {}, std::max(gen_.largest, static_cast<int>(joined.size()))}.encode());
          continue;
        }
        if (waited >= wait) {
          excluded_ = false;
          throw communication_error("dppf::elastic_group: worker " + std::to_string(id_) + " stops: only " +
                                    std::to_string(joined.size()) + " of the " + std::to_string(size()) + " workers of " +
                                    gen_.describe() + " are left after " + std::to_string(ms_since(start)) +
                                    " ms, fewer than the quorum of " + std::to_string(q) +
                                    " (min_workers); a partitioned minority stops here. Cause: " + why);
        }
        pause();
      }
    }
    throw communication_error("dppf::elastic_group: worker " + std::to_string(id_) + " gave up after " +
                              std::to_string(options_.max_regroups) + " regroups: " + why);
  }

  // Rank 0 at a committed sync: newcomers waiting in pending/ make generation g+1 with them.
  std::int64_t admit_pending() {
    std::vector<std::int64_t> fresh;
    for (auto id : ids_under("pending"))
      if (!gen_.has(id)) fresh.push_back(id);
    for (auto id : fresh) highest_id_ = std::max(highest_id_, id);
    if (fresh.empty()) return 0;
    elastic_generation next{gen_.number + 1, gen_.members, fresh, 0};
    next.members.insert(next.members.end(), fresh.begin(), fresh.end());
    std::sort(next.members.begin(), next.members.end());
    next.largest = std::max(gen_.largest, size());  // the newcomers count once they hold state
    if (store_.create(commit_key(next.number), next.encode()))
      for (auto id : fresh) store_.erase("pending/" + std::to_string(id));
    return next.number;
  }

  // A newcomer: pending/<id>, then watch each new generation until one has this process.
  void wait_for_admission(std::chrono::steady_clock::time_point deadline) {
    std::int64_t watch = register_pending();
    note("registered as new; the group is at generation " + std::to_string(watch));
    for (int polls = 1;; ++polls) {
      if (auto g = read(watch + 1)) {
        ++watch;
        if (g->has(id_)) {
          try {
            adopt(*g);
            store_.erase(pending_key());  // in case it registered again just as it was let in
            return;
          } catch (const communication_error& e) {
            // the members regroup without this process (it has no state); ask again
            note(std::string("could not connect to ") + g->describe() + ": " + e.what() + "; registering again");
            broken_ = true;
            store_.create(pending_key(), "");
          }
        }
        continue;
      }
      // Committed generations are never erased: one gone means the store restarted empty; so does
      // a registration gone with no generation let this process in. Register again (every 200 ms
      // until the group re-seeded the store).
      if (polls % 20 == 0 && (!read(watch) || (!store_.get(pending_key()) && !read(watch + 1)))) {
        watch = register_pending();
        if (auto g = read(watch); g && g->is_fresh(id_)) --watch;  // let in by it: adopted above
      }
      if (std::chrono::steady_clock::now() > deadline)
        throw timeout_error("dppf::elastic_group: worker " + std::to_string(id_) + " was not let in within " +
                            std::to_string(options_.admit_timeout.count()) + " ms (" + store_.describe() + ")");
      pause();
    }
  }

  // Claims the lowest free id (ids/<n> = this process's token, a compare-and-set).
  void claim_id() {
    for (std::int64_t n = static_cast<std::int64_t>(store_.list("ids").size());; ++n)
      if (store_.create("ids/" + std::to_string(n), token_)) {
        id_ = n;
        highest_id_ = std::max(highest_id_, n);
        return;
      }
  }

  // The newest committed generation (-1: none yet).
  std::int64_t newest_generation() {
    std::int64_t n = -1;
    for (auto k : ids_under("gen")) n = std::max(n, k);
    while (n >= 0 && !read(n)) --n;
    while (read(n + 1)) ++n;
    return n;
  }

  // pending/<id>; returns the newest committed generation, found before registering (one created
  // after could be the one that lets this process in). When that generation already has this
  // id as an old member, the id was claimed again in a store restarted empty before the group
  // re-seeded it: give it up for a fresh one.
  std::int64_t register_pending() {
    const std::int64_t watch = newest_generation();
    const auto g = read(watch);
    const auto give_up = [&](const std::string& why) {
      store_.erase(pending_key());
      const auto taken = id_;
      claim_id();
      note("id " + std::to_string(taken) + " " + why + " (the store restarted empty): now id " + std::to_string(id_));
    };
    // Its id claimed again (by this process, or re-seeded or taken by another since the restart).
    if (!store_.create("ids/" + std::to_string(id_), token_) && store_.get("ids/" + std::to_string(id_)) != token_)
      give_up("was claimed by another process");
    while (g && g->has(id_) && !g->is_fresh(id_)) give_up("belongs to a member of " + g->describe());
    store_.create(pending_key(), "");
    return watch;
  }
  std::string pending_key() const { return "pending/" + std::to_string(id_); }

  // A token no other process holds (host, pid and a random number), the value of its ids/<n>.
  static std::string make_token() {
    char host[256] = {};
    ::gethostname(host, sizeof(host) - 1);
    return std::string(host) + ":" + std::to_string(::getpid()) + ":" + std::to_string(std::random_device{}());
  }

  // Rank 0 at a committed sync, when the store lost this generation's record (a redis-server
  // restarted empty): writes back what newcomers and regroups read, from its own copy (which every
  // member shares): the ids claimed so far first (so no newcomer claims a member's), then the
  // generation.
  void reseed() {
    for (std::int64_t n = 0; n <= highest_id_; ++n) store_.create("ids/" + std::to_string(n), "re-seeded");
    elastic_generation record = gen_;
    record.reseeded = true;
    if (!store_.create(commit_key(gen_.number), record.encode())) {
      const auto there = read(gen_.number);
      if (there && there->members != gen_.members)  // see docs/elastic.md, "A store restarted empty"
        note("the store holds another " + there->describe() + " than this group's: a group formed while the store was empty");
    }
    note("the store had lost " + gen_.describe() + " or the ids (restarted empty?): re-seeded ids 0.." +
         std::to_string(highest_id_) + " and the generation");
  }

  elastic_group_options options_;
  elastic_store store_;
  int founders_;
  std::string token_ = make_token();
  std::int64_t id_ = -1;
  std::int64_t highest_id_ = -1;  ///< the highest id this process has seen, for reseed()
  elastic_generation gen_;
  int rank_ = 0;
  std::optional<gloo_communicator> comm_;
  std::int64_t seq_ = 0;
  bool excluded_ = false;
  bool has_state_ = false;
  bool transfer_pending_ = false;
  bool broken_ = false;
  std::string broken_reason_;
  bool recovering_ = false;
  std::chrono::steady_clock::time_point failed_at_{};
  std::int64_t regroups_ = 0;
  std::vector<std::int64_t> committed_members_;
};

}  // namespace dppf
