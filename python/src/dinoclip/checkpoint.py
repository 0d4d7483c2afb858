"""Reading and writing dinoclip model checkpoints (docs/FORMAT.md).

A model is a safetensors file ``model.safetensors``:

- one F32 tensor per ``state_dict`` entry of :class:`~dinoclip.model.ProjectorWithResiduals`,
  with the original names and shapes, stored (header and data) in state_dict order;
- ``__metadata__``: ``format`` = ``dinoclip-model/1`` and ``config`` = compact JSON
  ``{"input_dim":768,"hidden_dim":2048,"output_dim":512,"num_residual_blocks":6}``,
  ``dinoclip.sha256`` = the hex SHA-256 of the tensor table and data (:data:`SHA256_KEY`), plus
  whatever else the writer adds (training writes ``step``, ``epoch`` and ``metrics``).

:func:`save` writes exactly what the Go side writes for the same parameters and metadata (metadata
first with sorted keys, then the tensors in order; the header padded with spaces to a multiple of 8
bytes), to a temporary file that is renamed into place. :func:`load` accepts a model file, a
checkpoint directory holding one, or a training run directory (its ``best`` checkpoint, else its
``last``), like ``dinoclip project --model``, and refuses a file whose tensors do not match their
recorded SHA-256 (one without the key, such as ``save_file``'s, loads unverified). The metadata it
hands back lacks that key: it was verified, and :func:`save` records it anew.

Example::

    from dinoclip import checkpoint
    model = checkpoint.load("runs/base")            # best (else last) checkpoint of a run
    emb = model(torch.from_numpy(features))          # [n, 512], not normalised
    checkpoint.save(model, "copy/model.safetensors")
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import struct
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, Dict, Iterable, List, Mapping, Optional, Tuple, Union


import numpy as np
import torch

from ._files import NotRegularFileError, file_kind, open_regular, read_regular, usable_cpus, write_atomic
from ._messages import shell_arg
from .model import CONFIG_KEYS, ProjectorWithResiduals

__all__ = [
    "MODEL_FILE",
    "OPTIMIZER_FILE",
    "MODEL_FORMAT",
    "STATE_FORMATS",
    "is_state_format",
    "SHA256_KEY",
    "CheckpointError",
    "resolve",
    "read_metadata",
    "read_config",
    "infer_config",
    "check_state_dict",
    "load_state_dict",
    "load",
    "save",
    "save_state_dict",
    "encode_safetensors_header",
]

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
MODEL_FORMAT = "dinoclip-model/1"
# The formats of a training checkpoint's trainer state, its optimizer and float64 files (the Go
# side's checkpoint.OptimizerFormat and Float64Format), which no model's reader takes; a format of
# their families, of any version, is one (is_state_format).
STATE_FORMATS = ("dinoclip-optimizer/1", "dinoclip-float64/1")


def is_state_format(fmt: str) -> bool:
    """Whether ``fmt`` is a trainer state's format, of any version (the Go side's IsStateFormat)."""
    return fmt.split("/", 1)[0] in {f.split("/", 1)[0] for f in STATE_FORMATS}


# The metadata key under which every file dinoclip writes records, as 64 lowercase hex digits, the
# SHA-256 of a listing of its tensors in file order (by data offset), one line each:
#   <byte length of name>:<name>\t<dtype>\t<comma-joined shape>\t<begin>\t<end>\t<hex SHA-256 of its bytes>\n
# as the Go side's safetensors.SHA256Key: it covers names, dtypes, shapes, offsets and data (not
# the rest of the metadata). load verifies it when present, so a flipped bit, an edited tensor or
# swapped offsets fail to load instead of giving wrong numbers; files without it (save_file's)
# load unverified. It guards against accidents, not deliberate edits (anyone can recompute it).
SHA256_KEY = "dinoclip.sha256"
# The tag safetensors' own save_model/save_file helpers for PyTorch write: a
# state_dict saved that way is a model file too.
TORCH_FORMAT = "pt"
BEST_LINK = "best"
LAST_LINK = "last"
# The moving average of a run's weights, beside model.safetensors in a checkpoint of a run with
# --ema; a run with --best-from ema (run.json's options.best_from) is that model.
EMA_FILE = "ema.safetensors"
RUN_FILE = "run.json"
# What is read of a run.json at most, as on the Go side: its largest part records the training files,
# a few hundred bytes each, and one replaced by a huge file must not fill memory before it is refused.
MAX_RUN_FILE_BYTES = 256 << 20
CHECKPOINTS_DIR = "checkpoints"  # a run's checkpoints, which its links lead into

PathLike = Union[str, "os.PathLike[str]"]


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or does not fit the model."""


# ---------------------------------------------------------------------------
# paths


