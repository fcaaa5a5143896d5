#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/core/file.h>
#include <manifold_diffusion/io/safetensors.h>
#include <manifold_diffusion/models/diffusers_unet.h>

#include <ATen/ATen.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

namespace manifold_diffusion {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

constexpr const char* kWho = "diffusers UNet2DModel config";
constexpr const char* kWeights = "diffusion_pytorch_model.safetensors";

std::string read_text(const std::string& path, const char* who) {
  std::vector<uint8_t> bytes;
  try {
    bytes = read_file_bytes(path, int64_t{1} << 26);
  } catch (const c10::Error& e) {
    MD_CHECK(false, who, ": ", e.what_without_backtrace());
  }
  return std::string(bytes.begin(), bytes.end());
}

std::vector<int64_t> level_sizes(int64_t image_size, size_t levels) {
  std::vector<int64_t> sizes;
  for (size_t i = 0; i < levels; ++i) {
    sizes.push_back(image_size);
    image_size = (image_size + 1) / 2;
  }
  return sizes;
}

bool distinct(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  return std::adjacent_find(v.begin(), v.end()) == v.end();
}

// ---- parameter names --------------------------------------------------------------------------

enum class Kind { Res, Attention, Down, Up };

struct Block {
  Kind kind;
  std::string ours;    // e.g. "down.3"
  std::string theirs;  // e.g. "down_blocks.1.attentions.0"
};

// The blocks of a UNet in the order UNetImpl::reset() builds them, with their diffusers names.
std::vector<Block> blocks_of(const UNetOptions& o) {
  std::vector<Block> out;
  const auto levels = static_cast<int64_t>(o.channel_mult().size());
  const std::vector<int64_t> sizes = level_sizes(o.image_size(), o.channel_mult().size());
  auto attn = [&](int64_t level) {
    const auto& r = o.attention_resolutions();
    return std::find(r.begin(), r.end(), sizes[level]) != r.end();
  };
  int64_t i = 0;
  for (int64_t level = 0; level < levels; ++level) {
    const std::string b = "down_blocks." + std::to_string(level);
    for (int64_t r = 0; r < o.num_res_blocks(); ++r) {
      out.push_back({Kind::Res, "down." + std::to_string(i++), b + ".resnets." + std::to_string(r)});
      if (attn(level)) out.push_back({Kind::Attention, "down." + std::to_string(i++), b + ".attentions." + std::to_string(r)});
    }
    if (level + 1 < levels) out.push_back({Kind::Down, "down." + std::to_string(i++), b + ".downsamplers.0"});
  }
  i = 0;
  out.push_back({Kind::Res, "middle." + std::to_string(i++), "mid_block.resnets.0"});
  if (o.middle_attention()) out.push_back({Kind::Attention, "middle." + std::to_string(i++), "mid_block.attentions.0"});
  out.push_back({Kind::Res, "middle." + std::to_string(i++), "mid_block.resnets.1"});
  i = 0;
  for (int64_t level = levels - 1; level >= 0; --level) {
    const std::string b = "up_blocks." + std::to_string(levels - 1 - level);
    for (int64_t r = 0; r <= o.num_res_blocks(); ++r) {
      out.push_back({Kind::Res, "up." + std::to_string(i++), b + ".resnets." + std::to_string(r)});
      if (attn(level)) out.push_back({Kind::Attention, "up." + std::to_string(i++), b + ".attentions." + std::to_string(r)});
    }
    if (level > 0) out.push_back({Kind::Up, "up." + std::to_string(i++), b + ".upsamplers.0"});
  }
  return out;
}

// One of our parameters and where it comes from.
enum class Map { Copy, Conv1x1, Qkv, TimeFc1Swap };

struct Param {
  std::string ours;
  std::vector<std::string> theirs;  // Qkv: q, k, v
  Map map = Map::Copy;
};

std::vector<Param> params_of(const UNetOptions& o, bool swap_sin_cos, const std::set<std::string>& ours_present,
                             const std::function<bool(const std::string&)>& theirs_has) {
  std::vector<Param> out;
  auto both = [&](const std::string& a, const std::string& b, Map m = Map::Copy) {
    for (const char* s : {".weight", ".bias"}) {
      if (ours_present.count(a + s)) out.push_back({a + s, {b + s}, m});
    }
  };
  both("input_conv", "conv_in");
  out.push_back({"time_fc1.weight", {"time_embedding.linear_1.weight"}, swap_sin_cos ? Map::TimeFc1Swap : Map::Copy});
  out.push_back({"time_fc1.bias", {"time_embedding.linear_1.bias"}});
  both("time_fc2", "time_embedding.linear_2");
  if (o.num_classes() > 0) out.push_back({"label_embedding.weight", {"class_embedding.weight"}});
  for (const Block& b : blocks_of(o)) {
    switch (b.kind) {
      case Kind::Res:
        both(b.ours + ".norm1", b.theirs + ".norm1");
        both(b.ours + ".conv1", b.theirs + ".conv1");
        both(b.ours + ".emb_proj", b.theirs + ".time_emb_proj");
        both(b.ours + ".norm2", b.theirs + ".norm2");
        both(b.ours + ".conv2", b.theirs + ".conv2");
        both(b.ours + ".skip", b.theirs + ".conv_shortcut");
        break;
      case Kind::Attention: {
        // diffusers' current names, or those of its old attention block (converted on load there too).
        const bool old = theirs_has && theirs_has(b.theirs + ".query.weight");
        both(b.ours + ".norm", b.theirs + ".group_norm");
        for (const char* s : {".weight", ".bias"}) {
          if (old) {
            out.push_back({b.ours + ".qkv" + s, {b.theirs + ".query" + s, b.theirs + ".key" + s, b.theirs + ".value" + s}, Map::Qkv});
          } else {
            out.push_back({b.ours + ".qkv" + s, {b.theirs + ".to_q" + s, b.theirs + ".to_k" + s, b.theirs + ".to_v" + s}, Map::Qkv});
          }
          out.push_back({b.ours + ".proj" + s, {b.theirs + (old ? ".proj_attn" : ".to_out.0") + s}, Map::Conv1x1});
        }
        break;
      }
      case Kind::Down:
      case Kind::Up:
        both(b.ours + ".conv", b.theirs + ".conv");
        break;
    }
  }
  both("output_norm", "conv_norm_out");
  both("output_conv", "conv_out");
  return out;
}

// ---- config -----------------------------------------------------------------------------------

template <typename T>
T get(const json& j, const char* key, const T& fallback) {
  if (!j.contains(key)) return fallback;
  try {
    return j.at(key).get<T>();
  } catch (const json::exception&) {
    MD_CHECK_VALUE(false, kWho, ": '", key, "' has the wrong type: ", j.at(key).dump());
  }
  return fallback;
}

int64_t get_int(const json& j, const char* key, int64_t fallback) {
  if (!j.contains(key)) return fallback;
  const json& v = j.at(key);
  MD_CHECK_VALUE(v.is_number_integer(), kWho, ": '", key, "' must be an integer, got ", v.dump());
  return v.get<int64_t>();
}

double get_number(const json& j, const char* key, double fallback) {
  if (!j.contains(key)) return fallback;
  const json& v = j.at(key);
  MD_CHECK_VALUE(v.is_number(), kWho, ": '", key, "' must be a number, got ", v.dump());
  return v.get<double>();
}

void require(const json& j, const char* key, const json& allowed, const char* why) {
  if (!j.contains(key)) return;
  const json& v = j.at(key);
  bool ok = false;
  for (const auto& a : allowed) ok = ok || v == a;
  MD_CHECK_VALUE(ok, kWho, ": ", key, " = ", v.dump(), " is not supported (", why, ")");
}

}  // namespace

