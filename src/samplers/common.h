#pragma once
// Private helpers shared by the sampler implementations.

#include "core/json_util.h"

#include <manifold_diffusion/samplers/sampler.h>

#include <nlohmann/json.hpp>

#include <cmath>

namespace manifold_diffusion {
namespace detail {

// Fields every timestep-based options struct has: num_steps, spacing, steps_offset, timesteps.
template <typename O>
void check_grid_options(const O& o, const char* what) {
  MD_CHECK_VALUE(o.num_steps() >= 1 || !o.timesteps().empty(), what, ": num_steps must be >= 1, got ", o.num_steps());
  MD_CHECK_VALUE(o.steps_offset() >= 0, what, ": steps_offset must be non-negative, got ", o.steps_offset());
}

template <typename O>
void write_grid_options(nlohmann::json& j, const O& o) {
  j["num_steps"] = o.num_steps();
  j["spacing"] = to_string(o.spacing());
  j["steps_offset"] = o.steps_offset();
  j["timesteps"] = o.timesteps();
}

template <typename O>
void read_grid_options(JsonReader& r, O& o) {
  r.read<int64_t>("num_steps", [&](int64_t v) { o.num_steps(v); });
  r.read_enum<TimestepSpacing>("spacing", [&](TimestepSpacing v) { o.spacing(v); });
  r.read<int64_t>("steps_offset", [&](int64_t v) { o.steps_offset(v); });
  r.read<std::vector<int64_t>>("timesteps", [&](const std::vector<int64_t>& v) { o.timesteps(v); });
}

// Steps of a run: the explicit timesteps when given, else num_steps.
template <typename O>
int64_t grid_steps(const O& o) {
  return o.timesteps().empty() ? o.num_steps() : static_cast<int64_t>(o.timesteps().size());
}

// Fills a VP sampler's grid with its timesteps.
template <typename O>
void init_vp_grid(const O& o, const NoiseSchedule& schedule, SamplerState& state) {
  const auto ts = inference_timesteps(schedule, o.num_steps(), o.spacing(), o.steps_offset(), o.timesteps());
  state.grid.assign(ts.begin(), ts.end());
  state.num_steps = static_cast<int64_t>(ts.size());
}

// The current step of a VP sampler: timesteps and noise levels; the last step goes to alpha_bar = 1.
struct VPStep {
  double t = 0;
  double t_next = -1;
  double ab = 0;
  double ab_next = 1;
  bool last = false;
};

inline VPStep vp_step(const NoiseSchedule& schedule, const SamplerState& state) {
  VPStep s;
  const auto k = static_cast<size_t>(state.step);
  s.t = state.grid[k];
  s.ab = schedule.alpha_bar_at(s.t);
  s.last = k + 1 >= state.grid.size();
  if (!s.last) {
    s.t_next = state.grid[k + 1];
    s.ab_next = schedule.alpha_bar_at(s.t_next);
  }
  return s;
}

// log(alpha / sigma) of a VP noise level.
inline double half_log_snr(double ab) {
  return 0.5 * (std::log(ab) - std::log1p(-ab));
}

}  // namespace detail
}  // namespace manifold_diffusion
