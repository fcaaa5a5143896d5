#include <manifold_diffusion/io/plot.h>
#include <manifold_diffusion/io/png.h>

#include "data/data_test_util.h"
#include "test_util.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

namespace {

using mdiff_test::TempDir;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Number of pixels of `img` [3, H, W] equal to `c` inside the box [x0, x1) x [y0, y1).
int64_t count_color(const at::Tensor& img, mdiff::io::Color c, int64_t x0, int64_t y0, int64_t x1, int64_t y1) {
  const at::Tensor box = img.slice(1, y0, y1).slice(2, x0, x1);
  return (box[0].eq(c.r) & box[1].eq(c.g) & box[2].eq(c.b)).sum().item<int64_t>();
}

int64_t non_white(const at::Tensor& img) { return img.ne(255).any(0).sum().item<int64_t>(); }

TEST(PlotLine, SvgNamesEverySeriesAndTheLabels) {
  mdiff::io::LinePlot plot(mdiff::io::LinePlotOptions().title("Training loss").x_label("step").y_label("mse"));
  plot.add("train", {0, 1, 2, 3}, {1.0, 0.5, 0.25, 0.2}).add("val & test", std::vector<double>{0.9, 0.6, 0.4});
  const std::string svg = plot.to_svg();
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find(">train</text>"), std::string::npos);
  EXPECT_NE(svg.find(">val &amp; test</text>"), std::string::npos);
  EXPECT_NE(svg.find(">Training loss</text>"), std::string::npos);
  EXPECT_NE(svg.find(">step</text>"), std::string::npos);
  EXPECT_NE(svg.find("rotate(-90"), std::string::npos);
  EXPECT_EQ(std::count(svg.begin(), svg.end(), '\n') > 10, true);
  // Two polylines in the default colours, and numeric tick labels.
  EXPECT_NE(svg.find("<polyline fill=\"none\" stroke=\"#1f77b4\""), std::string::npos);
  EXPECT_NE(svg.find("<polyline fill=\"none\" stroke=\"#ff7f0e\""), std::string::npos);
  EXPECT_NE(svg.find(">0.5</text>"), std::string::npos);
  EXPECT_NE(svg.find(">3</text>"), std::string::npos);
  EXPECT_EQ(plot.skipped(), 0);
}

TEST(PlotLine, RenderDrawsTheLineAndText) {
  const mdiff::io::Color red{214, 39, 40};
  mdiff::io::LinePlot plot(mdiff::io::LinePlotOptions().width(320).height(200).title("T"));
  plot.add("loss", {0, 10}, {5, 5}, red);
  const at::Tensor img = plot.render();
  ASSERT_EQ(img.sizes(), (std::vector<int64_t>{3, 200, 320}));
  EXPECT_EQ(img.scalar_type(), at::kByte);
  // A horizontal line across the middle of the plot area.
  EXPECT_GT(count_color(img, red, 100, 0, 200, 200), 90);
  EXPECT_EQ(img[0][0][0].item<int64_t>(), 255);   // white background
  EXPECT_GT(non_white(img.slice(1, 0, 30)), 10);  // the title
}

TEST(PlotLine, LogScaleSkipsNonPositiveAndNonFiniteValues) {
  const double inf = std::numeric_limits<double>::infinity();
  mdiff::io::LinePlot plot(mdiff::io::LinePlotOptions().log_y(true));
  plot.add("loss", {0, 1, 2, 3, 4, 5}, {100, 10, 0, -1, std::nan(""), 0.01});
  plot.add("x", {inf, 1}, {1, 1});
  EXPECT_EQ(plot.skipped(), 4);
  const std::string svg = plot.to_svg();
  // Decades as ticks.
  EXPECT_NE(svg.find(">100</text>"), std::string::npos);
  EXPECT_NE(svg.find(">0.01</text>"), std::string::npos);
  EXPECT_NE(svg.find(">1</text>"), std::string::npos);
  // The skipped points break the line: two runs for "loss".
  size_t runs = 0;
  const std::string run_start = "<polyline fill=\"none\" stroke=\"#1f77b4\"";
  for (size_t p = svg.find(run_start); p != std::string::npos; p = svg.find(run_start, p + 1)) {
    ++runs;
  }
  EXPECT_EQ(runs, 2u);
  EXPECT_EQ(plot.render().size(1), 480);

  mdiff::io::LinePlot all_bad(mdiff::io::LinePlotOptions().log_y(true));
  all_bad.add("loss", std::vector<double>{0, -2});
  MD_EXPECT_ERROR(all_bad.to_svg(), "LinePlot: nothing to draw", "non-positive");
  MD_EXPECT_ERROR(mdiff::io::LinePlot().render(), "LinePlot: nothing to draw", "no series");
  // A one-point series still draws.
  mdiff::io::LinePlot one;
  one.add("p", at::tensor({3.0f}));
  EXPECT_GT(non_white(one.render()), 100);
}

