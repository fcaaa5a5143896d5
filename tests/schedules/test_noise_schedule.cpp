// The beta tables of every schedule kind against the published formulas, zero-terminal-SNR
// rescaling, fractional timesteps, Karras noise levels, q_sample and concurrent use.
#include <manifold_diffusion/schedules/noise_schedule.h>

#include "schedules/schedule_reference.h"
#include "test_util.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace ref = mdiff_test::ref;
using mdiff::BetaSchedule;
using mdiff::NoiseSchedule;
using mdiff::ScheduleOptions;
using mdiff::TimestepSpacing;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// |actual - expected| <= rel * |expected|.
::testing::AssertionResult near_rel(double actual, double expected, double rel) {
  const double err = std::abs(actual - expected);
  if (err <= rel * std::abs(expected)) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "got " << actual << ", expected " << expected << " (relative error "
                                       << err / std::abs(expected) << " > " << rel << ")";
}

// betas and alpha_bar at 0, 1, T/2, T-1 against the reference betas.
void expect_tables(const NoiseSchedule& s, const std::vector<double>& betas, const std::string& label) {
  const auto T = static_cast<int64_t>(betas.size());
  ASSERT_EQ(s.num_train_timesteps(), T) << label;
  const std::vector<double> ab = ref::alpha_bar(betas);
  for (int64_t t : ref::probe_indices(T)) {
    EXPECT_TRUE(near_rel(s.beta(t), betas[t], 1e-12)) << label << " beta(" << t << ")";
    EXPECT_TRUE(near_rel(s.alpha_bar(t), ab[t], 1e-11)) << label << " alpha_bar(" << t << ")";
  }
}

// The identities every schedule satisfies, at every timestep.
void expect_consistent(const NoiseSchedule& s, const std::string& label) {
  const int64_t T = s.num_train_timesteps();
  for (const at::Tensor* tab : {&s.betas(), &s.alphas_cumprod(), &s.signal_table(), &s.noise_table()}) {
    EXPECT_EQ(tab->scalar_type(), at::kDouble) << label;
    EXPECT_TRUE(tab->device().is_cpu()) << label;
    EXPECT_EQ(tab->dim(), 1) << label;
    EXPECT_EQ(tab->size(0), T) << label;
  }
  const auto betas = s.betas().accessor<double, 1>();
  const auto ab_tab = s.alphas_cumprod().accessor<double, 1>();
  const auto signal = s.signal_table().accessor<double, 1>();
  const auto noise = s.noise_table().accessor<double, 1>();
  double prod = 1;
  for (int64_t t = 0; t < T; ++t) {
    const double ab = s.alpha_bar(t);
    prod *= 1 - s.beta(t);
    EXPECT_EQ(betas[t], s.beta(t)) << label << " t=" << t;
    EXPECT_EQ(ab_tab[t], ab) << label << " t=" << t;
    EXPECT_NEAR(ab, prod, 1e-12) << label << " alpha_bar = cumprod(1 - beta) at t=" << t;
    EXPECT_NEAR(signal[t], std::sqrt(ab), 1e-15) << label << " t=" << t;
    EXPECT_NEAR(noise[t], std::sqrt(1 - ab), 1e-15) << label << " t=" << t;
    EXPECT_NEAR(s.alpha(t) * s.alpha(t) + s.sigma(t) * s.sigma(t), 1.0, 1e-14) << label << " t=" << t;
    EXPECT_TRUE(near_rel(s.snr(t), ab / (1 - ab), 1e-12) || ab == 0) << label << " t=" << t;
    if (ab > 0) {
      EXPECT_TRUE(near_rel(s.ve_sigma(t), s.sigma(t) / s.alpha(t), 1e-13)) << label << " t=" << t;
      const double log_snr = std::log(ab / (1 - ab));
      EXPECT_NEAR(s.log_snr(t), log_snr, 1e-12 * std::max(1.0, std::abs(log_snr))) << label << " t=" << t;
    }
    if (t > 0) {
      EXPECT_LT(ab, s.alpha_bar(t - 1)) << label << " alpha_bar not strictly decreasing at t=" << t;
      EXPECT_LT(s.snr(t), s.snr(t - 1)) << label << " t=" << t;
      EXPECT_LT(s.log_snr(t), s.log_snr(t - 1)) << label << " t=" << t;
      EXPECT_GT(s.ve_sigma(t), s.ve_sigma(t - 1)) << label << " t=" << t;
    }
  }
  EXPECT_EQ(s.ve_sigma_min(), s.ve_sigma(0)) << label;
  EXPECT_EQ(s.ve_sigma_max(), s.ve_sigma(T - 1)) << label;
}

