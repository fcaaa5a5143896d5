// libFuzzer target: training checkpoints (Trainer::load_checkpoint_bytes) of a small MLP trainer.
//
// A checkpoint is a StateFile (safetensors with sections of named tensors): every byte is parsed by
// this library's own, instrumented code. The contract: the trainer restores a consistent state
// (finite weights) or fails with a c10::Error, and a failed load leaves it usable. LibTorch
// archives (the 0.1 format) are refused before any parser sees them: LibTorch's TorchScript parser
// crashed (SEGV in ScriptTypeParser::parseClassConstant) on a damaged archive in this target.
//
// Set MD_FUZZ_WRITE_SEED=path to write a valid checkpoint of this trainer (the seed corpus entry).
#include "fuzz_util.h"

#include <manifold_diffusion/models/mlp_denoiser.h>
#include <manifold_diffusion/schedules/noise_schedule.h>
#include <manifold_diffusion/training/trainer.h>

#include <ATen/ATen.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include <unistd.h>

namespace {

namespace mdiff = manifold_diffusion;

struct Fixture {
  mdiff::MLPDenoiser net{nullptr};
  std::unique_ptr<mdiff::Trainer> trainer;
  std::string good;  // a valid checkpoint of this trainer

  Fixture() {
    at::manual_seed(0);
    net = mdiff::MLPDenoiser(mdiff::MLPDenoiserOptions(2).hidden(8).num_blocks(1).time_embed_dim(4));
    auto gen = std::make_shared<at::Generator>(at::detail::createCPUGenerator(1));
    mdiff::DataSource src;
    src.next = [gen] {
      mdiff::TrainBatch b;
      b.x0 = at::randn({8, 2}, *gen, at::TensorOptions(at::kFloat));
      return b;
    };
    trainer = std::make_unique<mdiff::Trainer>(mdiff::TrainerOptions(4).lr(1e-3).ema_decay(0.9).log_every(0).seed(1),
                                               net.ptr(), mdiff::network_function(net),
                                               mdiff::NoiseSchedule::linear(20), mdiff::DenoiserOptions(),
                                               std::move(src));
    trainer->train_step();
    const std::string path = "/tmp/mdiff-fuzz-checkpoint-" + std::to_string(::getpid()) + ".safetensors";
    trainer->save_checkpoint(path);
    std::ifstream in(path, std::ios::binary);
    good.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    std::remove(path.c_str());
  }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  Fixture& f = fixture();
  if (const char* seed = std::getenv("MD_FUZZ_WRITE_SEED")) {
    std::ofstream out(seed, std::ios::binary);
    out.write(f.good.data(), static_cast<std::streamsize>(f.good.size()));
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Fixture& f = fixture();
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  if (mdiff_fuzz::accepts("load_checkpoint_bytes", [&] { f.trainer->load_checkpoint_bytes(bytes, "fuzz input"); })) {
    for (const auto& p : f.net->parameters()) {
      mdiff_fuzz::require(p.dim() >= 1 && at::isfinite(p).all().item<bool>(), "restored parameters are finite");
    }
  }
  // Whatever happened, the trainer still loads a good checkpoint and trains.
  mdiff_fuzz::require(mdiff_fuzz::accepts("reload", [&] { f.trainer->load_checkpoint_bytes(f.good, "good"); }),
                      "the trainer loads a good checkpoint after any input");
  return 0;
}
