#pragma once
// The exact denoiser for Gaussian data N(mu, diag(var)): E[x0 | x_t] is closed-form, so samplers
// driven by it have predictable outputs (moments, and the probability-flow ODE's exact solution).

#include <manifold_diffusion/models/denoiser.h>

#include <ATen/ATen.h>

#include <cmath>

namespace mdiff_test {

struct GaussianData {
  at::Tensor mu;        // [D] float64, in the rotated frame
  at::Tensor var;       // [D] float64, in the rotated frame (0 = a direction the data never leaves)
  at::Tensor rotation;  // optional [D, D] orthogonal Q: data = Q z with z ~ N(mu, diag(var))

  // E[x0 | x_t] at VP noise level alpha_bar [N].
  at::Tensor x0(const at::Tensor& x_in, const at::Tensor& alpha_bar) const {
    const at::Tensor q = rotation.defined() ? rotation.to(x_in.scalar_type()) : at::Tensor();
    const at::Tensor x = q.defined() ? x_in.matmul(q) : x_in;  // rows: Q^T x
    const at::Tensor ab = alpha_bar.to(x.scalar_type()).reshape({-1, 1});
    const at::Tensor a = ab.sqrt();
    const at::Tensor m = mu.to(x.scalar_type());
    const at::Tensor v = var.to(x.scalar_type());
    const at::Tensor z0 = m + v * a / (ab * v + (1 - ab)) * (x - a * m);
    return q.defined() ? z0.matmul(q.t()) : z0;
  }

  // The model function for a denoiser with the given parameterisation.
  mdiff::ModelFunction model(const mdiff::NoiseSchedule& schedule, const mdiff::DenoiserOptions& opts) const {
    GaussianData self = *this;
    return [self, schedule, opts](const at::Tensor& x_in, const at::Tensor& t, const at::Tensor&) {
      const int64_t n = x_in.size(0);
      at::Tensor ab;
      at::Tensor x = x_in;
      if (opts.prediction() == mdiff::PredictionType::EDM) {
        const at::Tensor sv = at::exp(4 * t.to(at::kDouble));  // t is c_noise = ln(sigma) / 4
        ab = 1 / (1 + sv * sv);
        const double sd = opts.sigma_data();
        const at::Tensor c_in = 1 / (sv * sv + sd * sd).sqrt();
        x = x_in / c_in.to(x_in.scalar_type()).reshape({-1, 1}) * ab.sqrt().to(x_in.scalar_type()).reshape({-1, 1});
      } else {
        const at::Tensor tc = t.to(at::kDouble).cpu().contiguous();
        const double t0 = tc[0].item<double>();
        if (at::equal(tc, at::full_like(tc, t0))) {
          ab = at::full({n}, schedule.alpha_bar_at(t0), at::kDouble);
        } else {
          ab = at::empty({n}, at::kDouble);
          for (int64_t i = 0; i < n; ++i) ab[i] = schedule.alpha_bar_at(tc[i].item<double>());
        }
      }
      const at::Tensor x0 = self.x0(x, ab);
      const at::Tensor abx = ab.to(x.scalar_type()).reshape({-1, 1});
      const at::Tensor eps = (x - abx.sqrt() * x0) / (1 - abx).sqrt();
      switch (opts.prediction()) {
        case mdiff::PredictionType::Epsilon:
          return eps;
        case mdiff::PredictionType::Sample:
          return x0;
        case mdiff::PredictionType::VPrediction:
          return abx.sqrt() * eps - (1 - abx).sqrt() * x0;
        case mdiff::PredictionType::EDM: {
          const double sd = opts.sigma_data();
          const at::Tensor sv = ((1 - abx) / abx).sqrt();
          const at::Tensor c_skip = sd * sd / (sv * sv + sd * sd);
          const at::Tensor c_out = sv * sd / (sv * sv + sd * sd).sqrt();
          return (x0 - c_skip * (x / abx.sqrt())) / c_out;
        }
      }
      return eps;
    };
  }

  mdiff::Denoiser denoiser(const mdiff::NoiseSchedule& schedule, mdiff::DenoiserOptions opts = {}) const {
    return mdiff::Denoiser(model(schedule, opts), schedule, opts);
  }

  // The probability-flow ODE's exact end point for noise x_ve at VE level sigma_start:
  // x0 = mu + (x_ve - mu) * sqrt(var / (var + sigma_start^2)).
  at::Tensor exact_flow(const at::Tensor& x_ve, double sigma_start) const {
    const at::Tensor m = mu.to(x_ve.scalar_type());
    const at::Tensor v = var.to(x_ve.scalar_type());
    return m + (x_ve - m) * (v / (v + sigma_start * sigma_start)).sqrt();
  }
};

inline GaussianData default_gaussian() {
  return {at::tensor({1.0, -0.5, 0.0}, at::kDouble), at::tensor({0.25, 1.0, 2.25}, at::kDouble), at::Tensor()};
}

}  // namespace mdiff_test
