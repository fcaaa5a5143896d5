#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/samplers/ddim.h>
#include <manifold_diffusion/samplers/ddpm.h>
#include <manifold_diffusion/samplers/diffusers_config.h>
#include <manifold_diffusion/samplers/dpm_solver.h>
#include <manifold_diffusion/samplers/euler.h>
#include <manifold_diffusion/samplers/unipc.h>

#include <nlohmann/json.hpp>

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

}  // namespace

DiffusersScheduler from_diffusers_scheduler_config(const std::string& text, int64_t num_steps) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    MD_CHECK_VALUE(false, kWhat, ": invalid JSON: ", e.what());
  }
  MD_CHECK_VALUE(j.is_object(), kWhat, ": expected a JSON object, got ", j.type_name());
  DiffusersScheduler out;
  out.class_name = get_or<std::string>(j, "_class_name", "");
  out.schedule = ScheduleOptions::from_diffusers_config(text);
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
            .steps_offset(offset));
  } else if (c == "UniPCMultistepScheduler") {
    const std::string solver = get_or<std::string>(j, "solver_type", "bh2");
    MD_CHECK_VALUE(solver == "bh2", kWhat, ": UniPC solver_type '", solver, "' is not supported (bh2)");
    MD_CHECK_VALUE(get_or<bool>(j, "predict_x0", true), kWhat, ": UniPC needs predict_x0 = true");
    out.sampler = std::make_unique<UniPCSampler>(UniPCOptions(num_steps)
                                                     .order(get_or<int64_t>(j, "solver_order", 2))
                                                     .lower_order_final(get_or<bool>(j, "lower_order_final", true))
                                                     .spacing(spacing_of(j, TimestepSpacing::Linspace))
                                                     .steps_offset(offset));
  } else {
    MD_CHECK_VALUE(false, kWhat, ": unsupported scheduler '_class_name': '", c,
                   "' (DDPM, DDIM, EulerDiscrete, EulerAncestralDiscrete, HeunDiscrete, DPMSolverMultistep, "
                   "UniPCMultistep)");
  }
  return out;
}

}  // namespace manifold_diffusion
