#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/samplers/ddim.h>
#include <manifold_diffusion/samplers/ddpm.h>
#include <manifold_diffusion/samplers/diffusers_config.h>
#include <manifold_diffusion/samplers/dpm_solver.h>
#include <manifold_diffusion/samplers/euler.h>
#include <manifold_diffusion/samplers/unipc.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <vector>

namespace manifold_diffusion {
namespace {

constexpr const char* kWhat = "from_diffusers_scheduler_config";

template <typename T>
T get_or(const nlohmann::json& j, const char* key, T fallback) {
  if (!j.contains(key) || j.at(key).is_null()) {
    return fallback;
  }
  try {
    return j.at(key).get<T>();
  } catch (const nlohmann::json::exception& e) {
    MD_CHECK_VALUE(false, kWhat, ": bad value for '", key, "': ", j.at(key).dump());
  }
  return fallback;
}

TimestepSpacing spacing_of(const nlohmann::json& j, TimestepSpacing fallback) {
  const std::string s = get_or<std::string>(j, "timestep_spacing", "");
  if (s.empty()) {
    return fallback;
  }
  const auto v = try_enum_from_string<TimestepSpacing>(s);
  MD_CHECK_VALUE(v.has_value(), kWhat, ": unsupported timestep_spacing '", s, "' (leading, trailing or linspace)");
  return *v;
}

// Python's json module writes float('inf') and nan as the bare tokens Infinity, -Infinity and NaN
// (diffusers saves DPMSolverMultistepScheduler's lambda_min_clipped = -inf so); JSON has none:
// they become null outside strings.
std::string replace_non_finite_tokens(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size()) {
        out += text[++i];
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
      out += c;
      continue;
    }
    bool replaced = false;
    for (const char* token : {"-Infinity", "Infinity", "NaN"}) {
      const size_t n = std::char_traits<char>::length(token);
      if (text.compare(i, n, token) == 0) {
        out += "null";
        i += n - 1;
        replaced = true;
        break;
      }
    }
    if (!replaced) out += c;
  }
  return out;
}

// diffusers' multistep schedulers (DPMSolverMultistep, UniPCMultistep) take "linspace" timesteps as
// round(linspace(0, T - 1, N + 1)) reversed without the final 0 (999, 832, 666, ... for N = 6), unlike
// DDIM's linspace(0, T - 1, N) (999, 799, ...): given to the sampler as custom timesteps.
std::vector<int64_t> multistep_linspace(const nlohmann::json& j, int64_t num_steps) {
  const int64_t T = get_or<int64_t>(j, "num_train_timesteps", 1000);
  MD_CHECK_VALUE(T >= 2 && num_steps >= 1, kWhat, ": num_train_timesteps ", T, " and num_steps ", num_steps, " must be >= 2 and >= 1");
  std::vector<int64_t> t;
  for (int64_t i = num_steps; i >= 1; --i) {
    t.push_back(static_cast<int64_t>(std::nearbyint(static_cast<double>(i) * static_cast<double>(T - 1) / num_steps)));
  }
  return t;
}

bool linspace_spacing(const nlohmann::json& j) {
  return spacing_of(j, TimestepSpacing::Linspace) == TimestepSpacing::Linspace;
}

}  // namespace

