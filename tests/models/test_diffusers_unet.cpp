#include <manifold_diffusion/core/file.h>
#include <manifold_diffusion/io/safetensors.h>
#include <manifold_diffusion/models/diffusers_unet.h>

#include "data/data_test_util.h"
#include "test_util.h"
#include "md_test_paths.h"

#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace {

namespace mio = mdiff::io;
const std::string kGolden = MD_TEST_GOLDEN_DIR;

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

at::Tensor run(mdiff::UNet& net, const mio::Safetensors& io) {
  at::NoGradGuard g;
  net->eval();
  return net(io.get("x"), io.get("t"), io.contains("labels") ? io.get("labels") : at::Tensor());
}

// tests/golden/make_golden.py: a random UNet2DModel (every weight perturbed, norms included), its
// outputs for fixed x, t (and labels), written by diffusers 0.27.2.
TEST(DiffusersUnet, MatchesDiffusersAdditiveConditioningWithAttention) {
  mdiff::UNet net = mdiff::load_diffusers_unet(kGolden + "/unet_attn");  // a pipeline folder: reads unet/
  const auto& o = net->options();
  EXPECT_EQ(o.base_channels(), 8);
  EXPECT_EQ(o.channel_mult(), (std::vector<int64_t>{1, 2}));
  EXPECT_FALSE(o.use_scale_shift_norm());
  EXPECT_EQ(o.num_head_channels(), 4);
  EXPECT_EQ(o.attention_resolutions(), (std::vector<int64_t>{4}));
  const auto io = mio::load_safetensors(kGolden + "/unet_attn/io.safetensors");
  const double diff = max_abs_diff(run(net, io), io.get("out"));
  EXPECT_LE(diff, 1e-4) << "max |ours - diffusers| = " << diff;
  RecordProperty("max_abs_diff", std::to_string(diff));
  std::printf("unet_attn: max |ours - diffusers| = %.3g (outputs up to %.3g)\n", diff,
              io.get("out").abs().max().item<double>());
}

TEST(DiffusersUnet, MatchesDiffusersScaleShiftClassesSinCosFreqShift) {
  mdiff::UNet net = mdiff::load_diffusers_unet(kGolden + "/unet_cond");
  const auto& o = net->options();
  EXPECT_TRUE(o.use_scale_shift_norm());
  EXPECT_EQ(o.num_classes(), 3);  // num_class_embeds 4: the last row is the null class
  EXPECT_EQ(o.norm_eps(), 1e-6);
  EXPECT_EQ(o.freq_shift(), 1.0);
  EXPECT_EQ(o.num_heads(), 1);
  EXPECT_EQ(o.num_head_channels(), -1);
  const auto io = mio::load_safetensors(kGolden + "/unet_cond/io.safetensors");
  const double diff = max_abs_diff(run(net, io), io.get("out"));
  EXPECT_LE(diff, 1e-4) << "max |ours - diffusers| = " << diff;
  std::printf("unet_cond: max |ours - diffusers| = %.3g (outputs up to %.3g)\n", diff,
              io.get("out").abs().max().item<double>());
}

