// libFuzzer target: safetensors files (io::decode_safetensors); accepted files must survive an
// encode/decode round trip unchanged.
#include "fuzz_util.h"

#include <manifold_diffusion/io/safetensors.h>

#include <ATen/ATen.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace io = manifold_diffusion::io;
  io::Safetensors st;
  if (!mdiff_fuzz::accepts("decode_safetensors", [&] { st = io::decode_safetensors(data, size); })) return 0;
  int64_t bytes = 0;
  for (const auto& [name, t] : st.tensors) bytes += t.numel() * static_cast<int64_t>(t.element_size());
  mdiff_fuzz::require(bytes + 8 <= static_cast<int64_t>(size), "decode_safetensors: data within the input");
  io::Safetensors again;
  mdiff_fuzz::require(mdiff_fuzz::accepts("decode(encode(x))",
                                          [&] { again = io::decode_safetensors(io::encode_safetensors(st.tensors, st.metadata)); }),
                      "decode_safetensors accepts what encode_safetensors wrote");
  mdiff_fuzz::require(again.tensors.size() == st.tensors.size() && again.metadata == st.metadata,
                      "round trip keeps names and metadata");
  for (size_t i = 0; i < st.tensors.size(); ++i) {
    const at::Tensor& a = st.tensors[i].second;
    const at::Tensor& b = again.tensors[i].second;
    mdiff_fuzz::require(again.tensors[i].first == st.tensors[i].first && a.scalar_type() == b.scalar_type() &&
                            a.sizes() == b.sizes(),
                        "round trip keeps each tensor's name, dtype and shape");
    // Bit-exact, NaN payloads included: compare the bytes.
    const at::Tensor ac = a.contiguous();
    const at::Tensor bc = b.contiguous();
    mdiff_fuzz::require(a.numel() == 0 || std::memcmp(ac.data_ptr(), bc.data_ptr(), ac.nbytes()) == 0,
                        "round trip keeps each tensor's bytes");
  }
  return 0;
}
