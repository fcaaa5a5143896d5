// Benchmark entry point: sets LibTorch's thread count from MD_BENCH_THREADS (default 2) and records
// it, with the build description, in the benchmark context printed at the top of every report.
#include <manifold_diffusion/core/device.h>

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>

int main(int argc, char** argv) {
  const char* env = std::getenv("MD_BENCH_THREADS");
  const int threads = mdiff::set_num_threads(env != nullptr ? std::atoi(env) : 2);
  benchmark::AddCustomContext("torch_threads", std::to_string(threads));
  benchmark::AddCustomContext("build", mdiff::describe_build());
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
    return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
