"""Writes the golden files of tests/golden with the Python stack (run by hand; the files are committed).

  python3 -m venv --system-site-packages ~/.cache/manifold_diffusion/race-venv   # over Debian's python3-torch
  ~/.cache/manifold_diffusion/race-venv/bin/pip install -r benchmarks/peers/requirements.txt
  ~/.cache/manifold_diffusion/race-venv/bin/python tests/golden/make_golden.py            # writes tests/golden/*

(benchmarks/peers/run.sh makes the same virtual environment: torch 1.13 from Debian, diffusers 0.27.2 and
safetensors 0.8.0 as pinned in benchmarks/peers/requirements.txt.)

What it writes, read by tests/io/test_safetensors.cpp, tests/models/test_diffusers_unet.cpp and
tests/samplers/test_diffusers_golden.cpp:

  python.safetensors            tensors of every supported dtype, written by safetensors.torch.save_file
  unet_attn/                    a DDPMPipeline directory: model_index.json, unet/ (config.json and
                                diffusion_pytorch_model.safetensors of a random UNet2DModel),
                                scheduler/scheduler_config.json, and io.safetensors (x, t, out)
  unet_cond/                    a second UNet2DModel directory (scale_shift, class labels, [sin, cos] order,
                                freq_shift 1, norm_eps 1e-6, single-head attention) with io.safetensors
                                (x, t, labels, out)
  sched_<name>.safetensors      per scheduler: x_T, the per-sample generator seeds, every step's timestep,
                                input sample and prev_sample, the final sample; the scheduler config and
                                step count in the metadata

The optional mode checks a directory that the C++ side exported (export_diffusers_unet) with the inputs and
outputs it wrote to io.safetensors (tests/models/test_diffusers_unet.cpp writes one when
MD_DIFFUSERS_EXPORT_DIR is set):

  MD_DIFFUSERS_EXPORT_DIR=/tmp/md-export ./build/release/bin/md_tests --gtest_filter='DiffusersUnet.Export*'
  ~/.cache/manifold_diffusion/race-venv/bin/python tests/golden/make_golden.py --check-export /tmp/md-export
"""

import argparse
import json
import math
import os
import sys

import torch
import diffusers
import safetensors
from diffusers import (DDIMScheduler, DDPMPipeline, DDPMScheduler, DPMSolverMultistepScheduler,
                       EulerDiscreteScheduler, UNet2DModel)
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))


