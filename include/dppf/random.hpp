#pragma once
// Counter-based random numbers: Philox4x32-10 (random/philox.hpp) and the fills keyed by
// (seed, stream, index) built on it (random/directions.hpp): the same numbers on every executor,
// thread count and device.

#include "random/philox.hpp"
#include "random/directions.hpp"