UNetOptions unet_options_from_diffusers_config(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    MD_CHECK_VALUE(false, kWho, ": invalid JSON: ", e.what());
  }
  MD_CHECK_VALUE(j.is_object(), kWho, ": expected a JSON object, got ", j.type_name());
  static const std::set<std::string> known = {
      "sample_size", "in_channels", "out_channels", "center_input_sample", "time_embedding_type", "freq_shift",
      "flip_sin_to_cos", "down_block_types", "up_block_types", "block_out_channels", "layers_per_block",
      "mid_block_scale_factor", "downsample_padding", "downsample_type", "upsample_type", "dropout", "act_fn",
      "attention_head_dim", "norm_num_groups", "attn_norm_num_groups", "norm_eps", "resnet_time_scale_shift",
      "add_attention", "class_embed_type", "num_class_embeds", "num_train_timesteps"};
  for (const auto& item : j.items()) {
    if (!item.key().empty() && item.key()[0] == '_') continue;
    MD_CHECK_VALUE(known.count(item.key()), kWho, ": unknown key '", item.key(), "' = ", item.value().dump(),
                   " (keys of diffusers 0.27's UNet2DModel are understood)");
  }
  if (j.contains("_class_name")) {
    MD_CHECK_VALUE(j["_class_name"] == "UNet2DModel", kWho, ": _class_name = ", j["_class_name"].dump(),
                   " is not supported (only UNet2DModel)");
  }
  require(j, "center_input_sample", {false}, "the UNet takes its input as is");
  require(j, "time_embedding_type", {"positional"}, "only the sinusoidal 'positional' embedding maps");
  require(j, "mid_block_scale_factor", {1, 1.0}, "residual outputs are not rescaled here");
  require(j, "downsample_padding", {1}, "the downsampling convolution pads by 1");
  require(j, "downsample_type", {"conv"}, "only strided-convolution downsampling maps");
  require(j, "upsample_type", {"conv"}, "only nearest-neighbour plus convolution upsampling maps");
  require(j, "act_fn", {"silu", "swish"}, "the UNet uses SiLU");
  require(j, "resnet_time_scale_shift", {"default", "scale_shift"}, "additive or FiLM conditioning only");
  require(j, "class_embed_type", {nullptr}, "only the class-index embedding (num_class_embeds) maps");

  const auto down = get<std::vector<std::string>>(j, "down_block_types",
                                                   {"DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"});
  const auto up = get<std::vector<std::string>>(j, "up_block_types",
                                                 {"AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"});
  const auto channels = get<std::vector<int64_t>>(j, "block_out_channels", {224, 448, 672, 896});
  MD_CHECK_VALUE(!channels.empty(), kWho, ": block_out_channels is empty");
  MD_CHECK_VALUE(down.size() == channels.size() && up.size() == channels.size(), kWho,
                 ": down_block_types, up_block_types and block_out_channels must have the same length, got ", down.size(),
                 ", ", up.size(), " and ", channels.size());
  const int64_t base = channels[0];
  MD_CHECK_VALUE(base > 0, kWho, ": block_out_channels[0] must be positive, got ", base);
  std::vector<int64_t> mult;
  for (size_t i = 0; i < channels.size(); ++i) {
    MD_CHECK_VALUE(channels[i] > 0 && channels[i] % base == 0, kWho, ": block_out_channels[", i, "] = ", channels[i],
                   " is not a multiple of block_out_channels[0] = ", base, " (the UNet's levels are base_channels * channel_mult)");
    mult.push_back(channels[i] / base);
  }
  const size_t levels = channels.size();
  std::vector<bool> attention(levels);
  for (size_t i = 0; i < levels; ++i) {
    MD_CHECK_VALUE(down[i] == "DownBlock2D" || down[i] == "AttnDownBlock2D", kWho, ": down_block_types[", i, "] = '",
                   down[i], "' is not supported (DownBlock2D and AttnDownBlock2D map)");
    const std::string& u = up[levels - 1 - i];
    MD_CHECK_VALUE(u == "UpBlock2D" || u == "AttnUpBlock2D", kWho, ": up_block_types[", levels - 1 - i, "] = '", u,
                   "' is not supported (UpBlock2D and AttnUpBlock2D map)");
    attention[i] = down[i] == "AttnDownBlock2D";
    MD_CHECK_VALUE(attention[i] == (u == "AttnUpBlock2D"), kWho, ": down_block_types[", i, "] = '", down[i],
                   "' but up_block_types[", levels - 1 - i, "] = '", u,
                   "': the UNet has attention at the same levels on the way down and up");
  }

  int64_t image_size = 0;
  if (j.contains("sample_size") && !j["sample_size"].is_null()) {
    const json& s = j["sample_size"];
    if (s.is_array()) {
      MD_CHECK_VALUE(s.size() == 2 && s[0].is_number_integer() && s[0] == s[1], kWho, ": sample_size = ", s.dump(),
                     " is not supported (square images only)");
      image_size = s[0].get<int64_t>();
    } else {
      MD_CHECK_VALUE(s.is_number_integer() && s.get<int64_t>() > 0, kWho, ": sample_size must be a positive integer, got ",
                     s.dump());
      image_size = s.get<int64_t>();
    }
  }
  // Attention sits at levels chosen by feature-map size: the sizes must tell the levels apart.
  if (image_size <= 0 || !distinct(level_sizes(image_size, levels))) {
    const int64_t fallback = int64_t{1} << (levels - 1);
    fmt::print(stderr, "warning: {}: sample_size {} does not tell the {} levels apart; the UNet's image_size is set to {} "
               "(it only places attention; any side divisible by {} works)\n", kWho, image_size, levels, fallback,
               fallback);
    image_size = fallback;
  }
  const std::vector<int64_t> sizes = level_sizes(image_size, levels);
  std::vector<int64_t> attention_resolutions;
  for (size_t i = 0; i < levels; ++i) {
    if (attention[i]) attention_resolutions.push_back(sizes[i]);
  }

  UNetOptions o(get_int(j, "in_channels", 3), get_int(j, "out_channels", 3));
  o.base_channels(base).channel_mult(mult).attention_resolutions(attention_resolutions).image_size(image_size);
  o.num_res_blocks(get_int(j, "layers_per_block", 2));
  o.middle_attention(get<bool>(j, "add_attention", true));
  o.dropout(get_number(j, "dropout", 0.0));
  MD_CHECK_VALUE(!j.contains("norm_num_groups") || j["norm_num_groups"].is_number_integer(), kWho,
                 ": norm_num_groups = ", j.value("norm_num_groups", json()).dump(), " is not supported (an integer is)");
  o.norm_groups(get_int(j, "norm_num_groups", 32));
  o.norm_eps(get_number(j, "norm_eps", 1e-5));
  const std::string shift = get<std::string>(j, "resnet_time_scale_shift", "default");
  o.use_scale_shift_norm(shift == "scale_shift");
  if (j.contains("attn_norm_num_groups") && !j["attn_norm_num_groups"].is_null()) {
    MD_CHECK_VALUE(!o.middle_attention() || j["attn_norm_num_groups"] == o.norm_groups(), kWho,
                   ": attn_norm_num_groups = ", j["attn_norm_num_groups"].dump(), " differs from norm_num_groups = ",
                   o.norm_groups(), " (every GroupNorm of the UNet has the same groups)");
  } else {
    MD_CHECK_VALUE(!(o.middle_attention() && o.use_scale_shift_norm()), kWho,
                   ": resnet_time_scale_shift = \"scale_shift\" with add_attention = true and attn_norm_num_groups = null "
                   "is not supported (diffusers' middle attention then has no GroupNorm; set attn_norm_num_groups)");
  }
  if (j.contains("attention_head_dim") && !j["attention_head_dim"].is_null()) {
    const int64_t d = get_int(j, "attention_head_dim", 8);
    MD_CHECK_VALUE(d > 0, kWho, ": attention_head_dim must be positive, got ", d);
    for (size_t i = 0; i < levels; ++i) {
      MD_CHECK_VALUE(!(attention[i] || (i + 1 == levels && get<bool>(j, "add_attention", true))) || channels[i] % d == 0,
                     kWho, ": attention_head_dim = ", d, " must divide the channels of every attention block, got ",
                     channels[i], " (block_out_channels[", i, "])");
    }
    o.num_head_channels(d);
  } else if (j.contains("attention_head_dim")) {
    o.num_heads(1).num_head_channels(-1);  // null: one head as wide as the block
  } else {
    o.num_head_channels(8);  // diffusers' default
  }
  const bool flip = get<bool>(j, "flip_sin_to_cos", true);
  (void)flip;  // [sin, cos] order is mapped by permuting time_embedding.linear_1's columns
  o.freq_shift(get_number(j, "freq_shift", 0.0));
  if (j.contains("num_class_embeds") && !j["num_class_embeds"].is_null()) {
    const int64_t k = get_int(j, "num_class_embeds", 0);
    MD_CHECK_VALUE(k >= 2, kWho, ": num_class_embeds = ", k,
                   " is not supported (at least 2: the last class becomes the UNet's null class)");
    o.num_classes(k - 1);
  }
  o.zero_init_output(false);
  try {
    o.validate();
  } catch (const c10::Error& e) {
    MD_CHECK_VALUE(false, kWho, ": maps to invalid UNetOptions: ", e.what_without_backtrace());
  }
  return o;
}