TEST(ScheduleTables, LinearFollowsHoEtAl) {
  for (int64_t T : {1000, 999, 50, 7, 2, 1}) {
    expect_tables(NoiseSchedule::linear(T), ref::linear_betas(T, 1e-4, 0.02), "linear T=" + std::to_string(T));
    expect_consistent(NoiseSchedule::linear(T), "linear T=" + std::to_string(T));
  }
  const NoiseSchedule s = NoiseSchedule::linear(1000);
  EXPECT_EQ(s.beta(0), 1e-4);
  EXPECT_NEAR(s.beta(999), 0.02, 1e-17);
  expect_tables(NoiseSchedule::linear(500, 3e-4, 0.05), ref::linear_betas(500, 3e-4, 0.05), "linear custom range");
  EXPECT_EQ(NoiseSchedule(ScheduleOptions()).options().kind(), BetaSchedule::Linear);
  expect_tables(NoiseSchedule(), ref::linear_betas(1000, 1e-4, 0.02), "default options");
}

TEST(ScheduleTables, ScaledLinearIsSquaredSqrtLinear) {
  for (int64_t T : {1000, 999, 50, 7, 2, 1}) {
    const NoiseSchedule s = NoiseSchedule::scaled_linear(T);
    expect_tables(s, ref::scaled_linear_betas(T, 0.00085, 0.012), "scaled_linear T=" + std::to_string(T));
    expect_consistent(s, "scaled_linear T=" + std::to_string(T));
  }
  // Lin et al. (2023), section 3.1: Stable Diffusion's schedule ends at sqrt(alpha_bar) = 0.068265,
  // an SNR of 0.004682.
  const NoiseSchedule sd = NoiseSchedule::scaled_linear(1000, 0.00085, 0.012);
  EXPECT_NEAR(sd.alpha(999), 0.068265, 5e-7);
  EXPECT_NEAR(sd.snr(999), 0.004682, 5e-7);
  EXPECT_NEAR(sd.beta(0), 0.00085, 1e-18);
  EXPECT_NEAR(sd.beta(999), 0.012, 1e-17);
}

TEST(ScheduleTables, CosineFollowsNicholAndDhariwal) {
  for (int64_t T : {1000, 999, 50, 7, 2, 1}) {
    const NoiseSchedule s = NoiseSchedule::cosine(T);
    const std::string label = "cosine T=" + std::to_string(T);
    expect_tables(s, ref::cosine_betas(T, 0.008, 0.999), label);
    expect_consistent(s, label);
    // Uncapped steps telescope to the closed form alpha_bar(t) = f(t + 1) / f(0).
    for (int64_t t = 0; t + 1 < T; ++t) {
      const double closed = ref::cosine_f(static_cast<double>(t + 1), T, 0.008) / ref::cosine_f(0.0, T, 0.008);
      ASSERT_TRUE(near_rel(s.alpha_bar(t), closed, 1e-11)) << label << " t=" << t;
    }
    // The last step would reach alpha_bar = 0 (beta = 1); it is capped at max_beta.
    EXPECT_EQ(s.beta(T - 1), 0.999) << label;
  }
  // Other offsets and caps.
  const NoiseSchedule s = NoiseSchedule::cosine(200, 0.02, 0.5);
  expect_tables(s, ref::cosine_betas(200, 0.02, 0.5), "cosine s=0.02 max_beta=0.5");
  int capped = 0;
  for (int64_t t = 0; t < 200; ++t) {
    EXPECT_LE(s.beta(t), 0.5);
    capped += s.beta(t) == 0.5 ? 1 : 0;
  }
  EXPECT_GT(capped, 0);
  EXPECT_EQ(NoiseSchedule::cosine(1000).options().kind(), BetaSchedule::Cosine);
}

