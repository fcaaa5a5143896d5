#pragma once
// Helpers shared by the backbone tests.

#include <manifold_diffusion/core/device.h>

#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

namespace mdiff_test {

/// Adds Gaussian noise to every parameter, so zero-initialised layers no longer block the signal.
inline void perturb(torch::nn::Module& m, double scale = 0.05) {
  at::NoGradGuard no_grad;
  for (auto& p : m.parameters()) {
    p.add_(at::randn_like(p) * scale);
  }
}

/// Fixture for tests of small networks: one intra-op thread while the test runs. The tensors are
/// tiny, so thread synchronisation dominates, and on a 2-core machine shared with other test
/// processes it makes these tests about ten times slower.
class SmallNetworkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_threads_ = mdiff::num_threads();
    mdiff::set_num_threads(1);
  }
  void TearDown() override { mdiff::set_num_threads(saved_threads_); }

 private:
  int saved_threads_ = 1;
};

}  // namespace mdiff_test
