"""The Go CLI and the Python package read each other's files (docs/FORMAT.md).

Builds ./cmd/dinoclip once per session (skipped when Go is not installed) and runs its
documented commands: ``dinoclip info PATH``, ``dinoclip project --model CKPT --in X.npy --out
Y.npy``, ``dinoclip train`` and ``dinoclip eval``.
"""

import json
import os
import shutil
import struct

import numpy as np
import pytest
import torch

from conftest import EMBED_DIM, FEATURE_DIM, run_go
from dinoclip import checkpoint, convert, encoders, extract
from dinoclip.model import ProjectorWithResiduals
from dinoclip.npyio import save_npy

# `dinoclip project` and PyTorch both compute in float32 but sum in different orders (Go's GEMM
# blocking vs MKL/oneDNN), so they agree to float32 rounding, amplified a little by the
# LayerNorms (outputs are O(1)): 1e-5 relative and absolute leaves a wide margin over the ~1e-6
# differences seen, while any real disagreement (a wrong weight, GELU form, eps) is far larger.
PROJECT_TOL = dict(rtol=1e-5, atol=1e-5)


def random_projector(seed, cfg=(FEATURE_DIM, 64, 2, EMBED_DIM)):
    """A projector with every parameter random (not LayerNorm's 1/0 defaults), so that each
    tensor's placement matters."""
    torch.manual_seed(seed)
    i, h, b, o = cfg
    m = ProjectorWithResiduals(input_dim=i, hidden_dim=h, num_residual_blocks=b, output_dim=o)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.ndim == 1:
                p.copy_(torch.randn_like(p) * 0.3 + (1.0 if name.endswith("weight") else 0.0))
    return m.eval()


def forward(model, x):
    with torch.no_grad():
        return model(torch.as_tensor(np.asarray(x, dtype=np.float32))).numpy()


def test_info_training_data(go_binary, extracted):
    out = run_go(go_binary, "info", extracted["train"]).stdout
    assert "training data" in out
    assert "shards: 3" in out and "rows: 12" in out
    assert f"widths: {FEATURE_DIM} -> {EMBED_DIM}" in out
    assert "shard-00002: 2 rows, features float32, targets float32" in out


def test_info_float16_training_data(go_binary, extracted, tmp_path):
    for n in os.listdir(extracted["train"]):
        if n.endswith(".npy"):
            save_npy(str(tmp_path / n), np.load(extracted["train"] / n), np.float16)
    out = run_go(go_binary, "info", tmp_path).stdout
    assert "rows: 12" in out and "features float16, targets float16" in out


def test_info_eval_set(go_binary, extracted):
    out = run_go(go_binary, "info", extracted["eval"]).stdout
    assert 'evaluation set "mscoco-4"' in out
    assert "images: 4" in out and "captions: 21 (5 to 6 per image)" in out
    assert f"widths: features {FEATURE_DIM}, embeddings {EMBED_DIM}" in out
    assert "captions.image.npy: [21] int64" in out


def test_eval_json_limit_is_the_same_on_both_sides(go_binary, extracted, tmp_path):
    """An eval.json is read up to the same size by the extraction that checks it on a rerun and by
    the Go side that loads the set: at the limit (padded with spaces), a set; one byte over, no set
    for Go, and unreadable for the extraction."""
    limit = extract.MAX_RECORD_BYTES["eval.json"]
    ev = tmp_path / "ev"
    shutil.copytree(extracted["eval"], ev)
    text = (ev / "eval.json").read_bytes().rstrip()
    for size in (limit, limit + 1):
        (ev / "eval.json").write_bytes(text + b" " * (size - len(text)))
        r = run_go(go_binary, "info", ev, check=False)
        assert (r.returncode, f"over {limit} bytes" in r.stderr) == ((0, False) if size == limit else (1, True)), \
            (size, r.stdout, r.stderr)
    with pytest.raises(extract.ExtractError, match=f"eval.json is unreadable \\(over {limit} bytes\\)"):
        extract._check_recorded(str(ev), "eval.json", {}, (), "an evaluation set", "")


