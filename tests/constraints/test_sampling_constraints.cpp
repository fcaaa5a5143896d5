// Measurement operators and sampling-time constraints, checked against closed forms: adjoint
// identities, exact projections, and posterior means of Gaussian data under an exact denoiser.
#include <manifold_diffusion/constraints/measurement.h>
#include <manifold_diffusion/constraints/sampling.h>
#include <manifold_diffusion/constraints/spec.h>
#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/samplers/ddim.h>
#include <manifold_diffusion/samplers/ddpm.h>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "../samplers/gaussian_oracle.h"
#include "../test_util.h"

namespace {

namespace mdiff = manifold_diffusion;

at::Tensor images(int64_t n, int64_t c, int64_t h, int64_t w, uint64_t seed) {
  at::Generator g = mdiff::make_generator(seed);
  return at::randn({n, c, h, w}, g, at::kDouble);
}

double ip(const at::Tensor& a, const at::Tensor& b) { return (a * b).sum().item<double>(); }

std::vector<std::shared_ptr<mdiff::MeasurementOperator>> all_operators() {
  return {mdiff::InpaintOperator::make(mdiff::box_mask(8, 8, 4, 4)),
          mdiff::InpaintOperator::make(mdiff::random_mask(8, 8, 0.7, 3)), mdiff::AveragePoolOperator::make(2),
          mdiff::BlurOperator::make(3, 1.0, /*ridge=*/0.0)};
}

// ------------------------------------------------------------------------------------------------
// Specifications

TEST(ConstraintSpec, ParsesNameAndTypedOptions) {
  auto s = mdiff::ConstraintSpec::parse("dps:scale=0.25,steps=7,noise=poisson,on=true");
  EXPECT_EQ(s.name(), "dps");
  EXPECT_DOUBLE_EQ(s.get_double("scale", 1.0), 0.25);
  EXPECT_EQ(s.get_int("steps", 1), 7);
  EXPECT_EQ(s.get_string("noise", ""), "poisson");
  EXPECT_TRUE(s.get_bool("on", false));
  EXPECT_DOUBLE_EQ(s.get_double("absent", 3.5), 3.5);
  s.check_all_used();
  EXPECT_EQ(mdiff::ConstraintSpec::parse("clip").name(), "clip");
}

TEST(ConstraintSpec, RejectsMalformedTextAndUnknownKeys) {
  MD_EXPECT_ERROR(mdiff::ConstraintSpec::parse(""), "empty name");
  MD_EXPECT_ERROR(mdiff::ConstraintSpec::parse("dps:scale"), "'scale' is not key=value");
  MD_EXPECT_ERROR(mdiff::ConstraintSpec::parse("dps:a=1,a=2"), "'a' given twice");
  auto s = mdiff::ConstraintSpec::parse("dps:scael=1");
  s.get_double("scale", 1.0);
  MD_EXPECT_ERROR(s.check_all_used(), "unknown option(s) scael", "known: scale");
  auto t = mdiff::ConstraintSpec::parse("dps:scale=fast");
  MD_EXPECT_ERROR(t.get_double("scale", 1.0), "scale='fast' is not a number");
}

// ------------------------------------------------------------------------------------------------
// Measurement operators

TEST(MeasurementOperator, AdjointSatisfiesTheInnerProductIdentity) {
  for (const auto& op : all_operators()) {
    const at::Tensor x = images(3, 2, 8, 8, 1);
    const at::Tensor y = op->forward(images(3, 2, 8, 8, 2));
    EXPECT_NEAR(ip(op->forward(x), y), ip(x, op->adjoint(y)), 1e-9) << op->name();
  }
  const auto gray = mdiff::GrayOperator::make(3);
  const at::Tensor x = images(2, 3, 4, 4, 3);
  const at::Tensor y = images(2, 1, 4, 4, 4);
  EXPECT_NEAR(ip(gray->forward(x), y), ip(x, gray->adjoint(y)), 1e-9);
}

TEST(MeasurementOperator, ProjectionLandsOnTheMeasurementSetAndIsNearest) {
  auto ops = all_operators();
  ops.push_back(mdiff::GrayOperator::make(3));
  for (const auto& op : ops) {
    const int64_t c = op->name() == "gray" ? 3 : 2;
    const at::Tensor truth = images(2, c, 8, 8, 5);
    const at::Tensor y = op->forward(truth);
    const at::Tensor x = images(2, c, 8, 8, 6);
    const at::Tensor p = op->project(x, y);
    const double tol = op->exact_projection() ? 1e-10 : 1e-5;
    EXPECT_LT((op->forward(p) - y).abs().max().item<double>(), tol) << op->name();
    if (!op->exact_projection()) continue;  // blur: A A^T is ill-conditioned, its null space numerically vague
    // Nearest: x - p is orthogonal to the null space of A.
    const at::Tensor v = op->null_space_component(images(2, c, 8, 8, 7));
    EXPECT_LT(op->forward(v).abs().max().item<double>(), tol) << op->name();
    EXPECT_NEAR(ip(x - p, v) / (x - p).norm().item<double>() / v.norm().item<double>(), 0.0, 1e-5) << op->name();
    // Idempotent.
    EXPECT_LT((op->project(p, y) - p).abs().max().item<double>(), 10 * tol) << op->name();
  }
}

TEST(MeasurementOperator, RegularisedBlurProjectionShrinksTowardTheExactOne) {
  // The ridge trades measurement consistency for a smaller correction; ridge 0 is exact.
  const at::Tensor truth = images(2, 1, 8, 8, 5);
  const at::Tensor x = images(2, 1, 8, 8, 6);
  double last_fit = -1, last_step = 1e300;
  for (double ridge : {1e-1, 1e-2, 1e-3, 0.0}) {
    const auto op = mdiff::BlurOperator::make(5, 1.0, ridge);
    const at::Tensor y = op->forward(truth);
    const at::Tensor p = op->project(x, y);
    const double fit = (op->forward(p) - y).norm().item<double>();
    const double step = (p - x).norm().item<double>();
    if (last_fit >= 0) {
      EXPECT_LT(fit, last_fit) << ridge;
      EXPECT_GT(step, 0.0);
    }
    last_fit = fit;
    last_step = step;
  }
  EXPECT_LT(last_fit, 1e-3);
  EXPECT_GT(last_step, 0.0);
  // Inpainting measures only the known pixels: noise on the rest is dropped, and they are counted.
  const auto inpaint = mdiff::InpaintOperator::make(mdiff::box_mask(8, 8, 4, 4));
  const at::Tensor y = inpaint->restrict_to_measured(at::ones({2, 1, 8, 8}));
  EXPECT_EQ(y.sum().item<double>(), 2 * (64 - 16));
  EXPECT_EQ(inpaint->measured_entries(y), 64 - 16);
  EXPECT_EQ(mdiff::AveragePoolOperator(2).measured_entries(at::ones({2, 1, 4, 4})), 16);
}

TEST(MeasurementOperator, MasksHaveTheRequestedShapeAndCounts) {
  const at::Tensor box = mdiff::box_mask(28, 28, 14, 14);
  EXPECT_EQ(box.sum().item<double>(), 28 * 28 - 14 * 14);
  EXPECT_EQ(box[13][13].item<double>(), 0.0);
  EXPECT_EQ(box[0][0].item<double>(), 1.0);
  const at::Tensor r = mdiff::random_mask(28, 28, 0.7, 1);
  EXPECT_EQ(r.sum().item<double>(), 28 * 28 - std::llround(0.7 * 28 * 28));
  EXPECT_TRUE(at::equal(r, mdiff::random_mask(28, 28, 0.7, 1)));
  EXPECT_FALSE(at::equal(r, mdiff::random_mask(28, 28, 0.7, 2)));
}

TEST(MeasurementOperator, FactoryBuildsAndRejects) {
  EXPECT_EQ(mdiff::make_operator("box:size=14", 28, 28)->name(), "inpaint");
  EXPECT_EQ(mdiff::make_operator("sr:factor=4", 28, 28)->name(), "sr");
  EXPECT_EQ(mdiff::make_operator("blur:size=5,sigma=1", 28, 28)->name(), "blur");
  MD_EXPECT_ERROR(mdiff::make_operator("smudge", 28, 28), "unknown measurement operator 'smudge'", "box, random");
  MD_EXPECT_ERROR(mdiff::make_operator("box:width=3", 28, 28), "unknown option(s) width");
  MD_EXPECT_ERROR(mdiff::make_operator("blur:size=4", 28, 28), "size must be odd", "4");
  MD_EXPECT_ERROR(mdiff::make_operator("random:missing=1.5", 28, 28), "missing must be in [0, 1]", "1.5");
  MD_EXPECT_ERROR(mdiff::AveragePoolOperator(3).forward(images(1, 1, 8, 8, 0)), "not divisible by the factor 3");
  MD_EXPECT_ERROR(mdiff::AveragePoolOperator(2).forward(at::zeros({4, 8})), "images [N, C, H, W]");
  MD_EXPECT_ERROR(mdiff::InpaintOperator(at::full({4, 4}, 0.5)), "0 or 1");
  MD_EXPECT_ERROR(mdiff::make_operator("gray", 28, 28, 1), ">= 2 channels", "1");
  MD_EXPECT_ERROR(mdiff::GrayOperator(3).forward(images(1, 1, 4, 4, 0)), "expected 3-channel images, got 1");
  EXPECT_EQ(mdiff::make_operator("gray", 4, 4, 3)->adjoint(at::ones({1, 1, 4, 4})).size(1), 3);
  MD_EXPECT_ERROR(mdiff::InpaintOperator::make(mdiff::box_mask(4, 4, 2, 2))->forward(images(1, 1, 8, 8, 0)),
                  "does not broadcast");
}

TEST(MeasurementNoise, GaussianAndPoissonHaveTheRightMomentsAndAreBatchInvariant) {
  const at::Tensor clean = at::zeros({4, 1, 64, 64}, at::kDouble);
  mdiff::MeasurementNoise g(mdiff::MeasurementNoiseOptions().sigma(0.05));
  const at::Tensor y = g.apply(clean, 3);
  EXPECT_NEAR(y.std().item<double>(), 0.05, 0.002);
  EXPECT_TRUE(at::allclose(g.apply(clean.slice(0, 0, 2), 3), y.slice(0, 0, 2)));
  EXPECT_NEAR(g.fidelity(y, clean).mean().item<double>(), g.expected_noise_norm(64 * 64), 0.05 * 3.2);
  mdiff::MeasurementNoise p(mdiff::MeasurementNoiseOptions().kind(mdiff::NoiseKind::Poisson).rate(100));
  const at::Tensor yp = p.apply(clean, 4);  // intensity 0.5: counts Poisson(50), y = 2 k / 100 - 1
  EXPECT_NEAR(yp.mean().item<double>(), 0.0, 0.01);
  EXPECT_NEAR(yp.var().item<double>(), 4 * 0.5 / 100, 0.002);
  MD_EXPECT_ERROR(mdiff::MeasurementNoise(mdiff::MeasurementNoiseOptions().sigma(-1)), "sigma must be >= 0", "-1");
}

// ------------------------------------------------------------------------------------------------
// Range constraints

TEST(RangeConstraints, DynamicThresholdFollowsTheImagenRule) {
  mdiff::StepContext ctx;
  // Sample 0 within [-1, 1]: unchanged (s clamps to 1). Sample 1 = 3 * ramp: s = quantile(|x|, p).
  at::Tensor ramp = at::linspace(-1, 1, 100, at::kDouble);
  at::Tensor x = at::stack({0.5 * ramp, 3 * ramp}).view({2, 1, 10, 10});
  mdiff::DynamicThreshold dt(mdiff::DynamicThresholdOptions().percentile(0.9).max_value(10));
  const at::Tensor out = dt.on_x0(ctx, x);
  EXPECT_TRUE(at::allclose(out[0], x[0]));
  const double s = at::quantile(x[1].abs().flatten().to(at::kFloat), 0.9).item<double>();
  EXPECT_TRUE(at::allclose(out[1], x[1].clamp(-s, s) / s, 1e-6, 1e-6));
  EXPECT_NEAR(out[1].abs().max().item<double>(), 1.0, 1e-9);
  // max_value = 1 is the static clip.
  mdiff::DynamicThreshold one(mdiff::DynamicThresholdOptions().max_value(1.0));
  mdiff::StaticClip clip;
  EXPECT_TRUE(at::allclose(one.on_x0(ctx, x), clip.on_x0(ctx, x)));
  MD_EXPECT_ERROR(mdiff::DynamicThreshold(mdiff::DynamicThresholdOptions().max_value(0.5)), "max_value must be >= 1",
                  "0.5");
  MD_EXPECT_ERROR(mdiff::StaticClip(1, -1), "min < max");
}

// ------------------------------------------------------------------------------------------------
// Manifold constraints

// The unit sphere S^{D-1}: exact projection and tangent basis.
class UnitSphere : public mdiff::Manifold {
 public:
  explicit UnitSphere(int64_t d) : d_(d) {}
  std::string name() const override { return "unit_sphere"; }
  int64_t ambient_dim() const override { return d_; }
  int64_t intrinsic_dim() const override { return d_ - 1; }
  at::Tensor project(const at::Tensor& x) const override {
    const at::Tensor f = x.flatten(1);
    return (f / f.norm(2, 1, true)).view(x.sizes());
  }
  at::Tensor tangent_basis(const at::Tensor& x) const override {
    // Orthonormal complement of the radial direction, by QR of [n, I].
    const at::Tensor n = project(x).flatten(1);
    std::vector<at::Tensor> bases;
    for (int64_t i = 0; i < n.size(0); ++i) {
      const at::Tensor m = at::cat({n[i].unsqueeze(1), at::eye(d_, n.options())}, 1);
      const at::Tensor q = std::get<0>(at::linalg_qr(m));
      bases.push_back(q.slice(1, 1, d_));
    }
    return at::stack(bases);
  }

