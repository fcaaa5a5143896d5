#pragma once
// Whole-file reads and atomic whole-file writes shared by the io sources.

#include <cstdint>
#include <string>
#include <vector>

namespace manifold_diffusion {
namespace io {
namespace detail {

// The bytes of the file at `path`; fails naming `caller` and the path when it cannot be read.
std::vector<uint8_t> read_file_bytes(const std::string& path, const char* caller);

// Writes `size` bytes to a temporary file in the folder of `path`, then renames it onto `path`.
// Fails naming `caller`, the path and the system's reason; a temporary file is never left behind.
void write_file_atomically(const std::string& path, const void* data, size_t size, const char* caller);

}  // namespace detail
}  // namespace io
}  // namespace manifold_diffusion
