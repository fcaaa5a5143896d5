#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/models/denoiser.h>
#include <manifold_diffusion/ops/q_sample_with_target.h>

#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include <cmath>

namespace manifold_diffusion {
namespace {

// [N] -> [N, 1, ..., 1] with the rank of `like`, in like's dtype and device.
at::Tensor per_sample(const at::Tensor& v, const at::Tensor& like) {
  std::vector<int64_t> shape(static_cast<size_t>(like.dim()), 1);
  shape[0] = v.size(0);
  return v.to(like.device(), like.scalar_type()).reshape(shape);
}

std::vector<int64_t> non_batch_dims(const at::Tensor& t) {
  std::vector<int64_t> dims;
  for (int64_t d = 1; d < t.dim(); ++d) dims.push_back(d);
  return dims;
}

// Validates per-sample noise levels and returns their minimum (one read of the data).
double check_noise_levels(const at::Tensor& alpha_bar, int64_t n, const char* name) {
  check_dim(alpha_bar, name, 1);
  MD_CHECK_VALUE(alpha_bar.size(0) == n, name, ": expected one noise level per sample (", n, "), got ",
                 alpha_bar.size(0));
  const at::Tensor range = at::stack({alpha_bar.min(), alpha_bar.max()}).to(at::kCPU, at::kDouble);
  const double lo = range[0].item<double>();
  const double hi = range[1].item<double>();
  MD_CHECK_VALUE(lo >= 0 && hi <= 1 && std::isfinite(lo) && std::isfinite(hi), name,
                 ": alpha_bar must lie in [0, 1], got min ", lo, " and max ", hi);
  return lo;
}

// Standard normal CDF, elementwise.
at::Tensor approx_std_normal_cdf(const at::Tensor& x) {
  return 0.5 * (1.0 + at::tanh(std::sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * at::pow(x, 3))));
}

}  // namespace

Denoiser::Denoiser(ModelFunction model, NoiseSchedule schedule, DenoiserOptions options)
    : model_(std::move(model)), schedule_(std::move(schedule)), options_(std::move(options)) {
  MD_CHECK_VALUE(static_cast<bool>(model_), "Denoiser: the model function is empty");
  check_positive(options_.sigma_data(), "DenoiserOptions: sigma_data");
  check_positive(options_.min_snr_gamma(), "DenoiserOptions: min_snr_gamma");
  check_non_negative(options_.p2_k(), "DenoiserOptions: p2_k");
  check_non_negative(options_.p2_gamma(), "DenoiserOptions: p2_gamma");
  check_positive(options_.p_std(), "DenoiserOptions: p_std");
  MD_CHECK_VALUE(std::isfinite(options_.p_mean()), "DenoiserOptions: p_mean must be finite, got ", options_.p_mean());
  check_non_negative(options_.vlb_weight(), "DenoiserOptions: vlb_weight");
}

at::Tensor Denoiser::alpha_bar_at(const at::Tensor& t) const {
  check_dim(t, "t", 1);
  const at::Tensor tc = t.to(at::kCPU, at::kDouble).contiguous();
  at::Tensor out = at::empty_like(tc);
  const double* tp = tc.data_ptr<double>();
  double* op = out.data_ptr<double>();
  for (int64_t i = 0; i < tc.numel(); ++i) {
    op[i] = schedule_.alpha_bar_at(tp[i]);
  }
  return out;
}

at::Tensor Denoiser::model_time(const at::Tensor& t, const at::Tensor& alpha_bar) const {
  if (options_.prediction() == PredictionType::EDM) {
    // c_noise = ln(sigma) / 4 with sigma the VE noise level sqrt((1 - ab) / ab).
    return 0.25 * 0.5 * (at::log1p(-alpha_bar) - at::log(alpha_bar));
  }
  return t;
}

at::Tensor Denoiser::call_model(const at::Tensor& x_in, const at::Tensor& t_model, const at::Tensor& cond) const {
  at::Tensor out = model_(x_in, t_model.to(x_in.device(), x_in.scalar_type()), cond);
  check_defined(out, "model output");
  const int64_t channels = x_in.dim() >= 2 ? x_in.size(1) : 1;
  const int64_t expected = options_.learned_variance() ? 2 * channels : channels;
  MD_CHECK_VALUE(out.dim() == x_in.dim() && out.size(0) == x_in.size(0) && (x_in.dim() < 2 || out.size(1) == expected),
                 "Denoiser: the model returned shape ", shape_string(out), " for input ", shape_string(x_in),
                 "; expected ", expected, " channels", options_.learned_variance() ? " (learned variance)" : "");
  return out;
}

