#pragma once
// Where a Gloo process finds its group, read the way PyTorch's env:// does: from flags, else from
// the environment. The one parser of these settings for the examples and the cluster tests.
//
//   rank        --rank R          RANK
//   world size  --world-size N    WORLD_SIZE
//   store       --store SPEC      DPPF_GLOO_STORE       redis:HOST:PORT or file:DIR
//   prefix      --prefix P        DPPF_GLOO_PREFIX      one per run (default "dppf")
//   timeout     --gloo-timeout MS DPPF_GLOO_TIMEOUT_MS  every operation (default 30000)
//   address     --gloo-addr A     DPPF_GLOO_ADDR        the address this process listens on
//   interface   --gloo-iface I    DPPF_GLOO_IFACE       when no address is given
//
// Anything missing or malformed raises std::invalid_argument naming the flag and variable.

#include <dppf/communicators/gloo.hpp>

#include <chrono>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>

#include "cli.hpp"

namespace example_gloo {

struct launch {
  int rank = 0;
  int size = 1;
  dppf::gloo_store store;
  dppf::gloo_options options;
};

/// "redis:HOST:PORT" or "file:DIR" into a store with `prefix`; `source` names where it came from.
inline dppf::gloo_store parse_store(const std::string& spec, const std::string& prefix, const std::string& source) {
  dppf::gloo_store s{.file_dir = {}, .redis_host = {}, .redis_port = 6379, .prefix = prefix};
  const auto bad = [&] {
    return std::invalid_argument(source + ": expected redis:HOST:PORT or file:DIR, got '" + spec + "'");
  };
  if (spec.rfind("file:", 0) == 0) {
    s.file_dir = spec.substr(5);
    if (s.file_dir.empty()) throw bad();
  } else if (spec.rfind("redis:", 0) == 0) {
    const auto colon = spec.rfind(':');
    if (colon <= 6) throw bad();
    s.redis_host = spec.substr(6, colon - 6);
    s.redis_port = example_cli::parse<int>(source + " (port)", spec.substr(colon + 1));
    if (s.redis_port < 1 || s.redis_port > 65535) throw bad();
  } else {
    throw bad();
  }
  return s;
}

/// The settings: `flags` maps a flag (as in the table above, e.g. "--rank") to the value given on
/// the command line; a flag not given falls back to its environment variable.
inline launch from_flags_and_environment(const std::map<std::string, std::string>& flags) {
  const auto get = [&](const char* flag, const char* env) -> std::pair<std::string, std::string> {
    if (const auto it = flags.find(flag); it != flags.end()) return {it->second, flag};
    if (const char* v = std::getenv(env)) return {v, env};
    return {{}, std::string(flag) + " or " + env};
  };
  const auto required = [&](const char* flag, const char* env) {
    auto [value, source] = get(flag, env);
    if (value.empty()) throw std::invalid_argument("--comm gloo: set " + source);
    return std::pair{value, source};
  };
  launch l;
  const auto [rank, rank_src] = required("--rank", "RANK");
  const auto [size, size_src] = required("--world-size", "WORLD_SIZE");
  l.rank = example_cli::parse<int>(rank_src, rank);
  l.size = example_cli::parse<int>(size_src, size);
  if (l.size < 1) throw std::invalid_argument(size_src + ": must be >= 1, got " + size);
  if (l.rank < 0 || l.rank >= l.size)
    throw std::invalid_argument(rank_src + ": must be in [0, " + std::to_string(l.size) + "), got " + rank);
  const auto [prefix, prefix_src] = get("--prefix", "DPPF_GLOO_PREFIX");
  const auto [store, store_src] = required("--store", "DPPF_GLOO_STORE");
  l.store = parse_store(store, prefix.empty() ? "dppf" : prefix, store_src);
  if (const auto [ms, ms_src] = get("--gloo-timeout", "DPPF_GLOO_TIMEOUT_MS"); !ms.empty()) {
    l.options.timeout = std::chrono::milliseconds(example_cli::parse<long>(ms_src, ms));
    if (l.options.timeout.count() <= 0) throw std::invalid_argument(ms_src + ": must be > 0 ms, got " + ms);
  }
  l.options.address = get("--gloo-addr", "DPPF_GLOO_ADDR").first;
  l.options.iface = get("--gloo-iface", "DPPF_GLOO_IFACE").first;
  return l;
}

}  // namespace example_gloo