def test_info_python_checkpoints(go_binary, tmp_path):
    m = random_projector(1)
    p = checkpoint.save(m, tmp_path / "model.safetensors", metadata={"step": 7, "epoch": 2})
    out = run_go(go_binary, "info", p).stdout
    assert "format: dinoclip-model/1" in out
    assert f"parameters: {sum(x.numel() for x in m.parameters())} (F32, {len(m.state_dict())} tensors)" in out
    assert "trained: epoch 2, optimizer step 7" in out
    # the full-size model converted from the original's .pt
    torch.save(ProjectorWithResiduals().state_dict(), tmp_path / "orig.pt")
    convert.torch_to_dinoclip(str(tmp_path / "orig.pt"), str(tmp_path / "ckpt"))
    out = run_go(go_binary, "info", tmp_path / "ckpt").stdout
    assert "parameters: 54608384 (F32, 58 tensors)" in out
    assert "input_dim 768, hidden_dim 2048, output_dim 512, num_residual_blocks 6" in out


@pytest.mark.parametrize("in_dtype", ["float32", "float16", "float64"])
def test_project_matches_pytorch(go_binary, tmp_path, in_dtype):
    m = random_projector(2)
    path = checkpoint.save(m, tmp_path / "model.safetensors")
    x = np.random.default_rng(0).standard_normal((37, FEATURE_DIM)).astype(in_dtype) * 2
    np.save(tmp_path / "x.npy", x)
    run_go(go_binary, "project", "--model", path, "--in", tmp_path / "x.npy", "--out", tmp_path / "y.npy",
           "--batch", "10", "--device", "cpu")
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == np.float32 and y.shape == (37, EMBED_DIM)
    want = forward(m, x.astype(np.float32))  # what the Go side computes on: the input in float32
    np.testing.assert_allclose(y, want, **PROJECT_TOL)


