// The bad-input matrix: every tensor argument of the library's main tensor-taking entry points,
// one component after another, is replaced by the same set of bad variants, and each call must
// either fail with a c10::Error whose message names the function and the argument, or (for the
// variants a function may accept) return a correct result. A crash, a hang, another exception
// type or a silently wrong result fails the test.
//
// Variants of an argument:
//   undefined     at::Tensor()                          -> error naming the argument
//   dtype         int64 for floating arguments, float32 for index arguments
//                                                      -> error naming the argument and the dtype
//   rank          one extra leading dimension           -> error naming the argument
//   meta device   the argument on the meta device       -> error (never a null data pointer read)
//   empty batch   size 0 along dimension 0 (batch arguments only)
//                                                      -> an empty result or an error
//   non-finite    a NaN in the first element (floating data arguments)
//                                                      -> per entry: an error (inputs of data
//                                                         pipelines and samplers) or NaN in the
//                                                         output (elementwise kernels, like ATen)
//   strided       a non-contiguous view of the same values (rank >= 2)
//                                                      -> the same result as the contiguous call
#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/data/augment.h>
#include <manifold_diffusion/io/png.h>
#include <manifold_diffusion/manifold/knn.h>
#include <manifold_diffusion/manifold/pca.h>
#include <manifold_diffusion/metrics/distribution.h>
#include <manifold_diffusion/metrics/image.h>
#include <manifold_diffusion/models/denoiser.h>
#include <manifold_diffusion/models/mlp_denoiser.h>
#include <manifold_diffusion/models/unet.h>
#include <manifold_diffusion/ops/attention.h>
#include <manifold_diffusion/ops/group_norm.h>
#include <manifold_diffusion/ops/knn_topk.h>
#include <manifold_diffusion/ops/project_local_pca.h>
#include <manifold_diffusion/ops/q_sample.h>
#include <manifold_diffusion/samplers/ddim.h>
#include <manifold_diffusion/samplers/sampler.h>
#include <manifold_diffusion/schedules/noise_schedule.h>

#include "test_util.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace {

namespace mdiff = manifold_diffusion;

enum class NonFinite { Reject, Propagate, Skip };

struct Arg {
  std::string name;         // how messages name it
  at::Tensor good;          // a valid value
  bool batch = false;       // dimension 0 is the batch: an empty batch is allowed to succeed
  bool optional = false;    // undefined means "absent" (e.g. no affine parameters)
  bool any_dtype = false;   // converted by the function (integer timesteps, uint8 or float images)
  bool any_rank = false;    // elementwise: every rank is valid
  std::vector<std::string> aliases = {};  // other names messages may use (a model's own 'x')
};

struct Entry {
  std::string component;
  std::vector<std::string> names;  // a message must contain one of these (the function's names)
  std::vector<Arg> args;
  std::function<at::Tensor(const std::vector<at::Tensor>&)> call;  // returns a tensor to compare
  NonFinite non_finite = NonFinite::Propagate;
};

at::Tensor with_nan(const at::Tensor& t) {
  at::Tensor c = t.clone();
  c.view(-1)[0] = std::numeric_limits<float>::quiet_NaN();
  return c;
}

at::Tensor strided_copy(const at::Tensor& t) {
  // Same shape and values, non-contiguous: the transpose of a contiguous transpose.
  return t.transpose(0, 1).contiguous().transpose(0, 1);
}

std::string contains_any(const std::string& msg, const std::vector<std::string>& names) {
  for (const auto& n : names) {
    if (msg.find(n) != std::string::npos) return "";
  }
  std::string all;
  for (const auto& n : names) all += (all.empty() ? "'" : ", '") + n + "'";
  return "message \"" + msg + "\" names none of " + all;
}

// Runs fn; returns ("", result) on success, (message, undefined) on a c10::Error; any other
// exception fails the test.
std::pair<std::string, at::Tensor> attempt(const std::function<at::Tensor()>& fn, const std::string& what) {
  try {
    return {"", fn()};
  } catch (const c10::Error& e) {
    std::string msg = e.what_without_backtrace();
    return {msg.empty() ? std::string("(empty message)") : msg, at::Tensor()};
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << ": threw a " << typeid(e).name() << " instead of a c10::Error: " << e.what();
  }
  return {"(foreign exception)", at::Tensor()};
}

