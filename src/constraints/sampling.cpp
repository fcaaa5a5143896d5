#include <manifold_diffusion/constraints/sampling.h>

#include <manifold_diffusion/constraints/spec.h>
#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/ops/project_local_pca.h>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <cmath>

namespace manifold_diffusion {

namespace {

/// Per-sample scalar [N] broadcast against x [N, ...].
at::Tensor per_sample(const at::Tensor& v, const at::Tensor& x) {
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[0] = v.size(0);
  return v.view(shape);
}

at::Tensor grad_of(const at::Tensor& scalar, const at::Tensor& wrt) {
  return torch::autograd::grad({scalar}, {wrt}, {}, /*retain_graph=*/true, /*create_graph=*/false,
                               /*allow_unused=*/true)[0];
}

void check_jacobian_context(const StepContext& ctx, const std::string& who) {
  MD_CHECK_VALUE(ctx.x_t_leaf.defined() && ctx.x0_graph.defined() && ctx.x0_graph.requires_grad(), who,
                 ": the sampler did not provide the denoiser's graph (ctx.x_t_leaf / ctx.x0_graph); run it through "
                 "Sampler::sample or Sampler::step with the constraint in SampleArgs::hooks, outside inference mode");
}

void check_measurement(const Measurement& m, const std::string& who) {
  MD_CHECK_VALUE(m.op != nullptr, who, ": no measurement operator");
  MD_CHECK_VALUE(m.y.defined() && m.y.dim() >= 1 && m.y.size(0) >= 1, who, ": measurements y must be a batch [N, ...]");
  MD_CHECK_VALUE(at::isfinite(m.y).all().item<bool>(), who, ": measurements y contain NaN or Inf");
}

const at::Tensor& checked_y(const Measurement& m, const at::Tensor& x, const std::string& who) {
  MD_CHECK_VALUE(m.y.size(0) == x.size(0), who, ": ", m.y.size(0), " measurements for a batch of ", x.size(0),
                 " samples");
  return m.y;
}

/// The per-sample residual |y - A x0_hat(x_t)| of the step and its gradient with respect to x_t
/// through the denoiser (the sampler's graph); the gradient is undefined when x0_hat does not
/// depend on x_t. Shared by MCG, DPS and DSG.
struct MeasurementGradient {
  at::Tensor residual;  // [N], detached
  at::Tensor grad;      // like x_t, detached, or undefined
};
MeasurementGradient measurement_gradient(const Measurement& m, const StepContext& ctx, const at::Tensor& x_next,
                                         const std::string& who, bool with_grad = true) {
  check_jacobian_context(ctx, who);
  const at::Tensor& y = checked_y(m, x_next, who);
  const at::Tensor res = m.noise.fidelity(y.to(ctx.x0_graph.options()), m.op->forward(ctx.x0_graph));
  if (!with_grad) return {res.detach(), at::Tensor()};
  const at::Tensor g = grad_of(res.sum(), ctx.x_t_leaf);
  return {res.detach(), g.defined() ? g.detach() : g};
}

}  // namespace

bool StepWindow::contains(int64_t step, int64_t num_steps) const {
  if (num_steps <= 0) return true;
  const double f = static_cast<double>(step) / static_cast<double>(num_steps);
  return f >= start && f < end;
}

std::map<std::string, double> SamplingConstraint::scalars() const {
  const at::Tensor r = residual();
  if (!r.defined() || r.numel() == 0) return {};
  return {{name() + "_residual", r.to(at::kDouble).mean().item<double>()}};
}

// ------------------------------------------------------------------------------------------------

StaticClip::StaticClip(double min, double max) : min_(min), max_(max) {
  MD_CHECK_VALUE(std::isfinite(min) && std::isfinite(max) && min < max, "StaticClip: need finite min < max, got [", min,
                 ", ", max, "]");
}

at::Tensor StaticClip::on_x0(const StepContext&, at::Tensor x0) { return x0.clamp(min_, max_); }

DynamicThreshold::DynamicThreshold(DynamicThresholdOptions options) : options_(options) {
  MD_CHECK_VALUE(options_.percentile() > 0 && options_.percentile() <= 1,
                 "DynamicThreshold: percentile must be in (0, 1], got ", options_.percentile());
  MD_CHECK_VALUE(options_.max_value() >= 1 && std::isfinite(options_.max_value()),
                 "DynamicThreshold: max_value must be >= 1, got ", options_.max_value());
}

at::Tensor DynamicThreshold::on_x0(const StepContext&, at::Tensor x0) {
  const at::Tensor flat = x0.detach().abs().flatten(1).to(x0.scalar_type() == at::kDouble ? at::kDouble : at::kFloat);
  at::Tensor s = at::quantile(flat, options_.percentile(), 1);
  s = s.clamp(1.0, options_.max_value()).to(x0.scalar_type());
  set_residual(s);  // the per-sample threshold
  const at::Tensor sb = per_sample(s, x0);
  return at::max(at::min(x0, sb), -sb) / sb;
}

// ------------------------------------------------------------------------------------------------

ManifoldConstraint::ManifoldConstraint(std::shared_ptr<const Manifold> manifold, ManifoldConstraintOptions options)
    : manifold_(std::move(manifold)), options_(options) {
  MD_CHECK_VALUE(manifold_ != nullptr, "ManifoldConstraint: no manifold");
  MD_CHECK_VALUE(options_.strength() >= 0 && options_.strength() <= 1,
                 "ManifoldConstraint: strength must be in [0, 1], got ", options_.strength());
  MD_CHECK_VALUE(options_.step() >= 0 && options_.h() > 0, "ManifoldConstraint: need step >= 0 and h > 0, got step ",
                 options_.step(), ", h ", options_.h());
}

at::Tensor ManifoldConstraint::on_x0(const StepContext& ctx, at::Tensor x0) {
  if (!options_.window().contains(ctx.step, ctx.num_steps)) return x0;
  const int64_t d = x0.numel() / std::max<int64_t>(1, x0.size(0));
  MD_CHECK_VALUE(d == manifold_->ambient_dim(), "ManifoldConstraint: samples have ", d, " values, the manifold lives in R^",
                 manifold_->ambient_dim());
  at::Tensor x = x0.detach();
  LocalFrame frame;
  {
    torch::NoGradGuard no_grad;
    frame = manifold_->local_frame(x);
  }
  const at::Tensor flat = x.flatten(1);
  const at::Tensor origin = frame.origin.to(flat.options());
  // The normal part (I - U U^T)(x - origin) = x - project onto the frame, one fused pass per row.
  const at::Tensor own = at::arange(flat.size(0), flat.options().dtype(at::kLong));
  const at::Tensor normal =
      flat - ops::project_local_pca(flat, origin, frame.basis.to(flat.options()).transpose(1, 2), own);  // [N, D]
  at::Tensor moved;
  if (options_.mode() == ManifoldMode::Project) {
    moved = -options_.strength() * normal;
  } else {
    const at::Tensor norm = normal.norm(2, 1, true).clamp_min(1e-12);
    const at::Tensor gate = at::tanh(frame.nearest_distance.to(flat.options()) / options_.h()).unsqueeze(1);
    moved = -options_.step() * gate * normal / norm;
  }
  set_residual(moved.norm(2, 1));
  return x0 + moved.view(x0.sizes());
}

AutoencoderProjection::AutoencoderProjection(AutoencoderFunctions ae, double strength, StepWindow window)
    : ae_(std::move(ae)), strength_(strength), window_(window) {
  MD_CHECK_VALUE(ae_.encode && ae_.decode, "AutoencoderProjection: encode and decode must both be given");
  MD_CHECK_VALUE(strength >= 0 && strength <= 1, "AutoencoderProjection: strength must be in [0, 1], got ", strength);
}

at::Tensor AutoencoderProjection::on_x0(const StepContext& ctx, at::Tensor x0) {
  if (!window_.contains(ctx.step, ctx.num_steps)) return x0;
  at::Tensor rec;
  {
    torch::NoGradGuard no_grad;
    rec = ae_.decode(ae_.encode(x0.detach())).to(x0.scalar_type());
  }
  MD_CHECK_VALUE(rec.sizes() == x0.sizes(), "AutoencoderProjection: the autoencoder returned ", rec.sizes(), " for ",
                 x0.sizes());
  const at::Tensor moved = strength_ * (rec - x0.detach());
  set_residual(moved.flatten(1).norm(2, 1));
  return x0 + moved;
}

// ------------------------------------------------------------------------------------------------

MeasurementProjection::MeasurementProjection(Measurement m) : m_(std::move(m)) { check_measurement(m_, "projection"); }

at::Tensor MeasurementProjection::noised_measurement(double alpha_bar, int64_t step, const at::Tensor& like) const {
  const at::Tensor y = checked_y(m_, like, name()).to(like.options());
  if (alpha_bar >= 1.0) return y;
  auto gens = make_sample_generators(sample_seed(m_.seed, step), 0, like.size(0));
  const at::Tensor z = randn_per_sample(like.sizes(), gens, like.scalar_type()).to(like.device());
  return std::sqrt(alpha_bar) * y + std::sqrt(1 - alpha_bar) * m_.op->forward(z);
}

at::Tensor MeasurementProjection::on_proposal(const StepContext& ctx, at::Tensor x_next) {
  torch::NoGradGuard no_grad;
  const at::Tensor x = x_next.detach();
  if (record_residual_ && ctx.x0_hat.defined()) {
    set_residual(m_.noise.fidelity(checked_y(m_, x, name()).to(x.options()), m_.op->forward(ctx.x0_hat.to(x.options()))));
  }
  return m_.op->project(x, noised_measurement(ctx.alpha_bar_next, ctx.step, x));
}

MCGConstraint::MCGConstraint(Measurement m, MCGOptions options) : MeasurementProjection(std::move(m)), options_(options) {
  record_residual_ = false;
  MD_CHECK_VALUE(options_.alpha() >= 0 && std::isfinite(options_.alpha()), "mcg: alpha must be >= 0, got ",
                 options_.alpha());
}

at::Tensor MCGConstraint::on_proposal(const StepContext& ctx, at::Tensor x_next) {
  const MeasurementGradient mg = measurement_gradient(m_, ctx, x_next, "mcg");
  set_residual(mg.residual);
  if (mg.grad.defined()) {
    torch::NoGradGuard no_grad;
    const at::Tensor g = m_.op->null_space_component(mg.grad);
    x_next = x_next.detach() - options_.alpha() * g.to(x_next.scalar_type());
  }
  return MeasurementProjection::on_proposal(ctx, x_next);
}

DPSConstraint::DPSConstraint(Measurement m, DPSOptions options) : m_(std::move(m)), options_(options) {
  check_measurement(m_, "dps");
  MD_CHECK_VALUE(options_.scale() >= 0 && std::isfinite(options_.scale()), "dps: scale must be >= 0, got ",
                 options_.scale());
}

at::Tensor DPSConstraint::on_proposal(const StepContext& ctx, at::Tensor x_next) {
  const MeasurementGradient mg = measurement_gradient(m_, ctx, x_next, "dps");
  set_residual(mg.residual);
  if (!mg.grad.defined()) return x_next;
  return x_next.detach() - options_.scale() * mg.grad.to(x_next.scalar_type());
}

MPGDConstraint::MPGDConstraint(Measurement m, MPGDOptions options, AutoencoderFunctions ae)
    : m_(std::move(m)), options_(options), ae_(std::move(ae)) {
  check_measurement(m_, "mpgd");
  MD_CHECK_VALUE(options_.scale() >= 0 && std::isfinite(options_.scale()), "mpgd: scale must be >= 0, got ",
                 options_.scale());
  MD_CHECK_VALUE(options_.variant() == MPGDVariant::Plain || (ae_.encode && ae_.decode), "mpgd: variant '",
                 to_string(options_.variant()), "' needs an autoencoder (encode and decode)");
}

at::Tensor MPGDConstraint::on_proposal(const StepContext& ctx, at::Tensor x_next) {
  MD_CHECK_VALUE(ctx.x0_hat.defined(), "mpgd: the sampler did not report x0_hat (StepContext::x0_hat)");
  const at::Tensor& y_in = checked_y(m_, x_next, "mpgd");
  torch::AutoGradMode grad_mode(true);
  const at::Tensor x0 = ctx.x0_hat.detach();
  const at::Tensor y = y_in.to(x0.options());
  const double ab_next = std::max(ctx.alpha_bar_next, 1e-12);
  const double c = options_.scale() / std::sqrt(ab_next);
  const bool windowed = options_.variant() != MPGDVariant::Plain && options_.window().contains(ctx.step, ctx.num_steps);
  at::Tensor guided;
  if (!windowed) {
    const at::Tensor v = x0.clone().requires_grad_(true);
    const at::Tensor res = m_.noise.fidelity(y, m_.op->forward(v));
    set_residual(res.detach());
    guided = x0 - c * grad_of(res.sum(), v).detach();
  } else if (options_.variant() == MPGDVariant::Autoencoder) {
    const at::Tensor v = x0.clone().requires_grad_(true);
    const at::Tensor res = m_.noise.fidelity(y, m_.op->forward(ae_.decode(ae_.encode(v)).to(v.scalar_type())));
    set_residual(res.detach());
    const at::Tensor g = grad_of(res.sum(), v);
    guided = g.defined() ? x0 - options_.ae_factor() * c * g.detach() : x0;
  } else {
    at::Tensor z, r;
    {
      torch::NoGradGuard no_grad;
      z = ae_.encode(x0);
      r = x0 - ae_.decode(z).to(x0.scalar_type());
    }
    const at::Tensor zv = z.clone().requires_grad_(true);
    const at::Tensor res = m_.noise.fidelity(y, m_.op->forward(ae_.decode(zv).to(x0.scalar_type())));
    set_residual(res.detach());
    const at::Tensor g = grad_of(res.sum(), zv);
    torch::NoGradGuard no_grad;
    const at::Tensor z2 = g.defined() ? z - options_.latent_factor() * c * g : z;
    guided = ae_.decode(z2).to(x0.scalar_type()) + r;
  }
  torch::NoGradGuard no_grad;
  return x_next.detach() + std::sqrt(ab_next) * (guided.detach() - x0).to(x_next.scalar_type());
}

DSGConstraint::DSGConstraint(Measurement m, DSGOptions options) : m_(std::move(m)), options_(options) {
  check_measurement(m_, "dsg");
  MD_CHECK_VALUE(options_.rate() >= 0 && options_.rate() <= 1, "dsg: rate must be in [0, 1], got ", options_.rate());
  MD_CHECK_VALUE(options_.interval() >= 1, "dsg: interval must be >= 1, got ", options_.interval());
}

at::Tensor DSGConstraint::on_proposal(const StepContext& ctx, at::Tensor x_next) {
  if (ctx.step % options_.interval() != 0) return x_next;
  MD_CHECK_VALUE(ctx.proposal_mean.defined() && ctx.proposal_std >= 0,
                 "dsg: the sampler does not report its proposal's mean and standard deviation; use ddpm "
                 "(fixed_small or fixed_large variance) or ddim with eta > 0");
  const bool last = ctx.alpha_bar_next >= 1.0;
  MD_CHECK_VALUE(ctx.proposal_std > 0 || last,
                 "dsg: the step is deterministic (standard deviation 0 before the last step); use ddim with eta > 0 "
                 "(the reference uses eta = 1) or ddpm");
  const MeasurementGradient mg = measurement_gradient(m_, ctx, x_next, "dsg", ctx.proposal_std > 0);
  set_residual(mg.residual);
  if (!mg.grad.defined()) return x_next;
  torch::NoGradGuard no_grad;
  const at::Tensor mu = ctx.proposal_mean.detach().flatten(1);
  const at::Tensor xs = x_next.detach().flatten(1);
  const at::Tensor g = mg.grad.flatten(1).to(xs.scalar_type());
  const double r = std::sqrt(static_cast<double>(xs.size(1))) * ctx.proposal_std;
  const at::Tensor d_star = -r * g / g.norm(2, 1, true).clamp_min(1e-12);
  const at::Tensor d_s = xs - mu;
  const at::Tensor d_m = d_s + options_.rate() * (d_star - d_s);
  const at::Tensor out = mu + r * d_m / d_m.norm(2, 1, true).clamp_min(1e-12);
  return out.view(x_next.sizes());
}

// ------------------------------------------------------------------------------------------------
// RePaint

std::vector<int64_t> repaint_schedule(const RePaintOptions& options) {
  const int64_t n = options.steps(), j = options.jump_length(), r = options.resample();
  MD_CHECK_VALUE(n >= 1, "repaint: steps must be >= 1, got ", n);
  MD_CHECK_VALUE(j >= 1, "repaint: jump_length must be >= 1, got ", j);
  MD_CHECK_VALUE(r >= 1, "repaint: resample must be >= 1, got ", r);
  // Levels: n - 1 (the start, pure noise) down to -1 (the clean sample).
  std::map<int64_t, int64_t> jumps;
  for (int64_t t = 0; t < n - 1 - j; t += j) jumps[t] = r - 1;
  std::vector<int64_t> seq{n - 1};
  int64_t t = n - 1;
  while (t >= 0) {
    --t;
    seq.push_back(t);
    auto it = jumps.find(t);
    if (t >= 0 && it != jumps.end() && it->second > 0) {
      --it->second;
      for (int64_t k = 0; k < j; ++k) seq.push_back(++t);
    }
  }
  return seq;
}

at::Tensor repaint(const Denoiser& denoiser, const Measurement& m, const RePaintOptions& options, uint64_t seed,
                   const std::vector<std::shared_ptr<SamplingHook>>& hooks, int64_t* nfe, const at::Tensor& cond) {
  check_measurement(m, "repaint");
  const std::vector<int64_t> seq = repaint_schedule(options);
  const NoiseSchedule& sched = denoiser.schedule();
  const int64_t n_levels = options.steps();
  MD_CHECK_VALUE(n_levels <= sched.num_train_timesteps(), "repaint: steps (", n_levels,
                 ") exceeds the schedule's training timesteps (", sched.num_train_timesteps(), ")");
  std::vector<int64_t> ts = sched.timesteps(n_levels, TimestepSpacing::Leading);  // descending
  std::vector<double> level_t(static_cast<size_t>(n_levels)), level_ab(static_cast<size_t>(n_levels));
  for (int64_t i = 0; i < n_levels; ++i) {
    level_t[static_cast<size_t>(i)] = static_cast<double>(ts[static_cast<size_t>(n_levels - 1 - i)]);
    level_ab[static_cast<size_t>(i)] = sched.alpha_bar(ts[static_cast<size_t>(n_levels - 1 - i)]);
  }
  auto ab_of = [&](int64_t i) { return i < 0 ? 1.0 : level_ab[static_cast<size_t>(i)]; };

  const at::Tensor& y = m.y;
  const int64_t n = y.size(0);
  // Image shape from A^T y.
  const at::Tensor like = m.op->adjoint(y);
  auto gens = make_sample_generators(seed, 0, n, like.device());
  torch::NoGradGuard no_grad;
  at::Tensor x = randn_per_sample(like.sizes(), gens, like.scalar_type()).to(like.device());
  MeasurementProjection inject(m);
  const auto dopts = at::TensorOptions().dtype(at::kDouble);
  int64_t evaluations = 0;
  const auto total = static_cast<int64_t>(seq.size()) - 1;
  for (size_t k = 1; k < seq.size(); ++k) {
    const int64_t from = seq[k - 1], to = seq[k];
    if (to < from) {
      // Reverse step from level `from`: inject the measurement at this level, then denoise.
      const double ab = ab_of(from), ab_prev = ab_of(to);
      x = m.op->project(x, inject.noised_measurement(ab, static_cast<int64_t>(k), x));
      DenoiserOutput out = denoiser.predict_at(x, at::full({n}, level_t[static_cast<size_t>(from)], dopts),
                                               at::full({n}, ab, dopts), cond);
      ++evaluations;
      StepContext ctx;
      ctx.step = static_cast<int64_t>(k) - 1;
      ctx.num_steps = total;
      ctx.t = level_t[static_cast<size_t>(from)];
      ctx.t_next = to >= 0 ? level_t[static_cast<size_t>(to)] : -1;
      ctx.alpha_bar = ab;
      ctx.alpha_bar_next = ab_prev;
      ctx.x_t = x;
      at::Tensor x0 = out.x0;
      if (!hooks.empty()) {
        torch::AutoGradMode grad(true);
        for (const auto& h : hooks) x0 = h->on_x0(ctx, x0);
        x0 = x0.detach();
      }
      if (to < 0) {
        x = m.op->project(x0, y.to(x0.options()));
      } else {
        const double beta = 1 - ab / ab_prev;
        const double c1 = std::sqrt(ab_prev) * beta / (1 - ab);
        const double c2 = std::sqrt(1 - beta) * (1 - ab_prev) / (1 - ab);
        const double var = beta * (1 - ab_prev) / (1 - ab);
        x = c1 * x0 + c2 * x + std::sqrt(var) * randn_per_sample(x.sizes(), gens, x.scalar_type()).to(x.device());
      }
    } else {
      // Forward ("undo") step from level `from` to `to` = from + 1.
      const double a = ab_of(to) / ab_of(from);
      x = std::sqrt(a) * x + std::sqrt(1 - a) * randn_per_sample(x.sizes(), gens, x.scalar_type()).to(x.device());
    }
  }
  if (nfe) *nfe = evaluations;
  return x;
}

// ------------------------------------------------------------------------------------------------
// Factory

std::vector<std::string> sampling_constraint_names() {
  return {"clip", "dynamic_threshold", "manifold", "ae_projection", "projection", "mcg", "dps", "mpgd", "dsg"};
}

std::shared_ptr<SamplingConstraint> make_sampling_constraint(const std::string& text,
                                                             const SamplingConstraintContext& c) {
  const ConstraintSpec spec = ConstraintSpec::parse(text);
  const std::string& n = spec.name();
  auto window = [&](double start, double end) {
    StepWindow w{spec.get_double("start", start), spec.get_double("end", end)};
    MD_CHECK_VALUE(w.start >= 0 && w.start < w.end && w.end <= 1, "constraint '", n, "': need 0 <= start < end <= 1, got ",
                   w.start, " and ", w.end);
    return w;
  };
  auto measurement = [&]() {
    MD_CHECK_VALUE(c.op != nullptr && c.y.defined(), "constraint '", n,
                   "' needs a measurement (an operator and measurements y): it is for inverse problems");
    return Measurement{c.op, c.y, c.noise, c.seed};
  };
  std::shared_ptr<SamplingConstraint> out;
  if (n == "clip") {
    out = std::make_shared<StaticClip>(spec.get_double("min", -1.0), spec.get_double("max", 1.0));
  } else if (n == "dynamic_threshold") {
    out = std::make_shared<DynamicThreshold>(
        DynamicThresholdOptions().percentile(spec.get_double("p", 0.995)).max_value(spec.get_double("max", 1.5)));
  } else if (n == "manifold") {
    MD_CHECK_VALUE(c.manifold != nullptr, "constraint 'manifold' needs a reference or analytic manifold");
    ManifoldConstraintOptions o;
    o.mode(enum_from_string<ManifoldMode>(spec.get_string("mode", "project")))
        .strength(spec.get_double("strength", 1.0))
        .step(spec.get_double("step", 0.1))
        .h(spec.get_double("h", 0.2))
        .window(window(0.0, 1.0));
    out = std::make_shared<ManifoldConstraint>(c.manifold, o);
  } else if (n == "ae_projection") {
    MD_CHECK_VALUE(c.autoencoder.encode && c.autoencoder.decode, "constraint 'ae_projection' needs an autoencoder");
    const double strength = spec.get_double("strength", 1.0);
    out = std::make_shared<AutoencoderProjection>(c.autoencoder, strength, window(0.0, 1.0));
  } else if (n == "projection") {
    out = std::make_shared<MeasurementProjection>(measurement());
  } else if (n == "mcg") {
    out = std::make_shared<MCGConstraint>(measurement(), MCGOptions().alpha(spec.get_double("alpha", 1.0)));
  } else if (n == "dps") {
    out = std::make_shared<DPSConstraint>(measurement(), DPSOptions().scale(spec.get_double("scale", 0.5)));
  } else if (n == "mpgd") {
    MPGDOptions o;
    o.scale(spec.get_double("scale", 7.5))
        .variant(enum_from_string<MPGDVariant>(spec.get_string("variant", "plain")))
        .ae_factor(spec.get_double("ae_factor", 0.0075))
        .latent_factor(spec.get_double("latent_factor", 0.01))
        .window(window(0.5, 0.7));
    out = std::make_shared<MPGDConstraint>(measurement(), o, c.autoencoder);
  } else if (n == "dsg") {
    out = std::make_shared<DSGConstraint>(
        measurement(), DSGOptions().rate(spec.get_double("rate", 0.2)).interval(spec.get_int("interval", 1)));
  } else {
    std::string names;
    for (const auto& k : sampling_constraint_names()) names += (names.empty() ? "" : ", ") + k;
    MD_CHECK_VALUE(false, "unknown sampling constraint '", n, "' (known: ", names, ")");
  }
  spec.check_all_used();
  return out;
}

}  // namespace manifold_diffusion
