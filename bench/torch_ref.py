#!/usr/bin/env python3
"""PyTorch reference timings for `dinoclip bench` (see bench/README.md).

Times, on the same shapes as `dinoclip bench`:

* training steps of ProjectorWithResiduals: forward, unit-norm MSE loss
  (F.mse_loss(F.normalize(p), F.normalize(t))), backward, AdamW (PyTorch defaults,
  fused where available) and OneCycleLR (max_lr 1e-3 over the original recipe's 16 x 976
  steps), with the batch already on the device, in these modes:
    fp32          eager, true FP32 matmuls (set_float32_matmul_precision("highest"))
    tf32          eager, TF32 matmuls (CUDA only: "high" precision)
    bf16          eager under torch.autocast(dtype=bfloat16); the loss in FP32
    compile_bf16  torch.compile of forward + loss under bf16 autocast (skipped on the CPU
                  unless asked for: compiling takes minutes on a few cores)
    compile_max_autotune  the same with torch.compile(mode="max-autotune"): per-shape GEMM
                  autotuning and CUDA graphs; at batch 8192 only by default on CUDA
                  (--autotune-batches), as it compiles for minutes per shape
* GEMMs alone (torch.matmul) at every Linear's forward, input-gradient and weight-gradient
  shape at one batch, in fp32 / tf32 / bf16, plus one large square bf16 (GPU) or fp32 (CPU)
  product as the practical peak;
* device copy bandwidth (a large tensor's copy_, bytes read + written);
* retrieval top-k, torch.mm + torch.topk, both directions at MSCOCO's shapes; on the CPU
  also faiss-cpu's exact inner-product search (IndexFlatIP) when faiss is installed.

On the CPU, torch.set_num_threads(--threads) (compare.py passes dinoclip's GOMAXPROCS) so
both sides use the same number of cores. On CUDA every timing uses CUDA events after
warm-up.

Writes a JSON document (--json) with the device, date and commit, and prints a summary.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchfiles import usable_cpus, write_text_atomic

SCHEMA = "dinoclip-torch-ref/1"
REPO = Path(__file__).resolve().parent.parent

# Model shapes by name, as in bench.Configs (Go): input, hidden, blocks, output.
CONFIGS = {
    "default": (768, 2048, 6, 512),
    "small": (768, 256, 2, 512),
}
DEFAULT_PARAMS = 54_608_384  # docs/MODEL.md

# The original recipe's schedule (docs/TRAINING.md), as bench.RecipeMaxLR etc.
RECIPE_MAX_LR = 1e-3
RECIPE_EPOCHS = 16
RECIPE_STEPS_PER_EPOCH = 8_000_000 // 8192  # 976: whole batches per epoch

ALL_MODES = ("fp32", "tf32", "bf16", "compile_bf16", "compile_max_autotune")
# compile_max_autotune: bf16 autocast under torch.compile(mode="max-autotune"), which benchmarks
# candidate GEMM kernels (Triton templates and cuBLAS) for each shape and captures CUDA graphs:
# PyTorch's fastest step, at the cost of minutes of compilation per shape.
BF16_MODES = ("bf16", "compile_bf16", "compile_max_autotune")


# ---------------------------------------------------------------------------------------
# The model: the package's own class (python/src/dinoclip/model.py), the one the Python side
# and the Go side's golden data use; there is no second copy here to fall back to.


def model_class():
    """(class, source): dinoclip.model.ProjectorWithResiduals, installed or else from python/src
    beside this script. An import that fails, or a class that does not build the original's
    parameter count, is an error: a bench of another model would compare nothing."""
    src = REPO / "python" / "src"
    if src.is_dir() and str(src) not in sys.path:
        sys.path.append(str(src))
    try:
        import dinoclip.model as model  # type: ignore
    except Exception as e:  # noqa: BLE001 - any import failure is reported the same way
        raise RuntimeError(f"cannot import dinoclip.model (pip install -e python, or run from the repository): {e!r}") from e
    cls = model.ProjectorWithResiduals
    i, h, b, o = CONFIGS["default"]
    n = sum(p.numel() for p in cls(input_dim=i, hidden_dim=h, num_residual_blocks=b, output_dim=o).parameters())
    if n != DEFAULT_PARAMS:
        raise RuntimeError(f"dinoclip.model.ProjectorWithResiduals builds {n} parameters at the default shape, not {DEFAULT_PARAMS}")
    return cls, f"dinoclip.model.ProjectorWithResiduals ({model_file(model.__file__)})"


def model_file(path):
    """Where the model class was imported from, as the results record it: relative to this
    checkout when it is this checkout's python/src/dinoclip/model.py. Another (a virtual
    environment whose editable install is another checkout's, or an installed copy) is shown
    whole, with a warning: that side of the bench runs that file's model, which may differ."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(REPO))
    except ValueError:
        print(f"torch_ref: warning: dinoclip.model is imported from {p}, not from this checkout ({REPO}): "
              "the PyTorch side runs that file's model", file=sys.stderr)
        return str(p)