void run_matrix(const Entry& entry) {
  SCOPED_TRACE(entry.component);
  at::Tensor reference;
  {
    auto [msg, out] = attempt([&] {
      std::vector<at::Tensor> a;
      for (const auto& arg : entry.args) a.push_back(arg.good);
      return entry.call(a);
    }, entry.component + " (valid arguments)");
    ASSERT_TRUE(msg.empty()) << entry.component << " rejects its valid arguments: " << msg;
    reference = out;
  }
  for (size_t i = 0; i < entry.args.size(); ++i) {
    const Arg& arg = entry.args[i];
    const auto call_with = [&](const at::Tensor& replacement) {
      std::vector<at::Tensor> a;
      for (const auto& other : entry.args) a.push_back(other.good);
      a[i] = replacement;
      return entry.call(a);
    };
    const std::string where = entry.component + ", argument '" + arg.name + "'";
    std::vector<std::string> arg_names{arg.name};
    arg_names.insert(arg_names.end(), arg.aliases.begin(), arg.aliases.end());
    // Variants a function may accept must give the reference result.
    const auto expect_same = [&](const at::Tensor& variant_value, const std::string& variant) {
      auto [msg, out] = attempt([&] { return call_with(variant_value); }, where + " " + variant);
      EXPECT_TRUE(msg.empty()) << where << ": " << variant << " was refused: " << msg;
      if (msg.empty() && out.defined() && reference.defined() && out.sizes() == reference.sizes()) {
        EXPECT_TRUE(at::allclose(out.to(at::kDouble), reference.to(at::kDouble), 1e-5, 1e-6))
            << where << ": " << variant << " changed the result";
      }
    };
    const auto expect_error = [&](const at::Tensor& bad, const std::string& variant, bool names_argument,
                                  const std::vector<std::string>& also) {
      auto [msg, out] = attempt([&] { return call_with(bad); }, where + " " + variant);
      if (msg.empty()) {
        ADD_FAILURE() << where << ": " << variant << " was accepted";
        return;
      }
      if (!names_argument) return;
      EXPECT_EQ(contains_any(msg, entry.names), "") << where << ": " << variant;
      EXPECT_EQ(contains_any(msg, arg_names), "") << where << ": " << variant;
      for (const auto& part : also) {
        EXPECT_NE(msg.find(part), std::string::npos) << where << ": " << variant << ": message \"" << msg
                                                     << "\" lacks \"" << part << "\"";
      }
    };

    if (arg.optional) {
      auto [msg, out] = attempt([&] { return call_with(at::Tensor()); }, where + " absent");
      EXPECT_TRUE(msg.empty()) << where << ": an absent optional argument was refused: " << msg;
    } else {
      expect_error(at::Tensor(), "undefined tensor", true, {});
    }
    const bool floating = at::isFloatingType(arg.good.scalar_type());
    const at::ScalarType wrong = floating ? at::kLong : at::kFloat;
    if (arg.any_dtype) {
      expect_same(arg.good.to(wrong), "dtype " + std::string(c10::toString(wrong)));
    } else {
      expect_error(arg.good.to(wrong), "dtype " + std::string(c10::toString(wrong)), true,
                   {std::string(c10::toString(wrong))});
    }
    if (!arg.any_rank) expect_error(arg.good.unsqueeze(0), "one extra dimension", true, {});
    // ATen's own "could not run ... with arguments from the 'Meta' backend" is a fine message too.
    expect_error(at::empty(arg.good.sizes(), arg.good.options().device(at::kMeta)), "meta device", false, {});

    if (arg.batch && arg.good.dim() >= 1) {
      at::Tensor empty = arg.good.narrow(0, 0, 0);
      auto [msg, out] = attempt([&] { return call_with(empty); }, where + " empty batch");
      if (msg.empty() && out.defined() && reference.dim() >= 1) {
        EXPECT_EQ(out.size(0), 0) << where << ": an empty batch returned " << out.sizes();
      } else if (!msg.empty()) {
        EXPECT_EQ(contains_any(msg, entry.names), "") << where << ": empty batch";
      }
    }
    if (floating && entry.non_finite != NonFinite::Skip && arg.good.numel() > 0) {
      auto [msg, out] = attempt([&] { return call_with(with_nan(arg.good)); }, where + " NaN");
      if (entry.non_finite == NonFinite::Reject) {
        EXPECT_FALSE(msg.empty()) << where << ": a NaN input was accepted silently";
        if (!msg.empty()) {
          EXPECT_EQ(contains_any(msg, entry.names), "") << where << ": NaN";
          EXPECT_TRUE(msg.find("NaN") != std::string::npos || msg.find("finite") != std::string::npos)
              << where << ": the message \"" << msg << "\" does not say what is wrong with the values";
        }
      } else if (msg.empty() && out.defined() && at::isFloatingType(out.scalar_type())) {
        EXPECT_FALSE(at::isfinite(out).all().item<bool>()) << where << ": a NaN input vanished from the output";
      }
    }
    if (arg.good.dim() >= 2 && arg.good.size(0) > 1 && arg.good.size(1) > 1 && reference.defined()) {
      expect_same(strided_copy(arg.good), "non-contiguous view");
    }
  }
}

