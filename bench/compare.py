#!/usr/bin/env python3
"""Run dinoclip and PyTorch on the same shapes, on this machine, in one run, and compare.

    python3 bench/compare.py --device cpu  --out DIR     # any machine; a few minutes on 2 cores
    python3 bench/compare.py --device cuda --out DIR     # a GPU host; a few minutes

Runs `dinoclip bench --json` (built here with `go build`, with -tags cuda for --device cuda,
unless --ours-bin names a binary) and `bench/torch_ref.py` one after the other with the
same shapes, batch sizes and thread count, then writes into DIR:

    ours.json, ours.txt     dinoclip bench's report and its output, in the first of --precisions
                            (cuda: bf16, every part: steps, per-kernel times, top-k)
    ours-P.json, ours-P.txt the same in each further precision P (cuda: fp32), training steps only
    torch.json, torch.txt   torch_ref.py's report and its output
    results.json            both reports, the ratios ours / PyTorch, the recipe projection,
                            the performance targets and what is still unmeasured
    results.md              the same as Markdown tables, ready for bench/RESULTS.md

PyTorch runs eager fp32, tf32, bf16 autocast, torch.compile bf16 and torch.compile
max-autotune (on CUDA at batch 8192 only: it compiles for minutes per shape). The targets
(STEP_TARGET, GEMM_TARGET, MEMORY_TARGET below) are reported as met, missed (by how much)
or unmeasured (why), each GEMM against torch.matmul bf16 at its layout and shape.

Every ratio is a speed ratio, ours / PyTorch, from median times: above 1 means dinoclip is
faster. Ratios of the fastest (minimum) times are given beside the training ones, as the
minimum is the time least disturbed by other work on the machine. With --rounds N (default 3
on the CPU, 1 on CUDA) the training steps of both sides are run N times, alternating which
goes first, and each row keeps its best round (all rounds' medians are in the output);
ours.json and torch.json are the first, complete round. With --kernel-rounds N (default: as
--rounds on the CPU, 1 on CUDA) the first N rounds also time both sides' kernels, GEMMs (on the CPU fp32 only after the
first) and copy bandwidth, and each of those rows keeps its best round too: on a shared CPU a row
measured once can be slowed by a neighbour for its whole timing. (Our epilogue variants of one GEMM
layout and shape, on the GPU, each keep their own best round before they are summed: a slight
advantage to us where a shape has several.)
If one side fails, the other is still run and reported, and the failure is recorded.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchfiles import usable_cpus, write_text_atomic

REPO = Path(__file__).resolve().parent.parent
SCHEMA = "dinoclip-bench-compare/1"
RECIPE_PAIRS, RECIPE_EPOCHS, RECIPE_BATCH = 8_000_000, 16, 8192
MODES = ("fp32", "tf32", "bf16", "compile_bf16", "compile_max_autotune")
# The GPU engine's targets (bench/RESULTS.md, "Targets"), each a ratio measured in one run: the training step at
# STEP_TARGET_BATCH at least STEP_TARGET times as fast as torch.compile bf16; every GEMM at
# least GEMM_TARGET of torch.matmul bf16's TFLOP/s at the same shape and layout; every
# memory-bound kernel at least MEMORY_TARGET of the copy bandwidth measured in the same run.
STEP_TARGET, STEP_TARGET_BATCH, STEP_TARGET_MODE = 1.3, 8192, "compile_bf16"
GEMM_TARGET = 0.9
MEMORY_TARGET = 0.85
# A memory-bound kernel moving fewer bytes a call than this takes a few microseconds at HBM speed,
# where the launch and the grid's ramp-up and tail weigh as much as the bytes: its misses are
# counted apart in the target's detail (they stay in the verdict).
SMALL_KERNEL_MB = 16


def log(msg):
    print(f"compare: {msg}", file=sys.stderr, flush=True)


def git(*args):
    try:
        r = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=20)
        return r.stdout.strip() if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def commit_here():
    rev = git("rev-parse", "HEAD")
    if rev is None:
        return None, None
    status = git("status", "--porcelain", "--untracked-files=no")
    return rev, (bool(status) if status is not None else None)


def build_ours(device, commit, dirty, workdir):
    """Builds cmd/dinoclip (with -tags cuda for cuda); returns (path, None) or (None, why)."""
    go = shutil.which("go")
    if go is None:
        return None, "no Go toolchain on this machine: build dinoclip elsewhere and pass --ours-bin"
    out = Path(workdir) / "dinoclip"
    cmd = [go, "build", "-o", str(out)]
    if device == "cuda":
        cmd += ["-tags", "cuda"]
    if commit:
        cmd += ["-ldflags", f"-X github.com/dinoclip/dinoclip/internal/buildinfo.Commit={commit}{'-dirty' if dirty else ''}"]
    cmd.append("./cmd/dinoclip")
    log(" ".join(cmd))
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if r.returncode != 0:
        return None, f"go build failed: {(r.stderr or r.stdout).strip()[-2000:]}"
    return str(out), None


def run_side(name, cmd, out_json, out_txt, timeout, env=None):
    """Runs one side, teeing its output to out_txt; returns (report dict or None, error or None, seconds)."""
    log(f"{name}: {' '.join(cmd)}")
    t0 = time.perf_counter()
    with open(out_txt, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        try:
            # Its own process group, so that the watchdog also ends what it started (compile workers).
            # Run where compare.py was run (not in the checkout): a path in --ours-args or --torch-args
            # means what it means to the caller, as --out and --ours-bin do (made absolute in main).
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                    start_new_session=True)
        except OSError as e:
            return None, f"{name}: cannot start: {e}", 0.0
        # A watchdog, not a check between lines: a side that hangs silently is killed too.
        watchdog = threading.Timer(timeout, kill_group, (proc,))
        watchdog.start()
        try:
            for line in proc.stdout:
                f.write(line)
                f.flush()
                sys.stderr.write(f"  {name}| {line}")
            proc.wait()
        finally:
            timed_out = not watchdog.is_alive() and proc.returncode != 0
            watchdog.cancel()
    secs = time.perf_counter() - t0
    if timed_out:
        return None, f"{name} killed after its {timeout:.3g} s (--timeout, or what --budget left)", secs
    if proc.returncode != 0:
        tail = Path(out_txt).read_text().strip().splitlines()[-5:]
        return None, f"{name} exited with {proc.returncode} after {secs:.0f} s: " + " | ".join(tail), secs
    try:
        return json.loads(Path(out_json).read_text()), None, secs
    except (OSError, ValueError) as e:
        return None, f"{name}: no report: {e}", secs


def kill_group(proc):
    """Kills proc and every process of its group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()


