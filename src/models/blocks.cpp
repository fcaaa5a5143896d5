#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/models/blocks.h>
#include <manifold_diffusion/ops/attention.h>
#include <manifold_diffusion/ops/group_norm.h>

#include <ATen/ATen.h>
#include <torch/version.h>

#include <cmath>

namespace manifold_diffusion {
namespace {

void check_feature_map(const at::Tensor& x, const char* name, int64_t channels, const char* who) {
  check_defined(x, name);
  MD_CHECK_VALUE(x.dim() == 4, who, ": ", name, ": expected 4 dimensions [N, C, H, W], got ", x.dim(), " (shape ",
                 shape_string(x), ")");
  MD_CHECK_VALUE(x.size(1) == channels, who, ": ", name, ": expected ", channels, " channels, got ", x.size(1),
                 " (shape ", shape_string(x), ")");
}

void check_size(at::IntArrayRef size, const char* who) {
  MD_CHECK_VALUE(size.size() == 2 && size[0] >= 1 && size[1] >= 1, who,
                 ": size must be two positive extents {H, W}, got ", size);
}

template <typename Conv>
void zero_parameters(Conv& conv) {
  at::NoGradGuard no_grad;
  conv->weight.zero_();
  if (conv->bias.defined()) {
    conv->bias.zero_();
  }
}

at::Tensor resize_nearest(const at::Tensor& x, at::IntArrayRef size) {
  if (x.size(2) == size[0] && x.size(3) == size[1]) {
    return x;
  }
  return at::upsample_nearest2d(x, size);
}

// GroupNorm (+ FiLM scale/shift) (+ SiLU) through the fused op: one kernel without autograd, the
// ATen composition when gradients are recorded.
at::Tensor norm_act(torch::nn::GroupNorm& norm, const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift,
                    bool silu) {
  return ops::group_norm_silu(
      x, norm->weight, norm->bias, scale, shift,
      ops::GroupNormSiLUOptions(norm->options.num_groups()).eps(norm->options.eps()).silu(silu));
}

at::Tensor half_size(const at::Tensor& x) {
  return at::avg_pool2d(x, {2, 2}, {2, 2}, {0, 0}, /*ceil_mode=*/true, /*count_include_pad=*/false);
}

}  // namespace

bool fused_attention_available() {
#if TORCH_VERSION_MAJOR >= 2
  return true;
#else
  return false;
#endif
}

at::Tensor dot_product_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, bool allow_fused) {
  check_defined(q, "q");
  check_defined(k, "k");
  check_defined(v, "v");
  MD_CHECK_VALUE(q.dim() >= 2 && k.dim() == q.dim() && v.dim() == q.dim(),
                 "dot_product_attention: q, k and v must have the same rank >= 2, got shapes ", shape_string(q), ", ",
                 shape_string(k), " and ", shape_string(v));
  MD_CHECK_VALUE(k.size(-1) == q.size(-1) && v.size(-2) == k.size(-2),
                 "dot_product_attention: expected q [..., L, d], k [..., S, d] and v [..., S, e], got shapes ",
                 shape_string(q), ", ", shape_string(k), " and ", shape_string(v));
#if TORCH_VERSION_MAJOR >= 2
  if (allow_fused) {
    return at::scaled_dot_product_attention(q, k, v);
  }
#else
  if (allow_fused) {
    return ops::attention(q, k, v);  // the row-wise kernel; the composition when recording gradients
  }
#endif
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  const at::Tensor scores = at::matmul(q, k.transpose(-2, -1)) * scale;
  const bool low_precision = q.scalar_type() == at::kHalf || q.scalar_type() == at::kBFloat16;
  const at::Tensor weights =
      low_precision ? at::softmax(scores, -1, at::kFloat).to(q.scalar_type()) : at::softmax(scores, -1);
  return at::matmul(weights, v);
}

// ---- ResBlock ---------------------------------------------------------------------------------

ResBlockImpl::ResBlockImpl(ResBlockOptions options) : options_(options) {
  reset();
}

