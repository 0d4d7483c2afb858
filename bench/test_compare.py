"""Tests of bench/compare.py's joining and of torch_ref.py on a tiny shape (a few seconds).

    python3 -m pytest -q bench
"""

import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare  # noqa: E402
import torch_ref  # noqa: E402


def stats(v):
    return {"median": v, "min": v * 0.9, "max": v * 1.1, "mean": v, "samples": [v]}


def ours_report():
    cfg = {"input_dim": 768, "hidden_dim": 2048, "output_dim": 512, "num_residual_blocks": 6}
    train = [
        {"config_name": "default", "config": cfg, "params": 54608384, "batch": b, "step_seconds": stats(s),
         "samples_per_second": b / s, "tflops": 1.0, "fraction_of_peak": 0.5, "peak_memory": {"status": "unmeasured"}}
        for b, s in ((4096, 0.02), (16384, 0.08))
    ]
    return {
        "env": {"gomaxprocs": 2},
        "train": train,
        "kernels": {"status": "measured", "kernels": [
            # Two epilogue variants of one layout and shape (as the GPU engine's
            # gemm_nt_bias and gemm_nt_bias_stats): joined with PyTorch's
            # gemm_fwd_nt and summed, 137 TFLOP/s and 1 ms a call together.
            {"name": "gemm_nt_bias", "shape": "M=16384 N=2048 K=2048", "kind": "gemm", "calls": 12, "seconds": 12e-3,
             "flops": 1.37e11, "seconds_per_call": 1e-3, "tflops": 137.0},
            {"name": "gemm_nt_bias_stats", "shape": "M=16384 N=2048 K=2048", "kind": "gemm", "calls": 24, "seconds": 24e-3,
             "flops": 1.37e11, "seconds_per_call": 1e-3, "tflops": 137.0},
            {"name": "adamw", "shape": "[54608384]", "kind": "memory", "calls_per_step": 1, "seconds_per_call": 1e-3,
             "bytes_per_second": 1.5e12},
        ]},
        "copy_bandwidth": {"status": "measured", "bytes_per_second": 3e12},
        "topk": {"status": "measured", "results": [
            {"direction": "text->image", "impl": "ours", "queries": 25000, "keys": 5000, "dim": 512, "k": 10, "seconds": stats(2.0)}]},
        "unmeasured": ["peak device memory: no hook"],
    }


def torch_report():
    rows = []
    for b in (4096, 16384):
        for mode, s in (("fp32", 0.04), ("bf16", 0.01)):
            rows.append({"config_name": "default", "batch": b, "mode": mode, "status": "measured",
                         "step_seconds": stats(s * b / 4096), "samples_per_second": b / (s * b / 4096), "tflops": 1.0})
        rows.append({"config_name": "default", "batch": b, "mode": "tf32", "status": "skipped", "reason": "CPU"})
    return {
        "train": rows,
        "gemm": [{"name": "gemm_fwd_nt", "shape": "M=16384 N=2048 K=2048", "batch": 16384, "calls_per_step": 12,
                  "precision": p, "tflops": t, "seconds": stats(1e-3)} for p, t in (("fp32", 50.0), ("bf16", 685.0))],
        "copy_bandwidth": {"bytes_per_second": 2.5e12},
        "topk": [{"direction": "text->image", "impl": "torch", "queries": 25000, "keys": 5000, "dim": 512, "k": 10, "seconds": stats(0.5)}],
        "faiss": {"status": "measured", "results": [
            {"direction": "text->image", "impl": "faiss", "queries": 25000, "keys": 5000, "dim": 512, "k": 10, "seconds": stats(1.0)}]},
    }


def test_joins_and_ratios():
    ours, torch = ours_report(), torch_report()
    tr = compare.train_rows(ours, torch)
    assert [(r["config_name"], r["batch"]) for r in tr] == [("default", 4096), ("default", 16384)]
    r = tr[0]
    assert r["torch"]["fp32"]["ratio"] == pytest.approx(2.0)  # 0.04 s vs our 0.02 s
    assert r["torch"]["bf16"]["ratio"] == pytest.approx(0.5)
    assert r["torch"]["tf32"]["status"] == "skipped"

    rp = compare.recipe(tr)
    assert rp["scaled"] and rp["measured_batch"] == 16384  # 4096 and 16384 are equally far; the larger wins
    rp = compare.recipe(tr[:1])
    assert rp["ours_seconds"] == pytest.approx(128e6 / (4096 / 0.02))
    assert rp["ratio"]["fp32"] == pytest.approx(2.0)

    gm = compare.gemm_rows(ours, torch)
    assert len(gm) == 1 and gm[0]["ratio"]["bf16"] == pytest.approx(137 / 685)
    assert gm[0]["ours_tflops"] == pytest.approx(137) and gm[0]["ours_ms"] == pytest.approx(1.0)
    mm, oc, tc = compare.memory_rows(ours, torch)
    assert mm[0]["fraction_of_our_copy"] == pytest.approx(0.5) and mm[0]["fraction_of_torch_copy"] == pytest.approx(0.6)
    tk = compare.topk_rows(ours, torch)
    assert tk[0]["ratio_torch"] == pytest.approx(0.25) and tk[0]["ratio_faiss"] == pytest.approx(0.5)

    tg = compare.targets("cuda", tr, gm, mm, oc, tc)
    # No batch 8192: the step target is unmeasured; the GEMM (137/685 = 0.2 of bf16) and adamw
    # (0.5 of our copy) miss theirs.
    assert [t["status"] for t in tg] == ["unmeasured", "missed", "missed"]
    assert "batch 8192 of the default model was not run" in tg[0]["detail"]
    assert gm[0]["target"]["status"] == "missed" and gm[0]["ours_kernels"] == ["gemm_nt_bias", "gemm_nt_bias_stats"]
    ct = compare.targets("cpu", tr, gm, mm, oc, tc)
    # Training at 2.0x of fp32 at both batches and the GEMM at 137/50 of fp32 meet theirs; AdamW at
    # 0.5 of our copy misses 0.8 (by 0.5/0.8); no GELU or LayerNorm row was measured.
    assert [t["status"] for t in ct] == ["met", "met", "missed", "unmeasured"], ct
    assert "0.62 of the target" in ct[2]["detail"] and "default b4096 2" in ct[0]["detail"]

    un = compare.unmeasured("cpu", ours, None, torch, None, tg)
    assert "dinoclip: peak device memory: no hook" in un
    assert sum(u.startswith("PyTorch tf32") for u in un) == 1  # once for both batches
    assert any(u.startswith("GPU: ") for u in un)


