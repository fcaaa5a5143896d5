#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/models/unet.h>

#include "models/model_test_util.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <torch/optim/adam.h>

#include <cmath>
#include <sstream>
#include <string>

namespace {

// The fixture runs each test on one intra-op thread (see SmallNetworkTest).
class UNet : public mdiff_test::SmallNetworkTest {};

// Small enough for a 2-core CPU: 16 and 32 channels, 8 groups.
mdiff::UNetOptions tiny(int64_t in = 1, int64_t out = 1) {
  return mdiff::UNetOptions(in, out).base_channels(16).norm_groups(8).num_res_blocks(1).num_heads(2);
}


struct ShapeCase {
  std::string name;
  mdiff::UNetOptions options;
  int64_t size;
};

TEST_F(UNet, OutputShapes) {
  mdiff::manual_seed(0);
  std::vector<ShapeCase> cases = {
      {"plain 28", tiny(), 28},
      {"plain 32", tiny().image_size(32), 32},
      {"attention 28", tiny().attention_resolutions({14}), 28},
      {"attention 32 head channels", tiny().image_size(32).attention_resolutions({16, 8}).num_head_channels(8), 32},
      {"no middle attention", tiny().middle_attention(false), 28},
      {"additive time", tiny().use_scale_shift_norm(false).attention_resolutions({7}), 28},
      {"resblock updown 28", tiny().resblock_updown(true), 28},
      {"resblock updown 32", tiny().image_size(32).resblock_updown(true).attention_resolutions({16}), 32},
      {"four levels 28 -> 4", tiny().channel_mult({1, 2, 2, 2}).attention_resolutions({4}), 28},
      {"four levels updown", tiny().channel_mult({1, 2, 2, 2}).resblock_updown(true), 28},
      {"learn sigma", tiny(3, 3).learn_sigma(true), 32},
      {"fourier", tiny().time_embedding(mdiff::TimeEmbedding::Fourier).fourier_scale(0.02), 28},
      {"class conditional", tiny().num_classes(10), 28},
      {"two res blocks, dropout", tiny().num_res_blocks(2).dropout(0.1), 28},
      {"odd size", tiny(), 13},
  };
  for (auto& c : cases) {
    SCOPED_TRACE(c.name);
    mdiff::UNet net(c.options);
    mdiff_test::perturb(*net);
    const int64_t n = 2;
    const at::Tensor x = at::randn({n, c.options.in_channels(), c.size, c.size});
    const at::Tensor t = at::tensor({3, 870}, at::kLong);
    const at::Tensor labels = c.options.num_classes() > 0 ? at::tensor({1, 9}, at::kLong) : at::Tensor();
    const at::Tensor y = net(x, t, labels);
    EXPECT_EQ(y.sizes(), (at::IntArrayRef{n, c.options.output_channels(), c.size, c.size}));
    EXPECT_TRUE(at::isfinite(y).all().item<bool>());
  }
  EXPECT_EQ(tiny(3, 3).learn_sigma(true).output_channels(), 6);
}

TEST_F(UNet, ZeroInitialisedOutputIsZero) {
  mdiff::manual_seed(1);
  mdiff::UNet net(tiny().attention_resolutions({14}).num_classes(3));
  const at::Tensor x = at::randn({3, 1, 28, 28});
  const at::Tensor y = net(x, at::tensor({0, 500, 999}), at::tensor({0, 1, 2}));
  EXPECT_EQ(y.abs().max().item<float>(), 0.0f);
  mdiff::UNet loose(tiny().zero_init_output(false));
  EXPECT_GT(loose(x, at::tensor({0, 500, 999})).abs().max().item<float>(), 0.0f);
}

TEST_F(UNet, GradientReachesEveryParameter) {
  const std::vector<mdiff::UNetOptions> configs = {
      tiny().attention_resolutions({14}).num_classes(4).learn_sigma(true),
      tiny().image_size(32).attention_resolutions({16}).resblock_updown(true).use_scale_shift_norm(false),
      tiny().time_embedding(mdiff::TimeEmbedding::Fourier).fourier_scale(0.05).channel_mult({1, 2, 2, 2}),
  };
  for (size_t i = 0; i < configs.size(); ++i) {
    SCOPED_TRACE("config " + std::to_string(i));
    mdiff::manual_seed(2);
    mdiff::UNet net(configs[i]);
    mdiff_test::perturb(*net);
    const int64_t size = configs[i].image_size();
    const at::Tensor x = at::randn({2, 1, size, size});
    const at::Tensor labels = configs[i].num_classes() > 0 ? at::tensor({0, -1}, at::kLong) : at::Tensor();
    const at::Tensor y = net(x, at::tensor({10.0, 640.5}), labels);
    (y * at::randn_like(y)).sum().backward();
    for (const auto& p : net->named_parameters()) {
      ASSERT_TRUE(p.value().grad().defined()) << p.key();
      EXPECT_GT(p.value().grad().abs().max().item<float>(), 0.0f) << p.key();
    }
  }
}

TEST_F(UNet, ClassConditioningAndNullClass) {
  mdiff::manual_seed(3);
  mdiff::UNet net(tiny().num_classes(5));
  mdiff_test::perturb(*net);
  at::NoGradGuard no_grad;
  const at::Tensor x = at::randn({1, 1, 28, 28}).expand({2, 1, 28, 28}).contiguous();
  const at::Tensor t = at::tensor({100, 100});
  const at::Tensor y = net(x, t, at::tensor({0, 4}, at::kLong));
  // Same image and timestep, different class: different prediction.
  EXPECT_GT((y[0] - y[1]).abs().max().item<float>(), 1e-4f);
  // The null class: index num_classes, label -1 and no labels at all agree.
  const at::Tensor null_index = net(x, t, at::tensor({5, 5}, at::kLong));
  const at::Tensor null_minus_one = net(x, t, at::tensor({-1, -1}, at::kLong));
  const at::Tensor null_undefined = net(x, t);
  EXPECT_TRUE(at::equal(null_index, null_minus_one));
  EXPECT_TRUE(at::equal(null_index, null_undefined));
  EXPECT_GT((null_index[0] - y[0]).abs().max().item<float>(), 1e-4f);
  // int32 labels work like int64; a mixed batch of real and null labels is allowed.
  EXPECT_TRUE(at::equal(net(x, t, at::tensor({0, 4}, at::kInt)), y));
  const at::Tensor mixed = net(x, t, at::tensor({0, -1}, at::kLong));
  EXPECT_TRUE(at::allclose(mixed[0], y[0]));
  EXPECT_TRUE(at::allclose(mixed[1], null_index[1]));
}

TEST_F(UNet, TimestepForms) {
  mdiff::manual_seed(4);
  mdiff::UNet net(tiny());
  mdiff_test::perturb(*net);
  at::NoGradGuard no_grad;
  const at::Tensor x = at::randn({3, 1, 28, 28});
  const at::Tensor batch = net(x, at::full({3}, 250, at::kLong));
  EXPECT_TRUE(at::equal(net(x, at::scalar_tensor(250, at::kLong)), batch));  // 0-dim: broadcast
  EXPECT_TRUE(at::equal(net(x, at::full({3}, 250.0, at::kFloat)), batch));   // float equals integer
  const at::Tensor frac = net(x, at::full({3}, 250.5, at::kFloat));           // fractional t
  EXPECT_GT((frac - batch).abs().max().item<float>(), 0.0f);
  EXPECT_TRUE(at::isfinite(frac).all().item<bool>());
  // Samples do not see each other (GroupNorm normalises per sample).
  const at::Tensor single = net(x.slice(0, 1, 2), at::tensor({250}));
  EXPECT_TRUE(at::allclose(single, batch.slice(0, 1, 2), 1e-4, 1e-5));
}

// Plain attention with explicit loops: the oracle for both library paths.
at::Tensor reference_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  const auto qa = q.accessor<float, 3>();
  const auto ka = k.accessor<float, 3>();
  const auto va = v.accessor<float, 3>();
  const int64_t b = q.size(0), l = q.size(1), s = k.size(1), d = q.size(2), e = v.size(2);
  at::Tensor out = at::zeros({b, l, e});
  auto oa = out.accessor<float, 3>();
  for (int64_t bi = 0; bi < b; ++bi) {
    for (int64_t i = 0; i < l; ++i) {
      std::vector<double> w(static_cast<size_t>(s));
      double mx = -1e300, total = 0;
      for (int64_t j = 0; j < s; ++j) {
        double dot = 0;
        for (int64_t c = 0; c < d; ++c) dot += static_cast<double>(qa[bi][i][c]) * ka[bi][j][c];
        w[j] = dot / std::sqrt(static_cast<double>(d));
        mx = std::max(mx, w[j]);
      }
      for (auto& wj : w) total += (wj = std::exp(wj - mx));
      for (int64_t c = 0; c < e; ++c) {
        double acc = 0;
        for (int64_t j = 0; j < s; ++j) acc += w[j] / total * va[bi][j][c];
        oa[bi][i][c] = static_cast<float>(acc);
      }
    }
  }
  return out;
}

