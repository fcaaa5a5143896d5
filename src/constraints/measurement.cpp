#include <manifold_diffusion/constraints/measurement.h>

#include <manifold_diffusion/constraints/spec.h>
#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/core/random.h>

#include <ATen/ATen.h>

#include <cmath>

namespace manifold_diffusion {

// ---------------------------------------------------------------------------------------------
// MeasurementOperator

void MeasurementOperator::check_image(const at::Tensor& x, const char* what) const {
  MD_CHECK_VALUE(x.defined() && x.dim() == 4, name(), ": ", what, " must be images [N, C, H, W], got ",
                 x.defined() ? x.sizes() : at::IntArrayRef{});
  MD_CHECK_TYPE(at::isFloatingType(x.scalar_type()), name(), ": ", what, " must be floating point, got ",
                x.scalar_type());
}

at::Tensor MeasurementOperator::project(const at::Tensor& x, const at::Tensor& y) const {
  return cg_project(x, y, 0.0);
}

at::Tensor MeasurementOperator::cg_project(const at::Tensor& x, const at::Tensor& y, double ridge) const {
  check_image(x, "x");
  // Conjugate gradients on (A A^T + ridge I) z = r, one system per sample (the operators act per sample).
  const at::Tensor r0 = y - forward(x);
  const int64_t n = r0.size(0);
  auto dot = [n](const at::Tensor& a, const at::Tensor& b) { return (a * b).reshape({n, -1}).sum(1); };
  auto bshape = [](const at::Tensor& v, const at::Tensor& like) {
    std::vector<int64_t> s(like.dim(), 1);
    s[0] = v.size(0);
    return v.view(s);
  };
  at::Tensor z = at::zeros_like(r0);
  at::Tensor r = r0.clone();
  at::Tensor p = r.clone();
  at::Tensor rr = dot(r, r);
  const at::Tensor stop = dot(r0, r0) * (cg_tolerance * cg_tolerance);
  for (int64_t it = 0; it < cg_iterations; ++it) {
    if ((rr <= stop).all().item<bool>()) break;
    at::Tensor ap = forward(adjoint(p));
    if (ridge > 0) ap = ap + ridge * p;
    const at::Tensor pap = dot(p, ap);
    const at::Tensor alpha = at::where(pap > 0, rr / pap.clamp_min(1e-300), at::zeros_like(pap));
    z = z + bshape(alpha, p) * p;
    r = r - bshape(alpha, ap) * ap;
    const at::Tensor rr_new = dot(r, r);
    const at::Tensor beta = at::where(rr > 0, rr_new / rr.clamp_min(1e-300), at::zeros_like(rr));
    p = r + bshape(beta, p) * p;
    rr = rr_new;
  }
  return x + adjoint(z);
}

at::Tensor MeasurementOperator::null_space_component(const at::Tensor& v) const {
  check_image(v, "v");
  return project(v, at::zeros_like(forward(v)));
}

at::Tensor MeasurementOperator::pseudo_inverse(const at::Tensor& y) const {
  return project(at::zeros_like(adjoint(y)), y);
}

at::Tensor MeasurementOperator::visualise(const at::Tensor& y, at::IntArrayRef /*image_shape*/) const {
  return y;
}

// ---------------------------------------------------------------------------------------------
// Inpainting

InpaintOperator::InpaintOperator(at::Tensor mask) {
  MD_CHECK_VALUE(mask.defined() && mask.dim() >= 2 && mask.dim() <= 4,
                 "InpaintOperator: mask must be [H, W], [C, H, W] or [N, C, H, W], got ",
                 mask.defined() ? mask.sizes() : at::IntArrayRef{});
  MD_CHECK_VALUE(mask.numel() > 0, "InpaintOperator: empty mask ", mask.sizes());
  const at::Tensor m = mask.to(at::kDouble);
  MD_CHECK_VALUE(((m == 0) | (m == 1)).all().item<bool>(), "InpaintOperator: mask values must be 0 or 1");
  while (mask.dim() < 4) mask = mask.unsqueeze(0);
  mask_ = mask.to(at::kFloat);
}

at::Tensor InpaintOperator::mask_for(const at::Tensor& x) const {
  check_image(x, "x");
  const auto ms = mask_.sizes();
  MD_CHECK_VALUE(ms[2] == x.size(2) && ms[3] == x.size(3) && (ms[1] == 1 || ms[1] == x.size(1)) &&
                     (ms[0] == 1 || ms[0] == x.size(0)),
                 "InpaintOperator: mask ", ms, " does not broadcast to images ", x.sizes());
  return mask_.to(x.device(), x.scalar_type());
}

at::Tensor InpaintOperator::forward(const at::Tensor& x) const { return mask_for(x) * x; }
at::Tensor InpaintOperator::adjoint(const at::Tensor& y) const { return mask_for(y) * y; }
at::Tensor InpaintOperator::project(const at::Tensor& x, const at::Tensor& y) const {
  const at::Tensor m = mask_for(x);
  MD_CHECK_VALUE(y.sizes() == x.sizes(), "InpaintOperator: y ", y.sizes(), " must have the image shape ", x.sizes());
  return x + m * (y - x);
}
int64_t InpaintOperator::measured_entries(const at::Tensor& y) const {
  return static_cast<int64_t>(mask_for(y).expand_as(y)[0].sum().item<double>());
}

at::Tensor InpaintOperator::visualise(const at::Tensor& y, at::IntArrayRef) const {
  // Missing pixels shown mid-gray.
  const at::Tensor m = mask_for(y);
  return m * y;
}

at::Tensor box_mask(int64_t height, int64_t width, int64_t box_h, int64_t box_w) {
  MD_CHECK_VALUE(height > 0 && width > 0, "box_mask: size must be positive, got ", height, "x", width);
  MD_CHECK_VALUE(box_h >= 0 && box_h <= height && box_w >= 0 && box_w <= width, "box_mask: box ", box_h, "x", box_w,
                 " does not fit in ", height, "x", width);
  at::Tensor m = at::ones({height, width});
  const int64_t top = (height - box_h) / 2, left = (width - box_w) / 2;
  m.slice(0, top, top + box_h).slice(1, left, left + box_w).zero_();
  return m;
}

at::Tensor random_mask(int64_t height, int64_t width, double missing, uint64_t seed) {
  MD_CHECK_VALUE(height > 0 && width > 0, "random_mask: size must be positive, got ", height, "x", width);
  MD_CHECK_VALUE(missing >= 0 && missing <= 1, "random_mask: missing must be in [0, 1], got ", missing);
  const int64_t n = height * width;
  const auto drop = static_cast<int64_t>(std::llround(missing * static_cast<double>(n)));
  auto gen = make_sample_generators(seed, 0, 1)[0];
  const at::Tensor order = at::randperm(n, gen, at::TensorOptions(at::kLong));
  at::Tensor m = at::ones({n});
  m.index_fill_(0, order.slice(0, 0, drop), 0.0);
  return m.view({height, width});
}

// ---------------------------------------------------------------------------------------------
// Super-resolution by average pooling

AveragePoolOperator::AveragePoolOperator(int64_t factor) : factor_(factor) {
  MD_CHECK_VALUE(factor >= 1, "AveragePoolOperator: factor must be >= 1, got ", factor);
}
at::Tensor AveragePoolOperator::forward(const at::Tensor& x) const {
  check_image(x, "x");
  MD_CHECK_VALUE(x.size(2) % factor_ == 0 && x.size(3) % factor_ == 0, "AveragePoolOperator: image size ", x.size(2),
                 "x", x.size(3), " is not divisible by the factor ", factor_);
  return at::avg_pool2d(x, {factor_, factor_});
}
at::Tensor AveragePoolOperator::adjoint(const at::Tensor& y) const {
  check_image(y, "y");
  return at::repeat_interleave(at::repeat_interleave(y, factor_, 2), factor_, 3) / static_cast<double>(factor_ * factor_);
}
at::Tensor AveragePoolOperator::project(const at::Tensor& x, const at::Tensor& y) const {
  // A A^T = I / f^2, so A^T (A A^T)^-1 r = f^2 A^T r = nearest-neighbour upsampling of r.
  const at::Tensor r = y - forward(x);
  return x + adjoint(r) * static_cast<double>(factor_ * factor_);
}
at::Tensor AveragePoolOperator::visualise(const at::Tensor& y, at::IntArrayRef) const {
  return adjoint(y) * static_cast<double>(factor_ * factor_);
}

// ---------------------------------------------------------------------------------------------
// Gaussian blur

BlurOperator::BlurOperator(int64_t size, double sigma, double ridge) : ridge_(ridge) {
  MD_CHECK_VALUE(ridge >= 0 && std::isfinite(ridge), "BlurOperator: ridge must be >= 0, got ", ridge);
  MD_CHECK_VALUE(size >= 1 && size % 2 == 1, "BlurOperator: size must be odd and >= 1, got ", size);
  MD_CHECK_VALUE(sigma > 0 && std::isfinite(sigma), "BlurOperator: sigma must be positive, got ", sigma);
  const at::Tensor r = at::arange(size, at::kDouble) - static_cast<double>(size / 2);
  const at::Tensor g = at::exp(-(r * r) / (2 * sigma * sigma));
  kernel_ = at::outer(g, g);
  kernel_ = kernel_ / kernel_.sum();
}
at::Tensor BlurOperator::forward(const at::Tensor& x) const {
  check_image(x, "x");
  const int64_t c = x.size(1), k = kernel_.size(0);
  const at::Tensor w = kernel_.to(x.device(), x.scalar_type()).view({1, 1, k, k}).expand({c, 1, k, k}).contiguous();
  return at::conv2d(x, w, {}, 1, k / 2, 1, c);
}
at::Tensor BlurOperator::adjoint(const at::Tensor& y) const { return forward(y); }
at::Tensor BlurOperator::project(const at::Tensor& x, const at::Tensor& y) const { return cg_project(x, y, ridge_); }
at::Tensor BlurOperator::visualise(const at::Tensor& y, at::IntArrayRef) const { return y; }

// ---------------------------------------------------------------------------------------------
// Colourisation

GrayOperator::GrayOperator(int64_t channels) : channels_(channels) {
  MD_CHECK_VALUE(channels >= 2, "GrayOperator: colourisation needs images with >= 2 channels, got ", channels);
}
at::Tensor GrayOperator::forward(const at::Tensor& x) const {
  check_image(x, "x");
  MD_CHECK_VALUE(x.size(1) == channels_, "GrayOperator: expected ", channels_, "-channel images, got ", x.size(1));
  return x.mean(1, true);
}
at::Tensor GrayOperator::adjoint(const at::Tensor& y) const {
  check_image(y, "y");
  MD_CHECK_VALUE(y.size(1) == 1, "GrayOperator: y must have 1 channel, got ", y.size(1));
  return y.expand({y.size(0), channels_, y.size(2), y.size(3)}) / static_cast<double>(channels_);
}
at::Tensor GrayOperator::project(const at::Tensor& x, const at::Tensor& y) const {
  const at::Tensor r = y - forward(x);  // A A^T = I / C: the correction is r in every channel
  return x + r;
}
at::Tensor GrayOperator::visualise(const at::Tensor& y, at::IntArrayRef image_shape) const {
  return y.expand({y.size(0), image_shape.size() == 4 ? image_shape[1] : 3, y.size(2), y.size(3)});
}

// ---------------------------------------------------------------------------------------------

std::vector<std::string> operator_names() { return {"box", "random", "sr", "blur", "gray"}; }

std::shared_ptr<MeasurementOperator> make_operator(const std::string& text, int64_t height, int64_t width,
                                                   int64_t channels) {
  const ConstraintSpec spec = ConstraintSpec::parse(text);
  std::shared_ptr<MeasurementOperator> op;
  const std::string& n = spec.name();
  if (n == "box") {
    const int64_t size = spec.get_int("size", std::min(height, width) / 2);
    op = InpaintOperator::make(box_mask(height, width, size, size));
  } else if (n == "random") {
    op = InpaintOperator::make(
        random_mask(height, width, spec.get_double("missing", 0.7), static_cast<uint64_t>(spec.get_int("seed", 0))));
  } else if (n == "sr") {
    op = AveragePoolOperator::make(spec.get_int("factor", 2));
  } else if (n == "blur") {
    op = BlurOperator::make(spec.get_int("size", 5), spec.get_double("sigma", 1.0), spec.get_double("ridge", 1e-3));
  } else if (n == "gray") {
    op = GrayOperator::make(channels);
  } else {
    std::string names;
    for (const auto& k : operator_names()) names += (names.empty() ? "" : ", ") + k;
    MD_CHECK_VALUE(false, "unknown measurement operator '", n, "' (known: ", names, ")");
  }
  spec.check_all_used();
  return op;
}

// ---------------------------------------------------------------------------------------------
// Noise

MeasurementNoise::MeasurementNoise(MeasurementNoiseOptions options) : options_(options) {
  MD_CHECK_VALUE(options_.sigma() >= 0 && std::isfinite(options_.sigma()), "MeasurementNoise: sigma must be >= 0, got ",
                 options_.sigma());
  MD_CHECK_VALUE(options_.rate() > 0 && std::isfinite(options_.rate()), "MeasurementNoise: rate must be > 0, got ",
                 options_.rate());
}

at::Tensor MeasurementNoise::apply(const at::Tensor& clean, uint64_t seed) const {
  MD_CHECK_VALUE(clean.defined() && clean.dim() >= 1, "MeasurementNoise: measurements must be a batch [N, ...]");
  const int64_t n = clean.size(0);
  auto gens = make_sample_generators(seed, 0, n);
  if (options_.kind() == NoiseKind::Gaussian) {
    if (options_.sigma() == 0) return clean.clone();
    return clean + options_.sigma() * randn_per_sample(clean.sizes(), gens, clean.scalar_type()).to(clean.device());
  }
  const at::Tensor u = ((clean.to(at::kDouble).cpu() + 1) / 2).clamp(0, 1) * options_.rate();
  std::vector<at::Tensor> rows;
  for (int64_t i = 0; i < n; ++i) rows.push_back(at::poisson(u[i], gens[static_cast<size_t>(i)]));
  const at::Tensor counts = at::stack(rows, 0);
  return (2 * counts / options_.rate() - 1).to(clean.device(), clean.scalar_type());
}

at::Tensor MeasurementNoise::fidelity(const at::Tensor& y, const at::Tensor& ax) const {
  MD_CHECK_VALUE(y.sizes() == ax.sizes(), "MeasurementNoise::fidelity: y ", y.sizes(), " and A(x) ", ax.sizes(),
                 " differ in shape");
  const at::Tensor r = (y - ax).flatten(1);
  if (options_.kind() == NoiseKind::Gaussian) {
    return r.norm(2, 1);
  }
  const at::Tensor u = ((y.detach().flatten(1) + 1) / 2).clamp_min(1.0 / options_.rate());
  return (r * r / (2 * u)).sum(1).clamp_min(1e-30).sqrt();
}

double MeasurementNoise::expected_noise_norm(int64_t numel) const {
  if (options_.kind() == NoiseKind::Gaussian) return options_.sigma() * std::sqrt(static_cast<double>(numel));
  // Poisson: variance of 2 Poisson(rate u) / rate is 4 u / rate; at mid intensity u = 0.5.
  return std::sqrt(2.0 / options_.rate() * static_cast<double>(numel));
}

}  // namespace manifold_diffusion