def _run_record(run: str) -> Tuple[bool, str]:
    """Of the run directory ``run``'s run.json: whether it picks its best checkpoint by the
    moving average of its weights (``--best-from ema``: its model is then each checkpoint's
    :data:`EMA_FILE`), and the best checkpoint it records, relative to the run ("" for none). As
    the Go side reads it: a run.json that is missing, unreadable or edited to name neither model
    records no best, and says no where the run keeps no moving average; where it does, which
    model is the run's is unknown, and the raw weights are another model, not a stand-in: an
    error."""
    path = os.path.join(run, RUN_FILE)
    try:
        # (UTF-8 only, as Go reads it: json.loads would take UTF-16 bytes too)
        text = read_regular(path, MAX_RUN_FILE_BYTES).decode("utf-8")  # (not a named pipe, which would block)
        doc = json.loads(text, object_pairs_hook=lambda pairs: _no_duplicates(pairs, fold=True))
        # As Go's encoding/json reads it: a key matched ignoring case, and null as absent.
        options = _folded(doc, "options") if isinstance(doc, dict) else 0
        options = {} if options is None else options
        best_from = _folded(options, "best_from") if isinstance(options, dict) else 0
        best = _folded(doc, "best") if isinstance(doc, dict) else None
        best = _folded(best, "checkpoint") if isinstance(best, dict) else ""
        # (only as a run records it: a value of another kind, or a path out of the run, is none)
        best = best if isinstance(best, str) and _BEST_NAME.fullmatch(best) else ""
        if best_from == "ema":
            return True, best
        if best_from in ("", "raw", None):
            return False, best
        problem = f"options.best_from {best_from!r} is neither 'raw' nor 'ema' (an edited run.json?)"
    except NotRegularFileError as e:
        raise CheckpointError(f"model: {e}") from None  # (as the Go side refuses it)
    except _DuplicateKey as e:
        problem = f"{e} appears twice in one object, ignoring case (an edited run.json?)"
    except (OSError, ValueError, RecursionError) as e:
        problem = str(e)
    for link in (BEST_LINK, LAST_LINK):
        ema = os.path.join(run, link, EMA_FILE)
        if os.path.exists(ema):
            raise CheckpointError(f"model: {path}: {problem}: without it, whether the run's model is its weights "
                                  f"or their moving average ({ema}) is unknown; name the model file")
    return False, ""


# How run.json records a best checkpoint, and a link names one: relative to the run.
_BEST_NAME = re.compile(CHECKPOINTS_DIR + r"/step-([0-9]{8,})")


def _step_of(name: str) -> Optional[int]:
    m = _BEST_NAME.fullmatch(name)
    return int(m[1]) if m else None


def _best_problem(run: str, recorded: str) -> str:
    """What is wrong with the run directory ``run``'s best link where the Go side's commands
    refuse it (its checkpoint.BestProblem), with the command that mends it: it is no link (a file:
    a link git or a copy stored as its text; a directory without a model; another kind), or it is
    absent while run.json records a best checkpoint (``recorded``) that is there: falling back to
    last would pick another model. "" otherwise: a copy that followed the links (a directory
    holding the model) is a best; a run whose recorded best is gone, or recorded after its last
    checkpoint (a resume going back removes the link before it rewrites run.json), has none."""
    best = os.path.join(run, BEST_LINK)
    # (a model that is a link leading nowhere is there: resolve names it)
    there = bool(recorded) and os.path.lexists(os.path.join(run, recorded, MODEL_FILE))
    try:
        st = os.lstat(best)
    except FileNotFoundError:
        if not there:
            return ""
        try:
            last = _step_of(os.readlink(os.path.join(run, LAST_LINK)))
        except OSError:
            last = None
        if last is not None and _step_of(recorded) > last:
            return ""
        return (f"it records its best checkpoint {recorded} in {RUN_FILE}, but has no {BEST_LINK} link (a copy "
                f"that left links out?); link it again (ln -s {recorded} {shell_arg(best)})")
    except OSError:
        return ""
    if stat.S_ISLNK(st.st_mode):
        return ""
    if stat.S_ISDIR(st.st_mode):
        if os.path.exists(os.path.join(best, MODEL_FILE)):
            return ""
        what = f"a directory that holds no {MODEL_FILE}"
    else:
        what = "a file" if stat.S_ISREG(st.st_mode) else file_kind(st.st_mode)
    aside = f"mv {shell_arg(best)} {shell_arg(best + '.damaged')}"
    if not there:
        return (f"its {BEST_LINK} is {what}, not a link to its best checkpoint, which is gone; move it aside ({aside}), "
                "and its last checkpoint is used")
    return f"its {BEST_LINK} is {what}, not a link to its best checkpoint; link it again ({aside} && ln -s {recorded} {shell_arg(best)})"


def _broken_link(p: str) -> Optional[str]:
    """The error of the model file ``p`` where it is a symbolic link that cannot be opened (to a
    disk not mounted, a loop), as the Go side says it (brokenLink): not "no model"."""
    if not os.path.islink(p) or os.path.exists(p):
        return None
    try:
        os.stat(p)
        why = "it is gone"
    except OSError as e:
        why = (e.strerror or str(e)).lower()
    return f"model: {p} is a symbolic link to {os.readlink(p)}, which cannot be opened ({why})"