def test_markdown_renders():
    ours, torch = ours_report(), torch_report()
    tr = compare.train_rows(ours, torch)
    gm = compare.gemm_rows(ours, torch)
    mm, oc, tc = compare.memory_rows(ours, torch)
    res = {
        "env": {"device": "cpu", "device_name": "test cpu", "date": "2026-01-01T00:00:00Z", "commit": "abc", "dirty": True,
                "command": "python3 bench/compare.py --device cpu --out x"},
        "errors": [], "train": tr, "recipe": compare.recipe(tr), "gemm": gm, "memory_bound": mm,
        "copy": {"ours": oc, "torch": tc}, "topk": compare.topk_rows(ours, torch),
        "targets": compare.targets("cpu", tr, gm, mm, oc, tc), "unmeasured": ["x"],
        "ours_seconds": 1, "torch_seconds": 2, "seconds": 3, "ours": ours, "torch": torch,
    }
    md = compare.markdown(res)
    for want in ("#### Training step", "ours/torch fp32", "#### Original recipe", "#### GEMMs alone", "#### Retrieval top-k",
                 "uncommitted changes", "#### Unmeasured in this run"):
        assert want in md
    assert "tf32 ms/step" not in md  # a mode never measured gets no columns

    # An engine's description that quotes a driver error stays one code span on one line.
    ours["env"]["engine"] = "CUDA engine on GPU; bf16 GEMMs on the mma.sync kernels: the wgmma ones failed (`x`\nfailed)"
    md = compare.markdown(res)
    assert "engine `CUDA engine on GPU; bf16 GEMMs on the mma.sync kernels: the wgmma ones failed ('x' failed)`," in md


def test_duration():
    assert compare.duration(3.21) == "3.21 s"
    assert compare.duration(125) == "2 min 5 s"
    assert compare.duration(90000) == "1 d 1 h"


def test_torch_ref_tiny(tmp_path):
    out = tmp_path / "t.json"
    torch_ref.main(["--shapes", "16x32x1x8", "--batches", "8", "--modes", "fp32,tf32", "--warmup", "0", "--steps", "2",
                    "--min-time", "0", "--gemm-min-time", "0", "--gemm-square", "64", "--topk-images", "20",
                    "--topk-captions", "40", "--topk-dim", "8", "--topk-steps", "1", "--no-faiss", "--threads", "1", "--json", str(out)])
    r = json.loads(out.read_text())
    assert r["schema"] == torch_ref.SCHEMA
    fp32 = next(t for t in r["train"] if t["mode"] == "fp32")
    assert fp32["status"] == "measured" and fp32["timed_steps"] == 2 and fp32["samples_per_second"] > 0
    assert fp32["flops_per_step"] == 8 * 6 * (16 * 32 + 2 * 32 * 32 + 32 * 16 + 16 * 8)
    assert math.isfinite(fp32["loss_last"])
    assert next(t for t in r["train"] if t["mode"] == "tf32")["status"] == "skipped"
    names = {(g["name"], g["shape"]) for g in r["gemm"]}
    assert ("gemm_fwd_nt", "M=8 N=32 K=16") in names and ("gemm_wgrad_tn", "M=32 N=16 K=8") in names
    assert ("gemm_dgrad_nn", "M=8 N=16 K=32") not in names  # no input gradient for the first layer
    assert [t["direction"] for t in r["topk"]] == ["text->image", "image->text"]
    assert r["copy_bandwidth"]["bytes_per_second"] > 0
    assert {g["precision"] for g in r["gemm"]} == {"fp32", "bf16"}


@pytest.mark.parametrize("flags,want", [
    (["--batches", "-4"], "want positive ones"),
    (["--batches", "0"], "want positive ones"),
    (["--batches", "x"], "--shapes/--batches"),
    (["--steps", "0"], "--steps 0: at least 1"),
    (["--topk-k", "50", "--topk-images", "20"], "--topk-k 50: more than"),
    (["--json", "A_FILE/folder/t.json"], "cannot write into A_FILE: not a writable folder"),
    (["--json", "A_FOLDER"], "is a directory"),
])
def test_torch_ref_refuses_flags(tmp_path, flags, want):
    """Absurd flags are refused before anything is measured, by name, not met by a traceback (or a
    loss of NaN from a batch of 0, or an unwritable --json after the measuring)."""
    (tmp_path / "file").write_text("x")
    fill = lambda x: x.replace("A_FILE", str(tmp_path / "file")).replace("A_FOLDER", str(tmp_path))
    with pytest.raises(SystemExit) as e:
        torch_ref.parse_args(["--shapes", "16x32x1x8"] + [fill(f) for f in flags])
    assert fill(want) in str(e.value)


