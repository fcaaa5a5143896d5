// ScheduleOptions: validation, JSON round trips and diffusers' scheduler_config.json.
#include <manifold_diffusion/schedules/noise_schedule.h>

#include "schedules/schedule_reference.h"
#include "test_util.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace {

namespace ref = mdiff_test::ref;
using mdiff::BetaSchedule;
using mdiff::NoiseSchedule;
using mdiff::ScheduleOptions;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---- validation ------------------------------------------------------------------------------

TEST(ScheduleOptionsValidation, RejectsBetasOutsideTheOpenUnitInterval) {
  for (auto kind : {BetaSchedule::Linear, BetaSchedule::ScaledLinear, BetaSchedule::Sigmoid}) {
    MD_EXPECT_ERROR(NoiseSchedule(ScheduleOptions(kind).beta_start(0.0)), "beta_start must be in (0, 1), got 0");
    MD_EXPECT_ERROR(NoiseSchedule(ScheduleOptions(kind).beta_start(-0.5)), "beta_start", "got -0.5");
    MD_EXPECT_ERROR(NoiseSchedule(ScheduleOptions(kind).beta_start(kNaN)), "beta_start", "got nan");
    MD_EXPECT_ERROR(NoiseSchedule(ScheduleOptions(kind).beta_end(1.0)), "beta_end must be in (0, 1), got 1");
    MD_EXPECT_ERROR(NoiseSchedule(ScheduleOptions(kind).beta_end(1.5)), "beta_end", "got 1.5");
    EXPECT_THROW(NoiseSchedule(ScheduleOptions(kind).beta_end(2.0)), c10::ValueError);
  }
  MD_EXPECT_ERROR(NoiseSchedule::linear(1000, 1e-4, 1.0), "beta_end", "got 1");
  MD_EXPECT_ERROR(NoiseSchedule::scaled_linear(1000, 0.0, 0.012), "beta_start", "got 0");
}

TEST(ScheduleOptionsValidation, RejectsTimestepCountsBelowOne) {
  MD_EXPECT_ERROR(NoiseSchedule::linear(0), "num_train_timesteps must be in [1, 1000000], got 0");
  MD_EXPECT_ERROR(NoiseSchedule::cosine(-5), "num_train_timesteps", "got -5");
  MD_EXPECT_ERROR(NoiseSchedule::sigmoid(2000000), "got 2000000");
  EXPECT_NO_THROW(NoiseSchedule::linear(1));
}

TEST(ScheduleOptionsValidation, RejectsBadCosineParameters) {
  MD_EXPECT_ERROR(NoiseSchedule::cosine(1000, 0.0), "cosine_s must be positive, got 0");
  MD_EXPECT_ERROR(NoiseSchedule::cosine(1000, -0.1), "cosine_s", "got -0.1");
  MD_EXPECT_ERROR(NoiseSchedule::cosine(1000, 0.008, 0.0), "max_beta must be in (0, 1], got 0");
  MD_EXPECT_ERROR(NoiseSchedule::cosine(1000, 0.008, 1.5), "max_beta", "got 1.5");
}

TEST(ScheduleOptionsValidation, RejectsBadCustomBetas) {
  MD_EXPECT_ERROR(NoiseSchedule::from_betas({}), "custom schedule needs betas");
  MD_EXPECT_ERROR(NoiseSchedule(ScheduleOptions(BetaSchedule::Custom)), "custom schedule needs betas");
  MD_EXPECT_ERROR(NoiseSchedule::from_betas({0.1, 1.0, 0.2}), "only the last beta may be 1", "beta[1]");
  MD_EXPECT_ERROR(NoiseSchedule::from_betas({0.1, 0.2, 0.0}), "beta[2] must be in (0, 1], got 0");
  MD_EXPECT_ERROR(NoiseSchedule::from_betas({0.1, -0.2}), "beta[1]", "got -0.2");
  MD_EXPECT_ERROR(NoiseSchedule::from_betas({1.5, 0.2}), "beta[0]", "got 1.5");
  MD_EXPECT_ERROR(NoiseSchedule::from_betas({0.1, kNaN}), "beta[1]", "got nan");
  // The bad value is named before any rescaling touches it.
  const auto rescaled = [](std::vector<double> b) {
    return NoiseSchedule(ScheduleOptions(BetaSchedule::Custom).betas(std::move(b)).rescale_zero_terminal_snr(true));
  };
  MD_EXPECT_ERROR(rescaled({0.1, 1.5, 0.2}), "beta[1]", "got 1.5");
  MD_EXPECT_ERROR(rescaled({0.1, 1.0, 0.2}), "only the last beta may be 1", "beta[1]");
  MD_EXPECT_ERROR(rescaled({0.1, -1.0}), "beta[1]", "got -1");
  MD_EXPECT_ERROR(rescaled({0.5}), "at least 2 timesteps", "got 1");
  EXPECT_THROW(NoiseSchedule::from_betas({0.1, 1.0, 0.2}), c10::ValueError);
}

