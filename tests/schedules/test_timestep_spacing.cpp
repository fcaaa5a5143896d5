// Inference timesteps: every spacing for every step count, diffusers' values, offsets and errors.
#include <manifold_diffusion/schedules/noise_schedule.h>

#include "schedules/schedule_reference.h"
#include "test_util.h"

#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace ref = mdiff_test::ref;
using mdiff::NoiseSchedule;
using mdiff::TimestepSpacing;

using Steps = std::vector<int64_t>;

std::string show(const Steps& ts) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < ts.size(); ++i) os << (i ? ", " : "") << ts[i];
  os << "]";
  return os.str();
}

// Empty when `ts` is n timesteps, strictly decreasing, in [0, T); otherwise what is wrong.
std::string structure_error(const Steps& ts, int64_t T, int64_t n) {
  std::ostringstream os;
  if (static_cast<int64_t>(ts.size()) != n) {
    os << "expected " << n << " timesteps, got " << ts.size();
    return os.str();
  }
  for (size_t i = 0; i < ts.size(); ++i) {
    if (ts[i] < 0 || ts[i] >= T) {
      os << "timesteps[" << i << "] = " << ts[i] << " outside [0, " << T << ")";
      return os.str();
    }
    if (i > 0 && ts[i] >= ts[i - 1]) {
      os << "not strictly decreasing at " << i << ": " << ts[i - 1] << ", " << ts[i];
      return os.str();
    }
  }
  return {};
}

// Empty when every value is a rounding of the exact value num_i / den (an integer check, free of
// floating point): |ts[i] * den - num_i| <= den / 2.
template <typename Num>
std::string rounding_error(const Steps& ts, int64_t den, Num num) {
  for (size_t i = 0; i < ts.size(); ++i) {
    const int64_t diff = ts[i] * den - num(static_cast<int64_t>(i));
    if (2 * (diff < 0 ? -diff : diff) > den) {
      std::ostringstream os;
      os << "timesteps[" << i << "] = " << ts[i] << " is not a rounding of " << num(static_cast<int64_t>(i)) << "/"
         << den;
      return os.str();
    }
  }
  return {};
}

// Every n from 1 to T, every spacing. Failures report the first bad n of each (T, spacing).
TEST(ScheduleSpacing, EveryStepCountGivesNDistinctDecreasingTimesteps) {
  for (int64_t T : {1000, 999, 50, 7, 1}) {
    const NoiseSchedule s = NoiseSchedule::linear(T);
    std::string leading_err;
    std::string trailing_err;
    std::string linspace_err;
    for (int64_t n = 1; n <= T; ++n) {
      const std::string where = "T=" + std::to_string(T) + " n=" + std::to_string(n) + ": ";

      const Steps lead = s.timesteps(n, TimestepSpacing::Leading);
      std::string e = structure_error(lead, T, n);
      if (e.empty() && lead != ref::diffusers_leading(T, n, 0)) {
        e = "got " + show(lead) + ", diffusers " + show(ref::diffusers_leading(T, n, 0));
      }
      if (e.empty() && lead.back() != 0) e = "does not end at 0";
      if (leading_err.empty() && !e.empty()) leading_err = where + e;

      const Steps trail = s.timesteps(n, TimestepSpacing::Trailing);
      e = structure_error(trail, T, n);
      if (e.empty() && trail.front() != T - 1) e = "does not start at T - 1";
      // t_i + 1 rounds T (n - i) / n.
      if (e.empty()) {
        Steps plus_one = trail;
        for (auto& v : plus_one) ++v;
        e = rounding_error(plus_one, n, [&](int64_t i) { return T * (n - i); });
      }
      if (e.empty()) {
        // diffusers' arange can make one element more than n (its last is then -1); the first n agree.
        Steps d = ref::diffusers_trailing(T, n);
        if (static_cast<int64_t>(d.size()) > n) d.resize(static_cast<size_t>(n));
        if (trail != d) e = "got " + show(trail) + ", diffusers " + show(d);
      }
      if (trailing_err.empty() && !e.empty()) trailing_err = where + e;

      const Steps lin = s.timesteps(n, TimestepSpacing::Linspace);
      e = structure_error(lin, T, n);
      if (e.empty() && lin.front() != T - 1) e = "does not start at T - 1";
      if (e.empty() && n >= 2) {
        if (lin.back() != 0) e = "does not end at 0";
        // t_i rounds (T - 1) (n - 1 - i) / (n - 1).
        if (e.empty()) e = rounding_error(lin, n - 1, [&](int64_t i) { return (T - 1) * (n - 1 - i); });
        if (e.empty() && lin != ref::diffusers_linspace(T, n)) {
          e = "got " + show(lin) + ", diffusers " + show(ref::diffusers_linspace(T, n));
        }
      }
      if (linspace_err.empty() && !e.empty()) linspace_err = where + e;
    }
    EXPECT_EQ(leading_err, "") << "leading";
    EXPECT_EQ(trailing_err, "") << "trailing";
    EXPECT_EQ(linspace_err, "") << "linspace";
  }
}

