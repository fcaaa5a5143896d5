#pragma once

/// \file
/// Reading a diffusers `scheduler_config.json` into a schedule, a prediction type and a sampler.

#include <manifold_diffusion/models/denoiser.h>
#include <manifold_diffusion/samplers/sampler.h>

#include <memory>
#include <string>

namespace manifold_diffusion {

/// What a diffusers scheduler config says, in this library's terms.
struct DiffusersScheduler {
  std::string class_name;             ///< e.g. "DDIMScheduler".
  ScheduleOptions schedule;           ///< betas, T, zero-terminal-SNR rescaling.
  PredictionType prediction = PredictionType::Epsilon;  ///< from "prediction_type".
  std::unique_ptr<Sampler> sampler;   ///< the matching sampler for `num_steps` steps.
};

/// Parses a diffusers `scheduler_config.json` (DDPMScheduler, DDIMScheduler, EulerDiscreteScheduler,
/// EulerAncestralDiscreteScheduler, HeunDiscreteScheduler, DPMSolverMultistepScheduler,
/// UniPCMultistepScheduler) for a run of `num_steps` steps. Keys that change the numbers and that
/// this library does not implement (e.g. "thresholding": true, "timestep_spacing": "karras" on a
/// scheduler without Karras sigmas) are refused with a message naming them; cosmetic keys are ignored.
///
/// Example:
/// \code
///   std::string text = read_file("scheduler_config.json");
///   mdiff::DiffusersScheduler s = mdiff::from_diffusers_scheduler_config(text, 25);
///   mdiff::Denoiser den(model_fn, mdiff::NoiseSchedule(s.schedule), s.prediction);
///   at::Tensor x = s.sampler->sample(den, {4, 3, 32, 32}, /*seed=*/0);
/// \endcode
DiffusersScheduler from_diffusers_scheduler_config(const std::string& json, int64_t num_steps);

}  // namespace manifold_diffusion
