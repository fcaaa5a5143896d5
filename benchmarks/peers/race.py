"""The Python side of the race: diffusers on PyTorch, the same workloads as md_race (race.cpp).

  sampling  DDIMScheduler, 50 steps, batch 64 of 1x28x28, UNet2DModel, under torch.inference_mode()
  training  one step at batch 128: add_noise, forward, MSE, backward, torch.optim.AdamW
  toy       DDIMScheduler, 50 steps, batch 4096 of points in R^3, manifold_diffusion's MLPDenoiser
            rebuilt in plain PyTorch

Run it through benchmarks/peers/run.sh, which sets up the virtual environment (Debian's
python3-torch plus the diffusers pinned in requirements.txt) and runs both sides alternately:

  python race.py --workload sampling --reps 1 --threads 2 --json out/race/theirs-sampling-1.json
"""

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import diffusers
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from diffusers.models.attention_processor import Attention

ENV_NAMES = ["OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "KMP_AFFINITY", "OMP_PROC_BIND",
             "GOMP_CPU_AFFINITY", "DNNL_VERBOSE", "ONEDNN_VERBOSE", "LD_PRELOAD"]


def race_unet():
    """The UNet of the race; md_race's race_unet_options() is configured to match it."""
    return UNet2DModel(
        sample_size=28,
        in_channels=1,
        out_channels=1,
        block_out_channels=(32, 64, 128),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=8,
        norm_num_groups=32,
    )


def timestep_features(t, dim, max_period=10000.0):
    """[cos(t f), sin(t f)] with f_i = exp(-ln(max_period) i / (dim / 2)): the library's sinusoidal embedding."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class MLPResBlock(nn.Module):
    """x + fc2(h * (1 + scale) + shift) with h = SiLU(fc1(LayerNorm(x))) and (scale, shift) from the embedding."""

    def __init__(self, hidden):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.emb_proj = nn.Linear(hidden, 2 * hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, x, emb):
        h = F.silu(self.fc1(self.norm(x)))
        scale, shift = self.emb_proj(F.silu(emb)).chunk(2, dim=1)
        return x + self.fc2(h * (1 + scale) + shift)


class MLPDenoiser(nn.Module):
    """manifold_diffusion's MLPDenoiser (include/manifold_diffusion/models/mlp_denoiser.h) in PyTorch:
    sinusoidal time features -> Linear, SiLU, Linear; Linear(dim, hidden); residual FiLM blocks;
    LayerNorm, SiLU, Linear(hidden, dim)."""

    def __init__(self, dim=3, hidden=256, num_blocks=4, time_embed_dim=128):
        super().__init__()
        self.time_embed_dim = time_embed_dim
        self.time_fc1 = nn.Linear(time_embed_dim, hidden)
        self.time_fc2 = nn.Linear(hidden, hidden)
        self.input = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList([MLPResBlock(hidden) for _ in range(num_blocks)])
        self.output_norm = nn.LayerNorm(hidden)
        self.output = nn.Linear(hidden, dim)

    def forward(self, x, t):
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        emb = self.time_fc2(F.silu(self.time_fc1(timestep_features(t, self.time_embed_dim))))
        h = self.input(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.output(F.silu(self.output_norm(h)))


def count_macs(model, *inputs):
    """MACs of one forward: Conv2d and Linear layers from their output shapes (forward hooks), plus the
    two attention matmuls (QK^T and AV: 2 * N * L^2 * C for L positions of C channels) of every
    diffusers Attention block. Elementwise work is not counted, as in benchmarks/model_cost.h."""
    total = [0]

    def conv_hook(m, inp, out):
        k = m.kernel_size[0] * m.kernel_size[1]
        total[0] += out.numel() * (m.in_channels // m.groups) * k

    def linear_hook(m, inp, out):
        total[0] += out.numel() * m.in_features

    def attention_hook(m, inp, out):
        x = inp[0]
        if x.dim() == 4:  # [N, C, H, W]
            n, c, positions = x.shape[0], x.shape[1], x.shape[2] * x.shape[3]
        else:  # [N, L, C]
            n, positions, c = x.shape
        total[0] += 2 * n * positions * positions * c

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
        elif isinstance(m, Attention):
            handles.append(m.register_forward_hook(attention_hook))
    with torch.inference_mode():
        model(*inputs)
    for h in handles:
        h.remove()
    return total[0]


def parameters(model):
    return sum(p.numel() for p in model.parameters())


def ddim(model_fn, scheduler, shape, steps, seed):
    """The loop of diffusers' DDIMPipeline, without the conversion to images."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        out = model_fn(x, t)
        x = scheduler.step(out, t, x, eta=0.0).prev_sample
    return x


def result(name, what, unit, batch, iterations, items, times, params, macs, flop_per_iteration):
    med = statistics.median(times)
    return {
        "workload": name,
        "what": what,
        "unit": unit,
        "batch": batch,
        "iterations_per_rep": iterations,
        "items_per_rep": items,
        "times_s": times,
        "median_s": med,
        "items_per_s": items / med,
        "s_per_iteration": med / iterations,
        "params": params,
        "gflop_per_forward": 2 * macs / 1e9,
        "gflop_per_s": flop_per_iteration * iterations / med / 1e9,
    }


def timed(name, reps, fn):
    times = []
    for i in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        print(f"  theirs {name} rep {i + 1}/{reps}: {times[-1]:.3f} s", flush=True)
    return times


