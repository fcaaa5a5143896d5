// Our samplers against diffusers' schedulers, step by step: tests/golden/make_golden.py ran each
// scheduler (its config stored in the file) on a fixed stand-in model and recorded every step.
#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/io/safetensors.h>
#include <manifold_diffusion/samplers/diffusers_config.h>

#include "test_util.h"
#include "md_test_paths.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace {

namespace mio = mdiff::io;

// make_golden.py's model_output(): the posterior mean of eps (or v) for data ~ N(0, 0.25 I) plus a
// pattern scaled by sqrt(alpha_bar), at the noise level of integer timestep round(t).
at::Tensor stand_in_model(const at::Tensor& x, const at::Tensor& t, const mdiff::NoiseSchedule& schedule,
                          mdiff::PredictionType prediction) {
  const int64_t n = x.size(0);
  const at::Tensor tt = (t.dim() == 0 ? t.expand({n}) : t).to(at::kDouble);
  const at::Tensor pattern = at::linspace(-1, 1, x[0].numel(), x.options()).view(x.sizes().slice(1));
  std::vector<at::Tensor> rows;
  for (int64_t i = 0; i < n; ++i) {
    const double ti = tt[i].item<double>();
    const double a = static_cast<float>(schedule.alpha_bar(static_cast<int64_t>(std::llround(ti))));  // float32, as diffusers
    const double s2 = 0.25, denom = a * s2 + 1.0 - a;
    const double coef = prediction == mdiff::PredictionType::Epsilon ? std::sqrt(1.0 - a) / denom
                                                                      : std::sqrt(a * (1.0 - a)) * (1.0 - s2) / denom;
    const double bump = 0.3 * std::sqrt(a) * std::sin(ti / 70.0);
    rows.push_back(x[i] * coef + pattern * bump);
  }
  return at::stack(rows);
}

struct Golden {
  mio::Safetensors file;
  mdiff::DiffusersScheduler scheduler;
};

Golden load(const std::string& name) {
  Golden g;
  g.file = mio::load_safetensors(std::string(MD_TEST_GOLDEN_DIR) + "/sched_" + name + ".safetensors");
  g.scheduler = mdiff::from_diffusers_scheduler_config(g.file.metadata.at("scheduler_config"),
                                                       std::stoll(g.file.metadata.at("num_steps")));
  return g;
}

std::vector<at::Generator> generators(const at::Tensor& seeds) {
  std::vector<at::Generator> gens;
  for (int64_t i = 0; i < seeds.numel(); ++i) gens.push_back(mdiff::make_generator(seeds[i].item<int64_t>()));
  return gens;
}