def perturb(model, seed):
    """Random weights everywhere (norm scales and biases included), so no mapping error hides behind 1 or 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return model


def write_python_safetensors(out):
    tensors = {
        "f32": torch.arange(6, dtype=torch.float32).view(2, 3) / 4,
        "f64": torch.arange(3, dtype=torch.float64) - 1.5,
        "f16": (torch.arange(4, dtype=torch.float32) / 8).half(),
        "bf16": (torch.arange(4, dtype=torch.float32) * -3).bfloat16(),
        "i64": torch.tensor([-(1 << 40), 0, 7], dtype=torch.int64),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 2),
    }
    save_file(tensors, os.path.join(out, "python.safetensors"), metadata={"written_by": "safetensors.torch.save_file"})


def unet_io(model, x, t, labels=None):
    with torch.no_grad():
        return model(x, t, class_labels=labels).sample.contiguous()


def write_unets(out):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    # 1. Additive time conditioning, attention at the second level (4 heads of 4 channels), defaults otherwise.
    attn = perturb(UNet2DModel(
        sample_size=8, in_channels=2, out_channels=2, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=4, norm_num_groups=4), 2).eval()
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    d = os.path.join(out, "unet_attn")
    DDPMPipeline(unet=attn, scheduler=scheduler).save_pretrained(d, safe_serialization=True)
    x = torch.randn(3, 2, 8, 8, generator=g)
    t = torch.tensor([999, 500, 3])
    save_file({"x": x, "t": t, "out": unet_io(attn, x, t)}, os.path.join(d, "io.safetensors"))

    # 2. FiLM (scale_shift) conditioning, class labels, [sin, cos] order with freq_shift 1, norm_eps 1e-6,
    # attention at the first level with one head (attention_head_dim None).
    cond = perturb(UNet2DModel(
        sample_size=8, in_channels=2, out_channels=2, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("AttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "AttnUpBlock2D"),
        attention_head_dim=None, norm_num_groups=4, attn_norm_num_groups=4, num_class_embeds=4,
        resnet_time_scale_shift="scale_shift", flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6), 3).eval()
    d = os.path.join(out, "unet_cond")
    cond.save_pretrained(d, safe_serialization=True)
    x = torch.randn(4, 2, 8, 8, generator=g)
    t = torch.tensor([999, 640, 17, 0])
    labels = torch.tensor([0, 3, 1, 2])
    save_file({"x": x, "t": t, "labels": labels, "out": unet_io(cond, x, t, labels)}, os.path.join(d, "io.safetensors"))


def model_output(x, t, alpha_bar, prediction):
    """A fixed, well-conditioned stand-in for a network: the exact posterior mean for data ~ N(0, 0.25 I),
    plus a t-dependent pattern scaled by sqrt(alpha_bar) (so x0 estimates stay bounded). alpha_bar is that of
    integer timestep t (float32, as the scheduler holds it). The C++ test computes the same function."""
    a = float(alpha_bar)
    s2 = 0.25
    denom = a * s2 + 1.0 - a
    pattern = torch.linspace(-1, 1, x[0].numel(), dtype=torch.float32).view(x.shape[1:])
    bump = 0.3 * math.sqrt(a) * math.sin(float(t) / 70.0)
    if prediction == "epsilon":
        return (math.sqrt(1.0 - a) / denom) * x + bump * pattern
    # v = sqrt(a) eps - sqrt(1 - a) x0 with the posterior means of eps and x0
    return (math.sqrt(a * (1.0 - a)) * (1.0 - s2) / denom) * x + bump * pattern


SCHEDULERS = [
    # name, class, config, steps
    ("ddpm", DDPMScheduler, dict(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                                  variance_type="fixed_small"), 6),
    ("ddim", DDIMScheduler, dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                                  beta_end=0.012, clip_sample=False, set_alpha_to_one=False, steps_offset=1), 6),
    ("ddim_trailing_v", DDIMScheduler, dict(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                                             timestep_spacing="trailing", prediction_type="v_prediction"), 6),
    ("euler", EulerDiscreteScheduler, dict(num_train_timesteps=1000, beta_schedule="scaled_linear",
                                           beta_start=0.00085, beta_end=0.012, timestep_spacing="trailing"), 6),
    # diffusers' default "linspace" spacing: fractional timesteps (999, 799.2, ...), which ours rounds (see
    # docs/interop.md); the C++ test checks that the difference is only that.
    ("euler_linspace", EulerDiscreteScheduler, dict(num_train_timesteps=1000, beta_schedule="scaled_linear",
                                                    beta_start=0.00085, beta_end=0.012), 6),
    ("dpmpp_2m", DPMSolverMultistepScheduler, dict(num_train_timesteps=1000, beta_schedule="linear"), 6),
    ("dpmpp_2m_sde", DPMSolverMultistepScheduler, dict(num_train_timesteps=1000, beta_schedule="linear",
                                                       algorithm_type="sde-dpmsolver++"), 6),
]
SEEDS = [101, 102]


def write_schedulers(out):
    shape = (len(SEEDS), 2, 4, 4)
    for name, cls, config, steps in SCHEDULERS:
        scheduler = cls(**config)
        scheduler.set_timesteps(steps)
        x_T = torch.randn(shape, generator=torch.Generator().manual_seed(7))
        gens = [torch.Generator().manual_seed(s) for s in SEEDS]
        x = x_T * scheduler.init_noise_sigma
        if cls is EulerDiscreteScheduler:
            # diffusers' init_noise_sigma is sigma_max for "linspace"/"trailing" spacing but sqrt(sigma_max^2 + 1)
            # for "leading"; ours always starts from N(0, I) in the VP domain, i.e. sqrt(sigma_max^2 + 1) here.
            # Start both from the same x to compare the steps (docs/interop.md notes the difference).
            x = x_T * math.sqrt(float(scheduler.sigmas.max()) ** 2 + 1.0)
        timesteps, inputs, prev, vp_scale, x0 = [], [], [], [], []
        prediction = scheduler.config.prediction_type
        for i, t in enumerate(scheduler.timesteps):
            model_in = scheduler.scale_model_input(x, t)
            inputs.append(model_in)
            timesteps.append(float(t))
            pred = model_output(model_in, t, scheduler.alphas_cumprod[int(round(float(t)))], prediction)
            result = scheduler.step(pred, t, x, generator=gens)
            x = result.prev_sample
            prev.append(x)
            x0.append(getattr(result, "pred_original_sample", None) if getattr(result, "pred_original_sample", None)
                      is not None else torch.zeros_like(x))
            # The VP-domain sample: Euler works on x * sqrt(1 + sigma^2).
            if hasattr(scheduler, "sigmas") and cls is EulerDiscreteScheduler:
                vp_scale.append(1.0 / math.sqrt(float(scheduler.sigmas[i + 1]) ** 2 + 1.0))
            else:
                vp_scale.append(1.0)
        first_noise = torch.stack([torch.randn(shape[1:], generator=torch.Generator().manual_seed(s)) for s in SEEDS])
        tensors = {
            "x_T": x_T,
            "seeds": torch.tensor(SEEDS, dtype=torch.int64),
            "first_noise": first_noise,  # what the first draw of each per-sample generator gives
            "timesteps": torch.tensor(timesteps, dtype=torch.float64),
            "model_inputs": torch.stack(inputs),
            "prev_samples": torch.stack(prev),
            "vp_scale": torch.tensor(vp_scale, dtype=torch.float64),
            "pred_x0": torch.stack(x0),  # the scheduler's pred_original_sample (zeros where it has none)
        }
        metadata = {"scheduler_config": json.dumps(dict(scheduler.config, _class_name=cls.__name__)),
                    "num_steps": str(steps)}
        save_file(tensors, os.path.join(out, f"sched_{name}.safetensors"), metadata=metadata)


def check_export(d):
    model = UNet2DModel.from_pretrained(d).eval()
    io = load_file(os.path.join(d, "io.safetensors"))
    got = unet_io(model, io["x"], io["t"], io.get("labels"))
    diff = (got - io["out"]).abs().max().item()
    print(f"{d}: UNet2DModel.from_pretrained loads it; max |diffusers - ours| = {diff:.3g}")
    return diff <= 1e-4


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--check-export", metavar="DIR", help="check a directory written by export_diffusers_unet")
    args = ap.parse_args()
    if args.check_export:
        sys.exit(0 if check_export(args.check_export) else 1)
    print(f"torch {torch.__version__}, diffusers {diffusers.__version__}, safetensors {safetensors.__version__}")
    os.makedirs(args.out, exist_ok=True)
    write_python_safetensors(args.out)
    write_unets(args.out)
    write_schedulers(args.out)


if __name__ == "__main__":
    main()
