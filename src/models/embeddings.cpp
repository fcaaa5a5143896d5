#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/models/embeddings.h>

#include <ATen/ATen.h>

#include <cmath>

namespace manifold_diffusion {
namespace {

constexpr double kPi = 3.14159265358979323846;

// t as a float64 column [N, 1]; accepts [N] or 0-dim of any integral or floating dtype.
at::Tensor time_column(const at::Tensor& t, const char* name) {
  check_defined(t, name);
  MD_CHECK_VALUE(t.dim() <= 1, name, ": expected shape [N] or a 0-dim tensor, got ", t.dim(), " dimensions (shape ",
                 shape_string(t), ")");
  MD_CHECK_TYPE(t.is_floating_point() || at::isIntegralType(t.scalar_type(), /*includeBool=*/false), name,
                ": expected an integral or floating dtype, got ", t.scalar_type());
  return t.reshape({-1, 1}).to(at::kDouble);
}

}  // namespace

at::Tensor sinusoidal_embedding(const at::Tensor& t, int64_t dim, double max_period) {
  MD_CHECK_VALUE(dim >= 1, "sinusoidal_embedding: dim must be >= 1, got ", dim);
  MD_CHECK_VALUE(std::isfinite(max_period) && max_period > 1, "sinusoidal_embedding: max_period must be > 1, got ",
                 max_period);
  const at::Tensor tt = time_column(t, "t");
  const int64_t half = dim / 2;
  const auto out_dtype = t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const auto opts = at::TensorOptions().dtype(at::kDouble).device(t.device());
  at::Tensor out;
  if (half > 0) {
    const at::Tensor freqs = at::exp(at::arange(half, opts) * (-std::log(max_period) / static_cast<double>(half)));
    const at::Tensor args = tt * freqs.unsqueeze(0);
    out = at::cat({at::cos(args), at::sin(args)}, 1);
  } else {
    out = at::zeros({tt.size(0), 0}, opts);
  }
  if (dim % 2 == 1) {
    out = at::cat({out, at::zeros({tt.size(0), 1}, opts)}, 1);
  }
  return out.to(out_dtype);
}

SinusoidalEmbeddingImpl::SinusoidalEmbeddingImpl(SinusoidalEmbeddingOptions options) : options_(options) {
  reset();
}

void SinusoidalEmbeddingImpl::reset() {
  MD_CHECK_VALUE(options_.dim() >= 1, "SinusoidalEmbeddingOptions: dim must be >= 1, got ", options_.dim());
  MD_CHECK_VALUE(std::isfinite(options_.max_period()) && options_.max_period() > 1,
                 "SinusoidalEmbeddingOptions: max_period must be > 1, got ", options_.max_period());
}

void SinusoidalEmbeddingImpl::pretty_print(std::ostream& stream) const {
  stream << "manifold_diffusion::SinusoidalEmbedding(dim=" << options_.dim()
         << ", max_period=" << options_.max_period() << ")";
}

at::Tensor SinusoidalEmbeddingImpl::forward(const at::Tensor& t) {
  return sinusoidal_embedding(t, options_.dim(), options_.max_period());
}

FourierEmbeddingImpl::FourierEmbeddingImpl(FourierEmbeddingOptions options) : options_(options) {
  reset();
}

void FourierEmbeddingImpl::reset() {
  MD_CHECK_VALUE(options_.dim() >= 2 && options_.dim() % 2 == 0,
                 "FourierEmbeddingOptions: dim must be even and >= 2, got ", options_.dim());
  check_positive(options_.scale(), "FourierEmbeddingOptions: scale");
  at::Generator gen = make_generator(options_.seed());
  const at::Tensor w = at::randn({options_.dim() / 2}, gen, at::TensorOptions().dtype(at::kFloat)) * options_.scale();
  weight_ = register_buffer("weight", w);
}

void FourierEmbeddingImpl::pretty_print(std::ostream& stream) const {
  stream << "manifold_diffusion::FourierEmbedding(dim=" << options_.dim() << ", scale=" << options_.scale()
         << ", seed=" << options_.seed() << ")";
}

at::Tensor FourierEmbeddingImpl::forward(const at::Tensor& t) {
  const at::Tensor tt = time_column(t, "t").to(weight_.device());
  const at::Tensor args = tt * weight_.to(at::kDouble).unsqueeze(0) * (2 * kPi);
  return at::cat({at::sin(args), at::cos(args)}, 1).to(weight_.scalar_type());
}

}  // namespace manifold_diffusion
