#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/models/unet.h>
#include <manifold_diffusion/ops/group_norm.h>

#include "models/model_util.h"

#include <ATen/ATen.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>

namespace manifold_diffusion {
namespace {

// Spatial size of each level for an image_size input: each level after the first halves it (ceil).
std::vector<int64_t> level_sizes(const UNetOptions& o) {
  std::vector<int64_t> sizes;
  int64_t size = o.image_size();
  for (size_t level = 0; level < o.channel_mult().size(); ++level) {
    sizes.push_back(size);
    size = (size + 1) / 2;
  }
  return sizes;
}

bool has_attention(const UNetOptions& o, int64_t size) {
  const auto& r = o.attention_resolutions();
  return std::find(r.begin(), r.end(), size) != r.end();
}

const char* bool_name(bool b) {
  return b ? "true" : "false";
}

}  // namespace

// ---- Options ----------------------------------------------------------------------------------

void UNetOptions::validate() const {
  check_positive(in_channels(), "UNetOptions: in_channels");
  check_positive(out_channels(), "UNetOptions: out_channels");
  check_positive(base_channels(), "UNetOptions: base_channels");
  MD_CHECK_VALUE(!channel_mult().empty(), "UNetOptions: channel_mult must not be empty");
  for (size_t i = 0; i < channel_mult().size(); ++i) {
    MD_CHECK_VALUE(channel_mult()[i] > 0, "UNetOptions: channel_mult[", i, "] must be positive, got ",
                   channel_mult()[i], " (channel_mult = ", at::IntArrayRef(channel_mult()), ")");
  }
  MD_CHECK_VALUE(num_res_blocks() >= 1, "UNetOptions: num_res_blocks must be >= 1, got ", num_res_blocks());
  check_positive(image_size(), "UNetOptions: image_size");
  check_positive(norm_groups(), "UNetOptions: norm_groups");
  MD_CHECK_VALUE(std::isfinite(norm_eps()) && norm_eps() > 0, "UNetOptions: norm_eps must be positive, got ", norm_eps());
  MD_CHECK_VALUE(std::isfinite(freq_shift()) && freq_shift() < static_cast<double>(base_channels() / 2),
                 "UNetOptions: freq_shift must be below base_channels / 2 = ", base_channels() / 2, ", got ", freq_shift());
  for (size_t i = 0; i < channel_mult().size(); ++i) {
    const int64_t ch = base_channels() * channel_mult()[i];
    MD_CHECK_VALUE(ch % norm_groups() == 0, "UNetOptions: norm_groups (", norm_groups(),
                   ") must divide every channel count, but base_channels * channel_mult[", i, "] = ", base_channels(),
                   " * ", channel_mult()[i], " = ", ch, " is not divisible by ", norm_groups());
  }
  const std::vector<int64_t> sizes = level_sizes(*this);
  for (size_t i = 0; i < attention_resolutions().size(); ++i) {
    const int64_t r = attention_resolutions()[i];
    MD_CHECK_VALUE(std::find(sizes.begin(), sizes.end(), r) != sizes.end(), "UNetOptions: attention_resolutions[", i,
                   "] = ", r, " is not a feature-map size of a ", image_size(), "x", image_size(),
                   " input (the levels have sizes ", at::IntArrayRef(sizes), "); set image_size to the input size");
  }
  // Every channel count that gets an attention block must split into the heads.
  std::vector<int64_t> attention_channels;
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (has_attention(*this, sizes[i])) attention_channels.push_back(base_channels() * channel_mult()[i]);
  }
  if (middle_attention()) attention_channels.push_back(base_channels() * channel_mult().back());
  if (num_head_channels() == -1) {
    check_positive(num_heads(), "UNetOptions: num_heads");
    for (int64_t ch : attention_channels) {
      MD_CHECK_VALUE(ch % num_heads() == 0, "UNetOptions: num_heads (", num_heads(),
                     ") must divide the channels of every attention block, got ", ch, " channels");
    }
  } else {
    MD_CHECK_VALUE(num_head_channels() > 0, "UNetOptions: num_head_channels must be positive or -1, got ",
                   num_head_channels());
    for (int64_t ch : attention_channels) {
      MD_CHECK_VALUE(ch % num_head_channels() == 0, "UNetOptions: num_head_channels (", num_head_channels(),
                     ") must divide the channels of every attention block, got ", ch, " channels");
    }
  }
  MD_CHECK_VALUE(dropout() >= 0 && dropout() < 1, "UNetOptions: dropout must be in [0, 1), got ", dropout());
  MD_CHECK_VALUE(augment_dim() >= 0, "UNetOptions: augment_dim must be >= 0 (0: none), got ", augment_dim());
  MD_CHECK_VALUE(num_classes() >= 0, "UNetOptions: num_classes must be >= 0 (0: unconditional), got ", num_classes());
  (void)to_string(time_embedding());  // rejects a value outside the enum
  if (time_embedding() == TimeEmbedding::Fourier) {
    check_positive(fourier_scale(), "UNetOptions: fourier_scale");
    MD_CHECK_VALUE(base_channels() % 2 == 0, "UNetOptions: base_channels must be even with the Fourier time embedding, got ",
                   base_channels());
  }
}

