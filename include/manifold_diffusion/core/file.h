#pragma once
/// \file
/// Crash-safe file writing and bounded file reading.
///
/// Example:
/// \code
///   mdiff::atomic_write_text("out/metrics.json", json);
///   mdiff::atomic_write("out/points.csv", [&](const std::string& tmp) { std::ofstream(tmp) << csv_text; });
///   std::vector<uint8_t> bytes = mdiff::read_file_bytes("image.png", 1 << 26);
/// \endcode

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace manifold_diffusion {

/// Writes `path` atomically: `writer` writes a temporary file in the same folder, which is flushed
/// to disk (fsync) and renamed over `path`, then the folder is flushed; `path` is always either the
/// old or the complete new file. A failure (full disk, read-only folder, writer exception) removes
/// the temporary file, leaves `path` untouched and throws an error naming `path`.
///
/// Example:
/// \code
///   mdiff::atomic_write("out/metrics.json", [&](const std::string& tmp) { std::ofstream(tmp) << json; });
/// \endcode
void atomic_write(const std::string& path, const std::function<void(const std::string& tmp_path)>& writer);

/// atomic_write() of a string.
void atomic_write_text(const std::string& path, const std::string& text);

/// atomic_write() of a byte buffer.
void write_file_atomically(const std::string& path, const void* data, size_t size);

/// The whole file; `max_bytes` >= 0 limits its size (a larger file is an error naming it).
std::vector<uint8_t> read_file_bytes(const std::string& path, int64_t max_bytes = -1);

}  // namespace manifold_diffusion
