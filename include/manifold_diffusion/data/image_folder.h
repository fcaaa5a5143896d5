#pragma once

/// \file
/// A labelled image data set from a folder of PNG files, one subfolder per class.
/// Guide: docs/data.md.

#include <manifold_diffusion/core/namespace.h>
#include <manifold_diffusion/data/idx.h>

#include <torch/arg.h>

#include <cstdint>
#include <string>
#include <vector>

namespace manifold_diffusion {
namespace data {

/// How load_image_folder finds, converts and resizes images.
///
/// Example:
/// \code
///   auto opts = mdiff::data::ImageFolderOptions().channels(1).size({32}).max_files(1000);
/// \endcode
struct ImageFolderOptions {
  /// 1 (gray) or 3 (RGB). Gray becomes RGB by repetition, RGB becomes gray by the BT.601 luma
  /// 0.299 R + 0.587 G + 0.114 B. An alpha channel is composited onto white, then dropped.
  TORCH_ARG(int64_t, channels) = 3;
  /// Output size: {} keeps every image's own size (then all must match), {s} is s x s, {h, w} is
  /// h x w. Shrinking averages areas (adaptive average pooling); enlarging interpolates bilinearly
  /// (half-pixel centres); each axis is treated on its own.
  TORCH_ARG(std::vector<int64_t>, size) = {};
  /// Load at most this many files (the first ones in sorted order); 0 loads all.
  TORCH_ARG(int64_t, max_files) = 0;
  /// Look into every depth of each class folder; false takes only the files directly inside.
  TORCH_ARG(bool, recursive) = true;
  /// File extensions to load, compared without regard to case.
  TORCH_ARG(std::vector<std::string>, extensions) = {".png"};
};

/// What load_image_folder returns.
///
/// Example:
/// \code
///   mdiff::data::ImageFolder f = mdiff::data::load_image_folder("flowers");
///   std::cout << f.classes[f.data.labels[0].item<int64_t>()] << " " << f.files[0] << "\n";
/// \endcode
struct ImageFolder {
  /// images float32 [N, C, H, W] in [-1, 1]; labels int64 [N] indexing `classes`.
  LabeledImages data;
  /// Class names in label order: the sorted first-level subfolder names ("" for files in the root).
  std::vector<std::string> classes;
  /// Path of each image (the folder joined with the path inside it), in the order of `data`.
  std::vector<std::string> files;
};

/// Loads every image under `dir` whose extension is in `options.extensions()`. Files are taken in
/// sorted order of their path inside `dir` (byte-wise), so the result is the same on every run.
/// Labels: each image's class is the name of the first-level subfolder of `dir` that holds it
/// (files directly in `dir` have class ""); `classes` is the sorted list of the classes that hold at
/// least one image, computed before `max_files` cuts the list (so labels do not depend on it), and
/// a label is the index of its class there. A folder with no subfolders thus gives one class "" and
/// label 0 everywhere. Names starting with '.' (hidden files and folders) are skipped. Fails on a
/// missing `dir`, no matching files, an unreadable or corrupt PNG (the message names the file),
/// and images of different sizes when `size` is empty.
///
/// Example:
/// \code
///   // pets/cat/*.png, pets/dog/*.png -> classes {"cat", "dog"}, labels 0 and 1
///   mdiff::data::ImageFolder pets = mdiff::data::load_image_folder(
///       "pets", mdiff::data::ImageFolderOptions().channels(3).size({64}));
///   at::Tensor x = pets.data.images;  // [N, 3, 64, 64] in [-1, 1]
/// \endcode
ImageFolder load_image_folder(const std::string& dir, const ImageFolderOptions& options = {});

}  // namespace data
}  // namespace manifold_diffusion
