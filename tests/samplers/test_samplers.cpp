// The contract every sampler keeps, and its accuracy against the exact Gaussian denoiser.
#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/samplers/ddim.h>
#include <manifold_diffusion/samplers/ddpm.h>
#include <manifold_diffusion/samplers/dpm_solver.h>
#include <manifold_diffusion/samplers/euler.h>
#include <manifold_diffusion/samplers/predictor_corrector.h>
#include <manifold_diffusion/samplers/unipc.h>

#include "samplers/gaussian_oracle.h"
#include "test_util.h"

#include <torch/csrc/autograd/autograd.h>

#include <ATen/ATen.h>

#include <atomic>
#include <functional>
#include <memory>
#include <thread>

namespace {

using mdiff::Sampler;
// Builds a sampler for a step count; the spacing applies to the timestep-based samplers.
using SamplerFactory = std::function<std::unique_ptr<Sampler>(int64_t steps, mdiff::TimestepSpacing spacing)>;

struct SamplerCase {
  std::string name;
  SamplerFactory make;
  bool deterministic;
  double order;      // expected convergence order on the probability-flow ODE (0: stochastic)
  int64_t steps;     // steps for the moment test
  std::function<std::string(const Sampler&)> roundtrip;  // from_json(options_json()).to_json()
};

template <typename S, typename O>
std::function<std::string(const Sampler&)> roundtrip_of() {
  return [](const Sampler& s) { return O::from_json(s.options_json()).to_json(); };
}

std::vector<SamplerCase> all_samplers() {
  using namespace mdiff;
  return {
      {"ddim", [](int64_t n, TimestepSpacing sp) { return std::make_unique<DDIMSampler>(DDIMOptions(n).spacing(sp)); }, true, 1, 100,
       roundtrip_of<DDIMSampler, DDIMOptions>()},
      {"ddim_eta1", [](int64_t n, TimestepSpacing sp) { return std::make_unique<DDIMSampler>(DDIMOptions(n).spacing(sp).eta(1.0)); }, false, 0, 200,
       roundtrip_of<DDIMSampler, DDIMOptions>()},
      {"ddpm", [](int64_t n, TimestepSpacing sp) { return std::make_unique<DDPMSampler>(DDPMOptions(n).spacing(sp)); }, false, 0, 200,
       roundtrip_of<DDPMSampler, DDPMOptions>()},
      {"ddpm_large", [](int64_t n, TimestepSpacing sp) { return std::make_unique<DDPMSampler>(DDPMOptions(n).spacing(sp).variance(DDPMVariance::FixedLarge)); },
       false, 0, 500, roundtrip_of<DDPMSampler, DDPMOptions>()},
      {"dpmpp_2m", [](int64_t n, TimestepSpacing sp) { return std::make_unique<DPMSolverSampler>(DPMSolverOptions(n).spacing(sp)); }, true, 2, 30,
       roundtrip_of<DPMSolverSampler, DPMSolverOptions>()},
      {"dpmpp_2m_sde",
       [](int64_t n, TimestepSpacing sp) { return std::make_unique<DPMSolverSampler>(DPMSolverOptions(n).spacing(sp).variant(DPMSolverVariant::SDE2M)); },
       false, 0, 100, roundtrip_of<DPMSolverSampler, DPMSolverOptions>()},
      {"unipc", [](int64_t n, TimestepSpacing sp) { return std::make_unique<UniPCSampler>(UniPCOptions(n).spacing(sp).spacing(sp)); }, true, 2, 30,
       roundtrip_of<UniPCSampler, UniPCOptions>()},
      {"unipc3", [](int64_t n, TimestepSpacing sp) { return std::make_unique<UniPCSampler>(UniPCOptions(n).spacing(sp).spacing(sp).order(3)); }, true, 3, 30,
       roundtrip_of<UniPCSampler, UniPCOptions>()},
      {"euler", [](int64_t n, TimestepSpacing sp) { return std::make_unique<EulerSampler>(SigmaSamplerOptions(n).spacing(sp)); }, true, 1, 100,
       roundtrip_of<EulerSampler, SigmaSamplerOptions>()},
      {"euler_churn",
       [](int64_t n, TimestepSpacing sp) {
         return std::make_unique<EulerSampler>(SigmaSamplerOptions(n).spacing(sp).s_churn(20).s_tmin(0.05).s_tmax(50));
       },
       false, 0, 200, roundtrip_of<EulerSampler, SigmaSamplerOptions>()},
      {"euler_ancestral", [](int64_t n, TimestepSpacing sp) { return std::make_unique<EulerAncestralSampler>(SigmaSamplerOptions(n).spacing(sp)); },
       false, 0, 200, roundtrip_of<EulerAncestralSampler, SigmaSamplerOptions>()},
      {"heun", [](int64_t n, TimestepSpacing sp) { return std::make_unique<HeunSampler>(SigmaSamplerOptions(n).spacing(sp)); }, true, 2, 40,
       roundtrip_of<HeunSampler, SigmaSamplerOptions>()},
      {"pc", [](int64_t n, TimestepSpacing sp) { return std::make_unique<PCSampler>(PCOptions(n).spacing(sp)); }, false, 0, 500,
       roundtrip_of<PCSampler, PCOptions>()},
  };
}

void PrintTo(const SamplerCase& c, std::ostream* os) {
  *os << c.name;
}

std::unique_ptr<Sampler> make(const SamplerCase& c, int64_t steps) {
  return c.make(steps, mdiff::TimestepSpacing::Trailing);
}

class SamplerContract : public ::testing::TestWithParam<SamplerCase> {
 protected:
  mdiff_test::GaussianData data = mdiff_test::default_gaussian();
  mdiff::NoiseSchedule schedule = mdiff::NoiseSchedule::linear(1000);
  mdiff::Denoiser denoiser = data.denoiser(schedule);
};

TEST_P(SamplerContract, KeepsShapeAndDtype) {
  const auto s = make(GetParam(), 8);
  for (auto dt : {at::kFloat, at::kDouble}) {
    const at::Tensor x = s->sample(denoiser, {5, 3}, 1, {}, 0, at::TensorOptions().dtype(dt));
    EXPECT_EQ(x.sizes(), (std::vector<int64_t>{5, 3}));
    EXPECT_EQ(x.scalar_type(), dt);
    EXPECT_TRUE(at::isfinite(x).all().item<bool>());
  }
}

TEST_P(SamplerContract, IsDeterministicGivenTheSeed) {
  const auto s = make(GetParam(), 8);
  const at::Tensor a = s->sample(denoiser, {6, 3}, 7);
  EXPECT_TRUE(at::equal(a, s->sample(denoiser, {6, 3}, 7)));
  EXPECT_FALSE(at::equal(a, s->sample(denoiser, {6, 3}, 8)));
}

TEST_P(SamplerContract, IsBatchInvariant) {
  const auto s = make(GetParam(), 8);
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  const at::Tensor all = s->sample(denoiser, {6, 3}, 11, {}, 0, opts);
  const at::Tensor part = s->sample(denoiser, {3, 3}, 11, {}, 2, opts);
  EXPECT_TRUE(at::allclose(all.slice(0, 2, 5), part, 1e-10, 1e-10)) << all.slice(0, 2, 5) << part;
}

TEST_P(SamplerContract, OneSamplerServesManyThreads) {
  const auto s = make(GetParam(), 8);
  const int threads = 4;
  std::vector<at::Tensor> sequential;
  for (int i = 0; i < threads; ++i) sequential.push_back(s->sample(denoiser, {4, 3}, 100 + i));
  std::vector<at::Tensor> parallel(threads);
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&, i] { parallel[i] = s->sample(denoiser, {4, 3}, 100 + i); });
  }
  for (auto& th : pool) th.join();
  for (int i = 0; i < threads; ++i) EXPECT_TRUE(at::equal(sequential[i], parallel[i])) << i;
}

