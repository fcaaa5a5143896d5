// libFuzzer target: .npy files (data::decode_npy).
#include "fuzz_util.h"

#include <manifold_diffusion/data/point_cloud.h>

#include <ATen/ATen.h>

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace mdata = manifold_diffusion::data;
  at::Tensor t;
  if (!mdiff_fuzz::accepts("decode_npy", [&] { t = mdata::decode_npy(data, size); })) return 0;
  mdiff_fuzz::require(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, "decode_npy: float32/64 only");
  // The data is exactly numel * itemsize bytes at the end of the buffer.
  mdiff_fuzz::require(static_cast<size_t>(t.numel() * static_cast<int64_t>(t.element_size())) < size,
                      "decode_npy: data smaller than the input");
  return 0;
}
