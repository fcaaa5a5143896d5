#pragma once
/// \file
/// Samplers by name, for programs and configuration files.
///
/// Example:
/// \code
///   auto sampler = mdiff::make_sampler("dpmpp_2m", 25);
///   auto ddim = mdiff::make_sampler("ddim", 50, /*eta=*/1.0);
///   for (const auto& n : mdiff::sampler_names()) fmt::print("{}\n", n);
/// \endcode

#include <manifold_diffusion/samplers/sampler.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace manifold_diffusion {

/// The names make_sampler() accepts: ddpm, ddpm_large, ddim, dpmpp_2m, dpmpp_2m_sde, unipc, unipc3,
/// euler, euler_ancestral, heun, pc.
const std::vector<std::string>& sampler_names();

/// A sampler with `steps` steps and default options otherwise. `eta` is DDIM's eta (0:
/// deterministic) and is accepted only by "ddim" (a non-zero eta elsewhere is an error, so a flag is
/// never silently ignored). An unknown name is an error that lists the known ones.
///
/// Example:
/// \code
///   at::Tensor x = mdiff::make_sampler("unipc", 10)->sample(denoiser, {16, 2}, /*seed=*/0);
/// \endcode
std::unique_ptr<Sampler> make_sampler(const std::string& name, int64_t steps, double eta = 0.0);

}  // namespace manifold_diffusion