TEST_P(SamplerContract, OptionsRoundTripThroughJson) {
  const auto s = make(GetParam(), 12);
  EXPECT_EQ(GetParam().roundtrip(*s), s->options_json());
}

struct CountingHook : mdiff::SamplingHook {
  std::atomic<int> x0_calls{0};
  std::atomic<int> proposal_calls{0};
  std::vector<double> next_levels;
  at::Tensor replacement;
  at::Tensor on_x0(const mdiff::StepContext& ctx, at::Tensor x0) override {
    ++x0_calls;
    EXPECT_EQ(ctx.x_t.sizes(), x0.sizes());
    return replacement.defined() ? replacement.expand_as(x0).clone() : x0;
  }
  at::Tensor on_proposal(const mdiff::StepContext& ctx, at::Tensor x) override {
    ++proposal_calls;
    next_levels.push_back(ctx.alpha_bar_next);
    return x;
  }
};

TEST_P(SamplerContract, CallsEveryHookAtEveryStep) {
  const auto s = make(GetParam(), 6);
  auto hook = std::make_shared<CountingHook>();
  mdiff::SampleArgs args;
  args.hooks.push_back(hook);
  (void)s->sample(denoiser, {4, 3}, 3, args);
  EXPECT_EQ(hook->x0_calls.load(), s->num_model_evaluations());
  EXPECT_EQ(hook->proposal_calls.load(), 6);
  ASSERT_EQ(hook->next_levels.size(), 6u);
  for (size_t i = 1; i < hook->next_levels.size(); ++i) EXPECT_GT(hook->next_levels[i], hook->next_levels[i - 1]);
  EXPECT_DOUBLE_EQ(hook->next_levels.back(), 1.0);
}

