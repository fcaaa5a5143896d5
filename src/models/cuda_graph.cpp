#include "md_build_config.h"

#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/models/cuda_graph.h>

#include <ATen/ATen.h>

#ifdef MD_WITH_CUDA_KERNELS
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <unordered_map>

namespace manifold_diffusion {
namespace {

#ifdef MD_WITH_CUDA_KERNELS
std::string signature(const at::Tensor& x, const at::Tensor& t, const at::Tensor& cond) {
  std::ostringstream s;
  for (const at::Tensor* p : {&x, &t, &cond}) {
    if (p->defined()) {
      s << p->sizes() << p->scalar_type() << p->device() << p->is_contiguous() << ';';
    } else {
      s << "none;";
    }
  }
  return s.str();
}

struct Captured {
  std::unique_ptr<at::cuda::CUDAGraph> graph;
  at::Tensor x, t, cond, out;
};

struct GraphState {
  ModelFunction model;
  CudaGraphOptions options;
  std::mutex mutex;
  std::unordered_map<std::string, std::shared_ptr<Captured>> graphs;
};

at::Tensor static_copy(const at::Tensor& t) {
  return t.defined() ? t.clone(at::MemoryFormat::Preserve) : t;
}

std::shared_ptr<Captured> capture(GraphState& s, const at::Tensor& x, const at::Tensor& t, const at::Tensor& cond) {
  auto c = std::make_shared<Captured>();
  c->x = static_copy(x);
  c->t = static_copy(t);
  c->cond = static_copy(cond);
  const c10::cuda::CUDAGuard device_guard(x.device());
  const c10::cuda::CUDAStream current = c10::cuda::getCurrentCUDAStream();
  const c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(false, x.device().index());
  // The side stream starts after everything queued so far (the static copies included).
  at::cuda::CUDAEvent ready;
  ready.record(current);
  ready.block(side);
  {
    const c10::cuda::CUDAStreamGuard stream_guard(side);
    for (int64_t i = 0; i < s.options.warmup(); ++i) {
      (void)s.model(c->x, c->t, c->cond);
    }
    c->graph = std::make_unique<at::cuda::CUDAGraph>();
    c->graph->capture_begin();
    c->out = s.model(c->x, c->t, c->cond);
    c->graph->capture_end();
  }
  at::cuda::CUDAEvent done;
  done.record(side);
  done.block(current);
  return c;
}
#endif

}  // namespace

bool cuda_graphs_available() {
#ifdef MD_WITH_CUDA_KERNELS
  return true;
#else
  return false;
#endif
}

ModelFunction cuda_graph_model(ModelFunction model, CudaGraphOptions options) {
  MD_CHECK_VALUE(static_cast<bool>(model), "cuda_graph_model: model is empty");
  MD_CHECK_VALUE(options.warmup() >= 1, "cuda_graph_model: warmup must be at least 1, got ", options.warmup());
  MD_CHECK_VALUE(options.max_graphs() >= 0, "cuda_graph_model: max_graphs must be non-negative, got ",
                 options.max_graphs());
#ifdef MD_WITH_CUDA_KERNELS
  auto state = std::make_shared<GraphState>();
  state->model = std::move(model);
  state->options = options;
  return [state](const at::Tensor& x, const at::Tensor& t_in, const at::Tensor& cond_in) -> at::Tensor {
    // Under grad mode the call may build a graph through the network's parameters: eager.
    if (!state->options.enabled() || !x.defined() || !x.is_cuda() || at::GradMode::is_enabled()) {
      return state->model(x, t_in, cond_in);
    }
    // Timesteps or labels given on the host join x's device (the graph reads device buffers).
    const at::Tensor t = t_in.defined() ? t_in.to(x.device()) : t_in;
    const at::Tensor cond = cond_in.defined() ? cond_in.to(x.device()) : cond_in;
    const std::string key = signature(x, t, cond);
    std::lock_guard<std::mutex> lock(state->mutex);
    auto it = state->graphs.find(key);
    std::shared_ptr<Captured> c;
    if (it != state->graphs.end()) {
      c = it->second;
    } else {
      if (static_cast<int64_t>(state->graphs.size()) >= state->options.max_graphs()) {
        return state->model(x, t, cond);
      }
      c = capture(*state, x, t, cond);
      state->graphs.emplace(key, c);
    }
    const c10::cuda::CUDAGuard device_guard(x.device());
    c->x.copy_(x);
    if (t.defined()) {
      c->t.copy_(t);
    }
    if (cond.defined()) {
      c->cond.copy_(cond);
    }
    c->graph->replay();
    return c->out.clone();
  };
#else
  // No CUDA in this build: nothing can be captured, every call is eager.
  return model;
#endif
}

ModelFunction cast_model(ModelFunction model, at::ScalarType compute_dtype) {
  MD_CHECK_VALUE(static_cast<bool>(model), "cast_model: model is empty");
  MD_CHECK_VALUE(at::isFloatingType(compute_dtype), "cast_model: compute_dtype must be floating, got ",
                 compute_dtype);
  return [model = std::move(model), compute_dtype](const at::Tensor& x, const at::Tensor& t,
                                                   const at::Tensor& cond) -> at::Tensor {
    check_defined(x, "x");
    auto in = [&](const at::Tensor& v) {
      return v.defined() && v.is_floating_point() ? v.to(compute_dtype) : v;
    };
    // Timesteps stay as given: a reduced precision would round them (999 is 1000 in bfloat16).
    return model(in(x), t, in(cond)).to(x.scalar_type());
  };
}

}  // namespace manifold_diffusion
