#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/data/augment.h>

#include <ATen/ATen.h>

#include <cmath>
#include <vector>

namespace manifold_diffusion {
namespace data {
namespace {

constexpr double kPi = 3.14159265358979323846;

// Columns of the uniform draws of one batch; every column is drawn whatever the options, so the
// generator advances by the same amount for every batch of a given size.
enum Draw : int64_t {
  kXflip = 0,
  kYflip,
  kTranslate,
  kTx,
  kTy,
  kRotate,
  kAngle,
  kScale,
  kLogScale,
  kDraws
};

}  // namespace

void AugmentOptions::validate() const {
  check_in_range(xflip_, 0.0, 1.0, "AugmentOptions::xflip");
  check_in_range(yflip_, 0.0, 1.0, "AugmentOptions::yflip");
  check_in_range(translate_, 0.0, 1.0, "AugmentOptions::translate");
  check_in_range(rotate_, 0.0, 1.0, "AugmentOptions::rotate");
  check_in_range(scale_, 0.0, 1.0, "AugmentOptions::scale");
  check_non_negative(translate_pixels_, "AugmentOptions::translate_pixels");
  check_in_range(rotate_degrees_, 0.0, 180.0, "AugmentOptions::rotate_degrees");
  check_positive(scale_min_, "AugmentOptions::scale_min");
  check_positive(scale_max_, "AugmentOptions::scale_max");
  MD_CHECK_VALUE(scale_min_ <= scale_max_, "AugmentOptions: scale_min (", scale_min_,
                 ") must not exceed scale_max (", scale_max_, ")");
}

Augment::Augment(AugmentOptions options) : options_(std::move(options)) { options_.validate(); }

AugmentResult Augment::apply(const at::Tensor& images, at::Generator& gen) const {
  check_dim(images, "images", 4);
  check_floating(images, "images");
  MD_CHECK_VALUE(gen.defined(), "Augment::apply: undefined generator");
  const int64_t n = images.size(0);
  const int64_t h = images.size(2);
  const int64_t w = images.size(3);
  const int64_t t = options_.translate_pixels();
  if (options_.translate() > 0 && options_.padding() == AugmentPadding::Reflect) {
    MD_CHECK_VALUE(t < h && t < w, "Augment::apply: translate_pixels (", t,
                   ") must be smaller than the image height and width with reflect padding, got images of shape ",
                   shape_string(images));
  }

  const at::Tensor u =
      at::rand({n, kDraws}, gen, at::TensorOptions().dtype(at::kDouble).device(gen.device())).cpu().contiguous();
  const double* r = u.data_ptr<double>();
  at::Tensor labels = at::zeros({n, Augment::kLabelDim}, at::kFloat);
  float* lab = labels.data_ptr<float>();

  std::vector<uint8_t> xflip(n, 0), yflip(n, 0);
  std::vector<int64_t> tx(n, 0), ty(n, 0);
  std::vector<int64_t> affine_rows;
  std::vector<double> theta_values;
  bool any_xflip = false, any_yflip = false, any_shift = false;
  const double aspect = static_cast<double>(h) / static_cast<double>(w);
  for (int64_t i = 0; i < n; ++i) {
    const double* ri = r + i * kDraws;
    float* li = lab + i * Augment::kLabelDim;
    if (ri[kXflip] < options_.xflip()) {
      xflip[i] = 1;
      any_xflip = true;
      li[0] = 1;
    }
    if (ri[kYflip] < options_.yflip()) {
      yflip[i] = 1;
      any_yflip = true;
      li[1] = 1;
    }
    if (ri[kTranslate] < options_.translate() && t > 0) {
      const auto draw_shift = [t](double v) {
        return std::min<int64_t>(static_cast<int64_t>(std::floor(v * static_cast<double>(2 * t + 1))), 2 * t) - t;
      };
      tx[i] = draw_shift(ri[kTx]);
      ty[i] = draw_shift(ri[kTy]);
      any_shift = any_shift || tx[i] != 0 || ty[i] != 0;
      li[2] = static_cast<float>(static_cast<double>(tx[i]) / static_cast<double>(w));
      li[3] = static_cast<float>(static_cast<double>(ty[i]) / static_cast<double>(h));
    }
    const bool rotate = ri[kRotate] < options_.rotate() && options_.rotate_degrees() > 0;
    const bool zoom =
        ri[kScale] < options_.scale() && (options_.scale_min() != 1.0 || options_.scale_max() != 1.0);
    if (rotate || zoom) {
      const double angle = rotate ? (2 * ri[kAngle] - 1) * options_.rotate_degrees() * kPi / 180.0 : 0.0;
      const double lo = std::log2(options_.scale_min());
      const double hi = std::log2(options_.scale_max());
      const double log_s = zoom ? lo + ri[kLogScale] * (hi - lo) : 0.0;
      const double c = std::cos(angle), s = std::sin(angle), inv = std::exp2(-log_s);
      li[4] = static_cast<float>(c - 1);
      li[5] = static_cast<float>(s);
      li[6] = static_cast<float>(log_s);
      // theta maps normalised output coordinates (x right, y down, [-1, 1]) to input coordinates.
      // In pixel units about the centre, a counter-clockwise turn on screen reads the output pixel
      // (x, y) from the input at (c x - s y, s x + c y) / zoom; in normalised units the
      // off-diagonal terms pick up the aspect ratio H / W.
      affine_rows.push_back(i);
      theta_values.insert(theta_values.end(), {c * inv, -s * aspect * inv, 0.0, s / aspect * inv, c * inv, 0.0});
    }
  }

  const c10::Device device = images.device();
  at::Tensor x = images;
  if (any_xflip) {
    const at::Tensor mask = at::tensor(xflip, at::kByte)
                                .to(device, at::kBool)
                                .view({n, 1, 1, 1});
    x = at::where(mask, at::flip(x, {3}), x);
  }
  if (any_yflip) {
    const at::Tensor mask = at::tensor(yflip, at::kByte)
                                .to(device, at::kBool)
                                .view({n, 1, 1, 1});
    x = at::where(mask, at::flip(x, {2}), x);
  }
  if (any_shift) {
    const at::Tensor padded = options_.padding() == AugmentPadding::Reflect
                                  ? at::reflection_pad2d(x, {t, t, t, t})
                                  : at::constant_pad_nd(x, {t, t, t, t}, 0.0);
    // Content moves by (tx, ty): out[y, x] = in[y - ty, x - tx] = padded[y - ty + t, x - tx + t].
    std::vector<at::Tensor> rows;
    rows.reserve(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      if (tx[i] == 0 && ty[i] == 0) {
        rows.push_back(x[i]);
      } else {
        rows.push_back(padded[i].narrow(1, t - ty[i], h).narrow(2, t - tx[i], w));
      }
    }
    x = at::stack(rows);
  }
  if (!affine_rows.empty()) {
    const auto m = static_cast<int64_t>(affine_rows.size());
    const at::Tensor idx = at::tensor(affine_rows, at::kLong).to(device);
    const at::Tensor theta = at::tensor(theta_values, at::kDouble).view({m, 2, 3}).to(device, x.scalar_type());
    const at::Tensor sub = x.index_select(0, idx);
    const at::Tensor grid = at::affine_grid_generator(theta, {m, x.size(1), h, w}, /*align_corners=*/false);
    const int64_t padding_mode = options_.padding() == AugmentPadding::Reflect ? 2 : 0;
    const at::Tensor warped =
        at::grid_sampler(sub, grid, /*interpolation_mode=*/0, padding_mode, /*align_corners=*/false);
    x = x.index_copy(0, idx, warped);
  }
  if (x.is_same(images)) {
    x = images.clone();
  }
  return {x.contiguous(), labels.to(device)};
}

}  // namespace data
}  // namespace manifold_diffusion