TEST_F(UNet, AttentionPathsAgree) {
  mdiff::manual_seed(5);
  const at::Tensor q = at::randn({3, 10, 8});
  const at::Tensor k = at::randn({3, 12, 8});
  const at::Tensor v = at::randn({3, 12, 5});
  const at::Tensor expected = reference_attention(q, k, v);
  const at::Tensor plain = mdiff::dot_product_attention(q, k, v, /*allow_fused=*/false);
  const at::Tensor fused = mdiff::dot_product_attention(q, k, v, /*allow_fused=*/true);
  EXPECT_TRUE(at::allclose(plain, expected, 1e-5, 1e-5));
  EXPECT_TRUE(at::allclose(fused, expected, 1e-5, 1e-5)) << "fused path available: " << mdiff::fused_attention_available();
  // 4-d heads layout as the attention block uses it.
  const at::Tensor q4 = at::randn({2, 4, 49, 16});
  EXPECT_TRUE(at::allclose(mdiff::dot_product_attention(q4, q4 * 0.5, q4, false),
                           mdiff::dot_product_attention(q4, q4 * 0.5, q4, true), 1e-5, 1e-5));
  // The whole block with the same weights.
  mdiff::AttentionBlock a(mdiff::AttentionBlockOptions(16).num_heads(2).norm_groups(8).zero_init(false));
  mdiff::AttentionBlock b(mdiff::AttentionBlockOptions(16).num_heads(2).norm_groups(8).zero_init(false).allow_fused(false));
  {
    at::NoGradGuard no_grad;
    auto pa = a->parameters();
    auto pb = b->parameters();
    ASSERT_EQ(pa.size(), pb.size());
    for (size_t i = 0; i < pa.size(); ++i) pb[i].copy_(pa[i]);
  }
  const at::Tensor x = at::randn({2, 16, 7, 7});
  EXPECT_TRUE(at::allclose(a(x), b(x), 1e-5, 1e-5));
  MD_EXPECT_ERROR(mdiff::dot_product_attention(q, k.slice(2, 0, 4), v), "dot_product_attention", "[3, 12, 4]");
}