std::string diffusers_config_from_unet_options(const UNetOptions& o) {
  o.validate();
  const char* who = "diffusers_config_from_unet_options";
  MD_CHECK_VALUE(o.time_embedding() == TimeEmbedding::Sinusoidal, who,
                 ": time_embedding = fourier does not map to a UNet2DModel (only sinusoidal does)");
  MD_CHECK_VALUE(o.augment_dim() == 0, who, ": augment_dim = ", o.augment_dim(),
                 " does not map to a UNet2DModel (no augmentation conditioning there)");
  MD_CHECK_VALUE(!o.resblock_updown(), who, ": resblock_updown = true is not exported (conv down/upsampling only)");
  const size_t levels = o.channel_mult().size();
  const std::vector<int64_t> sizes = level_sizes(o.image_size(), levels);
  ojson down = ojson::array(), up = ojson::array(), channels = ojson::array();
  std::vector<int64_t> attention_channels;
  for (size_t i = 0; i < levels; ++i) {
    const auto& r = o.attention_resolutions();
    const bool attn = std::find(r.begin(), r.end(), sizes[i]) != r.end();
    down.push_back(attn ? "AttnDownBlock2D" : "DownBlock2D");
    channels.push_back(o.base_channels() * o.channel_mult()[i]);
    if (attn) attention_channels.push_back(o.base_channels() * o.channel_mult()[i]);
  }
  for (size_t i = 0; i < levels; ++i) {
    up.push_back(down[levels - 1 - i] == "AttnDownBlock2D" ? "AttnUpBlock2D" : "UpBlock2D");
  }
  if (o.middle_attention()) attention_channels.push_back(o.base_channels() * o.channel_mult().back());
  ojson head_dim = nullptr;
  if (o.num_head_channels() > 0) {
    head_dim = o.num_head_channels();
  } else if (o.num_heads() == 1) {
    head_dim = nullptr;  // one head as wide as each block: diffusers' attention_head_dim null
  } else if (!attention_channels.empty()) {
    const int64_t d = attention_channels.front() / o.num_heads();
    for (int64_t c : attention_channels) {
      MD_CHECK_VALUE(c / o.num_heads() == d, who, ": num_heads = ", o.num_heads(),
                     " gives heads of different widths in blocks of ", attention_channels.front(), " and ", c,
                     " channels; a UNet2DModel has one attention_head_dim (set num_head_channels)");
    }
    head_dim = d;
  }
  ojson j;
  j["_class_name"] = "UNet2DModel";
  j["_diffusers_version"] = "0.27.2";
  j["sample_size"] = o.image_size();
  j["in_channels"] = o.in_channels();
  j["out_channels"] = o.output_channels();
  j["center_input_sample"] = false;
  j["time_embedding_type"] = "positional";
  j["freq_shift"] = o.freq_shift();
  j["flip_sin_to_cos"] = true;
  j["down_block_types"] = down;
  j["up_block_types"] = up;
  j["block_out_channels"] = channels;
  j["layers_per_block"] = o.num_res_blocks();
  j["mid_block_scale_factor"] = 1;
  j["downsample_padding"] = 1;
  j["downsample_type"] = "conv";
  j["upsample_type"] = "conv";
  j["dropout"] = o.dropout();
  j["act_fn"] = "silu";
  j["attention_head_dim"] = head_dim;
  j["norm_num_groups"] = o.norm_groups();
  j["attn_norm_num_groups"] = o.norm_groups();
  j["norm_eps"] = o.norm_eps();
  j["resnet_time_scale_shift"] = o.use_scale_shift_norm() ? "scale_shift" : "default";
  j["add_attention"] = o.middle_attention();
  j["class_embed_type"] = nullptr;
  j["num_class_embeds"] = o.num_classes() > 0 ? ojson(o.num_classes() + 1) : ojson(nullptr);
  j["num_train_timesteps"] = nullptr;
  return j.dump(2) + "\n";
}

