"""Feature extraction: images and captions -> the .npy files dinoclip trains and evaluates on.

Writes exactly the files of docs/FORMAT.md:

- training data: ``NAME.dino.npy`` [n, D_in] (DINOv2 features: the mean of ``last_hidden_state``
  over all tokens, CLS included) and ``NAME.clip.npy`` [n, D_out] (the CLIP image embedding of the
  same image, or with ``--target text`` the CLIP text embedding of its caption), raw, not
  normalised;
- evaluation sets: ``images.dino.npy``, ``images.clip.npy``, ``captions.clip.npy``,
  ``captions.image.npy`` (int64) and ``eval.json``.

Subcommands (``python -m dinoclip.extract SUBCOMMAND --help`` for each)::

    # a folder of images with captions -> shard-00000.{dino,clip}.npy, ... (--shard-size rows each)
    python -m dinoclip.extract train-folder photos/ --captions captions.jsonl --out features/photos

    # img2dataset webdataset shards (KEY.jpg + KEY.txt) -> one output shard per tar, named after it
    python -m dinoclip.extract train-wds cc12m/ --out features/cc12m

    # Karpathy-split COCO / Flickr test sets -> evaluation set directories
    python -m dinoclip.extract eval-coco --karpathy dataset_coco.json --images coco/ --out features/mscoco-5k
    python -m dinoclip.extract eval-flickr --karpathy dataset_flickr30k.json --images flickr30k-images/ \\
        --out features/flickr30k-1k

    # one sentence per line -> CLIP text embeddings [lines, D_out], the queries of `dinoclip search`
    python -m dinoclip.extract texts sentences.txt --out sentences.clip.npy

Every .npy file is written to a temporary name (``.NAME.tmp-*``) and renamed into place. A run can
be stopped and started again: an output shard whose two files exist (an evaluation set whose five
files exist) is skipped; one made with other settings (recorded in extract.json, eval.json), or
for train-wds from another tar of the same name, is refused. No output is written into a training
run, a checkpoint or a search index. Models load by Hugging Face name or local directory
(``--dinov2``, ``--clip``). Images that cannot be decoded are left out of training shards (and
reported); in an evaluation set they are an error.

What a run reads (folders, captions files, tars, Karpathy splits, query texts) is parsed and
checked in :mod:`dinoclip._inputs`, before any model loads.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import io
import json
import os
import re
import sys
import threading
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from . import _files, encoders, transforms
from ._files import open_regular, read_regular, usable_cpus
from ._progress import progress
from ._files import (_resolve, destination, exit_on_sigterm, make_dirs, missing_dirs, oserror_message, remove_empty,
                     same_file, sweep_stale_temporaries, write_atomic)
from ._inputs import (check_caption, expand_tars, index_tar, read_folder, read_karpathy, read_lines,
                      tar_name)
from ._messages import ExtractError, counted, error, log
from ._places import place_refusal
from .npyio import embedding_dtype, save_npy

__all__ = ["main", "build_parser", "Extractor", "read_folder", "index_tar", "read_karpathy"]

FEATURE_SUFFIX = ".dino.npy"
TARGET_SUFFIX = ".clip.npy"
# Beside each training shard: the image of each row, one per line (train-folder: its absolute
# path; train-wds: its sample key in the tar). ``dinoclip index`` copies it into the index, and
# ``dinoclip search`` names the images it finds with it.
IMAGES_SUFFIX = ".images.txt"
EVAL_FILES = ("images.dino.npy", "images.clip.npy", "captions.clip.npy", "captions.image.npy", "eval.json")
MANIFEST = "extract.json"
# The decoders a file is offered to: PIL picks one by the file's contents, whatever its name, and
# among the others are ones that run programs (EPS: Ghostscript) on scraped data. (JPEG covers
# the multi-picture JPEGs of cameras, MPO.)
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")


# The largest --batch-size taken.
MAX_BATCH = 1 << 20


# ---------------------------------------------------------------------------
# image sources


def _open_path(path: str):
    from PIL import Image

    with open_regular(path) as f:
        img = Image.open(f, formats=IMAGE_FORMATS)
        img.load()
    return img


class _TarOpener:
    """Opens images of one tar file by (offset, size), each DataLoader worker with its own file
    handle; a ``bytes`` reference (compressed tars) is decoded as it is."""

    def __init__(self, path: str):
        self.path = path
        self._fh = None
        self._pid = None

    def __getstate__(self):
        return {"path": self.path, "_fh": None, "_pid": None}

    def __call__(self, ref):
        from PIL import Image

        if isinstance(ref, (bytes, bytearray)):
            data = ref
        else:
            if self._fh is None or self._pid != os.getpid():
                self._fh = open(self.path, "rb")
                self._pid = os.getpid()
            off, size = ref
            self._fh.seek(off)
            data = self._fh.read(size)
            if len(data) != size:
                raise OSError(f"{self.path}: short read at offset {off}")
        img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
        img.load()
        return img


def clipped(img) -> bool:
    """Whether the preprocessing's convert("RGB") (:func:`transforms.to_rgb`) loses the values of
    the PIL image ``img``: 16-bit ("I;16", as a 16-bit greyscale PNG or TIFF opens), 32-bit integer ("I") and
    floating-point ("F") greyscale are clipped to 0..255, not scaled, so a 16-bit photograph turns
    nearly white, and a float one of values in 0..1 (or a little over) black. The reference preprocessing
    (transformers' image processors, whose convert_to_rgb makes the same call) does the same, so the
    rows stay those of the original pipeline; the user is told. (An image of such a mode whose
    values are 0..255 anyway loses nothing; 16-bit colour PNGs open as 8-bit "RGB", scaled.)"""
    if not (img.mode in ("I", "F") or img.mode.startswith("I;16")):
        return False
    a = np.asarray(img)  # (getextrema refuses I;16B, I;16L and I;16N)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    return lo < 0 or hi > 255 or (img.mode == "F" and 0 < hi < 2)  # (0..1, with a resampling's overshoot)


class _ImageDataset(torch.utils.data.Dataset):
    def __init__(self, refs, opener, dino_tf, clip_tf):
        self.refs, self.opener, self.dino_tf, self.clip_tf = refs, opener, dino_tf, clip_tf

    def __len__(self):
        return len(self.refs)

    def __getitem__(self, i):
        """(i, DINOv2 input, CLIP input or None, why it failed or None, whether its values were
        clipped: clipped, its pixels where they are more than PIL's MAX_IMAGE_PIXELS or else 0)."""
        from PIL import Image

        try:
            img = self.opener(self.refs[i])
            d = self.dino_tf(img)
            c = self.clip_tf(img) if self.clip_tf is not None else None
            pixels = img.width * img.height
            return i, d, c, None, clipped(img), pixels if pixels > (Image.MAX_IMAGE_PIXELS or pixels) else 0
        except Exception as e:  # a bad image is reported, not fatal
            # (PIL names the stream it read, <_io.BytesIO object at 0x...>: the image is named beside)
            why = _STREAM_NAME.sub("", f"{type(e).__name__}: {e}")
            return i, None, None, why, False, 0


def _quiet_bomb_warnings(_worker: int = 0) -> None:
    """Past MAX_IMAGE_PIXELS (about 89 million) PIL warns of a possible decompression bomb, raw,
    with its source line, and naming no image (past twice as many it refuses the image, which is
    then reported as one that did not decode): silenced in the process that decodes (this one,
    and each DataLoader worker, forked or spawned), the image named in a note instead
    (_warn_images). Set once a process: setting a filter clears the record of the warnings
    already shown, and one set around each image had PIL's other warnings printed for every
    image."""
    from PIL import Image

    if not any(f[0] == "ignore" and f[2] is Image.DecompressionBombWarning for f in warnings.filters):
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


# A Python stream as PIL names it in an error (" <_io.BufferedReader name=11>").
_STREAM_NAME = re.compile(r" ?<_io\.\w+ [^<>]*>")


def _collate(batch):
    ok = [b for b in batch if b[3] is None]
    failed = [(b[0], b[3]) for b in batch if b[3] is not None]
    idx = [b[0] for b in ok]
    dino = torch.stack([b[1] for b in ok]) if ok else None
    clip = torch.stack([b[2] for b in ok]) if ok and ok[0][2] is not None else None
    clipped = [b[0] for b in ok if b[4]]
    large = [(b[0], b[5]) for b in ok if b[5]]
    return idx, dino, clip, failed, clipped, large


# ---------------------------------------------------------------------------
# the models


@dataclass
class Encoded:
    """Rows computed for a list of images: ``kept`` are the indices (into the list) of the
    images that decoded, in order; ``failed`` the others with the reason; ``clipped`` those of
    ``kept`` whose values the preprocessing clipped to 8 bits (:func:`clipped`); ``large`` those
    of ``kept`` of more pixels than PIL's decompression-bomb limit, with their pixels."""

    dino: np.ndarray
    clip: Optional[np.ndarray]  # (None for target "none": features alone)
    kept: List[int]
    failed: List[Tuple[int, str]] = field(default_factory=list)
    clipped: List[int] = field(default_factory=list)
    large: List[Tuple[int, int]] = field(default_factory=list)


class Extractor:
    """DINOv2 + CLIP on one device, batched. Without ``dinov2`` only CLIP is loaded (texts);
    without ``clip`` only DINOv2 (features alone: target "none")."""

    def __init__(self, dinov2: Optional[str], clip: Optional[str], device: str, batch_size: int = 64, workers: int = 4,
                 precision: str = "fp32", quiet: bool = False):
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ExtractError(f"--device {device}: CUDA is not available on this machine")
        if self.device.type == "meta":  # (shapes without values: every embedding would be missing)
            raise ExtractError(f"--device {device}: holds no values; use cuda or cpu")
        # A device this build of torch has no backend for (mps, xla off their platforms) or that
        # does not exist (cuda:7 on one GPU) fails the first tensor put on it, each its own way
        # (RuntimeError, NotImplementedError, AssertionError, ImportError): before the models load.
        try:
            torch.zeros(1).to(self.device)
        except Exception as e:
            raise ExtractError(f"--device {device}: not usable here ({encoders._first_line(e)})") from None
        self.batch_size, self.workers, self.quiet = batch_size, workers, quiet
        self.precision = precision
        if precision == "tf32":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.dinov2_name, self.clip_name = dinov2, clip
        if quiet:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        self.dinov2 = encoders.load_dinov2(dinov2, self.device) if dinov2 else None
        self.clip = encoders.load_clip(clip, self.device) if clip else None
        self._tokenizer = None
        from .transforms import clip_transform, dinov2_transform

        self.dino_tf = dinov2_transform()
        self.clip_tf = clip_transform(encoders.clip_image_size(self.clip)) if self.clip is not None else None
        self.feature_dim = encoders.feature_dim(self.dinov2) if self.dinov2 is not None else None
        self.embedding_dim = encoders.embedding_dim(self.clip) if self.clip is not None else None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = encoders.load_tokenizer(self.clip_name, clip=self.clip)
        return self._tokenizer

    def _autocast(self):
        if self.precision in ("bf16", "fp16"):
            dt = torch.bfloat16 if self.precision == "bf16" else torch.float16
            return torch.autocast(device_type=self.device.type, dtype=dt)
        return contextlib.nullcontext()

    def _text(self, captions: Sequence[str]) -> torch.Tensor:
        for c in captions:  # (each source checks its own, naming where it is: this is the last word)
            check_caption(c, "caption", "mend it where it comes from")
        ids = self.tokenizer(list(captions)).to(self.device)
        return encoders.clip_text_embeddings(self.clip, ids)

    def images(self, refs: Sequence, opener: Callable, captions: Optional[Sequence[str]] = None,
               target: str = "image", desc: str = "images") -> Encoded:
        """DINOv2 features and the target (CLIP image embeddings, or with target "text" the
        CLIP text embeddings of ``captions``; with target "none" no target, ``clip`` None) of the
        images ``refs`` that decode."""
        if target == "text" and captions is None:
            raise ValueError("target text needs captions")
        ds = _ImageDataset(refs, opener, self.dino_tf, self.clip_tf if target == "image" else None)
        _quiet_bomb_warnings()
        dl = torch.utils.data.DataLoader(
            ds, batch_size=self.batch_size, shuffle=False, num_workers=self.workers,
            collate_fn=_collate, pin_memory=self.device.type == "cuda", worker_init_fn=_quiet_bomb_warnings,
        )
        dinos, clips, kept, failed, clipped, large = [], [], [], [], [], []
        with progress(total=len(refs), desc=desc, unit="img", disable=self.quiet) as bar:
            for idx, dino, clip, bad, wide, big in dl:
                failed.extend(bad)
                clipped.extend(wide)
                large.extend(big)
                if idx:
                    with torch.inference_mode(), self._autocast():
                        d = encoders.dinov2_features(self.dinov2, dino.to(self.device, non_blocking=True))
                        if target == "image":
                            c = encoders.clip_image_embeddings(self.clip, clip.to(self.device, non_blocking=True))
                        elif target == "text":
                            c = self._text([captions[i] for i in idx])
                    dinos.append(d.float().cpu().numpy())
                    if target != "none":
                        clips.append(c.float().cpu().numpy())
                    kept.extend(idx)
                bar.update(len(idx) + len(bad))
        dino_a = np.concatenate(dinos) if dinos else np.zeros((0, self.feature_dim), np.float32)
        clip_a = None if target == "none" else np.concatenate(clips) if clips else \
            np.zeros((0, self.embedding_dim), np.float32)
        return Encoded(dino_a, clip_a, kept, failed, clipped, large)

    def texts(self, texts: Sequence[str], desc: str = "captions") -> np.ndarray:
        """CLIP text embeddings [n, D_out] of ``texts``."""
        out = []
        bs = max(self.batch_size, 1)
        with progress(total=len(texts), desc=desc, unit="text", disable=self.quiet) as bar:
            for i in range(0, len(texts), bs):
                chunk = texts[i:i + bs]
                with torch.inference_mode(), self._autocast():
                    out.append(self._text(chunk).float().cpu().numpy())
                bar.update(len(chunk))
        return np.concatenate(out) if out else np.zeros((0, self.embedding_dim), np.float32)


# ---------------------------------------------------------------------------
# outputs


def _check_out(out: str, what: Optional[str] = None) -> None:
    """Refuses (as ``what``, default ``--out OUT``) an output directory that cannot be made or
    written: one under a regular file, or whose nearest existing directory is not writable.
    Cheap, and it creates nothing: checked before models run, so as not to fail after them; a
    write that fails anyway (no space) is an error naming its file, from main."""
    p = os.path.abspath(out)
    while not os.path.lexists(p) and os.path.dirname(p) != p:
        p = os.path.dirname(p)
    what = what or f"--out {out}"
    if not os.path.isdir(p):
        raise ExtractError(f"{what}: cannot be created, {p} is not a directory")
    if not os.access(p, os.W_OK | os.X_OK):
        raise ExtractError(f"{what}: cannot be written, {p} is not writable")


def _check_place(d: str, what: str, output: str) -> None:
    """Refuses (as ``what``) to write ``output`` into the directory ``d`` where its files would be
    taken for a training run's, a checkpoint's or a search index's own: the places where convert
    writes no model either (:func:`_places.place_refusal`)."""
    why = place_refusal(_resolve(d), output)
    if why:
        raise ExtractError(f"{what} {why}")


def _check_other_output(out: str, training: bool) -> None:
    """Refuses an --out holding the other kind of output than the one to be written there (an
    evaluation set, or training shards): dinoclip reads the two together as neither (train takes
    the set's images.*.npy for a shard and refuses its captions.clip.npy, a lone half of one;
    ``index`` would take the set's images for photos)."""
    try:
        names = os.listdir(out)
    except OSError:
        return  # (a new --out; one that cannot be listed fails where it is written)
    if training:  # (as dinoclip tells a set: a shard may be named images, with the set's images.*.npy)
        has = lambda n: os.path.lexists(os.path.join(out, n))  # (as Go's HoldsSet: case as the file system has it)
        other = [n for n in ("captions.image.npy", "eval.json") if has(n)]
        if has("images" + FEATURE_SUFFIX) and has("captions" + TARGET_SUFFIX):
            other.append("captions" + TARGET_SUFFIX)
        what, mine = "an evaluation set", "the shards"
    else:
        other = sorted(n for n in names if n == MANIFEST or (n.endswith((FEATURE_SUFFIX, TARGET_SUFFIX)) and n not in EVAL_FILES))
        what, mine = "training shards", "the evaluation set"
    if other:
        raise ExtractError(f"--out {out} holds {what} ({other[0]}), which dinoclip could not tell from {mine}: "
                           f"write {mine} into another directory")


def _check_finite(where: str, arrays: Sequence[Tuple[str, np.ndarray]], float16: bool, precision: str) -> None:
    """Refuses rows the readers would reject (NaN, Inf), before any file of an output is
    written, naming the output and the cause: the model's (with --precision bf16/fp16 its
    arithmetic can overflow), or float16's range with --float16 (65504)."""
    for name, a in arrays:
        bad = ~np.isfinite(a)
        if bad.any():
            hint = f"; --precision {precision} can overflow, try fp32" if precision in ("bf16", "fp16") else ""
            raise ExtractError(f"{where}: {int(bad.sum())} non-finite values (NaN or Inf) from the model in "
                               f"{name}, e.g. in row {int(np.argwhere(bad)[0][0])}{hint}; not written")
        if float16:
            with np.errstate(over="ignore"):
                over = ~np.isfinite(a.astype(np.float16))
            if over.any():
                raise ExtractError(f"{where}: {int(over.sum())} values of {name} overflow float16 (largest "
                                   f"magnitude {float(np.abs(a).max()):g}); drop --float16; not written")


def _shard_arrays(target: str) -> Tuple[str, ...]:
    """The suffixes of the .npy files of a shard of ``target``: its features, and but for target
    "none" its targets."""
    return (FEATURE_SUFFIX,) if target == "none" else (FEATURE_SUFFIX, TARGET_SUFFIX)


def _output_names(names: Sequence[str], target: str) -> List[str]:
    """The names of the files a run of shards ``names`` writes: each shard's (:func:`_write_shard`)
    and extract.json."""
    return [MANIFEST] + [n + suffix for n in names for suffix in (IMAGES_SUFFIX, *_shard_arrays(target))]


def _write_recorded(record: Callable[[], None], out: str, name: str, target: str, write: Callable[[], None]) -> None:
    """Writes shard ``name`` in ``out`` (``write``) with the run's settings recorded (``record``)
    just before and just after, all under the directory's lock. Another run sharing the --out that
    failed cannot remove the record in between (:func:`_drop_first_record`), so no shard lands
    described by none, nor does a kill leave one so. Settings another run recorded while the shard
    was encoded (the failed run, mended and run again) are found before the shard is written among
    theirs, where their rerun would take it as done. (Where the filesystem has no flocks and such
    settings come in the moment of the write, the record after it is refused, and the shard
    removed.)"""
    with _locked(out, make=True):  # (made again if missing: see _check_manifest)
        record()
        write()
        try:
            record()
        except ExtractError:
            for suffix in (*_shard_arrays(target), IMAGES_SUFFIX):  # (the .npy files first: the shard is no longer done)
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(out, name + suffix))
            raise


def _shard_done(out: str, name: str, target: str) -> bool:
    """Whether shard ``name`` in ``out`` is whole: its .npy files (:func:`_shard_arrays`), each
    written last of the shard's files (:func:`_write_shard`)."""
    return all(os.path.isfile(os.path.join(out, name + suffix)) for suffix in _shard_arrays(target))


def _write_shard(out: str, name: str, enc: Encoded, float16: bool, images: Sequence[str], precision: str) -> None:
    """Writes the shard's files, each to a temporary file renamed into place; the images list
    first, so a shard whose two .npy files exist (done) has its list (``images``: one name per
    image of the chunk, of which the rows keep ``enc.kept``). Rows that cannot be written are
    refused before any of its files is."""

    arrays = [(FEATURE_SUFFIX, enc.dino)] + ([(TARGET_SUFFIX, enc.clip)] if enc.clip is not None else [])
    _check_finite(f"output shard {os.path.join(out, name)}", arrays, float16, precision)
    # One name per line: a line break in a name (rare, but a file name may hold one) becomes U+FFFD.
    text = "".join(images[i].replace("\r", "\ufffd").replace("\n", "\ufffd") + "\n" for i in enc.kept)
    write_atomic(os.path.join(out, name + IMAGES_SUFFIX), lambda f: f.write(text.encode("utf-8", "surrogateescape")))
    dt = embedding_dtype(float16)
    save_npy(os.path.join(out, name + FEATURE_SUFFIX), enc.dino, dt)
    if enc.clip is not None:
        save_npy(os.path.join(out, name + TARGET_SUFFIX), enc.clip, dt)


_COMPARED = ("command", "target", "shard_size", "rows", "root", "captions", "inputs_sha256", "float16", "precision",
             "dinov2", "clip", "feature_dim", "embedding_dim")
# The recorded settings that name local files or folders (compared by real path: see _path_id).
_PATH_KEYS = ("root", "captions", "karpathy", "image_root")


def _path_id(path: str) -> str:
    """A local input as extract.json and eval.json record it: by its real path, ``~`` expanded,
    so that the same file or folder named through a link, from another working directory or
    after a move of what leads to it compares equal."""
    return os.path.realpath(os.path.expanduser(path))


# What is read of an extract.json at most: a record of settings and of each shard's source, a few
# hundred bytes each; and of an eval.json, a record of settings, as the Go side reads it (a larger
# one is no set dinoclip loads).
MAX_RECORD_BYTES = {MANIFEST: 256 << 20, "eval.json": 1 << 20}


def _check_recorded(out: str, name: str, settings: dict, compared: Sequence[str], what: str,
                    remedy: str) -> Optional[dict]:
    """Refuses ``settings`` that differ, in a key of ``compared`` that both hold, from those the
    JSON file ``out/name`` records of how ``what`` in ``out`` was made (``remedy``: what else to
    do than use another --out); what that file holds, as it holds it (None: no such file)."""
    path = os.path.join(out, name)
    if not os.path.isfile(path):
        return None
    # Read as empty, a damaged file would let any settings resume into (or skip) what it describes.
    try:
        raw = read_regular(path, MAX_RECORD_BYTES[name])
        if raw.startswith(b"\xef\xbb\xbf"):  # (refused by the Go side too, which reads the file)
            raise ExtractError(f"{path} begins with a UTF-8 byte-order mark (as some editors save a file): "
                               f"save it without one, as UTF-8, and run again")
        old = json.loads(raw.decode("utf-8"))
        if not isinstance(old, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError, RecursionError) as e:  # not JSON, not UTF-8, or nested too deep
        raise ExtractError(f"{path} is unreadable ({e}): it records how {out} was made; "
                           f"use another --out, or delete {out} to start over") from None
    # files written before models and inputs were recorded by real path hold them as given
    ids = {k: encoders.model_id(v) if k in ("dinov2", "clip") and isinstance(v, str) else
           _path_id(v) if k in _PATH_KEYS and isinstance(v, str) else v for k, v in old.items()}
    diff = [k for k in compared if k in settings and k in ids and ids[k] != settings[k]]
    if diff:
        changes = "; ".join(f"{k} was {ids[k]!r}, now {settings[k]!r}" for k in diff)
        raise ExtractError(f"{out} holds {what} extracted with other settings ({changes}); "
                           f"use another --out, or {remedy}")
    return old


def _tar_id(path: str) -> dict:
    """A tar as extract.json records the source of its shard: its size and a sample of its bytes
    (the SHA-256 of its size and of 16 windows of 4 KiB spread over it, all of it up to 64 KiB,
    as an index samples its sources), and its real path, for messages. Shards are named after
    their tars alone, and img2dataset names every folder's tars 00000.tar, 00001.tar, ...: by
    name, another folder's tar would be taken for one already done. Not by path: a folder moved
    or mounted elsewhere holds the same tars; and a tar rewritten to the same size (tar pads to
    10 KiB records) is another."""
    size = os.stat(path).st_size
    h = hashlib.sha256(size.to_bytes(8, "little"))
    window, windows = 4096, 16
    with open(path, "rb") as f:
        if size <= window * windows:
            h.update(f.read())
        else:
            for i in range(windows):
                f.seek(i * (size - window) // (windows - 1))
                h.update(f.read(window))
    return {"path": _path_id(path), "size": size, "sample": h.hexdigest()}


def _same_tar(recorded, tar: dict) -> bool:
    """Whether the recorded tar (:func:`_tar_id`) is ``tar``: the same size and sample, wherever
    it is now."""
    return isinstance(recorded, dict) and recorded.get("size") == tar["size"] and recorded.get("sample") == tar["sample"]


def _describe_tar(tar_id) -> str:
    """A recorded tar (:func:`_tar_id`) for a message; a damaged record as it is."""
    if isinstance(tar_id, dict) and "path" in tar_id and "size" in tar_id:
        return f"{tar_id['path']} ({tar_id['size']} bytes)"
    return repr(tar_id)


# The directories whose lock (_locked) this thread holds, by their device and inode, each with how
# many times it took it.
_held = threading.local()


@contextlib.contextmanager
def _locked(d: str, make: bool = False):
    """Holds the flock of the directory ``d`` (where there are flocks): the processes that share
    an --out (one per GPU, each with its own tars) update its extract.json in turn, none writing
    over what another has just added. With ``make``, ``d`` is made where it is missing, also
    where it went while the lock was awaited (removed by a run that failed, once empty); without,
    that is an OSError. A thread holding the lock takes it again at once (a shard's write records
    the settings under it): a second flock of the directory would wait on the first, which is
    another open file, for good. The directory is told by its device and inode, not its path,
    which may lead elsewhere meanwhile (a folder above it renamed)."""
    if _files.fcntl is None:  # (Windows: no flocks, and a directory opens as no file)
        if make:
            make_dirs(d)
        yield
        return
    depth = _held.__dict__.setdefault("depth", {})
    fd, key = _lock_dir(d, depth, make)
    try:
        depth[key] = depth.get(key, 0) + 1
        yield
    finally:
        depth[key] = depth.get(key, 1) - 1
        if fd is not None:
            depth.pop(key, None)
            os.close(fd)  # (releases the lock)


def _lock_dir(d: str, depth: Dict[Tuple[int, int], int], make: bool) -> Tuple[Optional[int], Tuple[int, int]]:
    """A file descriptor of the directory ``d`` holding its flock, and the directory's device and
    inode; no descriptor where this thread holds the lock already (``depth``). A directory
    removed or replaced while the lock was awaited (by a run that failed, once empty) is made
    again (``make``) and locked anew: the lock of the one removed guards nothing. Where the
    filesystem has no flocks, the descriptor holds none (extract.json is still re-read just before
    it is written)."""
    while True:
        if make:
            make_dirs(d)
        fd = os.open(d, os.O_RDONLY)
        try:
            st = os.fstat(fd)
            key = (st.st_dev, st.st_ino)
            if depth.get(key):
                os.close(fd)
                return None, key
            try:
                _files.fcntl.flock(fd, _files.fcntl.LOCK_EX)
            except OSError:
                return fd, key
            with contextlib.suppress(FileNotFoundError):
                now = os.stat(d)
                if (now.st_dev, now.st_ino) == key:
                    return fd, key
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _check_manifest(out: str, settings: dict, write: bool, tars: Optional[Dict[str, dict]] = None,
                    done: Sequence[str] = (), adding: bool = True) -> Optional[dict]:
    """extract.json records how the shards in ``out`` were made; shards made differently
    (other inputs, target, shard size, dtype or model) must not be mixed with them, nor taken
    as done. ``tars`` (train-wds: output shard name -> its tar, :func:`_tar_id`): without
    ``write``, those of the shards done, refused where extract.json records another tar (or the
    same one changed since) for the shard, which would be skipped as done; with ``write``, those
    of the shards about to be made, recorded before they are (a record of a shard never finished
    is replaced: nothing of its tar is in ``out``). With ``write`` the settings are recorded
    if nothing is yet; the file is re-read under the directory's lock, as another process may
    have recorded its own tars. ``done`` (without ``write``): the shards found whole in ``out``,
    which only a record of how they were made lets a run take as done. ``adding`` (without
    ``write``): whether the run has shards to extract, which only a record of the same
    preprocessing lets it add (a run with none to extract skips those made by any). Without
    ``write``, returns the record read (None: none)."""
    # (With write, --out is made again if missing: a process sharing it that failed removes the
    # --out it made while it is still empty (see main), which may be while this one loaded its
    # models, or waited on the lock.)
    with _locked(out, make=True) if write else contextlib.nullcontext():
        old = _check_recorded(out, MANIFEST, settings, _COMPARED, "shards", "the same settings to resume")
        if old is not None and "command" not in old:  # ({} matched any settings)
            raise ExtractError(f"{os.path.join(out, MANIFEST)} is unreadable (it names no command): it records how "
                               f"{out} was made; use another --out, or delete {out} to start over")
        # (A record of another preprocessing where no shard is, whole or being written, describes
        # none: a run killed between recording and its first shard. Written anew below.)
        if old is not None and (write or adding) and _holds_shard_files(out):
            _check_preprocessing(out, old, settings["preprocessing"])
        if old is None and done:
            # Shards no record describes (another program's, or copied in) would be reported done.
            raise ExtractError(f"{out} holds shards ({', '.join(sorted(done)[:3])}{', ...' if len(done) > 3 else ''}) "
                               f"but no {MANIFEST} recording how they were made: use another --out, or remove them")
        recorded = {} if old is None else old.get("tars", {})
        if not isinstance(recorded, dict):
            raise ExtractError(f"{os.path.join(out, MANIFEST)} is unreadable (\"tars\" is not a JSON object): it "
                               f"records how {out} was made; use another --out, or delete {out} to start over")
        if not write:
            # (shards written before tars were recorded have no record: they are taken as they are)
            for name, tar in (tars or {}).items():
                if name in recorded and not _same_tar(recorded[name], tar):
                    same_size = isinstance(recorded[name], dict) and recorded[name].get("size") == tar["size"]
                    files = " and ".join(name + suffix for suffix in _shard_arrays(settings["target"]))
                    raise ExtractError(f"output shard {name} in {out} was extracted from "
                                       f"{_describe_tar(recorded[name])}, not from {_describe_tar(tar)}"
                                       f"{' (the same size, other contents)' if same_size else ''}: use another "
                                       f"--out for this tar, or remove {files} from it to extract the shard anew")
            return old
        new = {name: tar for name, tar in (tars or {}).items() if not _same_tar(recorded.get(name), tar)}
        same = old is not None and _same_preprocessing(old, settings["preprocessing"])
        if same and not new:
            return
        manifest = dict(settings) if old is None else {**old, "preprocessing": settings["preprocessing"]}
        if tars is not None:
            manifest["tars"] = {**recorded, **new}
        text = json.dumps(manifest, indent=2) + "\n"
        write_atomic(os.path.join(out, MANIFEST), lambda f: f.write(text.encode("utf-8")))
        if old is None:
            st = os.stat(os.path.join(out, MANIFEST))
            _first_records[out] = (st.st_dev, st.st_ino)


# The extract.json each --out got from this run, where it recorded the first: the file (device and
# inode) it wrote (see _drop_first_record).
_first_records: Dict[str, Tuple[int, int]] = {}


def _drop_first_record(out: str) -> None:
    """Removes the extract.json this run recorded first in ``out`` when the run failed before any
    shard was written there: kept, it refused the rerun that mends the failure (the model fixed,
    --float16 dropped) as mixing settings with shards that do not exist. Another run sharing the
    --out that has recorded since (its atomic write makes another file, even of the same text), or
    a shard there, whole or being written, keeps it. A run sharing the --out that found these
    settings recorded, and recorded nothing, records them again as it writes each shard, under
    the lock this removal takes (:func:`_write_recorded`)."""
    written = _first_records.pop(out, None)
    if written is None:
        return
    # (--out gone or unreadable meanwhile, the lock with it: nothing of this run's to remove, and
    # no traceback in place of the failure being reported)
    try:
        with _locked(out):
            if _holds_shard_files(out):
                return
            path = os.path.join(out, MANIFEST)
            st = os.stat(path)
            if (st.st_dev, st.st_ino) != written:
                return
            os.remove(path)
    except OSError:
        pass


def _report(name: str, enc: Encoded, samples: Sequence[str], skipped: Sequence[Tuple[int, str]] = ()) -> None:
    """Says what shard ``name`` holds of ``samples`` (the images' paths, or a tar's keys), and
    what it left out: the images that did not decode, and the (count, the count in words) of
    ``skipped`` (TarIndex.skipped)."""
    msg = f"{name}: {counted(len(enc.kept), 'row', 'rows')}"
    skipped = [(n, what) for n, what in skipped if n]
    if enc.failed or skipped:
        msg += f" of {counted(len(samples) + sum(n for n, _ in skipped), 'sample', 'samples')}"
        parts = []
        if enc.failed:
            i, why = enc.failed[0]
            parts.append(f"{counted(len(enc.failed), 'image', 'images')} did not decode (e.g. {samples[i]}: {why})")
        parts += [what for _, what in skipped]
        msg += "; skipped: " + ", ".join(parts)
    log(msg)
    _warn_images(name, enc, samples)


def _warn_images(where: str, enc: Encoded, samples: Sequence[str]) -> None:
    """Warns of the images of ``enc`` whose values the preprocessing clipped (:func:`clipped`), and
    notes those PIL would have warned of as possible decompression bombs."""
    if enc.large:
        i, pixels = max(enc.large, key=lambda e: e[1])
        images = len({samples[j] for j, _ in enc.large})  # (a captions file may name an image in several rows)
        from PIL import Image

        log(f"{where}: note: {counted(images, 'image has', 'images have')} more than the "
            f"{Image.MAX_IMAGE_PIXELS:,} pixels past which PIL warns of a decompression bomb "
            f"(the largest: {samples[i]}, {pixels:,} pixels): each was decoded whole, in memory; past twice "
            f"as many PIL refuses an image")
    if enc.clipped:
        log(f"{where}: warning: {counted(len(enc.clipped), 'image is', 'images are')} 16-bit, 32-bit or "
             f"floating-point greyscale (e.g. {samples[enc.clipped[0]]}): their rows are of the images clipped "
             f"to 0..255, not scaled, as the reference preprocessing does (a 16-bit photograph turns nearly "
             f"white, a float one of values in 0..1 black); convert them to 8-bit images first")


# ---------------------------------------------------------------------------
# subcommands


def _extractor(args) -> Extractor:
    _check_out(args.out)  # before the models run: an existing --out the results cannot go into
    clip = None if getattr(args, "target", None) == "none" else args.clip  # (features alone: no CLIP loaded)
    return Extractor(args.dinov2, clip, args.device, batch_size=args.batch_size,
                     workers=args.workers, precision=args.precision, quiet=args.quiet)


def _holds_shard_files(out: str) -> bool:
    """Whether ``out`` holds a training shard's file, whole or being written (a temporary)."""
    return any(FEATURE_SUFFIX in n or TARGET_SUFFIX in n for n in os.listdir(out))


def _same_preprocessing(old: dict, version: int) -> bool:
    """Whether the extract.json ``old`` records preprocessing ``version`` (1 where it records
    none: it was written before the version was)."""
    was = old.get("preprocessing", 1)
    return type(was) is int and was == version


def _check_preprocessing(out: str, old: dict, version: int) -> None:
    """Refuses to add to shards whose images another version of the preprocessing made
    (:data:`transforms.PREPROCESSING_VERSION`; 1 where extract.json records none): a shard
    skipped as done and one extracted now would disagree on the same kind of image. Where no
    image has what the versions between treat otherwise (today: transparency), they agree, and
    the message says how to go on."""
    if _same_preprocessing(old, version):
        return
    was = old.get("preprocessing", 1)
    if type(was) is int and 0 < was < version:
        why = "; ".join(transforms.PREPROCESSING_CHANGES[v] for v in range(was + 1, version + 1))
        whose = f"an earlier dinoclip's preprocessing (version {was}; now {version}: {why})"
    else:
        whose = f"preprocessing version {was!r}, which this dinoclip (version {version}) does not make"
    raise ExtractError(f"{out} holds shards whose images were made with {whose}: on an image with transparency the "
                       f"shards done and those still to extract would not agree. Use another --out, or delete {out} "
                       f"to extract it all anew; or, where no image of the inputs has transparency (an alpha band, "
                       f"or a palette or colour marked transparent: a JPEG never has), set \"preprocessing\": "
                       f"{version} in {os.path.join(out, MANIFEST)} to go on")


def _settings(args, command: str, ext: Optional[Extractor] = None, **extra) -> dict:
    s = {"command": command, "preprocessing": transforms.PREPROCESSING_VERSION, "target": args.target,
         "float16": args.float16, "precision": args.precision,
         "dinov2": encoders.model_id(args.dinov2), "clip": None if args.target == "none" else encoders.model_id(args.clip)}
    if ext is not None:
        s.update(feature_dim=ext.feature_dim, embedding_dim=ext.embedding_dim)
    s.update(extra)
    return s


def cmd_train_folder(args) -> int:
    pairs = read_folder(args.root, args.captions, need_captions=args.target == "text")
    if args.shard_size < 1:
        raise ExtractError(f"--shard-size {args.shard_size}: must be at least 1")
    n = len(pairs)
    nshards = -(-n // args.shard_size)  # (in integers: n / a --shard-size of 10**330 was 0.0)
    width = max(5, len(str(nshards - 1)))
    names = [f"shard-{k:0{width}d}" for k in range(nshards)]
    make_dirs(args.out)
    extra = dict(shard_size=args.shard_size, root=_path_id(args.root),
                 captions=_path_id(args.captions) if args.captions else None)
    todo = [k for k in range(nshards) if not _shard_done(args.out, names[k], args.target)]
    done = sorted(set(names) - {names[k] for k in todo})
    # The settings first (another folder, target or captions file is said as such), then what the
    # folder holds.
    recorded = _check_manifest(args.out, _settings(args, "train-folder", **extra), write=False, done=done,
                               adding=bool(todo))
    inputs = _folder_inputs(args.root, pairs, captions=args.target == "text")
    _check_folder_unchanged(args.out, recorded, args.root, n, inputs)
    sweep_stale_temporaries(args.out, _output_names(names, args.target))
    extra.update(rows=n, inputs_sha256=inputs)
    log(f"{args.root}: {counted(n, 'image', 'images')} -> {counted(nshards, 'shard', 'shards')} of up to "
         f"{args.shard_size} rows in {args.out}"
         + (f" ({nshards - len(todo)} already done)" if len(todo) < nshards else ""))
    rows = _shard_rows(args.out, done, args.target, args.float16, recorded)
    if not todo:
        return _no_rows_status(rows, f"no image of {args.root} could be read")
    ext = _extractor(args)
    record = functools.partial(_check_manifest, args.out, _settings(args, "train-folder", ext, **extra), write=True)
    record()
    for k in todo:
        chunk = pairs[k * args.shard_size:(k + 1) * args.shard_size]
        enc = ext.images([p for p, _ in chunk], _open_path, [c for _, c in chunk], args.target,
                         desc=f"{names[k]} ({k + 1}/{nshards})")
        _write_recorded(record, args.out, names[k], args.target, lambda: _write_shard(
            args.out, names[k], enc, args.float16, [os.path.abspath(p) for p, _ in chunk], args.precision))
        _report(names[k], enc, [p for p, _ in chunk])
        rows += len(enc.kept)
    return _no_rows_status(rows, f"no image of {args.root} could be read")


def _folder_inputs(root: str, pairs: Sequence[Tuple[str, Optional[str]]], captions: bool) -> str:
    """What train-folder's shards are cut from, as extract.json records it: the hex SHA-256 of
    each image's path (relative to ``root``), size and, with ``captions`` (their embeddings are
    the targets), caption, in order. A shard is rows
    ``k * shard_size`` on of this list: with an image added, removed or replaced since, the
    shards already written hold other images than their rows' places say."""
    h = hashlib.sha256()
    real_root = os.path.realpath(root)
    for path, caption in pairs:
        try:
            size = os.stat(path).st_size
        except (OSError, ValueError):
            size = -1  # (gone meanwhile, or no name a file has: reported where it is read)
        # (A path of a captions file may be absolute: relative to the root as the system finds
        # both, so that the root reached through a link is the same folder.)
        try:
            rel = os.path.relpath(os.path.realpath(path), real_root) if os.path.isabs(path) else os.path.relpath(path, root)
        except ValueError:  # (no name a file has, a NUL in it: reported where it is read)
            rel = path
        rel = rel.encode("utf-8", "surrogatepass")
        text = (caption or "").encode("utf-8", "surrogatepass") if captions else b""
        h.update(b"%d:%s%d:%d:%s" % (len(rel), rel, size, len(text), text))
    return h.hexdigest()


def _check_folder_unchanged(out: str, old: Optional[dict], root: str, n: int, inputs: str) -> None:
    """Refuses to go on with the shards a train-folder run recorded in ``out`` (``old``, its
    extract.json as :func:`_check_manifest` read it) when the folder (or its captions) changed
    since (:func:`_folder_inputs`): skipped as done, they would hold images since removed and miss
    those added. (A record from before the inputs were recorded is compared by its count of images
    alone.)"""
    if old is None or old.get("command") != "train-folder":
        return
    then = old.get("rows")
    if then != n or old.get("inputs_sha256", inputs) != inputs:
        count = f"{then} images then, {n} now" if then != n else f"{n} images, some replaced or captioned otherwise"
        raise ExtractError(f"{root} changed since the shards in {out} were extracted from it ({count}): each shard is a "
                           f"slice of its list of images, so none can be kept: put the new images in a folder of "
                           f"their own and extract that into another --out (dinoclip index appends it), or "
                           f"extract the whole folder anew into another --out (and index it into a new index)")


def cmd_train_wds(args) -> int:
    tars = expand_tars(args.inputs)
    names = [tar_name(t) for t in tars]
    seen: Dict[str, str] = {}
    for t, n in zip(tars, names):
        if n in seen:
            raise ExtractError(f"{seen[n]} and {t} would both be output shard {n}")
        seen[n] = t
        if n.lower() == "captions":  # (beside images.dino.npy, an images.tar's, it makes an evaluation set)
            raise ExtractError(f"{t} would be output shard {n}, whose {n}{TARGET_SUFFIX} is named as an evaluation "
                               f"set's captions, and dinoclip reads a directory holding it and images{FEATURE_SUFFIX} "
                               f"as a set: rename the tar")
    make_dirs(args.out)
    ids = {n: _tar_id(t) for t, n in zip(tars, names)}
    todo = [i for i, n in enumerate(names) if not _shard_done(args.out, n, args.target)]
    done = set(names) - {names[i] for i in todo}
    recorded = _check_manifest(args.out, _settings(args, "train-wds"), write=False, tars={n: ids[n] for n in done},
                               done=sorted(done), adding=bool(todo))
    sweep_stale_temporaries(args.out, _output_names(names, args.target))
    some = counted(len(tars), "tar file", "tar files")
    log(f"{some} -> {args.out}" + (f" ({len(tars) - len(todo)} already done)" if len(todo) < len(tars) else ""))
    rows = _shard_rows(args.out, sorted(done), args.target, args.float16, recorded)
    if not todo:
        return _no_rows_status(rows, f"no sample of the {some} could be read")
    ext = _extractor(args)
    record = functools.partial(_check_manifest, args.out, _settings(args, "train-wds", ext), write=True,
                               tars={names[i]: ids[names[i]] for i in todo})
    record()
    need_captions = args.target == "text"
    for j, i in enumerate(todo):
        # The shard must be what extract.json records of its tar: a tar rewritten meanwhile (one
        # img2dataset is still writing, or another put in its place) is found before its samples
        # are read, and after, which is when they have all been read.
        changed = lambda: not _same_tar(ids[names[i]], _tar_id(tars[i]))
        if changed():
            raise ExtractError(f"{tars[i]} changed since this run began (is it still being written?): output shard "
                               f"{names[i]} is not written; run again once it is complete")
        idx = index_tar(tars[i], need_captions=need_captions)
        enc = ext.images(idx.refs, _TarOpener(tars[i]), idx.captions, args.target,
                         desc=f"{names[i]} ({j + 1}/{len(todo)})")
        if changed():
            raise ExtractError(f"{tars[i]} changed while it was extracted (is it still being written?): output shard "
                               f"{names[i]} is not written; run again once it is complete")
        _write_recorded(record, args.out, names[i], args.target,
                        lambda: _write_shard(args.out, names[i], enc, args.float16, idx.keys, args.precision))
        _report(names[i], enc, idx.keys, idx.skipped())
        rows += len(enc.kept)
    return _no_rows_status(rows, f"no sample of the {some} could be read")


def _no_rows_status(rows: int, what: str) -> int:
    """The exit status of a run whose shards, done before and written now, hold ``rows`` rows in
    all: 1, said on stderr, when that is none (every image failed to decode, say): its empty shards
    are done (a rerun skips them), but no script that ran it, or runs it again, must take it for
    an extraction that worked."""
    if rows:
        return 0
    error(f"{what}: the shards are empty (see the lines of the run that wrote them)")
    return 1


def _shard_rows(out: str, names: Sequence[str], target: str, float16: bool, record: Optional[dict]) -> int:
    """The rows of the done shards ``names`` in ``out``, read from their .npy headers
    (:func:`_shard_arrays`), each checked to be what this extraction writes: a .npy file as long
    as its header says, 2-D, of its dtype and of the width extract.json (``record``, as
    :func:`_check_manifest` read it) records, where it records one, and of one row count with the
    shard's other file."""
    old = record or {}
    widths = {FEATURE_SUFFIX: old.get("feature_dim"), TARGET_SUFFIX: old.get("embedding_dim")}
    dtype = embedding_dtype(float16)
    total = 0
    for name in names:
        rows = []
        for suffix in _shard_arrays(target):
            path = os.path.join(out, name + suffix)
            try:
                with open(path, "rb") as f:
                    if f.read(len(np.lib.format.MAGIC_PREFIX)) != np.lib.format.MAGIC_PREFIX:
                        raise ValueError("no .npy file: it does not begin as one")
                a = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError, EOFError) as e:  # (EOFError: numpy's for an empty file)
                raise ExtractError(f"{path}: not a shard this tool wrote ({e}): remove it to extract it anew") from None
            width = widths[suffix]
            offset = getattr(a, "offset", None)  # (where the data begins; none for an empty array)
            if offset is not None and os.path.getsize(path) != offset + a.nbytes:
                raise ExtractError(f"{path}: longer than its header says: not a shard this tool wrote; remove it to "
                                   f"extract it anew")
            # (The other of the two dtypes under a record from before the flag was recorded: the flag to give.)
            if "float16" not in old and a.ndim == 2 and a.dtype == embedding_dtype(not float16):
                was = "with" if not float16 else "without"
                raise ExtractError(f"{path}: {a.dtype}, written by a run {was} --float16: run {was} --float16 to go "
                                   f"on with these shards")
            if a.ndim != 2 or a.dtype != dtype or (type(width) is int and a.shape[1] != width):
                want = f"[rows, {width if type(width) is int else 'width'}] {dtype}"
                raise ExtractError(f"{path}: {list(a.shape)} {a.dtype}, not a shard this tool wrote ({want}): remove "
                                   f"it to extract it anew")
            rows.append(a.shape[0])
        if len(set(rows)) > 1:
            files = " and ".join(os.path.join(out, name + suffix) for suffix in _shard_arrays(target))
            raise ExtractError(f"{files} hold {' and '.join(map(str, rows))} rows: not a shard this tool wrote; "
                               f"remove them to extract it anew")
        total += rows[0]
    return total


def _default_eval_name(dataset: Optional[str], json_path: str, n: int, fallback: str) -> str:
    base = (dataset or "").strip().lower()
    if not base:
        stem = os.path.splitext(os.path.basename(json_path))[0]
        base = stem[len("dataset_"):] if stem.startswith("dataset_") else fallback
    if base == "coco":
        base = "mscoco"
    return f"{base}-{n // 1000}k" if n % 1000 == 0 and n > 0 else f"{base}-{n}"


# What eval.json records of how an evaluation set was made (its counts follow from these).
_EVAL_COMPARED = ("name", "source", "karpathy", "image_root", "dinov2", "clip", "dtype", "precision")


def _check_set_name(name: str, what: str) -> str:
    """``name``, an evaluation set's, if dinoclip takes it: printable (it is printed in tables,
    errors and records), not blank, and short enough for the eval.json the Go side reads."""
    if not name.strip() or not name.isprintable():
        raise ExtractError(f"{what} {name!r}: want a name of printable characters, not blank")
    if len(name.encode("utf-8")) > MAX_SET_NAME_BYTES:
        raise ExtractError(f"{what}: a name of {len(name.encode('utf-8'))} bytes; want at most {MAX_SET_NAME_BYTES}")
    return name


# The longest name an evaluation set takes: far below what eval.json may hold.
MAX_SET_NAME_BYTES = 4096


def _eval_set_done(out: str, settings: dict) -> bool:
    """Whether ``out`` holds a whole evaluation set made with ``settings``; one made from other
    inputs, models or dtype is another set, not this one done: refused."""
    if not all(os.path.isfile(os.path.join(out, f)) for f in EVAL_FILES):
        return False
    _check_recorded(out, "eval.json", settings, _EVAL_COMPARED, "an evaluation set", f"delete {out} to redo it")
    return True


def cmd_eval(args, kind: str) -> int:
    # dinoclip refuses a set whose name cannot be printed, or is blank (it is printed in tables,
    # errors and records): refused here, before the extraction rather than after.
    if args.name is not None:
        _check_set_name(args.name, "--name")
    # Writing the set over the Karpathy file (named as one of its files, or through a link) would
    # lose it.
    for f in EVAL_FILES:
        if same_file(os.path.join(args.out, f), args.karpathy):
            raise ExtractError(f"--out {args.out}: its {f} is the --karpathy file {args.karpathy}: write the "
                               "evaluation set to another directory")
    # as eval.json records them (the name only when given: by default it follows from the json)
    settings = {"source": f"{os.path.basename(args.karpathy)} split {args.split}",
                "karpathy": _path_id(args.karpathy), "image_root": _path_id(args.images),
                "dinov2": encoders.model_id(args.dinov2), "clip": encoders.model_id(args.clip),
                "dtype": "float16" if args.float16 else "float32", "precision": args.precision}
    if args.name:
        settings["name"] = args.name
    if _eval_set_done(args.out, settings):  # (a whole set, also a read-only one)
        log(f"{args.out}: evaluation set already complete; skipping (delete it to redo)")
        return 0
    for f in EVAL_FILES:  # (a device or a pipe where a file goes is refused before the models run)
        destination(os.path.join(args.out, f))
    paths, captions, cap_image, dataset = read_karpathy(args.karpathy, args.images, args.split)
    name = args.name or _check_set_name(_default_eval_name(dataset, args.karpathy, len(paths), kind),
                                        f"the default name, from {args.karpathy} (--name sets another),")
    expected = {"coco": 5000, "flickr": 1000}[kind]
    log(f"{args.karpathy} split {args.split!r}: {counted(len(paths), 'image', 'images')}, "
        f"{counted(len(captions), 'caption', 'captions')} -> "
        f"{args.out} ({name!r})")
    if args.split == "test" and len(paths) != expected:
        log(f"note: the Karpathy test split of {kind} has {expected} images; this one has {len(paths)}")
    ext = _extractor(args)
    ext.tokenizer  # loaded now: refused after the images have run, it would have wasted them
    enc = ext.images(paths, _open_path, target="image", desc="images")
    if enc.failed:
        i, why = enc.failed[0]
        raise ExtractError(f"{counted(len(enc.failed), 'image', 'images')} did not decode, e.g. {paths[i]}: {why}")
    _warn_images(args.out, enc, paths)
    text = ext.texts(captions)
    _check_finite(f"evaluation set {args.out}", [("images.dino.npy", enc.dino), ("images.clip.npy", enc.clip),
                                                 ("captions.clip.npy", text)], args.float16, args.precision)
    info = {"name": name, "images": len(paths), "captions": len(captions), **settings}
    text_json = json.dumps(info, indent=2) + "\n"
    dt = embedding_dtype(args.float16)
    # Written in turn, under the directory's lock: another run into the same --out, extracting
    # meanwhile, writes after this one has written all five files, finds them, and checks them as
    # a set already made (it mixed its files with this one's, and both exited 0). images.dino.npy
    # goes first and comes back last, so the set loads only once one run has written all of it (a
    # killed run left files of its own beside another's, which loaded as one set); and captions
    # come before images, so the directory is never two files of one training shard ("images").
    # (Where the filesystem has no flocks, or on Windows, the lock is none: runs into one --out
    # must then take turns by themselves.)
    with _locked(args.out, make=True):
        if _eval_set_done(args.out, settings):
            log(f"{args.out}: evaluation set completed by another run meanwhile; skipping")
            return 0
        with contextlib.suppress(FileNotFoundError):  # (where a link there leads: the file written)
            os.remove(destination(os.path.join(args.out, "images.dino.npy")))
        save_npy(os.path.join(args.out, "captions.image.npy"), cap_image, np.dtype("<i8"))
        save_npy(os.path.join(args.out, "captions.clip.npy"), text, dt)
        save_npy(os.path.join(args.out, "images.clip.npy"), enc.clip, dt)
        write_atomic(os.path.join(args.out, "eval.json"), lambda f: f.write(text_json.encode("utf-8")))
        save_npy(os.path.join(args.out, "images.dino.npy"), enc.dino, dt)
    log(f"{args.out}: {counted(len(paths), 'image', 'images')}, {counted(len(captions), 'caption', 'captions')}, "
         f"features {ext.feature_dim}, embeddings {ext.embedding_dim}")
    return 0


# The record `texts` writes beside its queries, FILE.json beside FILE.npy: the CLIP model that
# embedded them, which `dinoclip search` compares with the one its index's model was trained
# towards, the texts, which it writes above each query's answer, and the SHA-256 of the .npy, so
# that a record is not believed of a file written since.
QUERIES_FORMAT = "dinoclip-queries/1"
# What is read of a queries record at most, as the Go side reads it: the texts, a line each.
MAX_QUERIES_RECORD_BYTES = 256 << 20


def queries_record_path(out: str) -> str:
    """Where the record of the queries file ``out`` (a .npy name) is."""
    return out[:-len(".npy")] + ".json"


def _check_queries_record(path: str) -> None:
    """Refuses to replace a file at ``path`` that is not a queries record (a user's own JSON)."""
    if not os.path.lexists(path):
        return
    try:
        # (a record of any version: this one's, or another dinoclip's, is replaced)
        ours = str(json.loads(read_regular(path, MAX_QUERIES_RECORD_BYTES).decode("utf-8")).get("format")).startswith(
            "dinoclip-queries/")
    except (OSError, ValueError, AttributeError, RecursionError):
        ours = False
    if not ours:
        raise ExtractError(f"{path} exists and is not a record of queries (format {QUERIES_FORMAT!r}), which texts "
                           "writes beside its .npy: move it, or write the embeddings under another name")


def cmd_texts(args) -> int:
    lines = read_lines(args.file)
    if not args.out.endswith(".npy"):
        raise ExtractError(f"--out {args.out}: want a .npy file name")
    if os.path.isdir(args.out):
        raise ExtractError(f"--out {args.out} is a directory; want the .npy file to write")
    out = destination(args.out)  # (a device or a read-only file is refused before the model runs)
    _check_out(os.path.dirname(out), f"--out {args.out}")
    _check_place(os.path.dirname(out), f"--out {args.out}", "the embeddings")
    # Replacing the input with its embeddings would lose the texts.
    if same_file(out, args.file):
        raise ExtractError(f"--out {args.out} is the input file {args.file}: write the embeddings to another file")
    record = queries_record_path(args.out)
    destination(record)  # (refused, as the .npy's, before the model runs)
    _check_queries_record(record)  # (the input file there is no record either)
    ext = Extractor(None, args.clip, args.device, batch_size=args.batch_size, workers=0,
                    precision=args.precision, quiet=args.quiet)
    emb = ext.texts(lines, desc="texts")
    _check_finite(args.out, [("the embeddings", emb)], args.float16, args.precision)
    save_npy(args.out, emb, embedding_dtype(args.float16))  # makes its directory
    # After the .npy: a run killed in between leaves an older record, which its SHA-256 disowns.
    h = hashlib.sha256()
    with open_regular(args.out) as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            h.update(piece)
    # The texts themselves too, in row order, for search to show each query's answer under its text.
    text = json.dumps({"format": QUERIES_FORMAT, "clip": encoders.model_id(args.clip), "source": _path_id(args.file),
                       "rows": int(emb.shape[0]), "dim": int(emb.shape[1]), "sha256": h.hexdigest(), "texts": lines},
                      indent=2, ensure_ascii=False) + "\n"
    write_atomic(record, lambda f: f.write(text.encode("utf-8")))
    log(f"{args.out}: {counted(len(lines), 'text', 'texts')} -> [{emb.shape[0]}, {emb.shape[1]}] CLIP text embeddings "
         f"(their CLIP model recorded in {record})")
    return 0


# ---------------------------------------------------------------------------
# command line


def _common(p: argparse.ArgumentParser, target: bool) -> None:
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created if needed)")
    p.add_argument("--dinov2", default=encoders.DEFAULT_DINOV2, metavar="NAME|PATH",
                   help="DINOv2 model: Hugging Face name or local directory (default: %(default)s)")
    # (No default here: main fills it in, once it has refused a --clip given with --target none.)
    p.add_argument("--clip", default=None, metavar="NAME|PATH",
                   help="CLIP model (and its tokenizer): Hugging Face name or local directory (default: "
                        f"{encoders.DEFAULT_CLIP})" + ("; not with --target none, which loads none" if target else ""))
    p.add_argument("--device", default=None,
                   help="torch device, e.g. cuda, cuda:1, cpu (default: cuda when available, else cpu)")
    p.add_argument("--batch-size", type=int, default=128, metavar="N", help="images per batch, at most 2^20 (default: %(default)s)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="image decoding processes; 0 decodes in the main process (default: the CPUs this "
                        "process may use, at most 8; at most 4 per CPU)")
    p.add_argument("--precision", choices=("fp32", "tf32", "bf16", "fp16"), default="fp32",
                   help="model arithmetic: fp32 (default), tf32 matmuls (CUDA), or bf16/fp16 autocast; "
                        "the files are float32 either way unless --float16")
    p.add_argument("--float16", action="store_true", help="write the embeddings as float16 instead of float32")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    if target:
        p.add_argument("--target", choices=("image", "text", "none"), default="image",
                       help="what .clip.npy holds: CLIP image embeddings of the images (default) or CLIP "
                            "text embeddings of their captions; none writes no .clip.npy and loads no CLIP "
                            "model: DINOv2 features alone, all dinoclip index reads, "
                            "no training data")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m dinoclip.extract",
        description="Extract DINOv2 features and CLIP embeddings into the .npy files dinoclip trains "
                    "and evaluates on (docs/FORMAT.md). Stopped runs resume: finished outputs are skipped.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m dinoclip.extract train-wds /data/cc12m --out features/cc12m\n"
               "  python -m dinoclip.extract train-folder photos/ --captions captions.jsonl --out features/photos\n"
               "  python -m dinoclip.extract eval-coco --karpathy dataset_coco.json --images /data/coco "
               "--out features/mscoco-5k\n"
               "  python -m dinoclip.extract eval-flickr --karpathy dataset_flickr30k.json "
               "--images /data/flickr30k-images --out features/flickr30k-1k\n"
               "  python -m dinoclip.extract texts sentences.txt --out sentences.clip.npy",
    )
    sub = ap.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")

    p = sub.add_parser(
        "train-folder", help="image folder (captions optional) -> training shards",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Training shards from a folder of images: shard-00000.dino.npy + shard-00000.clip.npy, ...,\n"
                    "--shard-size rows each (fewer where images fail to decode).\n\n"
                    "Captions: with --captions FILE, a .jsonl file of {\"image\": PATH, \"caption\": TEXT} lines or a\n"
                    ".csv/.tsv file with a header row naming 'image' and 'caption' columns (PATH relative to ROOT\n"
                    "or absolute; the rows, in order, are the training pairs). Without it, every image under ROOT\n"
                    "(recursively: each folder's files by name, then its subfolders by name; jpg, jpeg, png, webp,\n"
                    "bmp, gif, tif) is paired with its sidecar .txt (photos/a.jpg -> photos/a.txt). Links to folders are followed; a folder reached twice is\n"
                    "walked once, and a link to a folder holding ROOT (.., /) is not followed (both counted).\n"
                    "Captions are only needed with --target text, and there an empty one is an error, as a\n"
                    "missing one is.\n\n"
                    "Shard k holds pairs [k*N, (k+1)*N) of that list, so a rerun with the same inputs and\n"
                    "--shard-size skips the shards already written (extract.json records the settings).",
    )
    p.add_argument("root", metavar="ROOT", help="the image folder")
    p.add_argument("--captions", metavar="FILE", help="captions .jsonl/.csv/.tsv (default: sidecar .txt files)")
    p.add_argument("--shard-size", type=int, default=10000, metavar="N", help="rows per shard (default: %(default)s)")
    _common(p, target=True)

    p = sub.add_parser(
        "train-wds", help="img2dataset webdataset tar shards -> training shards, one per tar",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Training shards from webdataset tar files as img2dataset writes them (output_format\n"
                    "webdataset): each sample is KEY.jpg (or .png/.webp) + KEY.txt (+ KEY.json, unused).\n"
                    "Each input tar becomes one output shard named after it: 00042.tar -> 00042.dino.npy +\n"
                    "00042.clip.npy, rows in the tar's order. Samples without an image (or, with --target\n"
                    "text, a caption that is UTF-8 and not empty) and images that do not decode are left out and\n"
                    "counted. A tar whose two output files exist is skipped, so several processes (e.g. one\n"
                    "per GPU) can share an --out directory if they are given disjoint tars. extract.json\n"
                    "records each shard's tar (its size and a sample of its bytes; its path for messages): a\n"
                    "tar of the same name with other contents (another folder's 00000.tar, or one changed\n"
                    "since) is refused; the same tars moved elsewhere resume. Two processes must not be given\n"
                    "tars of one name: both would write its shard.",
    )
    p.add_argument("inputs", nargs="+", metavar="TAR|DIR",
                   help="tar files (plain or compressed), or directories whose tar files (*.tar, *.tar.gz, "
                        "*.tgz, *.tar.xz, ...) are taken in name order")
    _common(p, target=True)

    for kind, dataset_json, images_help in (
        ("coco", "dataset_coco.json", "the COCO image root: images are at ROOT/FILEPATH/FILENAME (val2014/COCO_val2014_*.jpg) or ROOT/FILENAME"),
        ("flickr", "dataset_flickr30k.json or dataset_flickr8k.json", "the folder holding the Flickr images (flickr30k-images/ or Flicker8k_Dataset/)"),
    ):
        name = "eval-" + kind
        example = "mscoco-5k" if kind == "coco" else "flickr30k-1k / flickr8k-1k"
        kind_small, small_n = ("mscoco-4", 4) if kind == "coco" else ("flickr30k-1500", 1500)
        p = sub.add_parser(
            name, help=f"Karpathy-split {kind} test set -> evaluation set directory",
            formatter_class=argparse.RawDescriptionHelpFormatter,
            description=f"An evaluation set from the Karpathy split json ({dataset_json}): the images of --split\n"
                        f"(default test) in the json's order, and all their captions (the 'raw' sentences).\n"
                        f"Writes images.dino.npy, images.clip.npy, captions.clip.npy, captions.image.npy (int64)\n"
                        f"and eval.json, whose name defaults to the json's dataset and the number of images, in\n"
                        f"thousands when a whole number of them ({example} for the full test split, {kind_small}\n"
                        f"for {small_n} images). An image listed twice in the split is an error; empty captions are\n"
                        f"left out, and counted. A directory holding all five is skipped, and refused if its\n"
                        f"eval.json records other inputs, models or dtype.",
        )
        p.add_argument("--karpathy", required=True, metavar="JSON", help=f"the Karpathy split file ({dataset_json})")
        p.add_argument("--images", required=True, metavar="ROOT", help=images_help)
        p.add_argument("--split", default="test", help="which split (default: %(default)s)")
        p.add_argument("--name", help="the set's name in eval.json (default: the json's dataset and number of "
                                      "images, e.g. " + example + ")")
        _common(p, target=False)

    p = sub.add_parser(
        "texts", help="one text per line -> CLIP text embeddings (search queries)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="CLIP text embeddings of the lines of a UTF-8 text file: row i of --out is line i + 1,\n"
                    "raw (not normalised), float32 (or float16 with --float16), the queries of\n"
                    "`dinoclip search`. Use the CLIP model the index's model was trained towards. An empty\n"
                    "line is an error, but empty lines at the end are ignored. Only CLIP is loaded.",
    )
    p.add_argument("file", metavar="FILE", help="text file, one query per line")
    p.add_argument("--out", required=True, metavar="FILE.npy",
                   help="output .npy file (written whole or not at all; a symbolic link there is followed: the "
                        "file it leads to is replaced)")
    p.add_argument("--clip", default=encoders.DEFAULT_CLIP, metavar="NAME|PATH",
                   help="CLIP model (and its tokenizer): Hugging Face name or local directory (default: %(default)s)")
    p.add_argument("--device", default=None,
                   help="torch device, e.g. cuda, cpu (default: cuda when available, else cpu)")
    p.add_argument("--batch-size", type=int, default=256, metavar="N", help="texts per batch, at most 2^20 (default: %(default)s)")
    p.add_argument("--precision", choices=("fp32", "tf32", "bf16", "fp16"), default="fp32",
                   help="model arithmetic (default fp32); the file is float32 either way unless --float16")
    p.add_argument("--float16", action="store_true", help="write float16 instead of float32")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


def _run(args) -> int:
    """Runs the subcommand of ``args``; its status, its error said on stderr in one line."""
    try:
        # before any input is read or model loaded; `texts` writes a file, the others a directory
        if args.command != "texts" and os.path.exists(args.out) and not os.path.isdir(args.out):
            raise ExtractError(f"--out {args.out} exists and is not a directory")
        if args.command != "texts" and not os.path.isdir(args.out):
            _check_out(args.out)  # one to create: under a file, or in an unwritable directory
        if args.command != "texts":
            _check_place(args.out, f"--out {args.out}",
                         "the shards" if args.command.startswith("train-") else "the evaluation set")
            _check_other_output(args.out, training=args.command.startswith("train-"))
        if args.command == "train-folder":
            return cmd_train_folder(args)
        if args.command == "train-wds":
            return cmd_train_wds(args)
        if args.command == "texts":
            return cmd_texts(args)
        return cmd_eval(args, "coco" if args.command == "eval-coco" else "flickr")
    except (ExtractError, encoders.ModelUnavailable) as e:
        error(str(e))
        return 1
    except OSError as e:  # writing the outputs: no space, no permission, --out under a file
        error(oserror_message(e))
        return 1
    except KeyboardInterrupt:
        error("interrupted; run the same command again to resume")
        return 130


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # A --clip that --target none would leave unused is refused, not silently ignored (a run meant
    # to write targets, say, missing its --target).
    if getattr(args, "target", None) == "none" and args.clip is not None:
        error(f"--clip {args.clip}: --target none loads no CLIP model (it extracts DINOv2 "
              "features alone); drop --clip, or name another --target")
        return 2
    if args.clip is None:
        args.clip = encoders.DEFAULT_CLIP
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if getattr(args, "workers", 0) is None:
        args.workers = min(8, usable_cpus())
    if args.batch_size < 1:
        error("--batch-size must be at least 1")
        return 2
    # (Refused before the models load: one beyond an index's range failed in the DataLoader, after.)
    if args.batch_size > MAX_BATCH:
        error(f"--batch-size {args.batch_size}: more than {MAX_BATCH}, beyond what a device "
              f"holds in one batch")
        return 2
    if getattr(args, "workers", 0) < 0:
        error("--workers must not be negative")
        return 2
    # Each worker is a process of its own (hundreds of MB): 100000 of them forked until the
    # system's OOM killer ran, leaving orphans holding the terminal.
    if getattr(args, "workers", 0) > (most := 4 * usable_cpus()):
        error(f"--workers {args.workers}: more than {most} (4 per CPU here); each worker is a "
              "process decoding images, and more than the CPUs can run only take memory")
        return 2
    try:
        torch.device(args.device)
    except RuntimeError as e:
        error(f"--device {args.device}: {e}")
        return 2
    # A run that fails (a model of the wrong kind, an input refused) leaves no empty --out
    # behind: the directories it made (for texts, the file's), while nothing is in them.
    made = missing_dirs(args.out if args.command != "texts" else os.path.dirname(args.out))
    rc = 1
    try:
        rc = _run(args)
        return rc
    finally:
        if rc != 0:
            for out in list(_first_records):
                _drop_first_record(out)
            remove_empty(made)
        _first_records.clear()  # (a process running main again judges its own records only)


if __name__ == "__main__":
    exit_on_sigterm()
    sys.exit(main())