TEST_F(UNet, AttentionBlockMatchesTheConv1dFormula) {
  // The block runs its 1x1 projections as matrix products over tokens; the formula of the
  // attention block is GroupNorm -> Conv1d qkv -> per-head softmax(q k^T / sqrt(d)) v -> Conv1d
  // proj -> residual, computed here directly from the parameters.
  mdiff::manual_seed(11);
  const int64_t n = 2, c = 16, heads = 2, d = c / heads, side = 5, positions = side * side;
  mdiff::AttentionBlock block(mdiff::AttentionBlockOptions(c).num_heads(heads).norm_groups(8).zero_init(false));
  const auto params = block->named_parameters();
  for (bool cl : {false, true}) {
    at::Tensor x = at::randn({n, c, side, side});
    if (cl) x = x.contiguous(at::MemoryFormat::ChannelsLast);
    at::NoGradGuard no_grad;
    const at::Tensor h = at::group_norm(x, 8, params["norm.weight"], params["norm.bias"], 1e-5).reshape({n, c, positions});
    const at::Tensor qkv = at::conv1d(h, params["qkv.weight"], params["qkv.bias"]).reshape({n, 3, heads, d, positions});
    const at::Tensor q = qkv.select(1, 0).transpose(-1, -2);
    const at::Tensor k = qkv.select(1, 1).transpose(-1, -2);
    const at::Tensor v = qkv.select(1, 2).transpose(-1, -2);
    const at::Tensor w = at::softmax(at::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(d)), -1);
    const at::Tensor a = at::matmul(w, v).transpose(-1, -2).reshape({n, c, positions});
    const at::Tensor expected = x + at::conv1d(a, params["proj.weight"], params["proj.bias"]).reshape(x.sizes());
    EXPECT_TRUE(at::allclose(block(x), expected, 1e-5, 1e-5)) << "channels_last " << cl;
  }
}

