#include <manifold_diffusion/samplers/diffusers_config.h>
#include <manifold_diffusion/samplers/euler.h>
#include <manifold_diffusion/samplers/factory.h>
#include <manifold_diffusion/samplers/unipc.h>

#include "test_util.h"

namespace {

TEST(DiffusersConfig, ReadsAStableDiffusionStyleDDIMConfig) {
  const char* text = R"({
    "_class_name": "DDIMScheduler", "_diffusers_version": "0.30.0",
    "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
    "clip_sample": false, "num_train_timesteps": 1000, "prediction_type": "v_prediction",
    "set_alpha_to_one": false, "steps_offset": 1, "trained_betas": null, "timestep_spacing": "leading",
    "rescale_betas_zero_snr": true})";
  const auto s = mdiff::from_diffusers_scheduler_config(text, 50);
  EXPECT_EQ(s.class_name, "DDIMScheduler");
  EXPECT_EQ(s.prediction, mdiff::PredictionType::VPrediction);
  EXPECT_EQ(s.schedule.kind(), mdiff::BetaSchedule::ScaledLinear);
  EXPECT_TRUE(s.schedule.rescale_zero_terminal_snr());
  ASSERT_NE(s.sampler, nullptr);
  EXPECT_EQ(s.sampler->name(), "ddim");
  EXPECT_NE(s.sampler->options_json().find(R"("steps_offset":1)"), std::string::npos) << s.sampler->options_json();
  EXPECT_NE(s.sampler->options_json().find(R"("spacing":"leading")"), std::string::npos);
}

TEST(DiffusersConfig, MapsEverySupportedScheduler) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"_class_name": "DDPMScheduler", "variance_type": "fixed_large"})", "ddpm"},
      {R"({"_class_name": "EulerDiscreteScheduler", "use_karras_sigmas": true})", "euler"},
      {R"({"_class_name": "EulerAncestralDiscreteScheduler"})", "euler_ancestral"},
      {R"({"_class_name": "HeunDiscreteScheduler"})", "heun"},
      {R"({"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "sde-dpmsolver++"})", "dpmpp_2m_sde"},
      {R"({"_class_name": "DPMSolverMultistepScheduler"})", "dpmpp_2m"},
      {R"({"_class_name": "UniPCMultistepScheduler", "solver_order": 3})", "unipc"},
  };
  for (const auto& [text, name] : cases) {
    const auto s = mdiff::from_diffusers_scheduler_config(text, 20);
    EXPECT_EQ(s.sampler->name(), name) << text;
  }
  const auto euler = mdiff::from_diffusers_scheduler_config(R"({"_class_name": "EulerDiscreteScheduler",
      "use_karras_sigmas": true})", 20);
  EXPECT_TRUE(dynamic_cast<const mdiff::EulerSampler&>(*euler.sampler).options().karras());
  const auto unipc = mdiff::from_diffusers_scheduler_config(R"({"_class_name": "UniPCMultistepScheduler",
      "solver_order": 3})", 20);
  EXPECT_EQ(dynamic_cast<const mdiff::UniPCSampler&>(*unipc.sampler).options().order(), 3);
}

TEST(DiffusersConfig, RefusesWhatDoesNotMap) {
  MD_EXPECT_ERROR(mdiff::from_diffusers_scheduler_config(R"({"_class_name": "LMSDiscreteScheduler"})", 10),
                  "unsupported scheduler", "LMSDiscreteScheduler");
  MD_EXPECT_ERROR(mdiff::from_diffusers_scheduler_config(R"({"_class_name": "DDIMScheduler", "thresholding": true})", 10),
                  "thresholding");
  MD_EXPECT_ERROR(mdiff::from_diffusers_scheduler_config(
                      R"({"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "dpmsolver"})", 10),
                  "algorithm_type 'dpmsolver'");
  MD_EXPECT_ERROR(mdiff::from_diffusers_scheduler_config(R"({"_class_name": "DDIMScheduler", "prediction_type": "flow"})", 10),
                  "prediction_type 'flow'");
  MD_EXPECT_ERROR(mdiff::from_diffusers_scheduler_config("not json", 10), "invalid JSON");
  MD_EXPECT_ERROR(mdiff::from_diffusers_scheduler_config(R"({"_class_name": "DDIMScheduler"})", 0), "num_steps");
}

}  // namespace

TEST(SamplerFactory, EveryNameMakesItsSamplerAndBadInputIsRejected) {
  for (const auto& name : mdiff::sampler_names()) {
    const auto s = mdiff::make_sampler(name, 7);
    ASSERT_NE(s, nullptr) << name;
    EXPECT_GE(s->num_model_evaluations(), 7) << name;
  }
  EXPECT_NE(mdiff::make_sampler("ddim", 5, 1.0)->options_json().find("\"eta\":1"), std::string::npos)
      << mdiff::make_sampler("ddim", 5, 1.0)->options_json();
  MD_EXPECT_ERROR(mdiff::make_sampler("dpm++", 5), "unknown sampler 'dpm++'", "dpmpp_2m");
  MD_EXPECT_ERROR(mdiff::make_sampler("ddim", 0), "steps", "0");
  MD_EXPECT_ERROR(mdiff::make_sampler("euler", 5, 0.5), "eta", "ddim");
}