DenoiserOutput Denoiser::convert(const at::Tensor& x_t, const at::Tensor& pred, const at::Tensor& alpha_bar) const {
  const at::Tensor ab = per_sample(alpha_bar, x_t);
  const at::Tensor a = ab.sqrt();
  const at::Tensor s = (1 - ab).sqrt();
  const at::Tensor s_safe = s.clamp_min(1e-20);
  DenoiserOutput out;
  switch (options_.prediction()) {
    case PredictionType::Epsilon:
      out.eps = pred;
      out.x0 = (x_t - s * pred) / a;
      break;
    case PredictionType::Sample:
      out.x0 = pred;
      out.eps = (x_t - a * pred) / s_safe;
      break;
    case PredictionType::VPrediction:
      out.x0 = a * x_t - s * pred;
      out.eps = s * x_t + a * pred;
      break;
    case PredictionType::EDM: {
      const double sd = options_.sigma_data();
      const at::Tensor sv = s / a;
      const at::Tensor c_skip = sd * sd / (sv * sv + sd * sd);
      const at::Tensor c_out = sv * sd / (sv * sv + sd * sd).sqrt();
      out.x0 = c_skip * (x_t / a) + c_out * pred;
      out.eps = (x_t - a * out.x0) / s_safe;
      break;
    }
  }
  return out;
}

RawPrediction Denoiser::network_outputs(const at::Tensor& x_t, const at::Tensor& t_model,
                                        const at::Tensor& alpha_bar, const at::Tensor& cond,
                                        const at::Tensor& uncond, double guidance_scale, double guidance_rescale,
                                        bool combine_guidance) const {
  check_floating(x_t, "x_t");
  MD_CHECK_VALUE(x_t.dim() >= 2, "x_t: expected a batch of samples [N, ...], got shape ", shape_string(x_t));
  const int64_t n = x_t.size(0);
  check_shape(t_model, "t_model", {n});
  const double min_alpha_bar = check_noise_levels(alpha_bar, n, "alpha_bar");
  MD_CHECK_VALUE(std::isfinite(guidance_scale), "guidance_scale must be finite, got ", guidance_scale);
  check_in_range(guidance_rescale, 0.0, 1.0, "guidance_rescale");
  const PredictionType p = options_.prediction();
  if (p == PredictionType::Epsilon || p == PredictionType::EDM) {
    MD_CHECK_VALUE(min_alpha_bar > 0, "Denoiser: alpha_bar = 0 (zero terminal SNR) cannot be used with ",
                   p, " prediction: x0 is undefined there; use v_prediction or sample");
  }
  at::Tensor x_in = x_t;
  at::Tensor t_in = model_time(t_model, alpha_bar.to(at::kDouble));
  if (p == PredictionType::EDM) {
    const at::Tensor ab = per_sample(alpha_bar, x_t);
    const at::Tensor sv2 = (1 - ab) / ab;
    x_in = x_t / ab.sqrt() / (sv2 + options_.sigma_data() * options_.sigma_data()).sqrt();
  }
  const bool guided = uncond.defined() && guidance_scale != 1.0;
  const int64_t ch = x_t.size(1);
  RawPrediction out;
  if (guided) {
    MD_CHECK_VALUE(cond.defined(), "classifier-free guidance needs a conditional input, got only the unconditional one");
    MD_CHECK_VALUE(cond.sizes() == uncond.sizes(), "cond and uncond must have the same shape, got ", shape_string(cond),
                   " and ", shape_string(uncond));
    const at::Tensor both = call_model(at::cat({x_in, x_in}), at::cat({t_in, t_in}), at::cat({cond, uncond}));
    auto halves = both.chunk(2, 0);
    at::Tensor c = halves[0];
    at::Tensor u = halves[1];
    if (options_.learned_variance()) {
      out.var_values = c.narrow(1, ch, ch);
      c = c.narrow(1, 0, ch);
      u = u.narrow(1, 0, ch);
    }
    if (!combine_guidance && guidance_rescale <= 0) {
      out.cond = c;
      out.uncond = u;
      out.guidance_scale = guidance_scale;
      return out;
    }
    at::Tensor g = u + guidance_scale * (c - u);
    if (guidance_rescale > 0) {
      const auto dims = non_batch_dims(g);
      const at::Tensor ratio = c.std(dims, /*unbiased=*/true, /*keepdim=*/true) /
                               g.std(dims, /*unbiased=*/true, /*keepdim=*/true).clamp_min(1e-12);
      g = guidance_rescale * (g * ratio) + (1 - guidance_rescale) * g;
    }
    out.cond = g;
  } else {
    const at::Tensor raw = call_model(x_in, t_in, cond);
    if (options_.learned_variance()) {
      out.cond = raw.narrow(1, 0, ch);
      out.var_values = raw.narrow(1, ch, ch);
    } else {
      out.cond = raw;
    }
  }
  return out;
}