TEST_P(SamplerContract, AnX0HookThatPinsTheEstimatePinsTheSample) {
  const auto s = make(GetParam(), 6);
  auto hook = std::make_shared<CountingHook>();
  hook->replacement = at::tensor({0.3, -0.2, 0.7}, at::kFloat);
  mdiff::SampleArgs args;
  args.hooks.push_back(hook);
  const at::Tensor x = s->sample(denoiser, {4, 3}, 3, args);
  EXPECT_TRUE(at::allclose(x, hook->replacement.expand_as(x), 1e-4, 1e-4)) << x;
}

TEST_P(SamplerContract, HooksCanDifferentiateThroughTheDenoiser) {
  struct GradHook : mdiff::SamplingHook {
    int grads = 0;
    at::Tensor on_proposal(const mdiff::StepContext& ctx, at::Tensor x) override {
      at::Tensor xt = ctx.x_t.detach().clone().requires_grad_(true);
      const mdiff::DenoiserOutput out = ctx.denoise(xt);
      const at::Tensor g = torch::autograd::grad({out.x0.pow(2).sum()}, {xt})[0];
      grads += g.defined() && g.abs().sum().item<double>() > 0 ? 1 : 0;
      return x;
    }
  };
  const auto s = make(GetParam(), 4);
  auto hook = std::make_shared<GradHook>();
  mdiff::SampleArgs args;
  args.hooks.push_back(hook);
  (void)s->sample(denoiser, {3, 3}, 5, args);
  EXPECT_EQ(hook->grads, 4);
}

TEST_P(SamplerContract, CallbacksRecordAndStop) {
  const auto s = make(GetParam(), 6);
  auto xs = std::make_shared<std::vector<at::Tensor>>();
  mdiff::SampleArgs args;
  args.callbacks.push_back(mdiff::callbacks::record_trajectory(xs));
  args.callbacks.push_back(mdiff::callbacks::stop_after(4));
  (void)s->sample(denoiser, {2, 3}, 9, args);
  EXPECT_EQ(xs->size(), 4u);
  // A hand-written loop gives the same result as sample().
  auto gens = mdiff::make_sample_generators(9, 0, 2);
  mdiff::SamplerState st = s->start(denoiser, mdiff::randn_per_sample({2, 3}, gens), gens);
  while (!st.done()) s->step(denoiser, st);
  EXPECT_TRUE(at::allclose(s->result(st), s->sample(denoiser, {2, 3}, 9), 1e-6, 1e-6));
  MD_EXPECT_ERROR(s->step(denoiser, st), "finished");
}

TEST_P(SamplerContract, MatchesGaussianMomentsWithTheExactDenoiser) {
  const SamplerCase& c = GetParam();
  if (c.name == "pc") {
    GTEST_SKIP() << "the Langevin step rule needs high-dimensional samples: see PC.MatchesGaussianMomentsInHighDimension";
  }
  const auto s = make(c, c.steps);
  const int64_t n = 2000;
  const at::Tensor x = s->sample(denoiser, {n, 3}, 2024, {}, 0, at::TensorOptions().dtype(at::kDouble));
  const at::Tensor mean = x.mean(0);
  const at::Tensor var = x.var(0);
  const at::Tensor se = (data.var / n).sqrt();
  // Sampling error (5 standard errors) plus a discretisation allowance of 0.03.
  EXPECT_TRUE(((mean - data.mu).abs() <= 5 * se + 0.03).all().item<bool>())
      << c.name << " mean " << mean << " vs " << data.mu;
  const at::Tensor ratio = var / data.var;
  EXPECT_TRUE(((ratio - 1).abs() <= 5 * std::sqrt(2.0 / n) + 0.05).all().item<bool>())
      << c.name << " variance ratio " << ratio;
}