def parse_shape(s):
    if s in CONFIGS:
        return CONFIGS[s]
    parts = s.split("x")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        raise SystemExit(f"--shapes {s!r}: want default, small or IxHxBxO")
    return tuple(int(p) for p in parts)


def flops_per_sample(cfg):
    """6 flops per matrix weight per sample: nn.Config.FLOPsPerSample in Go."""
    i, h, b, o = cfg
    hd = h // 2
    return 6.0 * (i * h + b * 2 * h * h + h * hd + hd * o)


def linears(cfg):
    """(in, out, count) of every Linear, as bench.StepKernels lists them."""
    i, h, b, o = cfg
    hd = h // 2
    return [(i, h, 1), (h, h, 2 * b), (h, hd, 1), (hd, o, 1)]


def gemm_shapes(cfg, batch):
    """(name, M, N, K, calls per step) of one training step's GEMMs, as bench.StepKernels."""
    out = {}

    def add(name, m, n, k, calls):
        if calls:
            key = (name, m, n, k)
            out[key] = out.get(key, 0) + calls

    for li, (fi, fo, c) in enumerate(linears(cfg)):
        add("gemm_fwd_nt", batch, fo, fi, c)
    for li, (fi, fo, c) in enumerate(linears(cfg)):
        add("gemm_dgrad_nn", batch, fi, fo, 0 if li == 0 else c)
        add("gemm_wgrad_tn", fo, fi, batch, c)
    return [(k[0], k[1], k[2], k[3], v) for k, v in out.items()]


# ---------------------------------------------------------------------------------------
# Environment.


def git_commit():
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return None, None
        st = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True, timeout=10
        )
        dirty = bool(st.stdout.strip()) if st.returncode == 0 else None
        return rev.stdout.strip(), dirty
    except (OSError, subprocess.SubprocessError):
        return None, None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def environment(args, device):
    commit, dirty = git_commit()
    if args.commit:
        commit, dirty = args.commit.removesuffix("-dirty"), args.commit.endswith("-dirty")
    env = {
        "device": args.device,
        "device_name": f"{cpu_model()} x {torch.get_num_threads()} threads",
        "cpu_model": cpu_model(),
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "python_version": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": commit,
        "dirty": dirty,
        "loadavg_start": loadavg(),
    }
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env["device_name"] = torch.cuda.get_device_name(device)
        env["gpu"] = {
            "name": p.name,
            "memory_bytes": p.total_memory,
            "multiprocessors": p.multi_processor_count,
            "capability": f"{p.major}.{p.minor}",
        }
    return env


# ---------------------------------------------------------------------------------------
# Timing.


