#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/core/random.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>

#include <mutex>

namespace manifold_diffusion {

void manual_seed(uint64_t seed) {
  // at::manual_seed seeds the CPU generator and every CUDA device's default generator.
  at::manual_seed(seed);
}

uint64_t mix_seed(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

uint64_t sample_seed(uint64_t base_seed, int64_t index) {
  MD_CHECK_VALUE(index >= 0, "sample index must be non-negative, got ", index);
  return mix_seed(mix_seed(base_seed) ^ static_cast<uint64_t>(index));
}

at::Generator make_generator(uint64_t seed, c10::Device device) {
  if (device.is_cpu()) {
    return at::make_generator<at::CPUGeneratorImpl>(seed);
  }
  MD_CHECK_VALUE(device.is_cuda(), "make_generator: unsupported device ", device, " (expected cpu or cuda)");
  MD_CHECK_VALUE(at::hasCUDA(), "make_generator: device ", device,
                 " requested but CUDA is not available in this process");
  const auto index = device.has_index() ? device.index() : static_cast<c10::DeviceIndex>(0);
  at::Generator gen = at::globalContext().defaultGenerator(c10::Device(c10::kCUDA, index)).clone();
  gen.set_current_seed(seed);
  return gen;
}

std::vector<at::Generator> make_sample_generators(uint64_t base_seed, int64_t first_index, int64_t count,
                                                  c10::Device device) {
  MD_CHECK_VALUE(first_index >= 0, "first_index must be non-negative, got ", first_index);
  MD_CHECK_VALUE(count >= 0, "count must be non-negative, got ", count);
  std::vector<at::Generator> gens;
  gens.reserve(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    gens.push_back(make_generator(sample_seed(base_seed, first_index + i), device));
  }
  return gens;
}

at::Tensor randn_per_sample(at::IntArrayRef shape, const std::vector<at::Generator>& generators,
                            c10::ScalarType dtype) {
  MD_CHECK_VALUE(!shape.empty(), "randn_per_sample: shape must have a batch dimension, got ", shape);
  MD_CHECK_VALUE(shape[0] == static_cast<int64_t>(generators.size()), "randn_per_sample: shape[0] = ",
                 shape[0], " must equal the number of generators, got ", generators.size());
  MD_CHECK_TYPE(at::isFloatingType(dtype), "randn_per_sample: dtype must be floating point, got ", dtype);
  for (int64_t d : shape) {
    MD_CHECK_VALUE(d >= 0, "randn_per_sample: negative size in shape ", shape);
  }
  const c10::Device device = generators.empty() ? c10::Device(c10::kCPU) : generators.front().device();
  for (const auto& g : generators) {
    MD_CHECK_VALUE(g.defined(), "randn_per_sample: undefined generator");
    MD_CHECK_VALUE(g.device() == device, "randn_per_sample: generators on different devices: ", device,
                   " and ", g.device());
  }
  // Draw in float32 (or float64) so a sample's noise does not depend on the output precision path.
  const c10::ScalarType draw_dtype = dtype == c10::kDouble ? c10::kDouble : c10::kFloat;
  const auto opts = at::TensorOptions().dtype(draw_dtype).device(device);
  std::vector<int64_t> row_shape(shape.begin() + 1, shape.end());
  std::vector<at::Tensor> rows;
  rows.reserve(generators.size());
  for (const auto& g : generators) {
    rows.push_back(at::randn(row_shape, g, opts));
  }
  if (rows.empty()) {
    return at::empty(shape, opts.dtype(dtype));
  }
  return at::stack(rows).to(dtype);
}

at::Tensor generator_state(const at::Generator& generator) {
  MD_CHECK_VALUE(generator.defined(), "generator_state: undefined generator");
  at::Generator handle = generator;  // shares the implementation; mutex() is non-const
  std::lock_guard<std::mutex> lock(handle.mutex());
  return handle.get_state();
}

void set_generator_state(at::Generator& generator, const at::Tensor& state) {
  MD_CHECK_VALUE(generator.defined(), "set_generator_state: undefined generator");
  check_dtype(state, "state", at::kByte);
  MD_CHECK_VALUE(state.device().is_cpu(), "set_generator_state: state must be a CPU tensor, got ",
                 state.device());
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state);
}

}  // namespace manifold_diffusion