TEST_P(SamplerContract, DeterministicSamplersConvergeAtTheirOrder) {
  const SamplerCase& c = GetParam();
  if (!c.deterministic) {
    GTEST_SKIP() << "stochastic sampler";
  }
  const int64_t n = 64;
  auto gens = mdiff::make_sample_generators(77, 0, n);
  const at::Tensor x_T = mdiff::randn_per_sample({n, 3}, gens, at::kDouble);
  std::vector<double> errors;
  for (int64_t steps : {20, 40, 80}) {
    const auto s = c.make(steps, mdiff::TimestepSpacing::Linspace);
    const at::Tensor x = s->sample(denoiser, x_T, gens);
    double sigma_start = schedule.ve_sigma(999);
    if (auto* sigma_sampler = dynamic_cast<const mdiff::SigmaSpaceSampler*>(s.get())) {
      sigma_start = sigma_sampler->sigmas(schedule).front();
    }
    const double alpha = 1 / std::sqrt(1 + sigma_start * sigma_start);
    const at::Tensor exact = data.exact_flow(x_T / alpha, sigma_start);
    errors.push_back((x - exact).abs().max().item<double>());
  }
  const double slope = std::log2(errors[1] / errors[2]);
  RecordProperty("slope", std::to_string(slope));
  std::printf("[ order    ] %s: max error %.3e (20 steps) %.3e (40) %.3e (80); slope %.2f\n", c.name.c_str(),
              errors[0], errors[1], errors[2], slope);
  EXPECT_LT(errors[2], errors[1]);
  EXPECT_GT(slope, c.order - 0.4) << c.name;
}

TEST_P(SamplerContract, KeepsSamplesOnALinearSubspace) {
  // Data on a rotated 2-D plane in R^3: the exact denoiser never leaves it, and neither may the sampler.
  at::Generator g = mdiff::make_generator(17);
  const at::Tensor q = std::get<0>(at::linalg_qr(at::randn({3, 3}, g, at::kDouble)));
  mdiff_test::GaussianData plane{at::tensor({0.5, -1.0, 0.3}, at::kDouble), at::tensor({1.0, 0.25, 0.0}, at::kDouble), q};
  const mdiff::Denoiser den = plane.denoiser(schedule);
  const auto s = make(GetParam(), 20);
  const at::Tensor x = s->sample(den, {256, 3}, 4, {}, 0, at::TensorOptions().dtype(at::kDouble));
  const at::Tensor normal = q.select(1, 2);
  const at::Tensor offset = (x - plane.mu.matmul(q.t())).matmul(normal);
  EXPECT_LT(offset.abs().max().item<double>(), 1e-9) << GetParam().name;
  // In the plane the samples spread out (they did not collapse onto the mean).
  EXPECT_GT((x.matmul(q.select(1, 0))).std().item<double>(), 0.5);
}

INSTANTIATE_TEST_SUITE_P(All, SamplerContract, ::testing::ValuesIn(all_samplers()),
                         [](const ::testing::TestParamInfo<SamplerCase>& info) { return info.param.name; });

TEST(PC, MatchesGaussianMomentsInHighDimension) {
  const int64_t d = 512;
  const int64_t n = 100;
  at::Generator g = mdiff::make_generator(3);
  mdiff_test::GaussianData data{at::randn({d}, g, at::kDouble) * 0.5, at::rand({d}, g, at::kDouble) + 0.5, at::Tensor()};
  const auto schedule = mdiff::NoiseSchedule::linear(1000);
  const auto den = data.denoiser(schedule);
  mdiff::PCSampler pc(mdiff::PCOptions(100).snr(0.16).corrector_steps(1));
  const at::Tensor x = pc.sample(den, {n, d}, 8, {}, 0, at::TensorOptions().dtype(at::kDouble));
  // Squared mean errors in units of their sampling variance average to 1 (chi-square over d dims);
  // the variance ratio averaged over d dims has standard deviation sqrt(2 / n / d) ~ 0.006.
  const double mean_chi2 = ((x.mean(0) - data.mu).pow(2) * n / data.var).mean().item<double>();
  const double var_ratio = (x.var(0) / data.var).mean().item<double>();
  EXPECT_NEAR(mean_chi2, 1.0, 0.35) << mean_chi2;
  EXPECT_NEAR(var_ratio, 1.0, 0.05) << var_ratio;
}

