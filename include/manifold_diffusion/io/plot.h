#pragma once

/// \file
/// Line plots (loss curves) and scatter plots (2-D point clouds) written as SVG or PNG without any
/// other tool. Both kinds draw axes with numeric tick labels, a title, axis labels and a legend.
/// PNG output comes from a small built-in rasteriser with a 5x7 bitmap font that prints letters
/// as capitals. Non-finite values are skipped and counted (skipped()). Guide: docs/io.md.

#include <manifold_diffusion/core/namespace.h>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include <cstdint>
#include <string>
#include <vector>

namespace manifold_diffusion {
namespace io {

/// An sRGB colour.
///
/// Example:
/// \code
///   mdiff::io::Color red{214, 39, 40};
///   mdiff::io::Color second = mdiff::io::default_color(1);  // orange
/// \endcode
struct Color {
  uint8_t r = 0;
  uint8_t g = 0;
  uint8_t b = 0;
};

/// The i-th colour of the default cycle (ten distinct colours, repeating).
///
/// Example:
/// \code
///   plot.add("train", x, y, mdiff::io::default_color(0));
/// \endcode
Color default_color(int64_t i);

/// How a LinePlot looks.
///
/// Example:
/// \code
///   auto opts = mdiff::io::LinePlotOptions().title("loss").x_label("step").y_label("mse").log_y(true);
/// \endcode
struct LinePlotOptions {
  /// Image width in pixels (at least 160).
  TORCH_ARG(int64_t, width) = 640;
  /// Image height in pixels (at least 120).
  TORCH_ARG(int64_t, height) = 480;
  TORCH_ARG(std::string, title) = "";
  TORCH_ARG(std::string, x_label) = "";
  TORCH_ARG(std::string, y_label) = "";
  /// Logarithmic y axis; points with y <= 0 are then skipped (and counted).
  TORCH_ARG(bool, log_y) = false;
  /// Line width in pixels, in (0, 100].
  TORCH_ARG(double, line_width) = 1.5;
};

/// How a ScatterPlot looks.
///
/// Example:
/// \code
///   auto opts = mdiff::io::ScatterPlotOptions().title("samples").point_size(2).alpha(0.5);
/// \endcode
struct ScatterPlotOptions {
  /// Image width in pixels (at least 160).
  TORCH_ARG(int64_t, width) = 640;
  /// Image height in pixels (at least 120).
  TORCH_ARG(int64_t, height) = 480;
  TORCH_ARG(std::string, title) = "";
  TORCH_ARG(std::string, x_label) = "";
  TORCH_ARG(std::string, y_label) = "";
  /// Dot radius in pixels, in (0, 100].
  TORCH_ARG(double, point_size) = 2.0;
  /// Dot opacity in (0, 1].
  TORCH_ARG(double, alpha) = 0.7;
};

/// Several named series of (x, y) points joined by lines, e.g. training and validation loss.
/// A point with a non-finite coordinate (or y <= 0 on a log axis) is skipped, breaking the line.
///
/// Example:
/// \code
///   mdiff::io::LinePlot plot(mdiff::io::LinePlotOptions().title("loss").x_label("step").log_y(true));
///   plot.add("train", steps, train_loss).add("validation", steps, val_loss);
///   plot.save("loss.png");  // or "loss.svg"
/// \endcode
class LinePlot {
 public:
  explicit LinePlot(LinePlotOptions options = {});

  /// Adds a series; `x` and `y` must have the same length. The colour is the next default colour.
  LinePlot& add(const std::string& name, const std::vector<double>& x, const std::vector<double>& y);
  /// As above, with a chosen colour.
  LinePlot& add(const std::string& name, const std::vector<double>& x, const std::vector<double>& y, Color color);
  /// Adds a series with x = 0, 1, ..., y.size() - 1.
  LinePlot& add(const std::string& name, const std::vector<double>& y);
  /// Adds a series from a 1-D tensor of y values (any real dtype, any device), x = 0, 1, ...
  LinePlot& add(const std::string& name, const at::Tensor& y);

  /// Number of points skipped so far (non-finite, or y <= 0 on a log axis).
  int64_t skipped() const { return skipped_; }
  /// The plot as an SVG document. Fails when there is nothing to draw.
  std::string to_svg() const;
  /// The plot rasterised: uint8 [3, height, width]. Fails when there is nothing to draw.
  at::Tensor render() const;
  /// Writes to_svg() to `path` (atomically).
  void save_svg(const std::string& path) const;
  /// Writes render() to `path` as PNG (atomically).
  void save_png(const std::string& path) const;
  /// save_svg or save_png by the extension of `path` (.svg or .png, any case); others are an error.
  void save(const std::string& path) const;

  struct Series {
    std::string name;
    Color color;
    std::vector<double> x;
    std::vector<double> y;  // NaN marks a skipped point (a break in the line)
  };

 private:
  LinePlotOptions options_;
  std::vector<Series> series_;
  int64_t skipped_ = 0;
};

/// Several named groups of 2-D points drawn as dots, e.g. data against samples.
/// Rows with a non-finite coordinate are skipped (and counted).
///
/// Example:
/// \code
///   mdiff::io::ScatterPlot plot(mdiff::io::ScatterPlotOptions().title("swiss roll").alpha(0.4));
///   plot.add("data", mdiff::io::project_2d(data)).add("samples", mdiff::io::project_2d(samples));
///   plot.save("cloud.png");
/// \endcode
class ScatterPlot {
 public:
  explicit ScatterPlot(ScatterPlotOptions options = {});

  /// Adds a group of points [N, 2] (any real dtype, any device); the next default colour.
  /// Use project_2d for points with more than two coordinates.
  ScatterPlot& add(const std::string& name, const at::Tensor& points);
  /// As above, with a chosen colour.
  ScatterPlot& add(const std::string& name, const at::Tensor& points, Color color);

  /// Number of rows skipped so far (a non-finite coordinate).
  int64_t skipped() const { return skipped_; }
  /// The plot as an SVG document. Fails when there is nothing to draw.
  std::string to_svg() const;
  /// The plot rasterised: uint8 [3, height, width]. Fails when there is nothing to draw.
  at::Tensor render() const;
  /// Writes to_svg() to `path` (atomically).
  void save_svg(const std::string& path) const;
  /// Writes render() to `path` as PNG (atomically).
  void save_png(const std::string& path) const;
  /// save_svg or save_png by the extension of `path` (.svg or .png, any case); others are an error.
  void save(const std::string& path) const;

  struct Group {
    std::string name;
    Color color;
    std::vector<double> x;
    std::vector<double> y;
  };

 private:
  ScatterPlotOptions options_;
  std::vector<Group> groups_;
  int64_t skipped_ = 0;
};

/// Projects `points` [N, D] onto their first two principal components (centred, computed in
/// float64; each axis's sign is fixed so that its largest-magnitude loading is positive).
/// D = 2 returns the points unchanged; D = 1 adds a zero second coordinate. Result [N, 2] in the
/// dtype of `points` (floating), on the CPU. Needs N >= 1.
///
/// Example:
/// \code
///   at::Tensor xy = mdiff::io::project_2d(samples);  // samples [4096, 8] -> [4096, 2]
/// \endcode
at::Tensor project_2d(const at::Tensor& points);

}  // namespace io
}  // namespace manifold_diffusion
