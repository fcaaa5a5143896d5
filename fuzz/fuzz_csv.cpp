// libFuzzer target: numeric CSV text (data::parse_csv_points). The first byte picks the delimiter
// and the dtype, the rest is the text.
#include "fuzz_util.h"

#include <manifold_diffusion/data/point_cloud.h>

#include <ATen/ATen.h>

#include <cstddef>
#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace mdata = manifold_diffusion::data;
  if (size == 0) return 0;
  static const char kDelimiters[] = {',', ';', '\t', ' '};
  auto options = mdata::CsvOptions()
                     .delimiter(kDelimiters[data[0] & 3])
                     .dtype((data[0] & 4) != 0 ? at::kDouble : at::kFloat);
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  at::Tensor t;
  if (!mdiff_fuzz::accepts("parse_csv_points", [&] { t = mdata::parse_csv_points(text, options); })) return 0;
  mdiff_fuzz::require(t.dim() == 2 && t.size(0) >= 1 && t.size(1) >= 1, "parse_csv_points: [N >= 1, C >= 1]");
  mdiff_fuzz::require(t.scalar_type() == options.dtype(), "parse_csv_points: the requested dtype");
  // Every value is finite in the requested dtype (float32 overflow is refused, not turned into inf).
  mdiff_fuzz::require(at::isfinite(t).all().item<bool>(), "parse_csv_points: finite values");
  return 0;
}
