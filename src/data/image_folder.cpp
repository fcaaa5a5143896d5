#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/data/image_folder.h>
#include <manifold_diffusion/io/png.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace manifold_diffusion {
namespace data {
namespace {

namespace fs = std::filesystem;

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool hidden(const fs::path& p) {
  const std::string name = p.filename().string();
  return !name.empty() && name[0] == '.';
}

struct Found {
  std::string rel;  // path inside the root, with '/' separators
  std::string cls;  // first-level folder, "" for the root
};

// A decoded image as float [C, H, W] in 0..255 with the requested channel count.
at::Tensor convert(const at::Tensor& u8, int64_t channels) {
  at::Tensor x = u8.to(at::kFloat);
  const int64_t c = x.size(0);
  if (c == 2 || c == 4) {
    const at::Tensor a = x.narrow(0, c - 1, 1).div(255.0);
    x = x.narrow(0, 0, c - 1).mul(a).add(a.neg().add_(1.0).mul_(255.0));
  }
  if (x.size(0) == 3 && channels == 1) {
    x = (x[0].mul(0.299) + x[1].mul(0.587) + x[2].mul(0.114)).unsqueeze(0);
  } else if (x.size(0) == 1 && channels == 3) {
    x = x.expand({3, x.size(1), x.size(2)});
  }
  return x;
}

// Area averaging on the axes that shrink, then bilinear interpolation on the axes that grow.
at::Tensor resize(const at::Tensor& chw, int64_t h, int64_t w) {
  at::Tensor x = chw.unsqueeze(0);
  const int64_t mid_h = std::min(h, x.size(2));
  const int64_t mid_w = std::min(w, x.size(3));
  if (mid_h != x.size(2) || mid_w != x.size(3)) {
    const std::vector<int64_t> mid = {mid_h, mid_w};
    x = at::adaptive_avg_pool2d(x, at::IntArrayRef(mid));
  }
  if (h != x.size(2) || w != x.size(3)) {
    const std::vector<int64_t> out = {h, w};
    x = at::upsample_bilinear2d(x, at::IntArrayRef(out), /*align_corners=*/false);
  }
  return x.squeeze(0);
}

}  // namespace

ImageFolder load_image_folder(const std::string& dir, const ImageFolderOptions& options) {
  MD_CHECK_VALUE(options.channels() == 1 || options.channels() == 3,
                 "ImageFolderOptions::channels must be 1 or 3, got ", options.channels());
  const std::vector<int64_t>& size = options.size();
  MD_CHECK_VALUE(size.size() <= 2, "ImageFolderOptions::size must be {}, {side} or {height, width}, got ", size.size(),
                 " values");
  for (int64_t s : size) check_positive(s, "ImageFolderOptions::size entries");
  check_non_negative(options.max_files(), "ImageFolderOptions::max_files");
  MD_CHECK_VALUE(!options.extensions().empty(), "ImageFolderOptions::extensions must not be empty");
  std::set<std::string> extensions;
  for (const std::string& e : options.extensions()) extensions.insert(lower(e));

  std::error_code ec;
  const fs::path root(dir);
  MD_CHECK(fs::exists(root, ec), "load_image_folder: '", dir, "' does not exist");
  MD_CHECK(fs::is_directory(root, ec), "load_image_folder: '", dir, "' is not a directory");

  std::vector<Found> found;
  auto consider = [&](const fs::directory_entry& entry, const std::string& cls) {
    std::error_code e;
    if (!entry.is_regular_file(e) || hidden(entry.path())) return;
    if (extensions.count(lower(entry.path().extension().string())) == 0) return;
    found.push_back({entry.path().lexically_relative(root).generic_string(), cls});
  };
  std::vector<fs::path> class_dirs;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    if (hidden(it->path())) continue;
    std::error_code e;
    if (it->is_directory(e)) {
      class_dirs.push_back(it->path());
    } else {
      consider(*it, "");
    }
  }
  MD_CHECK(!ec, "load_image_folder: cannot list '", dir, "': ", ec.message());
  for (const fs::path& sub : class_dirs) {
    const std::string cls = sub.filename().string();
    if (options.recursive()) {
      fs::recursive_directory_iterator it(sub, ec);
      for (fs::recursive_directory_iterator end; !ec && it != end; it.increment(ec)) {
        if (hidden(it->path())) {
          std::error_code e;
          if (it->is_directory(e)) it.disable_recursion_pending();
          continue;
        }
        consider(*it, cls);
      }
    } else {
      for (fs::directory_iterator it(sub, ec), end; !ec && it != end; it.increment(ec)) consider(*it, cls);
    }
    MD_CHECK(!ec, "load_image_folder: cannot list '", sub.string(), "': ", ec.message());
  }
  std::string wanted;
  for (const std::string& e : extensions) wanted += (wanted.empty() ? "" : ", ") + e;
  MD_CHECK_VALUE(!found.empty(), "load_image_folder: no image files (", wanted, ") under '", dir, "'");
  std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) { return a.rel < b.rel; });

  ImageFolder out;
  std::set<std::string> class_set;
  for (const Found& f : found) class_set.insert(f.cls);
  out.classes.assign(class_set.begin(), class_set.end());
  std::map<std::string, int64_t> label_of;
  for (size_t i = 0; i < out.classes.size(); ++i) label_of[out.classes[i]] = static_cast<int64_t>(i);
  if (options.max_files() > 0 && static_cast<int64_t>(found.size()) > options.max_files()) {
    found.resize(static_cast<size_t>(options.max_files()));
  }

  std::vector<at::Tensor> images;
  std::vector<int64_t> labels;
  images.reserve(found.size());
  labels.reserve(found.size());
  for (const Found& f : found) {
    const std::string path = (root / fs::path(f.rel)).string();
    at::Tensor img = convert(io::read_png(path), options.channels());
    if (!size.empty()) {
      img = resize(img, size[0], size.size() == 2 ? size[1] : size[0]);
    } else if (!images.empty()) {
      MD_CHECK_VALUE(img.size(1) == images[0].size(1) && img.size(2) == images[0].size(2), "load_image_folder: '", path,
                     "' is ", img.size(1), " x ", img.size(2), " but '", out.files[0], "' is ", images[0].size(1),
                     " x ", images[0].size(2), "; set ImageFolderOptions::size to resize them");
    }
    images.push_back(img.contiguous());
    labels.push_back(label_of.at(f.cls));
    out.files.push_back(path);
  }
  out.data.images = at::stack(images, 0).clamp_(0.0, 255.0).div_(127.5).sub_(1.0).contiguous();
  out.data.labels = at::tensor(at::ArrayRef<int64_t>(labels), at::kLong);
  return out;
}

}  // namespace data
}  // namespace manifold_diffusion
