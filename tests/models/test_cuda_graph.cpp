#include <manifold_diffusion/core/device.h>
#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/models/cuda_graph.h>
#include <manifold_diffusion/models/unet.h>
#include <manifold_diffusion/samplers/factory.h>

#include "test_util.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <atomic>
#include <cmath>
#include <memory>

namespace {

mdiff::UNetOptions small_unet() {
  return mdiff::UNetOptions(1, 1)
      .base_channels(16)
      .channel_mult({1, 2})
      .num_res_blocks(1)
      .norm_groups(8)
      .num_heads(2)
      .attention_resolutions({4})
      .image_size(8)
      .num_classes(3)
      .zero_init_output(false);
}

mdiff::ModelFunction unet_function(mdiff::UNet net, std::shared_ptr<std::atomic<int>> calls = nullptr) {
  return [net, calls](const at::Tensor& x, const at::Tensor& t, const at::Tensor& c) mutable {
    if (calls) ++*calls;
    return net->forward(x, t, c);
  };
}

TEST(CudaGraphModel, OnTheCpuEveryCallIsEagerAndIdentical) {
  mdiff::manual_seed(1);
  mdiff::UNet net(small_unet());
  net->eval();
  auto calls = std::make_shared<std::atomic<int>>(0);
  const mdiff::ModelFunction eager = unet_function(net);
  const mdiff::ModelFunction graphed = mdiff::cuda_graph_model(unet_function(net, calls));
  const at::Tensor x = at::randn({2, 1, 8, 8});
  const at::Tensor t = at::tensor({3.0, 700.0}, at::kDouble);
  const at::Tensor c = at::tensor({0, 2}, at::kLong);
  c10::InferenceMode guard;
  EXPECT_TRUE(at::equal(graphed(x, t, c), eager(x, t, c)));
  EXPECT_TRUE(at::equal(graphed(x, t, c), eager(x, t, c)));
  EXPECT_EQ(calls->load(), 2) << "no warm-up or capture calls on the CPU";
}

TEST(CudaGraphModel, RejectsBadOptions) {
  const mdiff::ModelFunction f = [](const at::Tensor& x, const at::Tensor&, const at::Tensor&) { return x; };
  MD_EXPECT_ERROR(mdiff::cuda_graph_model(f, mdiff::CudaGraphOptions().warmup(0)), "warmup", "0");
  MD_EXPECT_ERROR(mdiff::cuda_graph_model(f, mdiff::CudaGraphOptions().max_graphs(-1)), "max_graphs", "-1");
  MD_EXPECT_ERROR(mdiff::cuda_graph_model(mdiff::ModelFunction()), "model is empty");
  MD_EXPECT_ERROR(mdiff::cast_model(f, at::kLong), "compute_dtype", "Long");
}

TEST(CastModel, RunsTheNetworkInTheComputeDtypeAndKeepsTimesteps) {
  at::ScalarType seen_x = at::kByte, seen_t = at::kByte, seen_c = at::kByte;
  const mdiff::ModelFunction f = [&](const at::Tensor& x, const at::Tensor& t, const at::Tensor& c) {
    seen_x = x.scalar_type();
    seen_t = t.scalar_type();
    seen_c = c.scalar_type();
    return x * 2;
  };
  const mdiff::ModelFunction cast = mdiff::cast_model(f, at::kBFloat16);
  const at::Tensor x = at::randn({3, 4});
  const at::Tensor out = cast(x, at::tensor({999.0, 1.0, 0.0}, at::kDouble), at::tensor({1, 0, 2}, at::kLong));
  EXPECT_EQ(seen_x, at::kBFloat16);
  EXPECT_EQ(seen_t, at::kDouble);
  EXPECT_EQ(seen_c, at::kLong);
  EXPECT_EQ(out.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::allclose(out, x * 2, 1e-2, 1e-2));
}

TEST(CudaGraphModel, CapturedSamplingMatchesEager_CUDA) {
  MD_SKIP_WITHOUT_CUDA();
  ASSERT_TRUE(mdiff::cuda_graphs_available());
  mdiff::manual_seed(2);
  mdiff::UNet net(small_unet());
  net->to(at::Device(at::kCUDA, 0));
  net->eval();
  auto calls = std::make_shared<std::atomic<int>>(0);
  const auto schedule = mdiff::NoiseSchedule::cosine(1000);
  const mdiff::Denoiser eager(unet_function(net), schedule, mdiff::PredictionType::VPrediction);
  const mdiff::Denoiser graphed(mdiff::cuda_graph_model(unet_function(net, calls), mdiff::CudaGraphOptions().warmup(2)),
                                schedule, mdiff::PredictionType::VPrediction);
  const auto opts = at::TensorOptions().device(at::kCUDA, 0);
  mdiff::SampleArgs args;
  args.cond = at::tensor({0, 1, 2, 1}, at::kLong).to(at::Device(at::kCUDA, 0));
  args.uncond = at::full({4}, -1, at::kLong).to(at::Device(at::kCUDA, 0));
  args.guidance_scale = 3.0;
  c10::InferenceMode guard;
  for (const char* name : {"ddim", "dpmpp_2m"}) {
    const auto sampler = mdiff::make_sampler(name, 20);
    const at::Tensor a = sampler->sample(eager, {4, 1, 8, 8}, /*seed=*/7, args, 0, opts);
    const at::Tensor b = sampler->sample(graphed, {4, 1, 8, 8}, /*seed=*/7, args, 0, opts);
    ASSERT_TRUE(b.is_cuda());
    EXPECT_TRUE(at::allclose(a, b, 1e-4, 1e-4)) << name << " max diff " << (a - b).abs().max().item<double>();
  }
  // One signature (the doubled guidance batch): 2 warm-ups + 1 capture, then every call replays.
  EXPECT_EQ(calls->load(), 3);
  // A second batch size is a second graph; disabled wrappers call through every time.
  auto eager_calls = std::make_shared<std::atomic<int>>(0);
  const mdiff::ModelFunction off =
      mdiff::cuda_graph_model(unet_function(net, eager_calls), mdiff::CudaGraphOptions().enabled(false));
  const at::Tensor x = at::randn({2, 1, 8, 8}, opts);
  const at::Tensor t = at::full({2}, 10.0, opts.dtype(at::kDouble));
  (void)off(x, t, {});
  (void)off(x, t, {});
  EXPECT_EQ(eager_calls->load(), 2);
}

TEST(CudaGraphModel, Bfloat16SamplingStaysCloseToFloat32_CUDA) {
  MD_SKIP_WITHOUT_CUDA();
  mdiff::manual_seed(3);
  mdiff::UNet net32(small_unet());
  net32->to(at::Device(at::kCUDA, 0));
  net32->eval();
  mdiff::UNet net16(small_unet());
  {
    at::NoGradGuard no_grad;
    auto a = net32->parameters();
    auto b = net16->parameters();
    for (size_t i = 0; i < a.size(); ++i) b[i].copy_(a[i]);
  }
  net16->to(at::Device(at::kCUDA, 0), at::kBFloat16);
  net16->eval();
  const auto schedule = mdiff::NoiseSchedule::cosine(1000);
  const mdiff::Denoiser d32(unet_function(net32), schedule, mdiff::PredictionType::VPrediction);
  const mdiff::Denoiser d16(mdiff::cast_model(unet_function(net16), at::kBFloat16), schedule,
                            mdiff::PredictionType::VPrediction);
  const auto opts = at::TensorOptions().device(at::kCUDA, 0);
  c10::InferenceMode guard;
  const auto sampler = mdiff::make_sampler("ddim", 25);
  const at::Tensor a = sampler->sample(d32, {16, 1, 8, 8}, /*seed=*/5, {}, 0, opts);
  const at::Tensor b = sampler->sample(d16, {16, 1, 8, 8}, /*seed=*/5, {}, 0, opts);
  EXPECT_EQ(b.scalar_type(), at::kFloat);
  const double rel = ((a - b).norm() / a.norm()).item<double>();
  std::cout << "bfloat16 vs float32 DDIM-25 samples: relative L2 error " << rel << "\n";
  EXPECT_LT(rel, 0.05);
}

}  // namespace