TEST(PlotLine, RejectsBadInput) {
  mdiff::io::LinePlot plot;
  MD_EXPECT_ERROR(plot.add("a", {1, 2}, {1}), "series 'a' has 2 x values and 1 y values");
  MD_EXPECT_ERROR(plot.add("a", at::zeros({2, 2})), "must be 1-D", "[2, 2]");
  MD_EXPECT_ERROR(mdiff::io::LinePlot(mdiff::io::LinePlotOptions().width(10)), "width and height", "10 x 480");
  MD_EXPECT_ERROR(mdiff::io::LinePlot(mdiff::io::LinePlotOptions().line_width(0)), "line_width must be in (0, 100]");
  MD_EXPECT_ERROR(mdiff::io::ScatterPlot(mdiff::io::ScatterPlotOptions().point_size(1e9)), "point_size must be in");
}

TEST(PlotLine, ExtremeRangesStillRender) {
  // Ranges near the limits of double, and ranges tiny against their magnitude.
  const std::vector<std::vector<double>> cases = {{-1e308, 1e308}, {1e20, 1e20 + 1e6}, {5, 5},
                                                  {0, 1e-300},     {-1e-320, 1e-320},  {1e15, 1e15 + 3}};
  for (const auto& y : cases) {
    mdiff::io::LinePlot plot;
    plot.add("y", y);
    EXPECT_EQ(plot.render().size(2), 640);
    EXPECT_NE(plot.to_svg().find("</svg>"), std::string::npos);
  }
  mdiff::io::LinePlot log_plot(mdiff::io::LinePlotOptions().log_y(true));
  log_plot.add("y", std::vector<double>{1e-300, 1e300});
  EXPECT_NE(log_plot.to_svg().find("</svg>"), std::string::npos);
}

TEST(PlotScatter, DrawsPointsWhereTheyBelong) {
  const mdiff::io::Color blue{0, 0, 255};
  const mdiff::io::Color green{0, 200, 0};
  mdiff::io::ScatterPlot plot(mdiff::io::ScatterPlotOptions().point_size(3).alpha(1.0));
  // Two groups at opposite corners of the data range.
  plot.add("low", at::tensor({0.0, 0.0}).reshape({1, 2}), blue);
  plot.add("high", at::tensor({10.0f, 10.0f}).reshape({1, 2}), green);
  const at::Tensor img = plot.render();
  ASSERT_EQ(img.sizes(), (std::vector<int64_t>{3, 480, 640}));
  // The lower-left point sits near the bottom-left corner of the plot area, the other near the top right.
  EXPECT_GT(count_color(img, blue, 60, 400, 160, 460), 10);
  EXPECT_EQ(count_color(img, blue, 320, 100, 640, 300), 0);
  EXPECT_GT(count_color(img, green, 570, 10, 630, 60), 10);
  // The legend avoids both points: it sits in the top-left corner, with the blue swatch.
  EXPECT_GT(count_color(img, blue, 60, 16, 200, 80), 10);
  const std::string svg = plot.to_svg();
  EXPECT_NE(svg.find("<circle"), std::string::npos);
  EXPECT_NE(svg.find("fill=\"#0000ff\""), std::string::npos);
  EXPECT_NE(svg.find(">low</text>"), std::string::npos);
  EXPECT_NE(svg.find(">high</text>"), std::string::npos);
}

