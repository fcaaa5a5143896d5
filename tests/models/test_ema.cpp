#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/models/ema.h>
#include <manifold_diffusion/models/mlp_denoiser.h>

#include "models/model_test_util.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/linear.h>

#include <cmath>

namespace {

// The fixture runs each test on one intra-op thread (see SmallNetworkTest).
class EMA : public mdiff_test::SmallNetworkTest {};

void set_all(torch::nn::Module& m, const std::vector<at::Tensor>& values) {
  at::NoGradGuard no_grad;
  auto params = m.parameters();
  ASSERT_EQ(params.size(), values.size());
  for (size_t i = 0; i < params.size(); ++i) params[i].copy_(values[i]);
}

std::vector<at::Tensor> snapshot(const torch::nn::Module& m) {
  std::vector<at::Tensor> out;
  for (const auto& p : m.parameters()) out.push_back(p.detach().clone());
  return out;
}

TEST_F(EMA, ClosedFormWithConstantWeights) {
  mdiff::manual_seed(20);
  torch::nn::Linear model(4, 3);
  const auto w0 = snapshot(*model);
  mdiff::EMA ema(*model, mdiff::EMAOptions().decay(0.9).warmup(false));
  std::vector<at::Tensor> w;
  for (const auto& p : w0) w.push_back(at::randn_like(p));
  set_all(*model, w);
  const int k = 7;
  for (int i = 0; i < k; ++i) ema.update(*model);
  EXPECT_EQ(ema.num_updates(), k);
  EXPECT_EQ(ema.num_steps(), k);
  // shadow_k = w + decay^k (w0 - w)
  const auto& shadow = ema.shadow_parameters();
  ASSERT_EQ(shadow.size(), 2u);
  EXPECT_EQ(shadow[0].first, "weight");
  EXPECT_EQ(shadow[1].first, "bias");
  for (size_t i = 0; i < shadow.size(); ++i) {
    const at::Tensor expected = w[i] + std::pow(0.9, k) * (w0[i] - w[i]);
    EXPECT_TRUE(at::allclose(shadow[i].second, expected, 1e-5, 1e-6)) << shadow[i].first;
  }
  // The shadow is a copy: the model's weights were not touched by update().
  EXPECT_TRUE(at::equal(model->weight, w[0]));
}

TEST_F(EMA, WarmupDecay) {
  torch::nn::Linear model(2, 2);
  mdiff::EMA ema(*model, mdiff::EMAOptions().decay(0.999));
  EXPECT_DOUBLE_EQ(ema.decay_at(0), 0.1);
  EXPECT_DOUBLE_EQ(ema.decay_at(1), 2.0 / 11.0);
  EXPECT_DOUBLE_EQ(ema.decay_at(10), 11.0 / 20.0);
  EXPECT_DOUBLE_EQ(ema.decay_at(990), 991.0 / 1000.0);
  EXPECT_DOUBLE_EQ(ema.decay_at(100000), 0.999);  // capped at decay
  mdiff::EMA plain(*model, mdiff::EMAOptions().decay(0.999).warmup(false));
  EXPECT_DOUBLE_EQ(plain.decay_at(0), 0.999);
  MD_EXPECT_ERROR(ema.decay_at(-1), "k must be >= 0", "-1");

  // Two warm-up updates towards constant w: shadow = w + 0.1 * (2/11) * (w0 - w).
  const auto w0 = snapshot(*model);
  std::vector<at::Tensor> w;
  for (const auto& p : w0) w.push_back(p + 1.0);
  set_all(*model, w);
  ema.update(*model);
  EXPECT_TRUE(at::allclose(ema.shadow_parameters()[0].second, w[0] + 0.1 * (w0[0] - w[0]), 1e-6, 1e-6));
  ema.update(*model);
  EXPECT_TRUE(at::allclose(ema.shadow_parameters()[0].second, w[0] + 0.1 * (2.0 / 11.0) * (w0[0] - w[0]), 1e-6, 1e-6));
}

TEST_F(EMA, UpdateEvery) {
  torch::nn::Linear model(2, 2);
  mdiff::EMA ema(*model, mdiff::EMAOptions().decay(0.5).warmup(false).update_every(3));
  const auto w0 = snapshot(*model);
  set_all(*model, {w0[0] + 1, w0[1] + 1});
  for (int i = 0; i < 7; ++i) ema.update(*model);
  EXPECT_EQ(ema.num_steps(), 7);
  EXPECT_EQ(ema.num_updates(), 2);  // on calls 3 and 6
  EXPECT_TRUE(at::allclose(ema.shadow_parameters()[0].second, w0[0] + 0.75));
}

TEST_F(EMA, BuffersAreCopied) {
  mdiff::manual_seed(21);
  torch::nn::BatchNorm1d model(3);
  mdiff::EMA ema(*model, mdiff::EMAOptions().decay(0.9));
  (void)model(at::randn({16, 3}) * 2 + 5);  // training mode: running stats move
  ema.update(*model);
  bool found = false;
  for (const auto& [name, t] : ema.shadow_buffers()) {
    if (name == "running_mean") {
      found = true;
      EXPECT_TRUE(at::equal(t, model->running_mean));
    }
  }
  EXPECT_TRUE(found);
  torch::nn::BatchNorm1d other(3);
  ema.copy_to(*other);
  EXPECT_TRUE(at::equal(other->running_mean, model->running_mean));
  EXPECT_EQ(other->num_batches_tracked.item<int64_t>(), 1);
}

TEST_F(EMA, StoreCopyRestoreRoundTrip) {
  mdiff::manual_seed(22);
  mdiff::MLPDenoiser net(mdiff::MLPDenoiserOptions(2).hidden(16).num_blocks(1).zero_init_output(false));
  mdiff::EMA ema(*net, mdiff::EMAOptions().decay(0.5).warmup(false));
  {
    at::NoGradGuard no_grad;
    for (auto& p : net->parameters()) p.add_(1.0);
  }
  ema.update(*net);
  const auto training = snapshot(*net);
  EXPECT_FALSE(ema.has_stored());
  ema.store(*net);
  EXPECT_TRUE(ema.has_stored());
  ema.copy_to(*net);
  const auto params = net->parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(at::equal(params[i], ema.shadow_parameters()[i].second));
    EXPECT_TRUE(at::allclose(params[i], training[i] - 0.5));  // halfway between w0 and w0 + 1
  }
  // copy_to keeps the parameters trainable leaves.
  EXPECT_TRUE(params[0].requires_grad());
  ema.restore(*net);
  EXPECT_FALSE(ema.has_stored());
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(at::equal(params[i], training[i]));
  }
  MD_EXPECT_ERROR(ema.restore(*net), "EMA::restore: no weights stored", "store()");
}