TEST_F(UNet, ChannelsLastMatchesNCHWInForwardAndGradients) {
  mdiff::manual_seed(12);
  const auto opts = tiny().attention_resolutions({4}).image_size(8).zero_init_output(false);
  mdiff::UNet a(mdiff::UNetOptions(opts).channels_last(true));
  mdiff::UNet b(mdiff::UNetOptions(opts).channels_last(false));
  {
    at::NoGradGuard no_grad;
    auto pa = a->parameters();
    auto pb = b->parameters();
    ASSERT_EQ(pa.size(), pb.size());
    for (size_t i = 0; i < pa.size(); ++i) pb[i].copy_(pa[i]);
  }
  auto layouts_are = [&](at::MemoryFormat format) {
    for (const auto& p : a->parameters()) {
      if (p.dim() == 4 && !p.is_contiguous(format)) return false;
    }
    return true;
  };
  const at::Tensor weight_before = a->parameters()[0];
  EXPECT_TRUE(layouts_are(at::MemoryFormat::Contiguous)) << "training mode runs NCHW";
  const at::Tensor x = at::randn({3, 1, 8, 8});
  const at::Tensor t = at::tensor({1, 50, 900}, at::kLong);
  for (bool eval : {false, true}) {
    a->train(!eval);
    b->train(!eval);
    EXPECT_TRUE(layouts_are(eval ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous)) << eval;
    EXPECT_TRUE(a->parameters()[0].is_same(weight_before)) << "parameters keep their identity";
    a->zero_grad();
    b->zero_grad();
    const at::Tensor ya = a->forward(x, t);
    const at::Tensor yb = b->forward(x, t);
    EXPECT_TRUE(ya.is_contiguous());
    EXPECT_TRUE(at::allclose(ya, yb, 1e-4, 1e-5)) << eval << " " << (ya - yb).abs().max();
    ya.square().sum().backward();
    yb.square().sum().backward();
    auto pa = a->parameters();
    auto pb = b->parameters();
    for (size_t i = 0; i < pa.size(); ++i) {
      ASSERT_TRUE(pa[i].grad().defined()) << i;
      EXPECT_TRUE(at::allclose(pa[i].grad(), pb[i].grad(), 1e-3, 1e-4))
          << eval << " " << i << " " << (pa[i].grad() - pb[i].grad()).abs().max();
    }
    // Inference (the fused kernels) agrees with the recorded-gradient path.
    at::Tensor yi;
    {
      c10::InferenceMode guard;
      yi = a->forward(x, t);
    }
    EXPECT_TRUE(at::allclose(yi, ya.detach(), 1e-4, 1e-5)) << eval << " " << (yi - ya.detach()).abs().max();
  }
}

TEST_F(UNet, OverfitsTinyBatch) {
  mdiff::manual_seed(6);
  // Two levels (28 and 14) of 8 and 16 channels: about 44k parameters, a few seconds for 200 steps.
  mdiff::UNet net(
      mdiff::UNetOptions(1, 1).base_channels(8).norm_groups(4).channel_mult({1, 2}).num_res_blocks(1).middle_attention(false));
  // Four fixed images, timesteps and noises; the net learns to predict the noise from x_t.
  const at::Tensor x0 = at::rand({4, 1, 28, 28}) * 2 - 1;
  const at::Tensor noise = at::randn({4, 1, 28, 28});
  const at::Tensor t = at::tensor({50, 300, 600, 900}, at::kLong);
  const at::Tensor alpha_bar = at::tensor({0.9f, 0.6f, 0.3f, 0.05f}).reshape({4, 1, 1, 1});
  const at::Tensor x_t = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise;
  torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(2e-3));
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

