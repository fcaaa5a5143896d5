#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/samplers/ddim.h>
#include <manifold_diffusion/samplers/ddpm.h>
#include <manifold_diffusion/samplers/dpm_solver.h>
#include <manifold_diffusion/samplers/euler.h>
#include <manifold_diffusion/samplers/factory.h>
#include <manifold_diffusion/samplers/predictor_corrector.h>
#include <manifold_diffusion/samplers/unipc.h>

#include <cmath>

namespace manifold_diffusion {

const std::vector<std::string>& sampler_names() {
  static const std::vector<std::string> names{"ddpm",  "ddpm_large", "ddim",  "dpmpp_2m",        "dpmpp_2m_sde", "unipc",
                                              "unipc3", "euler",     "euler_ancestral", "heun", "pc"};
  return names;
}

std::unique_ptr<Sampler> make_sampler(const std::string& name, int64_t steps, double eta) {
  MD_CHECK_VALUE(steps >= 1, "make_sampler: steps must be >= 1, got ", steps);
  MD_CHECK_VALUE(std::isfinite(eta) && eta >= 0, "make_sampler: eta must be >= 0, got ", eta);
  MD_CHECK_VALUE(eta == 0.0 || name == "ddim", "make_sampler: eta = ", eta, " applies to 'ddim' only, not '", name,
                 "'");
  if (name == "ddpm") return std::make_unique<DDPMSampler>(DDPMOptions(steps));
  if (name == "ddpm_large") return std::make_unique<DDPMSampler>(DDPMOptions(steps).variance(DDPMVariance::FixedLarge));
  if (name == "ddim") return std::make_unique<DDIMSampler>(DDIMOptions(steps).eta(eta));
  if (name == "dpmpp_2m") return std::make_unique<DPMSolverSampler>(DPMSolverOptions(steps));
  if (name == "dpmpp_2m_sde") {
    return std::make_unique<DPMSolverSampler>(DPMSolverOptions(steps).variant(DPMSolverVariant::SDE2M));
  }
  if (name == "unipc") return std::make_unique<UniPCSampler>(UniPCOptions(steps));
  if (name == "unipc3") return std::make_unique<UniPCSampler>(UniPCOptions(steps).order(3));
  if (name == "euler") return std::make_unique<EulerSampler>(SigmaSamplerOptions(steps));
  if (name == "euler_ancestral") return std::make_unique<EulerAncestralSampler>(SigmaSamplerOptions(steps));
  if (name == "heun") return std::make_unique<HeunSampler>(SigmaSamplerOptions(steps));
  if (name == "pc") return std::make_unique<PCSampler>(PCOptions(steps));
  std::string known;
  for (const auto& n : sampler_names()) known += (known.empty() ? "" : ", ") + n;
  MD_CHECK_VALUE(false, "make_sampler: unknown sampler '", name, "' (known: ", known, ")");
  return nullptr;
}

}  // namespace manifold_diffusion
