#include <manifold_diffusion/constraints/training.h>

#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/manifold/embedding.h>
#include <manifold_diffusion/models/embeddings.h>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <fmt/format.h>

#include <cmath>
#include <sstream>

namespace manifold_diffusion {

namespace {

// alpha_bar [N] as [N, 1, ...] broadcastable against x, in x's dtype and device.
at::Tensor per_sample_like(const at::Tensor& alpha_bar, const at::Tensor& x) {
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[0] = x.size(0);
  return alpha_bar.to(x.device(), x.scalar_type()).view(shape);
}

std::string num(double v) { return fmt::format("{:g}", v); }

}  // namespace

// ---- TimeWeight -------------------------------------------------------------------------------

at::Tensor TimeWeight::operator()(const at::Tensor& alpha_bar) const {
  const at::Tensor ab = alpha_bar.to(at::kDouble);
  const at::Tensor snr = ab / (1 - ab);
  const at::Tensor inside = (snr >= snr_min()) & (snr <= snr_max());
  const at::Tensor w = snr_weighted() ? ab : at::ones_like(ab);
  return (w * inside.to(at::kDouble)).to(at::kFloat);
}

void TimeWeight::validate(const std::string& who) const {
  MD_CHECK_VALUE(snr_min() >= 0 && !std::isnan(snr_min()), who, ": snr_min must be >= 0, got ", snr_min());
  MD_CHECK_VALUE(snr_max() >= snr_min(), who, ": snr_max must be >= snr_min (", snr_min(), "), got ", snr_max());
}

TimeWeight TimeWeight::read(const ConstraintSpec& spec) const {
  TimeWeight w = *this;
  w.snr_min(spec.get_double("snr_min", snr_min()));
  w.snr_max(spec.get_double("snr_max", snr_max()));
  w.snr_weighted(spec.get_bool("snr_weighted", snr_weighted()));
  return w;
}

std::string TimeWeight::describe() const {
  return fmt::format("snr in [{}, {}]{}", num(snr_min()), num(snr_max()), snr_weighted() ? ", weight alpha_bar" : "");
}

// ---- InputPerturbation ------------------------------------------------------------------------

InputPerturbation::InputPerturbation(double gamma) : gamma_(gamma) {
  MD_CHECK_VALUE(std::isfinite(gamma) && gamma >= 0, "InputPerturbation: gamma must be >= 0, got ", gamma);
}

std::string InputPerturbation::describe() const { return fmt::format("ip: gamma={}", num(gamma_)); }

at::Tensor InputPerturbation::input_noise(const at::Tensor& noise, at::Generator& generator) {
  const at::Tensor xi = at::randn(noise.sizes(), generator, at::TensorOptions(at::kFloat)).to(noise.device(),
                                                                                                 noise.scalar_type());
  at::Tensor out = noise + gamma_ * xi;
  scalars_["input_noise_std"] = out.std().item<double>();
  return out;
}

at::Tensor InputPerturbation::loss(const LossContext& context) {
  return at::zeros({}, context.x0.options().dtype(at::kFloat));
}

// ---- IsotropyRegulariser ----------------------------------------------------------------------

IsotropyRegulariser::IsotropyRegulariser(double lambda, TimeWeight time_weight)
    : TrainingConstraint(time_weight), lambda_(lambda) {
  MD_CHECK_VALUE(std::isfinite(lambda) && lambda >= 0, "IsotropyRegulariser: lambda must be >= 0, got ", lambda);
  time_weight_.validate("IsotropyRegulariser");
}

std::string IsotropyRegulariser::describe() const {
  return fmt::format("iso: lambda={}, {}", num(lambda_), time_weight_.describe());
}

at::Tensor IsotropyRegulariser::loss(const LossContext& c) {
  const at::Tensor m = c.pred.eps.flatten(1).pow(2).mean(1).to(at::kFloat);
  const at::Tensor w = time_weight_(c.alpha_bar).to(m.device());
  const at::Tensor sw = w.sum();
  const at::Tensor mean = (w * m).sum() / sw.clamp_min(1e-12);
  scalars_["eps_sq_mean"] = m.mean().item<double>();
  return at::where(sw > 0, lambda_ * (mean - 1).pow(2), at::zeros_like(mean));
}

// ---- TangentRegulariser -----------------------------------------------------------------------

TangentRegulariser::TangentRegulariser(std::shared_ptr<const Manifold> manifold, double weight, TimeWeight time_weight)
    : TrainingConstraint(time_weight), manifold_(std::move(manifold)), weight_(weight) {
  MD_CHECK_VALUE(manifold_ != nullptr, "TangentRegulariser: needs a manifold (got none)");
  MD_CHECK_VALUE(std::isfinite(weight) && weight >= 0, "TangentRegulariser: weight must be >= 0, got ", weight);
  time_weight_.validate("TangentRegulariser");
}

std::string TangentRegulariser::describe() const {
  return fmt::format("tangent: weight={}, manifold {} (d={}), {}", num(weight_), manifold_->name(),
                     manifold_->intrinsic_dim(), time_weight_.describe());
}

at::Tensor TangentRegulariser::loss(const LossContext& c) {
  LocalFrame frame;
  {
    at::NoGradGuard no_grad;
    frame = manifold_->local_frame(c.x0.detach());
  }
  const at::Tensor x0_hat = c.pred.x0.flatten(1);
  MD_CHECK_VALUE(frame.origin.dim() == 2 && frame.origin.size(1) == x0_hat.size(1), "TangentRegulariser: manifold ",
                 manifold_->name(), " has ambient dimension ", frame.origin.size(-1), " but samples have ",
                 x0_hat.size(1));
  const at::Tensor diff = x0_hat - frame.origin.to(x0_hat.device(), x0_hat.scalar_type());
  const at::Tensor normal = split_tangent_normal(diff, frame.basis.to(x0_hat.device())).second;
  const at::Tensor per = normal.pow(2).mean(1).to(at::kFloat);
  scalars_["normal_sq"] = per.mean().item<double>();
  const at::Tensor w = time_weight_(c.alpha_bar).to(per.device());
  return weight_ * (w * per).mean();
}

// ---- AutoencoderRegulariser -------------------------------------------------------------------

AutoencoderRegulariser::AutoencoderRegulariser(Autoencoder autoencoder, double latent_weight, double energy_weight,
                                               TimeWeight time_weight)
    : TrainingConstraint(time_weight), ae_(std::move(autoencoder)), latent_weight_(latent_weight),
      energy_weight_(energy_weight) {
  MD_CHECK_VALUE(ae_, "AutoencoderRegulariser: needs an autoencoder (got none)");
  MD_CHECK_VALUE(std::isfinite(latent_weight) && latent_weight >= 0,
                 "AutoencoderRegulariser: latent weight must be >= 0, got ", latent_weight);
  MD_CHECK_VALUE(std::isfinite(energy_weight) && energy_weight >= 0,
                 "AutoencoderRegulariser: energy weight must be >= 0, got ", energy_weight);
  time_weight_.validate("AutoencoderRegulariser");
  ae_->eval();
  for (auto& p : ae_->parameters()) p.set_requires_grad(false);
}

std::string AutoencoderRegulariser::describe() const {
  return fmt::format("ae: latent={}, energy={}, autoencoder {} -> {} ({}), {}", num(latent_weight_),
                     num(energy_weight_), ae_->options().input(), ae_->options().latent(),
                     to_string(ae_->options().kind()), time_weight_.describe());
}

at::Tensor AutoencoderRegulariser::loss(const LossContext& c) {
  const at::Tensor x0_hat = c.pred.x0.to(at::kFloat);
  at::Tensor z0;
  {
    at::NoGradGuard no_grad;
    z0 = ae_->encode(c.x0.to(at::kFloat));
  }
  // The latent distance is measured in units of the batch's latent variance (the encoder's scale is
  // arbitrary); one sample has no variance and keeps raw units.
  const at::Tensor z_var = z0.size(0) > 1 ? z0.flatten(1).var(0, /*unbiased=*/false).mean().clamp_min(1e-12)
                                          : at::ones({}, z0.options());
  const at::Tensor z_hat = ae_->encode(x0_hat);
  const at::Tensor latent = (z_hat - z0).flatten(1).pow(2).mean(1) / z_var;
  const at::Tensor energy = (x0_hat - ae_->decode(z_hat)).flatten(1).pow(2).mean(1);
  scalars_["latent_sq"] = latent.mean().item<double>();
  scalars_["energy_sq"] = energy.mean().item<double>();
  const at::Tensor w = time_weight_(c.alpha_bar).to(latent.device());
  return (w * (latent_weight_ * latent + energy_weight_ * energy)).mean();
}

// ---- AdversarialX0 ----------------------------------------------------------------------------

void AdversarialX0Options::validate() const {
  const char* w = "AdversarialX0Options";
  MD_CHECK_VALUE(sample_shape().size() == 1 || sample_shape().size() == 3, w,
                 ": sample_shape must be {D} or {C, H, W}, got ", c10::IntArrayRef(sample_shape()));
  for (int64_t s : sample_shape()) MD_CHECK_VALUE(s >= 1, w, ": sample_shape has a non-positive size ", s);
  MD_CHECK_VALUE(std::isfinite(weight()) && weight() >= 0, w, ": weight must be >= 0, got ", weight());
  MD_CHECK_VALUE(std::isfinite(lr()) && lr() > 0, w, ": lr must be positive, got ", lr());
  MD_CHECK_VALUE(std::isfinite(r1_gamma()) && r1_gamma() >= 0, w, ": r1_gamma must be >= 0, got ", r1_gamma());
  MD_CHECK_VALUE(r1_every() >= 1, w, ": r1_every must be >= 1, got ", r1_every());
  MD_CHECK_VALUE(std::isfinite(noise()) && noise() >= 0, w, ": noise must be >= 0, got ", noise());
  MD_CHECK_VALUE(hidden() >= 4, w, ": hidden must be >= 4, got ", hidden());
  time_weight().validate(w);
}

namespace {

// D(y, t): MLP on points, two strided convolutions and a mean pool on images; the time enters as
// a projected sinusoidal embedding added to the hidden features.
class DiscriminatorImpl : public torch::nn::Module {
 public:
  explicit DiscriminatorImpl(const AdversarialX0Options& o) {
    namespace nn = torch::nn;
    const int64_t h = o.hidden();
    conv_ = o.sample_shape().size() == 3;
    if (conv_) {
      const int64_t c = o.sample_shape()[0];
      conv1_ = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(c, h / 2, 3).stride(2).padding(1)));
      conv2_ = register_module("conv2", nn::Conv2d(nn::Conv2dOptions(h / 2, h, 3).stride(2).padding(1)));
      fc1_ = register_module("fc1", nn::Linear(h, h));
    } else {
      fc1_ = register_module("fc1", nn::Linear(o.sample_shape()[0], h));
    }
    time_ = register_module("time", nn::Linear(kTimeDim, h));
    fc2_ = register_module("fc2", nn::Linear(h, h));
    head_ = register_module("head", nn::Linear(h, 1));
  }
  at::Tensor forward(const at::Tensor& y, const at::Tensor& t) {
    at::Tensor h;
    if (conv_) {
      h = at::leaky_relu(conv2_(at::leaky_relu(conv1_(y), 0.2)), 0.2).mean({2, 3});
      h = fc1_(h);
    } else {
      h = fc1_(y.flatten(1));
    }
    const at::Tensor te = sinusoidal_embedding(t.to(y.device(), at::kFloat), kTimeDim).to(y.scalar_type());
    h = at::leaky_relu(h + time_(te), 0.2);
    h = at::leaky_relu(fc2_(h), 0.2);
    return head_(h).squeeze(1);
  }