def resolve(path: PathLike) -> str:
    """The model file meant by ``path``, as the Go side resolves it: the file itself,
    ``path/model.safetensors``, or the ``best`` (else ``last``) checkpoint of a run directory;
    of a run with ``--best-from ema``, that checkpoint's moving average (:data:`EMA_FILE`)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        broken = _broken_link(path)
        if broken:
            raise CheckpointError(broken)
        raise FileNotFoundError(f"model: {path}: no such file or directory")
    if not os.path.isdir(path):
        return path
    def follow(link: str, file: str) -> str:
        # A link out of the run's checkpoints (edited, or pointed at another run's) would give
        # another run's model under this run's name: the link taken is checked as it is taken, by
        # where it and the checkpoints directory lead (relative or absolute).
        p = os.path.join(path, link)
        if os.path.islink(p) and os.path.exists(p):
            checkpoints = os.path.join(path, CHECKPOINTS_DIR)
            if not os.path.isdir(checkpoints) or os.path.dirname(os.path.realpath(p)) != os.path.realpath(checkpoints):
                raise CheckpointError(f"model: {path}'s {link} link leads to {os.readlink(p)}, not into its "
                                      f"{CHECKPOINTS_DIR} (an edited run?); name a model file to use another run's")
        return os.path.join(p, file)

    from_ema, recorded = _run_record(path)
    problem = _best_problem(path, recorded)
    if problem:
        raise CheckpointError(f"model: {path}: {problem}, or name a model file (for instance "
                              f"{os.path.join(path, LAST_LINK, MODEL_FILE)})")
    if from_ema:
        # without it, the raw weights beside it are another model, not a stand-in
        for link in (BEST_LINK, LAST_LINK):
            if not os.path.lexists(os.path.join(path, link)):
                continue
            ema = follow(link, EMA_FILE)
            if not os.path.exists(ema):
                raise CheckpointError(_broken_link(ema) or f"model: {path} picks its best checkpoint by the moving average of the "
                                      f"weights, but {ema} is missing; name a model file to use another")
            return ema
    # What exists is taken, as the Go side takes it: a named pipe or a directory in its place is
    # refused when it is read, not passed over for another checkpoint's model.
    best = os.path.join(path, BEST_LINK)
    if os.path.islink(best) and not os.path.exists(os.path.join(best, MODEL_FILE)):
        broken = _broken_link(os.path.join(best, MODEL_FILE))
        if broken:
            raise CheckpointError(broken)
        raise CheckpointError(f"model: {path}'s best checkpoint {best} is missing; name a model file (for "
                              f"instance {os.path.join(path, LAST_LINK, MODEL_FILE)}) to use another")
    model = os.path.join(path, MODEL_FILE)
    if os.path.exists(model):
        return model
    broken = _broken_link(model)
    if broken:
        raise CheckpointError(broken)
    for link in (BEST_LINK, LAST_LINK):
        if os.path.exists(os.path.join(path, link, MODEL_FILE)):
            return follow(link, MODEL_FILE)
    broken = _broken_link(os.path.join(path, LAST_LINK, MODEL_FILE))
    if broken:
        raise CheckpointError(broken)
    raise CheckpointError(
        f"model: {path} holds no {MODEL_FILE}, and no best or last checkpoint of a run"
    )


# ---------------------------------------------------------------------------
# safetensors header


# the Go side's safetensors.MaxHeaderSize (the reference implementation's limit)
_MAX_HEADER = 100_000_000


def _read_header(path: str) -> Tuple[dict, int]:
    """The parsed JSON header of a safetensors file and the offset of its data."""
    with open_regular(path) as f:
        header, data_start, _ = _parse_header(f, path)
        return header, data_start


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: List[Tuple[str, object]], fold: bool = False) -> dict:
    """A JSON object refusing a repeated key, as the Go side does (json keeps the last); with
    ``fold``, for a document the Go side decodes into a struct (run.json), keys that differ in case
    only count as the same, as encoding/json matches them to one field."""
    seen = set()
    for k, _ in pairs:
        key = k.casefold() if fold else k
        if key in seen:
            raise _DuplicateKey(k)
        seen.add(key)
    return dict(pairs)


def _folded(d: dict, key: str):
    """``d[key]`` as Go's encoding/json finds a struct field's key: the key itself, else one equal
    to it but for case (None: absent)."""
    if key in d:
        return d[key]
    return next((v for k, v in d.items() if k.casefold() == key), None)


def _pickle_protocol(head: bytes) -> int:
    """The protocol of a pickle that begins with ``head``: its PROTO opcode (0x80) and version, as
    ``pickle.dump`` and torch.save's legacy format write them (protocols 2 to 5); 0 for none."""
    return head[1] if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5 else 0


def _parse_header(f: BinaryIO, path: str) -> Tuple[dict, int, List[Tuple[str, str, List[int], int, int]]]:
    """The parsed JSON header of the safetensors file ``f`` (read from its start, no more than the
    header: 8 + N bytes; ``path`` names it in errors), the offset of its data and its tensors
    (:func:`_table`). A repeated key, a malformed :data:`SHA256_KEY` or tensor entry is refused."""
    head = f.read(8)
    if len(head) != 8:
        raise CheckpointError(f"{path}: not a safetensors file (shorter than 8 bytes)")
    (n,) = struct.unpack("<Q", head)
    # torch.save's zip archive (PyTorch 1.6 on) or bare pickle (protocol 2 on): the original
    # project's checkpoint, told as the Go side tells it, where its bytes make no header length
    # (one beyond the limit or past the file's end; a valid one may begin with the same bytes:
    # 0x80 0x02 is a length of 640 mod 65536) and no header's opening brace follows (a
    # safetensors file cut short; neither of torch's formats has one there)
    torch = head.startswith(b"PK\x03\x04") or _pickle_protocol(head) > 0
    torch_error = CheckpointError(f"{path}: a PyTorch file (torch.save's format), not safetensors: "
                                  "python -m dinoclip.convert to-dinoclip converts a state_dict")
    if n > _MAX_HEADER:
        raise torch_error if torch and f.read(1) != b"{" else \
            CheckpointError(f"{path}: not a safetensors file (header length {n})")
    raw = f.read(n)
    if len(raw) != n:
        raise torch_error if torch and raw[:1] != b"{" else CheckpointError(f"{path}: truncated safetensors header")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except _DuplicateKey as e:
        raise CheckpointError(f"{path}: malformed safetensors header: duplicate key {e.args[0]!r}") from None
    except (ValueError, RecursionError) as e:  # not UTF-8, not JSON, nested too deep, an integer of 4300+ digits
        raise CheckpointError(f"{path}: not a safetensors file ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a safetensors file (header is not a JSON object)")
    meta = header.get("__metadata__")
    if meta is not None and not isinstance(meta, dict):
        raise CheckpointError(f"{path}: malformed safetensors header: __metadata__ is not an object")
    for k, v in (meta or {}).items():
        if not isinstance(v, str):  # (the safetensors library's own words name no key)
            raise CheckpointError(f"{path}: malformed safetensors header: __metadata__ value for {k!r} must be a "
                                  f"string, not {json.dumps(v)}")
    recorded = (meta or {}).get(SHA256_KEY)
    if recorded is not None and not (isinstance(recorded, str) and re.fullmatch(r"[0-9a-f]{64}", recorded)):
        raise CheckpointError(f"{path}: metadata {SHA256_KEY} {recorded!r} is not a SHA-256 "
                              "(64 lowercase hex digits): the file is corrupt or was edited")
    # every tensor entry checked, as the Go side checks the whole header
    return header, 8 + n, _table(header, path)


