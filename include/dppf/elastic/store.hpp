#pragma once
// dppf::elastic_store: the small key-value store an elastic group keeps its membership in: a
// directory every process sees (one machine, or a shared file system) or a redis-server. Keys are
// paths ("run/gen/3/commit"). The one write that decides anything is create(): it succeeds for
// exactly one caller (a hard link of a finished temporary file, which fails with EEXIST, or Redis
// SET NX), so a key, once created, never changes. Every call has the group's timeout (a
// redis-server that restarts within it is reconnected to); an unreachable store raises
// communication_error naming it. A store that comes back empty is re-seeded by the group.

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../communicators/gloo.hpp"
#include "../error.hpp"

namespace dppf {

class elastic_store {
 public:
  /// The same description as a Gloo group's store (gloo_store); its prefix roots every key.
  elastic_store(gloo_store where, std::chrono::milliseconds timeout) : where_(std::move(where)), timeout_(timeout) {
    detail::require(where_.file_dir.empty() != where_.redis_host.empty(),
                    "elastic_store: give exactly one of gloo_store::file_dir and gloo_store::redis_host");
    detail::require(!where_.prefix.empty(), "elastic_store: gloo_store::prefix must not be empty");
  }
  elastic_store(const elastic_store&) = delete;
  elastic_store& operator=(const elastic_store&) = delete;

  const gloo_store& where() const noexcept { return where_; }
  bool is_file() const noexcept { return !where_.file_dir.empty(); }
  std::string describe() const {
    return is_file() ? "directory " + where_.file_dir : "redis " + where_.redis_host + ":" + std::to_string(where_.redis_port);
  }

  /// Creates key with value; false when it existed already (someone else won).
  bool create(const std::string& key, const std::string& value) {
    if (is_file()) {
      const std::string path = file(key);
      make_parents(path);
      static std::atomic<unsigned> counter{0};
      const std::string tmp = path.substr(0, path.rfind('/') + 1) + ".tmp." + std::to_string(::getpid()) + "." +
                              std::to_string(counter++);
      {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out << value;
        out.flush();
        if (!out) throw communication_error("dppf::elastic_store: cannot write " + tmp);
      }
      const int rc = ::link(tmp.c_str(), path.c_str());
      const int err = errno;
      ::unlink(tmp.c_str());
      if (rc == 0) return true;
      if (err == EEXIST) return false;
      throw communication_error("dppf::elastic_store: cannot create " + path + ": " + std::strerror(err));
    }
    auto r = command("SET %b %b NX", key, &value);
    return r->type == REDIS_REPLY_STATUS;  // "OK"; nil when the key existed
  }

  std::optional<std::string> get(const std::string& key) {
    if (is_file()) {
      std::ifstream in(file(key), std::ios::binary);
      if (!in) return std::nullopt;
      std::ostringstream s;
      s << in.rdbuf();
      return s.str();
    }
    auto r = command("GET %b", key, nullptr);
    if (r->type != REDIS_REPLY_STRING) return std::nullopt;
    return std::string(r->str, r->len);
  }

  /// The names directly below `dir` (a key prefix without the trailing slash).
  std::vector<std::string> list(const std::string& dir) {
    std::vector<std::string> names;
    if (is_file()) {
      DIR* d = ::opendir(file(dir).c_str());
      if (!d) return names;
      while (const dirent* e = ::readdir(d))
        if (e->d_name[0] != '.') names.emplace_back(e->d_name);
      ::closedir(d);
      return names;
    }
    std::string pattern;
    for (char c : root() + dir) {
      if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') pattern += '\\';
      pattern += c;
    }
    pattern += "/*";
    auto r = command_raw("KEYS %b", pattern);
    const std::size_t skip = root().size() + dir.size() + 1;
    if (r->type == REDIS_REPLY_ARRAY)
      for (std::size_t i = 0; i < r->elements; ++i) {
        std::string k(r->element[i]->str, r->element[i]->len);
        if (k.size() <= skip) continue;
        k = k.substr(skip);
        const auto slash = k.find('/');
        names.push_back(slash == std::string::npos ? k : k.substr(0, slash));
      }
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    return names;
  }

