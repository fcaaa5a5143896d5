#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/samplers/sampler.h>

#include "samplers/linear_update.h"

#include <ATen/ATen.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <optional>

namespace manifold_diffusion {

std::vector<int64_t> inference_timesteps(const NoiseSchedule& schedule, int64_t num_steps, TimestepSpacing spacing,
                                         int64_t steps_offset, const std::vector<int64_t>& custom) {
  if (!custom.empty()) {
    schedule.check_timesteps(custom);
    return custom;
  }
  return schedule.timesteps(num_steps, spacing, steps_offset);
}

at::Tensor Sampler::sample(const Denoiser& denoiser, at::IntArrayRef shape, uint64_t seed, const SampleArgs& args,
                           int64_t first_index, at::TensorOptions options) const {
  MD_CHECK_VALUE(shape.size() >= 2, name(), ": shape must be [N, ...] with at least 2 dimensions, got ", shape);
  MD_CHECK_VALUE(shape[0] >= 1, name(), ": batch size must be positive, got ", shape[0]);
  const c10::Device device = options.has_device() ? options.device() : c10::Device(c10::kCPU);
  const c10::ScalarType dtype = options.has_dtype() ? c10::typeMetaToScalarType(options.dtype()) : c10::kFloat;
  auto gens = make_sample_generators(seed, first_index, shape[0], device);
  const at::Tensor x_T = randn_per_sample(shape, gens, dtype);
  return sample(denoiser, x_T, std::move(gens), args);
}

at::Tensor Sampler::sample(const Denoiser& denoiser, const at::Tensor& x_T, std::vector<at::Generator> generators,
                           const SampleArgs& args) const {
  torch::NoGradGuard no_grad;
  SamplerState state = start(denoiser, x_T, std::move(generators));
  while (!state.done()) {
    step(denoiser, state, args);
  }
  at::Tensor out = result(state);
  if (args.check_finite) {
    // One reduction and one host sync per run: a diverging model or hook is an error, not NaN images.
    const at::Tensor bad = at::logical_not(at::isfinite(out)).flatten(1).any(1);
    const int64_t count = bad.sum().item<int64_t>();
    if (count > 0) {
      const int64_t first = bad.nonzero().select(1, 0)[0].item<int64_t>();
      MD_CHECK_VALUE(false, name(), ": the run produced non-finite values in ", count, " of ", out.size(0),
                     " samples (the first is sample ", first, ") after ", state.step,
                     " steps: the denoiser's output or a hook is not finite (SampleArgs::check_finite = false "
                     "returns such samples)");
    }
  }
  return out;
}

SamplerState Sampler::start(const Denoiser& denoiser, const at::Tensor& x_T, std::vector<at::Generator> generators) const {
  CheckContext check_context(name());
  check_floating(x_T, "x_T");
  check_finite(x_T, "x_T");
  MD_CHECK_VALUE(x_T.dim() >= 2, name(), ": x_T must be [N, ...] with at least 2 dimensions, got ", shape_string(x_T));
  MD_CHECK_VALUE(x_T.size(0) >= 1, name(), ": x_T must hold at least one sample, got shape ", shape_string(x_T));
  MD_CHECK_VALUE(static_cast<int64_t>(generators.size()) == x_T.size(0), name(), ": expected one generator per sample (",
                 x_T.size(0), "), got ", generators.size());
  for (const auto& g : generators) {
    MD_CHECK_VALUE(g.defined() && g.device().type() == x_T.device().type(), name(),
                   ": every generator must be defined and on x_T's device type (", x_T.device(), ")");
  }
  SamplerState state;
  state.x = x_T.clone();
  state.generators = std::move(generators);
  init(denoiser, state);
  MD_INTERNAL_ASSERT(state.num_steps >= 1);
  return state;
}

void Sampler::step(const Denoiser& denoiser, SamplerState& state, const SampleArgs& args) const {
  MD_CHECK_VALUE(!state.done(), name(), ": the run is finished (", state.step, " of ", state.num_steps, " steps)");
  const int64_t k = state.step;
  advance(denoiser, state, args);
  ++state.step;
  if (args.callbacks.empty()) {
    return;
  }
  StepInfo info;
  info.step = k;
  info.num_steps = state.num_steps;
  info.t = k < static_cast<int64_t>(state.grid.size()) ? state.grid[k] : -1;
  info.t_next = k + 1 < static_cast<int64_t>(state.grid.size()) ? state.grid[k + 1] : -1;
  info.x = result(state);
  info.x0_hat = state.x0_hat;
  for (const auto& cb : args.callbacks) {
    if (cb && cb(info)) {
      state.stopped = true;
    }
  }
}

at::Tensor Sampler::result(const SamplerState& state) const {
  return to_vp(state);
}

at::Tensor Sampler::to_vp(const SamplerState& state) const {
  return state.x;
}

StepContext Sampler::context(const Denoiser& denoiser, const SamplerState& state, const SampleArgs& args, double t,
                             double t_next, double alpha_bar, double alpha_bar_next) const {
  StepContext ctx;
  ctx.step = state.step;
  ctx.num_steps = state.num_steps;
  ctx.t = t;
  ctx.t_next = t_next;
  ctx.alpha_bar = alpha_bar;
  ctx.alpha_bar_next = alpha_bar_next;
  ctx.x_t = to_vp(state);
  ctx.denoise = denoise_fn(denoiser, args, t, alpha_bar);
  return ctx;
}

std::function<DenoiserOutput(const at::Tensor&)> Sampler::denoise_fn(const Denoiser& denoiser, const SampleArgs& args,
                                                                    double t, double alpha_bar) const {
  const Denoiser* den = &denoiser;
  const at::Tensor cond = args.cond;
  const at::Tensor uncond = args.uncond;
  const double scale = args.guidance_scale;
  const double rescale = args.guidance_rescale;
  return [den, t, alpha_bar, cond, uncond, scale, rescale](const at::Tensor& x) {
    torch::AutoGradMode grad(true);
    const auto opts = at::TensorOptions().dtype(at::kDouble);
    return den->predict_at(x, at::full({x.size(0)}, t, opts), at::full({x.size(0)}, alpha_bar, opts), cond, uncond,
                           scale, rescale);
  };
}

DenoiserOutput Sampler::eval(const Denoiser& denoiser, const at::Tensor& x_vp, double t, double alpha_bar,
                             const SampleArgs& args, StepContext& ctx) const {
  DenoiserOutput out;
  if (args.hooks.empty()) {
    const auto opts = at::TensorOptions().dtype(at::kDouble);
    const int64_t n = x_vp.size(0);
    out = denoiser.predict_at(x_vp, at::full({n}, t, opts), at::full({n}, alpha_bar, opts), args.cond, args.uncond,
                              args.guidance_scale, args.guidance_rescale);
    ctx.x0_hat = out.x0;
    return out;
  }
  bool jacobian = false;
  for (const auto& hook : args.hooks) {
    jacobian = jacobian || hook->needs_jacobian();
  }
  // The step's first evaluation keeps its graph when a hook differentiates through the denoiser.
  jacobian = jacobian && !ctx.x_t_leaf.defined();
  {
    // x0 through ops::predict_x0: the fused kernel, or its differentiable reference when the
    // graph is kept for a Jacobian hook.
    std::optional<torch::AutoGradMode> grad;
    at::Tensor x_in = x_vp;
    if (jacobian) {
      grad.emplace(true);
      ctx.x_t_leaf = x_vp.detach().requires_grad_(true);
      x_in = ctx.x_t_leaf;
    }
    const RawPrediction raw = denoiser.predict_raw(x_in, t, alpha_bar, args.cond, args.uncond, args.guidance_scale,
                                                   args.guidance_rescale);
    out.x0 = detail::raw_to_x0(raw, x_in);
    out.var_values = raw.var_values;
  }
  // Hooks run with autograd on, so a gradient correction can differentiate through ctx.denoise;
  // tensors that do not require grad record nothing, so plain hooks pay nothing for it.
  torch::AutoGradMode grad(true);
  for (const auto& hook : args.hooks) {
    out.x0 = hook->on_x0(ctx, out.x0);
  }
  if (jacobian) {
    ctx.x0_graph = out.x0;
  }
  out.x0 = out.x0.detach();
  out.eps = (x_vp - std::sqrt(alpha_bar) * out.x0) / std::sqrt(std::max(1 - alpha_bar, 1e-40));
  if (out.var_values.defined()) {
    out.var_values = out.var_values.detach();
  }
  ctx.x0_hat = out.x0;
  return out;
}

at::Tensor Sampler::propose(const SampleArgs& args, const StepContext& ctx, at::Tensor x_next_vp) const {
  torch::AutoGradMode grad(true);
  for (const auto& hook : args.hooks) {
    x_next_vp = hook->on_proposal(ctx, std::move(x_next_vp));
  }
  return x_next_vp.detach();
}

at::Tensor Sampler::noise_like(SamplerState& state) {
  return randn_per_sample(state.x.sizes(), state.generators, state.x.scalar_type());
}

namespace callbacks {

StepCallback progress(int64_t every) {
  MD_CHECK_VALUE(every >= 1, "progress: every must be >= 1, got ", every);
  auto start = std::make_shared<std::chrono::steady_clock::time_point>(std::chrono::steady_clock::now());
  return [every, start](const StepInfo& info) {
    const int64_t done = info.step + 1;
    if (done % every == 0 || done == info.num_steps) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - *start).count();
      fmt::print(stderr, "\rstep {}/{} ({:.1f} steps/s){}", done, info.num_steps, s > 0 ? done / s : 0.0,
                 done == info.num_steps ? "\n" : "");
    }
    return false;
  };
}

StepCallback record_trajectory(std::shared_ptr<std::vector<at::Tensor>> xs,
                               std::shared_ptr<std::vector<at::Tensor>> x0s) {
  MD_CHECK_VALUE(xs != nullptr, "record_trajectory: the output vector is null");
  return [xs, x0s](const StepInfo& info) {
    xs->push_back(info.x.clone());
    if (x0s && info.x0_hat.defined()) {
      x0s->push_back(info.x0_hat.clone());
    }
    return false;
  };
}

StepCallback stop_after(int64_t steps) {
  MD_CHECK_VALUE(steps >= 1, "stop_after: steps must be >= 1, got ", steps);
  return [steps](const StepInfo& info) { return info.step + 1 >= steps; };
}

}  // namespace callbacks
}  // namespace manifold_diffusion
