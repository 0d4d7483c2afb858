"""DINOv2 and CLIP through Hugging Face transformers: loading and the embeddings dinoclip uses.

- :func:`dinov2_features`: the mean of DINOv2's ``last_hidden_state`` over all tokens, CLS
  included (257 tokens at 224 px), after the model's final LayerNorm (docs/MODEL.md).
- :func:`clip_image_embeddings` / :func:`clip_text_embeddings`: CLIP's projected image and text
  embeddings (``get_image_features`` / ``get_text_features``), not normalised.
- :class:`CLIPTextTokenizer`: strings -> ``[n, 77]`` token ids, padded and truncated to CLIP's
  context length, as CLIP_benchmark's tokenizers return them.

Models load by Hugging Face name or local directory (``save_pretrained`` layout); nothing is
loaded or downloaded at import time.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence, Union

import torch

__all__ = [
    "DEFAULT_DINOV2",
    "DEFAULT_CLIP",
    "ModelUnavailable",
    "load_dinov2",
    "load_clip",
    "load_tokenizer",
    "CLIPTextTokenizer",
    "dinov2_features",
    "clip_image_embeddings",
    "clip_text_embeddings",
    "feature_dim",
    "embedding_dim",
    "clip_image_size",
    "model_id",
]

DEFAULT_DINOV2 = "facebook/dinov2-base"
DEFAULT_CLIP = "openai/clip-vit-base-patch16"

Device = Union[str, torch.device]

# The files a CLIP tokenizer is built from: tokenizer.json, or vocab.json with merges.txt.
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt")


def model_id(name: str) -> str:
    """A model as dinoclip records it (extract.json, eval.json, a queries record; the Go side
    copies the names into models and indexes, and warns where two differ): a local directory by
    its real path (so that ``models/x``, ``models/x/``, ``~/models/x`` and the same folder from
    another working directory agree, ``~`` expanded as the loaders here do), a Hugging Face name
    as it is."""
    path = os.path.expanduser(name)
    return os.path.realpath(path) if os.path.isdir(path) else name


class ModelUnavailable(OSError):
    """A model (or tokenizer) that could not be loaded: not in the Hugging Face cache and not
    downloadable (no network, an unknown name), or a local folder that does not hold it. Its
    message is one line that says how to point dinoclip at a local copy."""


def _first_line(e: BaseException, limit: int = 160) -> str:
    line = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _names_a_folder(name_or_path: str) -> bool:
    """Whether ``name_or_path`` can only be a local folder, not a Hugging Face model's name
    (``owner/name``): absolute, ``~``- or ``.``-led, with more than one ``/`` or a backslash. A
    name of the form ``owner/name`` may be either, as transformers takes it."""
    return (os.path.isabs(name_or_path) or name_or_path.startswith(("~", ".")) or "\\" in name_or_path
            or name_or_path.count("/") > 1)


def _from_pretrained(load, name_or_path: str, what: str, flag: str):
    """``load(name_or_path)``, with the failure to find or fetch the files as ModelUnavailable.
    A folder that is not there is reported at once: transformers would take its path for a
    model's name and try the network first (minutes, where the network is slow or filtered)."""
    # ~ as a shell expands it (a quoted path, a config file's): transformers would not
    name_or_path = os.path.expanduser(name_or_path)
    if _names_a_folder(name_or_path) and not os.path.isdir(name_or_path):
        raise ModelUnavailable(
            f"could not load the {what} model {name_or_path!r} (no such folder); "
            f"pass the folder with {flag} DIR, or a Hugging Face model's name (owner/name)"
        )
    try:
        from huggingface_hub.errors import HFValidationError  # a path that is neither a folder nor a name
    except ImportError:  # older huggingface_hub
        HFValidationError = OSError
    try:
        return load(name_or_path)
    except ModelUnavailable:
        raise  # (load's own check of what it found: its message says what is wrong)
    except (OSError, HFValidationError) as e:  # transformers' "couldn't connect" / "not a valid model
        # identifier" / offline-mode misses and huggingface_hub's connection errors are OSErrors
        raise ModelUnavailable(
            f"could not load the {what} model {name_or_path!r} ({_first_line(e)}); without network access, "
            f"download it where there is (hf download {name_or_path} --local-dir DIR; huggingface-cli download with an older huggingface_hub) "
            f"and pass the folder with {flag} DIR (HF_HUB_OFFLINE=1 skips the retries of a download that cannot work)"
        ) from e
    except ValueError as e:  # files of another kind: a config of no model transformers knows, a
        # tokenizer that cannot be built from what the folder holds (a DINOv2 folder's)
        raise ModelUnavailable(
            f"could not load the {what} model {name_or_path!r} ({_first_line(e)}): not the files of one; "
            f"pass its folder with {flag} DIR"
        ) from e


