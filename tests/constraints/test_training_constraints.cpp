// Training-time constraints: known answers for each term, the input-perturbation hook, the
// adversarial term's checkpointed state, and the factory's errors.

#include <manifold_diffusion/manifold_diffusion.h>

#include "models/model_test_util.h"
#include "test_util.h"

#include <ATen/ATen.h>

#include <gtest/gtest.h>

#include <filesystem>

namespace fs = std::filesystem;

namespace {

using mdiff_test::SmallNetworkTest;

// The plane { c + P^T u } in R^D (P [d, D] with orthonormal rows): a stand-in Manifold with an exact
// projector.
class Plane : public mdiff::Manifold {
 public:
  Plane(at::Tensor rows, at::Tensor centre) : p_(std::move(rows)), c_(std::move(centre)) {}
  std::string name() const override { return "plane"; }
  int64_t ambient_dim() const override { return p_.size(1); }
  int64_t intrinsic_dim() const override { return p_.size(0); }
  at::Tensor project(const at::Tensor& x) const override { return (x - c_).matmul(p_.t()).matmul(p_) + c_; }
  at::Tensor tangent_basis(const at::Tensor& x) const override {
    return p_.t().unsqueeze(0).expand({x.size(0), p_.size(1), p_.size(0)}).contiguous();
  }