 private:
  static constexpr int64_t kTimeDim = 32;
  bool conv_ = false;
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr}, time_{nullptr}, head_{nullptr};
};

}  // namespace

struct AdversarialX0::Impl {
  AdversarialX0Options options;
  std::shared_ptr<DiscriminatorImpl> disc;
  std::vector<at::Tensor> params, exp_avg, exp_avg_sq;
  int64_t d_steps = 0;
  at::Generator gen;
  struct Pending {
    at::Tensor x0, x0_hat, t, alpha_bar;
  };
  std::vector<Pending> pending;

  explicit Impl(AdversarialX0Options o) : options(std::move(o)) {}

  at::Tensor inject(const at::Tensor& x, const at::Tensor& alpha_bar) {
    const at::Tensor ab = per_sample_like(alpha_bar, x);
    const at::Tensor e = at::randn(x.sizes(), gen, at::TensorOptions(at::kFloat)).to(x.device(), x.scalar_type());
    return ab.sqrt() * x + (1 - ab).sqrt() * (options.noise() * e);
  }
};

AdversarialX0::AdversarialX0(AdversarialX0Options options) : TrainingConstraint(options.time_weight()) {
  options.validate();
  impl_ = std::make_unique<Impl>(std::move(options));
  {
    // The discriminator's initial weights come from its own seed, not the global generator.
    at::Generator init = make_generator(mix_seed(impl_->options.seed() ^ 0x616476ULL));
    impl_->disc = std::make_shared<DiscriminatorImpl>(impl_->options);
    at::NoGradGuard no_grad;
    for (auto& p : impl_->disc->parameters()) {
      const double bound = p.dim() >= 2 ? 1.0 / std::sqrt(static_cast<double>(p.numel() / p.size(0))) : 0.0;
      p.copy_(at::rand(p.sizes(), init, at::TensorOptions(at::kFloat)) * (2 * bound) - bound);
    }
  }
  impl_->gen = make_generator(mix_seed(impl_->options.seed() ^ 0x616476326eULL));
  for (auto& p : impl_->disc->parameters()) {
    impl_->params.push_back(p);
    impl_->exp_avg.push_back(at::zeros_like(p));
    impl_->exp_avg_sq.push_back(at::zeros_like(p));
  }
}

