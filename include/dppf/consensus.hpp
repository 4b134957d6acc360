#pragma once
// Consensus rules: what a group of workers does every tau local steps. DPPF's pull_push and the
// baselines local_sgd, elastic (EASGD), leader (LSGD), grawa, diloco and data_parallel, with the
// concept and the shared machinery (consensus/rule.hpp) for writing your own; gradient_buckets
// overlaps data_parallel's gradient average with the backward pass.

#include "consensus/rule.hpp"
#include "consensus/pull_push.hpp"
#include "consensus/local_sgd.hpp"
#include "consensus/elastic.hpp"
#include "consensus/leader.hpp"
#include "consensus/grawa.hpp"
#include "consensus/diloco.hpp"
#include "consensus/data_parallel.hpp"
#include "consensus/gradient_buckets.hpp"
