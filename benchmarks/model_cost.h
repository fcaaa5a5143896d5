// Analytic cost of the library's backbones: multiply-accumulates (MACs) of every convolution,
// linear layer and attention matmul, and the parameter count, walked from the options in the order
// the modules are built (src/models/unet.cpp, blocks.cpp, mlp_denoiser.cpp). Elementwise work
// (norms, activations, additions, resizing) is not counted, so FLOP = 2 * MACs is what the matrix
// kernels must do, the same quantity benchmarks/peers/race.py counts with forward hooks in PyTorch.
//
// The parameter count is a check on the walk: a caller compares it with the module's own count,
// and a mismatch means the layout changed and this file must follow.
#pragma once

#include <manifold_diffusion/models/mlp_denoiser.h>
#include <manifold_diffusion/models/unet.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <vector>

namespace mdiff_bench {

/// MACs of one forward pass at a given batch, and the parameters of the module.
struct ModelCost {
  double macs = 0;
  int64_t params = 0;
  /// MACs by the height of the feature map they run at (UNet; the time MLP counts at 0).
  std::map<int64_t, double> macs_by_size;
  /// 2 * MACs / 1e9.
  double gflop() const { return 2.0 * macs / 1e9; }
};

namespace detail {

struct Walker {
  double n;  // batch
  ModelCost cost;

  void add(double macs, int64_t size) {
    cost.macs += macs;
    cost.macs_by_size[size] += macs;
  }
  void conv(int64_t cin, int64_t cout, int64_t k, int64_t out_h, int64_t out_w) {
    add(n * static_cast<double>(cout * out_h * out_w) * static_cast<double>(cin * k * k), out_h);
    cost.params += cout * cin * k * k + cout;
  }
  void linear(int64_t in, int64_t out, bool bias = true) {
    add(n * static_cast<double>(in * out), 0);
    cost.params += in * out + (bias ? out : 0);
  }
  void norm(int64_t channels) { cost.params += 2 * channels; }
  // ResBlock(in -> out) at output size h x w (after its own resize, if any).
  void resblock(int64_t in, int64_t out, int64_t emb_dim, bool scale_shift, int64_t h, int64_t w) {
    norm(in);
    conv(in, out, 3, h, w);
    linear(emb_dim, scale_shift ? 2 * out : out);
    norm(out);
    conv(out, out, 3, h, w);
    if (in != out) conv(in, out, 1, h, w);
  }
  // Self-attention over c channels at h x w: qkv and output projections (1x1), QK^T and AV.
  void attention(int64_t c, int64_t h, int64_t w) {
    const double positions = static_cast<double>(h * w);
    norm(c);
    add(n * positions * static_cast<double>(c * 3 * c), h);
    cost.params += 3 * c * c + 3 * c;
    add(n * 2.0 * positions * positions * static_cast<double>(c), h);
    add(n * positions * static_cast<double>(c * c), h);
    cost.params += c * c + c;
  }
};

}  // namespace detail

/// Cost of UNet(options) on a batch of `batch` images of size h x w.
inline ModelCost unet_cost(const mdiff::UNetOptions& o, int64_t batch, int64_t h, int64_t w) {
  detail::Walker m{static_cast<double>(batch), {}};
  const int64_t base = o.base_channels();
  const int64_t emb_dim = 4 * base;
  const bool ss = o.use_scale_shift_norm();
  m.linear(base, emb_dim);
  m.linear(emb_dim, emb_dim);
  if (o.num_classes() > 0) m.cost.params += (o.num_classes() + 1) * emb_dim;
  if (o.augment_dim() > 0) m.linear(o.augment_dim(), emb_dim, /*bias=*/false);

  // Level sizes for the attention placement (of an image_size input) and of the actual input.
  std::vector<int64_t> att_sizes, hs, ws;
  int64_t s = o.image_size(), ch_h = h, ch_w = w;
  for (size_t level = 0; level < o.channel_mult().size(); ++level) {
    att_sizes.push_back(s);
    hs.push_back(ch_h);
    ws.push_back(ch_w);
    s = (s + 1) / 2;
    ch_h = (ch_h + 1) / 2;
    ch_w = (ch_w + 1) / 2;
  }
  auto attention_at = [&](size_t level) {
    const auto& r = o.attention_resolutions();
    return std::find(r.begin(), r.end(), att_sizes[level]) != r.end();
  };

  const auto levels = o.channel_mult().size();
  m.conv(o.in_channels(), base, 3, h, w);
  std::vector<int64_t> skips{base};
  int64_t ch = base;
  for (size_t level = 0; level < levels; ++level) {
    const int64_t out = base * o.channel_mult()[level];
    for (int64_t r = 0; r < o.num_res_blocks(); ++r) {
      m.resblock(ch, out, emb_dim, ss, hs[level], ws[level]);
      ch = out;
      if (attention_at(level)) m.attention(ch, hs[level], ws[level]);
      skips.push_back(ch);
    }
    if (level + 1 < levels) {
      if (o.resblock_updown()) {
        m.resblock(ch, ch, emb_dim, ss, hs[level + 1], ws[level + 1]);
      } else {
        m.conv(ch, ch, 3, hs[level + 1], ws[level + 1]);
      }
      skips.push_back(ch);
    }
  }
  const size_t last = levels - 1;
  m.resblock(ch, ch, emb_dim, ss, hs[last], ws[last]);
  if (o.middle_attention()) m.attention(ch, hs[last], ws[last]);
  m.resblock(ch, ch, emb_dim, ss, hs[last], ws[last]);
  for (size_t i = levels; i-- > 0;) {
    const int64_t out = base * o.channel_mult()[i];
    for (int64_t r = 0; r <= o.num_res_blocks(); ++r) {
      const int64_t skip = skips.back();
      skips.pop_back();
      m.resblock(ch + skip, out, emb_dim, ss, hs[i], ws[i]);
      ch = out;
      if (attention_at(i)) m.attention(ch, hs[i], ws[i]);
      if (i > 0 && r == o.num_res_blocks()) {
        if (o.resblock_updown()) {
          m.resblock(ch, ch, emb_dim, ss, hs[i - 1], ws[i - 1]);
        } else {
          m.conv(ch, ch, 3, hs[i - 1], ws[i - 1]);
        }
      }
    }
  }
  m.norm(ch);
  m.conv(ch, o.output_channels(), 3, h, w);
  return m.cost;
}

/// Cost of MLPDenoiser(options) on a batch of `batch` points.
inline ModelCost mlp_cost(const mdiff::MLPDenoiserOptions& o, int64_t batch) {
  detail::Walker m{static_cast<double>(batch), {}};
  const int64_t hid = o.hidden();
  m.linear(o.time_embed_dim(), hid);
  m.linear(hid, hid);
  if (o.num_classes() > 0) m.cost.params += (o.num_classes() + 1) * hid;
  if (o.cond_dim() > 0) m.linear(o.cond_dim(), hid);
  m.linear(o.dim(), hid);
  for (int64_t b = 0; b < o.num_blocks(); ++b) {
    m.norm(hid);
    m.linear(hid, hid);
    m.linear(hid, o.use_scale_shift_norm() ? 2 * hid : hid);
    m.linear(hid, hid);
  }
  m.norm(hid);
  m.linear(hid, o.dim());
  return m.cost;
}

/// Parameters of a module, counted from the module itself.
template <typename Holder>
int64_t count_parameters(const Holder& net) {
  int64_t n = 0;
  for (const auto& p : net->parameters()) n += p.numel();
  return n;
}

}  // namespace mdiff_bench
