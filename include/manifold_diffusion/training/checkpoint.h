#pragma once
/// \file
/// Crash-safe files: atomic writes (temporary file, fsync, rename, fsync of the folder) and the
/// numbered checkpoint files of a training run (`ckpt-00001000.pt`, keep the last K).
///
/// Example:
/// \code
///   mdiff::atomic_write("out/model.pt", [&](const std::string& tmp) { torch::save(net, tmp); });
///   auto files = mdiff::list_checkpoints("out/checkpoints");   // oldest first
/// \endcode

#include <manifold_diffusion/core/file.h>
#include <manifold_diffusion/models/ema.h>

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
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
};

/// The checkpoint files `ckpt-<step>.pt` in `dir`, sorted by step (oldest first). A missing folder
/// gives an empty list; temporary files of interrupted writes are ignored.
///
/// Example:
/// \code
///   for (const auto& c : mdiff::list_checkpoints("out/ckpt")) fmt::print("{} {}\n", c.step, c.path);
/// \endcode
std::vector<CheckpointFile> list_checkpoints(const std::string& dir);

/// The path of the checkpoint for `step` in `dir`.
std::string checkpoint_path(const std::string& dir, int64_t step);

/// Deletes all but the newest `keep` checkpoints in `dir` (and stale temporary files).
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

/// Loads a model's weights from a Trainer checkpoint into `module`: the EMA weights when `ema` is
/// true (an error when the checkpoint has none), else the trained weights. Returns the checkpoint's
/// step. For sampling programs that need no Trainer.
///
/// Example:
/// \code
///   mdiff::UNet unet(mdiff::UNetOptions::from_json(config));
///   int64_t step = mdiff::load_weights("out/fmnist/checkpoints/ckpt-00020000.pt", *unet);
/// \endcode
int64_t load_weights(const std::string& checkpoint, torch::nn::Module& module, bool ema = true);

/// Parameters and buffers of `module` by name (detached, sharing storage).
NamedTensors module_state(const torch::nn::Module& module);

}  // namespace manifold_diffusion