def _metadata(header: Mapping[str, object]) -> Dict[str, str]:
    """A header's ``__metadata__`` as strings, less :data:`SHA256_KEY` (verified on load, and
    recorded anew by :func:`save`: not for callers to copy into a file of other tensors)."""
    meta = header.get("__metadata__") or {}
    return {str(k): str(v) for k, v in meta.items() if k != SHA256_KEY}


def _is_count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _encodes(s: str) -> bool:
    """Whether ``s`` is valid Unicode (JSON's escapes can make a lone surrogate)."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# The bytes of an element of each whole-byte safetensors dtype (a tensor of another, F4 say, is left
# to the safetensors library, which reads the tensors).
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2, "F16": 2,
                "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def _bytes_needed(shape: List[int], size: int) -> Optional[int]:
    """The bytes of a tensor of ``shape`` and elements of ``size`` bytes, or None where they are
    2^64 or more (no file holds them): worked out a dimension at a time, as a hostile header's
    thousands of huge dimensions would make a product of millions of digits."""
    if 0 in shape:
        return 0
    total = size
    for d in shape:
        total *= d
        if total >= 1 << 64:
            return None
    return total


def _table(header: Mapping[str, object], path: str) -> List[Tuple[str, str, List[int], int, int]]:
    """The header's tensors as (name, dtype, shape, begin, end) in file order (by data offset,
    header order among empty tensors at one offset, as the Go side orders them), refusing
    entries that are not well formed and byte ranges that do not tile the data from 0."""
    table = []
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(t, dict):
            raise CheckpointError(f"{path}: malformed safetensors header: tensor {name!r} is not an object")
        unknown = sorted(set(t) - {"dtype", "shape", "data_offsets"})
        if unknown:  # (as the Go side refuses them: no writer puts other fields there)
            raise CheckpointError(f"{path}: malformed safetensors header: tensor {name!r} has unknown field {unknown[0]!r}")
        dtype, shape, offsets = t.get("dtype"), t.get("shape"), t.get("data_offsets")
        if (not isinstance(dtype, str) or not isinstance(shape, list) or not all(map(_is_count, shape))
                or not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_is_count, offsets))
                or offsets[0] > offsets[1] or not _encodes(name) or not _encodes(dtype)):
            raise CheckpointError(f"{path}: malformed safetensors header: tensor {name!r} {t!r}")
        size, held = _DTYPE_BYTES.get(dtype), offsets[1] - offsets[0]
        need = size is not None and _bytes_needed(shape, size)
        if need is not False and need != held:
            # (the safetensors library's own words name no tensor)
            shown = ", ".join(map(str, shape[:8])) + (", ..." if len(shape) > 8 else "")
            raise CheckpointError(f"{path}: malformed safetensors header: tensor {name!r}: shape [{shown}] of {dtype} "
                                  f"needs {'2^64 or more' if need is None else need} bytes but data_offsets "
                                  f"{offsets} hold {held}")
        table.append((name, dtype, shape, offsets[0], offsets[1]))
    table.sort(key=lambda t: (t[3], t[4]))
    pos = 0
    for name, _, _, begin, end in table:
        if begin != pos:
            raise CheckpointError(f"{path}: not a safetensors file (tensor {name!r} at bytes [{begin}, {end}] "
                                  f"of the data, the tensors before it end at {pos})")
        pos = end
    return table


def _table_sha256(entries: Iterable[Tuple[str, str, Iterable[int], int, int, object]]) -> str:
    """The :data:`SHA256_KEY` value of tensors given as (name, dtype, shape, begin, end, bytes) in
    file order: the hex SHA-256 of their canonical listing."""
    entries = list(entries)
    # hashlib lets go of the GIL while it hashes a large buffer, so threads hash tensors in parallel
    # (the default model's 54.6M parameters: 218 MB)
    with ThreadPoolExecutor(max_workers=max(1, min(len(entries), usable_cpus()))) as pool:
        digests = list(pool.map(lambda e: hashlib.sha256(e[5]).hexdigest().encode(), entries))
    listing = []
    for (name, dtype, shape, begin, end, _), digest in zip(entries, digests):
        b = name.encode("utf-8")
        shape = ",".join(str(int(d)) for d in shape)
        listing.append(b"%d:%s\t%s\t%s\t%d\t%d\t%s\n" % (len(b), b, dtype.encode("utf-8"), shape.encode(), begin, end,
                                                   digest))
    return hashlib.sha256(b"".join(listing)).hexdigest()


def read_metadata(path: PathLike) -> Dict[str, str]:
    """The ``__metadata__`` of a model file (after :func:`resolve`), less :data:`SHA256_KEY`; the
    header only, so the tensors' SHA-256 is not verified (:func:`load` verifies it)."""
    header, _ = _read_header(resolve(path))
    return _metadata(header)