def best_rounds(report, rounds, key):
    """report with each measured training row replaced by its lowest-median round; every
    round's median is kept in the row as "round_medians" (seconds, in round order)."""
    def k(r):
        return tuple(r.get(f) for f in key)

    by_key = {}
    for rep in rounds:
        for r in rep.get("train", []):
            if r.get("status", "measured") == "measured" and "step_seconds" in r:
                by_key.setdefault(k(r), []).append(r)
    train = []
    for r in report.get("train", []):
        cands = by_key.get(k(r), [])
        if cands:
            best = dict(min(cands, key=lambda c: c["step_seconds"]["median"]))
            best["round_medians"] = [c["step_seconds"]["median"] for c in cands]
            train.append(best)
        else:
            train.append(r)
    return dict(report, train=train, rounds=len(rounds))


def best_kernel_rounds(report, rounds, side):
    """report with each kernel-level row replaced by its best round: on our side each kernel's
    lowest median time per call (its rates recomputed) and the highest copy bandwidth; on
    PyTorch's each GEMM's lowest median and the highest copy bandwidth. Rounds that did not
    time a row leave it as the first round has it."""
    def best_copy(r):
        copies = [c for c in (x.get("copy_bandwidth") for x in rounds) if c and c.get("bytes_per_second")]
        return dict(r, copy_bandwidth=max(copies, key=lambda c: c["bytes_per_second"])) if copies else r

    if side == "torch":
        by_key = {}
        for rep in rounds:
            for g in rep.get("gemm") or []:
                by_key.setdefault((g["name"], g["shape"], g["precision"]), []).append(g)
        gemm = [dict(min(by_key.get((g["name"], g["shape"], g["precision"]), [g]), key=lambda c: c["seconds"]["median"]),
                     round_medians=[c["seconds"]["median"] for c in by_key.get((g["name"], g["shape"], g["precision"]), [g])])
                for g in report.get("gemm") or []]
        return best_copy(dict(report, gemm=gemm) if report.get("gemm") else report)
    kern = report.get("kernels") or {}
    if not kern.get("kernels"):
        return best_copy(report)
    by_key = {}
    for rep in rounds:
        for k in (rep.get("kernels") or {}).get("kernels") or []:
            if k.get("seconds_per_call"):
                by_key.setdefault((k["name"], k["shape"]), []).append(k)
    out = best_copy(report)
    copy_bps = (out.get("copy_bandwidth") or {}).get("bytes_per_second") or kern.get("copy_bytes_per_second")
    kernels = []
    for k in kern["kernels"]:
        cands = by_key.get((k["name"], k["shape"]), [])
        best = dict(min(cands, key=lambda c: c["seconds_per_call"])) if cands else dict(k)
        best["round_seconds_per_call"] = [c["seconds_per_call"] for c in cands]
        spc = best.get("seconds_per_call")
        if spc:
            if best.get("flops"):
                best["tflops"] = best["flops"] / spc / 1e12
            if best.get("bytes"):
                best["bytes_per_second"] = best["bytes"] / spc
                if copy_bps and best.get("kind") == "memory":
                    best["fraction_of_copy"] = best["bytes_per_second"] / copy_bps
        kernels.append(best)
    return dict(out, kernels=dict(kern, kernels=kernels, copy_bytes_per_second=copy_bps))


# ---------------------------------------------------------------------------------------
# Joining the two reports.


def ratio(a, b):
    if a is None or b is None or not b or not a:
        return None
    return a / b


def fmt(x, digits=4):
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    if x == 0:
        return "0"
    return f"{x:.{digits}g}"


def fmt_ratio(x):
    return "—" if x is None else f"{x:.3g}×"


def duration(s):
    if s is None:
        return "—"
    if s < 60:
        return f"{s:.3g} s"
    t = round(s)
    if t < 3600:
        return f"{t // 60} min {t % 60} s"
    if t < 86400:
        t = round(s / 60)
        return f"{t // 60} h {t % 60} min"
    t = round(s / 3600)
    return f"{t // 24} d {t % 24} h"


def ours_train(o):
    """Our training row's numbers, as the tables use them."""
    return {
        "ms_per_step": 1e3 * o["step_seconds"]["median"],
        "min_ms_per_step": 1e3 * o["step_seconds"]["min"],
        "samples_per_second": o["samples_per_second"],
        "tflops": o["tflops"],
        "fraction_of_peak": o.get("fraction_of_peak"),
        "peak_memory_bytes": o["peak_memory"].get("bytes") if o["peak_memory"]["status"] == "measured" else None,
        "params": o["params"],
        "config": o["config"],
        "round_medians_ms": [1e3 * v for v in o.get("round_medians", [o["step_seconds"]["median"]])],
    }


def train_rows(ours, torch, ours_other=None):
    """One row per (shape, batch): ours (in its first precision) and every PyTorch mode;
    ours_other ({precision: report}) adds our other precisions' steps, each with its speed
    relative to the first ("ours_other")."""
    rows = []
    keys = []
    for r in (ours or {}).get("train", []):
        keys.append((r["config_name"], r["batch"]))
    for r in (torch or {}).get("train", []):
        if (r["config_name"], r["batch"]) not in keys:
            keys.append((r["config_name"], r["batch"]))
    for name, batch in keys:
        o = next((r for r in (ours or {}).get("train", []) if r["config_name"] == name and r["batch"] == batch), None)
        row = {"config_name": name, "batch": batch, "ours": None, "ours_other": {}, "torch": {}}
        if o:
            row["ours"] = ours_train(o)
        for prec, rep in (ours_other or {}).items():
            x = next((r for r in (rep or {}).get("train", []) if r["config_name"] == name and r["batch"] == batch), None)
            if x:
                row["ours_other"][prec] = ours_train(x)
                row["ours_other"][prec]["ratio_to_ours"] = ratio(row["ours_other"][prec]["samples_per_second"],
                                                                 (row["ours"] or {}).get("samples_per_second"))
        for t in (torch or {}).get("train", []):
            if t["config_name"] != name or t["batch"] != batch:
                continue
            if t["status"] != "measured":
                row["torch"][t["mode"]] = {"status": t["status"], "reason": t.get("reason")}
                continue
            tm = {
                "status": "measured",
                "ms_per_step": 1e3 * t["step_seconds"]["median"],
                "min_ms_per_step": 1e3 * t["step_seconds"]["min"],
                "samples_per_second": t["samples_per_second"],
                "tflops": t["tflops"],
                "peak_memory_bytes": t.get("peak_memory_bytes"),
                "adamw": t.get("adamw"),
                "compile_seconds": t.get("compile_seconds"),
                "round_medians_ms": [1e3 * v for v in t.get("round_medians", [t["step_seconds"]["median"]])],
            }
            if row["ours"]:
                tm["ratio"] = ratio(row["ours"]["samples_per_second"], tm["samples_per_second"])
                tm["ratio_min"] = ratio(tm["min_ms_per_step"], row["ours"]["min_ms_per_step"])
            row["torch"][t["mode"]] = tm
        rows.append(row)
    return rows