TEST_F(UNet, RejectsBadInputs) {
  mdiff::manual_seed(7);
  mdiff::UNet net(tiny().num_classes(3));
  const at::Tensor x = at::randn({2, 1, 28, 28});
  const at::Tensor t = at::tensor({1, 2});
  MD_EXPECT_ERROR(net(at::randn({1, 28, 28}), t), "UNet: x: expected 4 dimensions", "got 3", "[1, 28, 28]");
  MD_EXPECT_ERROR(net(at::randn({2, 3, 28, 28}), t), "expected 1 channels", "got 3", "[2, 3, 28, 28]");
  MD_EXPECT_ERROR(net(x.to(at::kLong), t), "x: expected a floating dtype", "Long");
  MD_EXPECT_ERROR(net(x.to(at::kDouble), t), "x: dtype Double does not match the parameters' Float");
  MD_EXPECT_ERROR(net(at::randn({0, 1, 28, 28}), at::zeros({0})), "expected a non-empty batch", "[0, 1, 28, 28]");
  MD_EXPECT_ERROR(net(x, at::tensor({1, 2, 3})), "UNet: t: expected shape [2]", "got shape [3]");
  MD_EXPECT_ERROR(net(x, at::zeros({2, 1})), "t: expected shape [2]", "[2, 1]");
  MD_EXPECT_ERROR(net(x, at::ones({2}, at::kBool)), "t: expected an integral or floating dtype", "Bool");
  MD_EXPECT_ERROR(net(x, t, at::tensor({0, 4}, at::kLong)), "class_labels: expected values in [-1, 3]", "max 4");
  MD_EXPECT_ERROR(net(x, t, at::tensor({-2, 0}, at::kLong)), "class_labels", "min -2");
  MD_EXPECT_ERROR(net(x, t, at::tensor({0, 1, 2}, at::kLong)), "class_labels: expected shape [2]", "[3]");
  MD_EXPECT_ERROR(net(x, t, at::tensor({0.0, 1.0})), "class_labels: expected an integral dtype", "Double");
  mdiff::UNet uncond(tiny());
  MD_EXPECT_ERROR(uncond(x, t, at::tensor({0, 1}, at::kLong)), "unconditional", "num_classes = 0");
}

TEST_F(UNet, RejectsBadOptions) {
  MD_EXPECT_ERROR(mdiff::UNet(tiny().norm_groups(32)), "norm_groups (32) must divide every channel count",
                  "base_channels * channel_mult[0] = 16 * 1 = 16");
  MD_EXPECT_ERROR(mdiff::UNet(tiny().base_channels(12).channel_mult({2, 3})), "norm_groups (8)", "12 * 3 = 36");
  MD_EXPECT_ERROR(mdiff::UNet(tiny().attention_resolutions({16})), "attention_resolutions[0] = 16",
                  "28x28", "28, 14, 7", "image_size");
  MD_EXPECT_ERROR(mdiff::UNet(tiny().num_heads(3)), "num_heads (3) must divide", "32 channels");
  MD_EXPECT_ERROR(mdiff::UNet(tiny().num_head_channels(5)), "num_head_channels (5)");
  MD_EXPECT_ERROR(mdiff::UNet(tiny().num_head_channels(0)), "num_head_channels must be positive or -1", "got 0");
  MD_EXPECT_ERROR(mdiff::UNet(tiny().channel_mult({})), "channel_mult must not be empty");
  MD_EXPECT_ERROR(mdiff::UNet(tiny().channel_mult({1, 0})), "channel_mult[1] must be positive", "got 0");
  MD_EXPECT_ERROR(mdiff::UNet(tiny().num_res_blocks(0)), "num_res_blocks must be >= 1", "got 0");
  MD_EXPECT_ERROR(mdiff::UNet(tiny().dropout(1.0)), "dropout must be in [0, 1)", "got 1");
  MD_EXPECT_ERROR(mdiff::UNet(tiny().num_classes(-1)), "num_classes must be >= 0", "got -1");
  MD_EXPECT_ERROR(mdiff::UNet(tiny().in_channels(0)), "in_channels must be positive", "got 0");
  MD_EXPECT_ERROR(mdiff::UNet(tiny().base_channels(9).norm_groups(3).channel_mult({1}).middle_attention(false)
                                  .time_embedding(mdiff::TimeEmbedding::Fourier)),
                  "base_channels must be even with the Fourier time embedding", "got 9");
}