void ResBlockImpl::reset() {
  const auto& o = options_;
  check_positive(o.in_channels(), "ResBlockOptions: in_channels");
  check_positive(o.out_channels(), "ResBlockOptions: out_channels");
  check_positive(o.emb_dim(), "ResBlockOptions: emb_dim");
  check_positive(o.norm_groups(), "ResBlockOptions: norm_groups");
  MD_CHECK_VALUE(o.in_channels() % o.norm_groups() == 0 && o.out_channels() % o.norm_groups() == 0,
                 "ResBlockOptions: norm_groups (", o.norm_groups(), ") must divide in_channels (", o.in_channels(),
                 ") and out_channels (", o.out_channels(), ")");
  MD_CHECK_VALUE(o.dropout() >= 0 && o.dropout() < 1, "ResBlockOptions: dropout must be in [0, 1), got ", o.dropout());
  MD_CHECK_VALUE(!(o.up() && o.down()), "ResBlockOptions: up and down cannot both be set");

  norm1_ = register_module("norm1", torch::nn::GroupNorm(torch::nn::GroupNormOptions(o.norm_groups(), o.in_channels()).eps(o.norm_eps())));
  conv1_ = register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_channels(), o.out_channels(), 3).padding(1)));
  emb_proj_ = register_module(
      "emb_proj", torch::nn::Linear(o.emb_dim(), o.use_scale_shift_norm() ? 2 * o.out_channels() : o.out_channels()));
  norm2_ = register_module("norm2", torch::nn::GroupNorm(torch::nn::GroupNormOptions(o.norm_groups(), o.out_channels()).eps(o.norm_eps())));
  dropout_ = register_module("dropout", torch::nn::Dropout(o.dropout()));
  conv2_ = register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.out_channels(), o.out_channels(), 3).padding(1)));
  if (o.zero_init()) {
    zero_parameters(conv2_);
  }
  skip_ = nullptr;
  if (o.in_channels() != o.out_channels()) {
    skip_ = register_module("skip", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_channels(), o.out_channels(), 1)));
  }
}

void ResBlockImpl::pretty_print(std::ostream& stream) const {
  const auto& o = options_;
  stream << "manifold_diffusion::ResBlock(" << o.in_channels() << " -> " << o.out_channels() << ", emb_dim=" << o.emb_dim()
         << ", norm_groups=" << o.norm_groups() << ", dropout=" << o.dropout()
         << ", use_scale_shift_norm=" << (o.use_scale_shift_norm() ? "true" : "false");
  if (o.down()) stream << ", down=true";
  if (o.up()) stream << ", up=true";
  stream << ")";
}

at::Tensor ResBlockImpl::forward(const at::Tensor& x, const at::Tensor& emb, at::IntArrayRef size) {
  const auto& o = options_;
  check_feature_map(x, "x", o.in_channels(), "ResBlock");
  check_defined(emb, "emb");
  MD_CHECK_VALUE(emb.dim() == 2 && emb.size(0) == x.size(0) && emb.size(1) == o.emb_dim(),
                 "ResBlock: emb: expected shape [", x.size(0), ", ", o.emb_dim(), "], got ", shape_string(emb));
  if (o.up()) {
    check_size(size, "ResBlock");
  } else {
    MD_CHECK_VALUE(size.empty(), "ResBlock: size is only taken by an up block, got ", size);
  }

  at::Tensor h = norm_act(norm1_, x, {}, {}, /*silu=*/true);
  at::Tensor skip_in = x;
  if (o.up()) {
    h = resize_nearest(h, size);
    skip_in = resize_nearest(x, size);
  } else if (o.down()) {
    h = half_size(h);
    skip_in = half_size(x);
  }
  h = conv1_(h);
  const at::Tensor e = emb_proj_(at::silu(emb));
  if (o.use_scale_shift_norm()) {
    const auto parts = e.chunk(2, 1);
    h = norm_act(norm2_, h, parts[0], parts[1], /*silu=*/true);
  } else {
    h = norm_act(norm2_, h + e.unsqueeze(-1).unsqueeze(-1), {}, {}, /*silu=*/true);
  }
  h = conv2_(dropout_(h));
  // In place on the convolution's fresh output (its backward does not need it): no extra buffer.
  return h.add_(skip_ ? skip_(skip_in) : skip_in);
}

// ---- AttentionBlock ---------------------------------------------------------------------------

AttentionBlockImpl::AttentionBlockImpl(AttentionBlockOptions options) : options_(options) {
  reset();
}

