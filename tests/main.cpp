// Test entry point: a fixed thread count (MD_TEST_THREADS, default 2) and a fixed global seed, so
// every test starts from the same state whatever order ctest runs it in.
#include <manifold_diffusion/core/device.h>
#include <manifold_diffusion/core/random.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const char* env = std::getenv("MD_TEST_THREADS");
  const int threads = mdiff::set_num_threads(env != nullptr ? std::atoi(env) : 2);
  mdiff::manual_seed(0);
  if (!::testing::GTEST_FLAG(list_tests)) {
    std::printf("%s (test threads: %d)\n", mdiff::describe_build().c_str(), threads);
  }
  return RUN_ALL_TESTS();
}
