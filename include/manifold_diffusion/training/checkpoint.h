#pragma once
/// \file
/// Crash-safe files: atomic writes (temporary file, fsync, rename, fsync of the folder), the state
/// files of this library (sections of named tensors in a safetensors file) and the numbered
/// checkpoint files of a training run (`ckpt-00001000.safetensors`, keep the last K).
///
/// Example:
/// \code
///   mdiff::atomic_write("out/points.csv", [&](const std::string& tmp) { std::ofstream(tmp) << csv_text; });
///   auto files = mdiff::list_checkpoints("out/checkpoints");   // oldest first
/// \endcode

#include <manifold_diffusion/core/file.h>
#include <manifold_diffusion/io/safetensors.h>
#include <manifold_diffusion/models/ema.h>

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace torch {
namespace serialize {
class InputArchive;
class OutputArchive;
}  // namespace serialize
}  // namespace torch

namespace manifold_diffusion {

/// A checkpoint file of a run and the step it holds.
struct CheckpointFile {
  std::string path;
  int64_t step = 0;
  /// A `ckpt-<step>.pt` LibTorch archive of manifold_diffusion 0.1: listed so that a run is never
  /// silently restarted (loading it is refused by name), never pruned.
  bool legacy = false;
};

/// A state file of this library: trainer checkpoints, autoencoders and classifiers are written as
/// one. It is a safetensors file whose tensors are grouped into sections (tensor `<section>/<name>`)
/// and whose metadata names the kind of file and its format version (`mdiff.kind`,
/// `mdiff.format`), so any safetensors reader opens it (Python: `safetensors.torch.load_file`).
///
/// Reading checks everything before it is used: the safetensors checks of decode_safetensors()
/// (sizes and offsets before any allocation), then the kind and the format. A LibTorch archive (the
/// zip files of manifold_diffusion 0.1) is refused by name before any parser sees it.
///
/// Example:
/// \code
///   mdiff::StateFile f("my-component", 1);
///   f.add_section("weights", mdiff::module_state(*net));
///   f.metadata["step"] = "10";
///   f.save("out/my-component.safetensors");
///   mdiff::StateFile back = mdiff::StateFile::load("out/my-component.safetensors", "my-component", 1,
///                                                  "my component 'out/my-component.safetensors'");
///   mdiff::load_module_state(*net, back.section("weights"), "out/my-component.safetensors");
///   int64_t step = back.metadata_int("step");
/// \endcode
struct StateFile {
  StateFile() = default;
  /// An empty file of `kind` (non-empty) and `format` (>= 1).
  StateFile(std::string kind, int64_t format);

  std::string kind;
  int64_t format = 0;
  /// Free-form metadata (the `mdiff.` and `format` keys are set on writing).
  std::map<std::string, std::string> metadata;
  /// Every tensor, named `<section>/<name>`, in file order.
  io::TensorList tensors;

  /// Appends `tensors` as section `section` (non-empty, without '/'; names non-empty).
  void add_section(const std::string& section, const NamedTensors& tensors);
  /// The tensors of `section` in file order, without the prefix; empty when absent.
  NamedTensors section(const std::string& section) const;
  /// Whether any tensor belongs to `section`.
  bool has_section(const std::string& section) const;
  /// The metadata entry `key` as an integer; a missing or malformed entry is an error naming `key`.
  int64_t metadata_int(const std::string& key) const;
  /// The number of values (elements) stored in `section`.
  int64_t values(const std::string& section) const;

  /// The file's bytes.
  std::vector<uint8_t> encode() const;
  /// Writes encode() to `path` atomically (the previous file stays intact on any failure).
  void save(const std::string& path) const;
  /// Parses `size` bytes at `data`, which must be of `kind` and `format`. Every message starts with
  /// `what` (e.g. "checkpoint 'out/ckpt-00000100.safetensors'").
  static StateFile decode(const uint8_t* data, size_t size, const std::string& kind, int64_t format,
                          const std::string& what);
  /// Reads the file at `path` as decode() does; a missing file is an error naming it.
  static StateFile load(const std::string& path, const std::string& kind, int64_t format, const std::string& what);

