#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/data/synthetic.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

namespace manifold_diffusion {
namespace data {
namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kSwissT0 = 1.5 * kPi;
constexpr double kSwissT1 = 4.5 * kPi;
constexpr double kSwissHeight = 21.0;
constexpr double kHelixPitch = 0.1;
constexpr double kHelixT1 = 4.0 * kPi;
constexpr double kTorusR = 1.0;
constexpr double kTorusTube = 0.3;
constexpr double kInnerCircle = 0.5;
constexpr int64_t kSearchGrid = 2048;
constexpr int kGoldenSteps = 60;

using Vec3 = std::array<double, 3>;

int64_t native_dim_of(const SyntheticManifoldOptions& o) {
  switch (o.kind()) {
    case ManifoldKind::TwoMoons:
    case ManifoldKind::Circles:
    case ManifoldKind::SwissRoll2D: return 2;
    case ManifoldKind::Sphere: return o.intrinsic_dim() + 1;
    default: return 3;
  }
}

int64_t intrinsic_dim_of(const SyntheticManifoldOptions& o) {
  switch (o.kind()) {
    case ManifoldKind::TwoMoons:
    case ManifoldKind::Circles:
    case ManifoldKind::SwissRoll2D:
    case ManifoldKind::Helix: return 1;
    case ManifoldKind::Sphere: return o.intrinsic_dim();
    default: return 2;
  }
}

Vec3 spiral(double t) { return {t * std::cos(t), t * std::sin(t), 0.0}; }
Vec3 helix(double t) { return {std::cos(t), std::sin(t), kHelixPitch * t}; }

double sq_dist(const Vec3& a, const Vec3& b) {
  const double dx = a[0] - b[0];
  const double dy = a[1] - b[1];
  const double dz = a[2] - b[2];
  return dx * dx + dy * dy + dz * dz;
}

// Squared distance from p to the curve c(t), t in [lo, hi]: the values on a dense grid, then a
// golden-section search in the two grid cells around every grid local minimum that could hold the
// global one (its grid value within the largest possible grid error of the best).
template <typename Curve>
double curve_sq_distance(const Vec3& p, Curve curve, double lo, double hi, double max_speed) {
  const double dt = (hi - lo) / (kSearchGrid - 1);
  std::vector<double> f(kSearchGrid);
  double best = std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < kSearchGrid; ++i) {
    f[static_cast<size_t>(i)] = sq_dist(p, curve(lo + dt * static_cast<double>(i)));
    best = std::min(best, f[static_cast<size_t>(i)]);
  }
  // On a cell of length dt the squared distance changes by at most (2 sqrt(best) + s dt) s dt.
  const double step = max_speed * dt;
  const double margin = (2.0 * std::sqrt(best) + step) * step;
  double result = best;
  for (int64_t i = 0; i < kSearchGrid; ++i) {
    const double fi = f[static_cast<size_t>(i)];
    if (fi > best + margin) continue;
    if (i > 0 && f[static_cast<size_t>(i - 1)] < fi) continue;
    if (i + 1 < kSearchGrid && f[static_cast<size_t>(i + 1)] < fi) continue;
    double a = lo + dt * static_cast<double>(std::max<int64_t>(i - 1, 0));
    double b = lo + dt * static_cast<double>(std::min<int64_t>(i + 1, kSearchGrid - 1));
    const double g = 0.5 * (std::sqrt(5.0) - 1.0);
    double c = b - g * (b - a);
    double d = a + g * (b - a);
    double fc = sq_dist(p, curve(c));
    double fd = sq_dist(p, curve(d));
    for (int k = 0; k < kGoldenSteps; ++k) {
      if (fc < fd) {
        b = d;
        d = c;
        fd = fc;
        c = b - g * (b - a);
        fc = sq_dist(p, curve(c));
      } else {
        a = c;
        c = d;
        fc = fd;
        d = a + g * (b - a);
        fd = sq_dist(p, curve(d));
      }
    }
    result = std::min({result, fc, fd, sq_dist(p, curve(a)), sq_dist(p, curve(b))});
  }
  return result;
}

// Distance from (x, y) to the arc center + (cos th, sin th), th in [lo, hi] with -pi <= lo < hi <= pi.
double arc_distance(double x, double y, double cx, double cy, double lo, double hi) {
  const double dx = x - cx;
  const double dy = y - cy;
  const double th = std::atan2(dy, dx);
  if (th >= lo && th <= hi) return std::abs(std::hypot(dx, dy) - 1.0);
  const double d_lo = std::hypot(dx - std::cos(lo), dy - std::sin(lo));
  const double d_hi = std::hypot(dx - std::cos(hi), dy - std::sin(hi));
  return std::min(d_lo, d_hi);
}

// Distance in native coordinates; c is a contiguous float64 [m, native_dim] tensor.
at::Tensor native_distance(const SyntheticManifoldOptions& o, const at::Tensor& c) {
  const int64_t m = c.size(0);
  const int64_t d = c.size(1);
  at::Tensor out = at::empty({m}, at::kDouble);
  const double* p = c.data_ptr<double>();
  double* r = out.data_ptr<double>();
  at::parallel_for(0, m, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const double* q = p + i * d;
      switch (o.kind()) {
        case ManifoldKind::Sphere: {
          double s = 0.0;
          for (int64_t j = 0; j < d; ++j) s += q[j] * q[j];
          r[i] = std::abs(std::sqrt(s) - 1.0);
          break;
        }
        case ManifoldKind::Circles: {
          const double rho = std::hypot(q[0], q[1]);
          r[i] = std::min(std::abs(rho - 1.0), std::abs(rho - kInnerCircle));
          break;
        }
        case ManifoldKind::Torus: {
          const double ring = std::hypot(q[0], q[1]) - kTorusR;
          r[i] = std::abs(std::hypot(ring, q[2]) - kTorusTube);
          break;
        }
        case ManifoldKind::TwoMoons:
          r[i] = std::min(arc_distance(q[0], q[1], 0.0, 0.0, 0.0, kPi), arc_distance(q[0], q[1], 1.0, 0.5, -kPi, 0.0));
          break;
        case ManifoldKind::Helix: {
          const double speed = std::sqrt(1.0 + kHelixPitch * kHelixPitch);
          r[i] = std::sqrt(curve_sq_distance({q[0], q[1], q[2]}, helix, 0.0, kHelixT1, speed));
          break;
        }
        case ManifoldKind::SwissRoll2D: {
          const double speed = std::sqrt(1.0 + kSwissT1 * kSwissT1);
          r[i] = std::sqrt(curve_sq_distance({q[0], q[1], 0.0}, spiral, kSwissT0, kSwissT1, speed));
          break;
        }
        case ManifoldKind::SwissRoll: {
          const double speed = std::sqrt(1.0 + kSwissT1 * kSwissT1);
          const double in_plane = curve_sq_distance({q[0], q[2], 0.0}, spiral, kSwissT0, kSwissT1, speed);
          const double off = std::max({0.0, -q[1], q[1] - kSwissHeight});
          r[i] = std::sqrt(in_plane + off * off);
          break;
        }
      }
    }
  });
  return out;
}