def test_torch_ref_json_in_a_folder_to_make(tmp_path):
    """--json in folders that do not exist yet is taken: they are made when the results are
    written."""
    args = torch_ref.parse_args(["--shapes", "16x32x1x8", "--json", str(tmp_path / "new" / "deeper" / "t.json")])
    assert args.json.endswith("t.json")


def test_torch_ref_gemm_precisions(tmp_path):
    out = tmp_path / "t.json"
    torch_ref.main(TINY + ["--no-topk", "--no-copy", "--gemm-precisions", "fp32", "--json", str(out)])
    assert {g["precision"] for g in json.loads(out.read_text())["gemm"]} == {"fp32"}
    for bad in ("fp16", "fp32,fp32", "tf32"):  # tf32 is a CUDA mode
        with pytest.raises(SystemExit):
            torch_ref.parse_args(["--gemm-precisions", bad])


TINY = ["--shapes", "16x32x1x8", "--batches", "8", "--modes", "fp32", "--warmup", "0", "--steps", "1",
        "--min-time", "0", "--gemm-min-time", "0", "--gemm-square", "0", "--topk-images", "20", "--topk-captions", "40",
        "--topk-dim", "8", "--topk-steps", "1", "--no-faiss", "--threads", "1"]


def test_the_bench_times_the_package_model():
    import dinoclip.model

    cls, source = torch_ref.model_class()
    assert cls is dinoclip.model.ProjectorWithResiduals and "dinoclip.model.ProjectorWithResiduals" in source
    assert sum(p.numel() for p in cls(input_dim=768, hidden_dim=2048, num_residual_blocks=6, output_dim=512).parameters()) == torch_ref.DEFAULT_PARAMS


def test_the_model_file_is_recorded_relative_to_the_checkout(tmp_path, capsys):
    """The results name this checkout's model.py by its path in the repository, not this machine's;
    one from elsewhere (another checkout's editable install) whole, with a warning."""
    ours = torch_ref.REPO / "python" / "src" / "dinoclip" / "model.py"
    assert torch_ref.model_file(str(ours)) == os.path.join("python", "src", "dinoclip", "model.py")
    assert capsys.readouterr().err == ""
    other = tmp_path / "model.py"
    assert torch_ref.model_file(str(other)) == str(other.resolve())
    assert f"dinoclip.model is imported from {other.resolve()}, not from this checkout" in capsys.readouterr().err


class _Broken(torch.nn.Module):
    """A ProjectorWithResiduals that lost its residual blocks."""

    def __init__(self, input_dim=768, output_dim=512, hidden_dim=2048, num_residual_blocks=6):
        super().__init__()
        self.input_proj = torch.nn.Linear(input_dim, output_dim)

    def forward(self, x):
        return self.input_proj(x)


def test_a_broken_package_model_fails_the_bench(monkeypatch, tmp_path):
    import dinoclip.model

    monkeypatch.setattr(dinoclip.model, "ProjectorWithResiduals", _Broken)
    with pytest.raises(RuntimeError, match="builds 393728 parameters"):
        torch_ref.model_class()
    with pytest.raises(SystemExit, match="torch_ref.py: dinoclip.model.ProjectorWithResiduals builds"):
        torch_ref.main(TINY + ["--json", str(tmp_path / "t.json")])
    assert not (tmp_path / "t.json").exists()


def test_no_package_model_fails_the_bench(monkeypatch):
    monkeypatch.setitem(sys.modules, "dinoclip.model", None)  # import dinoclip.model raises ImportError
    with pytest.raises(RuntimeError, match="cannot import dinoclip.model"):
        torch_ref.model_class()


def test_best_rounds():
    def rep(ms):
        return {"train": [{"config_name": "default", "batch": 64, "mode": "fp32", "status": "measured", "step_seconds": stats(ms)},
                          {"config_name": "default", "batch": 64, "mode": "tf32", "status": "skipped"}]}
    first = rep(3.0)
    merged = compare.best_rounds(first, [first, rep(1.0), rep(2.0)], ("config_name", "batch", "mode"))
    fp32, tf32 = merged["train"]
    assert fp32["step_seconds"]["median"] == 1.0 and fp32["round_medians"] == [3.0, 1.0, 2.0]
    assert tf32["status"] == "skipped" and merged["rounds"] == 3
    assert first["train"][0]["step_seconds"]["median"] == 3.0  # the first round's report is not changed


def test_gemm_rows_use_our_median_not_the_mean():
    """PyTorch's GEMM times are medians, so ours are too: one slow outlier (a neighbour on the
    machine) raises the mean of 10 calls to 2 ms while the median stays 1 ms."""
    ours, torch = ours_report(), torch_report()
    ours["kernels"]["kernels"][:2] = [{"name": "gemm_fwd_nt", "shape": "M=16384 N=2048 K=2048", "kind": "gemm", "calls": 10,
                                       "seconds": 20e-3, "flops": 1.37e11, "seconds_per_call": 1e-3, "calls_per_step": 12}]
    gm = compare.gemm_rows(ours, torch)
    assert gm[0]["ours_ms"] == pytest.approx(1.0) and gm[0]["ratio"]["fp32"] == pytest.approx(137 / 50)