def recipe(rows):
    """Projected time of 8M pairs x 16 epochs at batch 8192 for ours and each mode, from the
    default model's measured throughput at batch 8192, or at the nearest measured batch
    (throughput assumed to hold at 8192, and said so)."""
    cands = [r for r in rows if r["config_name"] == "default"]
    if not cands:
        return None
    best = min(cands, key=lambda r: (abs(math.log(r["batch"] / RECIPE_BATCH)), -r["batch"]))
    samples = RECIPE_PAIRS * RECIPE_EPOCHS
    out = {
        "pairs": RECIPE_PAIRS,
        "epochs": RECIPE_EPOCHS,
        "batch": RECIPE_BATCH,
        "steps": samples / RECIPE_BATCH,
        "measured_batch": best["batch"],
        "scaled": best["batch"] != RECIPE_BATCH,
        "note": (
            f"{samples / RECIPE_BATCH:.0f} steps x the measured median step at batch {RECIPE_BATCH}"
            if best["batch"] == RECIPE_BATCH
            else f"batch {RECIPE_BATCH} was not measured: projected from the throughput at batch {best['batch']}, "
            f"assumed to hold at batch {RECIPE_BATCH}"
        ),
        "ours_seconds": samples / best["ours"]["samples_per_second"] if best["ours"] else None,
        "torch_seconds": {},
        "ratio": {},
    }
    for mode, t in best["torch"].items():
        if t.get("status") == "measured":
            out["torch_seconds"][mode] = samples / t["samples_per_second"]
            out["ratio"][mode] = ratio(out["torch_seconds"][mode], out["ours_seconds"])
    return out


def gemm_layout(name):
    """The operand layout of a GEMM kernel's name: nt (forward), nn (input
    gradient) or tn (weight gradient). PyTorch's rows are named by role
    (gemm_fwd_nt) and ours by kernel (gemm_nt_bias_stats, gemm_bf16_nt_f32,
    gemm_bf16_tn_mma_f32), so they are joined on layout and shape."""
    parts = name.split("_")
    return next((p for p in parts if p in ("nt", "nn", "tn")), name)


def gemm_rows(ours, torch):
    """Our GEMM kernels joined with torch.matmul at the same layout and
    shape; our kernels of one layout and shape (epilogue variants) are
    summed. Where we have no kernel of the row's layout at its shape but an
    NT one (an engine that computes its gradients as X Wᵀ products of
    operands it transposed first), the NT kernels at that shape stand in:
    they compute the row's product; the row says so ("ours_via"), and the
    transposes are memory-bound rows of their own. A split-K GEMM's sum of
    its slices (gemm_bf16_splitk_sum, a memory-bound kernel reported at
    the GEMM's shape) is part of that GEMM: its time counts in the tn row
    of that shape, not as a call of its own."""
    kern = (ours or {}).get("kernels", {})
    our = {}
    for k in kern.get("kernels") or []:
        split_sum = k.get("kind") == "memory" and "splitk_sum" in k["name"]
        if k.get("kind") != "gemm" and not split_sum:
            continue
        layout = "tn" if split_sum else gemm_layout(k["name"])
        a = our.setdefault((layout, k["shape"]), {"flops": 0.0, "seconds": 0.0, "calls": 0, "kernels": []})
        a["kernels"].append(k["name"])
        # A kernel's median time per call where the report has one (PyTorch's side is a median
        # too), its mean otherwise; variants at one shape weighted by how often a step runs them.
        w = k.get("calls_per_step") or k["calls"]
        spc = k.get("seconds_per_call") or (k["seconds"] / k["calls"] if k.get("calls") else 0.0)
        a["seconds"] += spc * w
        if not split_sum:
            a["flops"] += k["flops"] * w
            a["calls"] += w
    rows = []
    for g in (torch or {}).get("gemm", []):
        key = (g["name"], g["shape"])
        row = next((r for r in rows if (r["name"], r["shape"]) == key), None)
        if row is None:
            layout = gemm_layout(g["name"])
            o, via = our.get((layout, g["shape"])), layout
            if o is None and layout != "nt" and ("nt", g["shape"]) in our:
                o, via = our[("nt", g["shape"])], "nt"
            row = {
                "name": g["name"],
                "shape": g["shape"],
                "batch": g["batch"],
                "calls_per_step": g["calls_per_step"],
                "ours_tflops": o["flops"] / o["seconds"] / 1e12 if o and o["seconds"] > 0 else None,
                "ours_ms": 1e3 * o["seconds"] / o["calls"] if o and o["calls"] else None,
                "ours_kernels": o["kernels"] if o else [],
                "ours_via": via if o else None,
                "torch_tflops": {},
                "torch_ms": {},
            }
            rows.append(row)
        row["torch_tflops"][g["precision"]] = g["tflops"]
        row["torch_ms"][g["precision"]] = 1e3 * g["seconds"]["median"]
    for row in rows:
        row["ratio"] = {p: ratio(row["ours_tflops"], t) for p, t in row["torch_tflops"].items()}
    return rows


def memory_rows(ours, torch):
    kern = (ours or {}).get("kernels", {})
    ours_copy = (ours or {}).get("copy_bandwidth", {}).get("bytes_per_second")
    torch_copy = ((torch or {}).get("copy_bandwidth") or {}).get("bytes_per_second")
    rows = []
    for k in kern.get("kernels") or []:
        if k.get("kind") != "memory":
            continue
        bps = k.get("bytes_per_second")
        rows.append(
            {
                "name": k["name"],
                "shape": k["shape"],
                "calls_per_step": k.get("calls_per_step"),
                "ms_per_call": 1e3 * k["seconds_per_call"],
                "gb_per_second": bps / 1e9 if bps else None,
                "mb_per_call": bps * k["seconds_per_call"] / 1e6 if bps else None,
                "fraction_of_our_copy": ratio(bps, ours_copy),
                "fraction_of_torch_copy": ratio(bps, torch_copy),
            }
        )
    return rows, ours_copy, torch_copy


def topk_rows(ours, torch):
    rows = []
    ours_topk = {r["direction"]: r for r in ((ours or {}).get("topk") or {}).get("results") or []}
    torch_topk = {r["direction"]: r for r in (torch or {}).get("topk") or []}
    faiss = {r["direction"]: r for r in ((torch or {}).get("faiss") or {}).get("results") or []}
    for d in ("text->image", "image->text"):
        o, t, f = ours_topk.get(d), torch_topk.get(d), faiss.get(d)
        src = o or t or f
        if not src:
            continue
        row = {
            "direction": d,
            "queries": src["queries"],
            "keys": src["keys"],
            "dim": src["dim"],
            "k": src["k"],
            "ours_ms": 1e3 * o["seconds"]["median"] if o else None,
            "ours_impl": o["impl"] if o else None,
            "torch_ms": 1e3 * t["seconds"]["median"] if t else None,
            "torch_impl": t["impl"] if t else None,
            "faiss_ms": 1e3 * f["seconds"]["median"] if f else None,
            "faiss_impl": f["impl"] if f else None,
        }
        row["ratio_torch"] = ratio(row["torch_ms"], row["ours_ms"])
        row["ratio_faiss"] = ratio(row["faiss_ms"], row["ours_ms"])
        rows.append(row)
    return rows