AdversarialX0::~AdversarialX0() = default;

torch::nn::Module& AdversarialX0::discriminator() { return *impl_->disc; }

std::string AdversarialX0::describe() const {
  const auto& o = impl_->options;
  return fmt::format("adversarial: weight={}, lr={}, r1_gamma={}, r1_every={}, noise={}, hidden={}, {}", num(o.weight()),
                     num(o.lr()), num(o.r1_gamma()), o.r1_every(), num(o.noise()), o.hidden(),
                     time_weight_.describe());
}

at::Tensor AdversarialX0::loss(const LossContext& c) {
  auto& m = *impl_;
  if (m.params.front().device() != c.x0.device()) {
    m.disc->to(c.x0.device());
    m.params = m.disc->parameters();
    for (auto& t : m.exp_avg) t = t.to(c.x0.device());
    for (auto& t : m.exp_avg_sq) t = t.to(c.x0.device());
  }
  const at::Tensor x0_hat = c.pred.x0.to(at::kFloat);
  const at::Tensor y_fake = m.inject(x0_hat, c.alpha_bar);
  const at::Tensor g = at::softplus(-m.disc->forward(y_fake, c.t));
  const at::Tensor w = time_weight_(c.alpha_bar).to(g.device());
  m.pending.push_back({c.x0.detach().to(at::kFloat), x0_hat.detach(), c.t, c.alpha_bar});
  return m.options.weight() * (w * g).mean();
}

