# Sourced by scripts/test.sh and scripts/demo.sh: makes sure the Debian packages dppf's build,
# tests, sanitizer runs and examples need are installed. As root it installs the missing ones
# (apt-get update, then apt-get install); otherwise it prints the command and stops. Nothing is
# done when everything is present, so running it again is fast.
#
# DPPF_SKIP_DEPS=1 skips the check (e.g. a non-Debian machine with everything installed).

dppf_packages=(
  cmake ninja-build g++ make             # the build (CMake 3.25 in Debian 12)
  doctest-dev libbenchmark-dev            # tests, benchmarks
  libopenmpi-dev openmpi-bin              # dppf::mpi_communicator and its multi-process tests
  libopenblas-dev zlib1g-dev              # examples (BLAS, reading .gz data)
  dataset-fashion-mnist                   # the real Fashion-MNIST for the examples
  clang libclang-rt-14-dev libomp-14-dev  # tsan preset (clang + LLVM OpenMP/Archer), fuzzing
  python3 python3-numpy                   # the independent checkpoint reader test
  libgloo-dev libhiredis-dev              # dppf::gloo_communicator (Gloo, its Redis store)
  redis-server iproute2                   # the store and the emulated cluster of the network tests
  libtorch-dev python3-torch              # examples/libtorch and the PyTorch cross-checks
)

dppf_ensure_packages() {
  if [[ "${DPPF_SKIP_DEPS:-0}" == 1 ]]; then return 0; fi
  if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "dppf: not a Debian system; make sure these (or equivalents) are installed: ${dppf_packages[*]}" >&2
    return 0
  fi
  local missing=() p
  for p in "${dppf_packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
  if ((${#missing[@]} == 0)); then return 0; fi
  if [[ $(id -u) -eq 0 ]]; then
    echo "dppf: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
  else
    echo "dppf: missing Debian packages: ${missing[*]}" >&2
    echo "dppf: install them with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    echo "dppf: (or set DPPF_SKIP_DEPS=1 to try anyway)" >&2
    exit 1
  fi
}
