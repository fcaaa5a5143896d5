#include "io/file_util.h"

#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/core/file.h>

#include <filesystem>

namespace manifold_diffusion {
namespace io {
namespace detail {

std::vector<uint8_t> read_file_bytes(const std::string& path, const char* caller) {
  try {
    return manifold_diffusion::read_file_bytes(path);
  } catch (const c10::Error& e) {
    MD_CHECK(false, caller, ": ", e.what_without_backtrace());
  }
  return {};
}

void write_file_atomically(const std::string& path, const void* data, size_t size, const char* caller) {
  MD_CHECK_VALUE(!path.empty(), caller, ": the path is empty");
  std::error_code ec;
  MD_CHECK(!std::filesystem::is_directory(path, ec), caller, ": cannot write '", path, "': it is a directory");
  try {
    manifold_diffusion::write_file_atomically(path, data, size);
  } catch (const c10::Error& e) {
    MD_CHECK(false, caller, ": ", e.what_without_backtrace());
  }
}

}  // namespace detail
}  // namespace io
}  // namespace manifold_diffusion