TEST(ScheduleOptionsValidation, CustomTimestepCountFollowsTheBetas) {
  const NoiseSchedule s(ScheduleOptions(BetaSchedule::Custom).betas({0.1, 0.2, 0.3}));
  EXPECT_EQ(s.num_train_timesteps(), 3);
  EXPECT_EQ(s.options().num_train_timesteps(), 3);
}

// ---- JSON ------------------------------------------------------------------------------------

std::vector<ScheduleOptions> every_kind() {
  std::vector<ScheduleOptions> out = {
      ScheduleOptions(),
      ScheduleOptions(BetaSchedule::Linear).num_train_timesteps(500).beta_start(3e-4).beta_end(0.05),
      ScheduleOptions(BetaSchedule::ScaledLinear).beta_start(0.00085).beta_end(0.012),
      ScheduleOptions(BetaSchedule::Cosine).num_train_timesteps(4000),
      ScheduleOptions(BetaSchedule::Cosine).cosine_s(1.0 / 3).max_beta(0.7),
      ScheduleOptions(BetaSchedule::Sigmoid).num_train_timesteps(7).beta_start(1.0 / 7).beta_end(0.3),
      ScheduleOptions(BetaSchedule::Custom).num_train_timesteps(5).betas({0.1, 1.0 / 3, 0.2 + 1e-16, 1e-9, 1.0}),
  };
  const size_t plain = out.size();
  for (size_t i = 0; i < plain; ++i) {
    ScheduleOptions o = out[i];
    out.push_back(o.rescale_zero_terminal_snr(true));
  }
  return out;
}

TEST(ScheduleOptionsJson, RoundTripGivesTheSameTables) {
  for (const ScheduleOptions& o : every_kind()) {
    const std::string json = o.to_json();
    const ScheduleOptions back = ScheduleOptions::from_json(json);
    EXPECT_EQ(back.kind(), o.kind()) << json;
    EXPECT_EQ(back.num_train_timesteps(), o.num_train_timesteps()) << json;
    EXPECT_EQ(back.beta_start(), o.beta_start()) << json;
    EXPECT_EQ(back.beta_end(), o.beta_end()) << json;
    EXPECT_EQ(back.cosine_s(), o.cosine_s()) << json;
    EXPECT_EQ(back.max_beta(), o.max_beta()) << json;
    EXPECT_EQ(back.betas(), o.betas()) << json;
    EXPECT_EQ(back.rescale_zero_terminal_snr(), o.rescale_zero_terminal_snr()) << json;
    const NoiseSchedule a(o);
    const NoiseSchedule b(back);
    EXPECT_TRUE(at::equal(a.betas(), b.betas())) << json;
    EXPECT_TRUE(at::equal(a.alphas_cumprod(), b.alphas_cumprod())) << json;
    // The options a schedule reports round-trip too.
    const NoiseSchedule c(ScheduleOptions::from_json(a.options().to_json()));
    EXPECT_TRUE(at::equal(a.alphas_cumprod(), c.alphas_cumprod())) << json;
  }
}