def _load_model(cls, model_type: str, name_or_path: str, what: str, flag: str):
    """``cls.from_pretrained(name_or_path)``, refused (ModelUnavailable) unless the files are
    those of a ``model_type`` model with every weight ``cls`` has: transformers builds a model
    from another kind's files (a CLIP folder given as --dinov2) or from a part of its weights,
    the rest random, with no more than a warning."""

    def load(path):
        # (a folder without a config.json gives {}: from_pretrained says what is missing)
        found = cls.config_class.get_config_dict(path)[0].get("model_type")
        if found is not None and found != model_type:
            raise ModelUnavailable(f"could not load the {what} model {path!r}: its config is of a "
                                   f"{found!r} model, not a {model_type!r} one; pass the folder of "
                                   f"a {what} model with {flag} DIR")
        model, info = cls.from_pretrained(path, output_loading_info=True)
        missing = sorted(info.get("missing_keys") or ())
        if missing:
            raise ModelUnavailable(f"could not load the {what} model {path!r}: {len(missing)} of its weights are "
                                   f"missing (e.g. {missing[0]}) and would be random; pass the folder of a "
                                   f"whole {what} model with {flag} DIR")
        return model

    return _from_pretrained(load, name_or_path, what, flag)


def load_dinov2(name_or_path: str = DEFAULT_DINOV2, device: Device = "cpu"):
    """A ``transformers.Dinov2Model`` in eval mode, float32, on ``device``. Raises
    :class:`ModelUnavailable` when the model can be neither found nor fetched, or is not a
    DINOv2 model with all its weights."""
    from transformers import Dinov2Model

    model = _load_model(Dinov2Model, "dinov2", name_or_path, "DINOv2", "--dinov2")
    return model.float().to(device).eval()


def load_clip(name_or_path: str = DEFAULT_CLIP, device: Device = "cpu"):
    """A ``transformers.CLIPModel`` in eval mode, float32, on ``device``. Raises
    :class:`ModelUnavailable` when the model can be neither found nor fetched, or is not a
    CLIP model with all its weights."""
    from transformers import CLIPModel

    model = _load_model(CLIPModel, "clip", name_or_path, "CLIP", "--clip")
    return model.float().to(device).eval()