void AdversarialX0::after_step(int64_t /*step*/) {
  auto& m = *impl_;
  if (m.pending.empty()) return;
  for (auto& p : m.params) p.mutable_grad() = at::Tensor();
  double d_loss = 0, acc = 0, r1 = 0;
  const bool lazy_r1 = m.options.r1_gamma() > 0 && m.d_steps % m.options.r1_every() == 0;
  const double n_pending = static_cast<double>(m.pending.size());
  for (const auto& b : m.pending) {
    at::Tensor y_real = m.inject(b.x0, b.alpha_bar);
    const at::Tensor y_fake = m.inject(b.x0_hat, b.alpha_bar);
    if (lazy_r1) y_real.requires_grad_(true);
    const at::Tensor d_real = m.disc->forward(y_real, b.t);
    const at::Tensor d_fake = m.disc->forward(y_fake, b.t);
    at::Tensor loss = (at::softplus(-d_real) + at::softplus(d_fake)).mean();
    if (lazy_r1) {
      const at::Tensor grad = torch::autograd::grad({d_real.sum()}, {y_real}, {}, /*retain_graph=*/true,
                                                    /*create_graph=*/true)[0];
      const at::Tensor pen = 0.5 * m.options.r1_gamma() * grad.flatten(1).pow(2).sum(1).mean();
      r1 += pen.item<double>() / n_pending;
      loss = loss + pen;
    }
    (loss / n_pending).backward();
    d_loss += loss.item<double>() / n_pending;
    acc += 0.5 * ((d_real > 0).to(at::kDouble).mean() + (d_fake < 0).to(at::kDouble).mean()).item<double>() / n_pending;
  }
  m.pending.clear();
  // AdamW with betas (0.5, 0.9), eps 1e-8, no weight decay.
  ++m.d_steps;
  const double b1 = 0.5, b2 = 0.9, eps = 1e-8;
  const double c1 = 1 - std::pow(b1, static_cast<double>(m.d_steps));
  const double c2 = 1 - std::pow(b2, static_cast<double>(m.d_steps));
  {
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < m.params.size(); ++i) {
      const at::Tensor g = m.params[i].grad();
      if (!g.defined()) continue;
      m.exp_avg[i].mul_(b1).add_(g, 1 - b1);
      m.exp_avg_sq[i].mul_(b2).addcmul_(g, g, 1 - b2);
      const at::Tensor denom = (m.exp_avg_sq[i] / c2).sqrt_().add_(eps);
      m.params[i].addcdiv_(m.exp_avg[i], denom, -m.options.lr() / c1);
    }
  }
  for (auto& p : m.params) p.mutable_grad() = at::Tensor();
  scalars_["d_loss"] = d_loss;
  scalars_["d_acc"] = acc;
  if (lazy_r1) scalars_["r1"] = r1;
}

