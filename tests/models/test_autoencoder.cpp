// Autoencoder: shapes, reconstruction of a linear subspace, projection toward it, files.

#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/models/autoencoder.h>

#include "models/model_test_util.h"
#include "test_util.h"

#include <ATen/ATen.h>

#include <gtest/gtest.h>

#include <filesystem>

namespace {

using mdiff_test::SmallNetworkTest;

TEST_F(SmallNetworkTest, AutoencoderShapes) {
  mdiff::Autoencoder conv(mdiff::AutoencoderOptions::conv(1, 4).hidden(8));
  const at::Tensor x = at::randn({2, 1, 28, 28});
  EXPECT_EQ(conv->encode(x).sizes(), at::IntArrayRef({2, 4, 7, 7}));
  EXPECT_EQ(conv->forward(x).sizes(), x.sizes());
  EXPECT_EQ(conv->latent_shape({1, 28, 28}), (std::vector<int64_t>{4, 7, 7}));
  mdiff::Autoencoder rgb(mdiff::AutoencoderOptions::conv(3, 2).hidden(8));
  EXPECT_EQ(rgb->forward(at::randn({1, 3, 16, 16})).sizes(), at::IntArrayRef({1, 3, 16, 16}));
  MD_EXPECT_ERROR(rgb->encode(at::randn({1, 3, 18, 16})), "divisible by 4", "[1, 3, 18, 16]");
  mdiff::Autoencoder mlp(mdiff::AutoencoderOptions::mlp(8, 2));
  EXPECT_EQ(mlp->encode(at::randn({5, 8})).sizes(), at::IntArrayRef({5, 2}));
  MD_EXPECT_ERROR(mdiff::Autoencoder(mdiff::AutoencoderOptions::mlp(8, 0)), "latent", "0");
  MD_EXPECT_ERROR(mdiff::AutoencoderOptions::from_json(R"({"kind":"mlp","input":8,"latent":2,"widht":3})"), "widht");
  MD_EXPECT_ERROR(mdiff::train_autoencoder(mlp, at::randn({4, 8}), mdiff::AutoencoderTrainOptions().lr(-1)), "lr",
                  "-1");
}

// Points of a 2-D linear subspace of R^8: the trained autoencoder reconstructs them and maps points
// pushed off the subspace (along its normal space) back toward it.
TEST_F(SmallNetworkTest, MlpAutoencoderLearnsALinearSubspaceAndProjectsOntoIt) {
  at::Generator g = mdiff::make_generator(3);
  const at::Tensor basis = std::get<0>(at::linalg_qr(at::randn({8, 2}, g, at::TensorOptions(at::kFloat))));  // [8, 2]
  const at::Tensor coords = at::rand({2000, 2}, g, at::TensorOptions(at::kFloat)) * 2 - 1;
  const at::Tensor x = coords.matmul(basis.t());
  at::manual_seed(1);
  mdiff::Autoencoder ae(mdiff::AutoencoderOptions::mlp(8, 2).hidden(64).layers(2));
  const auto history =
      mdiff::train_autoencoder(ae, x, mdiff::AutoencoderTrainOptions().steps(800).batch(128).lr(3e-3).seed(2));
  ASSERT_EQ(history.size(), 800u);
  const double variance = x.pow(2).mean().item<double>();  // ~ 2/3/8 per coordinate
  const at::Tensor test = (at::rand({500, 2}, g, at::TensorOptions(at::kFloat)) * 1.6 - 0.8).matmul(basis.t());
  const double err = (ae->project(test) - test).pow(2).mean().item<double>();
  EXPECT_LT(err, 0.02 * variance) << "reconstruction error " << err << ", data variance " << variance;

  // Off-subspace points: a normal offset of length 0.3.
  const at::Tensor normal_proj = at::eye(8) - basis.matmul(basis.t());
  at::Tensor n = at::randn({500, 8}, g, at::TensorOptions(at::kFloat)).matmul(normal_proj);
  n = n / n.norm(2, 1, true);
  const at::Tensor off = test + 0.3 * n;
  const at::Tensor residual = ae->project(off).matmul(normal_proj).norm(2, 1);
  EXPECT_LT(residual.mean().item<double>(), 0.1) << "normal residual after projection (before: 0.3)";

  const auto path = (std::filesystem::temp_directory_path() / ("md_ae_" + std::to_string(::getpid()) + ".safetensors")).string();
  mdiff::save_autoencoder(path, ae);
  mdiff::Autoencoder again = mdiff::load_autoencoder(path);
  EXPECT_TRUE(at::equal(again->project(test), ae->project(test)));
  std::filesystem::remove(path);
  MD_EXPECT_ERROR(mdiff::load_autoencoder(path), "does not exist");
}

}  // namespace