def load_tokenizer(name_or_path: str = DEFAULT_CLIP, clip=None) -> "CLIPTextTokenizer":
    """The CLIP tokenizer of ``name_or_path`` wrapped as :class:`CLIPTextTokenizer`. Raises
    :class:`ModelUnavailable` when it can be neither found nor fetched, or has fewer tokens than
    the CLIP text model (``clip``'s, else the one ``name_or_path`` configures) takes."""
    from transformers import AutoConfig, AutoTokenizer

    def load(path):
        tok = AutoTokenizer.from_pretrained(path)
        # Of a folder without the tokenizer's files (config.json and the weights alone)
        # transformers 5 builds a CLIPTokenizer of its two special tokens: every text would get
        # the same ids, and the same embedding.
        config = clip.config if clip is not None else AutoConfig.from_pretrained(path)
        vocab = getattr(getattr(config, "text_config", None), "vocab_size", None)
        if isinstance(vocab, int) and len(tok) < vocab:
            absent = [f for f in _TOKENIZER_FILES if not os.path.isfile(os.path.join(path, f))]
            where = f" (the folder has no {', '.join(absent)})" if os.path.isdir(path) and absent else ""
            raise ModelUnavailable(
                f"could not load the CLIP tokenizer of the model {path!r}: it has {len(tok)} tokens, the text "
                f"model takes {vocab}{where}; put the tokenizer's files (tokenizer.json, or vocab.json and "
                "merges.txt) beside the model's")
        return tok

    tok = _from_pretrained(load, name_or_path, "CLIP tokenizer of the", "--clip")
    return CLIPTextTokenizer(tok, clip=clip)


class CLIPTextTokenizer:
    """Callable: a list of strings -> LongTensor ``[n, context_length]`` of token ids.

    Every caption is padded (with the tokenizer's pad token, ``<|endoftext|>`` for OpenAI CLIP)
    and truncated to the context length (77), so its embedding does not depend on what else is
    in the batch. The text model pools at the first end-of-text token and attends causally, so
    the padding after it needs no attention mask.
    """

    def __init__(self, tokenizer, clip=None, context_length: Optional[int] = None):
        self.tokenizer = tokenizer
        if context_length is None:
            lengths = []
            if clip is not None:
                lengths.append(int(clip.config.text_config.max_position_embeddings))
            ml = getattr(tokenizer, "model_max_length", None)
            if isinstance(ml, int) and 0 < ml < 100_000:
                lengths.append(ml)
            context_length = min(lengths) if lengths else 77
        self.context_length = int(context_length)

    def __call__(self, texts: Union[str, Sequence[str]]) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        enc = self.tokenizer(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=self.context_length,
            return_tensors="pt",
        )
        return enc["input_ids"]


def _pooled(out) -> torch.Tensor:
    """The embedding from a ``get_*_features`` result: a tensor (transformers 4.x) or an output
    whose ``pooler_output`` holds the projected embedding (transformers 5.x)."""
    if isinstance(out, torch.Tensor):
        return out
    pooled = getattr(out, "pooler_output", None)
    if isinstance(pooled, torch.Tensor):
        return pooled
    if isinstance(out, (tuple, list)) and len(out) > 1 and isinstance(out[1], torch.Tensor):
        return out[1]
    raise TypeError(f"unexpected CLIP features output of type {type(out).__name__}")


def dinov2_features(dinov2, pixel_values: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] DINOv2-preprocessed images -> [B, hidden] features, float32: the mean of
    ``last_hidden_state`` over all tokens (CLS and patches)."""
    out = dinov2(pixel_values=pixel_values)
    return out.last_hidden_state.float().mean(dim=1)


def clip_image_embeddings(clip, pixel_values: torch.Tensor) -> torch.Tensor:
    """[B, 3, S, S] CLIP-preprocessed images -> [B, projection_dim] image embeddings, float32."""
    return _pooled(clip.get_image_features(pixel_values=pixel_values)).float()


def clip_text_embeddings(clip, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """[B, L] token ids -> [B, projection_dim] text embeddings, float32."""
    kw = {} if attention_mask is None else {"attention_mask": attention_mask}
    return _pooled(clip.get_text_features(input_ids=input_ids, **kw)).float()


def feature_dim(dinov2) -> int:
    """The width of :func:`dinov2_features` (the model's hidden size)."""
    return int(dinov2.config.hidden_size)


def embedding_dim(clip) -> int:
    """The width of CLIP's embeddings (``projection_dim``)."""
    return int(clip.config.projection_dim)


def clip_image_size(clip) -> int:
    """The image size CLIP's vision tower takes (its preprocessing crop)."""
    return int(clip.config.vision_config.image_size)

