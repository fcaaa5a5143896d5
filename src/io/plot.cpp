#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/io/plot.h>
#include <manifold_diffusion/io/png.h>

#include "io/file_util.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace manifold_diffusion {
namespace io {
namespace {

// ---------------------------------------------------------------------------------------------
// A 5x7 bitmap font: one string of 7 rows of 5 cells per glyph. Letters are drawn as capitals.

struct Glyph {
  char c;
  const char* rows[7];
};

constexpr Glyph kFont[] = {
    {' ', {".....", ".....", ".....", ".....", ".....", ".....", "....."}},
    {'0', {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."}},
    {'1', {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."}},
    {'2', {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"}},
    {'3', {"#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."}},
    {'4', {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."}},
    {'5', {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."}},
    {'6', {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."}},
    {'7', {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."}},
    {'8', {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."}},
    {'9', {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."}},
    {'A', {".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}},
    {'B', {"####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."}},
    {'C', {".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."}},
    {'D', {"###..", "#..#.", "#...#", "#...#", "#...#", "#..#.", "###.."}},
    {'E', {"#####", "#....", "#....", "####.", "#....", "#....", "#####"}},
    {'F', {"#####", "#....", "#....", "####.", "#....", "#....", "#...."}},
    {'G', {".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"}},
    {'H', {"#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}},
    {'I', {".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."}},
    {'J', {"..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."}},
    {'K', {"#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"}},
    {'L', {"#....", "#....", "#....", "#....", "#....", "#....", "#####"}},
    {'M', {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"}},
    {'N', {"#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"}},
    {'O', {".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}},
    {'P', {"####.", "#...#", "#...#", "####.", "#....", "#....", "#...."}},
    {'Q', {".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"}},
    {'R', {"####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"}},
    {'S', {".####", "#....", "#....", ".###.", "....#", "....#", "####."}},
    {'T', {"#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."}},
    {'U', {"#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}},
    {'V', {"#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."}},
    {'W', {"#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."}},
    {'X', {"#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"}},
    {'Y', {"#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."}},
    {'Z', {"#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"}},
    {'.', {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."}},
    {',', {".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."}},
    {'-', {".....", ".....", ".....", ".###.", ".....", ".....", "....."}},
    {'+', {".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."}},
    {'_', {".....", ".....", ".....", ".....", ".....", ".....", "#####"}},
    {':', {".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."}},
    {';', {".....", ".##..", ".##..", ".....", ".##..", "..#..", ".#..."}},
    {'(', {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."}},
    {')', {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."}},
    {'[', {".###.", ".#...", ".#...", ".#...", ".#...", ".#...", ".###."}},
    {']', {".###.", "...#.", "...#.", "...#.", "...#.", "...#.", ".###."}},
    {'/', {".....", "....#", "...#.", "..#..", ".#...", "#....", "....."}},
    {'%', {"##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"}},
    {'=', {".....", ".....", "#####", ".....", "#####", ".....", "....."}},
    {'\'', {"..#..", "..#..", ".#...", ".....", ".....", ".....", "....."}},
    {'"', {".#.#.", ".#.#.", ".#.#.", ".....", ".....", ".....", "....."}},
    {'!', {"..#..", "..#..", "..#..", "..#..", "..#..", ".....", "..#.."}},
    {'?', {".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."}},
    {'*', {".....", "..#..", "#.#.#", ".###.", "#.#.#", "..#..", "....."}},
    {'<', {"...#.", "..#..", ".#...", "#....", ".#...", "..#..", "...#."}},
    {'>', {".#...", "..#..", "...#.", "....#", "...#.", "..#..", ".#..."}},
    {'#', {".#.#.", ".#.#.", "#####", ".#.#.", "#####", ".#.#.", ".#.#."}},
    {'^', {"..#..", ".#.#.", "#...#", ".....", ".....", ".....", "....."}},
    {'|', {"..#..", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."}},
};

const Glyph& glyph(char c) {
  const char up = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const Glyph& g : kFont) {
    if (g.c == up) return g;
  }
  for (const Glyph& g : kFont) {
    if (g.c == '?') return g;
  }
  return kFont[0];
}

// ---------------------------------------------------------------------------------------------
// Drawing surfaces: one layout code drives both the SVG writer and the rasteriser.

enum class Anchor { Start, Middle, End };

const Color kBlack{0, 0, 0};
const Color kGrid{225, 225, 225};
const Color kWhite{255, 255, 255};

class Canvas {
 public:
  virtual ~Canvas() = default;
  virtual void line(double x0, double y0, double x1, double y1, Color c, double width) = 0;
  virtual void polyline(const std::vector<std::pair<double, double>>& pts, Color c, double width) = 0;
  virtual void dot(double x, double y, double r, Color c, double alpha) = 0;
  virtual void rect(double x, double y, double w, double h, Color fill, Color stroke) = 0;
  // Text centred vertically on y; `scale` 1 is the small size; vertical text reads bottom to top.
  virtual void text(double x, double y, const std::string& s, int scale, Anchor anchor, bool vertical) = 0;
  virtual void begin_clip(double x, double y, double w, double h) = 0;
  virtual void end_clip() = 0;
};

std::string fmt_num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f", v);
  std::string s = buf;
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s == "-0" ? "0" : s;
}

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        // Control characters are not allowed in XML 1.0.
        if (static_cast<unsigned char>(c) >= 0x20 || c == '\t') out.push_back(c);
    }
  }
  return out;
}

std::string hex_color(Color c) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "#%02x%02x%02x", c.r, c.g, c.b);
  return buf;
}

class SvgCanvas : public Canvas {
 public:
  SvgCanvas(int64_t w, int64_t h) {
    out_ << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
         << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << w << "\" height=\"" << h << "\" viewBox=\"0 0 " << w
         << " " << h << "\" font-family=\"sans-serif\">\n"
         << "<rect x=\"0\" y=\"0\" width=\"" << w << "\" height=\"" << h << "\" fill=\"#ffffff\"/>\n";
  }
  void line(double x0, double y0, double x1, double y1, Color c, double width) override {
    out_ << "<line x1=\"" << fmt_num(x0) << "\" y1=\"" << fmt_num(y0) << "\" x2=\"" << fmt_num(x1) << "\" y2=\""
         << fmt_num(y1) << "\" stroke=\"" << hex_color(c) << "\" stroke-width=\"" << fmt_num(width) << "\"/>\n";
  }
  void polyline(const std::vector<std::pair<double, double>>& pts, Color c, double width) override {
    out_ << "<polyline fill=\"none\" stroke=\"" << hex_color(c) << "\" stroke-width=\"" << fmt_num(width)
         << "\" stroke-linejoin=\"round\" points=\"";
    for (size_t i = 0; i < pts.size(); ++i) {
      out_ << (i > 0 ? " " : "") << fmt_num(pts[i].first) << "," << fmt_num(pts[i].second);
    }
    out_ << "\"/>\n";
  }
  void dot(double x, double y, double r, Color c, double alpha) override {
    out_ << "<circle cx=\"" << fmt_num(x) << "\" cy=\"" << fmt_num(y) << "\" r=\"" << fmt_num(r) << "\" fill=\""
         << hex_color(c) << "\"";
    if (alpha < 1.0) out_ << " fill-opacity=\"" << fmt_num(alpha) << "\"";
    out_ << "/>\n";
  }
  void rect(double x, double y, double w, double h, Color fill, Color stroke) override {
    out_ << "<rect x=\"" << fmt_num(x) << "\" y=\"" << fmt_num(y) << "\" width=\"" << fmt_num(w) << "\" height=\""
         << fmt_num(h) << "\" fill=\"" << hex_color(fill) << "\" stroke=\"" << hex_color(stroke) << "\"/>\n";
  }
  void text(double x, double y, const std::string& s, int scale, Anchor anchor, bool vertical) override {
    const char* a = anchor == Anchor::Start ? "start" : anchor == Anchor::Middle ? "middle" : "end";
    out_ << "<text x=\"" << fmt_num(x) << "\" y=\"" << fmt_num(y) << "\" font-size=\"" << (scale > 1 ? 16 : 11)
         << "\" text-anchor=\"" << a << "\" dominant-baseline=\"central\" fill=\"#000000\"";
    if (vertical) out_ << " transform=\"rotate(-90 " << fmt_num(x) << " " << fmt_num(y) << ")\"";
    out_ << ">" << xml_escape(s) << "</text>\n";
  }
  void begin_clip(double x, double y, double w, double h) override {
    ++clip_id_;
    out_ << "<clipPath id=\"plot-area-" << clip_id_ << "\"><rect x=\"" << fmt_num(x) << "\" y=\"" << fmt_num(y)
         << "\" width=\"" << fmt_num(w) << "\" height=\"" << fmt_num(h) << "\"/></clipPath>\n"
         << "<g clip-path=\"url(#plot-area-" << clip_id_ << ")\">\n";
  }
  void end_clip() override { out_ << "</g>\n"; }
  std::string finish() {
    out_ << "</svg>\n";
    return out_.str();
  }

 private:
  std::ostringstream out_;
  int clip_id_ = 0;
};

class RasterCanvas : public Canvas {
 public:
  RasterCanvas(int64_t w, int64_t h)
      : w_(w),
        h_(h),
        pix_(static_cast<size_t>(w * h * 3), 255),
        clip_{0, 0, static_cast<double>(w), static_cast<double>(h)} {}

  void line(double x0, double y0, double x1, double y1, Color c, double width) override {
    const double r = std::max(0.5, width / 2);
    const double len = std::hypot(x1 - x0, y1 - y0);
    if (!std::isfinite(len) || len > 1e5) return;  // data coordinates always map inside the canvas
    const int64_t steps = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(len * 2)));
    for (int64_t i = 0; i <= steps; ++i) {
      const double t = static_cast<double>(i) / static_cast<double>(steps);
      stamp(x0 + t * (x1 - x0), y0 + t * (y1 - y0), r, c, 1.0);
    }
  }
  void polyline(const std::vector<std::pair<double, double>>& pts, Color c, double width) override {
    if (pts.size() == 1) stamp(pts[0].first, pts[0].second, std::max(0.5, width / 2), c, 1.0);
    for (size_t i = 1; i < pts.size(); ++i)
      line(pts[i - 1].first, pts[i - 1].second, pts[i].first, pts[i].second, c, width);
  }
  void dot(double x, double y, double r, Color c, double alpha) override { stamp(x, y, r, c, alpha); }
  void rect(double x, double y, double w, double h, Color fill, Color stroke) override {
    for (int64_t py = static_cast<int64_t>(std::lround(y)); py <= std::lround(y + h); ++py) {
      for (int64_t px = static_cast<int64_t>(std::lround(x)); px <= std::lround(x + w); ++px) blend(px, py, fill, 1.0);
    }
    line(x, y, x + w, y, stroke, 1);
    line(x, y + h, x + w, y + h, stroke, 1);
    line(x, y, x, y + h, stroke, 1);
    line(x + w, y, x + w, y + h, stroke, 1);
  }
  void text(double x, double y, const std::string& s, int scale, Anchor anchor, bool vertical) override {
    const double advance = 6.0 * scale;
    const double total = advance * static_cast<double>(s.size()) - scale;
    double start = anchor == Anchor::Start ? 0 : anchor == Anchor::Middle ? -total / 2 : -total;
    const int64_t half = (7 * scale) / 2;
    for (size_t k = 0; k < s.size(); ++k) {
      const Glyph& g = glyph(s[k]);
      const auto offset = static_cast<int64_t>(std::lround(start + advance * static_cast<double>(k)));
      for (int64_t row = 0; row < 7; ++row) {
        for (int64_t col = 0; col < 5; ++col) {
          if (g.rows[row][col] != '#') continue;
          for (int64_t sy = 0; sy < scale; ++sy) {
            for (int64_t sx = 0; sx < scale; ++sx) {
              const int64_t u = offset + col * scale + sx;  // along the text
              const int64_t v = row * scale + sy - half;    // across it, top to bottom
              if (vertical) {
                blend(std::lround(x) + v, std::lround(y) - u, kBlack, 1.0);
              } else {
                blend(std::lround(x) + u, std::lround(y) + v, kBlack, 1.0);
              }
            }
          }
        }
      }
    }
  }
  void begin_clip(double x, double y, double w, double h) override { clip_ = {x, y, x + w, y + h}; }
  void end_clip() override { clip_ = {0, 0, static_cast<double>(w_), static_cast<double>(h_)}; }

  at::Tensor finish() const {
    at::Tensor t = at::empty({h_, w_, 3}, at::kByte);
    std::copy(pix_.begin(), pix_.end(), t.data_ptr<uint8_t>());
    return t.permute({2, 0, 1}).contiguous();
  }

 private:
  void blend(int64_t x, int64_t y, Color c, double alpha) {
    if (x < clip_[0] || y < clip_[1] || x > clip_[2] || y > clip_[3] || x < 0 || y < 0 || x >= w_ || y >= h_) return;
    uint8_t* p = pix_.data() + (y * w_ + x) * 3;
    const uint8_t src[3] = {c.r, c.g, c.b};
    for (int k = 0; k < 3; ++k) p[k] = static_cast<uint8_t>(std::lround(src[k] * alpha + p[k] * (1.0 - alpha)));
  }
  void stamp(double cx, double cy, double r, Color c, double alpha) {
    if (!std::isfinite(cx) || !std::isfinite(cy) || !std::isfinite(r)) return;
    const double rr = std::max(r, 0.5);
    for (auto y = static_cast<int64_t>(std::floor(cy - rr)); y <= static_cast<int64_t>(std::ceil(cy + rr)); ++y) {
      for (auto x = static_cast<int64_t>(std::floor(cx - rr)); x <= static_cast<int64_t>(std::ceil(cx + rr)); ++x) {
        const double dx = static_cast<double>(x) - cx;
        const double dy = static_cast<double>(y) - cy;
        if (dx * dx + dy * dy <= rr * rr + 0.25) blend(x, y, c, alpha);
      }
    }
  }

  int64_t w_;
  int64_t h_;
  std::vector<uint8_t> pix_;
  std::vector<double> clip_;
};

// ---------------------------------------------------------------------------------------------
// Axes and layout.

struct Tick {
  double at;  // in axis coordinates (log10 of the value on a log axis)
  std::string label;
};

std::string tick_label(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return std::string(buf) == "-0" ? "0" : buf;
}

// Ticks at multiples of 1, 2 or 5 times a power of ten, about `target` of them within [lo, hi].
std::vector<Tick> nice_ticks(double lo, double hi, bool log_axis, int target = 5) {
  std::vector<Tick> ticks;
  if (log_axis) {
    const auto first = static_cast<int64_t>(std::ceil(lo - 1e-9));
    const auto last = static_cast<int64_t>(std::floor(hi + 1e-9));
    if (last - first >= 3) {
      const int64_t every = std::max<int64_t>(1, (last - first + target - 1) / target);
      for (int64_t e = first; e <= last; e += every)
        ticks.push_back({static_cast<double>(e), tick_label(std::pow(10.0, e))});
      return ticks;
    }
    if (hi - lo >= 1) {
      // A few decades: 1, 2 and 5 times each power of ten.
      for (auto e = static_cast<int64_t>(std::floor(lo)); e <= last; ++e) {
        for (double m : {1.0, 2.0, 5.0}) {
          const double at = static_cast<double>(e) + std::log10(m);
          if (at >= lo - 1e-9 && at <= hi + 1e-9) ticks.push_back({at, tick_label(m * std::pow(10.0, e))});
        }
      }
      return ticks;
    }
  }
  const double raw = (hi / 2 - lo / 2) / target * 2;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / mag;
  const double step = (norm < 1.5 ? 1 : norm < 3.5 ? 2 : norm < 7.5 ? 5 : 10) * mag;
  if (!std::isfinite(step) || step <= 0) return ticks;
  // At most a few dozen ticks, and none when k + 1 == k (a range tiny against its magnitude).
  int guard = 0;
  for (double k = std::ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9 && k + 1 != k && guard < 50;
       k += 1, ++guard) {
    double v = k * step;
    if (std::fabs(v) < step * 1e-9) v = 0;
    ticks.push_back({v, tick_label(log_axis ? std::pow(10.0, v) : v)});
  }
  return ticks;
}

// Axis range from data extremes, with a margin; a single value gets a unit-wide (or 10%) range.
// Halved differences keep ranges near the limits of double finite.
std::pair<double, double> padded_range(double lo, double hi) {
  constexpr double kMax = std::numeric_limits<double>::max();
  if (hi / 2 - lo / 2 <= std::fabs(hi) * 0.5e-12) {
    const double half = lo == 0 ? 0.5 : std::fabs(lo) * 0.1;
    return {std::max(lo - half, -kMax), std::min(hi + half, kMax)};
  }
  const double m = (hi / 2 - lo / 2) * 0.08;
  return {std::max(lo - m, -kMax), std::min(hi + m, kMax)};
}

struct LegendEntry {
  std::string name;
  Color color;
  bool is_line;
};

struct Layout {
  double left, top, right, bottom;  // the plot area in pixels
  double x_lo, x_hi, y_lo, y_hi;    // axis coordinates at its edges
  double px(double x) const { return left + (x / 2 - x_lo / 2) / (x_hi / 2 - x_lo / 2) * (right - left); }
  double py(double y) const { return bottom - (y / 2 - y_lo / 2) / (y_hi / 2 - y_lo / 2) * (bottom - top); }
};

struct Frame {
  int64_t width, height;
  std::string title, x_label, y_label;
  bool log_y;
};

Layout make_layout(const Frame& f, double x_lo, double x_hi, double y_lo, double y_hi) {
  Layout l{};
  l.left = f.y_label.empty() ? 62 : 78;
  l.right = static_cast<double>(f.width) - 20;
  l.top = f.title.empty() ? 16 : 36;
  l.bottom = static_cast<double>(f.height) - (f.x_label.empty() ? 30 : 48);
  const auto xr = padded_range(x_lo, x_hi);
  const auto yr = padded_range(y_lo, y_hi);
  l.x_lo = xr.first;
  l.x_hi = xr.second;
  l.y_lo = yr.first;
  l.y_hi = yr.second;
  return l;
}

void draw_axes(Canvas& c, const Frame& f, const Layout& l) {
  const std::vector<Tick> xt = nice_ticks(l.x_lo, l.x_hi, false);
  const std::vector<Tick> yt = nice_ticks(l.y_lo, l.y_hi, f.log_y);
  for (const Tick& t : xt) c.line(l.px(t.at), l.top, l.px(t.at), l.bottom, kGrid, 1);
  for (const Tick& t : yt) c.line(l.left, l.py(t.at), l.right, l.py(t.at), kGrid, 1);
  c.line(l.left, l.bottom, l.right, l.bottom, kBlack, 1);
  c.line(l.left, l.top, l.left, l.bottom, kBlack, 1);
  for (const Tick& t : xt) {
    c.line(l.px(t.at), l.bottom, l.px(t.at), l.bottom + 5, kBlack, 1);
    c.text(l.px(t.at), l.bottom + 13, t.label, 1, Anchor::Middle, false);
  }
  for (const Tick& t : yt) {
    c.line(l.left - 5, l.py(t.at), l.left, l.py(t.at), kBlack, 1);
    c.text(l.left - 8, l.py(t.at), t.label, 1, Anchor::End, false);
  }
  if (!f.title.empty()) c.text((l.left + l.right) / 2, 18, f.title, 2, Anchor::Middle, false);
  if (!f.x_label.empty())
    c.text((l.left + l.right) / 2, static_cast<double>(f.height) - 14, f.x_label, 1, Anchor::Middle, false);
  if (!f.y_label.empty()) c.text(14, (l.top + l.bottom) / 2, f.y_label, 1, Anchor::Middle, true);
}

// The legend goes into the corner of the plot area that covers the fewest of `marks` (pixel
// positions of the drawn data), preferring top right, top left, bottom right, bottom left.
void draw_legend(Canvas& c, const Layout& l, const std::vector<LegendEntry>& entries, double dot_radius,
                 const std::vector<std::pair<double, double>>& marks) {
  if (entries.empty()) return;
  size_t longest = 0;
  for (const LegendEntry& e : entries) longest = std::max(longest, e.name.size());
  const double row = 14;
  const double w = 34 + 6.0 * static_cast<double>(longest);
  const double h = 8 + row * static_cast<double>(entries.size());
  const double corners[4][2] = {{l.right - w - 6, l.top + 6},
                                {l.left + 6, l.top + 6},
                                {l.right - w - 6, l.bottom - h - 6},
                                {l.left + 6, l.bottom - h - 6}};
  int best = 0;
  int64_t best_count = -1;
  for (int k = 0; k < 4; ++k) {
    int64_t count = 0;
    for (const auto& m : marks) {
      const double mx = m.first - corners[k][0];
      const double my = m.second - corners[k][1];
      count += (mx >= -4 && mx <= w + 4 && my >= -4 && my <= h + 4) ? 1 : 0;
    }
    if (best_count < 0 || count < best_count) {
      best = k;
      best_count = count;
    }
  }
  const double x = corners[best][0];
  const double y = corners[best][1];
  c.rect(x, y, w, h, kWhite, Color{160, 160, 160});
  for (size_t i = 0; i < entries.size(); ++i) {
    const double cy = y + 4 + row * (static_cast<double>(i) + 0.5);
    if (entries[i].is_line) {
      c.line(x + 6, cy, x + 22, cy, entries[i].color, 2);
    } else {
      c.dot(x + 14, cy, std::max(3.0, dot_radius), entries[i].color, 1.0);
    }
    c.text(x + 28, cy, entries[i].name, 1, Anchor::Start, false);
  }
}

void check_frame(int64_t width, int64_t height, const char* who) {
  MD_CHECK_VALUE(width >= 160 && width <= 16384 && height >= 120 && height <= 16384, who,
                 ": width and height must be in 160..16384 and 120..16384 pixels, got ", width, " x ", height);
}

std::string lower_extension(const std::string& path) {
  const size_t slash = path.find_last_of("/\\");
  const size_t dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string ext = path.substr(dot);
  for (char& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return ext;
}

std::vector<double> to_doubles(const at::Tensor& t) {
  const at::Tensor d = t.detach().to(at::kCPU, at::kDouble).contiguous();
  const double* p = d.data_ptr<double>();
  return std::vector<double>(p, p + d.numel());
}

struct Extent {
  double x_lo = std::numeric_limits<double>::infinity();
  double x_hi = -std::numeric_limits<double>::infinity();
  double y_lo = std::numeric_limits<double>::infinity();
  double y_hi = -std::numeric_limits<double>::infinity();
  int64_t count = 0;
  void add(double x, double y) {
    x_lo = std::min(x_lo, x);
    x_hi = std::max(x_hi, x);
    y_lo = std::min(y_lo, y);
    y_hi = std::max(y_hi, y);
    ++count;
  }
};

template <typename Plot>
void save_by_extension(const Plot& plot, const std::string& path, const char* who) {
  const std::string ext = lower_extension(path);
  if (ext == ".svg") {
    plot.save_svg(path);
  } else if (ext == ".png") {
    plot.save_png(path);
  } else {
    MD_CHECK_VALUE(false, who, "::save: cannot tell the format of '", path, "' from its extension '", ext,
                   "'; use .svg or .png");
  }
}

// Draws a line plot on any canvas.
void draw_lines(Canvas& c, const LinePlotOptions& o, const std::vector<LinePlot::Series>& series) {
  Extent e;
  for (const auto& s : series) {
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isnan(s.y[i])) e.add(s.x[i], s.y[i]);
    }
  }
  MD_CHECK_VALUE(e.count > 0, "LinePlot: nothing to draw (",
                 series.empty() ? "no series were added" : "every point was skipped as non-finite or non-positive",
                 ")");
  const Frame f{o.width(), o.height(), o.title(), o.x_label(), o.y_label(), o.log_y()};
  const Layout l = make_layout(f, e.x_lo, e.x_hi, e.y_lo, e.y_hi);
  draw_axes(c, f, l);
  c.begin_clip(l.left, l.top, l.right - l.left, l.bottom - l.top);
  std::vector<std::pair<double, double>> marks;
  for (const auto& s : series) {
    std::vector<std::pair<double, double>> run;
    for (size_t i = 0; i <= s.x.size(); ++i) {
      if (i == s.x.size() || std::isnan(s.y[i])) {
        if (!run.empty()) c.polyline(run, s.color, o.line_width());
        marks.insert(marks.end(), run.begin(), run.end());
        run.clear();
      } else {
        run.emplace_back(l.px(s.x[i]), l.py(s.y[i]));
      }
    }
  }
  c.end_clip();
  std::vector<LegendEntry> legend;
  for (const auto& s : series) {
    if (!s.name.empty()) legend.push_back({s.name, s.color, true});
  }
  draw_legend(c, l, legend, 0, marks);
}

void draw_points(Canvas& c, const ScatterPlotOptions& o, const std::vector<ScatterPlot::Group>& groups) {
  Extent e;
  for (const auto& g : groups) {
    for (size_t i = 0; i < g.x.size(); ++i) e.add(g.x[i], g.y[i]);
  }
  MD_CHECK_VALUE(e.count > 0, "ScatterPlot: nothing to draw (",
                 groups.empty() ? "no groups were added" : "every point was empty or skipped as non-finite", ")");
  const Frame f{o.width(), o.height(), o.title(), o.x_label(), o.y_label(), false};
  const Layout l = make_layout(f, e.x_lo, e.x_hi, e.y_lo, e.y_hi);
  draw_axes(c, f, l);
  c.begin_clip(l.left, l.top, l.right - l.left, l.bottom - l.top);
  std::vector<std::pair<double, double>> marks;
  for (const auto& g : groups) {
    for (size_t i = 0; i < g.x.size(); ++i) {
      marks.emplace_back(l.px(g.x[i]), l.py(g.y[i]));
      c.dot(marks.back().first, marks.back().second, o.point_size(), g.color, o.alpha());
    }
  }
  c.end_clip();
  std::vector<LegendEntry> legend;
  for (const auto& g : groups) {
    if (!g.name.empty()) legend.push_back({g.name, g.color, false});
  }
  draw_legend(c, l, legend, o.point_size(), marks);
}

}  // namespace

Color default_color(int64_t i) {
  static const Color kCycle[10] = {{31, 119, 180}, {255, 127, 14},  {44, 160, 44},   {214, 39, 40},  {148, 103, 189},
                                   {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
  return kCycle[((i % 10) + 10) % 10];
}

// ---------------------------------------------------------------------------------------------
// LinePlot

LinePlot::LinePlot(LinePlotOptions options) : options_(std::move(options)) {
  check_frame(options_.width(), options_.height(), "LinePlot");
  MD_CHECK_VALUE(options_.line_width() > 0 && options_.line_width() <= 100,
                 "LinePlotOptions::line_width must be in (0, 100] pixels, got ", options_.line_width());
}

LinePlot& LinePlot::add(const std::string& name, const std::vector<double>& x, const std::vector<double>& y,
                        Color color) {
  MD_CHECK_VALUE(x.size() == y.size(), "LinePlot::add: series '", name, "' has ", x.size(), " x values and ", y.size(),
                 " y values");
  Series s{name, color, {}, {}};
  s.x.reserve(x.size());
  s.y.reserve(y.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const bool keep = std::isfinite(x[i]) && std::isfinite(y[i]) && (!options_.log_y() || y[i] > 0);
    if (!keep) ++skipped_;
    s.x.push_back(keep ? x[i] : 0.0);
    s.y.push_back(keep ? (options_.log_y() ? std::log10(y[i]) : y[i]) : std::numeric_limits<double>::quiet_NaN());
  }
  series_.push_back(std::move(s));
  return *this;
}

LinePlot& LinePlot::add(const std::string& name, const std::vector<double>& x, const std::vector<double>& y) {
  return add(name, x, y, default_color(static_cast<int64_t>(series_.size())));
}

LinePlot& LinePlot::add(const std::string& name, const std::vector<double>& y) {
  std::vector<double> x(y.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<double>(i);
  return add(name, x, y);
}

LinePlot& LinePlot::add(const std::string& name, const at::Tensor& y) {
  check_defined(y, "LinePlot::add: y");
  MD_CHECK_VALUE(y.dim() == 1, "LinePlot::add: y of series '", name, "' must be 1-D, got shape ", shape_string(y));
  MD_CHECK_TYPE(!y.is_complex() && y.scalar_type() != at::kBool, "LinePlot::add: y must be real, got ",
                y.scalar_type());
  return add(name, to_doubles(y));
}

std::string LinePlot::to_svg() const {
  SvgCanvas c(options_.width(), options_.height());
  draw_lines(c, options_, series_);
  return c.finish();
}

at::Tensor LinePlot::render() const {
  RasterCanvas c(options_.width(), options_.height());
  draw_lines(c, options_, series_);
  return c.finish();
}

void LinePlot::save_svg(const std::string& path) const {
  const std::string svg = to_svg();
  detail::write_file_atomically(path, svg.data(), svg.size(), "LinePlot::save_svg");
}

void LinePlot::save_png(const std::string& path) const { write_png(path, render()); }

void LinePlot::save(const std::string& path) const { save_by_extension(*this, path, "LinePlot"); }

// ---------------------------------------------------------------------------------------------
// ScatterPlot

ScatterPlot::ScatterPlot(ScatterPlotOptions options) : options_(std::move(options)) {
  check_frame(options_.width(), options_.height(), "ScatterPlot");
  MD_CHECK_VALUE(options_.point_size() > 0 && options_.point_size() <= 100,
                 "ScatterPlotOptions::point_size must be in (0, 100] pixels, got ", options_.point_size());
  check_in_range(options_.alpha(), 1e-6, 1.0, "ScatterPlotOptions::alpha");
}

ScatterPlot& ScatterPlot::add(const std::string& name, const at::Tensor& points, Color color) {
  check_defined(points, "ScatterPlot::add: points");
  MD_CHECK_VALUE(points.dim() == 2 && points.size(1) == 2, "ScatterPlot::add: points of group '", name,
                 "' must be [N, 2], got shape ", shape_string(points), " (project wider points with project_2d)");
  MD_CHECK_TYPE(!points.is_complex() && points.scalar_type() != at::kBool,
                "ScatterPlot::add: points must be real, got ", points.scalar_type());
  const std::vector<double> v = to_doubles(points);
  Group g{name, color, {}, {}};
  for (size_t i = 0; i + 1 < v.size(); i += 2) {
    if (std::isfinite(v[i]) && std::isfinite(v[i + 1])) {
      g.x.push_back(v[i]);
      g.y.push_back(v[i + 1]);
    } else {
      ++skipped_;
    }
  }
  groups_.push_back(std::move(g));
  return *this;
}

ScatterPlot& ScatterPlot::add(const std::string& name, const at::Tensor& points) {
  return add(name, points, default_color(static_cast<int64_t>(groups_.size())));
}

std::string ScatterPlot::to_svg() const {
  SvgCanvas c(options_.width(), options_.height());
  draw_points(c, options_, groups_);
  return c.finish();
}

at::Tensor ScatterPlot::render() const {
  RasterCanvas c(options_.width(), options_.height());
  draw_points(c, options_, groups_);
  return c.finish();
}

void ScatterPlot::save_svg(const std::string& path) const {
  const std::string svg = to_svg();
  detail::write_file_atomically(path, svg.data(), svg.size(), "ScatterPlot::save_svg");
}

void ScatterPlot::save_png(const std::string& path) const { write_png(path, render()); }

void ScatterPlot::save(const std::string& path) const { save_by_extension(*this, path, "ScatterPlot"); }

// ---------------------------------------------------------------------------------------------

at::Tensor project_2d(const at::Tensor& points) {
  check_defined(points, "project_2d: points");
  check_floating(points, "project_2d: points");
  MD_CHECK_VALUE(points.dim() == 2 && points.size(0) >= 1 && points.size(1) >= 1,
                 "project_2d: points must be [N, D] with N >= 1 and D >= 1, got shape ", shape_string(points));
  const at::Tensor p = points.detach().to(at::kCPU);
  const int64_t d = p.size(1);
  if (d == 2) return p.clone();
  if (d == 1) return at::cat({p, at::zeros_like(p)}, 1);
  const at::Tensor x = p.to(at::kDouble);
  const at::Tensor centred = x - x.mean(0, /*keepdim=*/true);
  const at::Tensor cov = centred.t().mm(centred);
  // eigh returns eigenvalues in ascending order: the last two columns are the leading components.
  const at::Tensor vecs = std::get<1>(at::linalg_eigh(cov));
  at::Tensor basis = at::stack({vecs.select(1, d - 1), vecs.select(1, d - 2)}, 1);  // [D, 2]
  for (int64_t k = 0; k < 2; ++k) {
    const at::Tensor col = basis.select(1, k);
    const int64_t arg = col.abs().argmax().item<int64_t>();
    if (col[arg].item<double>() < 0) basis.select(1, k).neg_();
  }
  return centred.mm(basis).to(points.scalar_type());
}

}  // namespace io
}  // namespace manifold_diffusion