TEST_F(EMA, RejectsMismatchedModules) {
  torch::nn::Linear model(4, 3);
  mdiff::EMA ema(*model);
  torch::nn::Linear wider(4, 5);
  MD_EXPECT_ERROR(ema.update(*wider), "EMA::update", "parameter 'weight' has shape [5, 4] in the module but [3, 4]");
  torch::nn::Linear no_bias(torch::nn::LinearOptions(4, 3).bias(false));
  MD_EXPECT_ERROR(ema.copy_to(*no_bias), "EMA::copy_to", "the module has no parameter 'bias'");
  mdiff::MLPDenoiser other(mdiff::MLPDenoiserOptions(3).hidden(8).num_blocks(0));
  MD_EXPECT_ERROR(ema.store(*other), "EMA::store", "no parameter 'weight'");
  // A module with an extra parameter.
  struct Extra : torch::nn::Module {
    Extra() {
      lin = register_module("lin", torch::nn::Linear(4, 3));
      weight = register_parameter("weight", at::zeros({3, 4}));
      bias = register_parameter("bias", at::zeros({3}));
      extra = register_parameter("extra", at::zeros({1}));
    }
    torch::nn::Linear lin{nullptr};
    at::Tensor weight, bias, extra;
  };
  Extra extra;
  MD_EXPECT_ERROR(ema.update(extra), "EMA::update", "is not in the EMA");
  EXPECT_EQ(ema.num_steps(), 0);  // a failed update does not count
  MD_EXPECT_ERROR(mdiff::EMA(*model, mdiff::EMAOptions().decay(1.5)), "decay must be in [0, 1]", "1.5");
  MD_EXPECT_ERROR(mdiff::EMA(*model, mdiff::EMAOptions().update_every(0)), "update_every must be >= 1", "got 0");
}

