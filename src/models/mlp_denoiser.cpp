#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/models/mlp_denoiser.h>

#include "models/model_util.h"

#include <ATen/ATen.h>

#include <fmt/format.h>

namespace manifold_diffusion {
namespace {

const char* bool_name(bool b) {
  return b ? "true" : "false";
}

}  // namespace

// ---- MLPResBlock ------------------------------------------------------------------------------

MLPResBlockImpl::MLPResBlockImpl(MLPResBlockOptions options) : options_(options) {
  reset();
}

void MLPResBlockImpl::reset() {
  const auto& o = options_;
  check_positive(o.hidden(), "MLPResBlockOptions: hidden");
  check_positive(o.emb_dim(), "MLPResBlockOptions: emb_dim");
  MD_CHECK_VALUE(o.dropout() >= 0 && o.dropout() < 1, "MLPResBlockOptions: dropout must be in [0, 1), got ",
                 o.dropout());
  norm_ = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.hidden()})));
  fc1_ = register_module("fc1", torch::nn::Linear(o.hidden(), o.hidden()));
  emb_proj_ = register_module("emb_proj",
                              torch::nn::Linear(o.emb_dim(), o.use_scale_shift_norm() ? 2 * o.hidden() : o.hidden()));
  dropout_ = register_module("dropout", torch::nn::Dropout(o.dropout()));
  fc2_ = register_module("fc2", torch::nn::Linear(o.hidden(), o.hidden()));
  if (o.zero_init()) {
    detail::zero_parameters(fc2_);
  }
}

void MLPResBlockImpl::pretty_print(std::ostream& stream) const {
  stream << "manifold_diffusion::MLPResBlock(hidden=" << options_.hidden() << ", emb_dim=" << options_.emb_dim()
         << ", dropout=" << options_.dropout()
         << ", use_scale_shift_norm=" << bool_name(options_.use_scale_shift_norm()) << ")";
}

at::Tensor MLPResBlockImpl::forward(const at::Tensor& x, const at::Tensor& emb) {
  const auto& o = options_;
  check_defined(x, "x");
  check_defined(emb, "emb");
  MD_CHECK_VALUE(x.dim() == 2 && x.size(1) == o.hidden(), "MLPResBlock: x: expected shape [N, ", o.hidden(),
                 "], got ", shape_string(x));
  MD_CHECK_VALUE(emb.dim() == 2 && emb.size(0) == x.size(0) && emb.size(1) == o.emb_dim(),
                 "MLPResBlock: emb: expected shape [", x.size(0), ", ", o.emb_dim(), "], got ", shape_string(emb));
  at::Tensor h = at::silu(fc1_(norm_(x)));
  const at::Tensor e = emb_proj_(at::silu(emb));
  if (o.use_scale_shift_norm()) {
    const auto parts = e.chunk(2, 1);
    h = h * (1 + parts[0]) + parts[1];
  } else {
    h = h + e;
  }
  return x + fc2_(dropout_(h));
}

// ---- Options ----------------------------------------------------------------------------------

void MLPDenoiserOptions::validate() const {
  check_positive(dim(), "MLPDenoiserOptions: dim");
  check_positive(hidden(), "MLPDenoiserOptions: hidden");
  MD_CHECK_VALUE(num_blocks() >= 0, "MLPDenoiserOptions: num_blocks must be >= 0, got ", num_blocks());
  check_positive(time_embed_dim(), "MLPDenoiserOptions: time_embed_dim");
  (void)to_string(time_embedding());
  if (time_embedding() == TimeEmbedding::Fourier) {
    check_positive(fourier_scale(), "MLPDenoiserOptions: fourier_scale");
    MD_CHECK_VALUE(time_embed_dim() % 2 == 0,
                   "MLPDenoiserOptions: time_embed_dim must be even with the Fourier time embedding, got ",
                   time_embed_dim());
  }
  MD_CHECK_VALUE(num_classes() >= 0, "MLPDenoiserOptions: num_classes must be >= 0 (0: unconditional), got ",
                 num_classes());
  MD_CHECK_VALUE(dropout() >= 0 && dropout() < 1, "MLPDenoiserOptions: dropout must be in [0, 1), got ", dropout());
  MD_CHECK_VALUE(cond_dim() >= 0, "MLPDenoiserOptions: cond_dim must be >= 0 (0: none), got ", cond_dim());
  MD_CHECK_VALUE(cond_dim() == 0 || num_classes() == 0, "MLPDenoiserOptions: cond_dim = ", cond_dim(),
                 " and num_classes = ", num_classes(), " cannot be combined (both use the conditioning input)");
}