TEST_F(UNet, JsonRoundTrip) {
  const mdiff::UNetOptions o = tiny(3, 2)
                                   .channel_mult({1, 2, 2, 2})
                                   .image_size(32)
                                   .attention_resolutions({16, 8})
                                   .num_head_channels(8)
                                   .dropout(0.1)
                                   .use_scale_shift_norm(false)
                                   .time_embedding(mdiff::TimeEmbedding::Fourier)
                                   .fourier_scale(0.5)
                                   .num_classes(10)
                                   .augment_dim(7)
                                   .resblock_updown(true)
                                   .learn_sigma(true)
                                   .zero_init_output(false)
                                   .middle_attention(false);
  const std::string json = o.to_json();
  const mdiff::UNetOptions back = mdiff::UNetOptions::from_json(json);
  EXPECT_EQ(back.to_json(), json);
  EXPECT_EQ(back.in_channels(), 3);
  EXPECT_EQ(back.out_channels(), 2);
  EXPECT_EQ(back.channel_mult(), (std::vector<int64_t>{1, 2, 2, 2}));
  EXPECT_EQ(back.attention_resolutions(), (std::vector<int64_t>{16, 8}));
  EXPECT_EQ(back.time_embedding(), mdiff::TimeEmbedding::Fourier);
  EXPECT_DOUBLE_EQ(back.dropout(), 0.1);
  EXPECT_TRUE(back.learn_sigma());
  EXPECT_EQ(back.augment_dim(), 7);
  EXPECT_FALSE(back.middle_attention());
  // Defaults fill what is missing.
  const auto minimal = mdiff::UNetOptions::from_json(R"({"in_channels": 1, "out_channels": 1})");
  EXPECT_EQ(minimal.to_json(), mdiff::UNetOptions(1, 1).to_json());

  MD_EXPECT_ERROR(mdiff::UNetOptions::from_json(R"({"in_channels": 1, "out_channels": 1, "channels": 8})"),
                  "UNetOptions::from_json: unknown key 'channels'");
  MD_EXPECT_ERROR(mdiff::UNetOptions::from_json(R"({"in_channels": 1, "out_channels": 1, "base_channels": "wide"})"),
                  "bad value for 'base_channels'", "\"wide\"");
  MD_EXPECT_ERROR(mdiff::UNetOptions::from_json(R"({"in_channels": 1, "out_channels": 1, "base_channels": 16.5})"),
                  "bad value for 'base_channels'", "16.5");
  MD_EXPECT_ERROR(mdiff::UNetOptions::from_json(R"({"in_channels": 1, "out_channels": 1, "channel_mult": [1, 2.5]})"),
                  "bad value for 'channel_mult'", "array of integers");
  MD_EXPECT_ERROR(mdiff::UNetOptions::from_json(R"({"in_channels": 1, "out_channels": 1, "learn_sigma": 1})"),
                  "bad value for 'learn_sigma'");
  MD_EXPECT_ERROR(mdiff::UNetOptions::from_json(R"({"in_channels": 1, "out_channels": 1, "time_embedding": "rope"})"),
                  "unknown TimeEmbedding 'rope'");
  MD_EXPECT_ERROR(mdiff::UNetOptions::from_json(R"({"in_channels": 1, "out_channels": 1, "norm_groups": 7})"),
                  "norm_groups (7) must divide");
  MD_EXPECT_ERROR(mdiff::UNetOptions::from_json(R"({"out_channels": 1})"), "missing key 'in_channels'");
  MD_EXPECT_ERROR(mdiff::UNetOptions::from_json("[1, 2]"), "expected a JSON object", "array");
  MD_EXPECT_ERROR(mdiff::UNetOptions::from_json("{"), "invalid JSON");
}

TEST_F(UNet, PrettyPrintShowsOptions) {
  mdiff::UNet net(tiny().attention_resolutions({14}).num_classes(10));
  std::ostringstream os;
  net->pretty_print(os);
  const std::string s = os.str();
  for (const char* part : {"manifold_diffusion::UNet(", "in_channels=1", "base_channels=16", "channel_mult=[1, 2, 2]",
                           "attention_resolutions=[14]", "norm_groups=8", "time_embedding=sinusoidal",
                           "num_classes=10", "learn_sigma=false"}) {
    EXPECT_NE(s.find(part), std::string::npos) << s << " lacks " << part;
  }
}