std::string UNetOptions::to_json() const {
  nlohmann::json j;
  j["in_channels"] = in_channels();
  j["out_channels"] = out_channels();
  j["base_channels"] = base_channels();
  j["channel_mult"] = channel_mult();
  j["num_res_blocks"] = num_res_blocks();
  j["attention_resolutions"] = attention_resolutions();
  j["image_size"] = image_size();
  j["middle_attention"] = middle_attention();
  j["num_heads"] = num_heads();
  j["num_head_channels"] = num_head_channels();
  j["dropout"] = dropout();
  j["norm_groups"] = norm_groups();
  j["use_scale_shift_norm"] = use_scale_shift_norm();
  j["time_embedding"] = mdiff::to_string(time_embedding());
  j["fourier_scale"] = fourier_scale();
  j["num_classes"] = num_classes();
  j["augment_dim"] = augment_dim();
  j["resblock_updown"] = resblock_updown();
  j["learn_sigma"] = learn_sigma();
  j["zero_init_output"] = zero_init_output();
  j["channels_last"] = channels_last();
  // Written only when set, so the JSON of every other configuration (and older readers) is unchanged.
  if (norm_eps() != 1e-5) j["norm_eps"] = norm_eps();
  if (freq_shift() != 0.0) j["freq_shift"] = freq_shift();
  return j.dump();
}

UNetOptions UNetOptions::from_json(const std::string& text) {
  const char* what = "UNetOptions::from_json";
  const nlohmann::json j = detail::parse_json_object(text, what);
  for (const char* required : {"in_channels", "out_channels"}) {
    MD_CHECK_VALUE(j.contains(required), what, ": missing key '", required, "'");
  }
  using detail::json_get;
  UNetOptions o(json_get<int64_t>(j, "in_channels", what), json_get<int64_t>(j, "out_channels", what));
  for (const auto& item : j.items()) {
    const std::string& k = item.key();
    if (k == "in_channels" || k == "out_channels") {
      continue;
    } else if (k == "base_channels") {
      o.base_channels(json_get<int64_t>(j, k, what));
    } else if (k == "channel_mult") {
      o.channel_mult(json_get<std::vector<int64_t>>(j, k, what));
    } else if (k == "num_res_blocks") {
      o.num_res_blocks(json_get<int64_t>(j, k, what));
    } else if (k == "attention_resolutions") {
      o.attention_resolutions(json_get<std::vector<int64_t>>(j, k, what));
    } else if (k == "image_size") {
      o.image_size(json_get<int64_t>(j, k, what));
    } else if (k == "middle_attention") {
      o.middle_attention(json_get<bool>(j, k, what));
    } else if (k == "num_heads") {
      o.num_heads(json_get<int64_t>(j, k, what));
    } else if (k == "num_head_channels") {
      o.num_head_channels(json_get<int64_t>(j, k, what));
    } else if (k == "dropout") {
      o.dropout(json_get<double>(j, k, what));
    } else if (k == "norm_groups") {
      o.norm_groups(json_get<int64_t>(j, k, what));
    } else if (k == "use_scale_shift_norm") {
      o.use_scale_shift_norm(json_get<bool>(j, k, what));
    } else if (k == "time_embedding") {
      o.time_embedding(enum_from_string<TimeEmbedding>(json_get<std::string>(j, k, what)));
    } else if (k == "fourier_scale") {
      o.fourier_scale(json_get<double>(j, k, what));
    } else if (k == "num_classes") {
      o.num_classes(json_get<int64_t>(j, k, what));
    } else if (k == "augment_dim") {
      o.augment_dim(json_get<int64_t>(j, k, what));
    } else if (k == "resblock_updown") {
      o.resblock_updown(json_get<bool>(j, k, what));
    } else if (k == "learn_sigma") {
      o.learn_sigma(json_get<bool>(j, k, what));
    } else if (k == "zero_init_output") {
      o.zero_init_output(json_get<bool>(j, k, what));
    } else if (k == "channels_last") {
      o.channels_last(json_get<bool>(j, k, what));
    } else if (k == "norm_eps") {
      o.norm_eps(json_get<double>(j, k, what));
    } else if (k == "freq_shift") {
      o.freq_shift(json_get<double>(j, k, what));
    } else {
      MD_CHECK_VALUE(false, what, ": unknown key '", k, "'");
    }
  }
  o.validate();
  return o;
}