class Timer:
    """Times callables on one device: CUDA events there, perf_counter on the CPU."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def run(self, fn, warmup, steps, min_time):
        """Runs fn warmup times, then at least `steps` timed runs and enough for min_time
        seconds in all; returns the per-run seconds. On CUDA the timed runs are queued back
        to back with an event pair around each, and read after one synchronisation."""
        for _ in range(warmup):
            fn()
        self.sync()
        if not self.cuda:
            samples, total = [], 0.0
            while len(samples) < steps or (total < min_time and len(samples) < max(1000, 100 * steps)):
                t0 = time.perf_counter()
                fn()
                dt = time.perf_counter() - t0
                samples.append(dt)
                total += dt
            return samples
        # Estimate a run's time to size the loop, then time it without host syncs.
        t0 = time.perf_counter()
        fn()
        self.sync()
        est = max(time.perf_counter() - t0, 1e-6)
        n = max(steps, min(int(math.ceil(min_time / est)), max(1000, 100 * steps)))
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
        for start, end in events:
            start.record()
            fn()
            end.record()
        self.sync()
        return [s.elapsed_time(e) / 1e3 for s, e in events]


def stats(samples):
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "mean": statistics.fmean(samples),
        "samples": samples,
    }


@contextlib.contextmanager
def matmul_precision(mode):
    """float32 matmul precision for a mode: "highest" (true FP32) except tf32 ("high")."""
    old = torch.get_float32_matmul_precision()
    old_cudnn = torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("high" if mode in ("tf32", "compile_tf32") else "highest")
    torch.backends.cudnn.allow_tf32 = mode in ("tf32", "compile_tf32")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)
        torch.backends.cudnn.allow_tf32 = old_cudnn


def make_adamw(params, device):
    """torch.optim.AdamW with PyTorch's defaults; the fused implementation where this torch
    has it for the device (the fastest PyTorch offers), else foreach, else the default."""
    for kw, name in (({"fused": True}, "fused"), ({"foreach": True}, "foreach"), ({}, "default")):
        try:
            opt = torch.optim.AdamW(params, lr=RECIPE_MAX_LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, **kw)
            return opt, name
        except (RuntimeError, TypeError, ValueError):
            continue
    raise RuntimeError("no AdamW")


# ---------------------------------------------------------------------------------------
# Measurements.


def skip(mode, batch, device, args):
    """Why mode is not run here, or None."""
    if mode == "tf32" and device.type != "cuda":
        return "TF32 is a CUDA tensor-core mode; on the CPU it would be the fp32 row again"
    if mode.startswith("compile") and device.type == "cpu" and not args.cpu_compile:
        return "torch.compile is skipped on the CPU by default (compiling takes minutes on a few cores); pass --cpu-compile"
    if mode == "bf16" and device.type == "cpu" and not args.cpu_bf16:
        return "turned off with --no-cpu-bf16"
    if mode == "compile_max_autotune" and args.autotune_batches and batch not in args.autotune_batches:
        return (f"max-autotune compiles for minutes per shape: measured at batch "
                f"{','.join(map(str, args.autotune_batches))} only (--autotune-batches)")
    return None


def compile_mode(mode, args):
    """torch.compile's mode for a compile_* mode: max-autotune for compile_max_autotune, else
    --compile-mode (None: torch's default)."""
    return "max-autotune" if mode == "compile_max_autotune" else args.compile_mode


def measure_train(cls, cfg_name, cfg, batch, mode, device, args, timer):
    i, h, b, o = cfg
    row = {
        "config_name": cfg_name,
        "config": {"input_dim": i, "hidden_dim": h, "output_dim": o, "num_residual_blocks": b},
        "batch": batch,
        "mode": mode,
    }
    why = skip(mode, batch, device, args)
    if why:
        row.update(status="skipped", reason=why)
        return row
    torch.manual_seed(args.seed)
    model = cls(input_dim=i, hidden_dim=h, num_residual_blocks=b, output_dim=o).to(device)
    row["params"] = sum(p.numel() for p in model.parameters())
    opt, impl = make_adamw(model.parameters(), device)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=RECIPE_MAX_LR, epochs=RECIPE_EPOCHS, steps_per_epoch=RECIPE_STEPS_PER_EPOCH
    )
    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    xs = [torch.randn(batch, i, generator=gen).to(device) for _ in range(2)]
    ts = [torch.randn(batch, o, generator=gen).to(device) for _ in range(2)]
    bf16 = mode in BF16_MODES

    def fwd_loss(x, t):
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            p = model(x)
        return F.mse_loss(F.normalize(p.float(), dim=1), F.normalize(t, dim=1))

    if mode.startswith("compile"):
        # A fresh, static-shape compilation per batch: the fastest kernels torch.compile makes
        # for the shape, and no recompile limit reached across batches.
        torch._dynamo.reset()
        fwd_loss = torch.compile(fwd_loss, mode=compile_mode(mode, args), dynamic=False)
    k = [0]
    losses = []

    def step():
        x, t = xs[k[0] % 2], ts[k[0] % 2]
        k[0] += 1
        opt.zero_grad(set_to_none=True)
        loss = fwd_loss(x, t)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.detach())

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        with matmul_precision(mode):
            t0 = time.perf_counter()
            if mode.startswith("compile"):
                step()  # the compilation, timed on its own
                timer.sync()
                row["compile_seconds"] = time.perf_counter() - t0
            samples = timer.run(step, args.warmup, args.steps, args.min_time)
    except Exception as e:  # noqa: BLE001 - a mode that fails is recorded, not fatal
        row.update(status="failed", reason=f"{type(e).__name__}: {e}"[:2000])
        return row
    finally:
        timer.sync()
    med = statistics.median(samples)
    fl = flops_per_sample(cfg) * batch
    row.update(
        status="measured",
        adamw=impl,
        warmup_steps=args.warmup,
        timed_steps=len(samples),
        step_seconds=stats(samples),
        samples_per_second=batch / med,
        flops_per_step=fl,
        tflops=fl / med / 1e12,
        loss_first=float(losses[0]),
        loss_last=float(losses[-1]),
    )
    if not math.isfinite(row["loss_last"]):
        row.update(status="failed", reason=f"loss {row['loss_last']}")
    if device.type == "cuda":
        row["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device)
    if mode.startswith("compile"):
        row["compile_mode"] = compile_mode(mode, args) or "default"
    del model, opt, sched, xs, ts
    gc.collect()
    return row


def gemm_call(name, m, n, k, dtype, device):
    """A closure computing the GEMM as the model's Linear does, on random operands."""
    g = torch.Generator(device="cpu").manual_seed(m * 31 + n * 7 + k)

    def r(*shape):
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)

    if name == "gemm_fwd_nt":  # Y[M,N] = X[M,K] W[N,K]^T
        a, w = r(m, k), r(n, k)
        return lambda: torch.matmul(a, w.t())
    if name == "gemm_dgrad_nn":  # dX[M,N] = dY[M,K] W[K,N]
        a, w = r(m, k), r(k, n)
        return lambda: torch.matmul(a, w)
    if name == "gemm_wgrad_tn":  # dW[M,N] = dY[K,M]^T X[K,N]
        a, w = r(k, m), r(k, n)
        return lambda: torch.matmul(a.t(), w)
    if name == "gemm_square":
        a, w = r(m, k), r(k, n)
        return lambda: torch.matmul(a, w)
    raise ValueError(name)