// Export, reload: the same network. With MD_DIFFUSERS_EXPORT_DIR set, also leaves an exported folder
// with inputs and outputs for `make_golden.py --check-export DIR` (diffusers loads it).
TEST(DiffusersUnet, ExportRoundTrip) {
  for (const char* name : {"unet_attn", "unet_cond"}) {
    mdiff::UNet net = mdiff::load_diffusers_unet(kGolden + "/" + name);
    const auto io = mio::load_safetensors(kGolden + "/" + name + "/io.safetensors");
    const at::Tensor want = run(net, io);
    mdiff_test::TempDir dir;
    mdiff::export_diffusers_unet(*net, dir.file("x"));
    mdiff::UNet back = mdiff::load_diffusers_unet(dir.file("x"));
    EXPECT_EQ(back->options().to_json(), net->options().to_json()) << name;
    EXPECT_LE(max_abs_diff(run(back, io), want), 1e-6) << name;
    if (const char* out = std::getenv("MD_DIFFUSERS_EXPORT_DIR")) {
      const std::string d = std::string(out) + "/" + name;
      mdiff::export_diffusers_unet(*net, d);
      mio::TensorList tensors{{"x", io.get("x")}, {"t", io.get("t")}, {"out", want}};
      if (io.contains("labels")) tensors.emplace_back("labels", io.get("labels"));
      mio::save_safetensors(d + "/io.safetensors", tensors);
    }
  }
  // A UNet of ours with options a UNet2DModel has: exported and reloaded to the same outputs.
  mdiff::UNet ours(mdiff::UNetOptions(3, 3).base_channels(16).channel_mult({1, 2, 2}).num_res_blocks(1)
                       .attention_resolutions({8}).image_size(16).num_head_channels(8).norm_groups(8)
                       .num_classes(5).zero_init_output(false));
  mdiff_test::TempDir dir;
  mdiff::export_diffusers_unet(*ours, dir.file("ours"));
  mdiff::UNet back = mdiff::load_diffusers_unet(dir.file("ours"));
  const at::Tensor x = at::randn({2, 3, 16, 16});
  const at::Tensor t = at::tensor({5, 900}).to(at::kLong);
  const at::Tensor y = at::tensor({4, -1}).to(at::kLong);  // -1: the null class (row 5 = num_class_embeds - 1)
  ours->eval();
  back->eval();
  at::NoGradGuard g;
  EXPECT_LE(max_abs_diff(back(x, t, y), ours(x, t, y)), 1e-6);
  if (const char* out = std::getenv("MD_DIFFUSERS_EXPORT_DIR")) {
    const std::string d = std::string(out) + "/ours";
    mdiff::export_diffusers_unet(*ours, d);
    mio::save_safetensors(d + "/io.safetensors",
                          {{"x", x}, {"t", t}, {"labels", at::tensor({4, 5}).to(at::kLong)}, {"out", ours(x, t, y)}});
  }
}