 private:
  at::Tensor p_, c_;
};

struct Fixture {
  mdiff::Denoiser denoiser{[](const at::Tensor& x, const at::Tensor&, const at::Tensor&) { return at::zeros_like(x); },
                           mdiff::NoiseSchedule::linear(100)};
  at::Tensor x0, x_t, t, noise, cond, output, alpha_bar;
  mdiff::DenoiserOutput pred;
  mdiff::LossContext context() const {
    return mdiff::LossContext{denoiser, x0, x_t, t, noise, cond, output, pred, alpha_bar, 0};
  }
};

Fixture fixture(int64_t n, int64_t dim, uint64_t seed) {
  Fixture f;
  at::Generator g = mdiff::make_generator(seed);
  f.x0 = at::randn({n, dim}, g, at::TensorOptions(at::kFloat));
  f.noise = at::randn({n, dim}, g, at::TensorOptions(at::kFloat));
  f.t = at::arange(n, at::kDouble) * (99.0 / static_cast<double>(std::max<int64_t>(n - 1, 1)));
  f.alpha_bar = f.denoiser.alpha_bar_at(f.t);
  const at::Tensor ab = f.alpha_bar.to(at::kFloat).unsqueeze(1);
  f.x_t = ab.sqrt() * f.x0 + (1 - ab).sqrt() * f.noise;
  f.pred.x0 = f.x0.clone();
  f.pred.eps = f.noise.clone();
  f.output = f.pred.eps;
  return f;
}

TEST(TimeWeight, WindowAndSnrWeighting) {
  const at::Tensor ab = at::tensor({0.1, 0.5, 0.8, 0.99}, at::kDouble);  // SNR 1/9, 1, 4, 99
  EXPECT_TRUE(at::allclose(mdiff::TimeWeight()(ab), at::ones({4})));
  EXPECT_TRUE(at::allclose(mdiff::TimeWeight().snr_min(1).snr_max(10)(ab), at::tensor({0.f, 1.f, 1.f, 0.f})));
  EXPECT_TRUE(at::allclose(mdiff::TimeWeight().snr_min(1).snr_weighted(true)(ab), at::tensor({0.f, 0.5f, 0.8f, 0.99f})));
  MD_EXPECT_ERROR(mdiff::TimeWeight().snr_min(3).snr_max(2).validate("x"), "snr_max", "2");
}

// x_t = sqrt(ab) x0 + sqrt(1 - ab) (eps + gamma xi) with xi from the generator; the target keeps eps
// (checked through the loss of a network that outputs zeros, for eps- and v-prediction).
TEST(InputPerturbation, NoisedInputMatchesTheFormulaAndTheTargetIsUnperturbed) {
  const double gamma = 0.1;
  mdiff::InputPerturbation ip(gamma);
  const at::Tensor x0 = at::randn({64, 3});
  const at::Tensor noise = at::randn({64, 3});
  at::Generator g1 = mdiff::make_generator(5), g2 = mdiff::make_generator(5);
  const at::Tensor input = ip.input_noise(noise, g1);
  const at::Tensor xi = at::randn({64, 3}, g2, at::TensorOptions(at::kFloat));
  EXPECT_TRUE(at::allclose(input, noise + gamma * xi));
  EXPECT_NEAR(ip.scalars().at("input_noise_std"), input.std().item<double>(), 1e-9);

  const at::Tensor t = at::full({64}, 40.0, at::kDouble);
  for (auto pred : {mdiff::PredictionType::Epsilon, mdiff::PredictionType::VPrediction}) {
    mdiff::Denoiser d([](const at::Tensor& x, const at::Tensor&, const at::Tensor&) { return at::zeros_like(x); },
                      mdiff::NoiseSchedule::linear(100), pred);
    const auto lt = d.training_loss_terms(x0, t, noise, {}, input);
    const double ab = d.alpha_bar_at(t)[0].item<double>();
    EXPECT_TRUE(at::allclose(lt.x_t, std::sqrt(ab) * x0 + std::sqrt(1 - ab) * (noise + gamma * xi), 1e-5, 1e-6));
    const at::Tensor target = pred == mdiff::PredictionType::Epsilon
                                  ? noise
                                  : std::sqrt(ab) * noise - std::sqrt(1 - ab) * x0;  // the network outputs 0
    EXPECT_NEAR(lt.loss.item<double>(), target.pow(2).mean().item<double>(), 1e-5);
  }
  MD_EXPECT_ERROR(mdiff::InputPerturbation(-0.5), "gamma", "-0.5");
}

// Through the Trainer: the x_t a loss term sees is made of the target noise plus gamma times a
// unit Gaussian.
class Spy : public mdiff::LossTerm {
 public:
  std::string name() const override { return "spy"; }
  at::Tensor loss(const mdiff::LossContext& c) override {
    const at::Tensor ab = c.alpha_bar.to(at::kFloat).unsqueeze(1);
    residual = ((c.x_t - ab.sqrt() * c.x0) / (1 - ab).sqrt() - c.noise).detach();
    return at::zeros({});
  }
  at::Tensor residual;
};

TEST_F(SmallNetworkTest, TrainerFormsXtWithThePerturbedNoise) {
  const at::Tensor data = at::randn({512, 4});
  mdiff::MLPDenoiser net(mdiff::MLPDenoiserOptions(4).hidden(16).num_blocks(1));
  mdiff::Trainer trainer(mdiff::TrainerOptions(1), net.ptr(), mdiff::network_function(net),
                         mdiff::NoiseSchedule::linear(100), mdiff::DenoiserOptions(),
                         mdiff::random_batches(data, {}, 256, 1));
  trainer.add_loss_term(std::make_shared<mdiff::InputPerturbation>(0.2));
  auto spy = std::make_shared<Spy>();
  trainer.add_loss_term(spy);
  trainer.train_step();
  const double s = (spy->residual / 0.2).std().item<double>();
  EXPECT_NEAR(s, 1.0, 0.08);
}

TEST(IsotropyRegulariser, EqualsTheFormulaAndVanishesForUnitVariance) {
  Fixture f = fixture(8, 4, 1);
  mdiff::IsotropyRegulariser iso(0.3);
  f.pred.eps = at::full({8, 4}, 2.0);  // mean square 4
  EXPECT_NEAR(iso.loss(f.context()).item<double>(), 0.3 * 9.0, 1e-6);
  EXPECT_NEAR(iso.scalars().at("eps_sq_mean"), 4.0, 1e-6);
  f.pred.eps = at::where(at::rand({8, 4}) > 0.5, at::ones({8, 4}), -at::ones({8, 4}));
  EXPECT_NEAR(iso.loss(f.context()).item<double>(), 0.0, 1e-7);
  // A window keeps the samples with SNR >= 1: rows whose mean square is 4 there, 1 elsewhere.
  mdiff::IsotropyRegulariser windowed(1.0, mdiff::TimeWeight().snr_min(1.0));
  const at::Tensor high = (f.alpha_bar >= 0.5).to(at::kFloat).unsqueeze(1);
  f.pred.eps = 1.0 + high * at::ones({8, 4});
  ASSERT_GT(high.sum().item<double>(), 0);
  EXPECT_NEAR(windowed.loss(f.context()).item<double>(), 9.0, 1e-5);
  MD_EXPECT_ERROR(mdiff::IsotropyRegulariser(-2.0), "lambda", "-2");
}

TEST(TangentRegulariser, ZeroOnAPlaneAndTheNormalOffsetOtherwise) {
  const int64_t dim = 6;
  Fixture f = fixture(10, dim, 2);
  at::Generator g = mdiff::make_generator(9);
  const at::Tensor rows = std::get<0>(at::linalg_qr(at::randn({dim, 2}, g, at::TensorOptions(at::kFloat)))).t();
  const at::Tensor centre = at::randn({dim}, g, at::TensorOptions(at::kFloat));
  auto plane = std::make_shared<Plane>(rows, centre);
  // Clean samples and predictions on the plane, predictions elsewhere on it than x0.
  f.x0 = plane->project(f.x0);
  f.pred.x0 = plane->project(at::randn({10, dim}, g, at::TensorOptions(at::kFloat)));
  mdiff::TangentRegulariser reg(plane, 2.0);
  EXPECT_NEAR(reg.loss(f.context()).item<double>(), 0.0, 1e-9);
  // A normal offset of length 0.5 on every prediction: |normal|^2 / D = 0.25 / 6, weighted by alpha_bar.
  at::Tensor n = at::randn({10, dim}, g, at::TensorOptions(at::kFloat));
  n = n - plane->project(n + centre) + centre;  // remove the tangent part
  n = n / n.norm(2, 1, true);
  f.pred.x0 = f.pred.x0 + 0.5 * n;
  const double expected = 2.0 * (f.alpha_bar.to(at::kFloat) * (0.25 / dim)).mean().item<double>();
  EXPECT_NEAR(reg.loss(f.context()).item<double>(), expected, 1e-6);
  EXPECT_NEAR(reg.scalars().at("normal_sq"), 0.25 / dim, 1e-6);
  MD_EXPECT_ERROR(mdiff::TangentRegulariser(nullptr), "needs a manifold");
}

TEST_F(SmallNetworkTest, AutoencoderRegulariserEqualsItsFormula) {
  Fixture f = fixture(6, 4, 3);
  mdiff::Autoencoder ae(mdiff::AutoencoderOptions::mlp(4, 2).hidden(16));
  mdiff::AutoencoderRegulariser reg(ae, 1.0, 0.5, mdiff::TimeWeight());
  const at::Tensor d = 0.1 * at::randn({6, 4});
  f.pred.x0 = f.x0 + d;
  at::NoGradGuard no_grad;
  const at::Tensor z0 = ae->encode(f.x0);
  const at::Tensor latent = (ae->encode(f.x0 + d) - z0).pow(2).mean(1) / z0.var(0, false).mean();
  const at::Tensor energy = (f.x0 + d - ae->forward(f.x0 + d)).pow(2).mean(1);
  EXPECT_NEAR(reg.loss(f.context()).item<double>(), (latent + 0.5 * energy).mean().item<double>(), 1e-6);
  EXPECT_NEAR(reg.scalars().at("latent_sq"), latent.mean().item<double>(), 1e-6);
  // The default window (SNR >= 1) drops the noisy half.
  mdiff::AutoencoderRegulariser windowed(ae, 1.0, 0.0);
  const at::Tensor keep = (f.alpha_bar >= 0.5).to(at::kFloat);
  EXPECT_NEAR(windowed.loss(f.context()).item<double>(), (keep * latent).mean().item<double>(), 1e-6);
}

// ---- Adversarial: state and resume ----

std::string temp_dir(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("md_tc_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

struct AdvRun {
  mdiff::MLPDenoiser net{nullptr};
  std::shared_ptr<mdiff::AdversarialX0> adv;
  std::unique_ptr<mdiff::Trainer> trainer;
};

AdvRun adv_run(const std::string& dir, uint64_t init_seed, uint64_t adv_seed, const at::Tensor& data) {
  at::manual_seed(init_seed);
  AdvRun r;
  r.net = mdiff::MLPDenoiser(mdiff::MLPDenoiserOptions(2).hidden(16).num_blocks(1).time_embed_dim(8));
  r.trainer = std::make_unique<mdiff::Trainer>(
      mdiff::TrainerOptions(8).lr(1e-2).ema_decay(0.9).grad_accumulation(2).out_dir(dir).checkpoint_every(4).seed(3),
      r.net.ptr(), mdiff::network_function(r.net), mdiff::NoiseSchedule::linear(100), mdiff::DenoiserOptions(),
      mdiff::random_batches(data, {}, 16, 4));
  r.adv = std::make_shared<mdiff::AdversarialX0>(
      mdiff::AdversarialX0Options({2}).hidden(16).weight(0.5).lr(1e-2).r1_every(3).seed(adv_seed));
  r.trainer->add_loss_term(r.adv);
  return r;
}

void expect_same(torch::nn::Module& a, torch::nn::Module& b) {
  const auto pa = a.named_parameters(true);
  const auto pb = b.named_parameters(true);
  ASSERT_EQ(pa.size(), pb.size());
  for (const auto& p : pa) EXPECT_TRUE(at::equal(p.value(), pb[p.key()])) << p.key();
}

TEST_F(SmallNetworkTest, AdversarialStateRoundTripsAndAResumedRunEqualsAnUninterruptedOne) {
  const at::Tensor data = at::randn({128, 2});
  const std::string da = temp_dir("adv_a"), db = temp_dir("adv_b");
  AdvRun a = adv_run(da, 1, 7, data);
  std::map<std::string, double> seen;
  a.trainer->add_callback(std::make_shared<mdiff::LambdaCallback>([&](mdiff::Trainer&, const mdiff::TrainStepInfo& s) {
    seen = s.scalars;
    return false;
  }));
  a.trainer->fit();
  for (const char* k : {"loss_adv", "adv_d_loss", "adv_d_acc"}) EXPECT_TRUE(seen.count(k)) << k;
  EXPECT_GE(seen.at("adv_d_acc"), 0.0);
  EXPECT_LE(seen.at("adv_d_acc"), 1.0);

  // state() -> load_state() into a discriminator with other weights.
  mdiff::AdversarialX0 other(mdiff::AdversarialX0Options({2}).hidden(16).seed(99));
  other.load_state(a.adv->state());
  expect_same(other.discriminator(), a.adv->discriminator());
  const auto sa = a.adv->state(), so = other.state();
  ASSERT_EQ(sa.size(), so.size());
  for (size_t i = 0; i < sa.size(); ++i) EXPECT_TRUE(at::equal(sa[i].second, so[i].second)) << sa[i].first;

  // Killed after the step-4 checkpoint, resumed with other initial weights everywhere.
  AdvRun b = adv_run(db, 1, 7, data);
  b.trainer->add_callback(std::make_shared<mdiff::LambdaCallback>([](mdiff::Trainer&, const mdiff::TrainStepInfo& s) {
    if (s.step == 6) throw std::runtime_error("simulated kill");
    return false;
  }));
  EXPECT_THROW(b.trainer->fit(), std::runtime_error);
  AdvRun c = adv_run(db, 50, 51, data);
  ASSERT_TRUE(c.trainer->resume());
  EXPECT_EQ(c.trainer->step(), 4);
  c.trainer->fit();
  expect_same(*a.net, *c.net);
  expect_same(a.adv->discriminator(), c.adv->discriminator());
  fs::remove_all(da);
  fs::remove_all(db);
}

TEST(TrainingConstraintFactory, BuildsByNameAndRejectsBadSpecs) {
  mdiff::TrainingConstraintContext ctx;
  ctx.sample_shape = {2};
  auto ip = mdiff::make_training_constraint(mdiff::ConstraintSpec::parse("ip:gamma=0.2"), ctx);
  EXPECT_EQ(ip->name(), "ip");
  EXPECT_NE(ip->describe().find("0.2"), std::string::npos);
  auto iso = mdiff::make_training_constraint(mdiff::ConstraintSpec::parse("iso:lambda=0.5,snr_min=1"), ctx);
  EXPECT_EQ(iso->time_weight().snr_min(), 1.0);
  EXPECT_EQ(mdiff::make_training_constraint(mdiff::ConstraintSpec::parse("adversarial:weight=0.1"), ctx)->name(), "adv");
  MD_EXPECT_ERROR(mdiff::make_training_constraint(mdiff::ConstraintSpec::parse("isotropy"), ctx),
                  "unknown training constraint 'isotropy'", "ip, iso, tangent, ae, adversarial");
  MD_EXPECT_ERROR(mdiff::make_training_constraint(mdiff::ConstraintSpec::parse("iso:lambda=-1"), ctx), "lambda",
                  "-1");
  MD_EXPECT_ERROR(mdiff::make_training_constraint(mdiff::ConstraintSpec::parse("ip:gama=0.1"), ctx), "gama");
  MD_EXPECT_ERROR(mdiff::make_training_constraint(mdiff::ConstraintSpec::parse("iso:snr_min=5,snr_max=2"), ctx),
                  "snr_max", "2");
  MD_EXPECT_ERROR(mdiff::make_training_constraint(mdiff::ConstraintSpec::parse("tangent"), ctx), "needs a manifold");
  MD_EXPECT_ERROR(mdiff::make_training_constraint(mdiff::ConstraintSpec::parse("ae"), ctx), "needs an autoencoder");
  MD_EXPECT_ERROR(mdiff::make_training_constraint(mdiff::ConstraintSpec::parse("adversarial:r1_every=0"), ctx),
                  "r1_every", "0");
}

}  // namespace

namespace {

TEST_F(SmallNetworkTest, MlpDenoiserTakesAContinuousConditioningVector) {
  mdiff::MLPDenoiser net(mdiff::MLPDenoiserOptions(3).hidden(16).num_blocks(1).cond_dim(2).zero_init_output(false));
  const at::Tensor x = at::randn({4, 3});
  const at::Tensor t = at::full({4}, 10.0);
  const at::Tensor a = net->forward(x, t, at::zeros({4, 2}));
  EXPECT_TRUE(at::allclose(a, net->forward(x, t)));  // undefined conditioning = the zero vector
  EXPECT_FALSE(at::allclose(a, net->forward(x, t, at::ones({4, 2}))));
  MD_EXPECT_ERROR(net->forward(x, t, at::zeros({4, 3})), "[4, 2]", "[4, 3]");
  MD_EXPECT_ERROR(mdiff::MLPDenoiserOptions(3).cond_dim(2).num_classes(3).validate(), "cond_dim = 2", "num_classes = 3");
  const auto back = mdiff::MLPDenoiserOptions::from_json(mdiff::MLPDenoiserOptions(3).cond_dim(2).to_json());
  EXPECT_EQ(back.cond_dim(), 2);
}

// PCA coordinates of points on a line in R^3 (with a small orthogonal wobble): standardised, the
// out-of-sample map agrees with the fit, and sampled coordinates are rows of the fitted ones.
TEST(EmbeddingConditioning, StandardisedCoordinatesOutOfSampleAndEmpiricalDraws) {
  at::Generator g = mdiff::make_generator(4);
  const at::Tensor s = at::rand({300, 1}, g, at::TensorOptions(at::kFloat)) * 4 - 2;
  const at::Tensor dir = at::tensor({0.6f, 0.8f, 0.0f});
  const at::Tensor x = s * dir + 0.01 * at::randn({300, 3}, g, at::TensorOptions(at::kFloat));
  mdiff::EmbeddingConditioning ec(mdiff::EmbeddingConditioningOptions().method("pca").dims(1).fit_points(200));
  const at::Tensor c = ec.fit(x);
  ASSERT_EQ(c.sizes(), at::IntArrayRef({300, 1}));
  EXPECT_NEAR(c.mean().item<double>(), 0.0, 1e-5);
  EXPECT_NEAR(c.std().item<double>(), 1.0, 1e-4);
  // The coordinate is an affine function of s (up to sign): |corr| ~ 1.
  const double corr = ((c - c.mean()) * (s - s.mean())).mean().item<double>() / (c.std(false) * s.std(false)).item<double>();
  EXPECT_GT(std::abs(corr), 0.999);
  EXPECT_TRUE(at::allclose(ec.coordinates(x), c, 1e-4, 1e-4));
  const at::Tensor drawn = ec.sample(50, 3);
  const at::Tensor gap = std::get<0>(at::cdist(drawn, c).min(1));
  EXPECT_LT(gap.max().item<double>(), 1e-6);
  MD_EXPECT_ERROR(mdiff::EmbeddingConditioningOptions::from_spec(mdiff::ConstraintSpec::parse("embed:method=umap"), 0),
                  "umap", "tsne");
  MD_EXPECT_ERROR(mdiff::EmbeddingConditioningOptions::from_spec(mdiff::ConstraintSpec::parse("embed:dim=2"), 0), "dim");
}

}  // namespace