def infer_config(shapes: Mapping[str, Iterable[int]]) -> Dict[str, int]:
    """A model config read from tensor shapes: ``input_proj.weight`` is [hidden, input],
    ``output_proj.2.weight`` is [output, hidden//2], and the residual blocks are counted."""
    s = {k: tuple(int(d) for d in v) for k, v in shapes.items()}
    inp, out = s.get("input_proj.weight"), s.get("output_proj.2.weight")
    # (One present but of another rank is named as such: "no ... matrices" read as if it were missing.)
    odd = [f"{name} has shape {list(shape)}, not a matrix" for name, shape in
           (("input_proj.weight", inp), ("output_proj.2.weight", out)) if shape is not None and len(shape) != 2]
    if odd:
        raise CheckpointError(f"no model config, and {' and '.join(odd)}: the shape cannot be inferred from it")
    if inp is None or out is None:
        raise CheckpointError(
            "no model config, and no input_proj.weight and output_proj.2.weight matrices "
            "to infer it from"
        )
    blocks = 0
    while f"residual_blocks.{blocks}.layers.0.weight" in s:
        blocks += 1
    return {
        "input_dim": inp[1],
        "hidden_dim": inp[0],
        "output_dim": out[0],
        "num_residual_blocks": blocks,
    }


def _parse_config(text: str, where: str) -> Dict[str, int]:
    try:
        # A key given twice is refused, as the Go side refuses it (strictjson: keys matched ignoring
        # case): json would take the last, and a tampered config would have two readings.
        c = json.loads(text, object_pairs_hook=lambda pairs: _no_duplicates(pairs, fold=True))
    except _DuplicateKey as e:
        raise CheckpointError(f"{where}: metadata config {text!r}: key {e.args[0]!r} appears twice in one object "
                              "(keys are matched ignoring case)") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{where}: metadata config {text!r}: {e}") from None
    if not isinstance(c, dict):
        raise CheckpointError(f"{where}: metadata config {text!r} is not a JSON object")
    out = {}
    for k in CONFIG_KEYS:
        v = c.get(k)
        if not isinstance(v, int) or isinstance(v, bool):
            raise CheckpointError(f"{where}: metadata config {text!r}: {k} is missing or not an integer")
        out[k] = v
    return out


# The Go side's nn.MaxWeights: the most weight-matrix entries of a model it handles (2^31 - 1
# float32 values, 8 GiB; the default model has 54 million).
MAX_WEIGHTS = (1 << 31) - 1
# The Go side's nn.MaxBlocks: the most residual blocks of a model it handles (a narrow width would
# let hundreds of millions through MAX_WEIGHTS).
MAX_BLOCKS = 4096
# The tensors of one residual block (two Linears and two LayerNorms): a file of N tensors holds
# no more than N / 8 blocks.
_TENSORS_PER_BLOCK = 8
# The arithmetic of the run that wrote a model (train --precision), when recorded.
_PRECISIONS = ("fp32", "bf16", "fp64")
_INT64_MAX = (1 << 63) - 1


def _check_meta(meta: Mapping[str, str], where: str, writing: bool = False) -> None:
    """Refuses metadata that the Go side refuses (checkModelMeta): another format (an optimizer
    or float64 state, a later format), a step or epoch that is not a count as the trainer writes
    it (decimal digits within int64), a precision other than train's. ``writing``: the metadata
    is the caller's, to be written (not a file's, which only a tampering gives such values)."""
    tampered = "" if writing else " (a tampered file?)"
    fmt = meta.get("format")
    if fmt is not None and fmt not in (MODEL_FORMAT, TORCH_FORMAT):
        raise CheckpointError(f"{where}: format {fmt!r}, want {MODEL_FORMAT!r}: not a model file "
                              "(an optimizer or float64 state, or a newer dinoclip's format)")
    for key in ("step", "epoch"):
        v = meta.get(key)
        if v is not None and not (v.isascii() and v.isdigit() and int(v) <= _INT64_MAX):
            raise CheckpointError(f"{where}: metadata {key} {v!r} is not a count (decimal digits){tampered}")
    p = meta.get("precision")
    if p is not None and p not in _PRECISIONS:
        raise CheckpointError(f"{where}: metadata precision {p!r}, want {', '.join(_PRECISIONS[:-1])} or "
                              f"{_PRECISIONS[-1]}{tampered}")


def _config(meta: Mapping[str, str], shapes: Mapping[str, Iterable[int]], where: str) -> Dict[str, int]:
    """A model file's shape, from its metadata ``config``, else inferred from its tensors'
    ``shapes``, refused (as the Go side's nn.Config.Validate refuses it) when it has more than
    :data:`MAX_WEIGHTS` weights: before anything of that size is built or read."""
    if "config" in meta:
        c = _parse_config(meta["config"], where)
    else:
        try:
            c = infer_config(shapes)
        except CheckpointError as e:
            raise CheckpointError(f"{where}: {e}") from None
    _check_size(c, where)
    return c