def measure_gemms(cfg_name, cfg, batch, device, args, timer):
    precisions = args.gemm_precisions
    rows = []
    shapes = gemm_shapes(cfg, batch)
    big = args.gemm_square if args.gemm_square is not None else (8192 if device.type == "cuda" else 2048)
    if big > 0:
        shapes.append(("gemm_square", big, big, big, 0))
    for name, m, n, k, calls in shapes:
        for prec in precisions:
            dtype = torch.bfloat16 if prec == "bf16" else torch.float32
            with matmul_precision(prec):
                fn = gemm_call(name, m, n, k, dtype, device)
                samples = timer.run(fn, 3, 5, args.gemm_min_time)
            med = statistics.median(samples)
            rows.append(
                {
                    "name": name,
                    "shape": f"M={m} N={n} K={k}",
                    "m": m,
                    "n": n,
                    "k": k,
                    "calls_per_step": calls,
                    "config_name": cfg_name,
                    "batch": batch,
                    "precision": prec,
                    "seconds": stats(samples),
                    "tflops": 2.0 * m * n * k / med / 1e12,
                }
            )
            del fn
    return rows


def measure_copy(device, args, timer):
    nbytes = (1 << 30) if device.type == "cuda" else (256 << 20)
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    samples = timer.run(lambda: dst.copy_(src), 3, 10, 0.2)
    med = statistics.median(samples)
    out = {
        "status": "measured",
        "source": f"torch copy_ of a float32 tensor on {device.type}",
        "bytes": nbytes,
        "seconds": stats(samples),
        "bytes_per_second": 2.0 * nbytes / med,
    }
    del src, dst
    return out


def random_unit(n, dim, seed, device):
    g = torch.Generator(device="cpu").manual_seed(seed)
    return F.normalize(torch.randn(n, dim, generator=g), dim=1).to(device)