 private:
  std::string what_;  // for metadata_int's messages
};

/// The kind and format of a Trainer checkpoint (a StateFile). Sections: `model`, `ema`,
/// `optimizer`, `rng`, `data`, `guard` and `term.<name>` per loss term; metadata `step`, `skipped`,
/// `total_steps`.
///
/// Example:
/// \code
///   auto f = mdiff::StateFile::load(path, mdiff::kTrainerCheckpointKind, mdiff::kTrainerCheckpointFormat, path);
///   for (const auto& [name, t] : f.section("model")) fmt::print("{} {}\n", name, t.sizes());
/// \endcode
constexpr const char* kTrainerCheckpointKind = "trainer-checkpoint";
/// See kTrainerCheckpointKind (format 1 was the LibTorch archive of manifold_diffusion 0.1).
constexpr int64_t kTrainerCheckpointFormat = 2;

/// The checkpoint files `ckpt-<step>.safetensors` in `dir`, sorted by step (oldest first), with any
/// `ckpt-<step>.pt` of manifold_diffusion 0.1 (which the Trainer refuses by name). A missing folder
/// gives an empty list; temporary files of interrupted writes are ignored.
///
/// Example:
/// \code
///   for (const auto& c : mdiff::list_checkpoints("out/ckpt")) fmt::print("{} {}\n", c.step, c.path);
/// \endcode
std::vector<CheckpointFile> list_checkpoints(const std::string& dir);

/// The path of the checkpoint for `step` in `dir`.
std::string checkpoint_path(const std::string& dir, int64_t step);

/// Deletes all but the newest `keep` checkpoints in `dir` (and stale temporary files). Legacy
/// (0.1) files neither count nor are deleted.
void prune_checkpoints(const std::string& dir, int64_t keep);

/// Writes `archive` to `path` atomically, serialised in memory first: a full disk or an I/O error
/// is a c10::Error naming the file and the previous file stays intact. (LibTorch's own file writer
/// throws from a destructor when a write fails, which ends the process.)
///
/// Example:
/// \code
///   torch::serialize::OutputArchive ar;
///   ar.write("step", c10::IValue(int64_t{10}));
///   mdiff::save_archive_atomically(ar, "out/state.pt");
/// \endcode
void save_archive_atomically(torch::serialize::OutputArchive& archive, const std::string& path);

/// Runs `fn`, which reads a LibTorch archive, and turns any failure into a c10::Error whose message
/// starts with `what`. LibTorch's reader throws more than c10::Error on damaged input (e.g.
/// torch::jit::ErrorReport from the archive's code section, std::out_of_range from the unpickler);
/// every reader of this library goes through here so that callers see one error type.
///
/// Example:
/// \code
///   torch::serialize::InputArchive ar;
///   mdiff::guard_archive_read("checkpoint 'x.pt'", [&] { ar.load_from("x.pt"); });
/// \endcode
void guard_archive_read(const std::string& what, const std::function<void()>& fn);

/// Named tensors in an archive under `key` (names may contain '.').
void write_named_tensors(torch::serialize::OutputArchive& archive, const std::string& key,
                         const NamedTensors& tensors);
/// Reads what write_named_tensors() wrote; a missing key is an error naming it.
NamedTensors read_named_tensors(torch::serialize::InputArchive& archive, const std::string& key);

/// Copies `source` into the parameters and buffers of `module` by name; a missing or extra name, or
/// a shape mismatch, is an error naming it (`what` prefixes messages, e.g. the file name).
void load_module_state(torch::nn::Module& module, const NamedTensors& source, const std::string& what);

/// Loads a model's weights into `module`, reading the file once, from
/// - a Trainer checkpoint: the EMA weights when `ema` is true (an error when it has none), else the
///   trained weights; returns the checkpoint's step;
/// - or a safetensors file of the module's own tensors (save_module_safetensors,
///   save_ema_safetensors, e.g. mdiff-train's weights-ema.safetensors): loaded as it is, `ema`
///   ignored; returns its `step` metadata, or -1.
///
/// A LibTorch archive is refused by name. For sampling programs that need no Trainer.
///
/// Example:
/// \code
///   mdiff::UNet unet(mdiff::UNetOptions::from_json(config));
///   int64_t step = mdiff::load_weights("out/fmnist/checkpoints/ckpt-00020000.safetensors", *unet);
///   mdiff::load_weights("out/fmnist/weights-ema.safetensors", *unet);
/// \endcode
int64_t load_weights(const std::string& checkpoint, torch::nn::Module& module, bool ema = true);

/// The module_state() name of an EMA::named_state() entry ("param.w" -> "w", "buffer.b" ->
/// "buffer:b"); "" for the EMA's own counters.
///
/// Example:
/// \code
///   for (const auto& [name, t] : ema.named_state()) fmt::print("{}\n", mdiff::ema_entry_module_name(name));
/// \endcode
std::string ema_entry_module_name(const std::string& name);

/// Parameters and buffers of `module` by name (detached, sharing storage).
NamedTensors module_state(const torch::nn::Module& module);

}  // namespace manifold_diffusion
