#pragma once

/// \file
/// Network calls replayed from captured CUDA graphs, and networks run in a reduced precision.

#include <manifold_diffusion/models/denoiser.h>

#include <torch/arg.h>

#include <cstdint>

namespace manifold_diffusion {

/// Options of cuda_graph_model().
///
/// Example:
/// \code
///   auto opts = mdiff::CudaGraphOptions().warmup(2).max_graphs(4);
/// \endcode
struct CudaGraphOptions {
  /// false: every call runs eagerly (the switch to turn graphs off without rewiring code).
  TORCH_ARG(bool, enabled) = true;
  /// Eager calls on a side stream before capturing a shape (library and cuBLAS/cuDNN setup must
  /// happen outside the capture).
  TORCH_ARG(int64_t, warmup) = 3;
  /// Distinct input signatures (shapes, dtypes, conditioning present or not) kept captured; a
  /// further signature runs eagerly.
  TORCH_ARG(int64_t, max_graphs) = 8;
};

/// True when this build can capture CUDA graphs (the library was built with its CUDA kernels).
bool cuda_graphs_available();

/// Wraps a network call so that calls on CUDA tensors without autograd replay a captured CUDA
/// graph: the first call of each input signature warms up and captures the network into a graph
/// with static input and output buffers; later calls copy their inputs into those buffers, replay
/// the graph (one launch instead of one per layer) and return a copy of the output. Calls on the
/// CPU, calls that record gradients (e.g. DPS / MCG guidance through the network), and calls
/// beyond `max_graphs` signatures run the network eagerly. The network must be a pure function of
/// its inputs during sampling (eval mode: no dropout, no host synchronisation inside).
///
/// Thread-safe: replays of one wrapper are serialised by a mutex.
///
/// Example:
/// \code
///   mdiff::UNet net(mdiff::UNetOptions(1, 1));
///   net->to(torch::kCUDA);
///   net->eval();
///   mdiff::ModelFunction fn = [net](const at::Tensor& x, const at::Tensor& t, const at::Tensor& c) mutable {
///     return net->forward(x, t, c);
///   };
///   mdiff::Denoiser den(mdiff::cuda_graph_model(fn), mdiff::NoiseSchedule::cosine(1000),
///                       mdiff::PredictionType::VPrediction);
/// \endcode
ModelFunction cuda_graph_model(ModelFunction model, CudaGraphOptions options = {});

/// Wraps a network call so that the network runs in `compute_dtype` (e.g. bfloat16 on a GPU):
/// `x` and floating conditioning are cast to it (timesteps are not), the output is cast back to the dtype of `x`. The network's
/// parameters must already be in `compute_dtype` (`net->to(torch::kBFloat16)`). Integer
/// conditioning (class labels) passes unchanged.
///
/// Example:
/// \code
///   net->to(torch::kBFloat16);
///   mdiff::ModelFunction bf16 = mdiff::cast_model(fn, torch::kBFloat16);
/// \endcode
ModelFunction cast_model(ModelFunction model, at::ScalarType compute_dtype);

}  // namespace manifold_diffusion
