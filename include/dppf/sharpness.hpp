#pragma once
// Sharpness estimators over user oracles (loss, loss_and_grad, optional hvp), on any executor:
// Mean Valley / Inverse Mean Valley, Hessian top eigenvalue and trace, SAM and average-case
// sharpness, loss-landscape slices. See docs/sharpness.md.

#include "random.hpp"
#include "sharpness/common.hpp"
#include "sharpness/mean_valley.hpp"
#include "sharpness/hessian_top_eigenvalue.hpp"
#include "sharpness/hessian_trace.hpp"
#include "sharpness/sam.hpp"
#include "sharpness/average_sharpness.hpp"
#include "sharpness/landscape.hpp"
