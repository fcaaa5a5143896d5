#pragma once

/// \file
/// Umbrella header: everything manifold_diffusion offers.
///
/// Example:
/// \code
///   #include <manifold_diffusion/manifold_diffusion.h>
///   int main() {
///     mdiff::set_num_threads(2);
///     mdiff::manual_seed(0);
///     fmt::print("{}\n", mdiff::describe_build());
///   }
/// \endcode

#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/core/device.h>
#include <manifold_diffusion/core/enum.h>
#include <manifold_diffusion/core/file.h>
#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/core/version.h>
#include <manifold_diffusion/data/augment.h>
#include <manifold_diffusion/data/idx.h>
#include <manifold_diffusion/data/loader.h>
#include <manifold_diffusion/data/point_cloud.h>
#include <manifold_diffusion/data/synthetic.h>
#include <manifold_diffusion/models/autoencoder.h>
#include <manifold_diffusion/models/blocks.h>
#include <manifold_diffusion/models/cuda_graph.h>
#include <manifold_diffusion/models/ema.h>
#include <manifold_diffusion/models/embeddings.h>
#include <manifold_diffusion/models/mlp_denoiser.h>
#include <manifold_diffusion/models/diffusers_unet.h>
#include <manifold_diffusion/models/unet.h>
#include <manifold_diffusion/ops/attention.h>
#include <manifold_diffusion/ops/backend.h>
#include <manifold_diffusion/ops/group_norm.h>
#include <manifold_diffusion/ops/knn_topk.h>
#include <manifold_diffusion/ops/project_local_pca.h>
#include <manifold_diffusion/ops/q_sample.h>
#include <manifold_diffusion/ops/q_sample_with_target.h>
#include <manifold_diffusion/ops/sampler_step.h>
#include <manifold_diffusion/schedules/noise_schedule.h>
#include <manifold_diffusion/models/denoiser.h>
#include <manifold_diffusion/samplers/ddim.h>
#include <manifold_diffusion/samplers/ddpm.h>
#include <manifold_diffusion/samplers/dpm_solver.h>
#include <manifold_diffusion/samplers/euler.h>
#include <manifold_diffusion/samplers/predictor_corrector.h>
#include <manifold_diffusion/samplers/sampler.h>
#include <manifold_diffusion/samplers/unipc.h>
#include <manifold_diffusion/samplers/diffusers_config.h>
#include <manifold_diffusion/samplers/factory.h>
#include <manifold_diffusion/metrics/distribution.h>
#include <manifold_diffusion/metrics/feature_classifier.h>
#include <manifold_diffusion/metrics/image.h>
#include <manifold_diffusion/metrics/neighbours.h>
#include <manifold_diffusion/training/callbacks.h>
#include <manifold_diffusion/training/checkpoint.h>
#include <manifold_diffusion/training/loss_term.h>
#include <manifold_diffusion/training/lr_schedule.h>
#include <manifold_diffusion/training/trainer.h>
#include <manifold_diffusion/constraints/spec.h>
#include <manifold_diffusion/constraints/training.h>
#include <manifold_diffusion/io/png.h>
#include <manifold_diffusion/io/safetensors.h>
#include <manifold_diffusion/io/plot.h>
#include <manifold_diffusion/data/image_folder.h>
#include <manifold_diffusion/constraints/measurement.h>
#include <manifold_diffusion/constraints/sampling.h>
#include <manifold_diffusion/constraints/spec.h>
#include <manifold_diffusion/manifold/manifold.h>
#include <manifold_diffusion/manifold/knn.h>
#include <manifold_diffusion/manifold/pca.h>
#include <manifold_diffusion/manifold/analytic.h>
#include <manifold_diffusion/manifold/reference.h>
#include <manifold_diffusion/manifold/embedding.h>