TEST(ScheduleSpacing, MatchesDiffusersPublishedValues) {
  const NoiseSchedule s = NoiseSchedule::linear(1000);
  EXPECT_EQ(s.timesteps(10, TimestepSpacing::Leading), (Steps{900, 800, 700, 600, 500, 400, 300, 200, 100, 0}));
  EXPECT_EQ(s.timesteps(10, TimestepSpacing::Trailing), (Steps{999, 899, 799, 699, 599, 499, 399, 299, 199, 99}));
  EXPECT_EQ(s.timesteps(10, TimestepSpacing::Linspace), (Steps{999, 888, 777, 666, 555, 444, 333, 222, 111, 0}));
  // Stable Diffusion's PNDM/DDIM setting: leading with steps_offset 1.
  const Steps sd = s.timesteps(50, TimestepSpacing::Leading, 1);
  EXPECT_EQ(sd.front(), 981);
  EXPECT_EQ(sd[1], 961);
  EXPECT_EQ(sd.back(), 1);
  const Steps trail50 = s.timesteps(50, TimestepSpacing::Trailing);
  EXPECT_EQ(trail50.front(), 999);
  EXPECT_EQ(trail50[1], 979);
  EXPECT_EQ(trail50.back(), 19);
  const Steps lin50 = s.timesteps(50, TimestepSpacing::Linspace);
  EXPECT_EQ((Steps(lin50.begin(), lin50.begin() + 6)), (Steps{999, 979, 958, 938, 917, 897}));
  EXPECT_EQ((Steps(lin50.end() - 3, lin50.end())), (Steps{41, 20, 0}));
  EXPECT_EQ(s.timesteps(1000, TimestepSpacing::Trailing).back(), 0);
  EXPECT_EQ(s.timesteps(1, TimestepSpacing::Trailing), Steps{999});
  EXPECT_EQ(s.timesteps(1, TimestepSpacing::Leading), Steps{0});
  // One linspace step starts from pure noise (diffusers' np.linspace gives [0] there).
  EXPECT_EQ(s.timesteps(1, TimestepSpacing::Linspace), Steps{999});
}

TEST(ScheduleSpacing, BreaksExactHalvesAsDiffusersDoes) {
  // Where the exact value ends in .5, numpy's floating-point arithmetic decides the rounding.
  const NoiseSchedule s = NoiseSchedule::linear(1000);
  // np.linspace(0, 999, 27)[13] = 499.49999999999994.
  EXPECT_EQ(s.timesteps(27, TimestepSpacing::Linspace)[13], 499);
  // np.arange(1000, 0, -1000 / 48)[3] = 937.4999999999999.
  EXPECT_EQ(s.timesteps(48, TimestepSpacing::Trailing)[3], 936);
  EXPECT_EQ(NoiseSchedule::linear(999).timesteps(14, TimestepSpacing::Trailing)[7], 498);
  EXPECT_EQ(NoiseSchedule::linear(7).timesteps(6, TimestepSpacing::Trailing), (Steps{6, 5, 4, 2, 1, 0}));
  EXPECT_EQ(NoiseSchedule::linear(7).timesteps(5, TimestepSpacing::Linspace), (Steps{6, 4, 3, 2, 0}));
}

TEST(ScheduleSpacing, TrailingKeepsNStepsWhereNumpyArangeMakesOneMore) {
  // np.arange(1000, 0, -1000 / 61) has 62 elements; diffusers then returns a timestep of -1.
  const Steps d = ref::diffusers_trailing(1000, 61);
  ASSERT_EQ(d.size(), 62u);
  EXPECT_EQ(d.back(), -1);
  const Steps ts = NoiseSchedule::linear(1000).timesteps(61, TimestepSpacing::Trailing);
  EXPECT_EQ(ts, Steps(d.begin(), d.end() - 1));
}