def measure_topk(device, args, timer):
    images = random_unit(args.topk_images, args.topk_dim, args.seed, device)
    captions = random_unit(args.topk_captions, args.topk_dim, args.seed + 1, device)
    rows = []
    for direction, q, keys in (("text->image", captions, images), ("image->text", images, captions)):

        def fn():
            return torch.topk(torch.mm(q, keys.t()), args.topk_k, dim=1)

        with matmul_precision("fp32"):
            warm = 2 if device.type == "cuda" else 0
            samples = timer.run(fn, warm, args.topk_steps, 0.0)
        med = statistics.median(samples)
        rows.append(
            {
                "direction": direction,
                "impl": f"torch.mm + torch.topk ({device.type}, fp32)",
                "queries": q.shape[0],
                "keys": keys.shape[0],
                "dim": args.topk_dim,
                "k": args.topk_k,
                "seconds": stats(samples),
                "queries_per_second": q.shape[0] / med,
                "tflops": 2.0 * q.shape[0] * keys.shape[0] * args.topk_dim / med / 1e12,
            }
        )
    return rows


def measure_faiss(args):
    try:
        import faiss  # type: ignore
        import numpy as np
    except ImportError as e:
        return {"status": "unmeasured", "reason": f"faiss is not installed ({e}); pip install -r bench/requirements.txt"}
    faiss.omp_set_num_threads(args.threads)
    images = random_unit(args.topk_images, args.topk_dim, args.seed, torch.device("cpu")).numpy()
    captions = random_unit(args.topk_captions, args.topk_dim, args.seed + 1, torch.device("cpu")).numpy()
    rows = []
    for direction, q, keys in (("text->image", captions, images), ("image->text", images, captions)):
        index = faiss.IndexFlatIP(args.topk_dim)
        index.add(np.ascontiguousarray(keys))
        qc = np.ascontiguousarray(q)
        samples = []
        for _ in range(args.topk_steps):
            t0 = time.perf_counter()
            index.search(qc, args.topk_k)
            samples.append(time.perf_counter() - t0)
        med = statistics.median(samples)
        rows.append(
            {
                "direction": direction,
                "impl": f"faiss {faiss.__version__} IndexFlatIP (exact inner product, {args.threads} threads)",
                "queries": q.shape[0],
                "keys": keys.shape[0],
                "dim": args.topk_dim,
                "k": args.topk_k,
                "seconds": stats(samples),
                "queries_per_second": q.shape[0] / med,
                "tflops": 2.0 * q.shape[0] * keys.shape[0] * args.topk_dim / med / 1e12,
            }
        )
    return {"status": "measured", "results": rows}