def run_sampling(a):
    batch = 16 if a.quick else 64
    steps = a.sample_steps or (3 if a.quick else 50)
    reps = a.reps or (1 if a.quick else 3)
    torch.manual_seed(a.seed)
    unet = race_unet().eval()
    macs = count_macs(unet, torch.zeros(batch, 1, 28, 28), torch.tensor(500))
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                              clip_sample=False, set_alpha_to_one=True, timestep_spacing="trailing",
                              prediction_type="epsilon")

    def sample(n_steps):
        with torch.inference_mode():
            x = ddim(lambda x, t: unet(x, t).sample, scheduler, (batch, 1, 28, 28), n_steps, a.seed)
        assert torch.isfinite(x).all(), "non-finite samples"

    for _ in range(a.warmup):
        sample(1 if a.quick else 2)
    times = timed("sampling", reps, lambda: sample(steps))
    what = f"DDIMScheduler {steps} steps (eta 0, trailing, linear betas, epsilon), UNet2DModel, batch {batch} of 1x28x28"
    return result("sampling", what, "images", batch, steps, batch, times, parameters(unet), macs, 2 * macs)


def run_training(a):
    batch = 32 if a.quick else 128
    steps = a.train_steps or (1 if a.quick else 3)
    reps = a.reps or (1 if a.quick else 3)
    torch.manual_seed(a.seed)
    unet = race_unet()
    macs = count_macs(unet, torch.zeros(batch, 1, 28, 28), torch.zeros(batch, dtype=torch.long))
    unet.train()
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4, weight_decay=0.0)
    g = torch.Generator().manual_seed(a.seed)
    data = torch.rand(1024, 1, 28, 28, generator=g) * 2 - 1

    def train(n):
        for _ in range(n):
            x0 = data[torch.randint(0, data.shape[0], (batch,), generator=g)]
            t = torch.randint(0, 1000, (batch,), generator=g)
            noise = torch.randn(x0.shape, generator=g)
            x_t = noise_scheduler.add_noise(x0, noise, t)
            loss = F.mse_loss(unet(x_t, t).sample, noise)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            assert math.isfinite(loss.item()), "non-finite training loss"

    for _ in range(a.warmup):
        train(1)
    times = timed("training", reps, lambda: train(steps))
    what = f"add_noise, forward, MSE, backward, AdamW, UNet2DModel, batch {batch} of 1x28x28"
    return result("training", what, "images", batch, steps, batch * steps, times, parameters(unet), macs, 6 * macs)


def run_toy(a):
    batch = 1024 if a.quick else 4096
    steps = a.sample_steps or (5 if a.quick else 50)
    reps = a.reps or (1 if a.quick else 5)
    torch.manual_seed(a.seed)
    net = MLPDenoiser().eval()
    macs = count_macs(net, torch.zeros(batch, 3), torch.zeros(batch))
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=False,
                              set_alpha_to_one=True, timestep_spacing="trailing", prediction_type="v_prediction")

    def sample(n_steps):
        with torch.inference_mode():
            x = ddim(net, scheduler, (batch, 3), n_steps, a.seed)
        assert torch.isfinite(x).all(), "non-finite samples"

    for _ in range(a.warmup):
        sample(steps)
    times = timed("toy", reps, lambda: sample(steps))
    what = (f"DDIMScheduler {steps} steps (eta 0, trailing, squaredcos_cap_v2, v_prediction), MLPDenoiser in "
            f"PyTorch (3, hidden 256, 4 blocks), batch {batch} points in R^3")
    return result("toy", what, "samples", batch, steps, batch, times, parameters(net), macs, 2 * macs)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", action="append", choices=["sampling", "training", "toy"],
                   help="repeatable; default: all three")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="a short smoke run: a quarter of the batch, few steps, one repetition")
    p.add_argument("--reps", type=int, default=0, help="timed repetitions (0: 3 for sampling and training, 5 for toy)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--train-steps", type=int, default=0, help="optimiser steps per training repetition (0: 3)")
    p.add_argument("--sample-steps", type=int, default=0, help="DDIM steps (0: 50)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="")
    a = p.parse_args()
    workloads = a.workload or ["sampling", "training", "toy"]

    torch.set_num_threads(a.threads)
    env = {k: os.environ.get(k) for k in ENV_NAMES}
    print(f"race.py: torch {torch.__version__}, diffusers {diffusers.__version__}, numpy {np.__version__}, "
          f"python {platform.python_version()} | torch threads {torch.get_num_threads()}", flush=True)
    for k in sorted(env):
        print(f"  env {k}={env[k] if env[k] is not None else '(unset)'}")
    out = {
        "side": "theirs",
        "library": f"diffusers {diffusers.__version__}",
        "torch_version": torch.__version__,
        "diffusers_version": diffusers.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "torch_parallel_info": torch.__config__.parallel_info(),
        "threads": torch.get_num_threads(),
        "quick": a.quick,
        "seed": a.seed,
        "env": env,
        "time": int(time.time()),
        "workloads": {},
    }
    runners = {"sampling": run_sampling, "training": run_training, "toy": run_toy}
    for w in workloads:
        r = runners[w](a)
        print(f"theirs {w}: {r['what']}\n  params {r['params']} | {r['gflop_per_forward']:.3f} GFLOP per forward | "
              f"median {r['median_s']:.3f} s per rep | {r['s_per_iteration']:.4f} s per iteration | "
              f"{r['items_per_s']:.2f} {r['unit']}/s | {r['gflop_per_s']:.2f} GFLOP/s", flush=True)
        out["workloads"][w] = r
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json + ".tmp", "w") as f:
            json.dump(out, f, indent=2)
        os.replace(a.json + ".tmp", a.json)
        print(f"wrote {a.json}")
    print("race.py ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