TEST(ScheduleOptionsJson, WritesCanonicalNames) {
  const std::string json = ScheduleOptions(BetaSchedule::ScaledLinear).to_json();
  EXPECT_NE(json.find("\"kind\":\"scaled_linear\""), std::string::npos) << json;
  EXPECT_EQ(json.find("\"betas\""), std::string::npos) << json;
  const std::string custom = NoiseSchedule::from_betas({0.25, 0.5}).options().to_json();
  EXPECT_NE(custom.find("\"betas\":[0.25,0.5]"), std::string::npos) << custom;
  EXPECT_NE(custom.find("\"num_train_timesteps\":2"), std::string::npos) << custom;
}

TEST(ScheduleOptionsJson, MissingKeysKeepTheDefaults) {
  const ScheduleOptions o = ScheduleOptions::from_json("{}");
  EXPECT_EQ(o.kind(), BetaSchedule::Linear);
  EXPECT_EQ(o.num_train_timesteps(), 1000);
  EXPECT_EQ(o.beta_start(), 1e-4);
  EXPECT_EQ(o.beta_end(), 0.02);
  const ScheduleOptions c = ScheduleOptions::from_json(R"({"kind": "squaredcos_cap_v2", "num_train_timesteps": 50})");
  EXPECT_EQ(c.kind(), BetaSchedule::Cosine);
  EXPECT_EQ(c.num_train_timesteps(), 50);
}

TEST(ScheduleOptionsJson, RejectsUnknownKeysWrongTypesAndUnknownKinds) {
  const auto parse = [](const std::string& text) { return ScheduleOptions::from_json(text); };
  MD_EXPECT_ERROR(parse(R"({"beta_schedule": "linear"})"), "from_json", "unknown key 'beta_schedule'");
  MD_EXPECT_ERROR(parse(R"({"kind": "linear", "steps": 10})"), "unknown key 'steps'");
  MD_EXPECT_ERROR(parse(R"({"kind": "exp"})"), "unknown BetaSchedule 'exp'", "expected one of", "scaled_linear");
  MD_EXPECT_ERROR(parse(R"({"kind": 3})"), "'kind'", "string", "got 3");
  MD_EXPECT_ERROR(parse(R"({"num_train_timesteps": "1000"})"), "'num_train_timesteps'", "integer", "\"1000\"");
  MD_EXPECT_ERROR(parse(R"({"num_train_timesteps": 1000.5})"), "'num_train_timesteps'", "integer", "1000.5");
  MD_EXPECT_ERROR(parse(R"({"num_train_timesteps": true})"), "'num_train_timesteps'", "integer", "true");
  MD_EXPECT_ERROR(parse(R"({"num_train_timesteps": 18446744073709551615})"), "'num_train_timesteps'",
                  "18446744073709551615");
  MD_EXPECT_ERROR(parse(R"({"beta_start": "0.1"})"), "'beta_start'", "number", "\"0.1\"");
  MD_EXPECT_ERROR(parse(R"({"beta_end": true})"), "'beta_end'", "number", "true");
  MD_EXPECT_ERROR(parse(R"({"cosine_s": null})"), "'cosine_s'", "null");
  MD_EXPECT_ERROR(parse(R"({"rescale_zero_terminal_snr": 1})"), "'rescale_zero_terminal_snr'", "boolean", "got 1");
  MD_EXPECT_ERROR(parse(R"({"kind": "custom", "betas": [0.1, "x"]})"), "'betas'", "array of numbers");
  MD_EXPECT_ERROR(parse(R"({"kind": "custom", "betas": 0.1})"), "'betas'", "array of numbers");
  MD_EXPECT_ERROR(parse(R"({"num_train_timesteps": 0})"), "num_train_timesteps", "got 0");
  MD_EXPECT_ERROR(parse(R"({"beta_end": 1.5})"), "beta_end", "got 1.5");
  MD_EXPECT_ERROR(parse(R"({"kind": "custom"})"), "needs betas");
  MD_EXPECT_ERROR(parse(R"({"kind": "custom", "betas": [0.1, 1.0, 0.2]})"), "only the last beta may be 1");
  MD_EXPECT_ERROR(parse("[1, 2]"), "expected a JSON object", "array");
  MD_EXPECT_ERROR(parse("{\"kind\": "), "invalid JSON");
  EXPECT_THROW(parse(R"({"kind": 3})"), c10::ValueError);
}