UNet load_diffusers_unet(const std::string& dir) {
  const std::string model_dir =
      fs::exists(fs::path(dir) / "config.json") || !fs::exists(fs::path(dir) / "unet" / "config.json")
          ? dir
          : (fs::path(dir) / "unet").string();
  const std::string who = "load_diffusers_unet: '" + model_dir + "'";
  const std::string config_path = (fs::path(model_dir) / "config.json").string();
  MD_CHECK(fs::exists(config_path), who, ": no config.json there (nor in a unet/ subfolder)");
  UNetOptions o = [&] {
    try {
      return unet_options_from_diffusers_config(read_text(config_path, "load_diffusers_unet"));
    } catch (const c10::Error& e) {
      MD_CHECK_VALUE(false, who, ": ", e.what_without_backtrace());
    }
    return UNetOptions(1, 1);
  }();
  const json config = json::parse(read_text(config_path, "load_diffusers_unet"));
  const bool swap = !config.value("flip_sin_to_cos", true);

  const std::string weights = (fs::path(model_dir) / kWeights).string();
  MD_CHECK(fs::exists(weights), who, ": no ", kWeights, " there (only safetensors weights are read)");
  const io::Safetensors st = io::load_safetensors(weights);
  std::map<std::string, at::Tensor> theirs(st.tensors.begin(), st.tensors.end());

  UNet net(o);
  std::set<std::string> ours;
  auto named = net->named_parameters(/*recurse=*/true);
  for (const auto& p : named) ours.insert(p.key());
  MD_CHECK(net->named_buffers(true).is_empty(), who, ": internal: the UNet has buffers");
  std::set<std::string> used;
  auto take = [&](const std::string& name) -> at::Tensor {
    auto it = theirs.find(name);
    MD_CHECK_VALUE(it != theirs.end(), who, ": ", kWeights, " lacks '", name, "'");
    used.insert(name);
    return it->second.to(at::kFloat);
  };
  const std::vector<Param> params = params_of(o, swap, ours, [&](const std::string& n) { return theirs.count(n) > 0; });
  at::NoGradGuard no_grad;
  std::set<std::string> set;
  for (const Param& p : params) {
    at::Tensor v;
    switch (p.map) {
      case Map::Copy:
        v = take(p.theirs[0]);
        break;
      case Map::Conv1x1:
        v = take(p.theirs[0]);
        if (v.dim() == 2) v = v.unsqueeze(-1);  // Linear [out, in] -> Conv1d [out, in, 1]
        break;
      case Map::Qkv: {
        std::vector<at::Tensor> parts;
        for (const auto& n : p.theirs) parts.push_back(take(n));
        for (size_t k = 1; k < parts.size(); ++k) {
          MD_CHECK_VALUE(parts[k].sizes() == parts[0].sizes(), "load_diffusers_unet: '", p.theirs[k], "' has shape ",
                         parts[k].sizes(), " but '", p.theirs[0], "' has ", parts[0].sizes(),
                         " (query, key and value projections must agree)");
        }
        v = at::cat(parts, 0);
        if (v.dim() == 2) v = v.unsqueeze(-1);
        break;
      }
      case Map::TimeFc1Swap: {
        // diffusers feeds [sin, cos] (flip_sin_to_cos false); this UNet's features are [cos, sin].
        v = take(p.theirs[0]);
        const int64_t half = o.base_channels() / 2;
        MD_CHECK_VALUE(v.dim() == 2 && v.size(1) == o.base_channels(), who, ": '", p.theirs[0], "' has shape ",
                       v.sizes(), ", expected [", 4 * o.base_channels(), ", ", o.base_channels(), "]");
        std::vector<at::Tensor> cols{v.narrow(1, half, half), v.narrow(1, 0, half)};
        if (o.base_channels() % 2 == 1) cols.push_back(v.narrow(1, 2 * half, 1));
        v = at::cat(cols, 1);
        break;
      }
    }
    at::Tensor* dst = named.find(p.ours);
    MD_INTERNAL_ASSERT(dst != nullptr, "no parameter ", p.ours);
    MD_CHECK_VALUE(dst->sizes() == v.sizes(), who, ": '", p.theirs[0], "' has shape ", v.sizes(), " where '", p.ours,
                   "' of the UNet the config describes needs ", dst->sizes());
    dst->copy_(v);
    set.insert(p.ours);
  }
  for (const auto& name : ours) {
    MD_INTERNAL_ASSERT(set.count(name), "parameter ", name, " was not mapped");
  }
  for (const auto& [name, t] : theirs) {
    MD_CHECK_VALUE(used.count(name), who, ": ", kWeights, " has '", name,
                   "', which the UNet the config describes does not use");
  }
  net->train(true);
  return net;
}