TEST(ScheduleTables, SigmoidFollowsDiffusers) {
  for (int64_t T : {1000, 999, 50, 7, 2, 1}) {
    const NoiseSchedule s = NoiseSchedule::sigmoid(T);
    expect_tables(s, ref::sigmoid_betas(T, 1e-4, 0.02), "sigmoid T=" + std::to_string(T));
    expect_consistent(s, "sigmoid T=" + std::to_string(T));
  }
  // sigmoid(-x) = 1 - sigmoid(x): beta_t + beta_{T-1-t} = beta_start + beta_end.
  const NoiseSchedule s = NoiseSchedule::sigmoid(1000, 1e-4, 0.02);
  for (int64_t t : {0, 1, 250, 499, 500, 999}) {
    EXPECT_NEAR(s.beta(t) + s.beta(999 - t), 1e-4 + 0.02, 1e-15) << t;
  }
  EXPECT_NEAR(s.beta(0), 1e-4 + (0.02 - 1e-4) / (1 + std::exp(6.0)), 1e-18);
}

TEST(ScheduleTables, CustomBetasAreUsedAsGiven) {
  const std::vector<double> betas = {0.01, 0.05, 0.2, 1.0 / 3, 0.5, 0.9};
  const NoiseSchedule s = NoiseSchedule::from_betas(betas);
  EXPECT_EQ(s.options().kind(), BetaSchedule::Custom);
  EXPECT_EQ(s.num_train_timesteps(), 6);
  EXPECT_EQ(s.options().num_train_timesteps(), 6);
  for (int64_t t = 0; t < 6; ++t) {
    EXPECT_EQ(s.beta(t), betas[t]);
  }
  expect_tables(s, betas, "custom");
  expect_consistent(s, "custom");
  EXPECT_DOUBLE_EQ(s.alpha_bar(5), 0.99 * 0.95 * 0.8 * (2.0 / 3) * 0.5 * 0.1);
  // The last beta may be 1: the schedule then ends in pure noise.
  const NoiseSchedule ends = NoiseSchedule::from_betas({0.1, 0.2, 1.0});
  EXPECT_EQ(ends.alpha_bar(2), 0.0);
  EXPECT_EQ(ends.ve_sigma(2), kInf);
  EXPECT_EQ(ends.log_snr(2), -kInf);
}

TEST(ScheduleTables, AccessorsRejectTimestepsOutOfRange) {
  const NoiseSchedule s = NoiseSchedule::linear(100);
  MD_EXPECT_ERROR(s.beta(100), "timestep must be in [0, 100)", "got 100");
  MD_EXPECT_ERROR(s.alpha_bar(-1), "got -1");
  MD_EXPECT_ERROR(s.ve_sigma(1000), "got 1000");
  EXPECT_THROW(s.snr(100), c10::IndexError);
}

// ---- zero terminal SNR -----------------------------------------------------------------------

TEST(ScheduleZeroTerminalSnr, FollowsLinEtAl) {
  struct Case {
    std::string label;
    NoiseSchedule original;
  };
  const std::vector<Case> cases = {
      {"scaled_linear", NoiseSchedule::scaled_linear(1000, 0.00085, 0.012)},
      {"linear", NoiseSchedule::linear(1000)},
      {"cosine", NoiseSchedule::cosine(1000)},
      {"sigmoid", NoiseSchedule::sigmoid(50)},
      {"custom", NoiseSchedule::from_betas({0.1, 0.2, 0.3, 0.4})},
      {"two steps", NoiseSchedule::linear(2)},
  };
  for (const Case& c : cases) {
    const NoiseSchedule& o = c.original;
    const NoiseSchedule z = o.rescaled_zero_terminal_snr();
    const int64_t T = o.num_train_timesteps();
    ASSERT_EQ(z.num_train_timesteps(), T) << c.label;
    EXPECT_TRUE(z.options().rescale_zero_terminal_snr()) << c.label;
    EXPECT_FALSE(o.options().rescale_zero_terminal_snr()) << c.label;
    // The last step is pure noise.
    EXPECT_EQ(z.alpha_bar(T - 1), 0.0) << c.label;
    EXPECT_EQ(z.beta(T - 1), 1.0) << c.label;
    EXPECT_EQ(z.snr(T - 1), 0.0) << c.label;
    EXPECT_EQ(z.log_snr(T - 1), -kInf) << c.label;
    EXPECT_EQ(z.ve_sigma(T - 1), kInf) << c.label;
    EXPECT_EQ(z.ve_sigma_max(), kInf) << c.label;
    EXPECT_EQ(z.sigma(T - 1), 1.0) << c.label;
    // The first step keeps its signal scale.
    EXPECT_NEAR(z.alpha(0), o.alpha(0), 1e-15) << c.label;
    // sqrt(alpha_bar) is the affine map of the original's, computed from the reference table.
    std::vector<double> ab(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) ab[t] = o.alpha_bar(t);
    for (int64_t t : {int64_t{0}, int64_t{1}, T / 4, T / 2, (3 * T) / 4, T - 2, T - 1}) {
      if (t < 0 || t >= T) continue;
      EXPECT_NEAR(z.alpha(t), ref::zero_snr_sqrt_alpha_bar(ab, t), 1e-12) << c.label << " t=" << t;
    }
    expect_consistent(z, "rescaled " + c.label);
    // The same schedule through the option.
    ScheduleOptions opts = o.options();
    const NoiseSchedule via_option(opts.rescale_zero_terminal_snr(true));
    EXPECT_TRUE(at::equal(via_option.betas(), z.betas())) << c.label;
  }
}