TEST(SamplerOptions, RejectBadValuesClearly) {
  using namespace mdiff;
  MD_EXPECT_ERROR(DDIMSampler(DDIMOptions(0)), "num_steps", "got 0");
  MD_EXPECT_ERROR(DDIMSampler(DDIMOptions(10).eta(1.5)), "eta", "1.5");
  MD_EXPECT_ERROR(UniPCSampler(UniPCOptions(10).order(4)), "order", "got 4");
  MD_EXPECT_ERROR(EulerSampler(SigmaSamplerOptions(10).rho(-1)), "rho", "-1");
  MD_EXPECT_ERROR(EulerSampler(SigmaSamplerOptions(10).sigma_min(2).sigma_max(1)), "sigma_max", "sigma_min");
  MD_EXPECT_ERROR(PCSampler(PCOptions(10).snr(0)), "snr", "got 0");
  MD_EXPECT_ERROR(DDIMOptions::from_json(R"({"num_steps": 10, "etaa": 0})"), "unknown key 'etaa'");
  MD_EXPECT_ERROR(DDIMOptions::from_json(R"({"num_steps": "ten"})"), "num_steps", "\"ten\"");
  MD_EXPECT_ERROR(DDIMOptions::from_json(R"({"num_steps": 10.5})"), "'num_steps' must be an integer", "10.5");
  MD_EXPECT_ERROR(UniPCOptions::from_json(R"({"use_corrector": 1})"), "'use_corrector' must be a boolean");
  MD_EXPECT_ERROR(DDIMOptions::from_json(R"({"timesteps": [9, 5.5]})"), "array of integers");
  MD_EXPECT_ERROR(DDPMOptions::from_json(R"({"variance": "huge"})"), "unknown DDPMVariance 'huge'");
  MD_EXPECT_ERROR(DDIMOptions::from_json("[1, 2]"), "expected a JSON object");
}

TEST(SamplerOptions, StepCountsBeyondTheScheduleAreRejected) {
  mdiff_test::GaussianData data = mdiff_test::default_gaussian();
  const auto schedule = mdiff::NoiseSchedule::linear(100);
  const auto den = data.denoiser(schedule);
  MD_EXPECT_ERROR(mdiff::DDIMSampler(mdiff::DDIMOptions(101)).sample(den, {2, 3}, 0), "[1, 100]", "101");
  MD_EXPECT_ERROR(mdiff::DDIMSampler(mdiff::DDIMOptions(10).timesteps({50, 50, 10})).sample(den, {2, 3}, 0),
                  "strictly decreasing");
  // x_T and generators must agree.
  auto gens = mdiff::make_sample_generators(0, 0, 2);
  MD_EXPECT_ERROR(mdiff::DDIMSampler(mdiff::DDIMOptions(10)).sample(den, at::randn({3, 3}), gens), "one generator per sample");
}

TEST(DDIM, InversionReturnsToTheNoise) {
  mdiff_test::GaussianData data = mdiff_test::default_gaussian();
  const auto schedule = mdiff::NoiseSchedule::linear(1000);
  const auto den = data.denoiser(schedule);
  auto gens = mdiff::make_sample_generators(5, 0, 16);
  const at::Tensor x_T = mdiff::randn_per_sample({16, 3}, gens, at::kDouble);
  double previous = 1e9;
  for (int64_t steps : {25, 100, 400}) {
    mdiff::DDIMSampler ddim{mdiff::DDIMOptions(steps)};
    const at::Tensor x0 = ddim.sample(den, x_T, gens);
    const double err = (ddim.invert(den, x0) - x_T).abs().max().item<double>();
    EXPECT_LT(err, previous) << steps;
    previous = err;
  }
  EXPECT_LT(previous, 0.05);
}

TEST(Guidance, CombinesConditionalAndUnconditionalOutputs) {
  const auto schedule = mdiff::NoiseSchedule::linear(1000);
  // eps = x * 0 + cond (a constant per sample): guided eps = u + s (c - u).
  mdiff::Denoiser den([](const at::Tensor& x, const at::Tensor&, const at::Tensor& c) {
    return at::zeros_like(x) + c.to(x.scalar_type()).reshape({-1, 1});
  }, schedule);
  const at::Tensor x = at::randn({2, 3}, at::kDouble);
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  const auto out = den.predict_at(x, at::full({2}, 500.0, opts), at::full({2}, 0.5, opts), at::tensor({1.0, 2.0}),
                                  at::tensor({0.0, 0.0}), 3.0);
  EXPECT_TRUE(at::allclose(out.eps, at::tensor({3.0, 6.0}, at::kDouble).reshape({2, 1}).expand({2, 3})));
  // Guidance rescale 1 brings the guided output's per-sample std to the conditional one's.
  mdiff::Denoiser den2([](const at::Tensor& x, const at::Tensor&, const at::Tensor& c) {
    return x * c.to(x.scalar_type()).reshape({-1, 1});
  }, schedule);
  const auto g = den2.predict_at(x, at::full({2}, 500.0, opts), at::full({2}, 0.5, opts), at::tensor({1.0, 1.0}),
                                 at::tensor({0.5, 0.5}), 4.0, 1.0);
  EXPECT_TRUE(at::allclose(g.eps.std(1), x.std(1), 1e-9, 1e-9));
}

}  // namespace