// ---- diffusers' scheduler_config.json -------------------------------------------------------

// Shaped like google/ddpm-cifar10-32.
constexpr const char* kDdpmConfig = R"({
  "_class_name": "DDPMScheduler",
  "_diffusers_version": "0.1.1",
  "beta_end": 0.02,
  "beta_schedule": "linear",
  "beta_start": 0.0001,
  "clip_sample": true,
  "num_train_timesteps": 1000,
  "trained_betas": null,
  "variance_type": "fixed_small"
})";

// Shaped like Stable Diffusion 1.x.
constexpr const char* kStableDiffusionConfig = R"({
  "_class_name": "PNDMScheduler",
  "_diffusers_version": "0.6.0",
  "beta_end": 0.012,
  "beta_schedule": "scaled_linear",
  "beta_start": 0.00085,
  "clip_sample": false,
  "num_train_timesteps": 1000,
  "prediction_type": "epsilon",
  "set_alpha_to_one": false,
  "skip_prk_steps": true,
  "steps_offset": 1,
  "timestep_spacing": "leading",
  "trained_betas": null
})";

// Shaped like a cosine-schedule pixel model (DeepFloyd IF style).
constexpr const char* kCosineConfig = R"({
  "_class_name": "DDPMScheduler",
  "_diffusers_version": "0.16.0",
  "beta_end": 0.02,
  "beta_schedule": "squaredcos_cap_v2",
  "beta_start": 0.0001,
  "clip_sample": true,
  "clip_sample_range": 1.0,
  "dynamic_thresholding_ratio": 0.95,
  "num_train_timesteps": 1000,
  "prediction_type": "epsilon",
  "sample_max_value": 1.5,
  "thresholding": true,
  "trained_betas": null,
  "variance_type": "learned_range"
})";

constexpr const char* kTrainedBetasConfig = R"({
  "_class_name": "DDIMScheduler",
  "_diffusers_version": "0.21.0",
  "beta_end": 0.02,
  "beta_schedule": "linear",
  "beta_start": 0.0001,
  "clip_sample": false,
  "num_train_timesteps": 1000,
  "prediction_type": "v_prediction",
  "trained_betas": [0.0001, 0.001, 0.01, 0.05, 0.1, 0.2]
})";

// Shaped like a v-prediction model fine-tuned with Lin et al.'s fixes.
constexpr const char* kZeroSnrConfig = R"({
  "_class_name": "DDIMScheduler",
  "_diffusers_version": "0.19.0",
  "beta_end": 0.012,
  "beta_schedule": "scaled_linear",
  "beta_start": 0.00085,
  "clip_sample": false,
  "num_train_timesteps": 1000,
  "prediction_type": "v_prediction",
  "rescale_betas_zero_snr": true,
  "set_alpha_to_one": false,
  "steps_offset": 1,
  "timestep_spacing": "trailing",
  "trained_betas": null
})";

TEST(ScheduleOptionsDiffusers, ReadsALinearDdpmConfig) {
  const ScheduleOptions o = ScheduleOptions::from_diffusers_config(kDdpmConfig);
  EXPECT_EQ(o.kind(), BetaSchedule::Linear);
  EXPECT_EQ(o.num_train_timesteps(), 1000);
  EXPECT_EQ(o.beta_start(), 0.0001);
  EXPECT_EQ(o.beta_end(), 0.02);
  EXPECT_FALSE(o.rescale_zero_terminal_snr());
  EXPECT_TRUE(at::equal(NoiseSchedule(o).betas(), NoiseSchedule::linear(1000, 1e-4, 0.02).betas()));
}