TEST(ScheduleZeroTerminalSnr, MatchesTheReferenceForStableDiffusion) {
  // Lin et al.'s Algorithm 1 applied to the reference table, compared at every timestep.
  const std::vector<double> ab = ref::alpha_bar(ref::scaled_linear_betas(1000, 0.00085, 0.012));
  const NoiseSchedule z = NoiseSchedule::scaled_linear(1000, 0.00085, 0.012).rescaled_zero_terminal_snr();
  for (int64_t t = 0; t < 1000; ++t) {
    const double s = ref::zero_snr_sqrt_alpha_bar(ab, t);
    ASSERT_NEAR(z.alpha_bar(t), s * s, 1e-12) << t;
  }
}

TEST(ScheduleZeroTerminalSnr, NeedsTwoTimesteps) {
  MD_EXPECT_ERROR(NoiseSchedule::linear(1).rescaled_zero_terminal_snr(), "at least 2 timesteps", "got 1");
  MD_EXPECT_ERROR(NoiseSchedule(ScheduleOptions().num_train_timesteps(1).rescale_zero_terminal_snr(true)),
                  "at least 2 timesteps");
}

// ---- fractional timesteps --------------------------------------------------------------------

TEST(ScheduleContinuous, AlphaBarAtIsExactAtIntegersAndMonotoneBetween) {
  for (const NoiseSchedule& s : {NoiseSchedule::linear(1000), NoiseSchedule::cosine(50),
                                 NoiseSchedule::scaled_linear(1000).rescaled_zero_terminal_snr()}) {
    const int64_t T = s.num_train_timesteps();
    double prev = 2;
    for (int64_t t = 0; t < T; ++t) {
      const double at_t = s.alpha_bar_at(static_cast<double>(t));
      EXPECT_EQ(at_t, s.alpha_bar(t)) << t;
      EXPECT_LT(at_t, prev) << t;
      prev = at_t;
      if (t + 1 == T) break;
      for (double w : {0.25, 0.5, 0.75}) {
        const double v = s.alpha_bar_at(static_cast<double>(t) + w);
        EXPECT_LT(v, prev) << t << "+" << w;
        EXPECT_GT(v, s.alpha_bar(t + 1)) << t << "+" << w;
        prev = v;
      }
    }
  }
}

TEST(ScheduleContinuous, AlphaBarAtInterpolatesLogSnr) {
  const NoiseSchedule s = NoiseSchedule::linear(1000);
  auto logit = [](double ab) { return std::log(ab / (1 - ab)); };
  for (int64_t t : {0, 1, 499, 998}) {
    for (double w : {0.1, 0.5, 0.9}) {
      const double expected = (1 - w) * logit(s.alpha_bar(t)) + w * logit(s.alpha_bar(t + 1));
      EXPECT_NEAR(logit(s.alpha_bar_at(static_cast<double>(t) + w)), expected, 1e-9) << t << "+" << w;
    }
  }
  // On a zero-terminal-SNR schedule's last interval log-SNR is -inf at the end: alpha_bar itself
  // is interpolated there.
  const NoiseSchedule z = NoiseSchedule::linear(100).rescaled_zero_terminal_snr();
  EXPECT_NEAR(z.alpha_bar_at(98.25), 0.75 * z.alpha_bar(98), 1e-17);
}

TEST(ScheduleContinuous, VpAlphaBarCoversTheUnitInterval) {
  for (const NoiseSchedule& s : {NoiseSchedule::linear(1000), NoiseSchedule::cosine(7), NoiseSchedule::linear(1)}) {
    const int64_t T = s.num_train_timesteps();
    EXPECT_EQ(s.vp_alpha_bar(0.0), s.alpha_bar(0));
    EXPECT_EQ(s.vp_alpha_bar(1.0), s.alpha_bar(T - 1));
    EXPECT_EQ(s.vp_alpha_bar(0.5), s.alpha_bar_at(0.5 * static_cast<double>(T - 1)));
  }
}