DenoiserOutput Denoiser::predict_at(const at::Tensor& x_t, const at::Tensor& t_model, const at::Tensor& alpha_bar,
                                    const at::Tensor& cond, const at::Tensor& uncond, double guidance_scale,
                                    double guidance_rescale) const {
  const RawPrediction raw =
      network_outputs(x_t, t_model, alpha_bar, cond, uncond, guidance_scale, guidance_rescale, true);
  DenoiserOutput out = convert(x_t, raw.cond, alpha_bar);
  out.var_values = raw.var_values;
  return out;
}

RawPrediction Denoiser::predict_raw(const at::Tensor& x_t, double t, double alpha_bar, const at::Tensor& cond,
                                    const at::Tensor& uncond, double guidance_scale, double guidance_rescale) const {
  check_defined(x_t, "x_t");
  MD_CHECK_VALUE(x_t.dim() >= 2, "x_t: expected a batch of samples [N, ...], got shape ", shape_string(x_t));
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  const int64_t n = x_t.size(0);
  RawPrediction out = network_outputs(x_t, at::full({n}, t, opts), at::full({n}, alpha_bar, opts), cond, uncond,
                                      guidance_scale, guidance_rescale, false);
  const double a = std::sqrt(alpha_bar);
  const double s = std::sqrt(1 - alpha_bar);
  switch (options_.prediction()) {
    case PredictionType::Epsilon:
      out.c_x = 1 / a;
      out.c_out = -s / a;
      break;
    case PredictionType::Sample:
      out.c_x = 0;
      out.c_out = 1;
      break;
    case PredictionType::VPrediction:
      out.c_x = a;
      out.c_out = -s;
      break;
    case PredictionType::EDM: {
      const double sd = options_.sigma_data();
      const double sv = s / a;
      out.c_x = sd * sd / (sv * sv + sd * sd) / a;
      out.c_out = sv * sd / std::sqrt(sv * sv + sd * sd);
      break;
    }
  }
  return out;
}

DenoiserOutput Denoiser::predict(const at::Tensor& x_t, double t, const at::Tensor& cond) const {
  check_defined(x_t, "x_t");
  MD_CHECK_VALUE(x_t.dim() >= 1, "x_t: expected a batch dimension");
  const at::Tensor tt = at::full({x_t.size(0)}, t, at::TensorOptions().dtype(at::kDouble));
  return predict(x_t, tt, cond);
}

DenoiserOutput Denoiser::predict(const at::Tensor& x_t, const at::Tensor& t, const at::Tensor& cond) const {
  return predict_at(x_t, t, alpha_bar_at(t), cond);
}

at::Tensor Denoiser::score(const DenoiserOutput& out, const at::Tensor& x_t, const at::Tensor& alpha_bar) {
  return -out.eps / per_sample((1 - alpha_bar).sqrt(), x_t);
}

at::Tensor Denoiser::velocity(const DenoiserOutput& out, const at::Tensor& alpha_bar) {
  const at::Tensor ab = per_sample(alpha_bar, out.eps);
  return ab.sqrt() * out.eps - (1 - ab).sqrt() * out.x0;
}