NamedTensors AdversarialX0::state() const {
  const auto& m = *impl_;
  NamedTensors s;
  for (const auto& p : m.disc->named_parameters(true)) s.emplace_back("param." + p.key(), p.value().detach().cpu());
  for (size_t i = 0; i < m.params.size(); ++i) {
    s.emplace_back("exp_avg." + std::to_string(i), m.exp_avg[i].cpu());
    s.emplace_back("exp_avg_sq." + std::to_string(i), m.exp_avg_sq[i].cpu());
  }
  s.emplace_back("d_steps", at::scalar_tensor(m.d_steps, at::kLong));
  s.emplace_back("generator", generator_state(m.gen));
  return s;
}

void AdversarialX0::load_state(const NamedTensors& state) {
  auto& m = *impl_;
  std::map<std::string, at::Tensor> by_name(state.begin(), state.end());
  auto take = [&](const std::string& name) {
    auto it = by_name.find(name);
    MD_CHECK(it != by_name.end(), "AdversarialX0::load_state: missing '", name, "'");
    return it->second;
  };
  // Every value is checked before anything changes.
  auto checked = [&](const std::string& name, const at::Tensor& like) {
    const at::Tensor v = take(name);
    MD_CHECK(v.sizes() == like.sizes() && at::isFloatingType(v.scalar_type()), "AdversarialX0::load_state: '", name,
             "' is ", v.scalar_type(), " of shape ", v.sizes(), ", expected floating point of shape ", like.sizes());
    MD_CHECK(at::isfinite(v).all().item<bool>(), "AdversarialX0::load_state: '", name, "' has non-finite values");
    return v;
  };
  std::vector<std::pair<at::Tensor, at::Tensor>> copies;  // destination, source
  for (auto& p : m.disc->named_parameters(true)) copies.emplace_back(p.value(), checked("param." + p.key(), p.value()));
  for (size_t i = 0; i < m.params.size(); ++i) {
    copies.emplace_back(m.exp_avg[i], checked("exp_avg." + std::to_string(i), m.exp_avg[i]));
    const at::Tensor sq = checked("exp_avg_sq." + std::to_string(i), m.exp_avg_sq[i]);
    MD_CHECK(!(sq < 0).any().item<bool>(), "AdversarialX0::load_state: 'exp_avg_sq.", i, "' has negative values");
    copies.emplace_back(m.exp_avg_sq[i], sq);
  }
  const at::Tensor d = take("d_steps");
  MD_CHECK(d.scalar_type() == at::kLong && d.numel() == 1 && d.item<int64_t>() >= 0,
           "AdversarialX0::load_state: 'd_steps' must be one int64 >= 0, got ", d.scalar_type(), " ", d.sizes());
  const at::Tensor gen = take("generator");
  // The generator first: LibTorch checks its size, and it is the last check that can fail.
  set_generator_state(m.gen, gen);
  at::NoGradGuard no_grad;
  for (auto& [dst, src] : copies) dst.copy_(src);
  m.d_steps = d.item<int64_t>();
  m.pending.clear();
}

