#include <manifold_diffusion/data/synthetic.h>

#include "test_util.h"

#include <ATen/ATen.h>

#include <cmath>

namespace {

using mdiff::data::ManifoldKind;
using mdiff::data::SyntheticManifoldOptions;

constexpr double kPi = 3.14159265358979323846;

mdiff::data::SyntheticManifold make(ManifoldKind kind, int64_t n, int64_t ambient = 0,
                                    c10::ScalarType dtype = at::kDouble) {
  return mdiff::data::make_synthetic_manifold(
      SyntheticManifoldOptions(kind, n).ambient_dim(ambient).seed(3).dtype(dtype));
}

// Native points moved by `delta` along a unit normal, mapped to R^D.
at::Tensor embed(const mdiff::data::SyntheticManifold& m, const at::Tensor& native) {
  return native.mm(m.embedding.to(at::kDouble));
}

TEST(DataSynthetic, CleanPointsLieOnTheManifold) {
  const ManifoldKind kinds[] = {ManifoldKind::SwissRoll, ManifoldKind::SwissRoll2D, ManifoldKind::TwoMoons,
                                ManifoldKind::Circles,   ManifoldKind::Helix,       ManifoldKind::Sphere,
                                ManifoldKind::Torus};
  for (ManifoldKind kind : kinds) {
    for (int64_t ambient : {0, 7}) {
      const auto m = make(kind, 400, ambient);
      const int64_t D = ambient == 0 ? m.native_dim : ambient;
      EXPECT_EQ(m.points.sizes(), (std::vector<int64_t>{400, D})) << kind;
      EXPECT_EQ(m.embedding.sizes(), (std::vector<int64_t>{m.native_dim, D})) << kind;
      EXPECT_LT(m.distance(m.points).max().item<double>(), 1e-9) << kind << " ambient " << ambient;
      // float32 points: the rounding of the coordinates (up to 14 for the swiss roll) dominates.
      const auto f = make(kind, 400, ambient, at::kFloat);
      const at::Tensor df = f.distance(f.points);
      EXPECT_EQ(df.scalar_type(), at::kFloat);
      const bool roll = kind == ManifoldKind::SwissRoll || kind == ManifoldKind::SwissRoll2D;
      EXPECT_LT(df.max().item<float>(), roll ? 1e-5f : 2e-6f) << kind;
    }
  }
}

TEST(DataSynthetic, EmbeddingHasOrthonormalRowsAndSeedsRepeat) {
  const auto m = make(ManifoldKind::Torus, 50, 9);
  const at::Tensor gram = m.embedding.mm(m.embedding.t());
  EXPECT_TRUE(at::allclose(gram, at::eye(3, at::kDouble), 0.0, 1e-12));
  const auto again = make(ManifoldKind::Torus, 50, 9);
  EXPECT_TRUE(at::equal(m.points, again.points));
  EXPECT_TRUE(at::equal(m.embedding, again.embedding));
  const auto other = mdiff::data::make_synthetic_manifold(
      SyntheticManifoldOptions(ManifoldKind::Torus, 50).ambient_dim(9).seed(4).dtype(at::kDouble));
  EXPECT_FALSE(at::equal(m.points, other.points));
  EXPECT_TRUE(at::equal(make(ManifoldKind::Sphere, 5).embedding, at::eye(3, at::kDouble)));
}

TEST(DataSynthetic, NoiseMovesPointsOffTheManifold) {
  const auto m = mdiff::data::make_synthetic_manifold(
      SyntheticManifoldOptions(ManifoldKind::Sphere, 4000).intrinsic_dim(1).ambient_dim(10).noise(0.01).seed(1));
  // Noise of std s in R^10 around a curve: the distance is about s * sqrt(9) for small s.
  const double mean = m.distance(m.points).to(at::kDouble).mean().item<double>();
  EXPECT_GT(mean, 0.025);
  EXPECT_LT(mean, 0.032);
}

TEST(DataSynthetic, PointsAlongANormalAreAtThatDistance) {
  const double delta = 0.05;
  const at::Tensor s = at::linspace(0.1, 0.9, 9, at::kDouble);  // curve parameters in (0, 1)
  const at::Tensor sign = at::where(at::arange(9).remainder(2).eq(0), at::ones({9}, at::kDouble),
                                    -at::ones({9}, at::kDouble));
  const at::Tensor d = delta * sign;
  auto check = [&](ManifoldKind kind, const at::Tensor& native, const at::Tensor& normal, double tol) {
    const auto m = make(kind, 10, 6);
    const at::Tensor moved = embed(m, native + d.unsqueeze(1) * normal);
    EXPECT_TRUE(at::allclose(m.distance(moved), at::full({9}, delta, at::kDouble), 0.0, tol)) << kind;
    // A step orthogonal to the embedded native space combines with it by Pythagoras.
    at::Tensor ortho = at::randn({9, 6}, at::kDouble);
    const at::Tensor e = m.embedding.to(at::kDouble);
    ortho = ortho - ortho.mm(e.t()).mm(e);
    ortho = 0.03 * ortho / ortho.norm(2, {1}, true);
    EXPECT_TRUE(at::allclose(m.distance(moved + ortho), at::full({9}, std::hypot(delta, 0.03), at::kDouble), 0.0, tol))
        << kind;
  };
  {  // sphere S^2: radial
    const at::Tensor th = s * kPi;
    const at::Tensor n = at::stack({at::sin(th) * at::cos(3 * th), at::sin(th) * at::sin(3 * th), at::cos(th)}, 1);
    check(ManifoldKind::Sphere, n, n, 1e-12);
  }
  {  // circles: radial, both radii
    const at::Tensor th = s * 2 * kPi;
    const at::Tensor n = at::stack({at::cos(th), at::sin(th)}, 1);
    const at::Tensor r = at::where(sign.gt(0), at::ones({9}, at::kDouble), 0.5 * at::ones({9}, at::kDouble));
    check(ManifoldKind::Circles, r.unsqueeze(1) * n, n, 1e-12);
  }
  {  // torus: away from the tube's centre circle
    const at::Tensor u = s * 2 * kPi;
    const at::Tensor v = s * 5 * kPi;
    const at::Tensor n = at::stack({at::cos(v) * at::cos(u), at::cos(v) * at::sin(u), at::sin(v)}, 1);
    const at::Tensor centre = at::stack({at::cos(u), at::sin(u), at::zeros_like(u)}, 1);
    check(ManifoldKind::Torus, centre + 0.3 * n, n, 1e-12);
  }
  {  // two moons: radial from each arc's centre, inside the arcs
    const at::Tensor th = s * kPi;
    const at::Tensor upper = at::stack({at::cos(th), at::sin(th)}, 1);
    const at::Tensor lower_n = at::stack({-at::cos(th), -at::sin(th)}, 1);
    const at::Tensor lower = at::tensor({1.0, 0.5}, at::kDouble) + lower_n;
    const at::Tensor pick = at::arange(9).remainder(3).eq(0).unsqueeze(1);
    check(ManifoldKind::TwoMoons, at::where(pick, upper, lower), at::where(pick, upper, lower_n), 1e-12);
  }
  {  // helix: the principal normal (towards the axis)
    const at::Tensor t = s * 4 * kPi;
    const at::Tensor c = at::stack({at::cos(t), at::sin(t), 0.1 * t}, 1);
    const at::Tensor n = at::stack({at::cos(t), at::sin(t), at::zeros_like(t)}, 1);
    check(ManifoldKind::Helix, c, n, 1e-9);
  }
  {  // swiss roll: the normal of the spiral in the (x, z) plane, inside the sheet's height
    const at::Tensor t = 1.5 * kPi + s * 3 * kPi;
    const at::Tensor y = s * 21;
    const at::Tensor c = at::stack({t * at::cos(t), y, t * at::sin(t)}, 1);
    const at::Tensor tx = at::cos(t) - t * at::sin(t);
    const at::Tensor tz = at::sin(t) + t * at::cos(t);
    const at::Tensor len = at::sqrt(tx * tx + tz * tz);
    const at::Tensor n = at::stack({tz / len, at::zeros_like(t), -tx / len}, 1);
    check(ManifoldKind::SwissRoll, c, n, 1e-9);
    // The 2-D roll is the sheet's (x, z) cross-section.
    const at::Tensor c2 = at::stack({t * at::cos(t), t * at::sin(t)}, 1);
    const at::Tensor n2 = at::stack({tz / len, -tx / len}, 1);
    check(ManifoldKind::SwissRoll2D, c2, n2, 1e-9);
  }
}

TEST(DataSynthetic, DistancesBeyondTheEnds) {
  // Past the end of an arc, a curve or the sheet's height, the nearest point is the boundary.
  const auto moons = make(ManifoldKind::TwoMoons, 4);
  const at::Tensor p = at::tensor({-1.0, -0.3, 3.0, 0.8}, at::kDouble).reshape({2, 2});
  const double d0 = 0.3;                        // to the upper arc's end (-1, 0)
  const double d1 = std::hypot(3.0 - 2.0, 0.3);  // to the lower arc's end (2, 0.5)
  EXPECT_TRUE(at::allclose(moons.distance(p), at::tensor({d0, d1}, at::kDouble), 0.0, 1e-12));
  const auto helix = make(ManifoldKind::Helix, 4);
  const at::Tensor below = at::tensor({1.0, 0.0, -0.25}, at::kDouble).reshape({1, 3});
  EXPECT_NEAR(helix.distance(below).item<double>(), 0.25, 1e-9);
  const auto roll = make(ManifoldKind::SwissRoll, 4);
  const double t = 2.5 * kPi;
  const at::Tensor above = at::tensor({t * std::cos(t), 22.0, t * std::sin(t)}, at::kDouble).reshape({1, 3});
  EXPECT_NEAR(roll.distance(above).item<double>(), 1.0, 1e-9);
}

TEST(DataSynthetic, RejectsBadOptions) {
  using mdiff::data::make_synthetic_manifold;
  MD_EXPECT_ERROR(make_synthetic_manifold(SyntheticManifoldOptions(ManifoldKind::Helix, 0)), "n must be >= 1", "0");
  MD_EXPECT_ERROR(make_synthetic_manifold(SyntheticManifoldOptions(ManifoldKind::Sphere, 5).intrinsic_dim(0)),
                  "intrinsic_dim", "0");
  MD_EXPECT_ERROR(make_synthetic_manifold(SyntheticManifoldOptions(ManifoldKind::Torus, 5).ambient_dim(2)),
                  "ambient_dim", "torus", "2");
  MD_EXPECT_ERROR(make_synthetic_manifold(SyntheticManifoldOptions(ManifoldKind::Torus, 5).noise(-1)), "noise", "-1");
  MD_EXPECT_ERROR(make_synthetic_manifold(SyntheticManifoldOptions(ManifoldKind::Torus, 5).dtype(at::kInt)), "dtype");
  const auto m = make(ManifoldKind::Circles, 5, 4);
  MD_EXPECT_ERROR(m.distance(at::zeros({3, 3})), "x", "4 columns");
  MD_EXPECT_ERROR(m.distance(at::zeros({4})), "x");
  EXPECT_EQ(mdiff::enum_from_string<ManifoldKind>("swiss_roll"), ManifoldKind::SwissRoll);
  EXPECT_EQ(mdiff::enum_from_string<ManifoldKind>("swiss_roll_2d"), ManifoldKind::SwissRoll2D);
  MD_EXPECT_ERROR(make_synthetic_manifold(SyntheticManifoldOptions(ManifoldKind::SwissRoll2D, 5).ambient_dim(1)),
                  "ambient_dim", "2");
}

}  // namespace