at::Tensor sample_native(const SyntheticManifoldOptions& o, at::Generator& gen, at::Tensor* labels) {
  const int64_t n = o.n();
  const auto dbl = at::TensorOptions().dtype(at::kDouble);
  *labels = at::zeros({n}, at::kLong);
  switch (o.kind()) {
    case ManifoldKind::SwissRoll: {
      const at::Tensor t = at::rand({n}, gen, dbl).mul_(kSwissT1 - kSwissT0).add_(kSwissT0);
      const at::Tensor y = at::rand({n}, gen, dbl).mul_(kSwissHeight);
      return at::stack({t * at::cos(t), y, t * at::sin(t)}, 1);
    }
    case ManifoldKind::SwissRoll2D: {
      const at::Tensor t = at::rand({n}, gen, dbl).mul_(kSwissT1 - kSwissT0).add_(kSwissT0);
      return at::stack({t * at::cos(t), t * at::sin(t)}, 1);
    }
    case ManifoldKind::TwoMoons: {
      const at::Tensor s = at::rand({n}, gen, dbl).mul_(kPi);
      const int64_t n_upper = (n + 1) / 2;
      labels->narrow(0, n_upper, n - n_upper).fill_(1);
      const at::Tensor lower = labels->to(at::kDouble);
      const at::Tensor upper = 1.0 - lower;
      const at::Tensor x = upper * at::cos(s) + lower * (1.0 - at::cos(s));
      const at::Tensor y = upper * at::sin(s) + lower * (0.5 - at::sin(s));
      return at::stack({x, y}, 1);
    }
    case ManifoldKind::Circles: {
      const at::Tensor th = at::rand({n}, gen, dbl).mul_(2.0 * kPi);
      const int64_t n_outer = (n + 1) / 2;
      labels->narrow(0, n_outer, n - n_outer).fill_(1);
      const at::Tensor radius = 1.0 - (1.0 - kInnerCircle) * labels->to(at::kDouble);
      return at::stack({radius * at::cos(th), radius * at::sin(th)}, 1);
    }
    case ManifoldKind::Helix: {
      const at::Tensor t = at::rand({n}, gen, dbl).mul_(kHelixT1);
      return at::stack({at::cos(t), at::sin(t), kHelixPitch * t}, 1);
    }
    case ManifoldKind::Sphere: {
      const at::Tensor g = at::randn({n, o.intrinsic_dim() + 1}, gen, dbl);
      return g / g.norm(2, {1}, true).clamp_min(1e-300);
    }
    case ManifoldKind::Torus: {
      // Uniform by area: accept the angle v with probability (R + r cos v) / (R + r).
      std::vector<at::Tensor> kept;
      int64_t have = 0;
      while (have < n) {
        const int64_t batch = 2 * (n - have) + 16;
        const at::Tensor u = at::rand({batch}, gen, dbl).mul_(2.0 * kPi);
        const at::Tensor v = at::rand({batch}, gen, dbl).mul_(2.0 * kPi);
        const at::Tensor w = at::rand({batch}, gen, dbl).mul_(kTorusR + kTorusTube);
        const at::Tensor ring = kTorusR + kTorusTube * at::cos(v);
        const at::Tensor ok = w.lt(ring);
        const at::Tensor pts = at::stack({ring * at::cos(u), ring * at::sin(u), kTorusTube * at::sin(v)}, 1);
        const at::Tensor sel = pts.index({ok});
        kept.push_back(sel);
        have += sel.size(0);
      }
      return at::cat(kept, 0).narrow(0, 0, n);
    }
  }
  MD_INTERNAL_ASSERT(false, "unhandled ManifoldKind");
  return {};
}

}  // namespace

