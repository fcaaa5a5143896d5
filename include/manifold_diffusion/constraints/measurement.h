#pragma once
/// \file
/// Measurement operators y = A(x) + noise for inverse problems on images [N, C, H, W]: inpainting
/// masks, super-resolution by average pooling, Gaussian blur and colourisation (RGB to gray). Each
/// has the forward map (differentiable), its adjoint where linear, and the projection onto the
/// measurement set {x : A x = y}: exact for masks, pooling and gray, conjugate gradients otherwise.

#include <manifold_diffusion/core/enum.h>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace manifold_diffusion {

class ConstraintSpec;

/// A linear measurement operator A on batches of images.
///
/// Example:
/// \code
///   auto op = mdiff::AveragePoolOperator::make(2);       // 2x super-resolution
///   at::Tensor y = op->forward(x);                        // [N, C, H/2, W/2]
///   at::Tensor x1 = op->project(at::randn_like(x), y);    // op->forward(x1) == y
///   at::Tensor back = op->adjoint(y);                     // A^T y, shaped like x
/// \endcode
class MeasurementOperator {
 public:
  virtual ~MeasurementOperator() = default;
  /// Short name, e.g. "inpaint", "sr", "blur", "gray".
  virtual std::string name() const = 0;
  /// A x (differentiable in x).
  virtual at::Tensor forward(const at::Tensor& x) const = 0;
  /// A^T y, shaped like the images.
  virtual at::Tensor adjoint(const at::Tensor& y) const = 0;
  /// The point of {x : A x = y} nearest to x: x + A^T (A A^T)^+ (y - A x). The default solves
  /// (A A^T) z = y - A x by conjugate gradients (per sample, `cg_iterations` at most).
  virtual at::Tensor project(const at::Tensor& x, const at::Tensor& y) const;
  /// True when project() is exact (closed form) rather than iterative.
  virtual bool exact_projection() const { return false; }
  /// The component of v in the null space of A (v - A^+ A v): what measurements cannot see.
  at::Tensor null_space_component(const at::Tensor& v) const;
  /// A^+ y: the minimum-norm image with A x = y (project(0, y)).
  at::Tensor pseudo_inverse(const at::Tensor& y) const;
  /// What a person sees of a measurement, as an image shaped like x (masked image, upsampled
  /// low-resolution image, blurred image, gray image in all channels).
  virtual at::Tensor visualise(const at::Tensor& y, at::IntArrayRef image_shape) const;
  /// y with the entries that are not measurements set to zero (inpainting: the missing pixels), so
  /// that noise added to a whole measurement tensor stays in the range of A.
  virtual at::Tensor restrict_to_measured(const at::Tensor& y) const { return y; }
  /// Number of measured entries of one sample of y (inpainting: the known pixels).
  virtual int64_t measured_entries(const at::Tensor& y) const { return y.numel() / std::max<int64_t>(1, y.size(0)); }

  int64_t cg_iterations = 100;
  double cg_tolerance = 1e-7;

 protected:
  /// x + A^T z with (A A^T + ridge I) z = y - A x solved by conjugate gradients, per sample.
  at::Tensor cg_project(const at::Tensor& x, const at::Tensor& y, double ridge) const;
  /// Rejects inputs that are not [N, C, H, W] floating point.
  void check_image(const at::Tensor& x, const char* what) const;
};

/// Inpainting: A x = m * x with a mask m of 1 (measured) and 0 (missing), broadcast over the
/// batch ([H, W], [C, H, W] or [N, C, H, W]). y keeps the image shape (zeros where missing).
///
/// Example:
/// \code
///   auto op = mdiff::InpaintOperator::make(mdiff::box_mask(28, 28, 14, 14));
///   at::Tensor y = op->forward(x);   // the 14x14 centre is zero
/// \endcode
class InpaintOperator : public MeasurementOperator {
 public:
  explicit InpaintOperator(at::Tensor mask);
  static std::shared_ptr<InpaintOperator> make(at::Tensor mask) { return std::make_shared<InpaintOperator>(mask); }
  std::string name() const override { return "inpaint"; }
  at::Tensor forward(const at::Tensor& x) const override;
  at::Tensor adjoint(const at::Tensor& y) const override;
  at::Tensor project(const at::Tensor& x, const at::Tensor& y) const override;
  bool exact_projection() const override { return true; }
  at::Tensor visualise(const at::Tensor& y, at::IntArrayRef image_shape) const override;
  at::Tensor restrict_to_measured(const at::Tensor& y) const override { return mask_for(y) * y; }
  int64_t measured_entries(const at::Tensor& y) const override;
  /// The mask as given, broadcastable to the images.
  const at::Tensor& mask() const { return mask_; }

 private:
  at::Tensor mask_for(const at::Tensor& x) const;
  at::Tensor mask_;
};

/// A mask [H, W] of ones with a centred box_h x box_w hole of zeros.
at::Tensor box_mask(int64_t height, int64_t width, int64_t box_h, int64_t box_w);
/// A mask [H, W] with round(missing * H * W) pixels set to zero, chosen by `seed`.
at::Tensor random_mask(int64_t height, int64_t width, double missing, uint64_t seed);

/// Super-resolution: A x = average pooling by `factor` (H and W divisible by it).
/// A A^T = I / factor^2, so the projection is exact: x + upsample(y - A x).
class AveragePoolOperator : public MeasurementOperator {
 public:
  explicit AveragePoolOperator(int64_t factor);
  static std::shared_ptr<AveragePoolOperator> make(int64_t factor) { return std::make_shared<AveragePoolOperator>(factor); }
  std::string name() const override { return "sr"; }
  at::Tensor forward(const at::Tensor& x) const override;
  at::Tensor adjoint(const at::Tensor& y) const override;
  at::Tensor project(const at::Tensor& x, const at::Tensor& y) const override;
  bool exact_projection() const override { return true; }
  at::Tensor visualise(const at::Tensor& y, at::IntArrayRef image_shape) const override;
  int64_t factor() const { return factor_; }