void AttentionBlockImpl::reset() {
  const auto& o = options_;
  check_positive(o.channels(), "AttentionBlockOptions: channels");
  check_positive(o.norm_groups(), "AttentionBlockOptions: norm_groups");
  MD_CHECK_VALUE(o.channels() % o.norm_groups() == 0, "AttentionBlockOptions: norm_groups (", o.norm_groups(),
                 ") must divide channels (", o.channels(), ")");
  if (o.num_head_channels() == -1) {
    check_positive(o.num_heads(), "AttentionBlockOptions: num_heads");
    MD_CHECK_VALUE(o.channels() % o.num_heads() == 0, "AttentionBlockOptions: num_heads (", o.num_heads(),
                   ") must divide channels (", o.channels(), ")");
    heads_ = o.num_heads();
  } else {
    MD_CHECK_VALUE(o.num_head_channels() > 0, "AttentionBlockOptions: num_head_channels must be positive or -1, got ",
                   o.num_head_channels());
    MD_CHECK_VALUE(o.channels() % o.num_head_channels() == 0, "AttentionBlockOptions: num_head_channels (",
                   o.num_head_channels(), ") must divide channels (", o.channels(), ")");
    heads_ = o.channels() / o.num_head_channels();
  }
  norm_ = register_module("norm", torch::nn::GroupNorm(torch::nn::GroupNormOptions(o.norm_groups(), o.channels()).eps(o.norm_eps())));
  qkv_ = register_module("qkv", torch::nn::Conv1d(torch::nn::Conv1dOptions(o.channels(), 3 * o.channels(), 1)));
  proj_ = register_module("proj", torch::nn::Conv1d(torch::nn::Conv1dOptions(o.channels(), o.channels(), 1)));
  if (o.zero_init()) {
    zero_parameters(proj_);
  }
}

void AttentionBlockImpl::pretty_print(std::ostream& stream) const {
  stream << "manifold_diffusion::AttentionBlock(channels=" << options_.channels() << ", heads=" << heads_
         << ", norm_groups=" << options_.norm_groups() << ")";
}

at::Tensor AttentionBlockImpl::forward(const at::Tensor& x) {
  check_feature_map(x, "x", options_.channels(), "AttentionBlock");
  const int64_t n = x.size(0);
  const int64_t c = x.size(1);
  const int64_t positions = x.size(2) * x.size(3);
  const int64_t d = c / heads_;
  // Tokens [N, positions, C] (a view when x is channels_last); the 1x1 convolutions run as
  // matrix products over the tokens, with the Conv1d parameters (checkpoints keep their layout).
  const at::Tensor tokens = norm_act(norm_, x, {}, {}, /*silu=*/false).flatten(2).transpose(1, 2);
  const at::Tensor qkv = at::linear(tokens, qkv_->weight.squeeze(-1), qkv_->bias)
                             .view({n, positions, 3, heads_, d})
                             .permute({2, 0, 3, 1, 4});  // [3, N, heads, positions, d]
  const at::Tensor a = dot_product_attention(qkv[0], qkv[1], qkv[2], options_.allow_fused());
  // (The row-wise kernel returns a view of [N, positions, heads, d] memory: this reshape is free.)
  const at::Tensor out = at::linear(a.permute({0, 2, 1, 3}).reshape({n, positions, c}), proj_->weight.squeeze(-1),
                                    proj_->bias);  // [N, positions, C]
  return x + out.transpose(1, 2).view(x.sizes());
}

// ---- Downsample / Upsample --------------------------------------------------------------------

DownsampleImpl::DownsampleImpl(int64_t channels) : channels_(channels) {
  reset();
}

void DownsampleImpl::reset() {
  check_positive(channels_, "Downsample: channels");
  conv_ = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels_, channels_, 3).stride(2).padding(1)));
}

void DownsampleImpl::pretty_print(std::ostream& stream) const {
  stream << "manifold_diffusion::Downsample(channels=" << channels_ << ")";
}

at::Tensor DownsampleImpl::forward(const at::Tensor& x) {
  check_feature_map(x, "x", channels_, "Downsample");
  return conv_(x);
}

UpsampleImpl::UpsampleImpl(int64_t channels) : channels_(channels) {
  reset();
}

void UpsampleImpl::reset() {
  check_positive(channels_, "Upsample: channels");
  conv_ = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels_, channels_, 3).padding(1)));
}

void UpsampleImpl::pretty_print(std::ostream& stream) const {
  stream << "manifold_diffusion::Upsample(channels=" << channels_ << ")";
}

at::Tensor UpsampleImpl::forward(const at::Tensor& x, at::IntArrayRef size) {
  check_feature_map(x, "x", channels_, "Upsample");
  check_size(size, "Upsample");
  return conv_(resize_nearest(x, size));
}

}  // namespace manifold_diffusion
