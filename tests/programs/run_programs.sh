#!/usr/bin/env bash
# End-to-end runs of the bundled programs on small settings (ctest: programs.*).
#   run_programs.sh <bin dir> <case> <work dir>
# Cases: toy, toy_kill_resume, train_sample, sample_constraints, embed, help, bad_flags, train_constraints,
# distributed, crash_resume.
set -euo pipefail
bin="$1"; case_name="$2"; work="$3"
rm -rf "$work"; mkdir -p "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }
json_number() {  # file key: the number after "key": in a JSON file
  sed -n "s/.*\"$2\": *\([-0-9.eE+]*\).*/\1/p" "$1" | head -1
}
has_keys() {  # file key...
  local f="$1"; shift
  [[ -s "$f" ]] || fail "$f missing or empty"
  for k in "$@"; do grep -q "\"$k\"" "$f" || fail "$f lacks \"$k\""; done
}

case "$case_name" in
  toy)
    "$bin/mdiff-toy" --out "$work/toy" --dataset swiss_roll --ambient-dim 8 --steps 60 --n-train 2000 \
      --batch 128 --hidden 64 --blocks 2 --num-samples 300 --sample-steps 8 --sampler unipc --threads 1 >"$work/log" 2>&1 \
      || { cat "$work/log"; fail "mdiff-toy exited with an error"; }
    has_keys "$work/toy/metrics.json" manifold_distance_mean manifold_distance_p95 sliced_wasserstein mmd \
      precision recall density coverage train_seconds sample_seconds
    for f in samples.csv samples.npy scatter.svg scatter.png loss.svg train_log.jsonl; do
      [[ -s "$work/toy/$f" ]] || fail "mdiff-toy did not write $f"
    done
    [[ $(wc -l < "$work/toy/samples.csv") -eq 301 ]] || fail "samples.csv should have 300 rows and a header"
    # A reference of another dimension (samples.csv has the distance as a 9th column) is refused.
    "$bin/mdiff-toy" --out "$work/mine" --data "$work/toy/samples.npy" --reference "$work/toy/samples.csv" \
      --steps 5 --num-samples 50 --sample-steps 3 --threads 1 >"$work/log2" 2>&1 && fail "reference of another dimension accepted"
    grep -q "reference has dimension 9 but --data has 8" "$work/log2" || { cat "$work/log2"; fail "dimension message"; }
    "$bin/mdiff-toy" --out "$work/mine" --data "$work/toy/samples.npy" --steps 5 --num-samples 50 --sample-steps 3 \
      --hidden 32 --blocks 1 --threads 1 >"$work/log3" 2>&1 || { cat "$work/log3"; fail "mdiff-toy --data"; }
    has_keys "$work/mine/metrics.json" manifold_distance_mean distance_kind
    grep -q "nearest reference point" "$work/mine/metrics.json" || fail "--data metrics should use the reference sample"
    ;;
  toy_kill_resume)
    # A run killed with SIGKILL (twice, at different moments) and resumed ends with the same samples,
    # byte for byte, as an uninterrupted run: the weights are the same.
    args=(--dataset moons --steps 600 --n-train 1000 --batch 64 --hidden 32 --blocks 1 --num-samples 200
          --sample-steps 5 --checkpoint-every 25 --threads 1 --seed 3)
    "$bin/mdiff-toy" --out "$work/full" "${args[@]}" >"$work/full.log" 2>&1 || { cat "$work/full.log"; fail "uninterrupted run"; }
    # Kill once a checkpoint at or past step $target exists (plus a short random delay, so the kill
    # can land mid-step or mid-write), for two targets; each run resumes the previous one.
    for target in 100 250; do
      "$bin/mdiff-toy" --out "$work/killed" "${args[@]}" --resume >"$work/k$target.log" 2>&1 &
      pid=$!
      for _ in $(seq 1 600); do
        newest=$(ls "$work/killed/checkpoints" 2>/dev/null | sed -n 's/^ckpt-0*\([0-9][0-9]*\).safetensors$/\1/p' | sort -n | tail -1 || true)
        [[ -n "$newest" && "$newest" -ge "$target" ]] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
      done
      sleep "0.0$((RANDOM % 10))"
      kill -9 "$pid" 2>/dev/null || fail "the run ended before it could be killed (target step $target)"
      wait "$pid" 2>/dev/null || true
    done
    "$bin/mdiff-toy" --out "$work/killed" "${args[@]}" --resume >"$work/resume.log" 2>&1 || { cat "$work/resume.log"; fail "resume"; }
    grep -q "resumed at step" "$work/resume.log" || fail "the last run did not resume"
    grep -q "resumed at step" "$work/k250.log" || fail "the second run did not resume"
    cmp "$work/full/samples.npy" "$work/killed/samples.npy" || fail "killed-and-resumed samples differ from the uninterrupted run"
    # And the model learned the curve: samples are far closer to it than noise of the data's scale.
    d=$(json_number "$work/full/metrics.json" manifold_distance_mean)
    dn=$(json_number "$work/full/metrics.json" noise_distance_mean)
    awk -v d="$d" -v n="$dn" 'BEGIN { exit !(d < 0.5 * n) }' || fail "samples are not near the moons: mean distance $d, noise $dn"
    steps=$(grep -c '"step"' "$work/killed/train_log.jsonl")
    [[ "$steps" -eq $(grep -c '"step"' "$work/full/train_log.jsonl") ]] || fail "train_log.jsonl has $steps lines after the resume"
    ;;
  crash_resume)
    # Crash safety: a run that writes a checkpoint after every step is killed with SIGKILL at least
    # 10 times, at random moments and (every other kill) while a checkpoint file is being written,
    # and resumed after each kill. No checkpoint may
    # ever be unreadable, and the final samples must equal an uninterrupted run's byte for byte.
    # 3000 steps: with checkpoints written as safetensors a release run takes about 350 steps/s,
    # and 2000 steps could finish before the 10th kill (seen: 8 kills).
    args=(--dataset moons --steps 3000 --n-train 1000 --batch 64 --hidden 32 --blocks 1 --num-samples 200
          --sample-steps 5 --checkpoint-every 1 --threads 1 --seed 5)
    "$bin/mdiff-toy" --out "$work/full" "${args[@]}" >"$work/full.log" 2>&1 || { cat "$work/full.log"; fail "uninterrupted run"; }
    kills=0; mid_write=0; runs=0
    newest() { { ls "$work/killed/checkpoints"/ckpt-*.safetensors 2>/dev/null || true; } | sort | tail -n 1; }
    while (( kills < 12 && runs < 40 )); do
      runs=$((runs + 1))
      before="$(newest)"
      "$bin/mdiff-toy" --out "$work/killed" "${args[@]}" --resume >"$work/run$runs.log" 2>&1 &
      pid=$!
      # Every run first completes one new checkpoint (up to 20 s): on a slow or sanitized build the
      # process may need more than the random delay to start, and kills that always land before
      # the first checkpoint would leave nothing to resume from.
      for _ in $(seq 1 4000); do
        [[ "$(newest)" != "$before" ]] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.005
      done
      if (( runs % 2 == 0 )); then
        # Every other kill waits until a checkpoint file is being written.
        sleep 0.15
        for _ in $(seq 1 3000); do
          compgen -G "$work/killed/checkpoints/*.safetensors.tmp.*" >/dev/null && break
          sleep 0.001
        done
      else
        sleep "0.$((15 + RANDOM % 35))"
      fi
      if kill -9 "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null || true
        kills=$((kills + 1))
        n=$(ls "$work/killed/checkpoints" 2>/dev/null | grep -c '\.safetensors\.tmp\.' || true)
        mid_write=$((mid_write + n))
      else
        wait "$pid" || { cat "$work/run$runs.log"; fail "run $runs failed"; }
        break
      fi
      if grep -q "unreadable" "$work/run$runs.log"; then cat "$work/run$runs.log"; fail "run $runs met an unreadable checkpoint"; fi
    done
    (( kills >= 10 )) || fail "only $kills kills landed before the run finished"
    "$bin/mdiff-toy" --out "$work/killed" "${args[@]}" --resume >"$work/last.log" 2>&1 || { cat "$work/last.log"; fail "final resume"; }
    grep -q "unreadable" "$work/last.log" && fail "the final run met an unreadable checkpoint"
    grep -q "resumed at step" "$work/last.log" || fail "the final run did not resume"
    cmp "$work/full/samples.npy" "$work/killed/samples.npy" || fail "samples after $kills kills differ from the uninterrupted run"
    echo "crash_resume: $kills SIGKILLs in $runs runs, $mid_write left a half-written checkpoint behind; final samples identical"
    (( mid_write >= 1 )) || fail "no kill landed inside a checkpoint write"
    ;;
  distributed)
    # Two processes through scripts/launch.sh (Gloo on loopback) train what one process trains with
    # the same global batch; a one-process run resumes their checkpoint; mdiff-train runs too.
    launch="$(dirname "$0")/../../scripts/launch.sh"
    base=(--dataset moons --n-train 1000 --batch 64 --hidden 32 --blocks 1 --num-samples 200
          --sample-steps 5 --checkpoint-every 50 --threads 1 --seed 3)
    args=("${base[@]}" --steps 100)
    bash "$launch" -n 2 -- "$bin/mdiff-toy" --out "$work/two" "${args[@]}" >"$work/two.log" 2>&1 \
      || { cat "$work/two.log"; fail "two-process mdiff-toy"; }
    grep -q "\[rank 1\] distributed: rank 1 of 2" "$work/two.log" || { cat "$work/two.log"; fail "rank 1 did not join"; }
    has_keys "$work/two/metrics.json" manifold_distance_mean
    [[ -s "$work/two/checkpoints/ckpt-00000100.safetensors" ]] || fail "rank 0 wrote no final checkpoint"
    "$bin/mdiff-toy" --out "$work/one" "${args[@]}" >"$work/one.log" 2>&1 || { cat "$work/one.log"; fail "one-process run"; }
    g2=$(json_number <(tail -n 1 "$work/two/train_log.jsonl") grad_norm)
    g1=$(json_number <(tail -n 1 "$work/one/train_log.jsonl") grad_norm)
    awk -v a="$g1" -v b="$g2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-5 * (a < 0 ? -a : a) + 1e-7) }' \
      || fail "the last gradient norm differs: one process $g1, two processes $g2"
    [[ $(grep -c '"step"' "$work/two/train_log.jsonl") -eq $(grep -c '"step"' "$work/one/train_log.jsonl") ]] \
      || fail "the two-process log has another number of lines"
    # One process continues the two-process run to step 150.
    "$bin/mdiff-toy" --out "$work/two" "${base[@]}" --steps 150 --resume >"$work/resume.log" 2>&1 \
      || { cat "$work/resume.log"; fail "one-process resume of a two-process checkpoint"; }
    grep -q "resumed at step 100" "$work/resume.log" || { cat "$work/resume.log"; fail "did not resume at step 100"; }
    # A failing process makes the launcher fail.
    bash "$launch" -n 2 --grace 5 -- "$bin/mdiff-toy" --out "$work/bad" --steps 0 >"$work/bad.log" 2>&1 \
      && fail "launch.sh succeeded although its processes failed"
    # mdiff-train: the loader shards every batch; rank 0 writes the checkpoint and the samples.
    bash "$launch" -n 2 -- "$bin/mdiff-train" --out "$work/train" --steps 4 --batch 8 --base-channels 8 \
      --channel-mult 1,2 --attention 14 --checkpoint-every 2 --num-samples 0 --threads 1 --workers 1 >"$work/train.log" 2>&1 \
      || { cat "$work/train.log"; fail "two-process mdiff-train"; }
    for f in samples.png checkpoints/ckpt-00000004.safetensors train_log.jsonl; do
      [[ -s "$work/train/$f" ]] || fail "two-process mdiff-train did not write $f"
    done
    # The two-process model exported as a diffusers DDPMPipeline folder samples the same images.
    "$bin/mdiff-sample" --run "$work/train" --export-diffusers "$work/exported" >"$work/log_exp" 2>&1 || { cat "$work/log_exp"; fail "--export-diffusers"; }
    for f in unet/config.json unet/diffusion_pytorch_model.safetensors scheduler/scheduler_config.json model_index.json; do
      [[ -s "$work/exported/$f" ]] || fail "--export-diffusers did not write $f"
    done
    for src in "--run $work/train" "--diffusers $work/exported"; do
      tag=${src%% *}; tag=${tag#--}
      # shellcheck disable=SC2086
      "$bin/mdiff-sample" $src --sampler ddpm --sample-steps 5 --num-samples 4 --threads 1 --out "$work/s_$tag" \
        >"$work/log_$tag" 2>&1 || { cat "$work/log_$tag"; fail "mdiff-sample $src"; }
    done
    cmp "$work/s_run/grid.png" "$work/s_diffusers/grid.png" || fail "samples from the exported diffusers folder differ"
    # And a diffusers folder written by Python (tests/golden) samples with its own scheduler.
    "$bin/mdiff-sample" --diffusers "$(dirname "$0")/../golden/unet_attn" --num-samples 4 --sample-steps 5 --threads 1 \
      --out "$work/s_golden" >"$work/log_golden" 2>&1 || { cat "$work/log_golden"; fail "mdiff-sample --diffusers golden"; }
    grep -q '"sampler": *"DDIMScheduler"' "$work/s_golden/metrics.json" || fail "the golden folder's scheduler was not used"
    ;;
  train_sample)
    "$bin/mdiff-train" --out "$work/run" --steps 4 --batch 8 --base-channels 8 --channel-mult 1,2 \
      --attention 14 --checkpoint-every 2 --num-samples 0 --preview-every 4 --augment 0.5 --validation-every 2 --threads 1 --workers 1 \
      >"$work/log" 2>&1 || { cat "$work/log"; fail "mdiff-train"; }
    has_keys "$work/run/metrics.json" steps train_seconds
    for f in config.json samples.png loss.svg previews/step-00000004.png checkpoints/ckpt-00000004.safetensors \
             weights.safetensors weights-ema.safetensors; do
      [[ -s "$work/run/$f" ]] || fail "mdiff-train did not write $f"
    done
    "$bin/mdiff-train" --out "$work/run" --steps 6 --batch 8 --base-channels 8 --channel-mult 1,2 \
      --attention 14 --checkpoint-every 2 --num-samples 0 --augment 0.5 --threads 1 --resume >"$work/log2" 2>&1 || { cat "$work/log2"; fail "--resume"; }
    grep -q "resumed at step 4" "$work/log2" || fail "mdiff-train --resume did not resume at step 4"
    # The EMA weights in safetensors sample what the checkpoint's EMA weights sample.
    for src in "--run $work/run" "--config $work/run/config.json --checkpoint $work/run/weights-ema.safetensors"; do
      tag=$([[ "$src" == --run* ]] && echo ckpt || echo st)
      # shellcheck disable=SC2086
      "$bin/mdiff-sample" $src --sampler ddim --sample-steps 3 --num-samples 4 --threads 1 --out "$work/w_$tag" \
        >"$work/log_w_$tag" 2>&1 || { cat "$work/log_w_$tag"; fail "mdiff-sample $src"; }
    done
    cmp "$work/w_ckpt/grid.png" "$work/w_st/grid.png" || fail "weights-ema.safetensors samples differently from the checkpoint"
    # A model with augmentation conditioning has no diffusers equivalent: refused by name.
    "$bin/mdiff-sample" --run "$work/run" --export-diffusers "$work/exported" >"$work/log_exp" 2>&1 \
      && fail "--export-diffusers accepted a model with augment_dim"
    grep -q "augment_dim = 7 does not map to a UNet2DModel" "$work/log_exp" || { cat "$work/log_exp"; fail "export refusal message"; }
    "$bin/mdiff-sample" --run "$work/run" --out "$work/s" --prompt "ankle boot" --prompt bag --num-samples 4 \
      --sample-steps 3 --guidance 2 --save-tensor --threads 1 >"$work/log3" 2>&1 || { cat "$work/log3"; fail "mdiff-sample"; }
    has_keys "$work/s/metrics.json" sample_seconds prompts
    grep -q "ankle boot" "$work/s/metrics.json" || fail "mdiff-sample did not record the prompt"
    [[ -s "$work/s/grid.png" && -s "$work/s/samples.safetensors" ]] || fail "mdiff-sample outputs"
    "$bin/mdiff-sample" --run "$work/run" --out "$work/s2" --prompt "hat" >"$work/log4" 2>&1 && fail "unknown prompt accepted"
    grep -q "unknown class name 'hat'" "$work/log4" || { cat "$work/log4"; fail "unknown prompt message"; }
    "$bin/mdiff-sample" --run "$work/nothing" --out "$work/s3" >"$work/log5" 2>&1 && fail "missing run accepted"
    grep -q "no checkpoint" "$work/log5" || { cat "$work/log5"; fail "missing run message"; }
    "$bin/mdiff-sample" --run "$work/run" --out "$work/s4" --num-samples 4 --sample-steps 3 --guidance 3 \
      --sample-constraint dynamic_threshold:p=0.99,max=2 --threads 1 >"$work/log6" 2>&1 || { cat "$work/log6"; fail "mdiff-sample --sample-constraint"; }
    has_keys "$work/s4/metrics.json" saturated_fraction sample_constraints
    "$bin/mdiff-sample" --run "$work/run" --out "$work/s5" --sample-constraint dynamic_threshold:q=1 >"$work/log7" 2>&1 \
      && fail "unknown constraint option accepted"
    grep -q "unknown option(s) q" "$work/log7" || { cat "$work/log7"; fail "unknown constraint option message"; }
    # Inverse problems: every method runs on the tiny model and reports its metrics.
    for method in none projection mcg dps mpgd dsg repaint; do
      "$bin/mdiff-inverse" --run "$work/run" --out "$work/inv_$method" --num-images 3 --batch 2 --steps 3 --resample 2 \
        --jump 1 --method "$method" --operator random:missing=0.5 --sigma-y 0.05 --no-fd --threads 1 \
        >"$work/inv_$method.log" 2>&1 || { cat "$work/inv_$method.log"; fail "mdiff-inverse --method $method"; }
      has_keys "$work/inv_$method/metrics.json" psnr ssim residual_ratio seconds_per_image nfe_per_image
      [[ -s "$work/inv_$method/panels.png" && -s "$work/inv_$method/restored.safetensors" ]] || fail "mdiff-inverse outputs ($method)"
    done
    "$bin/mdiff-inverse" --run "$work/run" --out "$work/inv_bad" --operator smudge >"$work/log8" 2>&1 && fail "unknown operator accepted"
    grep -q "unknown measurement operator 'smudge'" "$work/log8" || { cat "$work/log8"; fail "unknown operator message"; }
    "$bin/mdiff-inverse" --run "$work/run" --out "$work/inv_bad" --operator sr:factor=3 --no-fd >"$work/log9" 2>&1 && fail "sr factor 3 on 28x28 accepted"
    grep -q "not divisible by the factor 3" "$work/log9" || { cat "$work/log9"; fail "sr factor message"; }
    ;;
  sample_constraints)
    # Projecting x0_hat onto the local PCA planes of the training points brings the samples of a
    # barely trained model closer to the sphere than the same model's unconstrained samples.
    "$bin/mdiff-toy" --out "$work/toy" --dataset sphere --ambient-dim 8 --steps 80 --n-train 2000 --batch 128 \
      --hidden 64 --blocks 2 --num-samples 300 --sample-steps 10 --sampler ddim --threads 1 \
      --sample-constraint manifold:strength=1,start=0.5 >"$work/log" 2>&1 || { cat "$work/log"; fail "mdiff-toy --sample-constraint"; }
    has_keys "$work/toy/metrics.json" baseline sample_constraints last_manifold_residual
    top=$(sed -n 's/^  "manifold_distance_mean": *\([-0-9.eE+]*\).*/\1/p' "$work/toy/metrics.json")
    base=$(sed -n 's/^    "manifold_distance_mean": *\([-0-9.eE+]*\).*/\1/p' "$work/toy/metrics.json")
    echo "constrained $top baseline $base"
    awk -v a="$top" -v b="$base" 'BEGIN { exit !(a > 0 && b > 0 && a < 0.5 * b) }' \
      || fail "the manifold constraint did not bring samples closer ($top vs baseline $base)"
    "$bin/mdiff-toy" --out "$work/bad" --steps 2 --sample-constraint manifold:mode=sideways >"$work/log2" 2>&1 \
      && fail "unknown manifold mode accepted"
    grep -q "sideways" "$work/log2" || { cat "$work/log2"; fail "unknown mode message"; }
    ;;
  embed)
    # Fashion-MNIST test against train (the same distribution): the two sets mix in the map.
    "$bin/mdiff-embed" --real fashion-mnist:test --generated fashion-mnist:train --max-points 150 --method tsne \
      --iterations 250 --threads 1 --out "$work/tsne" >"$work/log" 2>&1 || { cat "$work/log"; fail "mdiff-embed tsne"; }
    has_keys "$work/tsne/metrics.json" n_real n_generated generated_nn_real_fraction_map generated_nn_real_fraction_ambient \
      knn_preservation embed_seconds distance_ratio tsne_kl_divergence
    for f in map.png map.svg map.npy; do [[ -s "$work/tsne/$f" ]] || fail "mdiff-embed did not write $f"; done
    frac=$(json_number "$work/tsne/metrics.json" generated_nn_real_fraction_map)
    awk -v f="$frac" 'BEGIN { exit !(f > 0.3 && f < 0.7) }' || fail "test and train samples should mix: fraction $frac"
    # Its own map ([N, 3] .npy) as input, through Isomap.
    "$bin/mdiff-embed" --real "$work/tsne/map.npy" --generated "$work/tsne/map.npy" --method isomap --max-points 100 \
      --threads 1 --out "$work/iso" >"$work/log2" 2>&1 || { cat "$work/log2"; fail "mdiff-embed .npy"; }
    grep -q '"n_real": 100' "$work/iso/metrics.json" || fail "--max-points was not applied"
    # Errors: a missing file, an unknown method, inputs of different dimensions.
    "$bin/mdiff-embed" --real "$work/missing.npy" --out "$work/x" >"$work/e1" 2>&1 && fail "missing file accepted"
    grep -q "missing.npy" "$work/e1" || { cat "$work/e1"; fail "missing file not named"; }
    "$bin/mdiff-embed" --real "$work/tsne/map.npy" --method umap --out "$work/x" >"$work/e2" 2>&1 && fail "unknown method accepted"
    grep -q "unknown --method 'umap'" "$work/e2" || { cat "$work/e2"; fail "unknown method message"; }
    "$bin/mdiff-embed" --real fashion-mnist:test --generated "$work/tsne/map.npy" --max-points 50 --out "$work/x" \
      >"$work/e3" 2>&1 && fail "inputs of different dimensions accepted"
    grep -q "dimension 3" "$work/e3" || { cat "$work/e3"; fail "dimension message"; }
    # A one-tensor safetensors file (as mdiff-sample --save-tensor writes), written by the Python
    # standard library; a LibTorch archive (.pt) is refused by name.
    python3 - "$work/points.safetensors" <<'PY'
