"""Merges the per-round results of md_race and race.py (OUT/raw/{ours,theirs}-WORKLOAD-ROUND.json)
into OUT/race.json and OUT/race.md, and prints the table. Standard library only; run.sh calls it.

Per side and workload, the repetitions of every round are pooled and their median taken; the
ratios are ours over theirs in throughput (items per second), so higher is better for us."""

import argparse
import glob
import json
import os
import platform
import statistics
import subprocess
import sys
import time

WORKLOADS = [
    # name, key in race.json, label, target ratio
    ("sampling", "sampling_ratio", "DDIM {n} steps, UNet, batch {b} (images/s)", 3.0),
    ("training", "training_ratio", "training step, UNet, batch {b} (images/s)", 3.0),
    ("toy", "toy_sampling_ratio", "DDIM {n} steps, MLP, batch {b} (samples/s)", None),
]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def pool(runs, workload):
    """All repetitions of one side's runs of `workload`, and the first run's description."""
    times, first = [], None
    for run in runs:
        w = run["workloads"].get(workload)
        if w is None:
            continue
        first = first or w
        times += w["times_s"]
    if first is None:
        return None
    med = statistics.median(times)
    out = {k: first[k] for k in ("what", "unit", "batch", "iterations_per_rep", "items_per_rep", "params",
                                 "gflop_per_forward")}
    flop_per_rep = first["gflop_per_s"] * first["median_s"]  # GFLOP one repetition runs
    out.update({
        "times_s": times,
        "reps": len(times),
        "median_s": med,
        "items_per_s": first["items_per_rep"] / med,
        "s_per_iteration": med / first["iterations_per_rep"],
        "gflop_per_s": flop_per_rep / med,
    })
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--raw", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--load-start", default="")
    p.add_argument("--load-end", default="")
    a = p.parse_args()

    sides = {"ours": [], "theirs": []}
    for path in sorted(glob.glob(os.path.join(a.raw, "*.json"))):
        with open(path) as f:
            run = json.load(f)
        sides[run["side"]].append(run)
    if not sides["ours"] or not sides["theirs"]:
        print(f"summarize.py: need results of both sides in {a.raw}", file=sys.stderr)
        return 1
    ours0, theirs0 = sides["ours"][0], sides["theirs"][0]

    race = {}
    detail = {}
    for name, key, label, target in WORKLOADS:
        o, t = pool(sides["ours"], name), pool(sides["theirs"], name)
        if o is None or t is None:
            continue
        ratio = o["items_per_s"] / t["items_per_s"]
        race[key] = round(ratio, 4)
        label = label.format(n=o["iterations_per_rep"], b=o["batch"])
        detail[name] = {"label": label, "target_ratio": target, "ratio": ratio, "ours": o, "theirs": t}

    try:
        kernel = subprocess.run(["uname", "-sr"], capture_output=True, text=True).stdout.strip()
    except OSError:
        kernel = platform.release()
    race.update({
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "threads": {"ours": ours0["threads"], "theirs": theirs0["threads"]},
        "torch_versions": {"ours": ours0["torch_version"], "theirs": theirs0["torch_version"]},
        "libraries": {"ours": ours0["library"], "theirs": theirs0["library"]},
        "python": theirs0.get("python_version"),
        "numpy": theirs0.get("numpy_version"),
        "quick": bool(ours0.get("quick")),
        "rounds": a.rounds,
        "environment": {
            "cpu": cpu_model(),
            "cores_online": os.cpu_count(),
            "kernel": kernel,
            "load_average_start": a.load_start,
            "load_average_end": a.load_end,
            "env_ours": ours0["env"],
            "env_theirs": theirs0["env"],
            "build_ours": ours0.get("build"),
            "torch_parallel_info_theirs": theirs0.get("torch_parallel_info"),
            "shared_machine_note": "other processes may have run during the measurement; see the load averages",
        },
        "workloads": detail,
    })
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "race.json"), "w") as f:
        json.dump(race, f, indent=2)
        f.write("\n")

    lines = [
        f"Race: manifold_diffusion ({race['libraries']['ours']}, LibTorch {race['torch_versions']['ours']}) vs "
        f"{race['libraries']['theirs']} (torch {race['torch_versions']['theirs']}), "
        f"{race['threads']['ours']} threads, {race['environment']['cpu']}, {race['date']}"
        + (" [quick]" if race["quick"] else ""),
        "",
        "| workload | ours | theirs | ours / theirs | target |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, key, label, target in WORKLOADS:
        if name not in detail:
            continue
        d = detail[name]
        o, t = d["ours"], d["theirs"]

        def cell(s):
            return (f"{s['items_per_s']:.2f} ({s['s_per_iteration'] * 1000:.0f} ms/iter, "
                    f"{s['gflop_per_s']:.1f} GFLOP/s, n={s['reps']})")

        lines.append(f"| {d['label']} | {cell(o)} | {cell(t)} | {d['ratio']:.2f}x | "
                     f"{'>= %.0fx' % target if target else '-'} |")
    lines.append("")
    for name, model in (("sampling", "UNet"), ("training", "UNet"), ("toy", "MLP")):
        if name in detail:
            o, t = detail[name]["ours"], detail[name]["theirs"]
            lines.append(f"{model} at batch {o['batch']}: {o['params']:,} / {t['params']:,} parameters (ours / theirs), "
                         f"{o['gflop_per_forward']:.3f} / {t['gflop_per_forward']:.3f} GFLOP per forward")
    lines.append(f"load average: {a.load_start} at start, {a.load_end} at the end")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(a.out, "race.md"), "w") as f:
        f.write(text)
    print(text)
    print(json.dumps({k: race[k] for k in ("sampling_ratio", "training_ratio", "toy_sampling_ratio") if k in race}))
    print(f"wrote {os.path.join(a.out, 'race.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
