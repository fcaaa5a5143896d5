#pragma once
/// \file
/// diffusers `UNet2DModel` folders (config.json + diffusion_pytorch_model.safetensors) to and from
/// this library's UNet, for the configurations that map exactly (docs/interop.md lists them).
///
/// Example:
/// \code
///   mdiff::UNet net = mdiff::load_diffusers_unet("ddpm-model");     // or a pipeline folder with unet/
///   net->eval();
///   at::Tensor eps = net(at::randn({1, 3, 32, 32}), at::tensor({999}));
///   mdiff::export_diffusers_unet(*net, "out/exported");              // UNet2DModel.from_pretrained loads it
/// \endcode

#include <manifold_diffusion/core/namespace.h>
#include <manifold_diffusion/models/unet.h>

#include <string>

namespace manifold_diffusion {

/// The UNetOptions of a diffusers UNet2DModel config.json (the text). Maps DownBlock2D /
/// AttnDownBlock2D, UpBlock2D / AttnUpBlock2D, the UNetMidBlock2D (with or without attention),
/// block_out_channels (multiples of the first), layers_per_block, attention_head_dim (null: one
/// head), norm_num_groups, norm_eps, act_fn silu/swish, positional time embedding with either
/// flip_sin_to_cos and any freq_shift, resnet_time_scale_shift default/scale_shift, num_class_embeds
/// (the last class becomes this UNet's null class), dropout, sample_size. Anything else (other block
/// types, attention on one path only, fourier or learned time embeddings, center_input_sample,
/// another act_fn, downsample/upsample types other than conv, ...) is refused with a message naming
/// the key and its value; so are unknown keys. Keys starting with '_' are ignored.
///
/// Example:
/// \code
///   mdiff::UNetOptions o = mdiff::unet_options_from_diffusers_config(R"({"block_out_channels": [64, 128], ...})");
/// \endcode
UNetOptions unet_options_from_diffusers_config(const std::string& config_json);

/// The diffusers UNet2DModel config.json text for these options; refuses options diffusers cannot
/// express (Fourier time embedding, augment_dim, resblock_updown, attention heads of different
/// widths), naming them. learn_sigma exports out_channels = output_channels().
///
/// Example:
/// \code
///   std::string json = mdiff::diffusers_config_from_unet_options(net->options());
/// \endcode
std::string diffusers_config_from_unet_options(const UNetOptions& options);

/// Loads a diffusers UNet2DModel: `dir` holds config.json and diffusion_pytorch_model.safetensors,
/// or is a pipeline folder whose unet/ subfolder does. Every weight of the file is used and every
/// parameter of the UNet is set (a missing or extra name, or a shape mismatch, is an error naming
/// it); attention weights in diffusers' old names (query, key, value, proj_attn) are accepted.
/// The UNet is returned in training mode, as a constructed one; call eval() for inference.
///
/// Example:
/// \code
///   mdiff::UNet net = mdiff::load_diffusers_unet("google-ddpm-cifar10-32");
/// \endcode
UNet load_diffusers_unet(const std::string& dir);

/// Writes `dir`/config.json and `dir`/diffusion_pytorch_model.safetensors (float32, atomically;
/// `dir` is created) so that diffusers' UNet2DModel.from_pretrained(dir) builds the same network.
///
/// Example:
/// \code
///   mdiff::export_diffusers_unet(*net, "out/unet");
/// \endcode
void export_diffusers_unet(const UNetImpl& unet, const std::string& dir);

}  // namespace manifold_diffusion
