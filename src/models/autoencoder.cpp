#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/core/file.h>
#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/models/autoencoder.h>
#include <manifold_diffusion/training/checkpoint.h>

#include "models/model_util.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/adamw.h>

#include <fmt/format.h>

#include <cmath>
#include <filesystem>

namespace manifold_diffusion {

namespace {
constexpr const char* kAutoencoderKind = "autoencoder";
constexpr int64_t kAutoencoderFormat = 2;  // 1: the LibTorch archive of manifold_diffusion 0.1
}  // namespace

// ---- Options ----------------------------------------------------------------------------------

void AutoencoderOptions::validate() const {
  (void)to_string(kind());
  check_positive(input(), "AutoencoderOptions: input");
  check_positive(latent(), "AutoencoderOptions: latent");
  check_positive(hidden(), "AutoencoderOptions: hidden");
  MD_CHECK_VALUE(layers() >= 1, "AutoencoderOptions: layers must be >= 1, got ", layers());
}

std::string AutoencoderOptions::to_json() const {
  nlohmann::json j;
  j["kind"] = mdiff::to_string(kind());
  j["input"] = input();
  j["latent"] = latent();
  j["hidden"] = hidden();
  j["layers"] = layers();
  return j.dump();
}

AutoencoderOptions AutoencoderOptions::from_json(const std::string& text) {
  const char* what = "AutoencoderOptions::from_json";
  const nlohmann::json j = detail::parse_json_object(text, what);
  for (const char* k : {"kind", "input", "latent"}) MD_CHECK_VALUE(j.contains(k), what, ": missing key '", k, "'");
  using detail::json_get;
  AutoencoderOptions o(enum_from_string<AutoencoderKind>(json_get<std::string>(j, "kind", what)),
                       json_get<int64_t>(j, "input", what), json_get<int64_t>(j, "latent", what));
  for (const auto& item : j.items()) {
    const std::string& k = item.key();
    if (k == "kind" || k == "input" || k == "latent") continue;
    if (k == "hidden") {
      o.hidden(json_get<int64_t>(j, k, what));
    } else if (k == "layers") {
      o.layers(json_get<int64_t>(j, k, what));
    } else {
      MD_CHECK_VALUE(false, what, ": unknown key '", k, "'");
    }
  }
  o.validate();
  return o;
}

void AutoencoderTrainOptions::validate() const {
  const char* w = "AutoencoderTrainOptions";
  MD_CHECK_VALUE(steps() >= 1, w, ": steps must be >= 1, got ", steps());
  MD_CHECK_VALUE(batch() >= 1, w, ": batch must be >= 1, got ", batch());
  MD_CHECK_VALUE(std::isfinite(lr()) && lr() > 0, w, ": lr must be positive, got ", lr());
  MD_CHECK_VALUE(weight_decay() >= 0, w, ": weight_decay must be >= 0, got ", weight_decay());
}

// ---- Module -----------------------------------------------------------------------------------

AutoencoderImpl::AutoencoderImpl(AutoencoderOptions options) : options_(options) { reset(); }

void AutoencoderImpl::reset() {
  const auto& o = options_;
  o.validate();
  namespace nn = torch::nn;
  encoder_ = nn::Sequential();
  decoder_ = nn::Sequential();
  const int64_t h = o.hidden();
  if (o.kind() == AutoencoderKind::MLP) {
    encoder_->push_back(nn::Linear(o.input(), h));
    encoder_->push_back(nn::SiLU());
    for (int64_t i = 1; i < o.layers(); ++i) {
      encoder_->push_back(nn::Linear(h, h));
      encoder_->push_back(nn::SiLU());
    }
    encoder_->push_back(nn::Linear(h, o.latent()));
    decoder_->push_back(nn::Linear(o.latent(), h));
    decoder_->push_back(nn::SiLU());
    for (int64_t i = 1; i < o.layers(); ++i) {
      decoder_->push_back(nn::Linear(h, h));
      decoder_->push_back(nn::SiLU());
    }
    decoder_->push_back(nn::Linear(h, o.input()));
  } else {
    const int64_t c = o.input();
    encoder_->push_back(nn::Conv2d(nn::Conv2dOptions(c, h, 3).padding(1)));
    encoder_->push_back(nn::SiLU());
    encoder_->push_back(nn::Conv2d(nn::Conv2dOptions(h, 2 * h, 4).stride(2).padding(1)));  // H/2
    encoder_->push_back(nn::SiLU());
    encoder_->push_back(nn::Conv2d(nn::Conv2dOptions(2 * h, 2 * h, 4).stride(2).padding(1)));  // H/4
    encoder_->push_back(nn::SiLU());
    encoder_->push_back(nn::Conv2d(nn::Conv2dOptions(2 * h, o.latent(), 3).padding(1)));
    decoder_->push_back(nn::Conv2d(nn::Conv2dOptions(o.latent(), 2 * h, 3).padding(1)));
    decoder_->push_back(nn::SiLU());
    decoder_->push_back(nn::ConvTranspose2d(nn::ConvTranspose2dOptions(2 * h, 2 * h, 4).stride(2).padding(1)));
    decoder_->push_back(nn::SiLU());
    decoder_->push_back(nn::ConvTranspose2d(nn::ConvTranspose2dOptions(2 * h, h, 4).stride(2).padding(1)));
    decoder_->push_back(nn::SiLU());
    decoder_->push_back(nn::Conv2d(nn::Conv2dOptions(h, c, 3).padding(1)));
  }
  register_module("encoder", encoder_);
  register_module("decoder", decoder_);
}

void AutoencoderImpl::pretty_print(std::ostream& stream) const {
  const auto& o = options_;
  stream << fmt::format("manifold_diffusion::Autoencoder(kind={}, input={}, latent={}, hidden={}, layers={})",
                        mdiff::to_string(o.kind()), o.input(), o.latent(), o.hidden(), o.layers());
}

void AutoencoderImpl::check_input(const at::Tensor& x) const {
  check_defined(x, "x");
  MD_CHECK_TYPE(x.is_floating_point(), "Autoencoder: x: expected a floating dtype, got ", x.scalar_type());
  if (options_.kind() == AutoencoderKind::MLP) {
    MD_CHECK_VALUE(x.dim() == 2 && x.size(1) == options_.input(), "Autoencoder: expected points [N, ", options_.input(),
                   "], got shape ", shape_string(x));
  } else {
    MD_CHECK_VALUE(x.dim() == 4 && x.size(1) == options_.input() && x.size(2) % 4 == 0 && x.size(3) % 4 == 0,
                   "Autoencoder: expected images [N, ", options_.input(), ", H, W] with H and W divisible by 4, got shape ",
                   shape_string(x));
  }
}

at::Tensor AutoencoderImpl::encode(const at::Tensor& x) {
  check_input(x);
  return encoder_->forward(x);
}

at::Tensor AutoencoderImpl::decode(const at::Tensor& z) {
  check_defined(z, "z");
  const int64_t want_dim = options_.kind() == AutoencoderKind::MLP ? 2 : 4;
  MD_CHECK_VALUE(z.dim() == want_dim && z.size(1) == options_.latent(), "Autoencoder: decode expected latents with ",
                 options_.latent(), " ", options_.kind() == AutoencoderKind::MLP ? "dimensions [N, L]" : "channels [N, L, h, w]",
                 ", got shape ", shape_string(z));
  return decoder_->forward(z);
}

at::Tensor AutoencoderImpl::forward(const at::Tensor& x) { return decode(encode(x)); }

at::Tensor AutoencoderImpl::project(const at::Tensor& x) {
  const bool was_training = is_training();
  eval();
  at::NoGradGuard no_grad;
  at::Tensor out = forward(x);
  train(was_training);
  return out;
}

std::vector<int64_t> AutoencoderImpl::latent_shape(const std::vector<int64_t>& sample_shape) const {
  if (options_.kind() == AutoencoderKind::MLP) {
    MD_CHECK_VALUE(sample_shape.size() == 1 && sample_shape[0] == options_.input(),
                   "Autoencoder::latent_shape: expected {", options_.input(), "}, got ", c10::IntArrayRef(sample_shape));
    return {options_.latent()};
  }
  MD_CHECK_VALUE(sample_shape.size() == 3 && sample_shape[0] == options_.input() && sample_shape[1] % 4 == 0 &&
                     sample_shape[2] % 4 == 0,
                 "Autoencoder::latent_shape: expected {", options_.input(), ", H, W} with H, W divisible by 4, got ",
                 c10::IntArrayRef(sample_shape));
  return {options_.latent(), sample_shape[1] / 4, sample_shape[2] / 4};
}

// ---- Training and files -----------------------------------------------------------------------

std::vector<double> train_autoencoder(Autoencoder& ae, const at::Tensor& data, const AutoencoderTrainOptions& options) {
  options.validate();
  MD_CHECK_VALUE(ae, "train_autoencoder: the autoencoder is null");
  check_defined(data, "data");
  check_non_empty(data, "data");
  const auto param = ae->parameters().front();
  const at::Tensor x_all = data.to(param.device(), param.scalar_type());
  at::Generator gen = make_generator(mix_seed(options.seed() ^ 0x6165ULL));
  torch::optim::AdamW opt(ae->parameters(),
                          torch::optim::AdamWOptions(options.lr()).weight_decay(options.weight_decay()));
  std::vector<double> history;
  history.reserve(static_cast<size_t>(options.steps()));
  ae->train();
  for (int64_t step = 0; step < options.steps(); ++step) {
    const double lr = options.cosine_decay()
                          ? options.lr() * 0.5 * (1.0 + std::cos(M_PI * static_cast<double>(step) /
                                                                 static_cast<double>(options.steps())))
                          : options.lr();
    for (auto& g : opt.param_groups()) g.options().set_lr(lr);
    const at::Tensor idx = at::randint(0, x_all.size(0), {options.batch()}, gen, at::TensorOptions(at::kLong));
    const at::Tensor x = x_all.index_select(0, idx.to(x_all.device()));
    opt.zero_grad();
    const at::Tensor loss = (ae->forward(x) - x).pow(2).mean();
    loss.backward();
    opt.step();
    history.push_back(loss.item<double>());
  }
  ae->eval();
  return history;
}

void save_autoencoder(const std::string& path, const Autoencoder& ae) {
  MD_CHECK_VALUE(ae, "save_autoencoder: the autoencoder is null");
  StateFile f(kAutoencoderKind, kAutoencoderFormat);
  f.metadata["options"] = ae->options().to_json();
  f.add_section("model", module_state(*ae));
  f.save(path);
}

Autoencoder load_autoencoder(const std::string& path) {
  const std::string what = "load_autoencoder: '" + path + "'";
  const StateFile f = StateFile::load(path, kAutoencoderKind, kAutoencoderFormat, what);
  const auto opts = f.metadata.find("options");
  MD_CHECK(opts != f.metadata.end(), what, " has no 'options' metadata");
  AutoencoderOptions o = AutoencoderOptions::mlp(1, 1);
  try {
    o = AutoencoderOptions::from_json(opts->second);
  } catch (const c10::Error& e) {
    MD_CHECK(false, what, ": bad options: ", e.what_without_backtrace());
  }
  // The options decide what constructing the model allocates: its weights alone must fit in the
  // file's tensors, or a few bytes of metadata could ask for any amount of memory.
  const auto stored = static_cast<double>(f.values("model"));
  const double h = static_cast<double>(o.hidden()), in = static_cast<double>(o.input()),
               lat = static_cast<double>(o.latent());
  const double weights = o.kind() == AutoencoderKind::MLP
                             ? 2 * (in * h + static_cast<double>(o.layers() - 1) * h * h + h * lat)
                             : 2 * (9 * in * h + 32 * h * h + 64 * h * h + 18 * h * lat);
  MD_CHECK(weights <= stored, what, ": its options ask for at least ", weights, " weights but the file holds ", stored,
           " values");
  Autoencoder ae(o);
  load_module_state(*ae, f.section("model"), what);
  ae->eval();
  return ae;
}

}  // namespace manifold_diffusion