 private:
  int64_t d_;
};

TEST(ManifoldConstraint, FullProjectionLandsOnAnAnalyticSphere) {
  auto sphere = std::make_shared<UnitSphere>(16);
  mdiff::ManifoldConstraint c(sphere);
  mdiff::StepContext ctx;
  const at::Tensor x = images(5, 1, 4, 4, 9) * 2;
  const at::Tensor p = c.on_x0(ctx, x);
  EXPECT_LT((p.flatten(1).norm(2, 1) - 1).abs().max().item<double>(), 1e-9);
  EXPECT_TRUE(at::allclose(c.residual(), (x.flatten(1).norm(2, 1) - 1).abs()));
  // Half strength moves half way.
  mdiff::ManifoldConstraint half(sphere, mdiff::ManifoldConstraintOptions().strength(0.5));
  EXPECT_TRUE(at::allclose(half.on_x0(ctx, x), 0.5 * (x + p)));
  // The pull moves a fixed step toward the sphere along the normal.
  mdiff::ManifoldConstraint pull(sphere, mdiff::ManifoldConstraintOptions().mode(mdiff::ManifoldMode::Pull).step(0.1).h(1e-6));
  const at::Tensor q = pull.on_x0(ctx, x);
  EXPECT_TRUE(at::allclose((x.flatten(1).norm(2, 1) - q.flatten(1).norm(2, 1)).abs(), at::full({5}, 0.1, at::kDouble),
                           1e-6, 1e-6));
  // Outside its window it does nothing.
  mdiff::ManifoldConstraint late(sphere, mdiff::ManifoldConstraintOptions().window({0.5, 1.0}));
  ctx.step = 1;
  ctx.num_steps = 10;
  EXPECT_TRUE(at::equal(late.on_x0(ctx, x), x));
  MD_EXPECT_ERROR(c.on_x0(ctx, images(1, 1, 3, 3, 0)), "samples have 9 values", "R^16");
}

TEST(AutoencoderProjection, MovesTowardTheReconstruction) {
  // A linear "autoencoder" onto the first 4 coordinates: projection zeroes the rest.
  mdiff::AutoencoderFunctions ae{[](const at::Tensor& x) { return x.flatten(1).slice(1, 0, 4); },
                                 [](const at::Tensor& z) {
                                   return at::cat({z, at::zeros({z.size(0), 12}, z.options())}, 1).view({-1, 1, 4, 4});
                                 }};
  mdiff::AutoencoderProjection p(ae, 1.0);
  mdiff::StepContext ctx;
  const at::Tensor x = images(3, 1, 4, 4, 2);
  const at::Tensor out = p.on_x0(ctx, x).flatten(1);
  EXPECT_TRUE(at::allclose(out.slice(1, 0, 4), x.flatten(1).slice(1, 0, 4)));
  EXPECT_EQ(out.slice(1, 4).abs().max().item<double>(), 0.0);
}

// ------------------------------------------------------------------------------------------------
// Inverse problems on Gaussian data with an exact denoiser

struct GaussianInverseProblem : ::testing::Test {
  // Data: a rotated, nearly flat Gaussian in R^16 (2 directions of variance 1, the rest 1e-4),
  // as 1x4x4 images. Half of the pixels are observed without noise.
  static constexpr int64_t kD = 16;
  mdiff::NoiseSchedule schedule = mdiff::NoiseSchedule::linear(1000);
  mdiff_test::GaussianData data;
  at::Tensor cov, mu;
  std::shared_ptr<mdiff::InpaintOperator> op;

