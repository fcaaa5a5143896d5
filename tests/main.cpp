// Test entry point: a fixed thread count (MD_TEST_THREADS, default 2) and a fixed global seed, set
// again before every test, so each test starts from the same state whatever ran before it.
#include <manifold_diffusion/core/device.h>
#include <manifold_diffusion/core/random.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>

namespace {

// Every test starts with the same seed and thread count, whichever tests ran before it in this
// process (ctest runs one process per suite).
class FreshState : public ::testing::EmptyTestEventListener {
 public:
  explicit FreshState(int threads) : threads_(threads) {}
  void OnTestStart(const ::testing::TestInfo& /*info*/) override {
    mdiff::set_num_threads(threads_);
    mdiff::manual_seed(0);
  }

 private:
  int threads_;
};

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const char* env = std::getenv("MD_TEST_THREADS");
  const int threads = mdiff::set_num_threads(env != nullptr ? std::atoi(env) : 2);
  mdiff::manual_seed(0);
  ::testing::UnitTest::GetInstance()->listeners().Append(new FreshState(threads));
  if (!::testing::GTEST_FLAG(list_tests)) {
    std::printf("%s (test threads: %d)\n", mdiff::describe_build().c_str(), threads);
  }
  return RUN_ALL_TESTS();
}
