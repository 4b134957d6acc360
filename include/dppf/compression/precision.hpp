#pragma once
// dppf::sync_precision: the number format a sync's mean travels in. `full` sends the parameters'
// own type (today's all-reduce, bit for bit); bf16 and fp16 send 16-bit words (compressed_mean.hpp).

namespace dppf {

enum class sync_precision {
  full,  ///< the parameters' own type (fp32 or fp64): the plain all-reduce
  bf16,  ///< bfloat16: 8 exponent bits as fp32, 8 significant bits; never overflows a finite fp32
  fp16,  ///< IEEE binary16: 11 significant bits, finite values saturate at +-65504
};

inline const char* to_string(sync_precision p) noexcept {
  switch (p) {
    case sync_precision::full: return "full";
    case sync_precision::bf16: return "bf16";
    case sync_precision::fp16: return "fp16";
  }
  return "?";
}

}  // namespace dppf