def test_project_float16_output_and_checkpoint_dir(go_binary, tmp_path):
    m = random_projector(3)
    checkpoint.save(m, tmp_path / "ck" / "model.safetensors")
    x = np.random.default_rng(1).standard_normal((5, FEATURE_DIM)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    run_go(go_binary, "project", "--model", tmp_path / "ck", "--in", tmp_path / "x.npy",
           "--out", tmp_path / "y.npy", "--float16", "--device", "cpu")
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == np.float16
    np.testing.assert_allclose(y.astype(np.float32), forward(m, x), rtol=1e-3, atol=2e-3)


def test_project_rejects_wrong_width(go_binary, tmp_path):
    checkpoint.save(random_projector(4), tmp_path / "model.safetensors")
    np.save(tmp_path / "x.npy", np.zeros((3, FEATURE_DIM + 1), np.float32))
    r = run_go(go_binary, "project", "--model", tmp_path / "model.safetensors", "--in", tmp_path / "x.npy",
               "--out", tmp_path / "y.npy", "--device", "cpu", check=False)
    assert r.returncode != 0 and not (tmp_path / "y.npy").exists()


def test_run_json_limit_is_the_same_on_both_sides(go_binary, tmp_path):
    """A run keeping a moving average is resolved by its run.json, which both sides read only up to
    the same size: one byte over it, both refuse it for its size; at it, both read it (and refuse
    its zeros as JSON). The files are sparse: nothing of that size is written, and only the one at
    the limit is read."""
    run = tmp_path / "run"
    step = run / "checkpoints" / "step-00000001"
    checkpoint.save(random_projector(5), step / "model.safetensors")
    checkpoint.save(random_projector(6), step / "ema.safetensors")
    os.symlink("checkpoints/step-00000001", run / "best")
    np.save(tmp_path / "x.npy", np.zeros((2, FEATURE_DIM), np.float32))
    over = f"over {checkpoint.MAX_RUN_FILE_BYTES} bytes"
    for size in (checkpoint.MAX_RUN_FILE_BYTES + 1, checkpoint.MAX_RUN_FILE_BYTES):
        with open(run / "run.json", "wb") as f:
            f.write(b'{"options": {"best_from": "ema"}}')
            f.truncate(size)
        with pytest.raises(checkpoint.CheckpointError) as e:
            checkpoint.resolve(run)
        r = run_go(go_binary, "project", "--model", run, "--in", tmp_path / "x.npy", "--out", tmp_path / "y.npy",
                   "--device", "cpu", check=False)
        assert r.returncode == 1 and "is unknown; name the model file" in r.stderr, r.stderr
        assert (over in str(e.value), over in r.stderr) == (size > checkpoint.MAX_RUN_FILE_BYTES,) * 2, \
            (size, str(e.value), r.stderr)


@pytest.fixture(scope="module")
def go_run(go_binary, extracted, tmp_path_factory):
    """A training run by the Go side on the extracted data (12 rows, batch 4, 2 epochs)."""
    run = tmp_path_factory.mktemp("gorun") / "run"
    run_go(go_binary, "train", "--data", extracted["train"], "--eval", extracted["eval"], "--out", run,
           "--epochs", 2, "--batch", 4, "--hidden-dim", 16, "--blocks", 1, "--device", "cpu", timeout=300)
    return run


def test_go_checkpoint_loads_strictly(go_run, tmp_path):
    m = checkpoint.load(go_run)  # the run directory: its best checkpoint
    assert m.config == {"input_dim": FEATURE_DIM, "hidden_dim": 16, "output_dim": EMBED_DIM, "num_residual_blocks": 1}
    assert os.path.realpath(m.source_path) == os.path.realpath(go_run / "best" / "model.safetensors")
    meta = m.metadata
    assert meta["format"] == "dinoclip-model/1" and int(meta["step"]) > 0 and "epoch" in meta
    assert checkpoint.SHA256_KEY not in meta  # load verified it, and does not hand it back
    assert json.loads(meta["metrics"])[0]["name"] == "mscoco-4"
    # the original class loads it with plain safetensors + strict load_state_dict
    from safetensors.torch import load_file

    fresh = ProjectorWithResiduals(input_dim=FEATURE_DIM, hidden_dim=16, num_residual_blocks=1, output_dim=EMBED_DIM)
    fresh.load_state_dict(load_file(str(go_run / "last" / "model.safetensors")), strict=True)
    # Python writes the very same bytes for the same weights and metadata
    for link in ("best", "last"):
        src = go_run / link / "model.safetensors"
        again = checkpoint.save(checkpoint.load(src), tmp_path / f"{link}.safetensors",
                                metadata=checkpoint.read_metadata(src))
        assert open(again, "rb").read() == src.read_bytes(), link
    # and it converts to the original .pt
    convert.dinoclip_to_torch(str(go_run), str(tmp_path / "go.pt"))
    sd = torch.load(tmp_path / "go.pt", weights_only=True)
    assert all(torch.equal(sd[k], v) for k, v in m.state_dict().items())


def test_go_project_on_go_checkpoint_matches_pytorch(go_binary, go_run, extracted, tmp_path):
    feats = extracted["eval"] / "images.dino.npy"
    run_go(go_binary, "project", "--model", go_run, "--in", feats, "--out", tmp_path / "p.npy", "--device", "cpu")
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), forward(checkpoint.load(go_run), np.load(feats)),
                               **PROJECT_TOL)


def test_go_eval_on_python_files(go_binary, go_run, extracted, tmp_path):
    # a Python-written copy of the Go checkpoint evaluates the same
    p = checkpoint.save(checkpoint.load(go_run), tmp_path / "model.safetensors")
    docs = [json.loads(run_go(go_binary, "eval", "--model", m, "--eval", extracted["eval"], "--json",
                              "--device", "cpu").stdout) for m in (go_run, p)]
    assert docs[0]["reports"] == docs[1]["reports"]
    assert docs[0]["reports"][0]["name"] == "mscoco-4"
    assert docs[0]["reports"][0]["clip"]["captions"] == 21