def test_gemm_rows_count_the_split_k_sum_in_the_gemm():
    """A split-K weight gradient is its tn GEMM and the sum of its slices: the sum's time (a
    memory kernel reported at the GEMM's shape) joins the tn row of that shape, so the row's
    time per GEMM call is 1 ms + 0.25 ms and its TFLOP/s counts both, not the GEMM alone."""
    ours, torch = ours_report(), torch_report()
    shape = "M=512 N=1024 K=8192"
    ours["kernels"]["kernels"] = [
        {"name": "gemm_bf16_tn_f32", "shape": shape, "kind": "gemm", "calls": 10, "seconds": 10e-3, "flops": 8.6e9,
         "seconds_per_call": 1e-3, "calls_per_step": 1},
        {"name": "gemm_bf16_splitk_sum", "shape": shape, "kind": "memory", "calls": 10, "seconds": 2.5e-3, "flops": 0,
         "bytes": 1e7, "seconds_per_call": 0.25e-3, "calls_per_step": 1}]
    torch["gemm"] = [{"name": "gemm_wgrad_tn", "shape": shape, "batch": 8192, "precision": "bf16", "calls_per_step": 1,
                      "tflops": 600.0, "seconds": {"median": 8.6e9 / 600e12}}]
    gm = compare.gemm_rows(ours, torch)
    assert gm[0]["ours_ms"] == pytest.approx(1.25)
    assert gm[0]["ours_tflops"] == pytest.approx(8.6e9 / 1.25e-3 / 1e12)
    assert gm[0]["ours_kernels"] == ["gemm_bf16_tn_f32", "gemm_bf16_splitk_sum"]


def test_best_kernel_rounds():
    def ours(gemm_ms, adamw_ms, copy):
        return {"train": [], "copy_bandwidth": {"status": "measured", "bytes_per_second": copy},
                "kernels": {"status": "measured", "copy_bytes_per_second": copy, "kernels": [
                    {"name": "gemm_fwd_nt", "shape": "M=256 N=2048 K=2048", "kind": "gemm", "calls": 5, "seconds": 5 * gemm_ms * 1e-3,
                     "flops": 2.0e9, "seconds_per_call": gemm_ms * 1e-3, "calls_per_step": 12},
                    {"name": "adamw", "shape": "[100]", "kind": "memory", "calls": 5, "seconds": 5 * adamw_ms * 1e-3, "bytes": 2.8e7,
                     "seconds_per_call": adamw_ms * 1e-3, "calls_per_step": 1}]}}
    first = ours(20.0, 2.0, 20e9)
    merged = compare.best_kernel_rounds(first, [first, ours(16.0, 3.0, 25e9), ours(18.0, 1.4, 22e9)], "ours")
    gemm, adamw = merged["kernels"]["kernels"]
    assert gemm["seconds_per_call"] == pytest.approx(16e-3) and gemm["tflops"] == pytest.approx(2.0e9 / 16e-3 / 1e12)
    assert gemm["round_seconds_per_call"] == pytest.approx([20e-3, 16e-3, 18e-3])
    # The best copy (25 GB/s, round 2) and the best AdamW (1.4 ms, round 3) are judged together.
    assert merged["copy_bandwidth"]["bytes_per_second"] == 25e9
    assert adamw["bytes_per_second"] == pytest.approx(2e10) and adamw["fraction_of_copy"] == pytest.approx(0.8)
    mm, oc, _ = compare.memory_rows(merged, None)
    assert oc == 25e9 and mm[0]["fraction_of_our_copy"] == pytest.approx(0.8)
    assert first["kernels"]["kernels"][0]["seconds_per_call"] == 20e-3  # the first round's report is not changed

    def torch_side(ms, bf16_ms, copy):
        g = [{"name": "gemm_fwd_nt", "shape": "M=256 N=2048 K=2048", "batch": 256, "calls_per_step": 12, "precision": "fp32",
              "tflops": 2.0e9 / ms / 1e9, "seconds": stats(ms * 1e-3)}]
        if bf16_ms:
            g.append(dict(g[0], precision="bf16", tflops=2.0e9 / bf16_ms / 1e9, seconds=stats(bf16_ms * 1e-3)))
        return {"train": [], "gemm": g, "copy_bandwidth": {"bytes_per_second": copy}}
    t1 = torch_side(17.0, 900.0, 19e9)
    tm = compare.best_kernel_rounds(t1, [t1, torch_side(15.0, None, 18e9), torch_side(19.0, None, 21e9)], "torch")
    fp32, bf16 = tm["gemm"]
    assert fp32["seconds"]["median"] == pytest.approx(15e-3) and fp32["round_medians"] == pytest.approx([17e-3, 15e-3, 19e-3])
    assert bf16["seconds"]["median"] == pytest.approx(0.9)  # measured in round 1 only
    assert tm["copy_bandwidth"]["bytes_per_second"] == 21e9
    gm = compare.gemm_rows(merged, tm)
    assert gm[0]["ratio"]["fp32"] == pytest.approx(15 / 16)


