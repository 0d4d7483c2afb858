"""The CLIP_benchmark wrapper agrees with the extracted files and has the interface
zeroshot_retrieval.evaluate uses."""

import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import EMBED_DIM, FEATURE_DIM
from dinoclip import benchmark, checkpoint
from dinoclip.model import ProjectorWithResiduals

TOL = dict(rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def projector_path(tmp_path_factory):
    torch.manual_seed(4)
    m = ProjectorWithResiduals(input_dim=FEATURE_DIM, hidden_dim=24, num_residual_blocks=2, output_dim=EMBED_DIM)
    d = tmp_path_factory.mktemp("proj")
    checkpoint.save(m, d / "model.safetensors")
    torch.save(m.state_dict(), d / "orig.pt")
    return d


def coco_test(karpathy):
    data = json.load(open(karpathy["json"]))
    test = [im for im in data["images"] if im["split"] == "test"]
    images = [Image.open(os.path.join(karpathy["images"], im["filepath"], im["filename"])) for im in test]
    captions = [[s["raw"] for s in im["sentences"]] for im in test]
    return images, captions


def evaluate_like_clip_benchmark(model, batches, tokenizer, device="cpu"):
    """The calls CLIP_benchmark's zeroshot_retrieval.evaluate makes on model and tokenizer."""
    img_emb, txt_emb, txt_img = [], [], []
    start = 0
    for images, texts in batches:
        flat = [t for ts in texts for t in ts]
        tok = tokenizer(flat).to(device)
        with torch.no_grad():
            img_emb.append(F.normalize(model.encode_image(images.to(device)), dim=-1))
            txt_emb.append(F.normalize(model.encode_text(tok), dim=-1))
        txt_img += [start + i for i, ts in enumerate(texts) for _ in ts]
        start += len(images)
    return torch.cat(img_emb), torch.cat(txt_emb), txt_img


@pytest.mark.parametrize("which", ["safetensors", "pt"])
def test_wrapper_matches_extracted_files(extracted, karpathy, tiny_models, projector_path, which):
    proj = projector_path / ("model.safetensors" if which == "safetensors" else "orig.pt")
    model, transform, tokenizer = benchmark.load(str(proj), tiny_models["dinov2"], tiny_models["clip"])
    assert isinstance(model, torch.nn.Module) and not model.training
    images, captions = coco_test(karpathy)
    batches = [(torch.stack([transform(im) for im in images[:3]]), captions[:3]),
               (torch.stack([transform(im) for im in images[3:]]), captions[3:])]
    tok = tokenizer(["a red dog", "two cats"])
    assert tok.dtype == torch.int64 and tok.shape == (2, 77)
    img, txt, txt_img = evaluate_like_clip_benchmark(model, batches, tokenizer)
    ev = extracted["eval"]
    feats = torch.from_numpy(np.load(ev / "images.dino.npy"))
    with torch.no_grad():
        want_img = F.normalize(checkpoint.load(projector_path)(feats), dim=-1)
    want_txt = F.normalize(torch.from_numpy(np.load(ev / "captions.clip.npy")), dim=-1)
    torch.testing.assert_close(img, want_img, **TOL)
    torch.testing.assert_close(txt, want_txt, **TOL)
    assert txt_img == np.load(ev / "captions.image.npy").tolist()


def test_clip_baseline_matches_extracted_files(extracted, karpathy, tiny_models):
    model, transform, tokenizer = benchmark.load_clip_baseline(tiny_models["clip"])
    images, _ = coco_test(karpathy)
    with torch.no_grad():
        got = model.encode_image(torch.stack([transform(im) for im in images]))
    torch.testing.assert_close(got, torch.from_numpy(np.load(extracted["eval"] / "images.clip.npy")), **TOL)


def test_clip_benchmark_loader_signature(tiny_models, projector_path):
    model, transform, tokenizer = benchmark.load_for_clip_benchmark(
        model_name=f"{tiny_models['dinov2']},{tiny_models['clip']}", pretrained=str(projector_path),
        cache_dir=None, device="cpu")
    assert isinstance(model, benchmark.DinoCLIP)
    with pytest.raises(ValueError, match="want DINOV2,CLIP"):
        benchmark.load_for_clip_benchmark("ViT-B-32", str(projector_path), None, "cpu")


def test_width_mismatch(tiny_models):
    with pytest.raises(ValueError, match="maps 768 -> 512"):
        benchmark.load(ProjectorWithResiduals(), tiny_models["dinov2"], tiny_models["clip"])


def test_model_of_another_kind_is_refused(tiny_models, projector_path):
    """DINOv2 and CLIP swapped: refused, not built with random weights."""
    from dinoclip import encoders

    with pytest.raises(encoders.ModelUnavailable, match="its config is of a 'clip' model, not a 'dinov2' one"):
        benchmark.load(str(projector_path), tiny_models["clip"], tiny_models["clip"])
    with pytest.raises(encoders.ModelUnavailable, match="its config is of a 'dinov2' model, not a 'clip' one"):
        benchmark.load_clip_baseline(tiny_models["dinov2"])


def test_warns_of_other_encoders(tiny_models, tmp_path):
    """A model that records the DINOv2 and CLIP models of its training data (as dinoclip train
    writes them) run with others is warned of; with its own, or one that records none, it is not."""
    import warnings

    from dinoclip import encoders

    torch.manual_seed(4)
    m = ProjectorWithResiduals(input_dim=FEATURE_DIM, hidden_dim=24, num_residual_blocks=2, output_dim=EMBED_DIM)
    own = checkpoint.save(m, tmp_path / "own.safetensors", {"dinov2": encoders.model_id(tiny_models["dinov2"]),
                                                            "clip": encoders.model_id(tiny_models["clip"])})
    other = checkpoint.save(m, tmp_path / "other.safetensors", {"clip": "openai/clip-vit-base-patch32"})
    plain = checkpoint.save(m, tmp_path / "plain.safetensors")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for path in (own, plain):
            benchmark.load(path, tiny_models["dinov2"], tiny_models["clip"])
    with pytest.warns(UserWarning, match=r"trained on CLIP 'openai/clip-vit-base-patch32', but runs here with "
                                         r"CLIP '.*clip'"):
        benchmark.load(other, tiny_models["dinov2"], tiny_models["clip"])