DiffusersScheduler from_diffusers_scheduler_config(const std::string& text, int64_t num_steps) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(replace_non_finite_tokens(text));
  } catch (const nlohmann::json::exception& e) {
    MD_CHECK_VALUE(false, kWhat, ": invalid JSON: ", e.what());
  }
  MD_CHECK_VALUE(j.is_object(), kWhat, ": expected a JSON object, got ", j.type_name());
  DiffusersScheduler out;
  out.class_name = get_or<std::string>(j, "_class_name", "");
  out.schedule = ScheduleOptions::from_diffusers_config(replace_non_finite_tokens(text));
  const std::string pred = get_or<std::string>(j, "prediction_type", "epsilon");
  const auto p = try_enum_from_string<PredictionType>(pred);
  MD_CHECK_VALUE(p.has_value() && *p != PredictionType::EDM, kWhat, ": unsupported prediction_type '", pred,
                 "' (epsilon, sample or v_prediction)");
  out.prediction = *p;
  MD_CHECK_VALUE(!get_or<bool>(j, "thresholding", false), kWhat,
                 ": 'thresholding': true is a sampling-time correction here (a SamplingHook), not a scheduler option");
  const int64_t offset = get_or<int64_t>(j, "steps_offset", 0);
  const std::string& c = out.class_name;
  if (c == "DDPMScheduler") {
    const std::string var = get_or<std::string>(j, "variance_type", "fixed_small");
    DDPMVariance v = DDPMVariance::FixedSmall;
    if (var == "fixed_large") v = DDPMVariance::FixedLarge;
    else if (var == "learned_range") v = DDPMVariance::LearnedRange;
    else MD_CHECK_VALUE(var == "fixed_small", kWhat, ": unsupported variance_type '", var, "'");
    out.sampler = std::make_unique<DDPMSampler>(
        DDPMOptions(num_steps).variance(v).spacing(spacing_of(j, TimestepSpacing::Leading)).steps_offset(offset));
  } else if (c == "DDIMScheduler") {
    out.sampler = std::make_unique<DDIMSampler>(
        DDIMOptions(num_steps).spacing(spacing_of(j, TimestepSpacing::Leading)).steps_offset(offset));
  } else if (c == "EulerDiscreteScheduler" || c == "EulerAncestralDiscreteScheduler" || c == "HeunDiscreteScheduler") {
    const auto o = SigmaSamplerOptions(num_steps)
                       .karras(get_or<bool>(j, "use_karras_sigmas", false))
                       .spacing(spacing_of(j, TimestepSpacing::Linspace))
                       .steps_offset(offset);
    if (c == "EulerDiscreteScheduler") out.sampler = std::make_unique<EulerSampler>(o);
    else if (c == "EulerAncestralDiscreteScheduler") out.sampler = std::make_unique<EulerAncestralSampler>(o);
    else out.sampler = std::make_unique<HeunSampler>(o);
  } else if (c == "DPMSolverMultistepScheduler") {
    const std::string algo = get_or<std::string>(j, "algorithm_type", "dpmsolver++");
    MD_CHECK_VALUE(algo == "dpmsolver++" || algo == "sde-dpmsolver++", kWhat, ": unsupported algorithm_type '", algo,
                   "' (dpmsolver++ or sde-dpmsolver++)");
    const int64_t order = get_or<int64_t>(j, "solver_order", 2);
    MD_CHECK_VALUE(order == 2, kWhat, ": DPM-Solver++ solver_order ", order, " is not supported (2)");
    out.sampler = std::make_unique<DPMSolverSampler>(
        DPMSolverOptions(num_steps)
            .variant(algo == "dpmsolver++" ? DPMSolverVariant::Multistep2M : DPMSolverVariant::SDE2M)
            .spacing(spacing_of(j, TimestepSpacing::Linspace))
            .steps_offset(offset)
            .timesteps(linspace_spacing(j) ? multistep_linspace(j, num_steps) : std::vector<int64_t>{}));
  } else if (c == "UniPCMultistepScheduler") {
    const std::string solver = get_or<std::string>(j, "solver_type", "bh2");
    MD_CHECK_VALUE(solver == "bh2", kWhat, ": UniPC solver_type '", solver, "' is not supported (bh2)");
    MD_CHECK_VALUE(get_or<bool>(j, "predict_x0", true), kWhat, ": UniPC needs predict_x0 = true");
    out.sampler = std::make_unique<UniPCSampler>(UniPCOptions(num_steps)
                                                     .order(get_or<int64_t>(j, "solver_order", 2))
                                                     .lower_order_final(get_or<bool>(j, "lower_order_final", true))
                                                     .spacing(spacing_of(j, TimestepSpacing::Linspace))
                                                     .steps_offset(offset)
                                                     .timesteps(linspace_spacing(j) ? multistep_linspace(j, num_steps)
                                                                                    : std::vector<int64_t>{}));
  } else {
    MD_CHECK_VALUE(false, kWhat, ": unsupported scheduler '_class_name': '", c,
                   "' (DDPM, DDIM, EulerDiscrete, EulerAncestralDiscrete, HeunDiscrete, DPMSolverMultistep, "
                   "UniPCMultistep)");
  }
  return out;
}

}  // namespace manifold_diffusion