TEST(DiffusersUnet, RefusesWhatDoesNotMap) {
  const std::string base = mdiff::diffusers_config_from_unet_options(
      mdiff::UNetOptions(1, 1).base_channels(8).channel_mult({1, 2}).num_res_blocks(1).attention_resolutions({14})
          .num_head_channels(4).norm_groups(4));
  auto with = [&](const std::string& key, const std::string& value) {
    nlohmann::json j = nlohmann::json::parse(base);
    j[key] = nlohmann::json::parse(value);
    return j.dump();
  };
  ASSERT_NO_THROW(mdiff::unet_options_from_diffusers_config(base));
  using mdiff::unet_options_from_diffusers_config;
  MD_EXPECT_ERROR(unet_options_from_diffusers_config(with("down_block_types", R"(["CrossAttnDownBlock2D", "AttnDownBlock2D"])")),
                  "down_block_types[0] = 'CrossAttnDownBlock2D'");
  MD_EXPECT_ERROR(unet_options_from_diffusers_config(with("up_block_types", R"(["UpBlock2D", "UpBlock2D"])")),
                  "down_block_types[1] = 'AttnDownBlock2D' but up_block_types[0] = 'UpBlock2D'");
  MD_EXPECT_ERROR(unet_options_from_diffusers_config(with("time_embedding_type", "\"fourier\"")),
                  "time_embedding_type = \"fourier\"");
  MD_EXPECT_ERROR(unet_options_from_diffusers_config(with("act_fn", "\"gelu\"")), "act_fn = \"gelu\"");
  MD_EXPECT_ERROR(unet_options_from_diffusers_config(with("center_input_sample", "true")), "center_input_sample = true");
  MD_EXPECT_ERROR(unet_options_from_diffusers_config(with("downsample_type", "\"resnet\"")), "downsample_type = \"resnet\"");
  MD_EXPECT_ERROR(unet_options_from_diffusers_config(with("resnet_time_scale_shift", "\"ada_group\"")),
                  "resnet_time_scale_shift = \"ada_group\"");
  MD_EXPECT_ERROR(unet_options_from_diffusers_config(with("class_embed_type", "\"timestep\"")), "class_embed_type");
  MD_EXPECT_ERROR(unet_options_from_diffusers_config(with("block_out_channels", "[8, 12]")),
                  "block_out_channels[1] = 12 is not a multiple");
  MD_EXPECT_ERROR(unet_options_from_diffusers_config(with("mid_block_scale_factor", "1.414")), "mid_block_scale_factor");
  MD_EXPECT_ERROR(unet_options_from_diffusers_config(with("attn_norm_num_groups", "2")), "attn_norm_num_groups = 2");
  MD_EXPECT_ERROR(unet_options_from_diffusers_config(with("new_option", "1")), "unknown key 'new_option'");
  MD_EXPECT_ERROR(unet_options_from_diffusers_config(with("num_class_embeds", "1")), "num_class_embeds = 1");
  MD_EXPECT_ERROR(unet_options_from_diffusers_config(with("attention_head_dim", "3")), "attention_head_dim", "must divide");
  MD_EXPECT_ERROR(unet_options_from_diffusers_config(with("_class_name", "\"UNet2DConditionModel\"")),
                  "_class_name = \"UNet2DConditionModel\"");
  MD_EXPECT_ERROR(unet_options_from_diffusers_config("[1]"), "expected a JSON object");
  {
    nlohmann::json j = nlohmann::json::parse(base);
    j["resnet_time_scale_shift"] = "scale_shift";
    j["attn_norm_num_groups"] = nullptr;
    MD_EXPECT_ERROR(unet_options_from_diffusers_config(j.dump()), "scale_shift", "attn_norm_num_groups = null");
  }

  MD_EXPECT_ERROR(mdiff::diffusers_config_from_unet_options(
                      mdiff::UNetOptions(1, 1).time_embedding(mdiff::TimeEmbedding::Fourier)),
                  "time_embedding = fourier");
  MD_EXPECT_ERROR(mdiff::diffusers_config_from_unet_options(mdiff::UNetOptions(1, 1).augment_dim(9)), "augment_dim = 9");
  MD_EXPECT_ERROR(mdiff::diffusers_config_from_unet_options(mdiff::UNetOptions(1, 1).resblock_updown(true)),
                  "resblock_updown");
  MD_EXPECT_ERROR(mdiff::diffusers_config_from_unet_options(
                      mdiff::UNetOptions(1, 1).base_channels(32).attention_resolutions({28}).num_heads(4)),
                  "heads of different widths");

  // Weights that do not fit the config: named.
  mdiff_test::TempDir dir;
  mdiff::UNet net = mdiff::load_diffusers_unet(kGolden + "/unet_cond");
  mdiff::export_diffusers_unet(*net, dir.file("m"));
  auto st = mio::load_safetensors(dir.file("m/diffusion_pytorch_model.safetensors"));
  st.tensors.emplace_back("extra.weight", at::zeros({1}));
  mio::save_safetensors(dir.file("m/diffusion_pytorch_model.safetensors"), st.tensors);
  MD_EXPECT_ERROR(mdiff::load_diffusers_unet(dir.file("m")), "'extra.weight'", "does not use");
  st.tensors.pop_back();
  st.tensors.erase(st.tensors.begin());
  const std::string dropped = mio::load_safetensors(dir.file("m/diffusion_pytorch_model.safetensors")).tensors[0].first;
  mio::save_safetensors(dir.file("m/diffusion_pytorch_model.safetensors"), st.tensors);
  const std::string lacks = "lacks '" + dropped + "'";
  MD_EXPECT_ERROR(mdiff::load_diffusers_unet(dir.file("m")), lacks.c_str());
  MD_EXPECT_ERROR(mdiff::load_diffusers_unet(dir.file("nothing")), "no config.json");
}

}  // namespace
