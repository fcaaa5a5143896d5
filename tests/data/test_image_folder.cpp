#include <manifold_diffusion/data/image_folder.h>
#include <manifold_diffusion/io/png.h>

#include "data/data_test_util.h"
#include "test_util.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <string>
#include <vector>

namespace {

using mdiff_test::TempDir;
using mdiff_test::write_bytes;
namespace fs = std::filesystem;

at::Tensor solid(int64_t c, int64_t h, int64_t w, std::vector<int64_t> value) {
  at::Tensor t = at::empty({c, h, w}, at::kByte);
  for (int64_t k = 0; k < c; ++k) t[k].fill_(value[static_cast<size_t>(k)]);
  return t;
}

// root/cats/{a,b}.png (RGB), root/dogs/x.png (gray), root/dogs/deep/y.png (RGBA), plus noise.
void build_folder(const TempDir& dir) {
  fs::create_directories(dir.file("cats"));
  fs::create_directories(dir.file("dogs/deep"));
  fs::create_directories(dir.file("empty"));
  fs::create_directories(dir.file(".hidden"));
  mdiff::io::write_png(dir.file("cats/b.png"), solid(3, 4, 6, {255, 0, 0}));
  mdiff::io::write_png(dir.file("cats/a.png"), solid(3, 4, 6, {0, 0, 255}));
  mdiff::io::write_png(dir.file("dogs/x.PNG"), solid(1, 8, 8, {0}));
  mdiff::io::write_png(dir.file("dogs/deep/y.png"), solid(4, 2, 2, {0, 0, 0, 0}));  // fully transparent
  mdiff::io::write_png(dir.file(".hidden/z.png"), solid(1, 2, 2, {0}));
  mdiff_test::write_text(dir.file("cats/notes.txt"), "not an image");
}

TEST(ImageFolder, LoadsClassesLabelsAndResizes) {
  TempDir dir;
  build_folder(dir);
  const auto f = mdiff::data::load_image_folder(dir.file(""), mdiff::data::ImageFolderOptions().channels(3).size({4}));
  ASSERT_EQ(f.classes, (std::vector<std::string>{"cats", "dogs"}));
  ASSERT_EQ(f.files.size(), 4u);
  EXPECT_NE(f.files[0].find("cats/a.png"), std::string::npos);
  EXPECT_NE(f.files[1].find("cats/b.png"), std::string::npos);
  EXPECT_NE(f.files[2].find("dogs/deep/y.png"), std::string::npos);
  EXPECT_NE(f.files[3].find("dogs/x.PNG"), std::string::npos);
  EXPECT_TRUE(at::equal(f.data.labels, at::tensor({0, 0, 1, 1}, at::kLong)));
  const at::Tensor x = f.data.images;
  ASSERT_EQ(x.sizes(), (std::vector<int64_t>{4, 3, 4, 4}));
  EXPECT_EQ(x.scalar_type(), at::kFloat);
  EXPECT_EQ(f.data.size(), 4);
  // Solid colours survive resizing (area in height, bilinear in width, area both ways, bilinear both ways).
  EXPECT_TRUE(at::allclose(x[0], at::tensor({-1.0f, -1.0f, 1.0f}).reshape({3, 1, 1}).expand({3, 4, 4})));
  EXPECT_TRUE(at::allclose(x[1], at::tensor({1.0f, -1.0f, -1.0f}).reshape({3, 1, 1}).expand({3, 4, 4})));
  EXPECT_TRUE(at::allclose(x[2], at::ones({3, 4, 4})));   // transparent composited on white
  EXPECT_TRUE(at::allclose(x[3], -at::ones({3, 4, 4})));  // gray repeated into RGB
}

TEST(ImageFolder, GrayscaleNonSquareAndOptions) {
  TempDir dir;
  build_folder(dir);
  auto opts = mdiff::data::ImageFolderOptions().channels(1).size({2, 3});
  const auto f = mdiff::data::load_image_folder(dir.file(""), opts);
  ASSERT_EQ(f.data.images.sizes(), (std::vector<int64_t>{4, 1, 2, 3}));
  // Red by BT.601 luma: 0.299 * 255.
  EXPECT_NEAR(f.data.images[1].mean().item<double>(), 0.299 * 255 / 127.5 - 1, 1e-5);
  EXPECT_NEAR(f.data.images[0].mean().item<double>(), 0.114 * 255 / 127.5 - 1, 1e-5);
  // Not recursive: dogs/deep/y.png is left out.
  const auto flat =
      mdiff::data::load_image_folder(dir.file(""), mdiff::data::ImageFolderOptions(opts).recursive(false));
  EXPECT_EQ(flat.files.size(), 3u);
  // max_files keeps the first files in order and does not change the classes.
  const auto two = mdiff::data::load_image_folder(dir.file(""), mdiff::data::ImageFolderOptions(opts).max_files(2));
  EXPECT_EQ(two.files.size(), 2u);
  EXPECT_EQ(two.classes, (std::vector<std::string>{"cats", "dogs"}));
  EXPECT_TRUE(at::equal(two.data.labels, at::tensor({0, 0}, at::kLong)));
  // Extensions are compared without case; another extension finds nothing.
  MD_EXPECT_ERROR(mdiff::data::load_image_folder(dir.file(""), mdiff::data::ImageFolderOptions().extensions({".jpg"})),
                  "no image files (.jpg)");
}

TEST(ImageFolder, RootFilesAndNativeSize) {
  TempDir dir;
  const at::Tensor ramp = at::arange(0, 12, at::kLong).mul(20).to(at::kByte).reshape({1, 3, 4});
  mdiff::io::write_png(dir.file("b.png"), ramp);
  mdiff::io::write_png(dir.file("a.png"), solid(1, 3, 4, {255}));
  const auto f = mdiff::data::load_image_folder(dir.file(""), mdiff::data::ImageFolderOptions().channels(1));
  EXPECT_EQ(f.classes, (std::vector<std::string>{""}));
  EXPECT_TRUE(at::equal(f.data.labels, at::zeros({2}, at::kLong)));
  ASSERT_EQ(f.data.images.sizes(), (std::vector<int64_t>{2, 1, 3, 4}));
  EXPECT_TRUE(at::allclose(f.data.images[1], ramp.to(at::kFloat).div(127.5).sub(1.0)));
  // Root files next to class folders form class "", which sorts first.
  fs::create_directories(dir.file("zeta"));
  mdiff::io::write_png(dir.file("zeta/c.png"), solid(1, 3, 4, {0}));
  const auto g = mdiff::data::load_image_folder(dir.file(""), mdiff::data::ImageFolderOptions().channels(1));
  EXPECT_EQ(g.classes, (std::vector<std::string>{"", "zeta"}));
  EXPECT_TRUE(at::equal(g.data.labels, at::tensor({0, 0, 1}, at::kLong)));
  // Different sizes without `size` are an error naming both files.
  mdiff::io::write_png(dir.file("zeta/d.png"), solid(1, 5, 4, {0}));
  MD_EXPECT_ERROR(mdiff::data::load_image_folder(dir.file(""), mdiff::data::ImageFolderOptions().channels(1)), "d.png",
                  "5 x 4", "a.png", "3 x 4", "ImageFolderOptions::size");
}

TEST(ImageFolder, Errors) {
  TempDir dir;
  MD_EXPECT_ERROR(mdiff::data::load_image_folder(dir.file("absent")), "load_image_folder", "absent", "does not exist");
  MD_EXPECT_ERROR(mdiff::data::load_image_folder(dir.file("")), "no image files (.png)");
  fs::create_directories(dir.file("c"));
  write_bytes(dir.file("c/broken.png"), {0x89, 'P', 'N', 'G', 1, 2, 3});
  MD_EXPECT_ERROR(mdiff::data::load_image_folder(dir.file("")), "broken.png", "signature");
  mdiff_test::write_text(dir.file("file.txt"), "x");
  MD_EXPECT_ERROR(mdiff::data::load_image_folder(dir.file("file.txt")), "not a directory");
  MD_EXPECT_ERROR(mdiff::data::load_image_folder(dir.file(""), mdiff::data::ImageFolderOptions().channels(2)),
                  "channels must be 1 or 3, got 2");
  MD_EXPECT_ERROR(mdiff::data::load_image_folder(dir.file(""), mdiff::data::ImageFolderOptions().size({1, 2, 3})),
                  "size must be");
  MD_EXPECT_ERROR(mdiff::data::load_image_folder(dir.file(""), mdiff::data::ImageFolderOptions().size({0})),
                  "size entries must be positive");
}

}  // namespace