def test_go_info_on_run(go_binary, go_run):
    out = run_go(go_binary, "info", go_run).stdout
    assert "training run" in out and "best -> checkpoints/step-" in out


def test_photo_search_names_images(go_binary, go_run, extracted, image_folder, tmp_path):
    """README's photo walkthrough: train-folder's shards (with their images.txt) -> dinoclip index
    -> dinoclip search, whose images.txt names, for every id found, the photo of that row."""
    index, hits = tmp_path / "photos.index", tmp_path / "hits"
    run_go(go_binary, "index", "--model", go_run, "--features", extracted["train"], "--out", index, "--device", "cpu")
    queries = extracted["train"] / "shard-00000.clip.npy"  # CLIP image embeddings stand in for texts
    run_go(go_binary, "search", "--index", index, "--queries", queries, "--k", "3", "--out", hits)
    ids = np.load(hits / "ids.npy")
    listed = sum(((extracted["train"] / f"shard-0000{k}.images.txt").read_text().splitlines() for k in range(3)), [])
    assert len(listed) == 12 and all(os.path.isfile(p) and p.startswith(str(image_folder)) for p in listed)
    names = (hits / "images.txt").read_text().splitlines()
    assert ids.shape == (5, 3) and names == [listed[i] for i in ids.ravel()]


