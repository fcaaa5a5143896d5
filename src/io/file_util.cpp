#include "io/file_util.h"

#include <manifold_diffusion/core/check.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <system_error>

namespace manifold_diffusion {
namespace io {
namespace detail {

std::vector<uint8_t> read_file_bytes(const std::string& path, const char* caller) {
  std::error_code ec;
  MD_CHECK(!std::filesystem::is_directory(path, ec), caller, ": '", path, "' is a directory, not a file");
  std::FILE* f = std::fopen(path.c_str(), "rb");
  MD_CHECK(f != nullptr, caller, ": cannot open '", path, "': ", std::strerror(errno));
  std::vector<uint8_t> bytes;
  uint8_t buf[1 << 16];
  for (;;) {
    const size_t got = std::fread(buf, 1, sizeof(buf), f);
    bytes.insert(bytes.end(), buf, buf + got);
    if (got < sizeof(buf)) break;
  }
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  MD_CHECK(!failed, caller, ": error reading '", path, "'");
  return bytes;
}

void write_file_atomically(const std::string& path, const void* data, size_t size, const char* caller) {
  namespace fs = std::filesystem;
  MD_CHECK_VALUE(!path.empty(), caller, ": the path is empty");
  const fs::path target(path);
  const fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::error_code ec;
  MD_CHECK(fs::is_directory(folder, ec), caller, ": cannot write '", path, "': folder '", folder.string(),
           "' does not exist");
  MD_CHECK(!fs::is_directory(target, ec), caller, ": cannot write '", path, "': it is a directory");
  std::random_device rd;
  const fs::path tmp = folder / ("." + target.filename().string() + ".tmp" + std::to_string(rd()));
  std::FILE* f = std::fopen(tmp.string().c_str(), "wb");
  MD_CHECK(f != nullptr, caller, ": cannot write '", path, "': cannot create a file in folder '", folder.string(),
           "': ", std::strerror(errno));
  const size_t put = size == 0 ? 0 : std::fwrite(data, 1, size, f);
  const int write_errno = errno;
  const bool closed = std::fclose(f) == 0;
  if (put != size || !closed) {
    fs::remove(tmp, ec);
    MD_CHECK(false, caller, ": error writing '", path, "': ", std::strerror(write_errno));
  }
  fs::rename(tmp, target, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    MD_CHECK(false, caller, ": cannot move the new file onto '", path, "': ", ec.message());
  }
}

}  // namespace detail
}  // namespace io
}  // namespace manifold_diffusion