SyntheticManifold make_synthetic_manifold(const SyntheticManifoldOptions& options) {
  MD_CHECK_VALUE(options.n() >= 1, "SyntheticManifoldOptions::n must be >= 1, got ", options.n());
  MD_CHECK_VALUE(options.kind() != ManifoldKind::Sphere || options.intrinsic_dim() >= 1,
                 "SyntheticManifoldOptions::intrinsic_dim must be >= 1 for a sphere, got ", options.intrinsic_dim());
  const int64_t d = native_dim_of(options);
  MD_CHECK_VALUE(options.ambient_dim() == 0 || options.ambient_dim() >= d,
                 "SyntheticManifoldOptions::ambient_dim must be 0 or at least the native dimension ", d, " of ",
                 options.kind(), ", got ", options.ambient_dim());
  check_non_negative(options.noise(), "SyntheticManifoldOptions::noise");
  MD_CHECK_TYPE(options.dtype() == at::kFloat || options.dtype() == at::kDouble,
                "SyntheticManifoldOptions::dtype must be float32 or float64, got ", options.dtype());

  const uint64_t base = mix_seed(options.seed());
  at::Generator point_gen = make_generator(base);
  at::Generator embed_gen = make_generator(mix_seed(base + 1));
  at::Generator noise_gen = make_generator(mix_seed(base + 2));

  SyntheticManifold m;
  m.options = options;
  m.native_dim = d;
  m.intrinsic_dim = intrinsic_dim_of(options);
  const at::Tensor native = sample_native(options, point_gen, &m.labels);

  at::Tensor embedding;
  if (options.ambient_dim() == 0) {
    embedding = at::eye(d, at::kDouble);
  } else {
    const at::Tensor g = at::randn({options.ambient_dim(), d}, embed_gen, at::TensorOptions().dtype(at::kDouble));
    at::Tensor q;
    at::Tensor r;
    std::tie(q, r) = at::linalg_qr(g, "reduced");
    // Make the factorisation unique (positive diagonal of R) so the matrix depends only on the draw.
    const at::Tensor signs = at::sign(r.diagonal()).masked_fill(r.diagonal().eq(0), 1.0);
    embedding = (q * signs.unsqueeze(0)).t().contiguous();
  }
  at::Tensor points = native.mm(embedding);
  if (options.noise() > 0) {
    points = points + options.noise() * at::randn(points.sizes(), noise_gen, at::TensorOptions().dtype(at::kDouble));
  }
  m.points = points.to(options.dtype()).contiguous();
  m.embedding = embedding.to(options.dtype()).contiguous();
  return m;
}

at::Tensor SyntheticManifold::distance(const at::Tensor& x) const {
  check_defined(embedding, "SyntheticManifold::embedding");
  check_dim(x, "x", 2);
  const int64_t D = embedding.size(1);
  MD_CHECK_VALUE(x.size(1) == D, "x: expected ", D, " columns (the ambient dimension), got shape ", shape_string(x));
  const at::Tensor xd = x.detach().to(at::kCPU, at::kDouble).contiguous();
  const at::Tensor e = embedding.to(at::kCPU, at::kDouble);
  const at::Tensor c = xd.mm(e.t()).contiguous();
  const at::Tensor residual = (xd - c.mm(e)).pow(2).sum(1);
  const at::Tensor dn = native_distance(options, c);
  const at::Tensor out = (dn * dn + residual).sqrt();
  const at::ScalarType out_type = at::isFloatingType(x.scalar_type()) ? x.scalar_type() : at::kDouble;
  return out.to(x.device(), out_type);
}

}  // namespace data
}  // namespace manifold_diffusion