at::Tensor Denoiser::target(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& alpha_bar) const {
  check_same_shape(x0, "x0", noise, "noise");
  const at::Tensor ab = per_sample(alpha_bar, x0);
  const at::Tensor a = ab.sqrt();
  const at::Tensor s = (1 - ab).sqrt();
  switch (options_.prediction()) {
    case PredictionType::Epsilon:
      return noise;
    case PredictionType::Sample:
      return x0;
    case PredictionType::VPrediction:
      return a * noise - s * x0;
    case PredictionType::EDM: {
      const double sd = options_.sigma_data();
      const at::Tensor sv = s / a;
      const at::Tensor c_skip = sd * sd / (sv * sv + sd * sd);
      const at::Tensor c_out = sv * sd / (sv * sv + sd * sd).sqrt();
      return (x0 - c_skip * (x0 + sv * noise)) / c_out;
    }
  }
  return noise;
}

at::Tensor Denoiser::loss_weight(const at::Tensor& alpha_bar) const {
  const at::Tensor ab = alpha_bar.to(at::kDouble);
  const at::Tensor snr = (ab / (1 - ab)).clamp(1e-20, 1e20);
  const double sd = options_.sigma_data();
  // Factor turning a loss in the network's output space into the equivalent x0-space loss.
  at::Tensor to_x0;
  switch (options_.prediction()) {
    case PredictionType::Epsilon:
      to_x0 = 1 / snr;
      break;
    case PredictionType::Sample:
      to_x0 = at::ones_like(snr);
      break;
    case PredictionType::VPrediction:
      to_x0 = 1 / (1 + snr);
      break;
    case PredictionType::EDM: {
      const at::Tensor sv2 = 1 / snr;
      to_x0 = sv2 * sd * sd / (sv2 + sd * sd);  // c_out^2
      break;
    }
  }
  switch (options_.weighting()) {
    case LossWeighting::Uniform:
      return at::ones_like(snr);
    case LossWeighting::MinSNR:
      return at::clamp_max(snr, options_.min_snr_gamma()) * to_x0;
    case LossWeighting::P2:
      return snr / at::pow(options_.p2_k() + snr, options_.p2_gamma()) * to_x0;
    case LossWeighting::EDM: {
      const at::Tensor sv2 = 1 / snr;
      return (sv2 + sd * sd) / (sv2 * sd * sd) * to_x0;
    }
  }
  return at::ones_like(snr);
}

at::Tensor Denoiser::sample_timesteps(int64_t n, at::Generator generator) const {
  MD_CHECK_VALUE(n >= 0, "sample_timesteps: n must be non-negative, got ", n);
  const int64_t T = schedule_.num_train_timesteps();
  if (options_.noise_sampling() == NoiseLevelSampling::UniformTimestep) {
    return at::randint(0, T, {n}, generator, at::TensorOptions().dtype(at::kLong)).to(at::kDouble);
  }
  const at::Tensor z = at::randn({n}, generator, at::TensorOptions().dtype(at::kDouble));
  const at::Tensor sigma = at::exp(options_.p_mean() + options_.p_std() * z).contiguous();
  at::Tensor t = at::empty_like(sigma);
  const double* sp = sigma.data_ptr<double>();
  double* tp = t.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i) {
    tp[i] = schedule_.timestep_from_ve_sigma(sp[i]);
  }
  return t;
}