at::Tensor randn(at::IntArrayRef shape) { return at::randn(shape, at::kFloat); }

}  // namespace

TEST(BadInputMatrix, Ops) {
  torch::NoGradGuard no_grad;
  run_matrix({"ops::attention", {"attention"},
              {{"q", randn({2, 2, 5, 4}), true}, {"k", randn({2, 2, 6, 4}), true}, {"v", randn({2, 2, 6, 3}), true}},
              [](const std::vector<at::Tensor>& a) { return mdiff::ops::attention(a[0], a[1], a[2]); }});
  run_matrix({"ops::group_norm_silu", {"group_norm_silu"},
              {{"x", randn({2, 4, 3, 3}), true},
               {"weight", randn({4}), false, true},
               {"bias", randn({4}), false, true},
               {"scale", randn({2, 4}), true, true},
               {"shift", randn({2, 4}), true, true}},
              [](const std::vector<at::Tensor>& a) {
                return mdiff::ops::group_norm_silu(a[0], a[1], a[2], a[3], a[4], mdiff::ops::GroupNormSiLUOptions(2));
              }});
  const at::Tensor ab = at::cumprod(1 - at::linspace(1e-4, 0.02, 50, at::kDouble), 0);
  run_matrix({"ops::q_sample", {"q_sample"},
              {{"x0", randn({3, 2, 4}), true},
               {"noise", randn({3, 2, 4}), true},
               {"t", at::tensor({0, 10, 49}, at::kLong), true},
               {"signal", ab.sqrt()},
               {"noise_scale", (1 - ab).sqrt()}},
              [](const std::vector<at::Tensor>& a) { return mdiff::ops::q_sample(a[0], a[1], a[2], a[3], a[4]); }});
  const at::Tensor bases = std::get<0>(at::linalg_qr(randn({3, 5, 2}))).transpose(1, 2).contiguous();
  run_matrix({"ops::project_local_pca", {"project_local_pca"},
              {{"x", randn({4, 5}), true},
               {"centers", randn({3, 5})},
               {"bases", bases},
               {"assign", at::tensor({0, 2, 1, 0}, at::kLong), true}},
              [](const std::vector<at::Tensor>& a) { return mdiff::ops::project_local_pca(a[0], a[1], a[2], a[3]); }});
  run_matrix({"ops::knn_sqdist_topk", {"knn_sqdist_topk"},
              {{"queries", randn({4, 3}), true}, {"points", randn({9, 3})}},
              [](const std::vector<at::Tensor>& a) { return mdiff::ops::knn_sqdist_topk(a[0], a[1], 2).sqdist; },
              NonFinite::Reject});
}

TEST(BadInputMatrix, Models) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  mdiff::MLPDenoiser mlp(mdiff::MLPDenoiserOptions(3).hidden(16).num_blocks(1).time_embed_dim(8));
  mlp->eval();
  run_matrix({"MLPDenoiser::forward", {"MLPDenoiser"},
              {{"x", randn({4, 3}), true}, {"t", at::tensor({1.0f, 5.0f, 9.0f, 20.0f}), true, false, true}},
              [mlp](const std::vector<at::Tensor>& a) mutable { return mlp->forward(a[0], a[1]); }});
  mdiff::UNet unet(mdiff::UNetOptions(1, 1).image_size(8).base_channels(8).norm_groups(4).num_res_blocks(1).channel_mult({1, 2}).attention_resolutions({4}));
  unet->eval();
  run_matrix({"UNet::forward", {"UNet"},
              {{"x", randn({2, 1, 8, 8}), true}, {"t", at::tensor({3.0f, 40.0f}), true, false, true}},
              [unet](const std::vector<at::Tensor>& a) mutable { return unet->forward(a[0], a[1]); }});
}

