#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/models/denoiser.h>

#include "test_util.h"

#include <ATen/ATen.h>

namespace {

using mdiff::Denoiser;
using mdiff::DenoiserOptions;
using mdiff::PredictionType;

const auto kDouble = at::TensorOptions().dtype(at::kDouble);

// A model that knows the true x0 and eps and answers with the exact target of its parameterisation.
struct Truth {
  at::Tensor x0, eps;
};

Denoiser truthful(const Truth& truth, const mdiff::NoiseSchedule& schedule, DenoiserOptions opts) {
  auto holder = std::make_shared<Truth>(truth);
  return Denoiser(
      [holder, schedule, opts](const at::Tensor& x_in, const at::Tensor& t, const at::Tensor&) {
        at::Tensor ab;
        if (opts.prediction() == PredictionType::EDM) {
          const at::Tensor sv = at::exp(4 * t);
          ab = 1 / (1 + sv * sv);
        } else {
          ab = at::full({x_in.size(0)}, schedule.alpha_bar_at(t[0].item<double>()), kDouble);
        }
        Denoiser probe([](const at::Tensor& x, const at::Tensor&, const at::Tensor&) { return x; }, schedule, opts);
        return probe.target(holder->x0, holder->eps, ab);
      },
      schedule, opts);
}

TEST(Denoiser, EveryParameterisationRecoversX0AndEps) {
  const auto schedule = mdiff::NoiseSchedule::cosine(1000);
  const Truth truth{at::randn({4, 3}, kDouble), at::randn({4, 3}, kDouble)};
  for (auto p : {PredictionType::Epsilon, PredictionType::Sample, PredictionType::VPrediction, PredictionType::EDM}) {
    for (double t : {0.0, 10.0, 500.0, 990.0}) {
      const Denoiser den = truthful(truth, schedule, DenoiserOptions(p));
      const double ab = schedule.alpha_bar_at(t);
      const at::Tensor x_t = std::sqrt(ab) * truth.x0 + std::sqrt(1 - ab) * truth.eps;
      const auto out = den.predict(x_t, t);
      EXPECT_TRUE(at::allclose(out.x0, truth.x0, 1e-8, 1e-8)) << p << " t=" << t;
      EXPECT_TRUE(at::allclose(out.eps, truth.eps, 1e-8, 1e-8)) << p << " t=" << t;
      const at::Tensor abt = at::full({4}, ab, kDouble);
      EXPECT_TRUE(at::allclose(Denoiser::velocity(out, abt), std::sqrt(ab) * truth.eps - std::sqrt(1 - ab) * truth.x0,
                               1e-8, 1e-8));
      EXPECT_TRUE(at::allclose(Denoiser::score(out, x_t, abt), -truth.eps / std::sqrt(1 - ab), 1e-8, 1e-8));
    }
  }
}

TEST(Denoiser, APerfectModelHasZeroTrainingLoss) {
  const auto schedule = mdiff::NoiseSchedule::linear(1000);
  const Truth truth{at::randn({3, 2}, kDouble), at::randn({3, 2}, kDouble)};
  for (auto p : {PredictionType::Epsilon, PredictionType::Sample, PredictionType::VPrediction, PredictionType::EDM}) {
    const Denoiser den = truthful(truth, schedule, DenoiserOptions(p).weighting(mdiff::LossWeighting::MinSNR));
    const auto terms = den.training_loss_terms(truth.x0, at::full({3}, 321.0, kDouble), truth.eps);
    EXPECT_LT(terms.loss.item<double>(), 1e-16) << p;
    EXPECT_EQ(terms.mse.sizes(), (std::vector<int64_t>{3}));
  }
}

TEST(Denoiser, LossWeightsFollowTheirFormulas) {
  const auto schedule = mdiff::NoiseSchedule::linear(1000);
  auto ident = [](const at::Tensor& x, const at::Tensor&, const at::Tensor&) { return x; };
  const double snr = 10.0;
  const at::Tensor ab = at::full({1}, snr / (1 + snr), kDouble);
  auto w = [&](DenoiserOptions o) { return Denoiser(ident, schedule, o).loss_weight(ab).item<double>(); };
  using mdiff::LossWeighting;
  EXPECT_DOUBLE_EQ(w(DenoiserOptions(PredictionType::Epsilon)), 1.0);
  EXPECT_NEAR(w(DenoiserOptions(PredictionType::Epsilon).weighting(LossWeighting::MinSNR)), 5.0 / 10.0, 1e-12);
  EXPECT_NEAR(w(DenoiserOptions(PredictionType::Sample).weighting(LossWeighting::MinSNR)), 5.0, 1e-12);
  EXPECT_NEAR(w(DenoiserOptions(PredictionType::VPrediction).weighting(LossWeighting::MinSNR)), 5.0 / 11.0, 1e-12);
  EXPECT_NEAR(w(DenoiserOptions(PredictionType::Epsilon).weighting(LossWeighting::P2).p2_k(1).p2_gamma(0.5)),
              1 / std::sqrt(11.0), 1e-12);
  EXPECT_NEAR(w(DenoiserOptions(PredictionType::EDM).weighting(LossWeighting::EDM)), 1.0, 1e-12);
  // EDM weighting of an x0 model: lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 with sigma^2 = 1 / snr.
  EXPECT_NEAR(w(DenoiserOptions(PredictionType::Sample).weighting(LossWeighting::EDM)),
              (0.1 + 0.25) / (0.1 * 0.25), 1e-10);
}

TEST(Denoiser, EdmNetworkTimeIsQuarterLogSigma) {
  const auto schedule = mdiff::NoiseSchedule::linear(1000);
  at::Tensor seen;
  Denoiser den([&seen](const at::Tensor& x, const at::Tensor& t, const at::Tensor&) { seen = t.clone(); return x * 0; },
               schedule, DenoiserOptions(PredictionType::EDM));
  (void)den.predict(at::randn({2, 3}, kDouble), 400.0);
  EXPECT_NEAR(seen[0].item<double>(), std::log(schedule.ve_sigma(400)) / 4, 1e-10);
}

TEST(Denoiser, TrainingNoiseLevels) {
  const auto schedule = mdiff::NoiseSchedule::linear(1000);
  auto ident = [](const at::Tensor& x, const at::Tensor&, const at::Tensor&) { return x; };
  at::Generator g = mdiff::make_generator(1);
  const at::Tensor tu = Denoiser(ident, schedule).sample_timesteps(5000, g);
  EXPECT_GE(tu.min().item<double>(), 0);
  EXPECT_LE(tu.max().item<double>(), 999);
  EXPECT_TRUE(at::equal(tu, tu.round()));
  EXPECT_NEAR(tu.mean().item<double>(), 499.5, 4 * 289 / std::sqrt(5000.0));
  const Denoiser edm(ident, schedule, DenoiserOptions(PredictionType::EDM).noise_sampling(mdiff::NoiseLevelSampling::LogNormalSigma));
  const at::Tensor tl = edm.sample_timesteps(20000, g);
  std::vector<double> log_sigma;
  for (int64_t i = 0; i < tl.size(0); ++i) {
    const double ab = schedule.alpha_bar_at(tl[i].item<double>());
    log_sigma.push_back(0.5 * std::log((1 - ab) / ab));
  }
  const at::Tensor ls = at::tensor(log_sigma, kDouble);
  EXPECT_NEAR(ls.mean().item<double>(), -1.2, 0.05);
  EXPECT_NEAR(ls.std().item<double>(), 1.2, 0.05);
}

TEST(Denoiser, LearnedVarianceSplitsTheOutputAndItsBoundVanishesWhenExact) {
  const auto schedule = mdiff::NoiseSchedule::linear(1000);
  const Truth truth{at::rand({2, 1, 4, 4}, kDouble) * 2 - 1, at::randn({2, 1, 4, 4}, kDouble)};
  // eps channel exact, variance channel -1 (= the posterior variance).
  auto holder = std::make_shared<Truth>(truth);
  Denoiser den([holder](const at::Tensor& x, const at::Tensor&, const at::Tensor&) {
    return at::cat({holder->eps, -at::ones_like(x)}, 1);
  }, schedule, DenoiserOptions(PredictionType::Epsilon).learned_variance(true));
  const auto terms = den.training_loss_terms(truth.x0, at::tensor({300.0, 700.0}, kDouble), truth.eps);
  ASSERT_TRUE(terms.vlb.defined());
  EXPECT_LT(terms.vlb.abs().max().item<double>(), 1e-9) << terms.vlb;
  EXPECT_EQ(terms.pred.var_values.size(1), 1);
  // At t = 0 the term is the decoder's negative log-likelihood: positive.
  const auto t0 = den.training_loss_terms(truth.x0, at::tensor({0.0, 0.0}, kDouble), truth.eps);
  EXPECT_GT(t0.vlb.min().item<double>(), 0);
  MD_EXPECT_ERROR(den.training_loss_terms(truth.x0, at::tensor({0.5, 3.0}, kDouble), truth.eps), "integer timesteps");
}

TEST(Denoiser, RejectsBadInput) {
  const auto schedule = mdiff::NoiseSchedule::linear(1000);
  Denoiser wrong([](const at::Tensor& x, const at::Tensor&, const at::Tensor&) { return at::cat({x, x}, 1); }, schedule);
  MD_EXPECT_ERROR(wrong.predict(at::randn({2, 3}), 5.0), "model returned shape [2, 6]", "expected 3 channels");
  const auto zt = schedule.rescaled_zero_terminal_snr();
  Denoiser eps([](const at::Tensor& x, const at::Tensor&, const at::Tensor&) { return x; }, zt);
  MD_EXPECT_ERROR(eps.predict(at::randn({2, 3}), 999.0), "zero terminal SNR", "epsilon");
  Denoiser v([](const at::Tensor& x, const at::Tensor&, const at::Tensor&) { return x; }, zt, PredictionType::VPrediction);
  EXPECT_NO_THROW(v.predict(at::randn({2, 3}), 999.0));
  MD_EXPECT_ERROR(Denoiser(nullptr, schedule), "model function is empty");
  auto ident = [](const at::Tensor& x, const at::Tensor&, const at::Tensor&) { return x; };
  MD_EXPECT_ERROR(Denoiser(ident, schedule, DenoiserOptions().sigma_data(-1)), "sigma_data", "-1");
  MD_EXPECT_ERROR(v.predict_at(at::randn({2, 3}), at::zeros({2}), at::full({2}, 1.5, kDouble)), "alpha_bar", "1.5");
  MD_EXPECT_ERROR(v.predict(at::randn({3}), 5.0), "x_t", "[N, ...]");
}

TEST(Denoiser, OptionsRoundTripThroughJson) {
  const auto o = DenoiserOptions(PredictionType::VPrediction).weighting(mdiff::LossWeighting::P2).p2_k(2).learned_variance(true);
  EXPECT_EQ(DenoiserOptions::from_json(o.to_json()).to_json(), o.to_json());
  MD_EXPECT_ERROR(DenoiserOptions::from_json(R"({"prediction": "noise"})"), "unknown PredictionType 'noise'");
  MD_EXPECT_ERROR(DenoiserOptions::from_json(R"({"sigma": 1})"), "unknown key 'sigma'");
}

}  // namespace
