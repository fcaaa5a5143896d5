#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/core/file.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace manifold_diffusion {

namespace fs = std::filesystem;

namespace {

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) {
    MD_CHECK(directory, "cannot open '", path, "' to flush it: ", std::strerror(errno));
    return;  // some file systems do not allow opening folders; the rename is still atomic
  }
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  MD_CHECK(rc == 0 || directory, "cannot flush '", path, "' to disk: ", std::strerror(err));
}

std::string temp_name(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  return path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
}

}  // namespace

void atomic_write(const std::string& path, const std::function<void(const std::string& tmp_path)>& writer) {
  MD_CHECK_VALUE(!path.empty(), "atomic_write: empty path");
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::error_code ec;
  MD_CHECK(fs::is_directory(dir, ec), "cannot write '", path, "': folder '", dir.string(), "' does not exist");
  const std::string tmp = temp_name(path);
  try {
    writer(tmp);
    MD_CHECK(fs::exists(tmp, ec), "cannot write '", path, "': the writer produced no file");
    fsync_path(tmp, false);
    MD_CHECK(::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename '", tmp, "' to '", path,
             "': ", std::strerror(errno));
  } catch (const c10::Error& e) {
    fs::remove(tmp, ec);
    MD_CHECK(false, "cannot write '", path, "' (previous file left intact): ", e.what_without_backtrace());
  } catch (const std::exception& e) {
    fs::remove(tmp, ec);
    MD_CHECK(false, "cannot write '", path, "' (previous file left intact): ", e.what());
  }
  fsync_path(dir.string(), true);
}

void atomic_write_text(const std::string& path, const std::string& text) {
  atomic_write(path, [&](const std::string& tmp) {
    std::ofstream f(tmp, std::ios::binary);
    MD_CHECK(f.good(), "cannot open '", tmp, "' for writing: ", std::strerror(errno));
    f.write(text.data(), static_cast<std::streamsize>(text.size()));
    f.flush();
    MD_CHECK(f.good(), "write to '", tmp, "' failed (disk full?): ", std::strerror(errno));
  });
}

void write_file_atomically(const std::string& path, const void* data, size_t size) {
  atomic_write(path, [&](const std::string& tmp) {
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    MD_CHECK(f != nullptr, "cannot create '", tmp, "': ", std::strerror(errno));
    const size_t put = size == 0 ? 0 : std::fwrite(data, 1, size, f);
    const int err = errno;
    const bool closed = std::fclose(f) == 0;
    MD_CHECK(put == size && closed, "write to '", tmp, "' failed (disk full?): ", std::strerror(err));
  });
}

std::vector<uint8_t> read_file_bytes(const std::string& path, int64_t max_bytes) {
  std::error_code ec;
  MD_CHECK(!fs::is_directory(path, ec), "'", path, "' is a directory, not a file");
  std::FILE* f = std::fopen(path.c_str(), "rb");
  MD_CHECK(f != nullptr, "cannot open '", path, "': ", std::strerror(errno));
  std::vector<uint8_t> bytes;
  constexpr size_t kChunk = size_t{1} << 16;
  bool too_big = false;
  for (;;) {
    const size_t old = bytes.size();
    bytes.resize(old + kChunk);
    const size_t got = std::fread(bytes.data() + old, 1, kChunk, f);
    bytes.resize(old + got);
    if (max_bytes >= 0 && bytes.size() > static_cast<size_t>(max_bytes)) {
      too_big = true;
      break;
    }
    if (got < kChunk) break;
  }
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  MD_CHECK(!too_big, "'", path, "' is larger than the limit of ", max_bytes, " bytes");
  MD_CHECK(!failed, "error reading '", path, "'");
  return bytes;
}

}  // namespace manifold_diffusion