def test_search_compare_tiny(tmp_path, monkeypatch):
    """search_compare on a tiny shape: ours is exact against float64, and faiss (when installed)
    agrees with it. Its --out is relative, run from outside the checkout: the binary it builds
    there (go build, run in the checkout) was put under the checkout and not found."""
    import importlib.util

    import search_compare

    have_faiss = importlib.util.find_spec("faiss") is not None
    monkeypatch.chdir(tmp_path)
    out = Path("s")
    # What --out held is the user's: a work/ there is left as it was.
    (out / "work").mkdir(parents=True)
    (out / "work" / "mine.txt").write_text("mine")
    args = ["--queries", "7", "--keys", "300", "--dim", "16", "--k", "5", "--check", "7", "--no-torch", "--out", str(out)]
    assert search_compare.main(args + ([] if have_faiss else ["--no-faiss"])) == 0
    assert (out / "work" / "mine.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["search.json", "search.md", "work"]
    res = json.loads((out / "search.json").read_text())
    assert res["ours"]["exact_on_checked_queries"] is True and res["ours"]["checked_queries"] == 7
    if have_faiss:
        assert res["faiss"]["ids_equal_to_ours"] > 0.9
    assert "| 7 × 300 × 16, 5 |" in (out / "search.md").read_text()


def test_search_compare_refuses_a_cpu_fallback(tmp_path):
    """A --device cuda search that failed its check ran on the CPU: its time is refused, naming why."""
    import search_compare

    fake = tmp_path / "dinoclip"
    fake.write_text("#!/bin/sh\nfor a; do [ \"$prev\" = --out ] && out=$a; prev=$a; done\n"
                    "mkdir -p \"$out\" && echo '{\"seconds\": 1, \"cpu_fallback\": \"query 0, rank 8\"}' > \"$out/search.json\"\n")
    fake.chmod(0o755)
    with pytest.raises(RuntimeError, match="the GPU search failed its check: query 0, rank 8"):
        search_compare.time_ours(str(fake), tmp_path / "index", tmp_path / "q.npy", 5, tmp_path / "hits", 64, "cuda")


def test_search_gpu_lines():
    """The GPU search's rows: ours with the keys in GPU memory against torch and the roofline, each
    ratio beside its target; a streamed search says why the in-memory time is unmeasured."""
    import search_compare

    res = {"ours": {"keys_resident": [True], "upload_seconds": [0.2]},
           "ours_keys_in_gpu_memory": {"best": 0.05}, "ours_in_memory_over_torch": 2.5,
           "roofline": {"read_gb_per_s": 4000.0, "tflops": 700.0, "method": "m", "seconds": 0.04},
           "ours_in_memory_over_roofline": 1.25}
    md = search_compare.gpu_lines(res)
    assert "keys copied to GPU memory once; copy to the GPU per round 200 ms" in md
    assert "keys in GPU memory: 50.0 ms, 2.5× torch (target ≥ 2×)" in md
    assert "40.0 ms; ours in memory / roofline = 1.25 (target ≤ 1.2)" in md
    streamed = search_compare.gpu_lines({"ours": {"keys_resident": [False], "upload_seconds": [0.0]},
                                         "roofline": {"unmeasured": "RuntimeError: CUDA out of memory"}})
    assert "keys streamed from host memory" in streamed and "unmeasured (the keys were streamed" in streamed
    assert "roofline: unmeasured (RuntimeError: CUDA out of memory)" in streamed
    assert "UNCHECKED" not in md + streamed
    unchecked = search_compare.gpu_lines({"ours": {"keys_resident": [True], "upload_seconds": [0.1],
                                                   "unchecked": "keys resident, in chunks of 128:\nquery 0, rank 8"}})
    assert unchecked.startswith("- **UNCHECKED**: ours is the GPU search that failed its check on this GPU and ran anyway "
                                "(DINOCLIP_CUDA_CHECK=warn): keys resident, in chunks of 128: query 0, rank 8\n")


# The bf16 engine at batch 8192, as `dinoclip bench --precision bf16` reports it: its
# kernel timer names the bf16 GEMMs by kernel (gemm_bf16_<layout>_<epilogue>, wgmma or
# mma), and compare.py must join each to torch.matmul bf16 at the same layout and shape.
B = 8192
BF16_GEMMS = [  # name, shape, calls, seconds per call; torch.matmul bf16's TFLOP/s at the shape
    ("gemm_bf16_nt_f32", f"M={B} N=2048 K=2048", 12, 0.10e-3),
    ("gemm_bf16_nt_gelu_bf16", f"M={B} N=2048 K=2048", 6, 0.10e-3),
    ("gemm_bf16_nn_mma_f32", f"M={B} N=2048 K=2048", 12, 0.125e-3),
    ("gemm_bf16_tn_f32", f"M=2048 N=2048 K={B}", 12, 0.105e-3),
]
TORCH_BF16 = {"gemm_fwd_nt": (f"M={B} N=2048 K=2048", 700.0), "gemm_dgrad_nn": (f"M={B} N=2048 K=2048", 700.0),
              "gemm_wgrad_tn": (f"M=2048 N=2048 K={B}", 700.0), "gemm_fwd_nt ": (f"M={B} N=512 K=2048", 500.0)}


def bf16_reports(ours_ms=5.0, compile_ms=7.0):
    fl = 2.0 * B * 2048 * 2048
    kernels = [{"name": n, "shape": sh, "kind": "gemm", "calls": c, "seconds": c * spc, "flops": fl, "seconds_per_call": spc}
               for n, sh, c, spc in BF16_GEMMS]
    kernels += [
        {"name": "layernorm_fwd_bf16", "shape": f"rows={B} dim=2048", "kind": "memory", "calls_per_step": 13,
         "seconds_per_call": 1e-5, "bytes_per_second": 3.6e12},
        {"name": "adamw_bf16", "shape": "[54608384]", "kind": "memory", "calls_per_step": 1, "seconds_per_call": 1e-4,
         "bytes_per_second": 3.0e12},
        # 2 MB a call at 1 TB/s: a small, launch-bound kernel.
        {"name": "loss_sum", "shape": "n=8192", "kind": "memory", "calls_per_step": 1, "seconds_per_call": 2e-6,
         "bytes_per_second": 1.0e12},
    ]
    cfg = {"input_dim": 768, "hidden_dim": 2048, "output_dim": 512, "num_residual_blocks": 6}

    def train(ms):
        return [{"config_name": "default", "config": cfg, "params": 54608384, "batch": B, "step_seconds": stats(ms / 1e3),
                 "samples_per_second": B / (ms / 1e3), "tflops": 100.0, "peak_memory": {"status": "unmeasured"}}]

    ours = {"env": {}, "train": train(ours_ms), "kernels": {"status": "measured", "kernels": kernels},
            "copy_bandwidth": {"status": "measured", "bytes_per_second": 4.0e12}}
    fp32 = {"env": {}, "train": train(4 * ours_ms)}
    rows = [{"config_name": "default", "batch": B, "mode": m, "status": "measured", "step_seconds": stats(ms / 1e3),
             "samples_per_second": B / (ms / 1e3), "tflops": 1.0}
            for m, ms in (("fp32", 40.0), ("bf16", 10.0), ("compile_bf16", compile_ms), ("compile_max_autotune", 6.0))]
    gemm = [{"name": n.strip(), "shape": sh, "batch": B, "calls_per_step": 12, "precision": "bf16", "tflops": t, "seconds": stats(1e-4)}
            for n, (sh, t) in TORCH_BF16.items()]
    torch = {"train": rows, "gemm": gemm, "copy_bandwidth": {"bytes_per_second": 3.9e12}}
    return ours, fp32, torch


def derive_cuda(ours, fp32, torch):
    env = {"device": "cuda", "device_name": "fake H200", "date": "2026-12-02T00:00:00Z", "commit": "abc", "dirty": False,
           "command": "python3 bench/compare.py --device cuda --out x", "precisions": ["bf16", "fp32"]}
    res = compare.derive("cuda", env, [], ours, None, torch, None, {"fp32": fp32})
    res.update(rounds=1, ours_seconds=1, torch_seconds=1, seconds=2)
    return res


def test_bf16_engine_rows_and_targets():
    res = derive_cuda(*bf16_reports(ours_ms=5.0, compile_ms=7.0))
    row = res["train"][0]
    assert row["ours"]["ms_per_step"] == pytest.approx(5.0)
    assert row["ours_other"]["fp32"]["ratio_to_ours"] == pytest.approx(0.25)  # fp32 takes 4x as long
    assert row["torch"]["compile_max_autotune"]["ratio"] == pytest.approx(6 / 5)

    # Each bf16 GEMM joins the torch.matmul bf16 row of its layout and shape: the two forward
    # epilogues (18 calls of 0.1 ms) together, the data gradient, the weight gradient.
    by = {(g["name"], g["shape"]): g for g in res["gemm"]}
    fl = 2.0 * B * 2048 * 2048
    fwd = by[("gemm_fwd_nt", f"M={B} N=2048 K=2048")]
    assert fwd["ours_kernels"] == ["gemm_bf16_nt_f32", "gemm_bf16_nt_gelu_bf16"]
    assert fwd["ours_tflops"] == pytest.approx(fl / 0.1e-3 / 1e12)  # 687 TFLOP/s
    assert fwd["target"]["status"] == "met"  # 687 / 700 = 0.98
    nn = by[("gemm_dgrad_nn", f"M={B} N=2048 K=2048")]
    assert nn["ours_kernels"] == ["gemm_bf16_nn_mma_f32"]
    assert nn["ratio"]["bf16"] == pytest.approx(fl / 0.125e-3 / 1e12 / 700)  # 0.785
    assert nn["target"]["status"] == "missed" and "13% short" in nn["target"]["detail"]
    tn = by[("gemm_wgrad_tn", f"M=2048 N=2048 K={B}")]
    assert tn["ours_kernels"] == ["gemm_bf16_tn_f32"] and tn["target"]["status"] == "met"  # 654 / 700 = 0.93
    narrow = by[("gemm_fwd_nt", f"M={B} N=512 K=2048")]
    assert narrow["ours_tflops"] is None and narrow["target"]["status"] == "unmeasured"

    step, gemm, mem = res["targets"]
    assert step["status"] == "met" and step["value"] == pytest.approx(1.4) and "8% above" in step["detail"]
    assert gemm["status"] == "missed" and "2 of 3 met, 1 unmeasured" in gemm["detail"]
    assert "gemm_dgrad_nn" in gemm["detail"] and gemm["value"] == pytest.approx(nn["ratio"]["bf16"])
    # layernorm 3.6/4.0 = 0.9 meets 0.85; adamw 3.0/4.0 = 0.75 misses it.
    # loss_sum 1.0/4.0 misses too, and is the worst; it moves 2 MB a call, which the detail says.
    assert mem["status"] == "missed" and "worst loss_sum" in mem["detail"] and mem["value"] == pytest.approx(0.25)
    assert "1 of 3 met" in mem["detail"] and "1 of the misses move under 16 MB a call" in mem["detail"]
    assert "(loss_sum)" in mem["detail"]  # adamw_bf16 moves 300 MB a call: not a small kernel
    assert [r["target"]["status"] for r in res["memory_bound"]] == ["met", "missed", "missed"]
    assert res["memory_bound"][1]["mb_per_call"] == pytest.approx(300)

    md = compare.markdown(res)
    for want in ("ours bf16 ms/step", "ours fp32 ms/step", "ours bf16/fp32", "torch compile_max_autotune ms/step",
                 "gemm_bf16_nt_f32, gemm_bf16_nt_gelu_bf16", "target >= 0.9× bf16", "target >= 0.85×",
                 "training step at batch 8192 >= 1.3× torch.compile bf16: **met**",
                 "each GEMM >= 0.9× torch.matmul bf16 at the same shape and layout: **missed**"):
        assert want in md, want


def test_step_target_missed_by_how_much():
    res = derive_cuda(*bf16_reports(ours_ms=7.0, compile_ms=7.0))
    step = res["targets"][0]
    # 1.0x of 1.3x: 23% short, and a step 1.3x faster needed.
    assert step["status"] == "missed" and step["value"] == pytest.approx(1.0)
    assert "23% short: 1.3× faster needed" in step["detail"]


def test_step_target_unmeasured_says_why():
    ours, fp32, torch = bf16_reports()
    torch["train"] = [dict(r, status="failed", reason="InductorError: out of memory") if r["mode"] == "compile_bf16" else r
                      for r in torch["train"]]
    step = derive_cuda(ours, fp32, torch)["targets"][0]
    assert step["status"] == "unmeasured" and "failed: InductorError: out of memory" in step["detail"]
    ours["kernels"] = {"status": "unmeasured", "reason": "engine does not time its kernels"}
    res = derive_cuda(ours, fp32, torch)
    assert [t["status"] for t in res["targets"][1:]] == ["unmeasured", "unmeasured"]


def test_render_keeps_other_precisions(tmp_path):
    res = derive_cuda(*bf16_reports())
    old = tmp_path / "old.json"
    old.write_text(json.dumps(res))
    assert compare.main(["--device", "cuda", "--out", str(tmp_path / "new"), "--render", str(old)]) == 0
    new = json.loads((tmp_path / "new" / "results.json").read_text())
    assert new["train"][0]["ours_other"]["fp32"]["ratio_to_ours"] == pytest.approx(0.25)
    assert [t["status"] for t in new["targets"]] == [t["status"] for t in res["targets"]]


def test_torch_ref_max_autotune_only_at_the_target_batch():
    args = torch_ref.parse_args(["--device", "cuda"])
    assert args.autotune_batches == [8192] and "compile_max_autotune" in args.modes
    dev = torch.device("cuda")
    assert torch_ref.skip("compile_max_autotune", 8192, dev, args) is None
    assert "batch 8192 only" in torch_ref.skip("compile_max_autotune", 4096, dev, args)
    assert torch_ref.compile_mode("compile_max_autotune", args) == "max-autotune"
    assert torch_ref.compile_mode("compile_bf16", args) is None
    with pytest.raises(SystemExit, match="--autotune-batches"):
        torch_ref.parse_args(["--device", "cuda", "--autotune-batches", "lots"])


def test_a_silent_hang_is_killed(tmp_path):
    """A side that prints nothing and never ends (a child included) is killed at its timeout."""
    import time

    t0 = time.monotonic()
    rep, err, secs = compare.run_side("hang", ["bash", "-c", "sleep 60 & sleep 60"], tmp_path / "x.json", tmp_path / "x.txt", 1.0)
    assert rep is None and "killed after its 1 s" in err
    assert time.monotonic() - t0 < 10
    rep, err, _ = compare.run_side("quick", ["bash", "-c", "echo '{\"a\": 1}' > " + str(tmp_path / "y.json")],
                                   tmp_path / "y.json", tmp_path / "y.txt", 30.0)
    assert err is None and rep == {"a": 1}


def test_the_bf16_engines_real_kernel_report_joins_torch_ref(tmp_path):
    """The join on real output: bench/testdata/bf16-engine-emulator-bench.json is `dinoclip bench
    --device cuda --precision bf16 --shape 128x128x1x64 --batch 128 --warmup 1 --steps 1
    --min-time 0s --topk=false --data=false` run in the emulator (-tags cuda,cudaemu; commit
    cd88708 with cuda/engine.go's two unused imports removed, 2026-12-02): the engine's
    KernelTimer as compare.py gets it. That engine computes every GEMM with the NT kernel
    (gemm_bf16_nt_f32), its gradients on operands it transposed first. torch_ref.py times
    torch.matmul at the same shape here; every one of its GEMM rows must find our kernel (the
    emulator's times mean nothing; the join is what is tested)."""
    ours = json.loads((Path(__file__).parent / "testdata" / "bf16-engine-emulator-bench.json").read_text())
    out = tmp_path / "t.json"
    torch_ref.main(["--shapes", "128x128x1x64", "--batches", "128", "--modes", "fp32", "--warmup", "0", "--steps", "1",
                    "--min-time", "0", "--gemm-min-time", "0", "--gemm-square", "0", "--no-topk", "--no-copy", "--no-faiss",
                    "--threads", "1", "--json", str(out)])
    torch = json.loads(out.read_text())
    gm = compare.gemm_rows(ours, torch)
    # The five Linears (input 128->128, the block's two 128->128, head 128->64, output 64->64) give 9
    # distinct (role, shape) pairs: 3 forward, 3 data-gradient (none for the input Linear), 3
    # weight-gradient; each must be joined.
    assert len(gm) == 9
    for r in gm:
        assert r["ours_kernels"] == ["gemm_bf16_nt_f32"], r
        assert r["ours_tflops"] and r["torch_tflops"].get("bf16"), r
        assert r["ours_via"] == "nt"
    by_role = {r["name"] for r in gm}
    assert by_role == {"gemm_fwd_nt", "gemm_dgrad_nn", "gemm_wgrad_tn"}
    # The weight gradient of the output Linear, dW[64,128] = dY^T X over the batch of 128.
    assert any(r["name"] == "gemm_wgrad_tn" and r["shape"] == "M=64 N=128 K=128" for r in gm)
    md = compare.markdown(derive_cuda(ours, None, torch))
    assert "gemm_bf16_nt_f32 (as NT on transposed operands)" in md
    # Its memory-bound kernels (casts, transposes, LayerNorm, AdamW) are all rows of their own.
    names = {r["name"] for r in compare.memory_rows(ours, torch)[0]}
    assert {"cast_f32_bf16", "transpose_bf16", "adamw_bf16", "ln_forward"} <= names


def test_budget_writes_results_in_time(tmp_path):
    """With --budget, a side that runs long is cut at what is left, the sides after it are not
    started, and results.json is still written, within the budget."""
    import time

    slow = tmp_path / "slow-dinoclip"
    slow.write_text("#!/usr/bin/env bash\nsleep 60\n")
    slow.chmod(0o755)
    t0 = time.monotonic()
    code = compare.main(["--device", "cuda", "--quick", "--ours-bin", str(slow), "--budget", "8", "--timeout", "100",
                         "--out", str(tmp_path / "o")])
    assert time.monotonic() - t0 < 15
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert code == 1 and res["ours"] is None and res["torch"] is None
    errs = " | ".join(res["errors"])
    assert "dinoclip round 1 killed after its 2.9" in errs or "dinoclip round 1 killed after its 3 s" in errs  # 8 s less 5 kept back
    assert "torch round 1: not started: --budget of 8 s spent" in errs
    assert "dinoclip fp32: not started: --budget of 8 s spent" in errs


@pytest.mark.parametrize("flags,want", [
    (["--k", "0"], "--k 0: at least 1"),
    (["--keys", "5", "--k", "10"], "--k 10: more than the 5 keys"),
    (["--rounds", "0"], "--rounds 0: at least 1"),
    (["--torch-chunk", "0"], "--torch-chunk 0: at least 1"),
    (["--queries", "0"], "--queries 0: at least 1"),
])
def test_search_compare_refuses_flags(tmp_path, capsys, flags, want):
    """Absurd flags are refused by name before anything is made, not met by a traceback."""
    import search_compare

    with pytest.raises(SystemExit) as e:
        search_compare.main(["--out", str(tmp_path / "s")] + flags)
    assert e.value.code == 2 and want in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_compare_refuses_flags(tmp_path, capsys):
    """Absurd flags and unreadable --render files are refused by name, not met by a traceback."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    for flags, want in [
        (["--budget", "-5"], "--budget -5: want seconds >= 0"),
        (["--timeout", "0"], "--timeout 0: want a positive"),
        (["--threads", "-2"], "--threads -2: want a count of threads"),
        (["--modes", "fp32,foo"], "--modes fp32,foo: want some of fp32,"),
        (["--out", str(afile)], f"--out {afile} is a file"),
        (["--render", str(tmp_path / "missing.json")], "not a results.json of bench/compare.py (FileNotFoundError"),
        (["--render", str(bad)], "not a results.json of bench/compare.py (JSONDecodeError"),
        (["--render", str(afile.with_name("empty.json"))], "not a results.json"),
    ]:
        if flags[-1].endswith("empty.json"):
            afile.with_name("empty.json").write_text("{}")
        args = ["--device", "cpu", "--out", str(tmp_path / "o")] + flags
        with pytest.raises(SystemExit) as e:
            compare.main(args)
        assert e.value.code == 2 and want in capsys.readouterr().err, flags


def test_one_side_failing_fails_the_run(tmp_path):
    """A side that measured nothing fails the run (status 1), though the results are written; a
    run's new files never sit beside an earlier run's results.json."""
    failing = tmp_path / "failing-dinoclip"
    out = tmp_path / "o"
    # (It exits 4 where it still finds the earlier run's results.json, else 3.)
    failing.write_text(f"#!/usr/bin/env bash\n[ -e {out / 'results.json'} ] && exit 4\nexit 3\n")
    failing.chmod(0o755)
    out.mkdir()
    (out / "results.json").write_text('{"old": true}')
    code = compare.main(["--device", "cpu", "--ours-bin", str(failing), "--skip-torch", "--rounds", "1", "--out", str(out)])
    res = json.loads((out / "results.json").read_text())
    assert code == 1 and res["ours"] is None and "old" not in res
    assert any("exited with 3" in e for e in res["errors"]), res["errors"]


def test_search_compare_refuses_an_out_that_is_a_file(tmp_path, capsys):
    import search_compare

    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit) as e:
        search_compare.main(["--out", str(tmp_path / "file")])
    assert e.value.code == 2 and f"--out {tmp_path / 'file'} is a file" in capsys.readouterr().err


def test_relative_paths_are_the_callers(tmp_path, monkeypatch):
    """A relative --out and --ours-bin, and a path in --ours-args, run from a directory other than
    the checkout, are the caller's: both sides' reports land in --out there (they were written in
    the checkout, or nowhere, and the run failed with both sides having "measured nothing")."""
    here = tmp_path / "here"
    (here / "bin").mkdir(parents=True)
    report = tmp_path / "report.json"
    report.write_text(json.dumps(ours_report()))
    fake = here / "bin" / "dinoclip"
    # (writes the report to its --json, and touches its --mark: a path given in --ours-args)
    fake.write_text('#!/usr/bin/env bash\nwhile [ $# -gt 0 ]; do case $1 in --json) cp ' + str(report) +
                    ' "$2";; --mark) touch "$2";; esac; shift; done\n')
    fake.chmod(0o755)
    monkeypatch.chdir(here)
    code = compare.main(["--device", "cpu", "--ours-bin", "bin/dinoclip", "--out", "o", "--rounds", "1", "--threads", "1",
                         "--shapes", "16x32x1x8", "--batches", "8", "--modes", "fp32", "--ours-args", "--mark mark.txt",
                         "--torch-args", "--warmup 0 --steps 1 --min-time 0 --gemm-min-time 0 --gemm-square 0 --no-topk "
                                         "--no-copy --no-faiss"])
    res = json.loads((here / "o" / "results.json").read_text())
    assert code == 0 and res["ours"] is not None and res["torch"] is not None, res["errors"]
    assert (here / "o" / "ours.json").exists() and (here / "o" / "torch.json").exists()
    assert (here / "mark.txt").exists()
    assert not (compare.REPO / "o").exists() and not (compare.REPO / "mark.txt").exists()