TEST(ScheduleContinuous, AlphaBarAtRejectsOutOfRange) {
  const NoiseSchedule s = NoiseSchedule::linear(1000);
  MD_EXPECT_ERROR(s.alpha_bar_at(-0.5), "[0, 999]", "got -0.5");
  MD_EXPECT_ERROR(s.alpha_bar_at(999.5), "got 999.5");
  MD_EXPECT_ERROR(s.alpha_bar_at(kNaN), "got nan");
  MD_EXPECT_ERROR(s.vp_alpha_bar(1.5), "got 1498.5");
  EXPECT_THROW(s.alpha_bar_at(kInf), c10::IndexError);
}

TEST(ScheduleContinuous, TimestepFromVeSigmaInvertsVeSigma) {
  for (const NoiseSchedule& s : {NoiseSchedule::linear(1000), NoiseSchedule::cosine(1000),
                                 NoiseSchedule::scaled_linear(1000), NoiseSchedule::sigmoid(7)}) {
    const int64_t T = s.num_train_timesteps();
    for (int64_t t = 0; t < T; ++t) {
      ASSERT_NEAR(s.timestep_from_ve_sigma(s.ve_sigma(t)), static_cast<double>(t), 1e-9) << t;
    }
    // Between integers it inverts the ve_sigma of alpha_bar_at.
    for (double t : {0.5, 0.3 * static_cast<double>(T - 1), static_cast<double>(T) - 1.7}) {
      if (t < 0) continue;
      const double ab = s.alpha_bar_at(t);
      EXPECT_NEAR(s.timestep_from_ve_sigma(std::sqrt((1 - ab) / ab)), t, 1e-6) << t;
    }
    // Outside the table's range it clamps.
    EXPECT_EQ(s.timestep_from_ve_sigma(0.0), 0.0);
    EXPECT_EQ(s.timestep_from_ve_sigma(0.5 * s.ve_sigma_min()), 0.0);
    EXPECT_EQ(s.timestep_from_ve_sigma(2 * s.ve_sigma_max()), static_cast<double>(T - 1));
    EXPECT_EQ(s.timestep_from_ve_sigma(kInf), static_cast<double>(T - 1));
  }
  const NoiseSchedule s = NoiseSchedule::linear(1000);
  MD_EXPECT_ERROR(s.timestep_from_ve_sigma(-1.0), "non-negative", "got -1");
  MD_EXPECT_ERROR(s.timestep_from_ve_sigma(kNaN), "got nan");
}

TEST(ScheduleContinuous, TimestepFromVeSigmaOnAZeroTerminalSnrSchedule) {
  const NoiseSchedule z = NoiseSchedule::scaled_linear(1000).rescaled_zero_terminal_snr();
  for (int64_t t = 0; t < 999; ++t) {
    ASSERT_NEAR(z.timestep_from_ve_sigma(z.ve_sigma(t)), static_cast<double>(t), 1e-9) << t;
  }
  EXPECT_EQ(z.timestep_from_ve_sigma(kInf), 999.0);
  // The last interval, where ve_sigma runs to infinity, is inverted too.
  for (double t : {998.25, 998.5, 998.9}) {
    const double ab = z.alpha_bar_at(t);
    EXPECT_NEAR(z.timestep_from_ve_sigma(std::sqrt((1 - ab) / ab)), t, 1e-9) << t;
  }
  const double big = z.timestep_from_ve_sigma(1e6);
  EXPECT_GT(big, 998.0);
  EXPECT_LT(big, 999.0);
}

// ---- Karras noise levels ---------------------------------------------------------------------