std::string MLPDenoiserOptions::to_json() const {
  nlohmann::json j;
  j["dim"] = dim();
  j["hidden"] = hidden();
  j["num_blocks"] = num_blocks();
  j["time_embed_dim"] = time_embed_dim();
  j["time_embedding"] = mdiff::to_string(time_embedding());
  j["fourier_scale"] = fourier_scale();
  j["num_classes"] = num_classes();
  if (cond_dim() > 0) j["cond_dim"] = cond_dim();
  j["dropout"] = dropout();
  j["use_scale_shift_norm"] = use_scale_shift_norm();
  j["zero_init_output"] = zero_init_output();
  return j.dump();
}

MLPDenoiserOptions MLPDenoiserOptions::from_json(const std::string& text) {
  const char* what = "MLPDenoiserOptions::from_json";
  const nlohmann::json j = detail::parse_json_object(text, what);
  MD_CHECK_VALUE(j.contains("dim"), what, ": missing key 'dim'");
  using detail::json_get;
  MLPDenoiserOptions o(json_get<int64_t>(j, "dim", what));
  for (const auto& item : j.items()) {
    const std::string& k = item.key();
    if (k == "dim") {
      continue;
    } else if (k == "hidden") {
      o.hidden(json_get<int64_t>(j, k, what));
    } else if (k == "num_blocks") {
      o.num_blocks(json_get<int64_t>(j, k, what));
    } else if (k == "time_embed_dim") {
      o.time_embed_dim(json_get<int64_t>(j, k, what));
    } else if (k == "time_embedding") {
      o.time_embedding(enum_from_string<TimeEmbedding>(json_get<std::string>(j, k, what)));
    } else if (k == "fourier_scale") {
      o.fourier_scale(json_get<double>(j, k, what));
    } else if (k == "num_classes") {
      o.num_classes(json_get<int64_t>(j, k, what));
    } else if (k == "cond_dim") {
      o.cond_dim(json_get<int64_t>(j, k, what));
    } else if (k == "dropout") {
      o.dropout(json_get<double>(j, k, what));
    } else if (k == "use_scale_shift_norm") {
      o.use_scale_shift_norm(json_get<bool>(j, k, what));
    } else if (k == "zero_init_output") {
      o.zero_init_output(json_get<bool>(j, k, what));
    } else {
      MD_CHECK_VALUE(false, what, ": unknown key '", k, "'");
    }
  }
  o.validate();
  return o;
}

// ---- MLPDenoiser ------------------------------------------------------------------------------

MLPDenoiserImpl::MLPDenoiserImpl(MLPDenoiserOptions options) : options_(options) {
  reset();
}