  void erase(const std::string& key) {
    if (is_file()) {
      ::unlink(file(key).c_str());
      return;
    }
    (void)command("DEL %b", key, nullptr);
  }

  /// The Gloo store of one generation's context: its own sub-directory or key prefix.
  gloo_store generation_store(const std::string& key) const {
    gloo_store s = where_;
    if (is_file()) {
      s.file_dir = file(key);
      make_dirs(s.file_dir);
      s.prefix = "g";
    } else {
      s.prefix = root() + key;
    }
    return s;
  }

 private:
  struct reply_deleter {
    void operator()(redisReply* r) const { freeReplyObject(r); }
  };
  struct context_deleter {
    void operator()(redisContext* c) const { redisFree(c); }
  };
  using reply = std::unique_ptr<redisReply, reply_deleter>;

  std::string root() const { return where_.prefix + "/"; }
  std::string file(const std::string& key) const { return where_.file_dir + "/" + where_.prefix + "/" + key; }

  static void make_dirs(const std::string& dir) {
    for (std::size_t i = 1; i <= dir.size(); ++i)
      if (i == dir.size() || dir[i] == '/') {
        const std::string part = dir.substr(0, i);
        if (::mkdir(part.c_str(), 0755) != 0 && errno != EEXIST)
          throw communication_error("dppf::elastic_store: cannot create directory " + part + ": " + std::strerror(errno));
      }
  }
  static void make_parents(const std::string& path) { make_dirs(path.substr(0, path.rfind('/'))); }

  reply command(const char* format, const std::string& key, const std::string* value) {
    const std::string k = root() + key;
    return value ? run(format, k, value) : run(format, k, nullptr);
  }
  reply command_raw(const char* format, const std::string& arg) { return run(format, arg, nullptr); }

  // A broken connection (a redis-server restarting) or a server not ready yet (LOADING its data,
  // BUSY, ...) is retried until the timeout, each attempt given only the time left: then
  // communication_error. A store back within the timeout loses no worker.
  reply run(const char* format, const std::string& a, const std::string* b) {
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    std::string why;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0)
        throw communication_error("dppf::elastic_store: the store (" + describe() + ") is unreachable for " +
                                  std::to_string(timeout_.count()) + " ms: " + why);
      try {
        if (!redis_ || redis_->err) connect(left);
        set_timeout(left);
        void* r = b ? redisCommand(redis_.get(), format, a.data(), a.size(), b->data(), b->size())
                    : redisCommand(redis_.get(), format, a.data(), a.size());
        if (r) {
          reply out(static_cast<redisReply*>(r));
          if (out->type != REDIS_REPLY_ERROR) return out;
          const std::string answer(out->str, out->len);
          if (!not_ready(answer)) throw store_answer("dppf::elastic_store: " + describe() + " answered: " + answer);
          why = "it answered: " + answer;
        } else {
          why = redis_->errstr;
          redis_.reset();
        }
      } catch (const store_answer&) {
        throw;
      } catch (const communication_error& e) {
        why = e.what();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  // An error the store answered: a retry would get the same.
  struct store_answer : communication_error {
    using communication_error::communication_error;
  };
  // Answers of a server that will serve soon (loading its data, a script running, a failover).
  static bool not_ready(const std::string& answer) {
    for (const char* p : {"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN"})
      if (answer.rfind(p, 0) == 0) return true;
    return false;
  }
  static timeval to_timeval(std::chrono::milliseconds ms) {
    return timeval{static_cast<time_t>(ms.count() / 1000), static_cast<suseconds_t>((ms.count() % 1000) * 1000)};
  }
  void set_timeout(std::chrono::milliseconds left) { redisSetTimeout(redis_.get(), to_timeval(left)); }

  void connect(std::chrono::milliseconds left) {
    redis_.reset(redisConnectWithTimeout(where_.redis_host.c_str(), where_.redis_port, to_timeval(left)));
    if (!redis_ || redis_->err) {
      const std::string why = redis_ ? redis_->errstr : "out of memory";
      redis_.reset();
      throw communication_error("dppf::elastic_store: cannot reach the store (" + describe() + "): " + why);
    }
  }

  gloo_store where_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<redisContext, context_deleter> redis_;
};

}  // namespace dppf