TEST(PlotScatter, SkipsNonFiniteRowsAndRejectsBadShapes) {
  mdiff::io::ScatterPlot plot;
  plot.add("a", at::tensor({0.0, 1.0, NAN, 2.0, 3.0, INFINITY, 4.0, 5.0}).reshape({4, 2}));
  EXPECT_EQ(plot.skipped(), 2);
  EXPECT_EQ(std::string(plot.to_svg()).find("<circle") != std::string::npos, true);
  MD_EXPECT_ERROR(plot.add("b", at::zeros({4, 3})), "group 'b' must be [N, 2]", "[4, 3]", "project_2d");
  MD_EXPECT_ERROR(mdiff::io::ScatterPlot().to_svg(), "ScatterPlot: nothing to draw");
  MD_EXPECT_ERROR(mdiff::io::ScatterPlot(mdiff::io::ScatterPlotOptions().alpha(0)), "alpha must be in");
  mdiff::io::ScatterPlot empty;
  empty.add("e", at::zeros({0, 2}));
  MD_EXPECT_ERROR(empty.render(), "nothing to draw");
}

TEST(PlotSave, PicksTheFormatByExtension) {
  TempDir dir;
  mdiff::io::ScatterPlot plot;
  plot.add("pts", at::randn({50, 2}));
  plot.save(dir.file("a.svg"));
  plot.save(dir.file("b.PNG"));
  EXPECT_NE(read_text(dir.file("a.svg")).find("<circle"), std::string::npos);
  const at::Tensor png = mdiff::io::read_png(dir.file("b.PNG"));
  EXPECT_EQ(png.sizes(), (std::vector<int64_t>{3, 480, 640}));
  MD_EXPECT_ERROR(plot.save(dir.file("c.jpg")), "c.jpg", "extension '.jpg'", ".svg or .png");
  MD_EXPECT_ERROR(plot.save(dir.file("noext")), "extension ''");
  mdiff::io::LinePlot line;
  line.add("l", std::vector<double>{1, 2, 3});
  line.save(dir.file("l.png"));
  line.save_svg(dir.file("l.svg"));
  EXPECT_EQ(mdiff::io::read_png(dir.file("l.png")).size(0), 3);
  MD_EXPECT_ERROR(line.save(dir.file("l.pdf")), "LinePlot::save", "'.pdf'");
  MD_EXPECT_ERROR(line.save_png(dir.file("missing/l.png")), "does not exist");
}

TEST(PlotProject2d, FindsTheLeadingPlane) {
  // A 21 x 7 grid along e0 (wide) and e2 (narrow) in R^5, shifted: the components are e0 and e2.
  const at::Tensor a = at::linspace(-10, 10, 21).repeat_interleave(7);
  const at::Tensor b = at::linspace(-3, 3, 7).repeat({21});
  at::Tensor pts = at::zeros({147, 5});
  pts.select(1, 0).copy_(a);
  pts.select(1, 2).copy_(b);
  pts.add_(5.0);
  const at::Tensor xy = mdiff::io::project_2d(pts);
  ASSERT_EQ(xy.sizes(), (std::vector<int64_t>{147, 2}));
  EXPECT_EQ(xy.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::allclose(xy.select(1, 0), a, 1e-5, 1e-4));
  EXPECT_TRUE(at::allclose(xy.select(1, 1), b, 1e-5, 1e-4));
  // Rotated into a random orientation, the plane keeps its pairwise distances.
  at::manual_seed(0);
  const at::Tensor q = std::get<0>(at::linalg_qr(at::randn({5, 5}, at::kDouble)));
  const at::Tensor rotated = pts.to(at::kDouble).mm(q);
  const at::Tensor r2 = mdiff::io::project_2d(rotated);
  EXPECT_EQ(r2.scalar_type(), at::kDouble);
  EXPECT_LT((at::cdist(r2, r2) - at::cdist(rotated, rotated)).abs().max().item<double>(), 1e-6);
  const at::Tensor two = at::randn({5, 2}, at::kDouble);
  EXPECT_TRUE(at::equal(mdiff::io::project_2d(two), two));
  EXPECT_EQ(mdiff::io::project_2d(at::randn({5, 1})).sizes(), (std::vector<int64_t>{5, 2}));
  MD_EXPECT_ERROR(mdiff::io::project_2d(at::randn({5})), "[N, D]");
  MD_EXPECT_ERROR(mdiff::io::project_2d(at::ones({5, 3}, at::kLong)), "project_2d: points");
}

}  // namespace