  void SetUp() override {
    at::Generator g = mdiff::make_generator(11);
    const at::Tensor q = std::get<0>(at::linalg_qr(at::randn({kD, kD}, g, at::kDouble)));
    at::Tensor var = at::full({kD}, 1e-4, at::kDouble);
    var[0] = 1.0;
    var[1] = 1.0;
    data = mdiff_test::GaussianData{at::zeros({kD}, at::kDouble), var, q};
    cov = q.matmul(at::diag(var)).matmul(q.t());
    mu = at::zeros({kD}, at::kDouble);
    at::Tensor mask = at::zeros({4, 4});
    mask.view(-1).slice(0, 0, kD, 2).fill_(1);  // every other pixel
    op = mdiff::InpaintOperator::make(mask);
  }

  mdiff::Denoiser denoiser() const {
    const mdiff::ModelFunction flat = data.model(schedule, mdiff::DenoiserOptions());
    return mdiff::Denoiser(
        [flat](const at::Tensor& x, const at::Tensor& t, const at::Tensor& c) {
          return flat(x.flatten(1), t, c).view(x.sizes());
        },
        schedule, mdiff::DenoiserOptions());
  }

  at::Tensor truth(int64_t n) const {
    at::Generator g = mdiff::make_generator(99);
    const at::Tensor z = at::randn({n, kD}, g, at::kDouble) * data.var.sqrt();
    return z.matmul(data.rotation.t()).view({n, 1, 4, 4});
  }