# The CPU engine's targets: a training step at least as fast as PyTorch fp32 on the same threads,
# each GEMM at least 0.9x torch.matmul fp32, AdamW at least 0.8x of the measured copy bandwidth and
# the GELU and LayerNorm passes at least 0.5x of it.
CPU_TRAIN_TARGET, CPU_GEMM_TARGET, CPU_ADAMW_TARGET, CPU_PASS_TARGET = 1.0, 0.9, 0.8, 0.5


def cpu_targets(train, gemms, mems):
    """The CPU engine's targets, each with its worst row and by how much it is missed."""
    out = []

    def judge(target, rows, goal, what):
        """rows: (label, value); the worst decides."""
        if not rows:
            out.append({"target": target, "status": "unmeasured", "detail": f"no {what} in this run"})
            return
        label, worst = min(rows, key=lambda r: r[1])
        met = worst >= goal
        detail = f"worst {label}: {worst:.3g}" + ("" if met else f", {worst / goal:.2f} of the target")
        detail += "; all: " + ", ".join(f"{lb} {v:.3g}" for lb, v in rows)
        out.append({"target": target, "status": "met" if met else "missed", "detail": detail})

    judge("training step >= 1.0x PyTorch fp32 (same threads)",
          [(f"{r['config_name']} b{r['batch']}", r["torch"]["fp32"]["ratio"]) for r in train
           if r["ours"] and r["torch"].get("fp32", {}).get("ratio")], CPU_TRAIN_TARGET, "training step of both sides")
    judge("each GEMM >= 0.9x torch.matmul fp32",
          [(f"{g['name']} {g['shape']}", g["ratio"]["fp32"]) for g in gemms
           if g["name"] != "gemm_square" and g["ours_tflops"] and g["ratio"].get("fp32")], CPU_GEMM_TARGET, "GEMM of both sides")
    frac = lambda r: r["fraction_of_our_copy"]  # noqa: E731
    judge("AdamW >= 0.8x of copy bandwidth",
          [(f"adamw {r['shape']}", frac(r)) for r in mems if r["name"] == "adamw" and frac(r)], CPU_ADAMW_TARGET,
          "AdamW timing")
    judge("GELU and LayerNorm passes >= 0.5x of copy bandwidth",
          [(f"{r['name']} {r['shape']}", frac(r)) for r in mems
           if r["name"].startswith(("gelu", "layernorm")) and frac(r)], CPU_PASS_TARGET, "GELU or LayerNorm timing")
    return out


def verdict(value, target, what):
    """A target's status from a measured ratio: met or missed, and by how much."""
    if value is None:
        return {"status": "unmeasured", "detail": f"{what}: not measured"}
    if value >= target:
        return {"status": "met", "value": value, "detail": f"{what}: {value:.3g}× (target {target:g}×, "
                f"{100 * (value / target - 1):.0f}% above)"}
    return {"status": "missed", "value": value, "detail": f"{what}: {value:.3g}× (target {target:g}×, "
            f"{100 * (1 - value / target):.0f}% short: {target / value:.3g}× faster needed)"}


def targets(device, train, gemms, mems, ours_copy, torch_copy):
    """The targets of the engine measured (bench/RESULTS.md lists them) for its device: on the CPU cpu_targets';
    on a GPU the GPU engine's three targets, each met, missed (and by how much) or unmeasured (and
    why), from ratios measured in this run. Each GEMM and memory-bound row gets its own
    "target" verdict too; the target's status is that of the worst row."""
    names = (f"training step at batch {STEP_TARGET_BATCH} >= {STEP_TARGET:g}× torch.compile bf16",
             f"each GEMM >= {GEMM_TARGET:g}× torch.matmul bf16 at the same shape and layout",
             f"each memory-bound kernel >= {MEMORY_TARGET:g}× the copy bandwidth")
    if device != "cuda":
        return cpu_targets(train, gemms, mems)
    out = []
    row = next((r for r in train if r["config_name"] == "default" and r["batch"] == STEP_TARGET_BATCH), None)
    t = (row or {}).get("torch", {}).get(STEP_TARGET_MODE, {})
    if row is None:
        out.append({"target": names[0], "status": "unmeasured", "detail": f"batch {STEP_TARGET_BATCH} of the default model was not run"})
    elif not row["ours"]:
        out.append({"target": names[0], "status": "unmeasured", "detail": f"dinoclip's step at batch {STEP_TARGET_BATCH} was not measured"})
    elif t.get("status") != "measured":
        out.append({"target": names[0], "status": "unmeasured",
                    "detail": f"torch.compile bf16 at batch {STEP_TARGET_BATCH}: {t.get('status', 'not run')}"
                              + (f": {t['reason']}" if t.get("reason") else "")})
    else:
        v = verdict(t["ratio"], STEP_TARGET, f"{t['ms_per_step']:.4g} ms / {row['ours']['ms_per_step']:.4g} ms")
        out.append({"target": names[0], **v})

    def worst_of(rows, name, key, why_none):
        measured = [r for r in rows if r["target"]["status"] != "unmeasured"]
        if not measured:
            return {"target": name, "status": "unmeasured", "detail": why_none}
        w = min(measured, key=lambda r: r["target"]["value"])
        missed = sum(r["target"]["status"] == "missed" for r in measured)
        status = "missed" if missed else "met"
        unm = len(rows) - len(measured)
        return {"target": name, "status": status, "value": w["target"]["value"],
                "detail": f"{len(measured) - missed} of {len(measured)} met"
                          + (f", {unm} unmeasured" if unm else "")
                          + f"; worst {key(w)}: {w['target']['detail']}"}

    g = [r for r in gemms if r["name"] != "gemm_square"]
    for r in g:
        r["target"] = verdict(r["ratio"].get("bf16"), GEMM_TARGET, "ours / torch.matmul bf16")
        if r["ours_tflops"] is None:
            r["target"]["detail"] = "no kernel of ours timed at this layout and shape"
        elif r["torch_tflops"].get("bf16") is None:
            r["target"]["detail"] = "torch.matmul bf16 not timed at this shape"
    out.append(worst_of(g, names[1], lambda r: f"{r['name']} {r['shape']}",
                        "no GEMM timed on both sides (the engine's KernelTimer or torch_ref's GEMMs)"))
    copy = ours_copy or torch_copy
    src = "our copy" if ours_copy else "PyTorch's copy_"
    for r in mems:
        r["target"] = verdict(r["fraction_of_our_copy"] or r["fraction_of_torch_copy"], MEMORY_TARGET, f"of {src}")
    t = worst_of(mems, names[2], lambda r: f"{r['name']} {r['shape']}",
                 "no memory-bound kernel timed" if copy else "no copy bandwidth measured")
    small = [r for r in mems if r["target"]["status"] == "missed" and (r.get("mb_per_call") or 0) < SMALL_KERNEL_MB]
    if small:
        t["detail"] += (f"; {len(small)} of the misses move under {SMALL_KERNEL_MB} MB a call, where launch and "
                        f"tail latency weigh as much as the bytes ({', '.join(sorted({r['name'] for r in small}))})")
    out.append(t)
    return out