def flip_data_byte(path):
    """Changes one bit in the middle of a safetensors file's data buffer."""
    b = bytearray(open(path, "rb").read())
    (n,) = struct.unpack("<Q", b[:8])
    b[8 + n + (len(b) - 8 - n) // 2] ^= 0x10
    open(path, "wb").write(bytes(b))


REMEDY = ("tensors do not match their recorded SHA-256: the file is corrupt or was edited; "
          "a tool that rewrote its tensors must drop the metadata key dinoclip.sha256")


def test_sha256_across_languages(go_binary, go_run, tmp_path):
    """The tensors' SHA-256 each side records, the other verifies: every file of a Go checkpoint
    records the value Python computes from the listing, Python refuses a Go model whose data no
    longer matches it or whose offsets were swapped, and the Go CLI refuses such a Python-written
    one, in one line naming the file and the remedy."""
    from test_checkpoint import listing_sha256, raw_metadata, swap_offsets

    last = go_run / "last"
    for name in ("model.safetensors", "optimizer.safetensors"):
        assert raw_metadata(last / name)[checkpoint.SHA256_KEY] == listing_sha256(last / name), name
    for edit in (flip_data_byte, swap_offsets):
        go_model = tmp_path / "go.safetensors"
        go_model.write_bytes((last / "model.safetensors").read_bytes())
        edit(go_model)
        with pytest.raises(checkpoint.CheckpointError) as e:
            checkpoint.load(go_model)
        assert str(e.value) == f"{go_model}: {REMEDY}", edit
    np.save(tmp_path / "x.npy", np.zeros((2, FEATURE_DIM), np.float32))
    for edit in (flip_data_byte, swap_offsets):
        py_model = checkpoint.save(random_projector(5), tmp_path / "py.safetensors")
        run_go(go_binary, "info", py_model)  # verified, and loads
        edit(py_model)
        for args in (("info", py_model),
                     ("project", "--model", py_model, "--in", tmp_path / "x.npy", "--out", tmp_path / "y.npy", "--device", "cpu")):
            r = run_go(go_binary, *args, check=False)
            assert r.returncode != 0 and "panic" not in r.stderr, r.stderr
            assert f"{py_model}: {REMEDY}" in r.stderr and r.stderr.count("\n") == 1, r.stderr
        assert not (tmp_path / "y.npy").exists()


def test_features_alone_are_indexed_and_searched(go_binary, tiny_models, image_folder, extracted, tmp_path,
                                                 monkeypatch, capfd):
    """train-folder --target none writes the DINOv2 features alone, loading no CLIP model: the
    features of a full extraction, each shard's list of images, no .clip.npy. dinoclip index and
    search take them, naming the photos; train refuses them (no targets); a rerun skips the
    shards done; info describes them."""
    out = tmp_path / "features"
    args = ["train-folder", str(image_folder), "--out", str(out), "--target", "none", "--shard-size", "5",
            "--dinov2", tiny_models["dinov2"], "--device", "cpu",
            "--workers", "0", "--batch-size", "4", "--quiet"]
    monkeypatch.setattr(extract.encoders, "load_clip", lambda *a, **k: pytest.fail("loaded a CLIP model"))
    assert extract.main(args) == 0
    names = sorted(os.listdir(out))
    assert not [n for n in names if n.endswith(".clip.npy")], names
    for k in range(3):
        np.testing.assert_array_equal(np.load(out / f"shard-{k:05d}.dino.npy"),
                                      np.load(extracted["train"] / f"shard-{k:05d}.dino.npy"))
        assert (out / f"shard-{k:05d}.images.txt").read_text() == \
            (extracted["train"] / f"shard-{k:05d}.images.txt").read_text()
    record = json.loads((out / "extract.json").read_text())
    assert record["target"] == "none" and record["clip"] is None
    capfd.readouterr()
    assert extract.main(args) == 0
    assert "(3 already done)" in capfd.readouterr().err
    model = checkpoint.save(random_projector(5), tmp_path / "model.safetensors")
    run_go(go_binary, "index", "--model", model, "--features", out, "--out", tmp_path / "ix")
    np.save(tmp_path / "q.npy", np.random.default_rng(0).standard_normal((2, EMBED_DIM)).astype(np.float32))
    run_go(go_binary, "search", "--index", tmp_path / "ix", "--queries", tmp_path / "q.npy", "--k", "3",
           "--out", tmp_path / "hits")
    found = (tmp_path / "hits" / "images.txt").read_text().splitlines()
    assert len(found) == 6 and all(os.path.isfile(p) and p.startswith(str(image_folder)) for p in found), found
    r = run_go(go_binary, "train", "--data", out, "--out", tmp_path / "run", check=False)
    assert r.returncode == 1 and "features without targets" in r.stderr and "--target none" in r.stderr, r.stderr
    info = run_go(go_binary, "info", out).stdout
    assert "features without targets" in info and "rows: 12" in info and f"rows of {FEATURE_DIM}" in info, info


def test_texts_record_reaches_search(go_binary, tiny_models, extracted, tmp_path):
    """The record `texts` writes beside its queries gives dinoclip search the texts, which
    results.txt shows above each answer, and the CLIP model, which search compares with the one
    the index's model records: a model trained towards another is warned of, its own is not."""
    src = tmp_path / "q.txt"
    src.write_text("a red dog\ntwo cats\n", encoding="utf-8")
    queries = tmp_path / "q.npy"
    assert extract.main(["texts", str(src), "--out", str(queries), "--clip", tiny_models["clip"], "--device", "cpu",
                         "--quiet"]) == 0
    features = extracted["train"] / "shard-00000.dino.npy"
    for clip, warned in ((encoders.model_id(tiny_models["clip"]), False), ("openai/clip-vit-base-patch32", True)):
        model = checkpoint.save(random_projector(5), tmp_path / "model.safetensors", {"clip": clip})
        shutil.rmtree(tmp_path / "ix", ignore_errors=True)
        run_go(go_binary, "index", "--model", model, "--features", features, "--out", tmp_path / "ix")
        r = run_go(go_binary, "search", "--index", tmp_path / "ix", "--queries", queries, "--k", "2",
                   "--out", tmp_path / "hits")
        assert ("vectors of two models do not compare" in r.stderr) == warned, r.stderr
        results = (tmp_path / "hits" / "results.txt").read_text(encoding="utf-8")
        assert results.startswith("query 1: a red dog\n") and "\nquery 2: two cats\n" in results, results