void export_diffusers_unet(const UNetImpl& unet, const std::string& dir) {
  const UNetOptions& o = unet.options();
  const std::string config = diffusers_config_from_unet_options(o);
  const std::string who = "export_diffusers_unet: '" + dir + "'";
  std::error_code ec;
  fs::create_directories(dir, ec);
  MD_CHECK(fs::is_directory(dir), who, ": cannot create the folder: ", ec.message());
  auto named = unet.named_parameters(/*recurse=*/true);
  std::set<std::string> ours;
  for (const auto& p : named) ours.insert(p.key());
  io::TensorList out;
  for (const Param& p : params_of(o, /*swap_sin_cos=*/false, ours, nullptr)) {
    const at::Tensor v = named.find(p.ours)->detach().to(at::kCPU, at::kFloat).contiguous();
    switch (p.map) {
      case Map::Copy:
      case Map::TimeFc1Swap:
        out.emplace_back(p.theirs[0], v);
        break;
      case Map::Conv1x1:
        out.emplace_back(p.theirs[0], v.dim() == 3 ? v.squeeze(-1).contiguous() : v);
        break;
      case Map::Qkv: {
        const auto parts = v.chunk(3, 0);
        for (size_t k = 0; k < 3; ++k) {
          out.emplace_back(p.theirs[k], parts[k].dim() == 3 ? parts[k].squeeze(-1).contiguous() : parts[k].contiguous());
        }
        break;
      }
    }
  }
  io::save_safetensors((fs::path(dir) / kWeights).string(), out, {{"format", "pt"}});
  atomic_write_text((fs::path(dir) / "config.json").string(), config);
}

}  // namespace manifold_diffusion