def _check_size(c: Mapping[str, int], where: str) -> None:
    """Refuses a config of more than :data:`MAX_WEIGHTS` weights or :data:`MAX_BLOCKS` blocks (as
    the Go side's nn.Config.Validate does), before anything of that size is built or read."""
    i, h, o, b = (c[k] for k in CONFIG_KEYS)
    if b > MAX_BLOCKS:
        raise CheckpointError(f"{where}: {b} residual blocks, more than the {MAX_BLOCKS} dinoclip handles")
    # exact in Python's integers; a negative dimension is left to the model's own check
    weights = i * h + b * 2 * h * h + h * (h // 2) + (h // 2) * o
    if weights > MAX_WEIGHTS:
        raise CheckpointError(f"{where}: {i} -> {h} x {b} residual blocks -> {h // 2} -> {o} has "
                              f"{float(weights):.3g} weights, more than the {MAX_WEIGHTS} dinoclip handles")


def read_config(path: PathLike) -> Dict[str, int]:
    """A model file's shape: from its metadata ``config``, else inferred from its tensors."""
    p = resolve(path)
    header, _ = _read_header(p)
    meta = _metadata(header)
    _check_meta(meta, p)
    return _config(meta, _shapes(header), p)


def _shapes(header: Mapping[str, object]) -> Dict[str, Tuple[int, ...]]:
    """The tensor shapes a (checked: :func:`_table`) safetensors header records, in its order."""
    return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}


# How many entries of a list of problems (tensors missing, unexpected, mis-shaped or of another
# dtype) a message names, as the Go side's checkpoint.shownProblems: a file of 200,000 stray
# tensors made a line of megabytes.
SHOWN_PROBLEMS = 10


def _shown(items: Iterable[str], sep: str = "; ") -> str:
    """``items`` joined by ``sep``: the first :data:`SHOWN_PROBLEMS`, then "and N more" for the
    rest, as the Go side lists them."""
    items = list(items)
    if len(items) > SHOWN_PROBLEMS:
        items = items[:SHOWN_PROBLEMS] + [f"and {len(items) - SHOWN_PROBLEMS} more"]
    return sep.join(items)


def _shape_problems(got: Mapping[str, Tuple[int, ...]], want: Mapping[str, Tuple[int, ...]]) -> List[str]:
    """Every name missing from ``got``, unexpected in it or of another shape than ``want``'s, one
    message each (a message joins them with :func:`_shown`)."""
    problems = []
    for name, shape in want.items():
        if name not in got:
            problems.append(f"missing {name}")
        elif got[name] != shape:
            problems.append(f"{name} has shape {list(got[name])}, want {list(shape)}")
    problems += [f"unexpected {name}" for name in got if name not in want]
    return problems


def check_state_dict(
    state_dict: Mapping[str, object], model: torch.nn.Module
) -> List[str]:
    """What keeps ``state_dict`` from loading strictly into ``model``: missing and unexpected
    names and wrong shapes, one message each (empty when it fits)."""
    return _shape_problems({k: tuple(getattr(v, "shape", ())) for k, v in state_dict.items()},
                           {k: tuple(t.shape) for k, t in model.state_dict().items()})


def _model_shapes(config: Mapping[str, int], where: str) -> Dict[str, Tuple[int, ...]]:
    """The state_dict names and shapes of a model of ``config``, in order, from a model built on
    the meta device (no weights allocated)."""
    try:
        with torch.device("meta"):
            model = ProjectorWithResiduals.from_config(config)
    except ValueError as e:
        raise CheckpointError(f"{where}: {e}") from None
    return {k: tuple(t.shape) for k, t in model.state_dict().items()}


def _check_finite(sd: Mapping[str, torch.Tensor], names: Iterable[str], where: str) -> None:
    """Refuses NaN or infinite weights (as float32: a float64 beyond its range is infinite
    there), naming the first as the Go side does (NonFiniteError): such a model's every output
    is NaN."""
    for name in names:
        v = sd[name]
        if not torch.is_floating_point(v):
            continue  # (refused as not floating point by the caller)
        bad = torch.nonzero(~torch.isfinite(v.to(torch.float32).reshape(-1)))
        if len(bad):
            i = int(bad[0])
            stored = float(v.reshape(-1)[i])
            if math.isfinite(stored):
                # finite as stored (a float64 beyond float32's largest, 3.4e38): "+Inf" would call
                # a finite number infinite, and point at a diverged run rather than at the dtype
                raise CheckpointError(f"{where}: {name}[{i}] is {stored:g}, a float64 beyond float32's range "
                                      f"({'+Inf' if stored > 0 else '-Inf'} in float32): the model's weights "
                                      "must be finite float32 numbers")
            value = "NaN" if stored != stored else ("+Inf" if stored > 0 else "-Inf")
            raise CheckpointError(f"{where}: {name}[{i}] is {value}: the model's weights must be finite numbers "
                                  "(a run that diverged leaves NaN weights; use an earlier checkpoint)")


# The dtypes a weight may be stored in: those the Go side converts to float32 (an integer is no
# weight; float8 formats it does not read).
_WEIGHT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _check_float(sd: Mapping[str, torch.Tensor], where: str) -> None:
    """Refuses tensors whose dtype is not one of :data:`_WEIGHT_DTYPES`."""
    bad = [f"{k} ({v.dtype})" for k, v in sd.items() if v.dtype not in _WEIGHT_DTYPES]
    if bad:
        raise CheckpointError(f"{where}: tensors {_shown(bad, ', ')} are not float32, float16, bfloat16 or float64")


def _load_into(model: ProjectorWithResiduals, sd: Mapping[str, torch.Tensor]) -> None:
    """Loads ``sd`` (its names, shapes and dtypes checked) into ``model``."""
    model.load_state_dict({k: v.to(torch.float32) for k, v in sd.items()}, strict=True)


