#pragma once
/// \file
/// Learning-rate schedules: linear warm-up followed by constant, linear or cosine decay.
///
/// Example:
/// \code
///   auto lr = mdiff::LRSchedule(mdiff::LRScheduleOptions(10000).warmup_steps(500).min_factor(0.1));
///   double f = lr.factor(2000);   // multiply the base learning rate by this at step 2000
/// \endcode

#include <manifold_diffusion/core/enum.h>

#include <torch/arg.h>

#include <cstdint>

namespace manifold_diffusion {

/// Shape of the learning-rate decay after warm-up.
enum class LRDecay {
  Constant,  ///< the base rate after warm-up.
  Linear,    ///< linear from the base rate to min_factor * base at total_steps.
  Cosine,    ///< half a cosine from the base rate to min_factor * base at total_steps.
};

template <>
struct EnumTraits<LRDecay> {
  static constexpr const char* type_name = "LRDecay";
  static constexpr EnumEntry<LRDecay> entries[] = {
      {LRDecay::Constant, "constant"}, {LRDecay::Linear, "linear"}, {LRDecay::Cosine, "cosine"}};
};

/// Options of LRSchedule. `total_steps` is the length of the run in optimiser steps.
///
/// Example:
/// \code
///   mdiff::LRScheduleOptions(20000).warmup_steps(1000).decay(mdiff::LRDecay::Cosine).min_factor(0.0)
/// \endcode
struct LRScheduleOptions {
  /* implicit */ LRScheduleOptions(int64_t total_steps = 1) : total_steps_(total_steps) {}
  TORCH_ARG(int64_t, total_steps);
  /// Steps of linear warm-up from ~0 to the base rate (0: none).
  TORCH_ARG(int64_t, warmup_steps) = 0;
  TORCH_ARG(LRDecay, decay) = LRDecay::Cosine;
  /// The factor reached at total_steps (cosine and linear decay), in [0, 1].
  TORCH_ARG(double, min_factor) = 0.0;

 public:
  /// Throws c10::ValueError naming the bad option.
  void validate() const;
};

/// A stateless map from the optimiser step to a learning-rate factor; the step is the whole state,
/// so resuming at step k continues the schedule exactly.
///
/// Example:
/// \code
///   mdiff::LRSchedule s(mdiff::LRScheduleOptions(100).warmup_steps(10));
///   s.factor(0);    // 0.1: step 0 of 10 warm-up steps trains at 1/10 of the rate
///   s.factor(10);   // 1.0
///   s.factor(100);  // 0.0 (cosine to min_factor)
/// \endcode
class LRSchedule {
 public:
  explicit LRSchedule(LRScheduleOptions options = {});
  /// Factor for the update made at `step` (0-based).
  double factor(int64_t step) const;
  const LRScheduleOptions& options() const { return options_; }

 private:
  LRScheduleOptions options_;
};

}  // namespace manifold_diffusion