// ---- EmbeddingConditioning -------------------------------------------------------------------

void EmbeddingConditioningOptions::validate() const {
  const char* w = "EmbeddingConditioningOptions";
  bool known = false;
  std::string names;
  for (const auto& n : embedding_names()) {
    known = known || n == method();
    names += (names.empty() ? "" : ", ") + n;
  }
  MD_CHECK_VALUE(known, w, ": unknown method '", method(), "' (valid: ", names, ")");
  MD_CHECK_VALUE(dims() >= 1, w, ": dims must be >= 1, got ", dims());
  MD_CHECK_VALUE(k() >= 1, w, ": k must be >= 1, got ", k());
  MD_CHECK_VALUE(fit_points() >= 3, w, ": fit_points must be >= 3, got ", fit_points());
}

EmbeddingConditioningOptions EmbeddingConditioningOptions::from_spec(const ConstraintSpec& spec, uint64_t seed) {
  EmbeddingConditioningOptions o;
  o.method(spec.get_string("method", o.method()))
      .dims(spec.get_int("dims", o.dims()))
      .k(spec.get_int("k", o.k()))
      .fit_points(spec.get_int("fit_points", o.fit_points()))
      .seed(seed);
  spec.check_all_used();
  o.validate();
  return o;
}

EmbeddingConditioning::EmbeddingConditioning(EmbeddingConditioningOptions options) : options_(std::move(options)) {
  options_.validate();
}
EmbeddingConditioning::~EmbeddingConditioning() = default;
EmbeddingConditioning::EmbeddingConditioning(EmbeddingConditioning&&) noexcept = default;
EmbeddingConditioning& EmbeddingConditioning::operator=(EmbeddingConditioning&&) noexcept = default;

at::Tensor EmbeddingConditioning::fit(const at::Tensor& points) {
  check_defined(points, "points");
  const at::Tensor x = points.flatten(1).to(at::kFloat);
  const int64_t n = x.size(0);
  MD_CHECK_VALUE(n > options_.k() + 1, "EmbeddingConditioning: needs more than k + 1 = ", options_.k() + 1,
                 " points, got ", n);
  embedding_ = make_embedding(options_.method(),
                              EmbeddingOptions().dims(options_.dims()).k(options_.k()).seed(options_.seed()));
  at::Tensor raw;
  if (n <= options_.fit_points()) {
    raw = embedding_->fit_transform(x);
  } else {
    at::Generator g = make_generator(mix_seed(options_.seed() ^ 0x656d62ULL));
    const at::Tensor perm = at::randperm(n, g, at::TensorOptions(at::kLong)).to(x.device());
    const at::Tensor fit_idx = perm.slice(0, 0, options_.fit_points());
    const at::Tensor rest_idx = perm.slice(0, options_.fit_points());
    const at::Tensor fitted = embedding_->fit_transform(x.index_select(0, fit_idx));
    raw = at::empty({n, fitted.size(1)}, fitted.options());
    raw.index_copy_(0, fit_idx, fitted);
    raw.index_copy_(0, rest_idx, embedding_->transform(x.index_select(0, rest_idx)).to(fitted.scalar_type()));
  }
  raw = raw.to(at::kFloat);
  mean_ = raw.mean(0, true);
  scale_ = raw.std(0, true, true).clamp_min(1e-12);
  coords_ = (raw - mean_) / scale_;
  return coords_;
}