def load_state_dict(path: PathLike) -> Tuple[Dict[str, torch.Tensor], Dict[str, str], Dict[str, int]]:
    """The tensors (as stored), metadata (less :data:`SHA256_KEY`) and config of a model file
    (after :func:`resolve`).

    The header is read and checked first (a file that is not safetensors, is not a model file,
    whose config is beyond what dinoclip handles, whose tensor names and shapes do not fit it, or
    whose size is not the header's 8 + N + data exactly is refused having read no more than the
    header); then the data is read once, and the tensors' SHA-256, when the metadata records one
    (:data:`SHA256_KEY`), is checked on the very bytes the tensors are then made from. NaN or
    infinite weights are refused."""
    import safetensors.torch

    p = resolve(path)
    with open_regular(p) as f:  # (a named pipe would block)
        header, data_start, table = _parse_header(f, p)  # clear errors for what is not safetensors at all
        raw_meta = header.get("__metadata__") or {}
        meta = _metadata(header)
        _check_meta(meta, p)
        shapes = _shapes(header)
        config = _config(meta, shapes, p)
        # A corrupt config must not lay out millions of blocks before the file is found not to hold them.
        if config["num_residual_blocks"] > len(shapes) // _TENSORS_PER_BLOCK:
            raise CheckpointError(f"{p}: the config has {config['num_residual_blocks']} residual blocks, but the "
                                  f"file holds only {len(shapes)} tensors")
        want = _model_shapes(config, p)
        problems = _shape_problems(shapes, want)
        if problems:
            raise CheckpointError(f"{p}: not a ProjectorWithResiduals of shape {config}: " + _shown(problems))
        size = data_start + (table[-1][4] if table else 0)
        actual = os.fstat(f.fileno()).st_size
        # (A longer file is no truncated one: the Go reader says the same of it, safetensors.Open.)
        if actual > size:
            extra = actual - size
            raise CheckpointError(f"{p}: the file is {actual} bytes, {extra} byte{'s' if extra != 1 else ''} more than "
                                  "its safetensors header describes (trailing data)")
        if actual != size:
            raise CheckpointError(f"{p}: the file is {actual} bytes, its safetensors header says {size} "
                                  "(truncated, or not a safetensors file)")
        f.seek(0)
        # Read whole, so the bytes hashed are the bytes the tensors are made from (a mapping could
        # change between the two); the tensors copy them, so the peak is about twice the file
        # (0.44 GB for the default model's 218 MB).
        raw = f.read(size)
    if len(raw) != size:
        raise CheckpointError(f"{p}: the file changed while it was read")
    recorded = raw_meta.get(SHA256_KEY)
    if recorded is not None:
        data = memoryview(raw)[data_start:]
        if _table_sha256((*t, data[t[3]:t[4]]) for t in table) != recorded:
            raise CheckpointError(f"{p}: tensors do not match their recorded SHA-256: the file is corrupt or "
                                  f"was edited; a tool that rewrote its tensors must drop the metadata key {SHA256_KEY}")
    try:
        sd = safetensors.torch.load(raw)
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{p}: {e}") from None
    _check_float(sd, p)
    _check_finite(sd, want, p)
    # keep the header's order (state_dict order in files dinoclip writes)
    order = [k for k in header if k != "__metadata__"]
    sd = {k: sd[k] for k in order if k in sd}
    return sd, meta, config


def load(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> ProjectorWithResiduals:
    """Loads a dinoclip model (file, checkpoint directory or run directory) strictly.

    The returned model is float32, in eval mode, on ``map_location``; its metadata (less
    :data:`SHA256_KEY`, which was verified) is in ``model.metadata`` and the file it came from in
    ``model.source_path``.
    """
    sd, meta, config = load_state_dict(path)
    p = resolve(path)
    model = ProjectorWithResiduals.from_config(config)  # (a config load_state_dict has checked)
    _load_into(model, sd)
    model.metadata = meta
    model.source_path = p
    return model.to(map_location).eval()


# ---------------------------------------------------------------------------
# writing


def _json_string(s: str) -> str:
    """s as a JSON string, escaped exactly as Go's encoding/json does without HTML escaping
    (the Go side's safetensors writer), so both sides write identical headers."""
    out = json.dumps(s, ensure_ascii=False)
    return out.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


# The metadata keys of a model file that name the DINOv2 and CLIP models of its training data.
ENCODER_KEYS = ("dinov2", "clip")
# The longest model name dinoclip takes (every checkpoint's header and index manifest copies it).
MAX_MODEL_NAME_BYTES = 4096


def valid_model_name(name) -> bool:
    """Whether ``name`` is a model's name as the Go side takes it (dataset.ValidName): a non-empty
    string of at most MAX_MODEL_NAME_BYTES in UTF-8, of graphic characters only (letters, marks,
    numbers, punctuation, symbols, spaces; no control or format character)."""
    return (isinstance(name, str) and name != "" and len(name.encode("utf-8", "surrogatepass")) <= MAX_MODEL_NAME_BYTES
            and all(unicodedata.category(c)[0] in "LMNPS" or unicodedata.category(c) == "Zs" for c in name))


def _meta_value(v) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (bool, int, float)):
        return json.dumps(v)
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def encode_safetensors_header(
    tensors: List[Tuple[str, np.ndarray]], metadata: Optional[Mapping[str, str]]
) -> bytes:
    """The 8-byte length and the JSON header of a safetensors file holding ``tensors`` in the
    given order: metadata first with sorted keys (omitted when empty), no spaces, padded with
    spaces to a multiple of 8 bytes."""
    dtypes = {np.dtype("<f4"): "F32", np.dtype("<f2"): "F16", np.dtype("<f8"): "F64", np.dtype("<i8"): "I64"}
    parts = []
    if metadata:
        items = ",".join(f"{_json_string(k)}:{_json_string(metadata[k])}" for k in sorted(metadata))
        parts.append(f'"__metadata__":{{{items}}}')
    off = 0
    seen = set()
    for name, a in tensors:
        if name == "__metadata__" or name in seen:
            raise ValueError(f"tensor name {name!r} is reserved or repeated")
        seen.add(name)
        dt = dtypes.get(a.dtype)
        if dt is None:
            raise ValueError(f"tensor {name!r}: dtype {a.dtype} is not supported")
        shape = ",".join(str(int(d)) for d in a.shape)
        parts.append(
            f'{_json_string(name)}:{{"dtype":"{dt}","shape":[{shape}],"data_offsets":[{off},{off + a.nbytes}]}}'
        )
        off += a.nbytes
    h = ("{" + ",".join(parts) + "}").encode("utf-8")
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h