  // E[x | observed pixels]: the posterior mean of a Gaussian.
  at::Tensor posterior_mean(const at::Tensor& x) const {
    const at::Tensor m = op->mask().view(-1).to(at::kBool);
    const at::Tensor k = m.nonzero().squeeze(1), u = (~m).nonzero().squeeze(1);
    const at::Tensor s_uk = cov.index_select(0, u).index_select(1, k);
    const at::Tensor s_kk = cov.index_select(0, k).index_select(1, k);
    const at::Tensor xk = x.flatten(1).index_select(1, k);
    at::Tensor out = x.flatten(1).clone();
    out.index_copy_(1, u, s_uk.matmul(at::linalg_solve(s_kk, xk.t())).t());
    return out.view(x.sizes());
  }

  // RMS error of the unobserved pixels against the posterior mean.
  double fill_error(const at::Tensor& x, const at::Tensor& truth) const {
    const at::Tensor u = (1 - op->mask()).to(at::kDouble);
    return ((x - posterior_mean(truth)) * u).pow(2).sum().div(u.sum() * x.size(0)).sqrt().item<double>();
  }

  at::Tensor run(const mdiff::Sampler& s, std::shared_ptr<mdiff::SamplingHook> hook, int64_t n) const {
    mdiff::SampleArgs args;
    if (hook) args.hooks.push_back(hook);
    return s.sample(denoiser(), {n, 1, 4, 4}, 5, args, 0, at::TensorOptions().dtype(at::kDouble));
  }
};

TEST_F(GaussianInverseProblem, EveryMethodRecoversThePosteriorMean) {
  const int64_t n = 32;
  const at::Tensor x = truth(n);
  const at::Tensor y = op->forward(x);
  const mdiff::Measurement m{op, y};
  mdiff::DDPMSampler ddpm(100);
  mdiff::DDIMSampler ddim(mdiff::DDIMOptions(100).eta(1.0));
  const at::Tensor free = run(ddpm, nullptr, n);
  const double unconstrained = fill_error(free, x);
  const double free_residual = (op->forward(free) - y).flatten(1).norm(2, 1).mean().item<double>();
  EXPECT_GT(unconstrained, 0.3);  // the prior alone does not know the fill

  struct Case {
    std::string name;
    const mdiff::Sampler* sampler;
    std::shared_ptr<mdiff::SamplingConstraint> c;
    double max_error;
  };
  const std::vector<Case> cases = {
      {"projection", &ddpm, std::make_shared<mdiff::MeasurementProjection>(m), 0.08},
      {"mcg", &ddpm, std::make_shared<mdiff::MCGConstraint>(m, mdiff::MCGOptions().alpha(0.25)), 0.08},
      {"dps", &ddpm, std::make_shared<mdiff::DPSConstraint>(m, mdiff::DPSOptions().scale(0.5)), 0.08},
      {"mpgd", &ddim, std::make_shared<mdiff::MPGDConstraint>(m, mdiff::MPGDOptions().scale(0.5)), 0.08},
      {"dsg", &ddim, std::make_shared<mdiff::DSGConstraint>(m, mdiff::DSGOptions().rate(0.5)), 0.08},
  };
  for (const auto& c : cases) {
    const at::Tensor out = run(*c.sampler, c.c, n);
    const double err = fill_error(out, x);
    EXPECT_LT(err, c.max_error) << c.name << " (unconstrained " << unconstrained << ")";
    // The measurement is fitted, per sample.
    const at::Tensor res = (op->forward(out) - y).flatten(1).norm(2, 1);
    if (c.name == "projection" || c.name == "mcg") {
      EXPECT_LT(res.max().item<double>(), 1e-9) << c.name;  // they end with an exact projection
    } else {
      EXPECT_LT(res.mean().item<double>(), 0.3 * free_residual) << c.name;  // a fixed-size step on a non-squared norm
    }
    ASSERT_TRUE(c.c->residual().defined()) << c.name;
    EXPECT_EQ(c.c->residual().size(0), n) << c.name;
  }
  int64_t nfe = 0;
  const at::Tensor rp = mdiff::repaint(denoiser(), m, mdiff::RePaintOptions().steps(50).jump_length(5).resample(3), 5,
                                       {}, &nfe);
  EXPECT_LT(fill_error(rp, x), 0.08);
  EXPECT_LT((op->forward(rp) - y).abs().max().item<double>(), 1e-9);
  EXPECT_EQ(nfe, 50 + 9 * 2 * 5);
}

TEST_F(GaussianInverseProblem, JacobianFromTheSamplersGraphEqualsARecomputedOne) {
  // A probe hook compares the gradient through ctx.x0_graph with one through ctx.denoise.
  struct Probe : mdiff::SamplingHook {
    at::Tensor y;
    std::shared_ptr<mdiff::InpaintOperator> op;
    double max_diff = -1;
    bool needs_jacobian() const override { return true; }
    at::Tensor on_proposal(const mdiff::StepContext& ctx, at::Tensor x_next) override {
      const at::Tensor g1 = torch::autograd::grad({(y - op->forward(ctx.x0_graph)).pow(2).sum()}, {ctx.x_t_leaf}, {},
                                                  true)[0];
      const at::Tensor leaf = ctx.x_t.detach().requires_grad_(true);
      const at::Tensor g2 =
          torch::autograd::grad({(y - op->forward(ctx.denoise(leaf).x0)).pow(2).sum()}, {leaf})[0];
      max_diff = std::max(max_diff, (g1 - g2).abs().max().item<double>());
      return x_next;
    }
  };
  auto probe = std::make_shared<Probe>();
  probe->op = op;
  probe->y = op->forward(truth(4));
  run(mdiff::DDIMSampler(mdiff::DDIMOptions(10)), probe, 4);
  EXPECT_GE(probe->max_diff, 0.0);
  EXPECT_LT(probe->max_diff, 1e-10);
  // Without a Jacobian hook the sampler keeps autograd off.
  struct Plain : mdiff::SamplingHook {
    bool saw_graph = false;
    at::Tensor on_proposal(const mdiff::StepContext& ctx, at::Tensor x) override {
      saw_graph = saw_graph || ctx.x_t_leaf.defined();
      return x;
    }
  };
  auto plain = std::make_shared<Plain>();
  run(mdiff::DDIMSampler(mdiff::DDIMOptions(5)), plain, 2);
  EXPECT_FALSE(plain->saw_graph);
}

TEST_F(GaussianInverseProblem, BadUseGivesClearErrors) {
  const at::Tensor y = op->forward(truth(4));
  const mdiff::Measurement m{op, y};
  // DSG needs a stochastic step.
  auto dsg = std::make_shared<mdiff::DSGConstraint>(m);
  MD_EXPECT_ERROR(run(mdiff::DDIMSampler(mdiff::DDIMOptions(5).eta(0.0)), dsg, 4), "dsg", "eta > 0");
  // Measurements for another batch size.
  auto dps = std::make_shared<mdiff::DPSConstraint>(m);
  MD_EXPECT_ERROR(run(mdiff::DDPMSampler(5), dps, 3), "4 measurements for a batch of 3");
  // Factory: unknown name, missing context, bad option values.
  mdiff::SamplingConstraintContext ctx;
  MD_EXPECT_ERROR(mdiff::make_sampling_constraint("dpss", ctx), "unknown sampling constraint 'dpss'", "dps");
  MD_EXPECT_ERROR(mdiff::make_sampling_constraint("dps", ctx), "needs a measurement");
  MD_EXPECT_ERROR(mdiff::make_sampling_constraint("manifold", ctx), "needs a reference or analytic manifold");
  MD_EXPECT_ERROR(mdiff::make_sampling_constraint("dynamic_threshold:p=2", ctx), "percentile must be in (0, 1]", "2");
  ctx.op = op;
  ctx.y = y;
  EXPECT_EQ(mdiff::make_sampling_constraint("mpgd:scale=2,start=0.1,end=0.2", ctx)->name(), "mpgd");
  MD_EXPECT_ERROR(mdiff::make_sampling_constraint("mpgd:variant=ae", ctx), "needs an autoencoder");
  MD_EXPECT_ERROR(mdiff::make_sampling_constraint("mpgd:variant=zz", ctx), "zz");
  MD_EXPECT_ERROR(mdiff::make_sampling_constraint("mcg:start=0.5", ctx), "unknown option(s) start");
  at::Tensor bad = y.clone();
  bad[0][0][0][0] = std::nan("");
  MD_EXPECT_ERROR(mdiff::DPSConstraint(mdiff::Measurement{op, bad}), "NaN or Inf");
}

TEST(RePaintSchedule, MatchesTheJumpRule) {
  // 10 levels, jumps of 2, resample 2: at levels 0, 2, 4, 6 (below 10 - 1 - 2 = 7) one extra climb each.
  const auto seq = mdiff::repaint_schedule(mdiff::RePaintOptions().steps(10).jump_length(2).resample(2));
  int64_t down = 0, up = 0;
  for (size_t i = 1; i < seq.size(); ++i) (seq[i] < seq[i - 1] ? down : up) += 1;
  EXPECT_EQ(seq.front(), 9);
  EXPECT_EQ(seq.back(), -1);
  EXPECT_EQ(up, 4 * 2);
  EXPECT_EQ(down, 10 + 4 * 2);
  // r = 1: straight down.
  const auto plain = mdiff::repaint_schedule(mdiff::RePaintOptions().steps(10).resample(1));
  EXPECT_EQ(plain.size(), 11u);
  // The reference configuration costs ~2410 evaluations per image.
  const auto ref = mdiff::repaint_schedule(mdiff::RePaintOptions().steps(250).jump_length(10).resample(10));
  int64_t evals = 0;
  for (size_t i = 1; i < ref.size(); ++i) evals += ref[i] < ref[i - 1];
  EXPECT_EQ(evals, 2410);
  MD_EXPECT_ERROR(mdiff::repaint_schedule(mdiff::RePaintOptions().resample(0)), "resample must be >= 1", "0");
}

}  // namespace
