#pragma once

/// \file
/// Geometric image augmentation with non-leaky conditioning labels.
///
/// Karras et al. 2022 ("Elucidating the Design Space of Diffusion-Based Generative Models", EDM,
/// appendix F.2) augment the training images of a diffusion model and give the network the
/// parameters of what was applied as an extra conditioning input. The network learns the
/// augmented distributions as separate modes; asked for "no augmentation" (all labels zero) at
/// sampling time, it generates clean images, so the augmentations do not leak into the samples.
/// Guide: docs/data.md.

#include <manifold_diffusion/core/enum.h>
#include <manifold_diffusion/core/namespace.h>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include <cstdint>

namespace manifold_diffusion {
namespace data {

/// How pixels outside the image are filled by a translation, a rotation or a zoom-out.
enum class AugmentPadding {
  Reflect,  ///< mirror the image at its border (no visible edge)
  Zeros,    ///< fill with 0
};

/// Options of Augment. Each transform is applied to a sample with its own probability, decided
/// independently per sample; a probability of 0 (the default) switches the transform off.
///
/// Example:
/// \code
///   auto opts = mdiff::data::AugmentOptions()
///                   .xflip(0.5)                          // mirror left-right half of the time
///                   .translate(0.5).translate_pixels(2)  // shift by -2..2 px along each axis
///                   .rotate(0.2).rotate_degrees(10)      // rotate by -10..10 degrees
///                   .scale(0.2).scale_range(0.9, 1.1);   // zoom by a log-uniform factor
/// \endcode
struct AugmentOptions {
  /// Probability of mirroring a sample left-right (along W).
  TORCH_ARG(double, xflip) = 0.0;
  /// Probability of mirroring a sample upside down (along H).
  TORCH_ARG(double, yflip) = 0.0;
  /// Probability of an integer translation.
  TORCH_ARG(double, translate) = 0.0;
  /// Largest shift in pixels; a translated sample is shifted by integers drawn uniformly from
  /// [-translate_pixels, translate_pixels] along x and y (independently). With Reflect padding it
  /// must be smaller than H and W.
  TORCH_ARG(int64_t, translate_pixels) = 2;
  /// Probability of a rotation about the image centre.
  TORCH_ARG(double, rotate) = 0.0;
  /// Largest rotation angle; a rotated sample turns by an angle drawn uniformly from
  /// [-rotate_degrees, rotate_degrees] (positive: counter-clockwise on screen, as at::rot90).
  TORCH_ARG(double, rotate_degrees) = 0.0;
  /// Probability of an isotropic zoom about the image centre.
  TORCH_ARG(double, scale) = 0.0;
  /// Smallest zoom factor (> 1 magnifies); log2 of the factor is drawn uniformly from
  /// [log2(scale_min), log2(scale_max)].
  TORCH_ARG(double, scale_min) = 1.0;
  /// Largest zoom factor; at least scale_min.
  TORCH_ARG(double, scale_max) = 1.0;
  /// Filling of the pixels that a translation, rotation or zoom-out brings in.
  TORCH_ARG(AugmentPadding, padding) = AugmentPadding::Reflect;

 public:
  /// Sets scale_min and scale_max together.
  AugmentOptions& scale_range(double lo, double hi) {
    scale_min_ = lo;
    scale_max_ = hi;
    return *this;
  }
  /// Fails with a message naming the bad option; Augment's constructor calls it.
  void validate() const;
};

/// Augmented images and the parameters of what was applied to each.
struct AugmentResult {
  /// [N, C, H, W], same dtype and device as the input.
  at::Tensor images;
  /// float32 [N, Augment::label_dim()] on the input's device; layout in Augment.
  at::Tensor labels;
};

/// Per-sample geometric augmentation with EDM's non-leaky conditioning labels.
///
/// A sample goes through, in this order: x-flip, y-flip, integer translation, then one bilinear
/// resampling that rotates and zooms about the centre (only for samples that drew a rotation or a
/// zoom; the others are not resampled and stay exact). Labels, one row per sample:
///
/// | column | meaning | when not applied |
/// | --- | --- | --- |
/// | 0 | 1 if x-flipped | 0 |
/// | 1 | 1 if y-flipped | 0 |
/// | 2 | tx / W: horizontal shift (pixels, positive = right) over the width | 0 |
/// | 3 | ty / H: vertical shift (pixels, positive = down) over the height | 0 |
/// | 4 | cos(angle) - 1 | 0 |
/// | 5 | sin(angle) (angle positive = counter-clockwise) | 0 |
/// | 6 | log2(zoom factor) | 0 |
///
/// A row of zeros means "identity", which is what a network conditioned on the labels is given at
/// sampling time. The random numbers of a batch are drawn from `gen` in a fixed layout (the same
/// count whatever the options), so a given generator state always yields the same output.
///
/// Example:
/// \code
///   mdiff::data::Augment aug(mdiff::data::AugmentOptions().xflip(0.5).translate(0.3).translate_pixels(2));
///   at::Generator gen = mdiff::make_generator(0);
///   mdiff::data::AugmentResult r = aug.apply(images, gen);   // images [N, 1, 28, 28]
///   // train: net(x_t, t, /*augment_labels=*/r.labels); sample: net(x_t, t, at::zeros({n, 7}))
/// \endcode
class Augment {
 public:
  /// Number of label columns.
  static constexpr int64_t kLabelDim = 7;

  explicit Augment(AugmentOptions options = {});

  /// images: floating [N, C, H, W] on any device; `gen` a generator (CPU or the images' device).
  AugmentResult apply(const at::Tensor& images, at::Generator& gen) const;

  /// Number of label columns (7).
  static constexpr int64_t label_dim() { return kLabelDim; }
  const AugmentOptions& options() const { return options_; }

 private:
  AugmentOptions options_;
};

}  // namespace data

/// Names of AugmentPadding: "reflect", "zeros".
template <>
struct EnumTraits<data::AugmentPadding> {
  static constexpr const char* type_name = "AugmentPadding";
  static constexpr EnumEntry<data::AugmentPadding> entries[] = {{data::AugmentPadding::Reflect, "reflect"},
                                                                {data::AugmentPadding::Zeros, "zeros"}};
};

}  // namespace manifold_diffusion
