#pragma once
// Local optimizers with torch.optim's exact update semantics (sgd, adamw) and learning-rate
// schedules (constant_lr, step_lr, cosine_lr, warmup).

#include "optimizers/schedule.hpp"
#include "optimizers/sgd.hpp"
#include "optimizers/adamw.hpp"
