#pragma once

/// \file
/// Seeding and `at::Generator` helpers.
///
/// Sampling in this library is *batch-invariant*: sample i of a run seeded with `seed` draws its
/// noise from its own generator, seeded with `sample_seed(seed, i)`, so the sample does not change
/// with the batch it is drawn in or with the samples around it (as EDM's per-seed generators do).
///
/// Example:
/// \code
///   mdiff::manual_seed(42);                                    // torch's global RNG and ours
///   auto gens = mdiff::make_sample_generators(42, 0, 8);       // samples 0..7 of seed 42
///   at::Tensor x_T = mdiff::randn_per_sample({8, 1, 28, 28}, gens, at::kFloat);
///   // Row 3 equals the row drawn for sample 3 in any other batch that contains it:
///   auto gens3 = mdiff::make_sample_generators(42, 3, 1);
///   at::Tensor one = mdiff::randn_per_sample({1, 1, 28, 28}, gens3, at::kFloat);  // == x_T[3]
///   at::Tensor state = mdiff::generator_state(gens[0]);       // for checkpoints
/// \endcode

#include <manifold_diffusion/core/namespace.h>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <vector>

namespace manifold_diffusion {

/// Seeds LibTorch's default CPU generator and, where present, every CUDA device's default generator.
void manual_seed(uint64_t seed);

/// SplitMix64 finaliser: a well-mixed 64-bit value from `x`. Deterministic on every platform.
uint64_t mix_seed(uint64_t x);

/// The seed of sample `index` of a run seeded with `base_seed`; independent of batch layout.
uint64_t sample_seed(uint64_t base_seed, int64_t index);

/// A new generator for `device` (CPU or CUDA) seeded with `seed`, independent of the global one.
at::Generator make_generator(uint64_t seed, c10::Device device = c10::Device(c10::kCPU));

/// Generators for samples first_index .. first_index + count - 1 of a run seeded with `base_seed`.
std::vector<at::Generator> make_sample_generators(uint64_t base_seed, int64_t first_index, int64_t count,
                                                  c10::Device device = c10::Device(c10::kCPU));

/// Standard normal noise of `shape` where row i (along dim 0) is drawn from `generators[i]`.
/// `shape[0]` must equal `generators.size()`; the noise is created on the generators' device.
at::Tensor randn_per_sample(at::IntArrayRef shape, const std::vector<at::Generator>& generators,
                            c10::ScalarType dtype = c10::kFloat);

/// Snapshot of a generator's full state (a uint8 tensor), for checkpoints.
at::Tensor generator_state(const at::Generator& generator);

/// Restores a state taken with generator_state(); checks that it is a uint8 CPU tensor.
void set_generator_state(at::Generator& generator, const at::Tensor& state);

}  // namespace manifold_diffusion
