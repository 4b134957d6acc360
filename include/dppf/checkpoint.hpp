#pragma once
// Checkpoints: a safetensors reader and writer (checkpoint/safetensors.hpp) and the save/load of
// optimizer and consensus state, buffers and whole trainers on top of it
// (checkpoint/trainer_checkpoint.hpp).

#include "checkpoint/safetensors.hpp"
#include "checkpoint/trainer_checkpoint.hpp"