at::Tensor EmbeddingConditioning::coordinates(const at::Tensor& x) const {
  MD_CHECK(embedding_ != nullptr, "EmbeddingConditioning::coordinates: call fit() first");
  return (embedding_->transform(x.flatten(1).to(at::kFloat)).to(at::kFloat) - mean_.to(x.device())) /
         scale_.to(x.device());
}

at::Tensor EmbeddingConditioning::sample(int64_t n, uint64_t seed) const {
  MD_CHECK(coords_.defined(), "EmbeddingConditioning::sample: call fit() first");
  MD_CHECK_VALUE(n >= 1, "EmbeddingConditioning::sample: n must be >= 1, got ", n);
  at::Generator g = make_generator(mix_seed(seed));
  const at::Tensor idx = at::randint(0, coords_.size(0), {n}, g, at::TensorOptions(at::kLong));
  return coords_.index_select(0, idx.to(coords_.device()));
}

std::string EmbeddingConditioning::describe() const {
  return fmt::format("embed: method={}, dims={}, k={}, fit_points={} (standardised coordinates)", options_.method(),
                     options_.dims(), options_.k(), options_.fit_points());
}

// ---- Factory ----------------------------------------------------------------------------------

std::vector<std::string> training_constraint_names() { return {"ip", "iso", "tangent", "ae", "adversarial"}; }

std::shared_ptr<TrainingConstraint> make_training_constraint(const ConstraintSpec& spec,
                                                             const TrainingConstraintContext& context) {
  const std::string& n = spec.name();
  std::shared_ptr<TrainingConstraint> c;
  if (n == "ip") {
    c = std::make_shared<InputPerturbation>(spec.get_double("gamma", 0.1));
  } else if (n == "iso") {
    const double lambda = spec.get_double("lambda", 0.1);
    c = std::make_shared<IsotropyRegulariser>(lambda, TimeWeight().read(spec));
  } else if (n == "tangent") {
    const double weight = spec.get_double("weight", 1.0);
    const TimeWeight tw = TimeWeight().snr_weighted(true).read(spec);
    MD_CHECK_VALUE(context.manifold != nullptr, "constraint 'tangent' needs a manifold (a reference point set or an ",
                   "analytic manifold); none was given");
    c = std::make_shared<TangentRegulariser>(context.manifold, weight, tw);
  } else if (n == "ae") {
    const double latent = spec.get_double("latent", 1.0);
    const double energy = spec.get_double("energy", 1.0);
    const TimeWeight tw = TimeWeight().snr_min(1.0).read(spec);
    MD_CHECK_VALUE(context.autoencoder, "constraint 'ae' needs an autoencoder; none was given");
    c = std::make_shared<AutoencoderRegulariser>(context.autoencoder, latent, energy, tw);
  } else if (n == "adversarial") {
    AdversarialX0Options o(context.sample_shape);
    o.weight(spec.get_double("weight", o.weight()))
        .lr(spec.get_double("lr", o.lr()))
        .r1_gamma(spec.get_double("r1_gamma", o.r1_gamma()))
        .r1_every(spec.get_int("r1_every", o.r1_every()))
        .noise(spec.get_double("noise", o.noise()))
        .hidden(spec.get_int("hidden", o.hidden()))
        .seed(static_cast<uint64_t>(spec.get_int("seed", static_cast<int64_t>(context.seed))))
        .time_weight(TimeWeight().read(spec));
    c = std::make_shared<AdversarialX0>(o);
  } else {
    std::string names;
    for (const auto& s : training_constraint_names()) names += (names.empty() ? "" : ", ") + s;
    MD_CHECK_VALUE(false, "unknown training constraint '", n, "' (valid: ", names, ")");
  }
  spec.check_all_used();
  return c;
}

}  // namespace manifold_diffusion