def save_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    path: PathLike,
    config: Mapping[str, int],
    metadata: Optional[Mapping[str, object]] = None,
) -> str:
    """Writes ``state_dict`` (in its order, as F32) with the dinoclip metadata, including the
    tensors' SHA-256 (:data:`SHA256_KEY`, replacing any in ``metadata``), to ``path``. A path in
    a training run, its checkpoints, a search index or a search's output is refused
    (:func:`_places.place_refusal`): a model at a run's top level is what the run's name then
    loads, before its best and last, and one in a checkpoint meets another model's optimizer
    state on a resume."""
    path = os.fspath(path)
    # (Imported here: _places reads this module's names of a run's files.)
    from ._places import place_refusal

    # (Judged where the file goes, and by the names given too: a run's checkpoints/ may be a link.)
    for d in dict.fromkeys((os.path.dirname(os.path.realpath(path)), os.path.dirname(os.path.abspath(path)))):
        why = place_refusal(d, "the model")
        if why:
            raise CheckpointError(f"{path} {why}")
    metadata = dict(metadata or {})
    # The names of the models the training data came from (as extract.json records them, which
    # dinoclip compares between files): a string each, or none.
    for key in ENCODER_KEYS:
        if metadata.get(key) is None:
            metadata.pop(key, None)
        elif not valid_model_name(metadata[key]):
            raise CheckpointError(f"{path}: metadata {key} {metadata[key]!r:.80}: want a model's name (a string of "
                                  f"graphic characters, at most {MAX_MODEL_NAME_BYTES} bytes)")
    meta = {str(k): _meta_value(v) for k, v in metadata.items()}
    meta["format"] = MODEL_FORMAT
    meta["config"] = json.dumps({k: int(config[k]) for k in CONFIG_KEYS}, separators=(",", ":"))
    # metadata, shapes and weights that load (and the Go side) would refuse are not written
    _check_size(config, path)
    _check_meta(meta, path, writing=True)
    for k, v in meta.items():
        # (a lone surrogate, as os.fsdecode makes of a path's undecodable bytes: the header is UTF-8)
        if not _encodes(k + v):
            raise CheckpointError(f"{path}: metadata {k!r} holds text that is not Unicode (a lone surrogate, "
                                  "as a path of undecodable bytes gives): the file's header is UTF-8")
    _check_float(state_dict, path)
    _check_finite(state_dict, state_dict, path)
    arrays = []
    for name, t in state_dict.items():
        a = t.detach().to("cpu", torch.float32).contiguous().numpy()
        arrays.append((name, np.ascontiguousarray(a, dtype="<f4")))
    data = [memoryview(a.reshape(-1)).cast("B") for _, a in arrays]
    # hashed from memory before the header that records it is written: no second pass over the file
    entries, off = [], 0
    for (name, a), b in zip(arrays, data):
        entries.append((name, "F32", a.shape, off, off + b.nbytes, b))
        off += b.nbytes
    meta[SHA256_KEY] = _table_sha256(entries)
    header = encode_safetensors_header(arrays, meta)
    if len(header) - 8 > _MAX_HEADER:
        # (load and the Go side refuse a header over the limit: nothing is written that they refuse)
        raise CheckpointError(f"{path}: the metadata makes a safetensors header of {len(header) - 8} bytes, over the "
                              f"{_MAX_HEADER}-byte limit of its readers (this one, the Go side's and the safetensors "
                              "library's): shorten the metadata")

    def write(f):
        f.write(header)
        for b in data:
            f.write(b)

    write_atomic(path, write)
    return path


def save(
    model: ProjectorWithResiduals,
    path: PathLike,
    metadata: Optional[Mapping[str, object]] = None,
) -> str:
    """Writes ``model`` as a dinoclip model file and returns its path.

    ``path`` is the file to write, or a directory (existing, or given with a trailing
    separator) to write ``model.safetensors`` into. ``metadata`` adds entries to the
    ``__metadata__`` (strings as they are, other values as JSON); ``format`` and ``config``
    are always set by ``save``. The write is atomic (temporary file + ``os.replace``), and
    replaces what was at ``path``, whatever it held, as ``torch.save`` does (``python -m
    dinoclip.convert``, which takes its path from a command line, refuses a file of another
    kind). What
    :func:`load` or the Go side would refuse (weights that are not finite, a shape beyond what
    they handle, metadata they refuse or that makes a header over their limit) is refused before
    anything is written.
    """
    path = os.fspath(path)
    if os.path.isdir(path) or path.endswith(os.sep):
        path = os.path.join(path, MODEL_FILE)
    if not isinstance(model, ProjectorWithResiduals):
        raise TypeError(f"save: want a ProjectorWithResiduals, got {type(model).__name__}")
    return save_state_dict(model.state_dict(), path, model.config, metadata)
