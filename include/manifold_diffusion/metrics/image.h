#pragma once

/// \file
/// Full-reference image metrics: PSNR and SSIM, per image.
///
/// Images are [N, C, H, W] tensors (float32 or float64, any device) of the same shape, checked
/// (rank 4, non-empty, finite) and evaluated on the CPU in float64; results are [N] float64 CPU
/// tensors. `data_range` is the span of the pixel values (1 for [0, 1], 2 for [-1, 1], 255 for
/// 8-bit).
///
/// Example:
/// \code
///   at::Tensor p = mdiff::metrics::psnr(x, y, /*data_range=*/1.0);   // [N], dB; inf where x == y
///   at::Tensor s = mdiff::metrics::ssim(x, y, 1.0);                    // [N], 1 where x == y
/// \endcode

#include <manifold_diffusion/core/namespace.h>

#include <ATen/core/Tensor.h>

namespace manifold_diffusion {
namespace metrics {

/// Peak signal-to-noise ratio per image: 10 log10(data_range^2 / MSE), the MSE taken over C, H and
/// W. Identical images have MSE 0 and PSNR +infinity.
///
/// Example:
/// \code
///   at::Tensor p = mdiff::metrics::psnr(x, x + 0.1, 1.0);   // 20 dB for every image
/// \endcode
at::Tensor psnr(const at::Tensor& x, const at::Tensor& y, double data_range = 1.0);

/// Mean structural similarity per image (Wang et al. 2004, "Image quality assessment: from error
/// visibility to structural similarity"): an 11 x 11 Gaussian window with sigma 1.5, K1 = 0.01,
/// K2 = 0.03, C1 = (K1 L)^2, C2 = (K2 L)^2 with L = data_range. Local statistics are taken over
/// every position where the window fits inside the image (no padding, as the paper's reference
/// code does), per channel, and the SSIM map is averaged over channels and positions. H and W must
/// be at least 11.
///
/// Example:
/// \code
///   at::Tensor s = mdiff::metrics::ssim(clean, denoised, 2.0);   // images in [-1, 1]
/// \endcode
at::Tensor ssim(const at::Tensor& x, const at::Tensor& y, double data_range = 1.0);

}  // namespace metrics
}  // namespace manifold_diffusion
