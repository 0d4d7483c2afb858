#!/usr/bin/env python3
"""Exact top-k search, dinoclip vs faiss-cpu IndexFlatIP vs torch.mm + torch.topk, in one run.

    python3 bench/search_compare.py --queries 1000 --keys 1000000 --dim 512 --k 10 --out DIR
    python3 bench/search_compare.py --device cuda --ours-bin bin/dinoclip-cuda --queries 25000 --keys 5000 --out DIR

Draws random unit queries and keys (seeded), rounds the keys to float16 (what `dinoclip index`
stores), writes them as a dinoclip search index (docs/FORMAT.md) and times, one after the other:

- ours: `dinoclip search --index [--device cuda]` (built here with `go build` unless --ours-bin),
  the time the search itself took (search.json "seconds": no file loading, the index
  memory-mapped; on the GPU this includes copying the keys from host memory to the GPU and the
  exact re-scoring on the host); on the GPU also without the copy of the keys (seconds -
  upload_seconds, when the keys were resident), which is what compares with torch's resident keys,
  and against a roofline measured in the same run: the keys read once at the GPU's copy bandwidth
  plus the GEMM at torch.mm's float16 rate (the search target: within 1.2x);
- --device cpu: faiss IndexFlatIP.search on the same keys as float32, omp threads = --threads; torch
  mm + topk in float32 over chunks of --torch-chunk keys, merged (when torch is installed);
- --device cuda: torch mm + topk in float16 on the GPU (the keys resident in GPU memory, in chunks
  of --torch-chunk keys so the score matrix fits, merged), after one warm-up run; no faiss.

Every side gets the same values (float16 keys). Each is run --rounds times and its fastest time is
kept. The CPU seconds (user + system, all threads) of each round are recorded beside the wall times:
on a shared machine they move much less with the load than the wall times do (ours: the whole
`dinoclip search` process, file loading included). Ratios are speed ratios ours / theirs from those times (above 1: dinoclip is faster). Ours is
also checked against a float64 brute force on --check queries (it must match exactly), and the
agreement of faiss's ids with ours is reported (faiss ranks by float32 scores, so near-ties may
differ). Writes DIR/search.json and DIR/search.md (a table row for bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchfiles import usable_cpus, write_text_atomic

REPO = Path(__file__).resolve().parent.parent


def log(msg):
    print(f"search_compare: {msg}", file=sys.stderr, flush=True)


def unit_rows(rng, n, dim, chunk=100_000):
    out = np.empty((n, dim), np.float32)
    for lo in range(0, n, chunk):
        x = rng.standard_normal((min(chunk, n - lo), dim))
        out[lo:lo + len(x)] = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return out


def write_index(path: Path, keys16: np.ndarray):
    path.mkdir(parents=True)
    np.save(path / "keys-00000.npy", keys16)
    np.save(path / "ids-00000.npy", np.arange(len(keys16), dtype=np.int64))
    dim = int(keys16.shape[1])
    # (No model made these keys; dinoclip takes an index's config only of a model that can be
    # built, whose output is the keys' width: the smallest such.)
    config = {"input_dim": 1, "hidden_dim": 2, "output_dim": dim, "num_residual_blocks": 0}
    manifest = {
        "format": "dinoclip-index/1", "dim": dim, "dtype": "float16", "rows": int(len(keys16)),
        "model": {"sha256": "0" * 64, "path": "random unit vectors (bench/search_compare.py)", "config": config},
        "shards": [{"keys": "keys-00000.npy", "ids": "ids-00000.npy", "rows": int(len(keys16)), "first_id": 0,
                    "source": {"path": "random", "size": 0, "rows": int(len(keys16))}}],
    }
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def build_ours(workdir: Path) -> str:
    """Builds cmd/dinoclip into workdir; a failed or impossible build ends the run with one line."""
    out = workdir / "dinoclip"
    try:
        r = subprocess.run(["go", "build", "-o", str(out), "./cmd/dinoclip"], cwd=REPO, capture_output=True, text=True)
    except OSError as e:  # (no go on the PATH)
        raise SystemExit(f"search_compare: cannot build dinoclip ({e}): build it elsewhere and pass --ours-bin")
    if r.returncode != 0:
        raise SystemExit(f"search_compare: go build failed: {(r.stderr or r.stdout).strip()[-2000:]}")
    return str(out)


def cpu_seconds(who=resource.RUSAGE_SELF):
    """User + system CPU seconds so far of this process (or of its waited-for children)."""
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def time_ours(bin_, index, qpath, k, out, memory, device):
    c0 = cpu_seconds(resource.RUSAGE_CHILDREN)
    r = subprocess.run([bin_, "search", "--index", str(index), "--queries", str(qpath), "--k", str(k),
                        "--out", str(out), "--memory", str(memory), "--device", device], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"dinoclip search failed: {r.stderr.strip()}")
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - c0
    info = json.loads((out / "search.json").read_text())
    if info.get("cpu_fallback"):
        # The device's search failed its check and ran on the CPU: its time is not the device's.
        raise RuntimeError(f"dinoclip's --device {device} search ran on the CPU: the GPU search failed its check: "
                           f"{info['cpu_fallback']}")
    return info, cpu, np.load(out / "ids.npy"), np.load(out / "scores.npy")


def gpu_roofline(torch, n=8192, copy_bytes=4 << 30, reps=5):
    """This GPU's practical float16 tensor-core rate (torch.mm of n x n x n, best of reps) and HBM
    read bandwidth (a copy of copy_bytes reads and writes them: half its time reads), measured now."""
    a = torch.randn(n, n, device="cuda", dtype=torch.float16)
    b = torch.randn(n, n, device="cuda", dtype=torch.float16)
    src = torch.empty(copy_bytes // 2, device="cuda", dtype=torch.float16)
    dst = torch.empty_like(src)

    def best(f):
        f()
        ts = []
        for _ in range(reps):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            f()
            torch.cuda.synchronize()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    mm = best(lambda: torch.mm(a, b))
    cp = best(lambda: dst.copy_(src))
    return {"tflops": 2 * n ** 3 / mm / 1e12, "read_gb_per_s": 2 * copy_bytes / cp / 1e9,
            "method": f"torch.mm float16 {n}^3 and a {copy_bytes >> 30} GiB device copy, best of {reps}"}


def unit_rows_f16_cuda(seed, n, dim, chunk=1_000_000):
    """Random unit rows drawn on the GPU (10M x 512 in seconds, not minutes), as float16 on the host."""
    import torch
    g = torch.Generator(device="cuda").manual_seed(seed)
    out = np.empty((n, dim), np.float16)
    for lo in range(0, n, chunk):
        x = torch.randn(min(chunk, n - lo), dim, device="cuda", generator=g, dtype=torch.float32)
        out[lo:lo + len(x)] = torch.nn.functional.normalize(x, dim=1).half().cpu().numpy()
    return out


def reference_ids(q, keys16, k, chunk=200_000):
    """The k best keys of each query by float64 scores, ties by the lower row (keys in chunks)."""
    best_s = np.full((len(q), 0), -np.inf)
    best_i = np.zeros((len(q), 0), np.int64)
    q64 = q.astype(np.float64)
    for lo in range(0, len(keys16), chunk):
        s = q64 @ keys16[lo:lo + chunk].astype(np.float64).T
        top = np.argsort(-s, axis=1, kind="stable")[:, :k]
        cs = np.concatenate([best_s, np.take_along_axis(s, top, 1)], 1)
        ci = np.concatenate([best_i, top + lo], 1)
        order = np.lexsort((ci, -cs), axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(cs, order, 1), np.take_along_axis(ci, order, 1)
    return best_i


def torch_topk_chunked(torch, tq, tk, k, chunk):
    best_s = best_i = None
    for lo in range(0, len(tk), chunk):
        part = tk[lo:lo + chunk]
        s, i = torch.topk(torch.mm(tq, part.t()), min(k, len(part)), dim=1)
        i = i + lo
        if best_s is None:
            best_s, best_i = s, i
        else:
            s2, j = torch.topk(torch.cat([best_s, s], 1), k, dim=1)
            best_i = torch.gather(torch.cat([best_i, i], 1), 1, j)
            best_s = s2
    return best_s, best_i


def gpu_lines(res):
    """The GPU rows beyond the end-to-end table: ours with the keys already in GPU memory (what
    compares with torch, whose keys are resident) and against the roofline of the search target."""
    o = res["ours"]
    resident = o.get("keys_resident") or []
    where = ("copied to GPU memory once" if resident and all(resident) else
             "streamed from host memory" if not any(resident) else "resident in some rounds only")
    L = [f"ours: keys {where}; copy to the GPU per round "
         + ", ".join(f"{1e3 * u:.0f}" for u in o.get("upload_seconds", [])) + " ms (part of ours ms)"]
    if o.get("unchecked"):
        L.insert(0, "**UNCHECKED**: ours is the GPU search that failed its check on this GPU and ran anyway "
                    f"(DINOCLIP_CUDA_CHECK=warn): {' '.join(str(o['unchecked']).split())}")
    m = res.get("ours_keys_in_gpu_memory")
    if m:
        line = f"ours with the keys in GPU memory: {1e3 * m['best']:.1f} ms"
        if "ours_in_memory_over_torch" in res:
            line += f", {res['ours_in_memory_over_torch']:.3g}× torch (target ≥ 2×)"
        L.append(line)
    else:
        L.append("ours with the keys in GPU memory: unmeasured (the keys were streamed: they did not fit)")
    r = res.get("roofline")
    if r and "unmeasured" in r:
        L.append(f"roofline: unmeasured ({r['unmeasured']})")
    elif r:
        line = (f"roofline (keys read once from HBM at {r['read_gb_per_s']:.0f} GB/s + the GEMM at "
                f"{r['tflops']:.0f} TFLOP/s, {r['method']}): {1e3 * r['seconds']:.1f} ms")
        if "ours_in_memory_over_roofline" in res:
            line += f"; ours in memory / roofline = {res['ours_in_memory_over_roofline']:.3g} (target ≤ 1.2)"
        L.append(line)
    return "".join(f"- {x}\n" for x in L)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="faiss/torch threads; 0: the CPUs this process may use")
    ap.add_argument("--memory", type=int, default=512, help="dinoclip search --memory MiB")
    ap.add_argument("--torch-chunk", type=int, default=100_000)
    ap.add_argument("--check", type=int, default=20, help="queries checked against a float64 brute force")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ours-bin")
    ap.add_argument("--no-faiss", action="store_true")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--out", required=True, type=Path)
    a = ap.parse_args(argv)
    # Absolute against the directory this is run in: the binary built into --out is built by a go run
    # in the checkout (build_ours), where a relative --out named another folder.
    a.out = a.out.absolute()
    for name, least in (("queries", 1), ("keys", 1), ("dim", 1), ("k", 1), ("rounds", 1), ("threads", 0),
                        ("memory", 16), ("torch_chunk", 1), ("check", 0)):
        if getattr(a, name) < least:
            ap.error(f"--{name.replace('_', '-')} {getattr(a, name)}: at least {least}")
    if a.k > a.keys:
        ap.error(f"--k {a.k}: more than the {a.keys} keys")
    threads = a.threads or usable_cpus()
    if a.out.exists() and not a.out.is_dir():
        ap.error(f"--out {a.out} is a file; want a folder for the results")
    try:
        a.out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        ap.error(f"--out {a.out}: {e.strerror or e}")
    # A directory of its own: --out may hold anything of the user's.
    work = Path(tempfile.mkdtemp(prefix=".search-compare-", dir=a.out))
    try:
        rng = np.random.default_rng(a.seed)
        log(f"drawing {a.queries} queries and {a.keys} keys of {a.dim}")
        q = unit_rows(rng, a.queries, a.dim)
        if a.device == "cuda":
            keys16 = unit_rows_f16_cuda(a.seed + 1, a.keys, a.dim)
        else:
            keys16 = unit_rows(rng, a.keys, a.dim).astype(np.float16)
        write_index(work / "index", keys16)
        np.save(work / "q.npy", q)
        res = {"schema": "dinoclip-search-compare/1", "device": a.device, "queries": a.queries, "keys": a.keys, "dim": a.dim, "k": a.k,
               "threads": threads, "cpus": usable_cpus(), "loadavg_start": os.getloadavg(),
               "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        try:
            res["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                           text=True).stdout.strip()
        except OSError:
            pass
        bin_ = a.ours_bin or build_ours(work)
        times, cpus, ids, infos = [], [], None, []
        for r in range(a.rounds):
            log(f"ours ({a.device}), round {r + 1}")
            info, cpu, ids, scores = time_ours(bin_, work / "index", work / "q.npy", a.k, work / "hits", a.memory, a.device)
            times.append(info["seconds"])
            cpus.append(cpu)
            infos.append(info)
        impl = ("dinoclip search --device cuda (float16 tensor cores, exact)"
                if a.device == "cuda" else "dinoclip search (CPU, float16 index, exact)")
        res["ours"] = {"impl": impl, "seconds": times, "best": min(times), "cpu_seconds": cpus}
        if a.device == "cuda":
            # On the GPU the keys are copied to its memory once when they fit (keys_resident); the
            # search without that copy is what compares with torch, whose keys are resident too.
            res["ours"]["keys_resident"] = [i.get("keys_resident") for i in infos]
            # Under DINOCLIP_CUDA_CHECK=warn a GPU search that failed its check runs anyway.
            unchecked = next((i["unchecked"] for i in infos if i.get("unchecked")), None)
            if unchecked:
                res["ours"]["unchecked"] = unchecked
            res["ours"]["upload_seconds"] = [i.get("upload_seconds", 0.0) for i in infos]
            if all(res["ours"]["keys_resident"]):
                inmem = [i["seconds"] - i.get("upload_seconds", 0.0) for i in infos]
                res["ours_keys_in_gpu_memory"] = {"impl": impl + ", keys already in GPU memory (seconds - upload_seconds)",
                                                  "seconds": inmem, "best": min(inmem)}
        # exactness against float64 on a few queries
        nc = min(a.check, a.queries)
        res["ours"]["exact_on_checked_queries"] = bool((ids[:nc] == reference_ids(q[:nc], keys16, a.k)).all())
        res["ours"]["checked_queries"] = nc
        if a.device == "cuda":
            import torch
            tq = torch.from_numpy(q).cuda().half()
            tk = torch.from_numpy(keys16).cuda()
            del keys16
            tt = []
            for r in range(a.rounds + 1):
                log(f"torch cuda, {'warm-up' if r == 0 else f'round {r}'}")
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                torch_topk_chunked(torch, tq, tk, a.k, a.torch_chunk)
                torch.cuda.synchronize()
                if r > 0:
                    tt.append(time.perf_counter() - t0)
            res["torch"] = {"impl": f"torch {torch.__version__} mm + topk, float16 on {torch.cuda.get_device_name()}, "
                                    f"keys resident, chunks of {a.torch_chunk} keys", "seconds": tt, "best": min(tt)}
            del tk
            torch.cuda.empty_cache()
            log("the GPU's float16 matmul rate and HBM read bandwidth")
            try:
                roof = gpu_roofline(torch)
            except (RuntimeError, MemoryError) as e:  # torch's out-of-memory is a RuntimeError
                res["roofline"] = {"unmeasured": f"{type(e).__name__}: {e}"}
            else:
                # The target's sum (read the keys once, then the GEMM at peak), not the larger of
                # the two: a kernel that overlaps them can beat it.
                roof["seconds"] = (a.keys * a.dim * 2 / (roof["read_gb_per_s"] * 1e9)
                                   + 2 * a.queries * a.keys * a.dim / (roof["tflops"] * 1e12))
                res["roofline"] = roof
                if "ours_keys_in_gpu_memory" in res:
                    res["ours_in_memory_over_roofline"] = res["ours_keys_in_gpu_memory"]["best"] / roof["seconds"]
        keys = None if a.device == "cuda" else keys16.astype(np.float32)
        if a.device == "cpu":
            del keys16
        if not a.no_faiss and a.device == "cpu":
            try:
                import faiss
                faiss.omp_set_num_threads(threads)
                index = faiss.IndexFlatIP(a.dim)
                index.add(keys)
                ft, fc = [], []
                for r in range(a.rounds):
                    log(f"faiss, round {r + 1}")
                    c0, t0 = cpu_seconds(), time.perf_counter()
                    _, fids = index.search(q, a.k)
                    ft.append(time.perf_counter() - t0)
                    fc.append(cpu_seconds() - c0)
                res["faiss"] = {"impl": f"faiss {faiss.__version__} IndexFlatIP ({threads} threads)", "seconds": ft,
                                "best": min(ft), "cpu_seconds": fc, "ids_equal_to_ours": float((fids == ids).mean())}
                del index
            except ImportError as e:
                res["faiss"] = {"unmeasured": f"faiss is not installed ({e}); pip install -r bench/requirements.txt"}
        if not a.no_torch and a.device == "cpu":
            try:
                import torch
                torch.set_num_threads(threads)
                tq, tk = torch.from_numpy(q), torch.from_numpy(keys)
                tt, tc = [], []
                for r in range(a.rounds):
                    log(f"torch, round {r + 1}")
                    c0, t0 = cpu_seconds(), time.perf_counter()
                    torch_topk_chunked(torch, tq, tk, a.k, a.torch_chunk)
                    tt.append(time.perf_counter() - t0)
                    tc.append(cpu_seconds() - c0)
                res["torch"] = {"impl": f"torch {torch.__version__} mm + topk, float32, chunks of {a.torch_chunk} keys ({threads} threads)",
                                "seconds": tt, "best": min(tt), "cpu_seconds": tc}
            except ImportError as e:
                res["torch"] = {"unmeasured": f"torch is not installed ({e})"}
        res["loadavg_end"] = os.getloadavg()
        for other in ("faiss", "torch"):
            if "best" in res.get(other, {}):
                res[f"ours_over_{other}"] = res[other]["best"] / res["ours"]["best"]
        if "best" in res.get("torch", {}) and "ours_keys_in_gpu_memory" in res:
            res["ours_in_memory_over_torch"] = res["torch"]["best"] / res["ours_keys_in_gpu_memory"]["best"]
        write_text_atomic(a.out / "search.json", json.dumps(res, indent=2) + "\n")

        def cell(side):
            return f"{1e3 * res[side]['best']:.0f}" if "best" in res.get(side, {}) else "—"

        def rat(side):
            v = res.get(f"ours_over_{side}")
            return f"{v:.3g}×" if v is not None else "—"

        md = (f"device {a.device}\n\n"
              "| queries × keys × dim, k | ours ms | faiss IndexFlatIP ms | torch mm+topk ms | ours/faiss | ours/torch |\n"
              "|---|---|---|---|---|---|\n"
              f"| {a.queries} × {a.keys} × {a.dim}, {a.k} | {cell('ours')} | {cell('faiss')} | {cell('torch')} | "
              f"{rat('faiss')} | {rat('torch')} |\n\n"
              "CPU seconds (user + system) of the fastest round: "
              + ", ".join(f"{side} {res[side]['cpu_seconds'][res[side]['seconds'].index(res[side]['best'])]:.1f}"
                          for side in ("ours", "faiss", "torch") if "cpu_seconds" in res.get(side, {}))
              + f"; load average {res['loadavg_start'][0]:.1f} → {res['loadavg_end'][0]:.1f}\n")
        if a.device == "cuda":
            md += "\n" + gpu_lines(res)
        write_text_atomic(a.out / "search.md", md)
        print(md)
        print(json.dumps({k: v for k, v in res.items() if k in ("ours", "faiss", "torch", "loadavg_start", "loadavg_end")}, indent=1))
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
