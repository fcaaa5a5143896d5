// Concurrent sampling with shared objects: one denoiser (MLP or UNet, in eval mode), one sampler and
// one sampling constraint serve several threads at once, and every thread's samples equal what a
// single thread draws with the same seed. The documented promise of Sampler ("one sampler object
// can serve several threads at once") and of the models' inference paths.
//
// These tests are also what scripts/tsan.sh runs under ThreadSanitizer (preset 'tsan'), where a
// data race in the library is a report even when the results happen to agree.
#include <manifold_diffusion/constraints/sampling.h>
#include <manifold_diffusion/manifold/reference.h>
#include <manifold_diffusion/models/denoiser.h>
#include <manifold_diffusion/models/mlp_denoiser.h>
#include <manifold_diffusion/models/unet.h>
#include <manifold_diffusion/samplers/factory.h>
#include <manifold_diffusion/samplers/sampler.h>
#include <manifold_diffusion/schedules/noise_schedule.h>

#include "test_util.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace mdiff = manifold_diffusion;

constexpr int kThreads = 3;

// Runs `draw(i)` for i = 0..kThreads-1 one after another, then all at once on kThreads threads,
// and expects identical tensors.
template <typename Draw>
void expect_concurrent_equals_sequential(Draw draw, const std::string& what) {
  std::vector<at::Tensor> sequential;
  for (int i = 0; i < kThreads; ++i) {
    sequential.push_back(draw(i));
    ASSERT_TRUE(at::isfinite(sequential.back()).all().item<bool>()) << what << " sequential run " << i;
  }
  std::vector<at::Tensor> parallel(kThreads);
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> pool;
  for (int i = 0; i < kThreads; ++i) {
    pool.emplace_back([&, i] {
      try {
        parallel[i] = draw(i);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    });
  }
  for (auto& t : pool) t.join();
  for (int i = 0; i < kThreads; ++i) {
    ASSERT_TRUE(errors[i].empty()) << what << " thread " << i << ": " << errors[i];
    ASSERT_TRUE(parallel[i].defined()) << what << " thread " << i;
    EXPECT_TRUE(at::isfinite(parallel[i]).all().item<bool>()) << what << " thread " << i;
    EXPECT_TRUE(at::equal(sequential[i], parallel[i]))
        << what << " thread " << i << ": max difference " << (sequential[i] - parallel[i]).abs().max().item<double>();
  }
}

mdiff::ModelFunction eval_model_function(std::shared_ptr<torch::nn::Module> module,
                                         std::function<at::Tensor(const at::Tensor&, const at::Tensor&)> forward) {
  module->eval();
  return [module, forward](const at::Tensor& x, const at::Tensor& t, const at::Tensor& /*cond*/) {
    torch::NoGradGuard no_grad;
    return forward(x, t);
  };
}

}  // namespace

TEST(Concurrency, EverySamplerSharesOneMlpDenoiserAcrossThreads) {
  // One intra-op thread: each sampling thread computes alone, so results are bitwise comparable
  // and ThreadSanitizer sees only the threads of this test.
  at::set_num_threads(1);
  torch::manual_seed(1);
  mdiff::MLPDenoiser net(mdiff::MLPDenoiserOptions(3).hidden(32).num_blocks(2).time_embed_dim(16));
  const mdiff::Denoiser denoiser(
      eval_model_function(net.ptr(), [net](const at::Tensor& x, const at::Tensor& t) mutable { return net->forward(x, t); }),
      mdiff::NoiseSchedule::linear(200));
  for (const std::string& name : mdiff::sampler_names()) {
    // Predictor-corrector's Langevin steps diverge on an untrained network (the sequential run is
    // not finite either); its threads are checked on an exact denoiser by
    // SamplerContract.OneSamplerServesManyThreads, which the ThreadSanitizer run includes.
    if (name == "pc") continue;
    const std::unique_ptr<mdiff::Sampler> sampler = mdiff::make_sampler(name, 6, name == "ddim" ? 0.5 : 0.0);
    expect_concurrent_equals_sequential([&](int i) { return sampler->sample(denoiser, {16, 3}, 40 + i); }, name);
  }
}

TEST(Concurrency, OneUNetAndOneManifoldConstraintServeSeveralThreads) {
  at::set_num_threads(1);
  torch::manual_seed(2);
  // Attention at 8x8 and GroupNorm: the library's fused inference kernels run in every thread.
  mdiff::UNet unet(mdiff::UNetOptions(1, 1)
                       .image_size(16)
                       .base_channels(16)
                       .norm_groups(8)
                       .num_res_blocks(1)
                       .num_heads(2)
                       .channel_mult({1, 2})
                       .attention_resolutions({8}));
  const mdiff::Denoiser denoiser(
      eval_model_function(unet.ptr(), [unet](const at::Tensor& x, const at::Tensor& t) mutable { return unet->forward(x, t); }),
      mdiff::NoiseSchedule::cosine(100));
  // A manifold estimated from data (kNN + local PCA), shared by every thread through one constraint.
  const at::Tensor reference = at::randn({64, 1 * 16 * 16}, at::kFloat).mul(0.3);
  auto manifold = mdiff::ReferenceManifold::make(reference, mdiff::ReferenceOptions().k(8).dim(2));
  auto constraint = std::make_shared<mdiff::ManifoldConstraint>(manifold, mdiff::ManifoldConstraintOptions().strength(0.5));
  auto threshold = std::make_shared<mdiff::DynamicThreshold>(mdiff::DynamicThresholdOptions());
  mdiff::SampleArgs args;
  args.hooks = {constraint, threshold};
  for (const std::string& name : {std::string("ddim"), std::string("dpmpp_2m")}) {
    const std::unique_ptr<mdiff::Sampler> sampler = mdiff::make_sampler(name, 4);
    expect_concurrent_equals_sequential([&](int i) { return sampler->sample(denoiser, {2, 1, 16, 16}, 7 + i, args); },
                                        "UNet " + name);
  }
}