Denoiser::LossTerms Denoiser::training_loss_terms(const at::Tensor& x0, const at::Tensor& t, const at::Tensor& noise,
                                                  const at::Tensor& cond, const at::Tensor& input_noise) const {
  check_floating(x0, "x0");
  MD_CHECK_VALUE(x0.dim() >= 2, "x0: expected a batch of samples [N, ...], got shape ", shape_string(x0));
  check_same_shape(x0, "x0", noise, "noise");
  check_shape(t, "t", {x0.size(0)});
  LossTerms r;
  r.alpha_bar = alpha_bar_at(t);
  const at::Tensor ab = per_sample(r.alpha_bar, x0);
  if (input_noise.defined()) check_same_shape(x0, "x0", input_noise, "input_noise");
  // x_t and the target in one pass where the target is one of the fused ones (the per-sample
  // tables are sqrt(alpha_bar) and sqrt(1 - alpha_bar) of each sample's own noise level).
  const PredictionType p = options_.prediction();
  const bool fused = !input_noise.defined() && p != PredictionType::EDM &&
                     noise.scalar_type() == x0.scalar_type() && noise.device() == x0.device() &&
                     !(at::GradMode::is_enabled() && (x0.requires_grad() || noise.requires_grad()));
  at::Tensor tgt;
  if (fused) {
    const at::Tensor abd = r.alpha_bar.to(x0.device());
    const ops::TrainingTarget kind = p == PredictionType::Epsilon  ? ops::TrainingTarget::Epsilon
                                     : p == PredictionType::Sample ? ops::TrainingTarget::Sample
                                                                   : ops::TrainingTarget::VPrediction;
    ops::NoisedSample s = ops::q_sample_with_target(x0, noise, at::Tensor(), abd.sqrt(), (1 - abd).sqrt(), kind);
    r.x_t = std::move(s.x_t);
    tgt = std::move(s.target);
  } else {
    r.x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * (input_noise.defined() ? input_noise : noise);
  }
  r.pred = predict_at(r.x_t, t.to(at::kDouble), r.alpha_bar, cond);
  // The network's output in its own space, recovered from the converted predictions.
  switch (options_.prediction()) {
    case PredictionType::Epsilon:
      r.output = r.pred.eps;
      break;
    case PredictionType::Sample:
      r.output = r.pred.x0;
      break;
    case PredictionType::VPrediction:
      r.output = velocity(r.pred, r.alpha_bar);
      break;
    case PredictionType::EDM: {
      const double sd = options_.sigma_data();
      const at::Tensor sv = ((1 - ab) / ab).sqrt();
      const at::Tensor c_skip = sd * sd / (sv * sv + sd * sd);
      const at::Tensor c_out = sv * sd / (sv * sv + sd * sd).sqrt();
      r.output = (r.pred.x0 - c_skip * (r.x_t / ab.sqrt())) / c_out;
      break;
    }
  }
  if (!tgt.defined()) {
    tgt = target(x0, noise, r.alpha_bar);
  }
  const auto dims = non_batch_dims(x0);
  r.mse = (r.output - tgt).pow(2).mean(dims);
  const at::Tensor w = loss_weight(r.alpha_bar).to(r.mse.device(), r.mse.scalar_type());
  r.loss = (w * r.mse).mean();

  if (options_.learned_variance()) {
    // Variational bound term (Nichol & Dhariwal 2021): the learned log-variance interpolates between
    // the posterior variance and beta_t; the mean is taken from the detached prediction.
    const at::Tensor tl = t.to(at::kLong);
    MD_CHECK_VALUE(at::equal(tl.to(at::kDouble), t.to(at::kDouble)),
                   "learned variance needs integer timesteps for its variational-bound term");
    const at::Tensor tc = tl.cpu();
    const int64_t n = x0.size(0);
    std::vector<double> c1(n), c2(n), log_var_post(n), log_beta(n);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t ti = tc[i].item<int64_t>();
      const double abt = schedule_.alpha_bar(ti);
      const double abp = ti > 0 ? schedule_.alpha_bar(ti - 1) : 1.0;
      const double beta = schedule_.beta(ti);
      c1[i] = std::sqrt(abp) * beta / (1 - abt);
      c2[i] = std::sqrt(1 - beta) * (1 - abp) / (1 - abt);
      // Posterior variance, with its t = 0 value replaced by t = 1's (it is 0 there).
      const int64_t tv = std::max<int64_t>(ti, 1);
      const double ab_v = schedule_.alpha_bar(tv);
      const double abp_v = schedule_.alpha_bar(tv - 1);
      log_var_post[i] = std::log(schedule_.beta(tv) * (1 - abp_v) / (1 - ab_v));
      log_beta[i] = std::log(beta);
    }
    auto col = [&](const std::vector<double>& v) { return per_sample(at::tensor(v, at::kDouble), x0); };
    const at::Tensor mean_q = col(c1) * x0 + col(c2) * r.x_t;
    const at::Tensor mean_p = col(c1) * r.pred.x0.detach() + col(c2) * r.x_t;
    const at::Tensor frac = (r.pred.var_values + 1) / 2;
    const at::Tensor log_var_p = frac * col(log_beta) + (1 - frac) * col(log_var_post);
    const at::Tensor log_var_q = col(log_var_post);
    const at::Tensor kl = 0.5 * (-1.0 + log_var_p - log_var_q + at::exp(log_var_q - log_var_p) +
                                 (mean_q - mean_p).pow(2) * at::exp(-log_var_p));
    // t = 0: discretised Gaussian decoder likelihood over 256 bins in [-1, 1].
    const at::Tensor centered = x0 - mean_p;
    const at::Tensor inv_std = at::exp(-0.5 * log_var_p);
    const at::Tensor cdf_plus = approx_std_normal_cdf(inv_std * (centered + 1.0 / 255));
    const at::Tensor cdf_min = approx_std_normal_cdf(inv_std * (centered - 1.0 / 255));
    const at::Tensor log_cdf_plus = at::log(cdf_plus.clamp_min(1e-12));
    const at::Tensor log_one_minus_cdf_min = at::log((1 - cdf_min).clamp_min(1e-12));
    const at::Tensor log_probs =
        at::where(x0 < -0.999, log_cdf_plus,
                  at::where(x0 > 0.999, log_one_minus_cdf_min, at::log((cdf_plus - cdf_min).clamp_min(1e-12))));
    const at::Tensor is_first = per_sample((tl == 0).to(at::kDouble), x0) > 0.5;
    const at::Tensor term = at::where(is_first, -log_probs, kl);
    r.vlb = term.mean(dims) / std::log(2.0);
    r.loss = r.loss + options_.vlb_weight() * r.vlb.mean();
  }
  return r;
}

