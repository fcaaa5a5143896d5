// libFuzzer target: IDX files, plain and gzip-compressed (data::decode_idx).
#include "fuzz_util.h"

#include <manifold_diffusion/data/idx.h>

#include <ATen/ATen.h>

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace mdata = manifold_diffusion::data;
  // A bound on what a gzip stream may expand to (64 MiB of float64): the documented way to read
  // untrusted IDX input.
  const auto options = mdata::IdxOptions().max_elements(int64_t{1} << 23);
  at::Tensor t;
  if (!mdiff_fuzz::accepts("decode_idx", [&] { t = mdata::decode_idx(data, size, options); })) return 0;
  mdiff_fuzz::require(t.defined() && t.dim() >= 1 && t.dim() <= 8, "decode_idx: 1 to 8 dimensions");
  mdiff_fuzz::require(t.numel() <= options.max_elements(), "decode_idx: numel within max_elements");
  // Plain input: header + data is the whole buffer, so the element count follows from the size.
  if (size >= 4 && !(data[0] == 0x1f && data[1] == 0x8b)) {
    const auto header = static_cast<int64_t>(4 + 4 * t.dim());
    mdiff_fuzz::require(header + t.numel() * static_cast<int64_t>(t.element_size()) == static_cast<int64_t>(size),
                        "decode_idx: header + data bytes == input size");
  }
  return 0;
}