TEST(ScheduleSpacing, LeadingStepsOffset) {
  const NoiseSchedule s = NoiseSchedule::linear(1000);
  EXPECT_EQ(s.timesteps(10, TimestepSpacing::Leading, 1), (Steps{901, 801, 701, 601, 501, 401, 301, 201, 101, 1}));
  for (int64_t n : {1, 3, 10, 50, 333, 999, 1000}) {
    const int64_t max_offset = 999 - (n - 1) * (1000 / n);
    EXPECT_EQ(s.timesteps(n, TimestepSpacing::Leading, max_offset), ref::diffusers_leading(1000, n, max_offset)) << n;
    EXPECT_EQ(s.timesteps(n, TimestepSpacing::Leading, max_offset).front(), 999) << n;
    const std::string named = "steps_offset " + std::to_string(max_offset + 1);
    MD_EXPECT_ERROR(s.timesteps(n, TimestepSpacing::Leading, max_offset + 1), named.c_str(), "T - 1 = 999");
  }
  MD_EXPECT_ERROR(s.timesteps(1000, TimestepSpacing::Leading, 1), "steps_offset 1");
  MD_EXPECT_ERROR(s.timesteps(10, TimestepSpacing::Leading, std::numeric_limits<int64_t>::max()), "steps_offset");
  // As in diffusers, the offset shifts leading spacing only.
  EXPECT_EQ(s.timesteps(10, TimestepSpacing::Trailing, 1), s.timesteps(10, TimestepSpacing::Trailing));
  EXPECT_EQ(s.timesteps(10, TimestepSpacing::Linspace, 1), s.timesteps(10, TimestepSpacing::Linspace));
}

TEST(ScheduleSpacing, RejectsBadCounts) {
  const NoiseSchedule s = NoiseSchedule::linear(1000);
  for (auto sp : {TimestepSpacing::Leading, TimestepSpacing::Trailing, TimestepSpacing::Linspace}) {
    MD_EXPECT_ERROR(s.timesteps(0, sp), "number of inference steps must be in [1, 1000]", "got 0");
    MD_EXPECT_ERROR(s.timesteps(1001, sp), "[1, 1000]", "got 1001");
    MD_EXPECT_ERROR(s.timesteps(-3, sp), "got -3");
    MD_EXPECT_ERROR(s.timesteps(10, sp, -1), "steps_offset must be non-negative, got -1");
    EXPECT_THROW(s.timesteps(0, sp), c10::ValueError);
  }
  MD_EXPECT_ERROR(NoiseSchedule::linear(7).timesteps(8, TimestepSpacing::Trailing), "[1, 7]", "got 8");
}

TEST(ScheduleSpacing, CheckTimestepsShowsTheBadEntry) {
  const NoiseSchedule s = NoiseSchedule::linear(1000);
  EXPECT_NO_THROW(s.check_timesteps({999, 500, 0}));
  EXPECT_NO_THROW(s.check_timesteps({0}));
  EXPECT_NO_THROW(s.check_timesteps({999}));
  MD_EXPECT_ERROR(s.check_timesteps({}), "must not be empty");
  MD_EXPECT_ERROR(s.check_timesteps({999, 500, 500, 0}), "strictly decreasing", "timesteps[1] = 500",
                  "timesteps[2] = 500");
  MD_EXPECT_ERROR(s.check_timesteps({10, 20}), "strictly decreasing", "timesteps[0] = 10", "timesteps[1] = 20");
  MD_EXPECT_ERROR(s.check_timesteps({1000, 5}), "timesteps[0] = 1000", "outside [0, 1000)");
  MD_EXPECT_ERROR(s.check_timesteps({900, 5, -1}), "timesteps[2] = -1", "outside [0, 1000)");
  EXPECT_THROW(s.check_timesteps({1000}), c10::IndexError);
  EXPECT_THROW(s.check_timesteps({}), c10::ValueError);
  EXPECT_THROW(s.check_timesteps({1, 2}), c10::ValueError);
}

}  // namespace