// ---- UNet -------------------------------------------------------------------------------------

UNetImpl::UNetImpl(UNetOptions options) : options_(std::move(options)) {
  reset();
}

void UNetImpl::reset() {
  const UNetOptions& o = options_;
  o.validate();
  down_steps_.clear();
  middle_steps_.clear();
  up_steps_.clear();
  down_keeps_.clear();

  const int64_t base = o.base_channels();
  const int64_t emb_dim = 4 * base;
  sinusoidal_ = nullptr;
  fourier_ = nullptr;
  if (o.time_embedding() == TimeEmbedding::Sinusoidal) {
    // freq_shift as a longer period: exp(-ln(P) i / (D/2 - s)) = exp(-ln(P^(D/2 / (D/2 - s))) i / (D/2)).
    const double half = static_cast<double>(base / 2);
    const double max_period = o.freq_shift() == 0.0 || half == 0 ? 10000.0 : std::pow(10000.0, half / (half - o.freq_shift()));
    sinusoidal_ = register_module("time_embedding", SinusoidalEmbedding(SinusoidalEmbeddingOptions(base).max_period(max_period)));
  } else {
    fourier_ = register_module("time_embedding", FourierEmbedding(FourierEmbeddingOptions(base).scale(o.fourier_scale())));
  }
  time_fc1_ = register_module("time_fc1", torch::nn::Linear(base, emb_dim));
  time_fc2_ = register_module("time_fc2", torch::nn::Linear(emb_dim, emb_dim));
  label_embedding_ = nullptr;
  if (o.num_classes() > 0) {
    label_embedding_ = register_module("label_embedding", torch::nn::Embedding(o.num_classes() + 1, emb_dim));
  }
  augment_embedding_ = nullptr;
  if (o.augment_dim() > 0) {
    augment_embedding_ = register_module(
        "augment_embedding", torch::nn::Linear(torch::nn::LinearOptions(o.augment_dim(), emb_dim).bias(false)));
  }

  auto res_options = [&](int64_t in, int64_t out) {
    return ResBlockOptions(in, out, emb_dim)
        .norm_groups(o.norm_groups())
        .dropout(o.dropout())
        .use_scale_shift_norm(o.use_scale_shift_norm())
        .norm_eps(o.norm_eps())
        .zero_init(o.zero_init_output());
  };
  auto attention = [&](int64_t channels) {
    return AttentionBlock(AttentionBlockOptions(channels)
                              .num_heads(o.num_heads())
                              .num_head_channels(o.num_head_channels())
                              .norm_groups(o.norm_groups())
                              .norm_eps(o.norm_eps())
                              .zero_init(o.zero_init_output()));
  };

  input_conv_ = register_module("input_conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_channels(), base, 3).padding(1)));

  // Way down. skip_channels mirrors the skip connections the forward pass keeps.
  const std::vector<int64_t> sizes = level_sizes(o);
  const auto levels = static_cast<int64_t>(o.channel_mult().size());
  std::vector<int64_t> skip_channels{base};
  int64_t ch = base;
  down_ = torch::nn::ModuleList();
  for (int64_t level = 0; level < levels; ++level) {
    const int64_t out = base * o.channel_mult()[level];
    for (int64_t r = 0; r < o.num_res_blocks(); ++r) {
      down_->push_back(ResBlock(res_options(ch, out)));
      down_steps_.push_back(Step::Res);
      down_keeps_.push_back(true);
      ch = out;
      if (has_attention(o, sizes[level])) {
        down_keeps_.back() = false;
        down_->push_back(attention(ch));
        down_steps_.push_back(Step::Attention);
        down_keeps_.push_back(true);
      }
      skip_channels.push_back(ch);
    }
    if (level + 1 < levels) {
      if (o.resblock_updown()) {
        down_->push_back(ResBlock(res_options(ch, ch).down(true)));
      } else {
        down_->push_back(Downsample(ch));
      }
      down_steps_.push_back(Step::Down);
      down_keeps_.push_back(true);
      skip_channels.push_back(ch);
    }
  }
  register_module("down", down_);

  middle_ = torch::nn::ModuleList();
  middle_->push_back(ResBlock(res_options(ch, ch)));
  middle_steps_.push_back(Step::Res);
  if (o.middle_attention()) {
    middle_->push_back(attention(ch));
    middle_steps_.push_back(Step::Attention);
  }
  middle_->push_back(ResBlock(res_options(ch, ch)));
  middle_steps_.push_back(Step::Res);
  register_module("middle", middle_);

  // Way up: every residual block takes one skip connection, in reverse order.
  up_ = torch::nn::ModuleList();
  for (int64_t level = levels - 1; level >= 0; --level) {
    const int64_t out = base * o.channel_mult()[level];
    for (int64_t r = 0; r <= o.num_res_blocks(); ++r) {
      MD_INTERNAL_ASSERT(!skip_channels.empty());
      const int64_t skip = skip_channels.back();
      skip_channels.pop_back();
      up_->push_back(ResBlock(res_options(ch + skip, out)));
      up_steps_.push_back(Step::Res);
      ch = out;
      if (has_attention(o, sizes[level])) {
        up_->push_back(attention(ch));
        up_steps_.push_back(Step::Attention);
      }
      if (level > 0 && r == o.num_res_blocks()) {
        if (o.resblock_updown()) {
          up_->push_back(ResBlock(res_options(ch, ch).up(true)));
        } else {
          up_->push_back(Upsample(ch));
        }
        up_steps_.push_back(Step::Up);
      }
    }
  }
  MD_INTERNAL_ASSERT(skip_channels.empty());
  register_module("up", up_);

  output_norm_ = register_module("output_norm", torch::nn::GroupNorm(torch::nn::GroupNormOptions(o.norm_groups(), ch).eps(o.norm_eps())));
  output_conv_ = register_module(
      "output_conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(ch, o.output_channels(), 3).padding(1)));
  if (o.zero_init_output()) {
    detail::zero_parameters(output_conv_);
  }
}

void UNetImpl::train(bool on) {
  torch::nn::Module::train(on);
  if (!options_.channels_last()) {
    return;
  }
  const at::MemoryFormat format = on ? at::MemoryFormat::Contiguous : at::MemoryFormat::ChannelsLast;
  at::NoGradGuard no_grad;
  for (auto& p : parameters()) {
    if (p.dim() == 4 && !p.is_contiguous(format)) {
      p.set_data(p.data().contiguous(format));
    }
  }
}

void UNetImpl::pretty_print(std::ostream& stream) const {
  const UNetOptions& o = options_;
  std::string text = fmt::format(
      "manifold_diffusion::UNet(in_channels={}, out_channels={}, base_channels={}, channel_mult=[{}], "
      "num_res_blocks={}, attention_resolutions=[{}], image_size={}, middle_attention={}, num_heads={}, "
      "num_head_channels={}, dropout={}, norm_groups={}, use_scale_shift_norm={}, time_embedding={}, "
      "fourier_scale={}, num_classes={}, augment_dim={}, resblock_updown={}, learn_sigma={}, zero_init_output={})",
      o.in_channels(), o.out_channels(), o.base_channels(), fmt::join(o.channel_mult(), ", "), o.num_res_blocks(),
      fmt::join(o.attention_resolutions(), ", "), o.image_size(), bool_name(o.middle_attention()), o.num_heads(),
      o.num_head_channels(), o.dropout(), o.norm_groups(), bool_name(o.use_scale_shift_norm()),
      mdiff::to_string(o.time_embedding()), o.fourier_scale(), o.num_classes(), o.augment_dim(), bool_name(o.resblock_updown()),
      bool_name(o.learn_sigma()), bool_name(o.zero_init_output()));
  if (o.norm_eps() != 1e-5 || o.freq_shift() != 0.0) {
    // Shown only when set (as to_json() writes them).
    text.pop_back();
    text += fmt::format(", norm_eps={}, freq_shift={})", o.norm_eps(), o.freq_shift());
  }
  stream << text;
}

at::Tensor UNetImpl::embed(const at::Tensor& t, const at::Tensor& class_labels, const at::Tensor& augment_labels,
                           int64_t batch, const at::Tensor& like) {
  const at::Tensor tt = detail::batch_timesteps(t, batch, like.device(), "UNet");
  at::Tensor e = sinusoidal_ ? sinusoidal_(tt) : fourier_(tt);
  e = time_fc2_(at::silu(time_fc1_(e.to(time_fc1_->weight.scalar_type()))));
  if (label_embedding_) {
    e = e + label_embedding_(detail::class_indices(class_labels, options_.num_classes(), batch, like.device(), "UNet"));
  } else {
    MD_CHECK_VALUE(!class_labels.defined(), "UNet: class_labels given, but the model is unconditional (num_classes = 0)");
  }
  if (augment_labels.defined()) {
    MD_CHECK_VALUE(augment_embedding_, "UNet: augment_labels given, but the model takes none (augment_dim = 0)");
    MD_CHECK_VALUE(augment_labels.dim() == 2 && augment_labels.size(0) == batch &&
                       augment_labels.size(1) == options_.augment_dim(),
                   "UNet: augment_labels: expected shape [", batch, ", ", options_.augment_dim(), "], got ",
                   shape_string(augment_labels));
    e = e + augment_embedding_(augment_labels.to(e.device(), e.scalar_type()));
  }
  return e;
}

at::Tensor UNetImpl::forward(const at::Tensor& x, const at::Tensor& t, const at::Tensor& class_labels,
                             const at::Tensor& augment_labels) {
  CheckContext check_context("UNet");
  const UNetOptions& o = options_;
  check_defined(x, "x");
  MD_CHECK_VALUE(x.dim() == 4, "UNet: x: expected 4 dimensions [N, C, H, W], got ", x.dim(), " (shape ",
                 shape_string(x), ")");
  MD_CHECK_VALUE(x.size(1) == o.in_channels(), "UNet: x: expected ", o.in_channels(),
                 " channels (UNetOptions::in_channels), got ", x.size(1), " (shape ", shape_string(x), ")");
  MD_CHECK_VALUE(x.size(0) >= 1 && x.size(2) >= 1 && x.size(3) >= 1, "UNet: x: expected a non-empty batch of images, got shape ",
                 shape_string(x));
  MD_CHECK_TYPE(x.is_floating_point(), "UNet: x: expected a floating dtype, got ", x.scalar_type());
  MD_CHECK_TYPE(x.scalar_type() == input_conv_->weight.scalar_type(), "UNet: x: dtype ", x.scalar_type(),
                " does not match the parameters' ", input_conv_->weight.scalar_type(), " (convert x or the module)");
  MD_CHECK_VALUE(x.device() == input_conv_->weight.device(), "UNet: x is on ", x.device(), " but the parameters are on ",
                 input_conv_->weight.device());

  const int64_t batch = x.size(0);
  const at::Tensor emb = embed(t, class_labels, augment_labels, batch, x);

  // NHWC activations with the NHWC weights of evaluation mode (see train()).
  const bool nhwc = o.channels_last() && !is_training();
  at::Tensor h = input_conv_(nhwc ? x.contiguous(at::MemoryFormat::ChannelsLast) : x.contiguous());
  std::vector<at::Tensor> skips{h};
  for (size_t i = 0; i < down_steps_.size(); ++i) {
    const auto& m = down_[i];
    switch (down_steps_[i]) {
      case Step::Res:
        h = m->as<ResBlock>()->forward(h, emb);
        break;
      case Step::Attention:
        h = m->as<AttentionBlock>()->forward(h);
        break;
      case Step::Down:
        h = o.resblock_updown() ? m->as<ResBlock>()->forward(h, emb) : m->as<Downsample>()->forward(h);
        break;
      case Step::Up:
        MD_INTERNAL_ASSERT(false, "an up step on the way down");
    }
    if (down_keeps_[i]) {
      skips.push_back(h);
    }
  }
  for (size_t i = 0; i < middle_steps_.size(); ++i) {
    const auto& m = middle_[i];
    h = middle_steps_[i] == Step::Res ? m->as<ResBlock>()->forward(h, emb) : m->as<AttentionBlock>()->forward(h);
  }
  for (size_t i = 0; i < up_steps_.size(); ++i) {
    const auto& m = up_[i];
    switch (up_steps_[i]) {
      case Step::Res:
        MD_INTERNAL_ASSERT(!skips.empty());
        h = m->as<ResBlock>()->forward(at::cat({h, skips.back()}, 1), emb);
        skips.pop_back();
        break;
      case Step::Attention:
        h = m->as<AttentionBlock>()->forward(h);
        break;
      case Step::Up: {
        MD_INTERNAL_ASSERT(!skips.empty());
        const std::vector<int64_t> size{skips.back().size(2), skips.back().size(3)};
        h = o.resblock_updown() ? m->as<ResBlock>()->forward(h, emb, size) : m->as<Upsample>()->forward(h, size);
        break;
      }
      case Step::Down:
        MD_INTERNAL_ASSERT(false, "a down step on the way up");
    }
  }
  MD_INTERNAL_ASSERT(skips.empty());
  const at::Tensor out = output_conv_(ops::group_norm_silu(
      h, output_norm_->weight, output_norm_->bias, {}, {},
      ops::GroupNormSiLUOptions(output_norm_->options.num_groups()).eps(output_norm_->options.eps())));
  return out.contiguous();
}

}  // namespace manifold_diffusion
