"""Shared fixtures: tiny randomly initialised DINOv2 and CLIP models (no downloads), generated
images and captions, and the Go CLI binary."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]

# tiny model widths: the DINOv2 hidden size is the feature width, CLIP's projection_dim the
# embedding width
FEATURE_DIM = 32
EMBED_DIM = 16

torch.set_num_threads(min(2, os.cpu_count() or 1))


def _tiny_tokenizer(context_length: int = 77):
    """A CLIP tokenizer built offline: one token per byte-level character (with and without the
    end-of-word suffix), no merges, and the two special tokens last so that <|endoftext|> has the
    highest id, as in OpenAI CLIP."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {}
    for ch in alphabet:
        vocab[ch] = len(vocab)
    for ch in alphabet:
        vocab[ch + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=context_length)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Local directories of a tiny Dinov2Model and a tiny CLIPModel (with its tokenizer), as
    save_pretrained writes them."""
    from transformers import CLIPConfig, CLIPModel, Dinov2Config, Dinov2Model

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    dcfg = Dinov2Config(
        hidden_size=FEATURE_DIM, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2,
        image_size=224, patch_size=14,
    )
    Dinov2Model(dcfg).eval().save_pretrained(root / "dinov2")

    tok = _tiny_tokenizer()
    bos, eos = tok.convert_tokens_to_ids(["<|startoftext|>", "<|endoftext|>"])
    ccfg = CLIPConfig(
        text_config=dict(
            vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
            num_attention_heads=2, max_position_embeddings=77, bos_token_id=bos, eos_token_id=eos,
            pad_token_id=eos,
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            image_size=224, patch_size=32,
        ),
        projection_dim=EMBED_DIM,
    )
    CLIPModel(ccfg).eval().save_pretrained(root / "clip")
    tok.save_pretrained(root / "clip")
    return {"dinov2": str(root / "dinov2"), "clip": str(root / "clip")}


CAPTION_WORDS = ["a", "red", "dog", "on", "the", "beach", "two", "cats", "sleeping", "blue",
                 "car", "near", "tree", "person", "riding", "bike", "city", "street", "at", "night"]


def make_image(rng: random.Random, size=None, mode="RGB"):
    from PIL import Image

    w, h = size or (rng.randint(24, 90), rng.randint(24, 90))
    a = np.random.default_rng(rng.randint(0, 2**31)).integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = Image.fromarray(a, "RGB")
    return img.convert(mode) if mode != "RGB" else img


def make_caption(rng: random.Random) -> str:
    return " ".join(rng.choice(CAPTION_WORDS) for _ in range(rng.randint(3, 9)))


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """12 images (jpg and png, RGB, grey, RGBA, palette; landscape and portrait) in two
    subfolders, each with a sidecar .txt caption."""
    root = tmp_path_factory.mktemp("folder")
    rng = random.Random(1)
    modes = ["RGB", "L", "RGBA", "P"]
    for i in range(12):
        sub = root / ("a" if i < 7 else "b")
        sub.mkdir(exist_ok=True)
        mode = modes[i % 4]
        img = make_image(rng, mode=mode)
        if mode in ("RGBA", "P"):
            img.save(sub / f"img{i:02d}.png")
        else:
            img.save(sub / f"img{i:02d}.jpg", quality=90)
        (sub / f"img{i:02d}.txt").write_text(make_caption(rng) + "\n")
    return root


@pytest.fixture(scope="session")
def karpathy(tmp_path_factory):
    """A tiny COCO-style Karpathy split: 4 test images (one with 6 captions), 2 train images;
    COCO layout ROOT/val2014/NAME.jpg."""
    root = tmp_path_factory.mktemp("coco")
    (root / "val2014").mkdir()
    rng = random.Random(2)
    images = []
    for i in range(6):
        name = f"COCO_val2014_{i:012d}.jpg"
        make_image(rng, size=(64 + 8 * i, 48)).save(root / "val2014" / name)
        ncap = 6 if i == 1 else 5
        images.append({
            "filepath": "val2014", "filename": name, "cocoid": i,
            "split": "test" if i < 4 else "train",
            "sentences": [{"raw": make_caption(rng) + ".", "tokens": [], "sentid": 10 * i + j} for j in range(ncap)],
        })
    path = root / "dataset_coco.json"
    path.write_text(json.dumps({"dataset": "coco", "images": images}))
    return {"json": str(path), "images": str(root), "n_images": 4, "n_captions": 21}


@pytest.fixture(scope="session")
def extracted(tmp_path_factory, tiny_models, image_folder, karpathy):
    """The extractor's outputs made once: a training directory (12 rows in shards of 5) and an
    evaluation set."""
    from dinoclip import extract

    out = tmp_path_factory.mktemp("extracted")
    train = out / "train"
    rc = extract.main(["train-folder", str(image_folder), "--out", str(train), "--shard-size", "5",
                       "--dinov2", tiny_models["dinov2"], "--clip", tiny_models["clip"],
                       "--device", "cpu", "--workers", "0", "--batch-size", "4", "--quiet"])
    assert rc == 0
    ev = out / "eval"
    rc = extract.main(["eval-coco", "--karpathy", karpathy["json"], "--images", karpathy["images"],
                       "--out", str(ev), "--dinov2", tiny_models["dinov2"], "--clip", tiny_models["clip"],
                       "--device", "cpu", "--workers", "0", "--batch-size", "3", "--quiet"])
    assert rc == 0
    return {"train": train, "eval": ev}


# ---------------------------------------------------------------------------
# the Go CLI


@pytest.fixture(scope="session")
def go_binary(tmp_path_factory):
    """The dinoclip CLI built from this checkout (skipped when Go is not installed)."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("Go interop tests need the go toolchain on PATH (to build ./cmd/dinoclip)")
    out = tmp_path_factory.mktemp("gobin") / "dinoclip"
    r = subprocess.run([go, "build", "-o", str(out), "./cmd/dinoclip"], cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        pytest.fail(f"go build ./cmd/dinoclip failed:\n{r.stderr}")
    return str(out)


def run_go(binary, *args, check=True, timeout=120):
    r = subprocess.run([binary, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "NO_COLOR": "1"})
    if check and r.returncode != 0:
        raise AssertionError(f"dinoclip {' '.join(map(str, args))} exited {r.returncode}:\n"
                             f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r