 private:
  int64_t factor_;
};

/// Gaussian blur with a normalised size x size kernel of standard deviation sigma, per channel,
/// zero padding; y has the image shape. The kernel is symmetric, so A^T = A. A is invertible but
/// badly conditioned (5x5, sigma 1: the frequency response falls to 0.023 at Nyquist, cond(A A^T) ~ 3.4e6 in
/// the periodic approximation), so {x : A x = y} is one point and an exact
/// projection is a noise-amplifying deconvolution: project() solves (A A^T + ridge I) z = y - A x
/// by conjugate gradients and returns x + A^T z (a Tikhonov-regularised projection; ridge 0 is the
/// exact one).
class BlurOperator : public MeasurementOperator {
 public:
  BlurOperator(int64_t size, double sigma, double ridge = 1e-3);
  static std::shared_ptr<BlurOperator> make(int64_t size, double sigma, double ridge = 1e-3) {
    return std::make_shared<BlurOperator>(size, sigma, ridge);
  }
  at::Tensor project(const at::Tensor& x, const at::Tensor& y) const override;
  std::string name() const override { return "blur"; }
  at::Tensor forward(const at::Tensor& x) const override;
  at::Tensor adjoint(const at::Tensor& y) const override;
  at::Tensor visualise(const at::Tensor& y, at::IntArrayRef image_shape) const override;
  const at::Tensor& kernel() const { return kernel_; }
  double ridge() const { return ridge_; }

 private:
  at::Tensor kernel_;  // [size, size] float64
  double ridge_;
};

/// Colourisation: A x = mean over the C >= 2 channels, y [N, 1, H, W]. A A^T = I / C: exact projection.
class GrayOperator : public MeasurementOperator {
 public:
  explicit GrayOperator(int64_t channels = 3);
  static std::shared_ptr<GrayOperator> make(int64_t channels = 3) { return std::make_shared<GrayOperator>(channels); }
  int64_t channels() const { return channels_; }
  std::string name() const override { return "gray"; }
  at::Tensor forward(const at::Tensor& x) const override;
  at::Tensor adjoint(const at::Tensor& y) const override;
  at::Tensor project(const at::Tensor& x, const at::Tensor& y) const override;
  bool exact_projection() const override { return true; }
  at::Tensor visualise(const at::Tensor& y, at::IntArrayRef image_shape) const override;

 private:
  int64_t channels_;
};

/// Builds an operator for images of `channels` x height x width from a specification:
/// `box[:size=14]`, `random[:missing=0.7,seed=0]`, `sr[:factor=2]`, `blur[:size=5,sigma=1,ridge=1e-3]`,
/// `gray` (needs channels >= 2).
std::shared_ptr<MeasurementOperator> make_operator(const std::string& spec, int64_t height, int64_t width,
                                                   int64_t channels = 1);
/// The operator names make_operator() knows.
std::vector<std::string> operator_names();

/// Measurement noise.
enum class NoiseKind {
  Gaussian,  ///< y = A x + sigma n, n ~ N(0, I).
  Poisson,   ///< photon counts: with u = (A x + 1) / 2 in [0, 1], y = 2 Poisson(rate u) / rate - 1.
};
template <>
struct EnumTraits<NoiseKind> {
  static constexpr const char* type_name = "NoiseKind";
  static constexpr EnumEntry<NoiseKind> entries[] = {{NoiseKind::Gaussian, "gaussian"}, {NoiseKind::Poisson, "poisson"}};
};

/// A measurement noise model: how y is corrupted and the data-fidelity norm that matches it.
///
/// Example:
/// \code
///   mdiff::MeasurementNoise noise(mdiff::MeasurementNoiseOptions().sigma(0.05));
///   at::Tensor y = noise.apply(op->forward(x), /*seed=*/0);
///   at::Tensor r = noise.fidelity(y, op->forward(x_hat));   // [N] per-sample norms
/// \endcode
struct MeasurementNoiseOptions {
  TORCH_ARG(NoiseKind, kind) = NoiseKind::Gaussian;
  /// Gaussian standard deviation (0: noise-free).
  TORCH_ARG(double, sigma) = 0.0;
  /// Poisson rate: expected counts at intensity 1.
  TORCH_ARG(double, rate) = 255.0;
};

class MeasurementNoise {
 public:
  explicit MeasurementNoise(MeasurementNoiseOptions options = {});
  const MeasurementNoiseOptions& options() const { return options_; }
  /// Corrupts clean measurements; sample i uses its own generator (seed, i), so the result does not
  /// depend on the batch.
  at::Tensor apply(const at::Tensor& clean, uint64_t seed) const;
  /// Per-sample data-fidelity norm [N] of y - Ax: the Euclidean norm (Gaussian), or the norm weighted
  /// by 1 / (2 u) with u the measured intensity in [0, 1] (Poisson; DPS's weighted norm).
  at::Tensor fidelity(const at::Tensor& y, const at::Tensor& ax) const;
  /// Expected norm of the noise of one measurement with `numel` entries (sigma sqrt(numel) for
  /// Gaussian noise; 0 when noise-free).
  double expected_noise_norm(int64_t numel) const;

 private:
  MeasurementNoiseOptions options_;
};

}  // namespace manifold_diffusion
