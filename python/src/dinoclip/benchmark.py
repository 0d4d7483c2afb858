"""DINOv2 + projector as a CLIP-like model for LAION CLIP_benchmark.

:class:`DinoCLIP` has the two methods CLIP_benchmark's ``zeroshot_retrieval.evaluate`` calls:

- ``encode_image(images)``: DINOv2-preprocessed images [B, 3, 224, 224] -> DINOv2 -> mean of
  ``last_hidden_state`` over all tokens (CLS included) -> projector -> [B, 512];
- ``encode_text(tokens)``: CLIP token ids [B, 77] -> CLIP's text encoder (``get_text_features``)
  -> [B, 512];

and CLIP_benchmark L2-normalises both before computing the cosine scores. :class:`CLIPBaseline`
is OpenAI CLIP itself behind the same interface (its image tower, the same text tower), for the
"% of CLIP" denominator (docs/RETRIEVAL.md). :func:`load` returns ``(model, transform, tokenizer)``, the
triple CLIP_benchmark's model loaders return: the transform is DINOv2's preprocessing (shortest
edge 256 bicubic, centre crop 224, ImageNet mean/std; CLIP's own for the baseline) on a PIL
image, the tokenizer maps a list of strings to a LongTensor [n, 77].

Running CLIP_benchmark
----------------------

``pip install clip_benchmark`` (it brings open_clip, torchvision and pycocotools), then either
through its command line, with two model types this module registers::

    # DINOv2 + projector: --model DINOV2,CLIP (names or local dirs; "dinoclip" for the defaults
    # facebook/dinov2-base,openai/clip-vit-base-patch16), --pretrained the projector: a dinoclip
    # checkpoint (file, checkpoint dir or run dir) or the original .pt state_dict
    python -m dinoclip.benchmark eval --model_type dinoclip --model dinoclip \\
        --pretrained runs/base --dataset mscoco_captions flickr30k flickr8k \\
        --dataset_root "datasets/{dataset}" --task zeroshot_retrieval --recall_k 1 5 10 \\
        --output "dinoclip_{dataset}.json"

    # the CLIP baseline for "% of CLIP": --model the CLIP model, --pretrained unused
    python -m dinoclip.benchmark eval --model_type dinoclip_clip --model openai/clip-vit-base-patch16 \\
        --pretrained none --dataset mscoco_captions flickr30k flickr8k \\
        --dataset_root "datasets/{dataset}" --task zeroshot_retrieval --recall_k 1 5 10 \\
        --output "clip_{dataset}.json"

(``python -m dinoclip.benchmark`` is ``clip_benchmark``'s own CLI after :func:`register`; add
``--no_amp`` to evaluate in float32, as the .npy pipeline does.) Or from Python::

    import torch
    from torch.utils.data import DataLoader
    from clip_benchmark.datasets.builder import build_dataset, get_dataset_collate_fn
    from clip_benchmark.metrics import zeroshot_retrieval
    from dinoclip import benchmark

    model, transform, tokenizer = benchmark.load("runs/base", device="cuda")
    ds = build_dataset("mscoco_captions", root="datasets/mscoco_captions", transform=transform,
                       split="test", task="zeroshot_retrieval", download=True)
    dl = DataLoader(ds, batch_size=64, num_workers=8, collate_fn=get_dataset_collate_fn("mscoco_captions"))
    print(zeroshot_retrieval.evaluate(model, dl, tokenizer, device="cuda", amp=False, recall_k_list=[1, 5, 10]))

The metrics are ``image_retrieval_recall@k`` (text -> image) and ``text_retrieval_recall@k``
(image -> text). "% of CLIP" is R@5 of ``dinoclip`` divided by R@5 of ``dinoclip_clip``.
"""

from __future__ import annotations

import os
import sys
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn

from . import encoders
from .model import ProjectorWithResiduals
from .transforms import clip_transform, dinov2_transform

__all__ = ["DinoCLIP", "CLIPBaseline", "load_projector", "load", "load_clip_baseline",
           "load_for_clip_benchmark", "load_baseline_for_clip_benchmark", "register", "main"]

Device = Union[str, torch.device]