TEST(ScheduleOptionsDiffusers, ReadsAStableDiffusionConfig) {
  const ScheduleOptions o = ScheduleOptions::from_diffusers_config(kStableDiffusionConfig);
  EXPECT_EQ(o.kind(), BetaSchedule::ScaledLinear);
  EXPECT_EQ(o.beta_start(), 0.00085);
  EXPECT_EQ(o.beta_end(), 0.012);
  const NoiseSchedule s(o);
  const std::vector<double> betas = ref::scaled_linear_betas(1000, 0.00085, 0.012);
  for (int64_t t : ref::probe_indices(1000)) {
    EXPECT_NEAR(s.beta(t), betas[t], 1e-15) << t;
  }
  EXPECT_NEAR(s.alpha(999), 0.068265, 5e-7);
}

TEST(ScheduleOptionsDiffusers, ReadsASquaredCosineConfig) {
  const ScheduleOptions o = ScheduleOptions::from_diffusers_config(kCosineConfig);
  EXPECT_EQ(o.kind(), BetaSchedule::Cosine);
  EXPECT_EQ(o.cosine_s(), 0.008);
  EXPECT_EQ(o.max_beta(), 0.999);
  EXPECT_TRUE(at::equal(NoiseSchedule(o).betas(), NoiseSchedule::cosine(1000).betas()));
}

TEST(ScheduleOptionsDiffusers, ReadsTrainedBetas) {
  const ScheduleOptions o = ScheduleOptions::from_diffusers_config(kTrainedBetasConfig);
  EXPECT_EQ(o.kind(), BetaSchedule::Custom);
  EXPECT_EQ(o.num_train_timesteps(), 6);
  EXPECT_EQ(o.betas(), (std::vector<double>{0.0001, 0.001, 0.01, 0.05, 0.1, 0.2}));
  const NoiseSchedule s(o);
  EXPECT_EQ(s.num_train_timesteps(), 6);
  EXPECT_DOUBLE_EQ(s.alpha_bar(5), 0.9999 * 0.999 * 0.99 * 0.95 * 0.9 * 0.8);
}

TEST(ScheduleOptionsDiffusers, ReadsZeroTerminalSnr) {
  const ScheduleOptions o = ScheduleOptions::from_diffusers_config(kZeroSnrConfig);
  EXPECT_EQ(o.kind(), BetaSchedule::ScaledLinear);
  EXPECT_TRUE(o.rescale_zero_terminal_snr());
  const NoiseSchedule s(o);
  EXPECT_EQ(s.alpha_bar(999), 0.0);
  EXPECT_TRUE(at::equal(s.betas(), NoiseSchedule::scaled_linear(1000).rescaled_zero_terminal_snr().betas()));
}

TEST(ScheduleOptionsDiffusers, UsesDiffusersDefaultsAndRejectsBadValues) {
  const ScheduleOptions d = ScheduleOptions::from_diffusers_config(R"({"_class_name": "DDPMScheduler"})");
  EXPECT_EQ(d.kind(), BetaSchedule::Linear);
  EXPECT_EQ(d.num_train_timesteps(), 1000);
  EXPECT_EQ(d.beta_start(), 1e-4);
  EXPECT_EQ(d.beta_end(), 0.02);
  const auto parse = [](const std::string& text) { return ScheduleOptions::from_diffusers_config(text); };
  MD_EXPECT_ERROR(parse(R"({"beta_schedule": "exp"})"), "from_diffusers_config", "unknown BetaSchedule 'exp'");
  MD_EXPECT_ERROR(parse(R"({"num_train_timesteps": "1000"})"), "'num_train_timesteps'", "integer");
  MD_EXPECT_ERROR(parse(R"({"beta_end": 1.2})"), "beta_end", "got 1.2");
  MD_EXPECT_ERROR(parse(R"({"trained_betas": []})"), "needs betas");
  MD_EXPECT_ERROR(parse(R"({"trained_betas": [0.1, "a"]})"), "'trained_betas'", "array of numbers");
  MD_EXPECT_ERROR(parse(R"({"rescale_betas_zero_snr": "yes"})"), "'rescale_betas_zero_snr'", "boolean");
  MD_EXPECT_ERROR(parse("not json"), "from_diffusers_config", "invalid JSON");
}

}  // namespace
