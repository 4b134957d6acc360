#pragma once
// Compressed sync: the mean of the parameters sent as bf16 or fp16 differences from a shared
// reference, with error feedback (trainer_options::sync_precision). The formats and their
// rounding, the elementwise functors, and the collective algorithm over an exchange_communicator.

#include "exchange_communicator.hpp"
#include "compression/precision.hpp"
#include "compression/half_formats.hpp"
#include "compression/quantize.hpp"
#include "compression/compressed_mean.hpp"
