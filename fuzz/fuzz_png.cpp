// libFuzzer target: PNG images (io::decode_png); accepted images must survive an encode/decode
// round trip unchanged.
#include "fuzz_util.h"

#include <manifold_diffusion/io/png.h>

#include <ATen/ATen.h>

#include <cstddef>
#include <cstdint>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace io = manifold_diffusion::io;
  const std::vector<uint8_t> bytes(data, data + size);
  // 4 Mpixels: a bound on what a small compressed stream may expand to.
  const auto options = io::PngReadOptions().max_pixels(int64_t{1} << 22);
  at::Tensor img;
  if (!mdiff_fuzz::accepts("decode_png", [&] { img = io::decode_png(bytes, options); })) return 0;
  mdiff_fuzz::require(img.dim() == 3 && img.numel() > 0, "decode_png: a non-empty [C, H, W] image");
  if (img.scalar_type() == at::kByte && (img.size(0) == 1 || img.size(0) == 3 || img.size(0) == 4)) {
    at::Tensor again;
    mdiff_fuzz::require(mdiff_fuzz::accepts("decode_png(encode_png(x))",
                                            [&] { again = io::decode_png(io::encode_png(img), options); }),
                        "decode_png accepts what encode_png wrote");
    mdiff_fuzz::require(at::equal(img, again), "decode_png(encode_png(x)) == x");
  }
  return 0;
}