class DinoCLIP(nn.Module):
    """DINOv2 features projected into CLIP space for images; CLIP's text encoder for text."""

    def __init__(self, dinov2: nn.Module, clip: nn.Module, projector: ProjectorWithResiduals):
        super().__init__()
        self.dinov2 = dinov2
        self.clip = clip
        self.projector = projector

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, 224, 224] DINOv2-preprocessed images -> [B, output_dim] (not normalised)."""
        feats = encoders.dinov2_features(self.dinov2, images)
        return self.projector(feats)

    def encode_text(self, tokens: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[B, L] CLIP token ids -> [B, projection_dim] text embeddings (not normalised)."""
        return encoders.clip_text_embeddings(self.clip, tokens, attention_mask)

    def forward(self, images: Optional[torch.Tensor] = None, tokens: Optional[torch.Tensor] = None):
        img = self.encode_image(images) if images is not None else None
        txt = self.encode_text(tokens) if tokens is not None else None
        return img, txt


class CLIPBaseline(nn.Module):
    """CLIP itself behind the same interface, for the "% of CLIP" baseline."""

    def __init__(self, clip: nn.Module):
        super().__init__()
        self.clip = clip

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return encoders.clip_image_embeddings(self.clip, images)

    def encode_text(self, tokens: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return encoders.clip_text_embeddings(self.clip, tokens, attention_mask)


def load_projector(path: str, device: Device = "cpu") -> ProjectorWithResiduals:
    """A projector from a dinoclip checkpoint (file, checkpoint dir or run dir) or from the
    original project's ``.pt`` state_dict."""
    if os.path.isfile(path) and not path.endswith(".safetensors"):
        with open(path, "rb") as f:
            magic = f.read(8)
        # a torch.save file is a zip (PK) or, in the legacy format, a pickle (0x80)
        if magic[:2] == b"PK" or magic[:1] == b"\x80":
            from .convert import model_from_state_dict, read_torch_state_dict

            return model_from_state_dict(read_torch_state_dict(path), path).to(device).eval()
    from . import checkpoint

    return checkpoint.load(path, map_location=device)


def _warn_other_encoders(path: str, dinov2: Optional[str], clip: Optional[str]) -> None:
    """Warns (UserWarning) when the dinoclip model at ``path`` records, in its metadata, other
    DINOv2 or CLIP models (those of the data it was trained on) than the ones named to run it
    with: the projector's outputs then mean nothing. A name either side does not give (a model
    passed in, a .pt file, a model trained on data without a record) is not compared, and names
    are compared as extract.json records them (:func:`encoders.model_id`): one model under two
    names, such as a local copy of a Hugging Face model, is warned of too."""
    from . import checkpoint

    try:
        meta = checkpoint.read_metadata(path)
    except (OSError, ValueError):  # a .pt file: no metadata
        return
    diff = [(kind, meta[key], encoders.model_id(given)) for kind, key, given in
            zip(("DINOv2", "CLIP"), checkpoint.ENCODER_KEYS, (dinov2, clip))
            if given is not None and meta.get(key) and meta[key] != encoders.model_id(given)]
    if diff:
        import warnings

        warnings.warn(f"the projector {path} was trained on {' and '.join(f'{k} {r!r}' for k, r, _ in diff)}, "
                      f"but runs here with {' and '.join(f'{k} {g!r}' for k, _, g in diff)}: vectors of two "
                      "models do not compare, so the results mean nothing (unless these are one model under two "
                      "names, such as a local copy of a Hugging Face model)", stacklevel=3)


def load(
    projector: Union[str, ProjectorWithResiduals],
    dinov2: Union[str, nn.Module] = encoders.DEFAULT_DINOV2,
    clip: Union[str, nn.Module] = encoders.DEFAULT_CLIP,
    device: Device = "cpu",
    tokenizer=None,
) -> Tuple[DinoCLIP, object, encoders.CLIPTextTokenizer]:
    """``(model, transform, tokenizer)`` for CLIP_benchmark: the models may be passed in, or
    named (Hugging Face name or local directory; the projector: a checkpoint path or .pt)."""
    clip_name = clip if isinstance(clip, str) else None
    if isinstance(projector, str):
        path, projector = projector, load_projector(projector, device)
        _warn_other_encoders(path, dinov2 if isinstance(dinov2, str) else None, clip_name)
    if isinstance(dinov2, str):
        dinov2 = encoders.load_dinov2(dinov2, device)
    if isinstance(clip, str):
        clip = encoders.load_clip(clip, device)
    if tokenizer is None:
        if clip_name is None:
            raise ValueError("load: pass tokenizer= when clip is a model rather than a name or path")
        tokenizer = encoders.load_tokenizer(clip_name, clip=clip)
    elif not isinstance(tokenizer, encoders.CLIPTextTokenizer):
        tokenizer = encoders.CLIPTextTokenizer(tokenizer, clip=clip)
    fd, ed = encoders.feature_dim(dinov2), encoders.embedding_dim(clip)
    if projector.input_dim != fd or projector.output_dim != ed:
        raise ValueError(
            f"the projector maps {projector.input_dim} -> {projector.output_dim}, but DINOv2 gives "
            f"{fd}-wide features and CLIP {ed}-wide embeddings")
    model = DinoCLIP(dinov2, clip, projector.float()).to(device).eval()
    return model, dinov2_transform(), tokenizer


def load_clip_baseline(clip: Union[str, nn.Module] = encoders.DEFAULT_CLIP, device: Device = "cpu", tokenizer=None):
    """``(model, transform, tokenizer)`` of CLIP itself (the "% of CLIP" baseline)."""
    clip_name = clip if isinstance(clip, str) else None
    if isinstance(clip, str):
        clip = encoders.load_clip(clip, device)
    if tokenizer is None:
        if clip_name is None:
            raise ValueError("load_clip_baseline: pass tokenizer= when clip is a model")
        tokenizer = encoders.load_tokenizer(clip_name, clip=clip)
    elif not isinstance(tokenizer, encoders.CLIPTextTokenizer):
        tokenizer = encoders.CLIPTextTokenizer(tokenizer, clip=clip)
    model = CLIPBaseline(clip).to(device).eval()
    return model, clip_transform(encoders.clip_image_size(clip)), tokenizer


def _split_model_name(model_name: str) -> Tuple[str, str]:
    if not model_name or model_name in ("dinoclip", "default"):
        return encoders.DEFAULT_DINOV2, encoders.DEFAULT_CLIP
    if "," not in model_name:
        raise ValueError(
            f"--model {model_name!r}: want DINOV2,CLIP (names or local directories), or 'dinoclip' "
            f"for {encoders.DEFAULT_DINOV2},{encoders.DEFAULT_CLIP}")
    d, c = (s.strip() for s in model_name.split(",", 1))
    return d or encoders.DEFAULT_DINOV2, c or encoders.DEFAULT_CLIP


def load_for_clip_benchmark(model_name: str, pretrained: str, cache_dir: Optional[str] = None, device: Device = "cuda"):
    """CLIP_benchmark model loader (``clip_benchmark.models.TYPE2FUNC`` signature):
    ``model_name`` = ``DINOV2,CLIP`` or ``dinoclip``; ``pretrained`` = the projector."""
    d, c = _split_model_name(model_name)
    return load(pretrained, d, c, device=device)


def load_baseline_for_clip_benchmark(model_name: str, pretrained: str, cache_dir: Optional[str] = None,
                                     device: Device = "cuda"):
    """CLIP_benchmark model loader for CLIP itself: ``model_name`` = the CLIP model."""
    name = model_name if model_name and model_name not in ("dinoclip", "default") else encoders.DEFAULT_CLIP
    return load_clip_baseline(name, device=device)


def register() -> None:
    """Adds model types ``dinoclip`` and ``dinoclip_clip`` to CLIP_benchmark (before its CLI
    builds its parser: the ``--model_type`` choices are that same list)."""
    import clip_benchmark.models as cbm

    cbm.TYPE2FUNC["dinoclip"] = load_for_clip_benchmark
    cbm.TYPE2FUNC["dinoclip_clip"] = load_baseline_for_clip_benchmark
    for t in ("dinoclip", "dinoclip_clip"):
        if t not in cbm.MODEL_TYPES:
            cbm.MODEL_TYPES.append(t)


def main() -> int:
    try:
        register()
        from clip_benchmark.cli import main as cb_main
    except ImportError as e:
        print(f"dinoclip.benchmark: CLIP_benchmark is not installed (pip install clip_benchmark): {e}",
              file=sys.stderr)
        return 1
    return cb_main() or 0


if __name__ == "__main__":
    sys.exit(main())