// Runs our sampler from the recorded x_T with generators seeded as diffusers' per-sample generators;
// compares every step's sample (VP domain) and every model call's timestep and input.
// `matching_steps`: how many leading steps must match (all by default); later steps and the final sample
// are only printed, for the documented differences below.
void check(const std::string& name, double tol, int64_t matching_steps = -1, bool final_is_x0 = false) {
  SCOPED_TRACE(name);
  Golden g = load(name);
  const auto& f = g.file;
  // The per-sample noise streams: ours draws row i from generator i, as diffusers' randn_tensor with a
  // list of generators does (same PyTorch CPU generator and normal sampler).
  ASSERT_TRUE(at::equal(mdiff::randn_per_sample(f.get("x_T").sizes(), generators(f.get("seeds"))), f.get("first_noise")))
      << "the CPU generators differ from the Python side's; the stochastic comparisons below would be meaningless";

  const mdiff::NoiseSchedule schedule(g.scheduler.schedule);
  std::vector<double> call_t;
  std::vector<at::Tensor> call_x;
  const mdiff::Denoiser den(
      [&](const at::Tensor& x, const at::Tensor& t, const at::Tensor&) {
        call_t.push_back(t.dim() == 0 ? t.item<double>() : t[0].item<double>());
        call_x.push_back(x.clone());
        return stand_in_model(x, t, schedule, g.scheduler.prediction);
      },
      mdiff::NoiseSchedule(g.scheduler.schedule), mdiff::DenoiserOptions(g.scheduler.prediction));
  auto xs = std::make_shared<std::vector<at::Tensor>>();
  mdiff::SampleArgs args;
  args.callbacks.push_back(mdiff::callbacks::record_trajectory(xs));
  const at::Tensor out = g.scheduler.sampler->sample(den, f.get("x_T"), generators(f.get("seeds")), args);

  const at::Tensor timesteps = f.get("timesteps");
  const at::Tensor prev = f.get("prev_samples");
  const at::Tensor inputs = f.get("model_inputs");
  const at::Tensor vp_scale = f.get("vp_scale");
  const int64_t steps = timesteps.numel();
  ASSERT_EQ(static_cast<int64_t>(call_t.size()), steps) << "one model call per step, as the scheduler";
  ASSERT_EQ(static_cast<int64_t>(xs->size()), steps);
  double worst = 0;
  const int64_t matching = matching_steps < 0 ? steps : matching_steps;
  double after = 0;
  for (int64_t k = 0; k < steps; ++k) {
    const double dx = (call_x[k] - inputs[k]).abs().max().item<double>();
    const double dp = ((*xs)[k] - prev[k] * vp_scale[k].item<double>()).abs().max().item<double>();
    if (k < matching) {
      EXPECT_NEAR(call_t[k], timesteps[k].item<double>(), 1e-4) << "step " << k;
      EXPECT_LE(dx, tol) << "model input at step " << k;
      EXPECT_LE(dp, tol) << "sample after step " << k;
      worst = std::max({worst, dx, dp});
    } else {
      after = std::max({after, dx, dp});
    }
  }
  // With set_alpha_to_one false, diffusers' DDIM ends at alpha_bar[0] instead of the clean sample;
  // ours returns the clean estimate, which is diffusers' last pred_original_sample.
  const double dout = (out - (final_is_x0 ? f.get("pred_x0")[steps - 1] : prev[steps - 1])).abs().max().item<double>();
  if (matching == steps) {
    EXPECT_LE(dout, tol) << "final sample";
    worst = std::max(worst, dout);
  } else {
    after = std::max(after, dout);
    std::printf("%s: steps after the first %lld differ by up to %.3g (documented difference)\n", name.c_str(),
                static_cast<long long>(matching), after);
  }
  std::printf("%s (%s, %lld steps): max |ours - diffusers| = %.3g\n", name.c_str(), g.scheduler.sampler->name().c_str(),
              static_cast<long long>(steps), worst);
}

TEST(DiffusersGolden, DDPM) { check("ddpm", 1e-4); }
TEST(DiffusersGolden, DDIMLeadingSetAlphaToOneFalse) { check("ddim", 1e-4, 5, /*final_is_x0=*/true); }
// diffusers' DDIM steps to t - T / N (833 after 999), not to the next timestep of its trailing grid (832),
// then evaluates at 832; ours steps to the grid's next timestep. The first step's target differs already.
TEST(DiffusersGolden, DDIMTrailingVPredictionDiffersByDesign) { check("ddim_trailing_v", 1e-4, 0); }
TEST(DiffusersGolden, EulerTrailing) { check("euler", 1e-4); }
// diffusers' Euler with "linspace" spacing evaluates at fractional timesteps (799.2, ...); ours at integers.
TEST(DiffusersGolden, EulerLinspaceDiffersByDesign) { check("euler_linspace", 1e-4, 1); }
TEST(DiffusersGolden, DPMSolverPlusPlus2M) { check("dpmpp_2m", 1e-4); }
TEST(DiffusersGolden, DPMSolverPlusPlus2MSDE) { check("dpmpp_2m_sde", 1e-4); }

}  // namespace