# ---------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (torch.set_num_threads, faiss); 0: the CPUs this process may use")
    p.add_argument("--shapes", default=None, help="comma-separated default, small or IxHxBxO (cpu: default,small; cuda: default)")
    p.add_argument(
        "--batches",
        default=None,
        help="comma-separated batch sizes for every shape, or SHAPE:B[/B...] entries separated by ';' "
        "(cpu: default:64/256;small:256; cuda: 1024,2048,4096,8192,16384)",
    )
    p.add_argument("--modes", default=None, help=f"comma-separated of {', '.join(ALL_MODES)} (default: all)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps (cpu 1, cuda 5)")
    p.add_argument("--steps", type=int, default=None, help="at least this many timed steps (cpu 3, cuda 20)")
    p.add_argument("--min-time", type=float, default=None, help="seconds of timed steps at least (cpu 3, cuda 1)")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode of compile_bf16 (default: torch's default)")
    p.add_argument("--autotune-batches", default=None,
                   help="batches at which compile_max_autotune runs (comma-separated; cuda default 8192, the target's "
                        "batch; 'all': every batch)")
    p.add_argument("--cpu-compile", action="store_true", help="also run torch.compile on the CPU")
    p.add_argument("--no-cpu-bf16", dest="cpu_bf16", action="store_false", help="skip bf16 autocast on the CPU")
    p.add_argument("--gemm", action=argparse.BooleanOptionalAction, default=True, help="time GEMMs alone")
    p.add_argument("--gemm-batch", type=int, default=0, help="batch of the GEMM shapes (default: the batch nearest 8192)")
    p.add_argument("--gemm-square", type=int, default=None,
                   help="size N of the N x N x N product timed as the practical peak (cuda 8192, cpu 2048; 0: none)")
    p.add_argument("--gemm-min-time", type=float, default=None, help="seconds per GEMM timing (cpu 0.3, cuda 0.05)")
    p.add_argument("--gemm-precisions", default=None,
                   help="comma-separated precisions of the GEMM timings (default: fp32,bf16, and tf32 on cuda)")
    p.add_argument("--copy", action=argparse.BooleanOptionalAction, default=True, help="time the copy bandwidth")
    p.add_argument("--topk", action=argparse.BooleanOptionalAction, default=True, help="time torch.mm + torch.topk")
    p.add_argument("--faiss", action=argparse.BooleanOptionalAction, default=None, help="time faiss (default: on the CPU)")
    p.add_argument("--topk-images", type=int, default=5000)
    p.add_argument("--topk-captions", type=int, default=25000)
    p.add_argument("--topk-dim", type=int, default=512)
    p.add_argument("--topk-k", type=int, default=10)
    p.add_argument("--topk-steps", type=int, default=None, help="timed runs per direction (cpu 1, cuda 10)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--commit", default=None, help="commit to record when git cannot tell (suffix -dirty for a dirty tree)")
    p.add_argument("--json", default=None, help="write the results to this file")
    args = p.parse_args(argv)
    cuda = args.device == "cuda"
    for name, cpu_v, cuda_v in (
        ("warmup", 1, 5),
        ("steps", 3, 20),
        ("min_time", 3.0, 1.0),
        ("gemm_min_time", 0.3, 0.05),
        ("topk_steps", 1, 10),
    ):
        if getattr(args, name) is None:
            setattr(args, name, cuda_v if cuda else cpu_v)
    if args.faiss is None:
        args.faiss = not cuda
    known = ("fp32", "bf16", "tf32") if cuda else ("fp32", "bf16")
    args.gemm_precisions = (args.gemm_precisions or ",".join(known)).split(",")
    if not all(x in known for x in args.gemm_precisions) or len(set(args.gemm_precisions)) != len(args.gemm_precisions):
        raise SystemExit(f"--gemm-precisions: want distinct values of {', '.join(known)} separated by commas")
    if args.autotune_batches in (None, ""):
        args.autotune_batches = "8192" if cuda else "all"
    try:
        args.autotune_batches = [] if args.autotune_batches == "all" else [int(b) for b in args.autotune_batches.split(",") if b]
    except ValueError:
        raise SystemExit(f"--autotune-batches: want batch sizes separated by commas or 'all', not {args.autotune_batches!r}")
    if args.threads <= 0:
        args.threads = usable_cpus()
    shapes = (args.shapes or ("default" if cuda else "default,small")).split(",")
    default_batches = "1024,2048,4096,8192,16384" if cuda else "default:64/256;small:256"
    try:
        args.plan = plan(shapes, args.batches or default_batches)
    except ValueError as e:
        raise SystemExit(f"--shapes/--batches: {e}")
    for name, least in (("warmup", 0), ("steps", 1), ("topk_steps", 1), ("topk_images", 1), ("topk_captions", 1),
                        ("topk_dim", 1), ("topk_k", 1), ("gemm_batch", 0)):
        if getattr(args, name) < least:
            raise SystemExit(f"--{name.replace('_', '-')} {getattr(args, name)}: at least {least}")
    if args.topk_k > min(args.topk_images, args.topk_captions):
        raise SystemExit(f"--topk-k {args.topk_k}: more than the top-k's images or captions")
    if not (args.min_time >= 0 and args.gemm_min_time >= 0):
        raise SystemExit("--min-time and --gemm-min-time: want seconds >= 0")
    # The results file is written at the end (its folder made then): one that cannot be is found
    # before the measuring.
    if args.json is not None:
        dest = Path(args.json)
        if dest.is_dir():
            raise SystemExit(f"--json {args.json} is a directory; want the results file to write")
        where = dest.resolve().parent
        while not where.exists() and where != where.parent:
            where = where.parent  # (the folders to be made: the nearest one there must take them)
        if not where.is_dir() or not os.access(where, os.W_OK):
            raise SystemExit(f"--json {args.json}: cannot write into {where}: not a writable folder")
    args.modes = [m for m in (args.modes.split(",") if args.modes else ALL_MODES) if m]
    for m in args.modes:
        if m not in ALL_MODES:
            raise SystemExit(f"--modes: unknown mode {m!r}; want {', '.join(ALL_MODES)}")
    return args


def plan(shapes, batches):
    """[(shape name, cfg, [batches])] from --shapes and --batches."""
    per_shape = {}
    common = None
    if ":" in batches:
        for entry in batches.split(";"):
            if entry.strip():
                name, bs = entry.split(":", 1)
                per_shape[name.strip()] = [int(b) for b in bs.replace("/", ",").split(",") if b]
    else:
        common = [int(b) for b in batches.split(",") if b]
    out = []
    for s in (s.strip() for s in shapes):
        if not s:
            continue
        bs = common if common is not None else per_shape.get(s, per_shape.get("default", [64]))
        if not bs or min(bs) < 1:
            raise ValueError(f"batch sizes of {s}: {bs}, want positive ones")
        out.append((s, parse_shape(s), bs))
    return out


def nearest(bs, target=8192):
    return min(bs, key=lambda b: (abs(math.log(b / target)), -b))


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("torch_ref.py: --device cuda but torch sees no CUDA device")
    torch.set_num_threads(args.threads)
    try:
        cls, model_source = model_class()
    except RuntimeError as e:
        raise SystemExit(f"torch_ref.py: {e}") from e
    timer = Timer(device)
    t_start = time.perf_counter()
    out = {
        "schema": SCHEMA,
        "env": environment(args, device),
        "args": sys.argv[1:] if argv is None else list(argv),
        "model_source": model_source,
        "fairness": (
            f"torch.set_num_threads({args.threads}) and faiss.omp_set_num_threads({args.threads}) on the CPU"
            if device.type == "cpu"
            else "CUDA events around each queued step after warm-up; the batch resident on the GPU"
        ),
        "train": [],
    }

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    for name, cfg, batches in args.plan:
        for batch in batches:
            for mode in args.modes:
                log(f"torch train: {name} batch {batch} {mode}")
                row = measure_train(cls, name, cfg, batch, mode, device, args, timer)
                if row["status"] == "measured":
                    log(f"  {1e3 * row['step_seconds']['median']:.4g} ms/step, {row['samples_per_second']:.4g} samples/s")
                else:
                    log(f"  {row['status']}: {row.get('reason', '')[:200]}")
                out["train"].append(row)
    if args.gemm:
        name, cfg, batches = args.plan[0]
        gb = args.gemm_batch or nearest(batches)
        log(f"torch gemm: {name} shapes at batch {gb}")
        out["gemm"] = measure_gemms(name, cfg, gb, device, args, timer)
    if args.copy:
        log("torch copy bandwidth")
        out["copy_bandwidth"] = measure_copy(device, args, timer)
    if args.topk:
        log(f"torch top-k: {args.topk_captions} x {args.topk_images} x {args.topk_dim}")
        out["topk"] = measure_topk(device, args, timer)
    if args.faiss:
        log("faiss top-k")
        out["faiss"] = measure_faiss(args)
    out["env"]["loadavg_end"] = loadavg()
    out["seconds"] = time.perf_counter() - t_start
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.json, json.dumps(out, indent=2) + "\n")
    for r in out["train"]:
        if r["status"] == "measured":
            print(
                f"{r['config_name']:>8} b{r['batch']:<6} {r['mode']:<13} {1e3 * r['step_seconds']['median']:10.4g} ms/step "
                f"{r['samples_per_second']:10.4g} samples/s {r['tflops']:8.4g} TFLOP/s"
            )
        else:
            print(f"{r['config_name']:>8} b{r['batch']:<6} {r['mode']:<13} {r['status']}: {r.get('reason', '')[:120]}")
    for r in out.get("topk", []) + out.get("faiss", {}).get("results", []):
        print(f"{r['direction']:>12} {r['impl']}: {1e3 * r['seconds']['median']:.4g} ms, {r['queries_per_second']:.4g} queries/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