GPU_ROWS = [
    "training step, default model, batch 1024-16384, on the GPU engine: samples/s, TFLOP/s, fraction of peak",
    "the same in PyTorch on the GPU: eager fp32, tf32, bf16 autocast, torch.compile bf16 and max-autotune",
    "per-kernel times of the GPU engine with TFLOP/s or GB/s (enginehooks.KernelTimer)",
    f"GEMMs at the model's shapes: GPU engine vs torch.matmul fp32/tf32/bf16 (target >= {GEMM_TARGET:g}× bf16)",
    f"memory-bound kernels vs the GPU's measured copy bandwidth (target >= {MEMORY_TARGET:g}×)",
    "peak GPU memory, ours (enginehooks.MemoryReporter) and PyTorch's (max_memory_allocated)",
    "retrieval top-k on the GPU: torch.mm + torch.topk (and the engine's top-k if it has one)",
    "the original recipe's projected time on the GPU, ours vs each PyTorch mode",
]


def unmeasured(device, ours, ours_err, torch, torch_err, tgts):
    out = []
    if ours is None:
        out.append(f"dinoclip: everything ({ours_err or 'not run'})")
    if torch is None:
        out.append(f"PyTorch: everything ({torch_err or 'not run'})")
    for u in (ours or {}).get("unmeasured", []):
        out.append(f"dinoclip: {u}")
    # A mode skipped for one reason is listed once, with the batches it concerns.
    skipped = {}
    for t in (torch or {}).get("train", []):
        if t["status"] != "measured":
            skipped.setdefault((t["mode"], t["status"], t.get("reason")), []).append(f"{t['config_name']} b{t['batch']}")
    for (mode, status, reason), where in skipped.items():
        out.append(f"PyTorch {mode} ({', '.join(where)}): {status}: {reason}")
    f = (torch or {}).get("faiss")
    if f and f.get("status") != "measured":
        out.append(f"faiss: {f.get('reason')}")
    for t in tgts:
        if t["status"] == "unmeasured":
            out.append(f"target '{t['target']}': {t['detail']}")
    if device != "cuda":
        out += [f"GPU: {r}" for r in GPU_ROWS]
    return out


# ---------------------------------------------------------------------------------------
# Markdown.