TEST(ScheduleKarras, FollowsKarrasEtAl) {
  for (double rho : {7.0, 3.0, 1.0}) {
    for (int64_t n : {2, 3, 10, 30, 1000}) {
      const std::vector<double> sig = NoiseSchedule::karras_sigmas(n, 0.002, 80.0, rho);
      ASSERT_EQ(static_cast<int64_t>(sig.size()), n);
      EXPECT_EQ(sig.front(), 80.0) << n << " rho " << rho;
      EXPECT_EQ(sig.back(), 0.002) << n << " rho " << rho;
      for (int64_t i = 1; i < n; ++i) {
        ASSERT_LT(sig[i], sig[i - 1]) << n << " rho " << rho << " i " << i;
      }
      for (int64_t i : {int64_t{1}, n / 2, n - 2}) {
        if (i <= 0 || i >= n - 1) continue;
        EXPECT_TRUE(near_rel(sig[i], ref::karras_sigma(i, n, 0.002, 80.0, rho), 1e-12)) << n << " i " << i;
      }
    }
  }
  // rho = 1 spaces the levels evenly.
  const std::vector<double> even = NoiseSchedule::karras_sigmas(5, 1.0, 5.0, 1.0);
  EXPECT_NEAR(even[1], 4.0, 1e-15);
  EXPECT_NEAR(even[2], 3.0, 1e-15);
  EXPECT_NEAR(even[3], 2.0, 1e-15);
  // A single level is sigma_max.
  EXPECT_EQ(NoiseSchedule::karras_sigmas(1, 0.002, 80.0), std::vector<double>{80.0});
  EXPECT_EQ(NoiseSchedule::karras_sigmas(1, 3.0, 3.0), std::vector<double>{3.0});
}

TEST(ScheduleKarras, EndpointsMapToTheScheduleEnds) {
  const NoiseSchedule s = NoiseSchedule::scaled_linear(1000);
  const std::vector<double> sig = NoiseSchedule::karras_sigmas(30, s.ve_sigma_min(), s.ve_sigma_max());
  EXPECT_EQ(s.timestep_from_ve_sigma(sig.front()), 999.0);
  EXPECT_EQ(s.timestep_from_ve_sigma(sig.back()), 0.0);
  for (size_t i = 1; i < sig.size(); ++i) {
    EXPECT_LT(s.timestep_from_ve_sigma(sig[i]), s.timestep_from_ve_sigma(sig[i - 1])) << i;
  }
}

TEST(ScheduleKarras, RejectsBadArguments) {
  MD_EXPECT_ERROR(NoiseSchedule::karras_sigmas(0, 0.1, 10.0), "n must be >= 1, got 0");
  MD_EXPECT_ERROR(NoiseSchedule::karras_sigmas(10, 0.0, 10.0), "sigma_min must be positive, got 0");
  MD_EXPECT_ERROR(NoiseSchedule::karras_sigmas(10, -1.0, 10.0), "sigma_min", "got -1");
  MD_EXPECT_ERROR(NoiseSchedule::karras_sigmas(10, kNaN, 10.0), "sigma_min", "nan");
  MD_EXPECT_ERROR(NoiseSchedule::karras_sigmas(10, 1.0, 0.5), "sigma_max", "got 0.5");
  MD_EXPECT_ERROR(NoiseSchedule::karras_sigmas(10, 1.0, kInf), "sigma_max", "got inf");
  MD_EXPECT_ERROR(NoiseSchedule::karras_sigmas(10, 1.0, 1.0), "sigma_max", "got 1");
  MD_EXPECT_ERROR(NoiseSchedule::karras_sigmas(10, 0.1, 10.0, 0.0), "rho must be positive, got 0");
  const NoiseSchedule z = NoiseSchedule::linear(1000).rescaled_zero_terminal_snr();
  MD_EXPECT_ERROR(NoiseSchedule::karras_sigmas(10, z.ve_sigma_min(), z.ve_sigma_max()), "sigma_max", "inf");
}

// ---- q_sample --------------------------------------------------------------------------------

