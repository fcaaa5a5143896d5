// The network configurations the benchmarks measure, in one place: mdiff-train's default UNet,
// the UNet of the race against diffusers (benchmarks/peers), and mdiff-toy's default MLP.
#pragma once

#include <manifold_diffusion/models/mlp_denoiser.h>
#include <manifold_diffusion/models/unet.h>

namespace mdiff_bench {

/// mdiff-train's default UNet for Fashion-MNIST (examples/train.cpp): base 32, levels of 32, 64 and
/// 64 channels, one residual block per level, attention at 7x7, dropout 0.1, 8 norm groups,
/// 10 classes; 300,641 parameters.
inline mdiff::UNetOptions train_unet_options() {
  return mdiff::UNetOptions(1, 1)
      .base_channels(32)
      .channel_mult({1, 2, 2})
      .num_res_blocks(1)
      .attention_resolutions({7})
      .image_size(28)
      .dropout(0.1)
      .norm_groups(8)
      .num_classes(10);
}

/// The UNet of the race, matched to benchmarks/peers/race.py's UNet2DModel(block_out_channels=
/// (32, 64, 128), layers_per_block=2, DownBlock2D / AttnDownBlock2D / AttnDownBlock2D and mirrored
/// up blocks, attention_head_dim=8, norm_num_groups=32): time conditioning added after the first
/// convolution (diffusers' "default" time_embedding_norm), a time embedding of 4 * 32 = 128
/// features, heads of 8 channels, attention at 14x14 and 7x7 and in the middle block, random
/// initial weights everywhere (diffusers does not zero-initialise); 4,023,233 parameters, as
/// UNet2DModel has.
inline mdiff::UNetOptions race_unet_options() {
  return mdiff::UNetOptions(1, 1)
      .base_channels(32)
      .channel_mult({1, 2, 4})
      .num_res_blocks(2)
      .attention_resolutions({14, 7})
      .image_size(28)
      .middle_attention(true)
      .num_head_channels(8)
      .norm_groups(32)
      .use_scale_shift_norm(false)
      .dropout(0.0)
      .zero_init_output(false);
}

/// mdiff-toy's default network for its default data set (the swiss roll in R^3), with random
/// output layers (zero_init_output off) so that every layer computes on non-zero weights.
inline mdiff::MLPDenoiserOptions toy_mlp_options() {
  return mdiff::MLPDenoiserOptions(3).hidden(256).num_blocks(4).zero_init_output(false);
}

}  // namespace mdiff_bench