void MLPDenoiserImpl::reset() {
  const auto& o = options_;
  o.validate();
  sinusoidal_ = nullptr;
  fourier_ = nullptr;
  if (o.time_embedding() == TimeEmbedding::Sinusoidal) {
    sinusoidal_ = register_module("time_embedding", SinusoidalEmbedding(o.time_embed_dim()));
  } else {
    fourier_ = register_module("time_embedding",
                               FourierEmbedding(FourierEmbeddingOptions(o.time_embed_dim()).scale(o.fourier_scale())));
  }
  time_fc1_ = register_module("time_fc1", torch::nn::Linear(o.time_embed_dim(), o.hidden()));
  time_fc2_ = register_module("time_fc2", torch::nn::Linear(o.hidden(), o.hidden()));
  label_embedding_ = nullptr;
  if (o.num_classes() > 0) {
    label_embedding_ = register_module("label_embedding", torch::nn::Embedding(o.num_classes() + 1, o.hidden()));
  }
  cond_embedding_ = nullptr;
  if (o.cond_dim() > 0) {
    cond_embedding_ = register_module("cond_embedding", torch::nn::Linear(o.cond_dim(), o.hidden()));
  }
  input_ = register_module("input", torch::nn::Linear(o.dim(), o.hidden()));
  blocks_ = torch::nn::ModuleList();
  for (int64_t i = 0; i < o.num_blocks(); ++i) {
    blocks_->push_back(MLPResBlock(MLPResBlockOptions(o.hidden(), o.hidden())
                                       .dropout(o.dropout())
                                       .use_scale_shift_norm(o.use_scale_shift_norm())
                                       .zero_init(o.zero_init_output())));
  }
  register_module("blocks", blocks_);
  output_norm_ = register_module("output_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.hidden()})));
  output_ = register_module("output", torch::nn::Linear(o.hidden(), o.dim()));
  if (o.zero_init_output()) {
    detail::zero_parameters(output_);
  }
}

void MLPDenoiserImpl::pretty_print(std::ostream& stream) const {
  const auto& o = options_;
  stream << fmt::format(
      "manifold_diffusion::MLPDenoiser(dim={}, hidden={}, num_blocks={}, time_embed_dim={}, time_embedding={}, "
      "fourier_scale={}, num_classes={}, dropout={}, use_scale_shift_norm={}, zero_init_output={}{})",
      o.dim(), o.hidden(), o.num_blocks(), o.time_embed_dim(), mdiff::to_string(o.time_embedding()), o.fourier_scale(),
      o.num_classes(), o.dropout(), bool_name(o.use_scale_shift_norm()), bool_name(o.zero_init_output()),
      o.cond_dim() > 0 ? fmt::format(", cond_dim={}", o.cond_dim()) : std::string());
}

at::Tensor MLPDenoiserImpl::forward(const at::Tensor& x, const at::Tensor& t, const at::Tensor& class_labels) {
  CheckContext check_context("MLPDenoiser");
  const auto& o = options_;
  check_defined(x, "x");
  MD_CHECK_VALUE(x.dim() == 2, "MLPDenoiser: x: expected 2 dimensions [N, D], got ", x.dim(), " (shape ",
                 shape_string(x), ")");
  MD_CHECK_VALUE(x.size(1) == o.dim(), "MLPDenoiser: x: expected points of dimension ", o.dim(),
                 " (MLPDenoiserOptions::dim), got ", x.size(1), " (shape ", shape_string(x), ")");
  MD_CHECK_TYPE(x.is_floating_point(), "MLPDenoiser: x: expected a floating dtype, got ", x.scalar_type());
  MD_CHECK_TYPE(x.scalar_type() == input_->weight.scalar_type(), "MLPDenoiser: x: dtype ", x.scalar_type(),
                " does not match the parameters' ", input_->weight.scalar_type(), " (convert x or the module)");
  MD_CHECK_VALUE(x.device() == input_->weight.device(), "MLPDenoiser: x is on ", x.device(), " but the parameters are on ",
                 input_->weight.device());
  const int64_t batch = x.size(0);

  const at::Tensor tt = detail::batch_timesteps(t, batch, x.device(), "MLPDenoiser");
  at::Tensor emb = sinusoidal_ ? sinusoidal_(tt) : fourier_(tt);
  emb = time_fc2_(at::silu(time_fc1_(emb.to(time_fc1_->weight.scalar_type()))));
  if (label_embedding_) {
    emb = emb + label_embedding_(detail::class_indices(class_labels, o.num_classes(), batch, x.device(), "MLPDenoiser"));
  } else if (cond_embedding_) {
    if (class_labels.defined()) {
      MD_CHECK_TYPE(class_labels.is_floating_point(), "MLPDenoiser: the conditioning vector must be floating, got ",
                    class_labels.scalar_type());
      MD_CHECK_VALUE(class_labels.dim() == 2 && class_labels.size(0) == batch && class_labels.size(1) == o.cond_dim(),
                     "MLPDenoiser: conditioning: expected shape [", batch, ", ", o.cond_dim(), "] (cond_dim), got ",
                     shape_string(class_labels));
      emb = emb + cond_embedding_(class_labels.to(x.device(), emb.scalar_type()));
    } else {
      emb = emb + cond_embedding_->bias;  // the zero vector
    }
  } else {
    MD_CHECK_VALUE(!class_labels.defined(),
                   "MLPDenoiser: class_labels given, but the model is unconditional (num_classes = 0)");
  }

  at::Tensor h = input_(x);
  for (const auto& block : *blocks_) {
    h = block->as<MLPResBlock>()->forward(h, emb);
  }
  return output_(at::silu(output_norm_(h)));
}

}  // namespace manifold_diffusion
