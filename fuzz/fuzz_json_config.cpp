// libFuzzer target: every JSON configuration the library reads. The same text goes to each parser:
// the options structs' from_json (schedules, samplers, models), diffusers' scheduler_config.json and
// UNet config.json. Accepted options must round-trip through to_json unchanged, and an accepted
// schedule must build.
#include "fuzz_util.h"

#include <manifold_diffusion/models/autoencoder.h>
#include <manifold_diffusion/models/denoiser.h>
#include <manifold_diffusion/models/diffusers_unet.h>
#include <manifold_diffusion/models/mlp_denoiser.h>
#include <manifold_diffusion/models/unet.h>
#include <manifold_diffusion/samplers/ddim.h>
#include <manifold_diffusion/samplers/ddpm.h>
#include <manifold_diffusion/samplers/diffusers_config.h>
#include <manifold_diffusion/samplers/dpm_solver.h>
#include <manifold_diffusion/samplers/euler.h>
#include <manifold_diffusion/samplers/predictor_corrector.h>
#include <manifold_diffusion/samplers/unipc.h>
#include <manifold_diffusion/schedules/noise_schedule.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <fstream>
#include <string>

namespace {

namespace mdiff = manifold_diffusion;

// from_json, then: to_json parses again to the same text. Options structs whose required
// arguments have no default start from a placeholder.
// Returns the parsed options (or nothing when refused).
template <typename Options>
std::optional<Options> round_trip(const char* what, const std::string& text, Options placeholder = Options()) {
  Options o = placeholder;
  if (!mdiff_fuzz::accepts(what, [&] { o = Options::from_json(text); })) return std::nullopt;
  const std::string once = o.to_json();
  std::string twice;
  mdiff_fuzz::require(mdiff_fuzz::accepts(what, [&] { twice = Options::from_json(once).to_json(); }),
                      "from_json accepts what to_json wrote");
  mdiff_fuzz::require(once == twice, "from_json(to_json(o)).to_json() == o.to_json()");
  return o;
}

}  // namespace

// MD_FUZZ_WRITE_SEED=dir writes each options struct's to_json() (defaults and a few non-defaults)
// into dir: the library's own seeds for the corpus.
extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  const char* dir = std::getenv("MD_FUZZ_WRITE_SEED");
  if (dir == nullptr) return 0;
  const auto put = [dir](const std::string& name, const std::string& text) {
    std::ofstream(std::string(dir) + "/" + name, std::ios::binary) << text;
  };
  put("schedule_default", mdiff::ScheduleOptions().to_json());
  put("schedule_cosine", mdiff::ScheduleOptions(mdiff::BetaSchedule::Cosine).num_train_timesteps(200).to_json());
  put("schedule_custom", mdiff::ScheduleOptions(mdiff::BetaSchedule::Custom).betas({0.1, 0.2, 0.3}).to_json());
  put("ddpm", mdiff::DDPMOptions(100).to_json());
  put("ddim", mdiff::DDIMOptions(20).eta(0.5).to_json());
  put("dpm_solver", mdiff::DPMSolverOptions(10).to_json());
  put("sigma_sampler", mdiff::SigmaSamplerOptions(12).to_json());
  put("pc", mdiff::PCOptions(50).to_json());
  put("unipc", mdiff::UniPCOptions(8).to_json());
  put("denoiser", mdiff::DenoiserOptions(mdiff::PredictionType::VPrediction).to_json());
  put("unet", mdiff::UNetOptions(1, 1).to_json());
  put("mlp_denoiser", mdiff::MLPDenoiserOptions(2).to_json());
  put("autoencoder", mdiff::AutoencoderOptions(mdiff::AutoencoderKind::Conv, 1, 4).to_json());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);

  if (const auto schedule = round_trip<mdiff::ScheduleOptions>("ScheduleOptions::from_json", text)) {
    mdiff_fuzz::accepts("NoiseSchedule(options)", [&] { mdiff::NoiseSchedule s(*schedule); });
  }
  round_trip<mdiff::DDPMOptions>("DDPMOptions::from_json", text);
  round_trip<mdiff::DDIMOptions>("DDIMOptions::from_json", text);
  round_trip<mdiff::DPMSolverOptions>("DPMSolverOptions::from_json", text);
  round_trip<mdiff::SigmaSamplerOptions>("SigmaSamplerOptions::from_json", text);
  round_trip<mdiff::PCOptions>("PCOptions::from_json", text);
  round_trip<mdiff::UniPCOptions>("UniPCOptions::from_json", text);
  round_trip<mdiff::DenoiserOptions>("DenoiserOptions::from_json", text);
  round_trip("UNetOptions::from_json", text, mdiff::UNetOptions(1, 1));
  round_trip("MLPDenoiserOptions::from_json", text, mdiff::MLPDenoiserOptions(1));
  round_trip("AutoencoderOptions::from_json", text, mdiff::AutoencoderOptions(mdiff::AutoencoderKind::MLP, 1, 1));

  const int64_t steps = 1 + static_cast<int64_t>(size % 50);
  mdiff_fuzz::accepts("from_diffusers_scheduler_config",
                      [&] { mdiff::DiffusersScheduler s = mdiff::from_diffusers_scheduler_config(text, steps); });
  mdiff::UNetOptions unet(1, 1);
  if (mdiff_fuzz::accepts("unet_options_from_diffusers_config",
                          [&] { unet = mdiff::unet_options_from_diffusers_config(text); })) {
    std::string again;
    mdiff_fuzz::require(mdiff_fuzz::accepts("diffusers config round trip", [&] {
                          again = mdiff::unet_options_from_diffusers_config(mdiff::diffusers_config_from_unet_options(unet))
                                      .to_json();
                        }),
                        "unet_options_from_diffusers_config accepts what diffusers_config_from_unet_options wrote");
    mdiff_fuzz::require(again == unet.to_json(), "the diffusers config round trip keeps the options");
  }
  return 0;
}