TEST_F(EMA, NamedStateRoundTrip) {
  mdiff::manual_seed(23);
  mdiff::MLPDenoiser net(mdiff::MLPDenoiserOptions(2).hidden(16).num_blocks(2));
  mdiff::EMA ema(*net, mdiff::EMAOptions().decay(0.9));
  {
    at::NoGradGuard no_grad;
    for (auto& p : net->parameters()) p.add_(at::randn_like(p));
  }
  for (int i = 0; i < 3; ++i) ema.update(*net);
  const mdiff::NamedTensors state = ema.named_state();
  EXPECT_EQ(state.back().first, "num_steps");
  EXPECT_EQ(state.front().first.rfind("param.", 0), 0u);

  mdiff::MLPDenoiser fresh(mdiff::MLPDenoiserOptions(2).hidden(16).num_blocks(2));
  mdiff::EMA loaded(*fresh, mdiff::EMAOptions().decay(0.9));
  mdiff::NamedTensors copied;
  for (const auto& [name, t] : state) copied.emplace_back(name, t.clone());
  loaded.load_named_state(copied);
  EXPECT_EQ(loaded.num_updates(), 3);
  EXPECT_EQ(loaded.num_steps(), 3);
  for (size_t i = 0; i < ema.shadow_parameters().size(); ++i) {
    EXPECT_TRUE(at::equal(loaded.shadow_parameters()[i].second, ema.shadow_parameters()[i].second));
  }
  // The next update continues the same warm-up.
  ema.update(*net);
  loaded.update(*net);
  EXPECT_TRUE(at::equal(loaded.shadow_parameters()[0].second, ema.shadow_parameters()[0].second));

  mdiff::NamedTensors missing(copied.begin() + 1, copied.end());
  MD_EXPECT_ERROR(loaded.load_named_state(missing), "EMA::load_named_state: missing entry", copied.front().first.c_str());
  mdiff::NamedTensors extra = copied;
  extra.emplace_back("param.nope", at::zeros({1}));
  MD_EXPECT_ERROR(loaded.load_named_state(extra), "unexpected entry 'param.nope'");
  mdiff::NamedTensors bad_shape = copied;
  bad_shape[0].second = at::zeros({1});
  MD_EXPECT_ERROR(loaded.load_named_state(bad_shape), copied.front().first.c_str(), "has shape [1]");
  mdiff::NamedTensors twice = copied;
  twice.push_back(copied[0]);
  MD_EXPECT_ERROR(loaded.load_named_state(twice), "appears twice");
}

TEST_F(EMA, WorksOnCuda_CUDA) {
  MD_SKIP_WITHOUT_CUDA();
  mdiff::manual_seed(24);
  torch::nn::Linear model(4, 3);
  model->to(c10::Device(c10::kCUDA));
  mdiff::EMA ema(*model, mdiff::EMAOptions().decay(0.5).warmup(false));
  EXPECT_EQ(ema.shadow_parameters()[0].second.device().type(), c10::kCUDA);
  const auto w0 = snapshot(*model);
  set_all(*model, {w0[0] + 2, w0[1] + 2});
  ema.update(*model);
  ema.update(*model);
  ema.store(*model);
  ema.copy_to(*model);
  EXPECT_TRUE(at::allclose(model->weight.cpu(), (w0[0] + 1.5).cpu()));  // 2 * (1 - 0.5^2)
  ema.restore(*model);
  EXPECT_TRUE(at::allclose(model->weight.cpu(), (w0[0] + 2).cpu()));
  ema.to(c10::Device(c10::kCPU));
  EXPECT_EQ(ema.shadow_parameters()[0].second.device().type(), c10::kCPU);
}

}  // namespace
