#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/models/mlp_denoiser.h>

#include "models/model_test_util.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <torch/optim/adam.h>

#include <cmath>
#include <sstream>
#include <string>

namespace {

// The fixture runs each test on one intra-op thread (see SmallNetworkTest).
class MLPDenoiser : public mdiff_test::SmallNetworkTest {};


TEST_F(MLPDenoiser, OutputShapesAndZeroInit) {
  mdiff::manual_seed(10);
  const std::vector<mdiff::MLPDenoiserOptions> configs = {
      mdiff::MLPDenoiserOptions(2).hidden(32).num_blocks(2).time_embed_dim(16),
      mdiff::MLPDenoiserOptions(16).hidden(32).num_blocks(1).use_scale_shift_norm(false),
      mdiff::MLPDenoiserOptions(3).hidden(32).time_embedding(mdiff::TimeEmbedding::Fourier).fourier_scale(0.02),
      mdiff::MLPDenoiserOptions(5).hidden(32).num_classes(4).dropout(0.1),
      mdiff::MLPDenoiserOptions(2).hidden(32).num_blocks(0),
  };
  for (size_t i = 0; i < configs.size(); ++i) {
    SCOPED_TRACE("config " + std::to_string(i));
    mdiff::MLPDenoiser net(configs[i]);
    const int64_t d = configs[i].dim();
    const at::Tensor x = at::randn({7, d});
    const at::Tensor t = at::randint(0, 1000, {7}, at::kLong);
    const at::Tensor labels = configs[i].num_classes() > 0 ? at::randint(0, 4, {7}, at::kLong) : at::Tensor();
    EXPECT_EQ(net(x, t, labels).abs().max().item<float>(), 0.0f);  // zero-initialised output layer
    mdiff_test::perturb(*net);
    const at::Tensor y = net(x, t, labels);
    EXPECT_EQ(y.sizes(), (at::IntArrayRef{7, d}));
    EXPECT_GT(y.abs().max().item<float>(), 0.0f);
  }
}

TEST_F(MLPDenoiser, GradientReachesEveryParameter) {
  for (bool film : {true, false}) {
    SCOPED_TRACE(film ? "FiLM" : "additive");
    mdiff::manual_seed(11);
    mdiff::MLPDenoiser net(mdiff::MLPDenoiserOptions(3).hidden(32).num_blocks(2).num_classes(3).use_scale_shift_norm(film));
    mdiff_test::perturb(*net);
    const at::Tensor y = net(at::randn({6, 3}), at::tensor({0.0, 10.0, 99.5, 250.0, 600.0, 999.0}),
                             at::tensor({0, 1, 2, -1, 3, 0}, at::kLong));
    (y * at::randn_like(y)).sum().backward();
    for (const auto& p : net->named_parameters()) {
      ASSERT_TRUE(p.value().grad().defined()) << p.key();
      EXPECT_GT(p.value().grad().abs().max().item<float>(), 0.0f) << p.key();
    }
  }
}

TEST_F(MLPDenoiser, ClassConditioningAndNullClass) {
  mdiff::manual_seed(12);
  mdiff::MLPDenoiser net(mdiff::MLPDenoiserOptions(2).hidden(32).num_blocks(2).num_classes(3));
  mdiff_test::perturb(*net);
  at::NoGradGuard no_grad;
  const at::Tensor x = at::randn({1, 2}).expand({2, 2}).contiguous();
  const at::Tensor t = at::scalar_tensor(400, at::kLong);
  const at::Tensor y = net(x, t, at::tensor({0, 2}, at::kLong));
  EXPECT_GT((y[0] - y[1]).abs().max().item<float>(), 1e-5f);
  EXPECT_TRUE(at::equal(net(x, t, at::tensor({3, 3}, at::kLong)), net(x, t)));
  EXPECT_TRUE(at::equal(net(x, t, at::tensor({-1, -1}, at::kLong)), net(x, t)));
}

TEST_F(MLPDenoiser, OverfitsFixedBatch) {
  mdiff::manual_seed(13);
  mdiff::MLPDenoiser net(mdiff::MLPDenoiserOptions(2).hidden(64).num_blocks(2).time_embed_dim(32));
  // 64 points on the unit circle, noised at fixed levels with fixed noise.
  const at::Tensor angle = at::rand({64}) * (2 * 3.14159265358979323846);
  const at::Tensor x0 = at::stack({at::cos(angle), at::sin(angle)}, 1);
  const at::Tensor noise = at::randn({64, 2});
  const at::Tensor t = at::randint(0, 1000, {64}, at::kLong);
  const at::Tensor alpha_bar = (1 - t.to(at::kFloat) / 1000).clamp_min(0.02).unsqueeze(1);
  const at::Tensor x_t = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise;
  torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(3e-3));
  double first = 0, last = 0;
  for (int step = 0; step < 200; ++step) {
    opt.zero_grad();
    const at::Tensor loss = (net(x_t, t) - noise).pow(2).mean();
    loss.backward();
    opt.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_LT(last, 0.3 * first) << "initial loss " << first << ", final " << last;
}

TEST_F(MLPDenoiser, CudaMatchesCpu_CUDA) {
  MD_SKIP_WITHOUT_CUDA();
  mdiff::manual_seed(14);
  mdiff::MLPDenoiser net(mdiff::MLPDenoiserOptions(3).hidden(32).num_blocks(2).num_classes(2));
  mdiff_test::perturb(*net);
  net->to(at::kDouble);
  auto gpu = std::dynamic_pointer_cast<mdiff::MLPDenoiserImpl>(net->clone(c10::Device(c10::kCUDA)));
  ASSERT_TRUE(gpu);
  at::NoGradGuard no_grad;
  const at::Tensor x = at::randn({5, 3}, at::kDouble);
  const at::Tensor t = at::arange(5, at::kLong) * 200;
  const at::Tensor labels = at::tensor({0, 1, -1, 2, 0}, at::kLong);
  const at::Tensor cpu = net(x, t, labels);
  const at::Tensor cuda = gpu->forward(x.cuda(), t.cuda(), labels.cuda());
  EXPECT_TRUE(at::allclose(cuda.cpu(), cpu, 1e-9, 1e-9)) << (cuda.cpu() - cpu).abs().max().item<double>();
  MD_EXPECT_ERROR(gpu->forward(x.cuda(), t, at::tensor({0, 1, 2, 3, 0}, at::kLong).cuda()),
                  "class_labels: expected values in [-1, 2]", "max 3");
}

TEST_F(MLPDenoiser, RejectsBadInputs) {
  mdiff::MLPDenoiser net(mdiff::MLPDenoiserOptions(3).hidden(16).num_classes(2));
  const at::Tensor x = at::randn({4, 3});
  const at::Tensor t = at::arange(4);
  MD_EXPECT_ERROR(net(at::randn({4, 3, 1}), t), "MLPDenoiser: x: expected 2 dimensions", "[4, 3, 1]");
  MD_EXPECT_ERROR(net(at::randn({4, 2}), t), "expected points of dimension 3", "got 2");
  MD_EXPECT_ERROR(net(x.to(at::kDouble), t), "x: dtype Double does not match the parameters' Float");
  MD_EXPECT_ERROR(net(x, at::arange(5)), "MLPDenoiser: t: expected shape [4]", "[5]");
  MD_EXPECT_ERROR(net(x, t, at::tensor({0, 1, 2, 3}, at::kLong)), "class_labels: expected values in [-1, 2]", "max 3");
  MD_EXPECT_ERROR(net(x, t, at::tensor({0, 1}, at::kLong)), "class_labels: expected shape [4]");
  MD_EXPECT_ERROR(mdiff::MLPDenoiser(mdiff::MLPDenoiserOptions(0)), "dim must be positive", "got 0");
  MD_EXPECT_ERROR(mdiff::MLPDenoiser(mdiff::MLPDenoiserOptions(2).num_blocks(-1)), "num_blocks must be >= 0", "-1");
  MD_EXPECT_ERROR(
      mdiff::MLPDenoiser(mdiff::MLPDenoiserOptions(2).time_embed_dim(33).time_embedding(mdiff::TimeEmbedding::Fourier)),
      "time_embed_dim must be even", "33");
  mdiff::MLPDenoiser uncond(mdiff::MLPDenoiserOptions(3).hidden(16));
  MD_EXPECT_ERROR(uncond(x, t, at::zeros({4}, at::kLong)), "unconditional");
}

TEST_F(MLPDenoiser, JsonRoundTripAndPrettyPrint) {
  const auto o = mdiff::MLPDenoiserOptions(16)
                     .hidden(128)
                     .num_blocks(3)
                     .time_embed_dim(64)
                     .time_embedding(mdiff::TimeEmbedding::Fourier)
                     .fourier_scale(0.1)
                     .num_classes(5)
                     .dropout(0.2)
                     .use_scale_shift_norm(false)
                     .zero_init_output(false);
  const std::string json = o.to_json();
  const auto back = mdiff::MLPDenoiserOptions::from_json(json);
  EXPECT_EQ(back.to_json(), json);
  EXPECT_EQ(back.dim(), 16);
  EXPECT_EQ(back.hidden(), 128);
  EXPECT_EQ(back.time_embedding(), mdiff::TimeEmbedding::Fourier);
  EXPECT_FALSE(back.use_scale_shift_norm());
  EXPECT_EQ(mdiff::MLPDenoiserOptions::from_json(R"({"dim": 2})").to_json(), mdiff::MLPDenoiserOptions(2).to_json());
  MD_EXPECT_ERROR(mdiff::MLPDenoiserOptions::from_json(R"({"dim": 2, "width": 8})"),
                  "MLPDenoiserOptions::from_json: unknown key 'width'");
  MD_EXPECT_ERROR(mdiff::MLPDenoiserOptions::from_json(R"({"dim": 2, "dropout": "none"})"), "bad value for 'dropout'");
  MD_EXPECT_ERROR(mdiff::MLPDenoiserOptions::from_json(R"({"dim": 2, "hidden": -4})"), "hidden must be positive", "-4");
  MD_EXPECT_ERROR(mdiff::MLPDenoiserOptions::from_json(R"({"hidden": 4})"), "missing key 'dim'");

  mdiff::MLPDenoiser net(o);
  std::ostringstream os;
  net->pretty_print(os);
  for (const char* part : {"manifold_diffusion::MLPDenoiser(", "dim=16", "hidden=128", "num_blocks=3",
                           "time_embedding=fourier", "num_classes=5", "use_scale_shift_norm=false"}) {
    EXPECT_NE(os.str().find(part), std::string::npos) << os.str() << " lacks " << part;
  }
}

}  // namespace