TEST(ScheduleQSample, MatchesTheClosedForm) {
  const std::vector<double> ab = ref::alpha_bar(ref::cosine_betas(1000, 0.008, 0.999));
  const NoiseSchedule s = NoiseSchedule::cosine(1000);
  const at::Tensor x0 = at::tensor({1.0, -2.0, 0.5, 3.0, 0.25, -1.0, 2.0, 0.0}, at::kDouble).reshape({4, 2});
  const at::Tensor noise = at::tensor({0.3, 1.0, -0.7, 0.1, 2.0, -1.5, 0.0, 1.0}, at::kDouble).reshape({4, 2});
  const std::vector<int64_t> ts = {0, 1, 500, 999};
  const at::Tensor x_t = s.q_sample(x0, noise, at::tensor(ts, at::kLong));
  ASSERT_EQ(x_t.sizes(), x0.sizes());
  ASSERT_EQ(x_t.scalar_type(), at::kDouble);
  for (int64_t i = 0; i < 4; ++i) {
    const double a = std::sqrt(ab[ts[i]]);
    const double b = std::sqrt(1 - ab[ts[i]]);
    for (int64_t j = 0; j < 2; ++j) {
      const double expected = a * x0[i][j].item<double>() + b * noise[i][j].item<double>();
      EXPECT_NEAR(x_t[i][j].item<double>(), expected, 1e-12) << i << "," << j;
    }
  }
  // float32 data, int32 timesteps.
  const at::Tensor x_t32 = s.q_sample(x0.to(at::kFloat), noise.to(at::kFloat), at::tensor(ts, at::kInt));
  EXPECT_EQ(x_t32.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::allclose(x_t32.to(at::kDouble), x_t, 1e-6, 1e-6));
  // After zero-terminal-SNR rescaling the last timestep returns the noise.
  const NoiseSchedule z = s.rescaled_zero_terminal_snr();
  const at::Tensor last = z.q_sample(x0, noise, at::full({4}, 999, at::kLong));
  EXPECT_TRUE(at::allclose(last, noise, 0, 1e-15));
  MD_EXPECT_ERROR(s.q_sample(x0, noise, at::tensor({0, 1, 2, 1000}, at::kLong)), "max 1000");
}

TEST(ScheduleQSample, MatchesCpuOnCuda_CUDA) {
  MD_SKIP_WITHOUT_CUDA();
  const NoiseSchedule s = NoiseSchedule::scaled_linear(1000).rescaled_zero_terminal_snr();
  const at::Tensor x0 = at::randn({6, 3, 16, 16}, at::kDouble);
  const at::Tensor noise = at::randn({6, 3, 16, 16}, at::kDouble);
  const at::Tensor t = at::tensor({0, 1, 500, 998, 999, 250}, at::kLong);
  const at::Tensor cpu = s.q_sample(x0, noise, t);
  const at::Device cuda(at::kCUDA, 0);
  for (auto dt : {at::kDouble, at::kFloat}) {
    const at::Tensor gpu = s.q_sample(x0.to(cuda, dt), noise.to(cuda, dt), t.to(cuda));
    EXPECT_TRUE(gpu.is_cuda());
    EXPECT_EQ(gpu.scalar_type(), dt);
    const double tol = dt == at::kDouble ? 1e-12 : 1e-5;
    EXPECT_TRUE(at::allclose(gpu.cpu().to(at::kDouble), cpu, tol, tol)) << dt;
  }
}

// ---- threads ---------------------------------------------------------------------------------

struct Reads {
  std::vector<std::vector<int64_t>> timesteps;
  std::vector<double> alpha_bars;
  at::Tensor x_t;
};

Reads read_schedule(const NoiseSchedule& s, const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t) {
  Reads r;
  for (int64_t n : {1, 7, 50, 333, 999, 1000}) {
    for (auto sp : {TimestepSpacing::Leading, TimestepSpacing::Trailing, TimestepSpacing::Linspace}) {
      r.timesteps.push_back(s.timesteps(n, sp));
    }
  }
  for (int k = 0; k <= 2000; ++k) {
    r.alpha_bars.push_back(s.alpha_bar_at(0.4995 * k));
  }
  r.x_t = s.q_sample(x0, noise, t);
  return r;
}

TEST(ScheduleThreads, ConcurrentReadsMatchSequentialCalls) {
  const NoiseSchedule s = NoiseSchedule::scaled_linear(1000).rescaled_zero_terminal_snr();
  const at::Tensor x0 = at::randn({16, 3, 8, 8}, at::kDouble);
  const at::Tensor noise = at::randn({16, 3, 8, 8}, at::kDouble);
  const at::Tensor t = at::randint(0, 1000, {16}, at::kLong);
  const Reads expected = read_schedule(s, x0, noise, t);

  constexpr int kThreads = 8;
  std::vector<Reads> got(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] { got[i] = read_schedule(s, x0, noise, t); });
  }
  for (auto& th : threads) th.join();
  for (int i = 0; i < kThreads; ++i) {
    EXPECT_EQ(got[i].timesteps, expected.timesteps) << "thread " << i;
    EXPECT_EQ(got[i].alpha_bars, expected.alpha_bars) << "thread " << i;
    EXPECT_TRUE(at::equal(got[i].x_t, expected.x_t)) << "thread " << i;
  }
}

}  // namespace