at::Tensor Denoiser::training_loss(const at::Tensor& x0, const at::Tensor& t, const at::Tensor& noise,
                                   const at::Tensor& cond) const {
  return training_loss_terms(x0, t, noise, cond).loss;
}

std::string DenoiserOptions::to_json() const {
  nlohmann::json j;
  j["prediction"] = mdiff::to_string(prediction());
  j["sigma_data"] = sigma_data();
  j["learned_variance"] = learned_variance();
  j["weighting"] = mdiff::to_string(weighting());
  j["min_snr_gamma"] = min_snr_gamma();
  j["p2_k"] = p2_k();
  j["p2_gamma"] = p2_gamma();
  j["noise_sampling"] = mdiff::to_string(noise_sampling());
  j["p_mean"] = p_mean();
  j["p_std"] = p_std();
  j["vlb_weight"] = vlb_weight();
  return j.dump();
}

DenoiserOptions DenoiserOptions::from_json(const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    MD_CHECK_VALUE(false, "DenoiserOptions::from_json: invalid JSON: ", e.what());
  }
  MD_CHECK_VALUE(j.is_object(), "DenoiserOptions::from_json: expected a JSON object, got ", j.type_name());
  DenoiserOptions o;
  for (const auto& item : j.items()) {
    const std::string& k = item.key();
    const auto& v = item.value();
    try {
      if (k == "prediction") o.prediction(enum_from_string<PredictionType>(v.get<std::string>()));
      else if (k == "sigma_data") o.sigma_data(v.get<double>());
      else if (k == "learned_variance") o.learned_variance(v.get<bool>());
      else if (k == "weighting") o.weighting(enum_from_string<LossWeighting>(v.get<std::string>()));
      else if (k == "min_snr_gamma") o.min_snr_gamma(v.get<double>());
      else if (k == "p2_k") o.p2_k(v.get<double>());
      else if (k == "p2_gamma") o.p2_gamma(v.get<double>());
      else if (k == "noise_sampling") o.noise_sampling(enum_from_string<NoiseLevelSampling>(v.get<std::string>()));
      else if (k == "p_mean") o.p_mean(v.get<double>());
      else if (k == "p_std") o.p_std(v.get<double>());
      else if (k == "vlb_weight") o.vlb_weight(v.get<double>());
      else MD_CHECK_VALUE(false, "DenoiserOptions::from_json: unknown key '", k, "'");
    } catch (const nlohmann::json::exception& e) {
      MD_CHECK_VALUE(false, "DenoiserOptions::from_json: bad value for '", k, "': ", v.dump(), " (", e.what(), ")");
    }
  }
  return o;
}

}  // namespace manifold_diffusion