TEST(BadInputMatrix, SamplersAndSchedules) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  mdiff::MLPDenoiser mlp(mdiff::MLPDenoiserOptions(2).hidden(16).num_blocks(1).time_embed_dim(8));
  mlp->eval();
  const mdiff::Denoiser denoiser(
      [mlp](const at::Tensor& x, const at::Tensor& t, const at::Tensor&) mutable { return mlp->forward(x, t); },
      mdiff::NoiseSchedule::linear(100));
  const mdiff::DDIMSampler ddim(mdiff::DDIMOptions(4));
  // x_T is the start of a run: non-finite values are refused, not sampled into NaN images.
  run_matrix({"Sampler::sample", {"sample", "x_T", "MLPDenoiser"},
              {{"x_T", randn({3, 2}), true, false, false, false, {"x"}}},
              [&](const std::vector<at::Tensor>& a) {
                const int64_t n = a[0].defined() && a[0].dim() >= 1 ? a[0].size(0) : 0;
                return ddim.sample(denoiser, a[0], mdiff::make_sample_generators(0, 0, n));
              },
              NonFinite::Reject});
  const mdiff::NoiseSchedule schedule = mdiff::NoiseSchedule::linear(100);
  run_matrix({"NoiseSchedule::q_sample", {"q_sample"},
              {{"x0", randn({3, 2}), true}, {"noise", randn({3, 2}), true}, {"t", at::tensor({0, 50, 99}, at::kLong), true}},
              [&](const std::vector<at::Tensor>& a) { return schedule.q_sample(a[0], a[1], a[2]); }});
}

TEST(BadInputMatrix, ManifoldEstimation) {
  const at::Tensor points = randn({20, 3});
  // Estimating a manifold from data refuses non-finite points: one NaN would poison every distance.
  run_matrix({"knn", {"knn"},
              {{"queries", randn({5, 3}), true}, {"points", points}},
              [](const std::vector<at::Tensor>& a) { return mdiff::knn(a[0], a[1], 3).distances; },
              NonFinite::Reject});
  const at::Tensor neighbours = mdiff::knn_graph(points, 4).indices;
  run_matrix({"local_pca", {"local_pca"},
              {{"points", points}, {"neighbours", neighbours, true}},
              [](const std::vector<at::Tensor>& a) { return mdiff::local_pca(a[0], a[1], 2).basis; },
              NonFinite::Reject});
}

TEST(BadInputMatrix, Metrics) {
  // Metrics summarise samples: a non-finite sample is refused, not averaged into NaN.
  run_matrix({"metrics::frechet_distance", {"frechet_distance"},
              {{"x", randn({30, 3}), true}, {"y", randn({25, 3}) + 0.5, true}},
              [](const std::vector<at::Tensor>& a) {
                return at::tensor({mdiff::metrics::frechet_distance(a[0], a[1])}, at::kDouble);
              },
              NonFinite::Reject});
  run_matrix({"metrics::mmd", {"mmd"},
              {{"x", randn({20, 2}), true}, {"y", randn({20, 2}), true}},
              [](const std::vector<at::Tensor>& a) {
                return at::tensor({mdiff::metrics::mmd(a[0], a[1], {1.0})}, at::kDouble);
              },
              NonFinite::Reject});
  run_matrix({"metrics::psnr", {"psnr"},
              {{"x", at::rand({2, 1, 8, 8}), true}, {"y", at::rand({2, 1, 8, 8}), true}},
              [](const std::vector<at::Tensor>& a) { return mdiff::metrics::psnr(a[0], a[1]); },
              NonFinite::Reject});
}

TEST(BadInputMatrix, Images) {
  run_matrix({"io::to_uint8_image", {"to_uint8_image"},
              {{"x", randn({1, 4, 4}).clamp(-1, 1), false, false, false, true}},
              [](const std::vector<at::Tensor>& a) { return mdiff::io::to_uint8_image(a[0]).to(at::kFloat); },
              // Documented: NaN becomes 0 (PngImages.ToUint8ImageMapsAndClamps checks the mapping).
              NonFinite::Skip});
  run_matrix({"io::make_grid", {"make_grid"},
              {{"images", at::rand({3, 1, 4, 4}) * 2 - 1, true}},
              [](const std::vector<at::Tensor>& a) { return mdiff::io::make_grid(a[0]).to(at::kFloat); },
              NonFinite::Skip});  // float images go through to_uint8_image: NaN becomes 0, as documented
}