TEST_F(UNet, CloneIsAnIndependentCopy) {
  mdiff::manual_seed(8);
  mdiff::UNet net(tiny().attention_resolutions({14}).time_embedding(mdiff::TimeEmbedding::Fourier));
  mdiff_test::perturb(*net);
  auto copy = std::dynamic_pointer_cast<mdiff::UNetImpl>(net->clone());
  ASSERT_TRUE(copy);
  at::NoGradGuard no_grad;
  const at::Tensor x = at::randn({2, 1, 28, 28});
  const at::Tensor t = at::tensor({5, 700});
  EXPECT_TRUE(at::equal(copy->forward(x, t), net(x, t)));
  for (auto& p : copy->parameters()) p.add_(1.0);
  EXPECT_FALSE(at::equal(copy->forward(x, t), net(x, t)));
}

TEST_F(UNet, CudaMatchesCpu_CUDA) {
  MD_SKIP_WITHOUT_CUDA();
  mdiff::manual_seed(9);
  mdiff::UNet net(tiny()
                      .image_size(32)
                      .attention_resolutions({16})
                      .resblock_updown(true)
                      .num_classes(3)
                      .time_embedding(mdiff::TimeEmbedding::Fourier)
                      .fourier_scale(0.05)
                      .learn_sigma(true));
  mdiff_test::perturb(*net);
  net->to(at::kDouble);  // float64: no TF32 on the GPU, so both devices agree to rounding
  auto gpu = std::dynamic_pointer_cast<mdiff::UNetImpl>(net->clone(c10::Device(c10::kCUDA)));
  ASSERT_TRUE(gpu);
  at::NoGradGuard no_grad;
  const at::Tensor x = at::randn({3, 1, 32, 32}, at::kDouble);
  const at::Tensor t = at::tensor({1.5, 500.0, 999.0}, at::kDouble);
  const at::Tensor labels = at::tensor({0, 2, -1}, at::kLong);
  const at::Tensor cpu = net(x, t, labels);
  const at::Tensor cuda = gpu->forward(x.cuda(), t, labels.cuda());  // t stays on the CPU: forward moves it
  EXPECT_EQ(cuda.device().type(), c10::kCUDA);
  EXPECT_TRUE(at::allclose(cuda.cpu(), cpu, 1e-9, 1e-9)) << (cuda.cpu() - cpu).abs().max().item<double>();
  MD_EXPECT_ERROR(gpu->forward(x, t), "x is on cpu but the parameters are on cuda");
}

TEST_F(UNet, DDPMCifar10ParameterCount) {
  // Ho et al.'s CIFAR-10 network: 128 channels, multipliers 1, 2, 2, 2, two residual blocks, attention
  // at 16x16, additive time conditioning. The paper reports 35.7M parameters.
  mdiff::UNet net(mdiff::UNetOptions(3, 3)
                      .base_channels(128)
                      .channel_mult({1, 2, 2, 2})
                      .image_size(32)
                      .attention_resolutions({16})
                      .num_heads(1)
                      .use_scale_shift_norm(false));
  int64_t count = 0;
  for (const auto& p : net->parameters()) count += p.numel();
  EXPECT_EQ(count, 35746307);
}

}  // namespace

TEST_F(UNet, AugmentLabelsConditionTheOutputAndZerosAreTheIdentity) {
  mdiff::UNet net(tiny().augment_dim(3).zero_init_output(false));
  net->eval();
  const at::Tensor x = at::randn({2, 1, 8, 8});
  const at::Tensor t = at::tensor({10.0, 500.0});
  const at::Tensor plain = net->forward(x, t);
  EXPECT_TRUE(at::allclose(net->forward(x, t, {}, at::zeros({2, 3})), plain, 1e-6, 1e-6));
  EXPECT_FALSE(at::allclose(net->forward(x, t, {}, at::ones({2, 3})), plain, 1e-4, 1e-4));
  MD_EXPECT_ERROR(net->forward(x, t, {}, at::zeros({2, 4})), "augment_labels", "[2, 3]");
  mdiff::UNet none(tiny());
  MD_EXPECT_ERROR(none->forward(x, t, {}, at::zeros({2, 3})), "augment_dim = 0");
  MD_EXPECT_ERROR(mdiff::UNet(tiny().augment_dim(-1)), "augment_dim", "-1");
}
