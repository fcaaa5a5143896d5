#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/training/callbacks.h>
#include <manifold_diffusion/training/trainer.h>

#include <fmt/format.h>

#include <unistd.h>

#include <cmath>
#include <string>

namespace manifold_diffusion {

namespace {

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "--:--";
  const auto total = static_cast<int64_t>(s + 0.5);
  const int64_t h = total / 3600, m = (total / 60) % 60, sec = total % 60;
  return h > 0 ? fmt::format("{}:{:02}:{:02}", h, m, sec) : fmt::format("{:02}:{:02}", m, sec);
}

}  // namespace

ProgressBar::ProgressBar(std::FILE* out, double interval_seconds)
    : out_(out), interval_(interval_seconds), terminal_(out != nullptr && ::isatty(::fileno(out)) != 0) {
  MD_CHECK_VALUE(out != nullptr, "ProgressBar: output stream is null");
  MD_CHECK_VALUE(interval_seconds >= 0, "ProgressBar: interval_seconds must be >= 0, got ", interval_seconds);
}

bool ProgressBar::on_step(Trainer& /*trainer*/, const TrainStepInfo& info) {
  if (!info.skipped_this_step && std::isfinite(info.loss)) {
    smoothed_ = have_smoothed_ ? 0.98 * smoothed_ + 0.02 * info.loss : info.loss;
    have_smoothed_ = true;
  }
  const bool last = info.step >= info.total_steps;
  const double eta = info.steps_per_second > 0
                         ? static_cast<double>(info.total_steps - info.step) / info.steps_per_second
                         : -1.0;
  const double frac = static_cast<double>(info.step) / static_cast<double>(std::max<int64_t>(1, info.total_steps));
  if (terminal_) {
    if (!last && info.seconds - last_print_ < 0.1) return false;
    last_print_ = info.seconds;
    const int width = 30;
    const int filled = static_cast<int>(frac * width);
    fmt::print(out_, "\r[{}{}] {:>3.0f}% {}/{} {:.2f} it/s ETA {} loss {:.4f}{}", std::string(filled, '#'),
               std::string(width - filled, '.'), 100 * frac, info.step, info.total_steps, info.steps_per_second,
               format_duration(eta), smoothed_, info.skipped > 0 ? fmt::format(" skipped {}", info.skipped) : "");
    std::fflush(out_);
    printed_ = true;
    return false;
  }
  if (last || info.seconds - last_print_ >= interval_) {
    last_print_ = info.seconds;
    fmt::print(out_, "step {}/{} ({:.0f}%)  {:.2f} it/s  elapsed {}  ETA {}  loss {:.4f}  lr {:.3g}{}\n", info.step,
               info.total_steps, 100 * frac, info.steps_per_second, format_duration(info.seconds),
               format_duration(eta), smoothed_, info.lr,
               info.skipped > 0 ? fmt::format("  skipped {}", info.skipped) : "");
    std::fflush(out_);
  }
  return false;
}

void ProgressBar::on_end(Trainer& /*trainer*/) {
  if (terminal_ && printed_) {
    fmt::print(out_, "\n");
    std::fflush(out_);
  }
}

LossPrinter::LossPrinter(int64_t every, std::FILE* out) : every_(every), out_(out) {
  MD_CHECK_VALUE(every >= 1, "LossPrinter: every must be >= 1, got ", every);
  MD_CHECK_VALUE(out != nullptr, "LossPrinter: output stream is null");
}

bool LossPrinter::on_step(Trainer& /*trainer*/, const TrainStepInfo& info) {
  if (!info.skipped_this_step) {
    sum_ += info.loss;
    ++count_;
  }
  if (info.step % every_ == 0 || info.step == info.total_steps) {
    fmt::print(out_, "step {:>7}  loss {:.5f}  lr {:.3g}  grad_norm {:.3g}\n", info.step,
               count_ > 0 ? sum_ / static_cast<double>(count_) : NAN, info.lr, info.grad_norm);
    std::fflush(out_);
    sum_ = 0;
    count_ = 0;
  }
  return false;
}

EarlyStop::EarlyStop(int64_t patience, double min_delta) : patience_(patience), min_delta_(min_delta) {
  MD_CHECK_VALUE(patience >= 1, "EarlyStop: patience must be >= 1, got ", patience);
  MD_CHECK_VALUE(min_delta >= 0, "EarlyStop: min_delta must be >= 0, got ", min_delta);
}

bool EarlyStop::on_validation(Trainer& /*trainer*/, int64_t /*step*/, double val_loss) {
  if (val_loss < best_ - min_delta_) {
    best_ = val_loss;
    bad_ = 0;
    return false;
  }
  return ++bad_ >= patience_;
}

TimeLimit::TimeLimit(double seconds) : seconds_(seconds) {
  MD_CHECK_VALUE(std::isfinite(seconds) && seconds > 0, "TimeLimit: seconds must be positive, got ", seconds);
}

bool TimeLimit::on_step(Trainer& /*trainer*/, const TrainStepInfo& info) {
  if (info.seconds >= seconds_) fired_ = true;
  return fired_;
}

CheckpointEvery::CheckpointEvery(int64_t every) : every_(every) {
  MD_CHECK_VALUE(every >= 1, "CheckpointEvery: every must be >= 1, got ", every);
}

bool CheckpointEvery::on_step(Trainer& trainer, const TrainStepInfo& info) {
  if (info.step % every_ == 0) trainer.save_checkpoint();
  return false;
}

Preview::Preview(int64_t every, Fn fn) : every_(every), fn_(std::move(fn)) {
  MD_CHECK_VALUE(every >= 1, "Preview: every must be >= 1, got ", every);
  MD_CHECK_VALUE(static_cast<bool>(fn_), "Preview: function is empty");
}

bool Preview::on_step(Trainer& trainer, const TrainStepInfo& info) {
  if (info.step % every_ != 0) return false;
  return fn_(trainer, info.step);
}

}  // namespace manifold_diffusion
