# Sourced first by every cluster test, after it set src (the source tree) and S (its cluster id):
# exports DPPF_CLUSTER, names this tree's scripts/cluster.sh $C, and without root skips (exit 77,
# which CTest reports with the reason) or, where DPPF_REQUIRE_CLUSTER=1 (as .ci/run sets), fails.
export DPPF_CLUSTER=$S
C="$src/scripts/cluster.sh"
if [ "$(id -u)" != 0 ]; then
  echo "SKIP: cluster tests need root (network namespaces)"
  [ "${DPPF_REQUIRE_CLUSTER:-0}" = 1 ] && exit 1
  exit 77
fi