def markdown(res):
    L = []
    env = res["env"]
    ours_env = (res.get("ours") or {}).get("env", {})
    torch_env = (res.get("torch") or {}).get("env", {})
    dirty = " (working tree with uncommitted changes)" if env.get("dirty") else ""
    L.append(f"### {env['device']} — {env['device_name']}, started {env['date']}")
    L.append("")
    L.append(f"- commit `{(env.get('commit') or 'unknown')[:12]}`{dirty}")
    L.append(f"- command: `{env['command']}` ({duration(res['seconds'])} in all: dinoclip {duration(res['ours_seconds'])}, "
             f"PyTorch {duration(res['torch_seconds'])})")
    # The engine's description may quote a driver's error (a GEMM fallback): one line, no backticks.
    engine = " ".join(str(ours_env.get("engine", "?")).replace("`", "'").split())
    L.append(f"- dinoclip: {ours_env.get('go_version', '?')}, engine `{engine}`, "
             f"GOMAXPROCS {ours_env.get('gomaxprocs', '?')}")
    L.append(f"- PyTorch {torch_env.get('torch_version', '?')}"
             + (f" (CUDA {torch_env.get('cuda_version')})" if env["device"] == "cuda" else "")
             + f", {torch_env.get('threads', '?')} threads; model: {(res.get('torch') or {}).get('model_source', '?')}")
    if (res.get("torch") or {}).get("fairness"):
        L.append(f"- fairness: {res['torch']['fairness']}; dinoclip uses GOMAXPROCS = {ours_env.get('gomaxprocs', '?')}")
    la = [ours_env.get("loadavg_start"), torch_env.get("loadavg_end")]
    if all(la):
        L.append(f"- load average (1 min) at the start {la[0][0]:.2f}, at the end {la[1][0]:.2f} on {ours_env.get('num_cpu', '?')} CPUs"
                 " — other work on the machine slows both sides")
    peak = ours_env.get("peak", {})
    if peak.get("tflops"):
        L.append(f"- peak for 'of peak': {peak['tflops']:.4g} TFLOP/s {peak.get('precision', '')} ({peak.get('source', '')})")
    for e in res["errors"]:
        L.append(f"- **error**: {e}")
    L.append("")
    L.append("Ratios are ours / PyTorch speed (above 1: dinoclip faster), from median step times; "
             "'min' ratios compare the fastest step of each side."
             + (f" Training rows keep the best of {res['rounds']} alternating rounds per side." if res.get("rounds", 1) > 1 else "")
             + (f" Kernel, GEMM and copy rows keep each side's best of {res['kernel_rounds']} rounds (lowest median time"
                + ("; PyTorch's GEMMs after the first round in fp32 only" if res["env"].get("device") == "cpu" else "") + ")."
                if (res.get("kernel_rounds") or 1) > 1 else ""))
    L.append("")

    if res["train"]:
        # Modes never measured (skipped on this device) are left to the unmeasured list.
        modes = [m for m in MODES if any(r["torch"].get(m, {}).get("status") == "measured" for r in res["train"])]
        L.append("#### Training step (forward + loss + backward + AdamW + OneCycleLR)")
        L.append("")
        precs = env.get("precisions") or ["fp32"]
        others = [p for p in precs[1:] if any(p in r.get("ours_other", {}) for r in res["train"])]
        ours = f"ours {precs[0]}"
        hdr = ["shape", "batch", f"{ours} ms/step", f"{ours} samples/s", f"{ours} TFLOP/s", "of peak", f"{ours} peak mem"]
        for p in others:
            hdr += [f"ours {p} ms/step", f"ours {precs[0]}/{p}"]
        for m in modes:
            hdr += [f"torch {m} ms/step", f"ours/torch {m}", f"ours/torch {m} (min)"]
        L.append("| " + " | ".join(hdr) + " |")
        L.append("|" + "---|" * len(hdr))
        for r in res["train"]:
            o = r["ours"] or {}
            cells = [r["config_name"], str(r["batch"]), fmt(o.get("ms_per_step")), fmt(o.get("samples_per_second")),
                     fmt(o.get("tflops")), f"{100 * o['fraction_of_peak']:.2f}%" if o.get("fraction_of_peak") else "—",
                     f"{o['peak_memory_bytes'] / 2**30:.2f} GiB" if o.get("peak_memory_bytes") else "unmeasured"]
            for p in others:
                x = r.get("ours_other", {}).get(p, {})
                cells += [fmt(x.get("ms_per_step")), fmt_ratio(ratio(o.get("samples_per_second"), x.get("samples_per_second")))]
            for m in modes:
                t = r["torch"].get(m)
                if t is None:
                    cells += ["—", "—", "—"]
                elif t.get("status") != "measured":
                    cells += [t["status"], "—", "—"]
                else:
                    cells += [fmt(t["ms_per_step"]), fmt_ratio(t.get("ratio")), fmt_ratio(t.get("ratio_min"))]
            L.append("| " + " | ".join(cells) + " |")
        if any(len((r["ours"] or {}).get("round_medians_ms", [])) > 1 for r in res["train"]):
            L.append("")
            L.append("Median step (ms) of each round, in the order run; the table above keeps each row's best round:")
            L.append("")
            L.append("| shape | batch | dinoclip | " + " | ".join(f"PyTorch {m}" for m in modes) + " |")
            L.append("|" + "---|" * (3 + len(modes)))
            for r in res["train"]:
                cells = [r["config_name"], str(r["batch"]), ", ".join(fmt(v, 3) for v in (r["ours"] or {}).get("round_medians_ms", []))]
                cells += [", ".join(fmt(v, 3) for v in r["torch"].get(m, {}).get("round_medians_ms", [])) for m in modes]
                L.append("| " + " | ".join(cells) + " |")
        mem = [(r["config_name"], r["batch"], m, t["peak_memory_bytes"]) for r in res["train"] for m, t in r["torch"].items()
               if t.get("peak_memory_bytes")]
        if mem:
            L.append("")
            L.append("PyTorch peak GPU memory (max_memory_allocated): " +
                     "; ".join(f"{n} b{b} {m} {v / 2**30:.2f} GiB" for n, b, m, v in mem))
        L.append("")

    rp = res.get("recipe")
    if rp:
        L.append(f"#### Original recipe: {rp['pairs']:,} pairs × {rp['epochs']} epochs at batch {rp['batch']} "
                 f"({rp['steps']:.0f} steps), data in memory")
        L.append("")
        L.append("| | time | ours / this |")
        L.append("|---|---|---|")
        L.append(f"| dinoclip | {duration(rp['ours_seconds'])} | |")
        for m, s in rp["torch_seconds"].items():
            L.append(f"| PyTorch {m} | {duration(s)} | {fmt_ratio(rp['ratio'].get(m))} |")
        L.append("")
        L.append(f"{rp['note']}.")
        L.append("")

    if res["gemm"]:
        precs = [p for p in ("fp32", "tf32", "bf16") if any(p in r["torch_tflops"] for r in res["gemm"])]
        L.append(f"#### GEMMs alone (batch {res['gemm'][0]['batch']}): TFLOP/s, ours vs torch.matmul")
        L.append("")
        hdr = (["GEMM", "shape", "calls/step", "our kernels", "ours ms", "ours TFLOP/s"] + [f"torch {p} TFLOP/s" for p in precs]
               + [f"ours/{p}" for p in precs] + [f"target >= {GEMM_TARGET:g}× bf16"])
        L.append("| " + " | ".join(hdr) + " |")
        L.append("|" + "---|" * len(hdr))
        for r in res["gemm"]:
            kerns = ", ".join(r.get("ours_kernels") or []) or "—"
            if r.get("ours_via") and r["ours_via"] != gemm_layout(r["name"]):
                kerns += f" (as {r['ours_via'].upper()} on transposed operands)"
            cells = [r["name"], r["shape"], str(r["calls_per_step"] or "—"), kerns,
                     fmt(r["ours_ms"]), fmt(r["ours_tflops"])]
            cells += [fmt(r["torch_tflops"].get(p)) for p in precs]
            cells += [fmt_ratio(r["ratio"].get(p)) for p in precs]
            cells += [(r.get("target") or {}).get("status", "—")]
            L.append("| " + " | ".join(cells) + " |")
        L.append("")

    mem_rows, oc, tc = res["memory_bound"], res["copy"]["ours"], res["copy"]["torch"]
    L.append(f"#### Memory-bound kernels vs copy bandwidth (ours: {fmt(oc / 1e9 if oc else None)} GB/s; "
             f"PyTorch copy_: {fmt(tc / 1e9 if tc else None)} GB/s; bytes read + written)")
    L.append("")
    if mem_rows:
        L.append(f"| kernel | shape | calls/step | ms/call | MB/call | GB/s | of our copy | of torch copy | target >= {MEMORY_TARGET:g}× |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        for r in mem_rows:
            L.append(f"| {r['name']} | {r['shape']} | {fmt(r['calls_per_step'])} | {fmt(r['ms_per_call'])} | {fmt(r.get('mb_per_call'))} | "
                     f"{fmt(r['gb_per_second'])} | "
                     f"{fmt_ratio(r['fraction_of_our_copy'])} | {fmt_ratio(r['fraction_of_torch_copy'])} | "
                     f"{(r.get('target') or {}).get('status', '—')} |")
    else:
        L.append("unmeasured: " + ((res.get("ours") or {}).get("kernels", {}).get("reason") or "no kernel timings"))
    L.append("")

    if res["topk"]:
        L.append("#### Retrieval top-k (random unit vectors, k = %d)" % res["topk"][0]["k"])
        L.append("")
        L.append("| direction | queries × keys × dim | ours ms | torch mm+topk ms | faiss ms | ours/torch | ours/faiss |")
        L.append("|---|---|---|---|---|---|---|")
        for r in res["topk"]:
            L.append(f"| {r['direction']} | {r['queries']} × {r['keys']} × {r['dim']} | {fmt(r['ours_ms'])} | {fmt(r['torch_ms'])} | "
                     f"{fmt(r['faiss_ms'])} | {fmt_ratio(r['ratio_torch'])} | {fmt_ratio(r['ratio_faiss'])} |")
        impls = {r.get(k) for r in res["topk"] for k in ("ours_impl", "torch_impl", "faiss_impl") if r.get(k)}
        L.append("")
        L.append("Implementations: " + "; ".join(sorted(impls)) + ".")
        L.append("")

    data = ((res.get("ours") or {}).get("data") or {}).get("results") or []
    if data:
        fastest = max([r["ours"]["samples_per_second"] for r in res["train"] if r["ours"] and r["config_name"] == "default"] or [0])
        L.append("#### Data loader (dinoclip only: train.Dataset.ReadRows over an epoch of train.Order batches)")
        L.append("")
        L.append("| cache | dtype | rows | batch | rows/s | file MB/s | rows/s ÷ ours training samples/s (default model) |")
        L.append("|---|---|---|---|---|---|---|")
        for d in data:
            L.append(f"| {d['cache']} | {d['dtype']} | {d['rows']} | {d['batch']} | {fmt(d['rows_per_second'])} | "
                     f"{fmt(d['file_bytes_per_second'] / 1e6)} | {fmt_ratio(ratio(d['rows_per_second'], fastest))} |")
        L.append("")

    L.append("#### Targets (" + ("GPU" if env["device"] == "cuda" else "CPU") + " engine)")
    L.append("")
    for t in res["targets"]:
        L.append(f"- {t['target']}: **{t['status']}** — {t['detail']}")
    L.append("")
    if res["unmeasured"]:
        L.append("#### Unmeasured in this run")
        L.append("")
        for u in res["unmeasured"]:
            L.append(f"- {u}")
        L.append("")
    return "\n".join(L)


# ---------------------------------------------------------------------------------------


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), required=True)
    p.add_argument("--out", required=True, help="folder for ours.*, torch.*, results.json and results.md")
    p.add_argument("--ours-bin", help="a dinoclip binary to use instead of building one (for cuda: built with -tags cuda)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for both sides (GOMAXPROCS, torch.set_num_threads); 0: all")
    p.add_argument("--shapes", help="comma-separated shapes for both sides (default: cpu default,small; cuda default)")
    p.add_argument("--batches", help="batch sizes for both sides: N,N,... or SHAPE:N/N;SHAPE:N (default: cpu default:64/256;small:256; "
                   "cuda 1024,...,16384)")
    p.add_argument("--quick", action="store_true", help="cuda: batch 8192 only")
    p.add_argument("--modes", help="PyTorch modes (default: all of " + ",".join(MODES) + " that apply)")
    p.add_argument("--precisions", help="dinoclip's precisions, the first with every part (kernels, top-k, data), the others "
                   "training steps only (default: cuda bf16,fp32; cpu fp32)")
    p.add_argument("--commit", help="commit to record where git cannot tell (suffix -dirty for a dirty tree)")
    p.add_argument("--render", metavar="RESULTS_JSON",
                   help="measure nothing: rebuild results.json and results.md in --out from the measurements kept in an earlier run's results.json")
    p.add_argument("--rounds", type=int, default=None,
                   help="times to run the training steps of both sides, alternating, keeping each row's best round "
                        "(default: cpu 3, cuda 1; a shared CPU is noisy)")
    p.add_argument("--kernel-rounds", type=int, default=None,
                   help="of the --rounds, how many also time the kernels, GEMMs and copy bandwidth of both sides, "
                        "each row keeping its best round (default: cpu as --rounds, cuda 1)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds each side may take (default: cpu 3600, as a loaded 2-core machine needs; cuda 1200)")
    p.add_argument("--budget", type=float, default=0,
                   help="seconds the whole run may take (0: no limit): each side gets at most what is left, a side "
                        "with nothing left is not started and is recorded as such, and the results are written in time")
    p.add_argument("--skip-ours", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--skip-torch", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ours-args", default="", help="extra arguments for dinoclip bench (space-separated)")
    p.add_argument("--torch-args", default="", help="extra arguments for torch_ref.py (space-separated)")
    p.add_argument("--search", action="store_true",
                   help="cpu: only run bench/search_compare.py (exact top-k search, 1k queries x 1M keys x 512, vs faiss "
                        "IndexFlatIP and torch.mm + topk) into OUT/search")
    args = p.parse_args(argv)
    # The paths given, made absolute against the directory compare.py is run in: relative, they were
    # taken for the checkout's by the sides (run there once), and both reports were lost after minutes of
    # measuring. (A binary's bare name is left to the PATH search, as a shell does it; .absolute, not
    # abspath: a ".." after a link leads where the system takes it.)
    args.out = str(Path(args.out).absolute())
    if args.ours_bin and os.sep in args.ours_bin:
        args.ours_bin = str(Path(args.ours_bin).absolute())
    if args.search:
        import search_compare

        extra = ["--ours-bin", args.ours_bin] if args.ours_bin else []
        if args.threads:
            extra += ["--threads", str(args.threads)]
        return search_compare.main(["--out", str(Path(args.out) / "search"), *extra])

    if args.rounds is None:
        args.rounds = 1 if args.device == "cuda" else 3
    if args.timeout is None:
        args.timeout = 1200 if args.device == "cuda" else 3600
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    if not args.timeout > 0:
        p.error(f"--timeout {args.timeout:g}: want a positive number of seconds")
    if not args.budget >= 0:
        p.error(f"--budget {args.budget:g}: want seconds >= 0 (0: no limit)")
    if args.threads < 0:
        p.error(f"--threads {args.threads}: want a count of threads, or 0 for all")
    # (Refused before either side runs, not after ours has.)
    if args.modes and any(m not in MODES for m in args.modes.split(",") if m):  # (empty entries: none, as torch_ref reads them)
        p.error(f"--modes {args.modes}: want some of {','.join(MODES)}, separated by commas")
    if args.kernel_rounds is None:
        args.kernel_rounds = 1 if args.device == "cuda" else args.rounds
    if not 1 <= args.kernel_rounds <= args.rounds:
        p.error(f"--kernel-rounds must be between 1 and --rounds ({args.rounds})")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        p.error(f"--out {out} is a file; want a folder for the results")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        p.error(f"--out {out}: {e.strerror or e}")
    if args.render:
        try:
            old = json.loads(Path(args.render).read_text())
            old["env"]["device"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            p.error(f"--render {args.render}: not a results.json of bench/compare.py ({type(e).__name__}: {e})")
        if args.commit:
            old["env"]["commit"], old["env"]["dirty"] = args.commit.removesuffix("-dirty"), args.commit.endswith("-dirty")
        res = derive(old["env"]["device"], old["env"], old.get("errors", []), old.get("ours"), None, old.get("torch"), None,
                     old.get("ours_other"))
        for k in ("rounds", "kernel_rounds", "ours_seconds", "torch_seconds", "seconds"):
            res[k] = old.get(k)
        return write_results(out, res)
    t0 = time.perf_counter()
    # An earlier run's results go first: beside this run's ours.* and torch.*, a
    # results.json left by a run stopped before its end would describe another run.
    for name in ("results.json", "results.md"):
        (out / name).unlink(missing_ok=True)
    # What is kept back from --budget for writing the results after the last side.
    end = time.monotonic() + args.budget - 5 if args.budget > 0 else math.inf

    def run_within_budget(name, cmd, j, t, env=None):
        """run_side under --timeout and what is left of --budget."""
        left = end - time.monotonic()
        if left < 1:
            return None, f"{name}: not started: --budget of {args.budget:g} s spent", 0.0
        return run_side(name, cmd, j, t, min(args.timeout, left), env)

    started = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    threads = args.threads or usable_cpus()
    commit, dirty = commit_here()
    if args.commit:
        commit, dirty = args.commit.removesuffix("-dirty"), args.commit.endswith("-dirty")

    precisions = (args.precisions or ("bf16,fp32" if args.device == "cuda" else "fp32")).split(",")
    if not all(precisions) or len(set(precisions)) != len(precisions) or any(x not in ("fp32", "bf16") for x in precisions):
        p.error(f"--precisions: want distinct fp32 or bf16 separated by commas, not {args.precisions!r}")
    shapes = args.shapes or ("default" if args.device == "cuda" else "default,small")
    batches = args.batches or ("8192" if args.quick else ("1024,2048,4096,8192,16384" if args.device == "cuda" else "default:64/256;small:256"))

    errors = []
    ours = torch = None
    ours_err = torch_err = None
    ours_secs = torch_secs = 0.0
    with tempfile.TemporaryDirectory(prefix="dinoclip-compare-") as work:
        binary = None
        if not args.skip_ours:
            binary, why = (args.ours_bin, None) if args.ours_bin else build_ours(args.device, commit, dirty, work)
            if binary is None:
                ours_err = f"dinoclip: {why}"
                errors.append(ours_err)
        ours_env = dict(os.environ, GOMAXPROCS=str(threads))

        def ours_cmd(json_path, extra, precision=precisions[0]):
            cmd = [binary, "bench", "--device", args.device, "--json", str(json_path), "--shape", shapes]
            if precision != "fp32" or args.device == "cuda":
                cmd += ["--precision", precision]
            for entry in batches.split(";"):
                cmd += ["--batch", entry]
            return cmd + extra + args.ours_args.split()

        def torch_cmd(json_path, extra):
            cmd = [sys.executable, str(REPO / "bench" / "torch_ref.py"), "--device", args.device, "--threads", str(threads),
                   "--json", str(json_path), "--shapes", shapes, "--batches", batches]
            if args.modes:
                cmd += ["--modes", args.modes]
            if commit:
                cmd += ["--commit", commit + ("-dirty" if dirty else "")]
            return cmd + extra + args.torch_args.split()

        # Round 1 measures everything; further rounds only the training steps, alternating which
        # side goes first, and each training row keeps its best (lowest-median) round.
        ours_rounds, torch_rounds = [], []
        for rnd in range(1, args.rounds + 1):
            sides = ["ours", "torch"] if rnd % 2 == 1 else ["torch", "ours"]
            for side in sides:
                if side == "ours" and binary is not None and (rnd == 1 or ours is not None):
                    if rnd == 1:
                        j, t, extra = out / "ours.json", out / "ours.txt", []
                    else:
                        j, t = Path(work) / f"ours-{rnd}.json", Path(work) / f"ours-{rnd}.txt"
                        extra = ["--topk=false", "--data=false"] + ([] if rnd <= args.kernel_rounds else ["--kernels=false"])
                    rep, err, secs = run_within_budget(f"dinoclip round {rnd}", ours_cmd(j, extra), j, t, ours_env)
                    ours_secs += secs
                    if err:
                        errors.append(err)
                        if rnd == 1:
                            ours_err = err
                    elif rnd == 1:
                        ours = rep
                    if rep:
                        ours_rounds.append(rep)
                if side == "torch" and not args.skip_torch and (rnd == 1 or torch is not None):
                    if rnd == 1:
                        j, t, extra = out / "torch.json", out / "torch.txt", []
                    else:
                        j, t = Path(work) / f"torch-{rnd}.json", Path(work) / f"torch-{rnd}.txt"
                        extra = ["--no-topk", "--no-faiss"]
                        if rnd > args.kernel_rounds:
                            extra += ["--no-gemm", "--no-copy"]
                        elif args.device == "cpu":
                            # PyTorch's bf16 GEMMs take seconds each on a CPU, and the CPU targets
                            # are against fp32; on CUDA every precision gets every round, as ours do.
                            extra += ["--gemm-precisions", "fp32"]
                    rep, err, secs = run_within_budget(f"torch round {rnd}", torch_cmd(j, extra), j, t)
                    torch_secs += secs
                    if err:
                        errors.append(err)
                        if rnd == 1:
                            torch_err = err
                    elif rnd == 1:
                        torch = rep
                    if rep:
                        torch_rounds.append(rep)
        # dinoclip's other precisions: the training steps, once, after the rounds.
        ours_other = {}
        for prec in precisions[1:] if binary is not None else []:
            j, t = out / f"ours-{prec}.json", out / f"ours-{prec}.txt"
            rep, err, secs = run_within_budget(f"dinoclip {prec}", ours_cmd(j, ["--kernels=false", "--topk=false", "--data=false"], prec),
                                  j, t, ours_env)
            ours_secs += secs
            if err:
                errors.append(err)
            else:
                ours_other[prec] = rep
        if ours is not None:
            ours = best_kernel_rounds(best_rounds(ours, ours_rounds, ("config_name", "batch")), ours_rounds, "ours")
        if torch is not None:
            torch = best_kernel_rounds(best_rounds(torch, torch_rounds, ("config_name", "batch", "mode")), torch_rounds, "torch")

    if commit is None and ours is not None:
        # No git here (a GPU host gets the tree without .git): the commit dinoclip was built from.
        commit, dirty = ours["env"].get("commit") or None, ours["env"].get("dirty")
    env = {
        "device": args.device,
        "device_name": ((torch or {}).get("env") or {}).get("device_name") or ((ours or {}).get("env") or {}).get("device_name") or "?",
        "date": started,
        "finished": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": commit,
        "dirty": dirty,
        "command": "python3 bench/compare.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "threads": threads,
    }
    env["precisions"] = precisions
    res = derive(args.device, env, errors, ours, ours_err, torch, torch_err, ours_other)
    res.update({"rounds": args.rounds, "kernel_rounds": args.kernel_rounds, "ours_seconds": ours_secs, "torch_seconds": torch_secs,
                "seconds": time.perf_counter() - t0})
    rc = write_results(out, res)
    # A side asked for that measured nothing fails the run, though the other's results are written.
    missing = [name for name, rep, skipped in (("dinoclip", ours, args.skip_ours), ("PyTorch", torch, args.skip_torch))
               if rep is None and not skipped]
    if missing:
        log(f"failed: {' and '.join(missing)} measured nothing (see errors in {out / 'results.json'})")
        return 1
    return rc


def derive(device, env, errors, ours, ours_err, torch, torch_err, ours_other=None):
    """The comparison tables from both sides' measurements; ours_other: our reports in the
    other precisions ({precision: report}), training steps only."""
    tr = train_rows(ours, torch, ours_other)
    gm = gemm_rows(ours, torch)
    mm, oc, tc = memory_rows(ours, torch)
    tk = topk_rows(ours, torch)
    tg = targets(device, tr, gm, mm, oc, tc)
    return {
        "schema": SCHEMA,
        "env": env,
        "errors": errors,
        "train": tr,
        "recipe": recipe(tr),
        "gemm": gm,
        "memory_bound": mm,
        "copy": {"ours": oc, "torch": tc},
        "topk": tk,
        "targets": tg,
        "unmeasured": unmeasured(device, ours, ours_err, torch, torch_err, tg),
        "ours": ours,
        "ours_other": ours_other or {},
        "torch": torch,
    }


def write_results(out, res):
    # results.json last: its presence says the run's results are whole.
    md = markdown(res)
    write_text_atomic(out / "results.md", md + "\n")
    write_text_atomic(out / "results.json", json.dumps(res, indent=2) + "\n")
    print(md)
    log(f"wrote {out / 'results.json'} and {out / 'results.md'} in {duration(res['seconds'])}")
    return 1 if (res["ours"] is None and res["torch"] is None) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted: no results.json written")
        sys.exit(130)