import json, random, struct, sys
random.seed(0)
rows, cols = 40, 4
data = struct.pack("<%df" % (rows * cols), *[random.gauss(0, 1) for _ in range(rows * cols)])
header = json.dumps({"samples": {"dtype": "F32", "shape": [rows, cols], "data_offsets": [0, len(data)]}}).encode()
header += b" " * (-len(header) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(header)) + header + data)
PY
    "$bin/mdiff-embed" --real "$work/points.safetensors" --generated "$work/points.safetensors" --method isomap \
      --threads 1 --out "$work/st" >"$work/log3" 2>&1 || { cat "$work/log3"; fail "mdiff-embed .safetensors"; }
    grep -q '"n_real": 40' "$work/st/metrics.json" || fail "the safetensors input was not read whole"
    printf 'PK\003\004' >"$work/old.pt"
    "$bin/mdiff-embed" --real "$work/old.pt" --out "$work/x" >"$work/e4" 2>&1 && fail ".pt accepted"
    grep -q "LibTorch archives are not read" "$work/e4" || { cat "$work/e4"; fail ".pt message"; }
    ;;
  help)
    for p in mdiff-toy mdiff-train mdiff-sample mdiff-classifier mdiff-embed mdiff-inverse; do
      "$bin/$p" --help >"$work/$p.help" || fail "$p --help"
      for flag in --out --seed --threads --device; do
        grep -q -- "$flag" "$work/$p.help" || fail "$p --help lacks $flag"
      done
    done
    for p in mdiff-toy mdiff-train; do grep -q -- "--steps" "$work/$p.help" || fail "$p lacks --steps"; done
    for p in mdiff-toy mdiff-train mdiff-sample; do
      for flag in --sampler --sample-steps --num-samples; do
        grep -q -- "$flag" "$work/$p.help" || fail "$p --help lacks $flag"
      done
    done
    ;;
  bad_flags)
    "$bin/mdiff-toy" --out "$work/x" --no-such-flag >"$work/a" 2>&1 && fail "unknown flag accepted"
    grep -qi "no-such-flag" "$work/a" || fail "unknown flag not named"
    "$bin/mdiff-toy" --out "$work/x" --sampler nope >"$work/b" 2>&1 && fail "unknown sampler accepted"
    grep -q "nope" "$work/b" || fail "unknown sampler not named"
    "$bin/mdiff-toy" --out "$work/x" --data "$work/missing.npy" --steps 1 >"$work/c" 2>&1 && fail "missing data file accepted"
    grep -q "missing.npy" "$work/c" || { cat "$work/c"; fail "missing data file not named"; }
    "$bin/mdiff-train" --out "$work/y" --device cuda:7 --steps 1 >"$work/d" 2>&1 && fail "absent CUDA device accepted"
    grep -qi "cuda" "$work/d" || { cat "$work/d"; fail "device error unclear"; }
    "$bin/mdiff-train" --out "$work/y" --data-dir "$work/none" --steps 1 >"$work/e" 2>&1 && fail "missing dataset accepted"
    grep -q "none" "$work/e" || { cat "$work/e"; fail "missing dataset not named"; }
    ;;
  train_constraints)
    # Every training-time constraint in mdiff-toy (their scalars reach the log and metrics.json),
    # latent diffusion, mdiff-train's augment/ip/iso, and a misspelt option.
    "$bin/mdiff-toy" --out "$work/toy" --dataset swiss_roll --ambient-dim 8 --steps 30 --n-train 1000 --batch 64 \
      --hidden 32 --blocks 1 --num-samples 100 --sample-steps 4 --threads 1 --ae-steps 50 \
      --train-constraint ip:gamma=0.1 --train-constraint iso:lambda=0.1 --train-constraint tangent \
      --train-constraint ae --train-constraint adversarial:hidden=16 >"$work/log" 2>&1 || { cat "$work/log"; fail "mdiff-toy --train-constraint"; }
    has_keys "$work/toy/metrics.json" train_constraints train_seconds train_ms_per_step last_loss_iso last_tangent_normal_sq \
      last_ae_energy_sq last_adv_d_acc last_ip_input_noise_std
    has_keys "$work/toy/train_log.jsonl" loss_iso tangent_normal_sq adv_d_loss
    "$bin/mdiff-toy" --out "$work/latent" --dataset moons --steps 20 --n-train 500 --batch 64 --hidden 32 --blocks 1 \
      --num-samples 100 --sample-steps 4 --threads 1 --latent-dim 2 --ae-steps 50 >"$work/log2" 2>&1 || { cat "$work/log2"; fail "--latent-dim"; }
    has_keys "$work/latent/metrics.json" latent_dim autoencoder_final_loss manifold_distance_mean
    "$bin/mdiff-toy" --out "$work/embed" --dataset swiss_roll_2d --steps 20 --n-train 500 --batch 64 --hidden 32 --blocks 1 \
      --num-samples 100 --sample-steps 4 --threads 1 --train-constraint embed:method=spectral,dims=1 >"$work/log6" 2>&1 \
      || { cat "$work/log6"; fail "embed"; }
    has_keys "$work/embed/metrics.json" embed_coordinate_error embed_coordinate_error_unpaired
    "$bin/mdiff-toy" --out "$work/bad" --steps 2 --threads 1 --train-constraint iso:lamda=1 >"$work/log3" 2>&1 && fail "misspelt option accepted"
    grep -q "lamda" "$work/log3" || { cat "$work/log3"; fail "misspelt option not named"; }
    "$bin/mdiff-toy" --out "$work/bad" --steps 2 --threads 1 --train-constraint nope >"$work/log4" 2>&1 && fail "unknown constraint accepted"
    grep -q "valid: ip, iso" "$work/log4" || { cat "$work/log4"; fail "unknown constraint message"; }
    "$bin/mdiff-train" --out "$work/train" --steps 2 --batch 8 --base-channels 8 --channel-mult 1,2 --attention 14 \
      --num-samples 0 --threads 1 --workers 1 --train-constraint augment:p=0.5 --train-constraint ip \
      --train-constraint iso >"$work/log5" 2>&1 || { cat "$work/log5"; fail "mdiff-train --train-constraint"; }
    has_keys "$work/train/metrics.json" train_constraints
    grep -q '"augment:p=0.5"' "$work/train/metrics.json" || fail "metrics.json lacks the augment spec"
    grep -q '"augment_dim": *7' "$work/train/config.json" || fail "augment did not give the UNet augment_dim 7"
    ;;
  *) fail "unknown case $case_name" ;;
esac
echo "programs.$case_name ok"
