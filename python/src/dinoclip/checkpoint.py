"""Reading and writing dinoclip model checkpoints (docs/FORMAT.md).

A model is a safetensors file ``model.safetensors``:

- one F32 tensor per ``state_dict`` entry of :class:`~dinoclip.model.ProjectorWithResiduals`,
  with the original names and shapes, stored (header and data) in state_dict order;
- ``__metadata__``: ``format`` = ``dinoclip-model/1`` and ``config`` = compact JSON
  ``{"input_dim":768,"hidden_dim":2048,"output_dim":512,"num_residual_blocks":6}``,
  ``dinoclip.data_sha256`` = the hex SHA-256 of the data (every byte after the header), plus
  whatever else the writer adds (training writes ``step``, ``epoch`` and ``metrics``).

:func:`save` writes exactly what the Go side writes for the same parameters and metadata (metadata
first with sorted keys, then the tensors in order; the header padded with spaces to a multiple of 8
bytes), to a temporary file that is renamed into place. :func:`load` accepts a model file, a
checkpoint directory holding one, or a training run directory (its ``best`` checkpoint, else its
``last``), like ``dinoclip project --model``, and refuses a file whose data does not match its
recorded SHA-256 (one without the key, such as ``save_file``'s, loads as before).

Example::

    from dinoclip import checkpoint
    model = checkpoint.load("runs/base")            # best (else last) checkpoint of a run
    emb = model(torch.from_numpy(features))          # [n, 512], not normalised
    checkpoint.save(model, "copy/model.safetensors")
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import stat
import struct
from typing import BinaryIO, Dict, Iterable, List, Mapping, Optional, Tuple, Union

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

import numpy as np
import torch

from .model import CONFIG_KEYS, ProjectorWithResiduals

__all__ = [
    "MODEL_FILE",
    "OPTIMIZER_FILE",
    "MODEL_FORMAT",
    "DATA_SHA256_KEY",
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
# The metadata key under which every file dinoclip writes records the hex SHA-256 of its data
# (the bytes after the header), as the Go side's safetensors.DataSHA256Key: load verifies it
# when present, so a flipped bit or an edited tensor fails to load instead of giving wrong
# numbers; files without it (save_file's, earlier dinoclip's) load as before.
DATA_SHA256_KEY = "dinoclip.data_sha256"
# The tag safetensors' own save_model/save_file helpers for PyTorch write: a
# state_dict saved that way is a model file too.
TORCH_FORMAT = "pt"
BEST_LINK = "best"
LAST_LINK = "last"

PathLike = Union[str, "os.PathLike[str]"]


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or does not fit the model."""


# ---------------------------------------------------------------------------
# paths


def resolve(path: PathLike) -> str:
    """The model file meant by ``path``: the file itself, ``path/model.safetensors``, or the
    ``best`` (else ``last``) checkpoint of a run directory."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model: {path}: no such file or directory")
    if not os.path.isdir(path):
        return path
    for rel in (MODEL_FILE, os.path.join(BEST_LINK, MODEL_FILE), os.path.join(LAST_LINK, MODEL_FILE)):
        p = os.path.join(path, rel)
        if os.path.isfile(p):
            return p
    raise CheckpointError(
        f"model: {path} holds no {MODEL_FILE}, and no best or last checkpoint of a run"
    )


# ---------------------------------------------------------------------------
# safetensors header


_MAX_HEADER = 100 * 1024 * 1024


def _read_header(path: str) -> Tuple[dict, int]:
    """The parsed JSON header of a safetensors file and the offset of its data."""
    with open(path, "rb") as f:
        return _parse_header(f, path)


def _parse_header(f: BinaryIO, path: str) -> Tuple[dict, int]:
    """The parsed JSON header of the safetensors file ``f`` (read from its start; ``path``
    names it in errors) and the offset of its data."""
    head = f.read(8)
    if len(head) != 8:
        raise CheckpointError(f"{path}: not a safetensors file (shorter than 8 bytes)")
    (n,) = struct.unpack("<Q", head)
    if n > _MAX_HEADER:
        raise CheckpointError(f"{path}: not a safetensors file (header length {n})")
    raw = f.read(n)
    if len(raw) != n:
        raise CheckpointError(f"{path}: truncated safetensors header")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not a safetensors file ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a safetensors file (header is not a JSON object)")
    return header, 8 + n


def _recorded_sha256(meta: Mapping[str, str], path: str) -> Optional[str]:
    """The data hash that ``meta`` records under :data:`DATA_SHA256_KEY` (None when it records
    none). A value that is not 64 lowercase hex digits is refused: no writer makes one."""
    recorded = meta.get(DATA_SHA256_KEY)
    if recorded is not None and not re.fullmatch(r"[0-9a-f]{64}", recorded):
        raise CheckpointError(f"{path}: metadata {DATA_SHA256_KEY} {recorded!r} is not a SHA-256 "
                              "(64 lowercase hex digits): the file is corrupt or was edited")
    return recorded


def read_metadata(path: PathLike) -> Dict[str, str]:
    """The ``__metadata__`` of a model file (after :func:`resolve`); the header only, so the
    data's SHA-256 is not verified (:func:`load` verifies it)."""
    header, _ = _read_header(resolve(path))
    meta = header.get("__metadata__") or {}
    return {str(k): str(v) for k, v in meta.items()}


def infer_config(shapes: Mapping[str, Iterable[int]]) -> Dict[str, int]:
    """A model config read from tensor shapes: ``input_proj.weight`` is [hidden, input],
    ``output_proj.2.weight`` is [output, hidden//2], and the residual blocks are counted."""
    s = {k: tuple(int(d) for d in v) for k, v in shapes.items()}
    inp, out = s.get("input_proj.weight"), s.get("output_proj.2.weight")
    if inp is None or out is None or len(inp) != 2 or len(out) != 2:
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
        c = json.loads(text)
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


def read_config(path: PathLike) -> Dict[str, int]:
    """A model file's shape: from its metadata ``config``, else inferred from its tensors."""
    p = resolve(path)
    header, _ = _read_header(p)
    meta = header.get("__metadata__") or {}
    if "config" in meta:
        return _parse_config(meta["config"], p)
    shapes = {k: v.get("shape", ()) for k, v in header.items() if k != "__metadata__"}
    try:
        return infer_config(shapes)
    except CheckpointError as e:
        raise CheckpointError(f"{p}: {e}") from None


def check_state_dict(
    state_dict: Mapping[str, object], model: torch.nn.Module
) -> List[str]:
    """What keeps ``state_dict`` from loading strictly into ``model``: missing and unexpected
    names and wrong shapes, one message each (empty when it fits)."""
    want = model.state_dict()
    problems = []
    for name, t in want.items():
        if name not in state_dict:
            problems.append(f"missing {name}")
            continue
        got = tuple(getattr(state_dict[name], "shape", ()))
        if got != tuple(t.shape):
            problems.append(f"{name} has shape {list(got)}, want {list(t.shape)}")
    for name in state_dict:
        if name not in want:
            problems.append(f"unexpected {name}")
    return problems


def _load_into(model: ProjectorWithResiduals, sd: Mapping[str, torch.Tensor], where: str) -> None:
    problems = check_state_dict(sd, model)
    if problems:
        raise CheckpointError(
            f"{where}: not a ProjectorWithResiduals of shape {model.config}: " + "; ".join(problems)
        )
    bad = [k for k, v in sd.items() if not torch.is_floating_point(v)]
    if bad:
        raise CheckpointError(f"{where}: tensors {', '.join(bad)} are not floating point")
    model.load_state_dict({k: v.to(torch.float32) for k, v in sd.items()}, strict=True)


def load_state_dict(path: PathLike) -> Tuple[Dict[str, torch.Tensor], Dict[str, str], Dict[str, int]]:
    """The tensors (as stored), metadata and config of a model file (after :func:`resolve`).

    The file is read once: the data's SHA-256, when the metadata records one
    (:data:`DATA_SHA256_KEY`), is checked on the very bytes the tensors are then made from."""
    import safetensors.torch

    p = resolve(path)
    with open(p, "rb") as f:
        raw = f.read()
    header, data_start = _parse_header(io.BytesIO(raw), p)  # clear errors for what is not safetensors at all
    meta = {str(k): str(v) for k, v in (header.get("__metadata__") or {}).items()}
    fmt = meta.get("format")
    if fmt is not None and fmt not in (MODEL_FORMAT, TORCH_FORMAT):
        raise CheckpointError(f"{p}: format {fmt!r}, want {MODEL_FORMAT!r}: not a model file "
                              "(an optimizer or float64 state, or a newer dinoclip's format)")
    for key in ("step", "epoch"):
        if key in meta and not (meta[key].isascii() and meta[key].isdigit()):
            raise CheckpointError(f"{p}: metadata {key} {meta[key]!r} is not a count (a tampered file?)")
    recorded = _recorded_sha256(meta, p)
    if recorded is not None and hashlib.sha256(memoryview(raw)[data_start:]).hexdigest() != recorded:
        raise CheckpointError(f"{p}: data does not match its recorded SHA-256 (metadata {DATA_SHA256_KEY}): "
                              "the file is corrupt or was edited")
    try:
        sd = safetensors.torch.load(raw)
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{p}: {e}") from None
    if "config" in meta:
        config = _parse_config(meta["config"], p)
    else:
        try:
            config = infer_config({k: v.shape for k, v in sd.items()})
        except CheckpointError as e:
            raise CheckpointError(f"{p}: {e}") from None
    # keep the header's order (state_dict order in files dinoclip writes)
    order = [k for k in header if k != "__metadata__"]
    sd = {k: sd[k] for k in order if k in sd}
    return sd, meta, config


def load(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> ProjectorWithResiduals:
    """Loads a dinoclip model (file, checkpoint directory or run directory) strictly.

    The returned model is float32, in eval mode, on ``map_location``; its metadata is in
    ``model.metadata`` and the file it came from in ``model.source_path``.
    """
    sd, meta, config = load_state_dict(path)
    p = resolve(path)
    try:
        model = ProjectorWithResiduals.from_config(config)
    except ValueError as e:
        raise CheckpointError(f"{p}: {e}") from None
    _load_into(model, sd, p)
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


def _fsync_dir(d: str) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def oserror_message(e: OSError) -> str:
    """An OSError as one line naming its file: ``PATH: No space left on device``, not
    ``[Errno 28] No space left on device: 'PATH'`` (or, without a file, ``str(e)``)."""
    if e.filename is None or not e.strerror:
        return str(e)
    msg = f"{os.fsdecode(e.filename) if isinstance(e.filename, (str, bytes)) else e.filename}: {e.strerror}"
    if e.filename2 is not None:
        msg += f" (and {os.fsdecode(e.filename2) if isinstance(e.filename2, (str, bytes)) else e.filename2})"
    return msg


def _naming(e: OSError, path: str) -> OSError:
    """``e`` (of the same OSError subclass) naming ``path``: a failure to create a directory
    above it, or to write, sync or rename the temporary file, is a failure to write ``path``,
    and the temporary file's name would mean nothing to the reader."""
    if e.errno is None:
        return e
    return OSError(e.errno, f"cannot write it: {e.strerror}", path)


def _make_temp(d: str, base: str):
    """A new temporary file for ``base`` in ``d``, open for writing: named ``.BASE.tmp-N`` (N
    decimal digits) and locked (flock) while it is written, as the Go side's atomicfile names
    and locks its own, so that its sweep of what a killed writer left takes this one too, and
    only once its writer is gone. Mode 0666 less the umask, as a plain create gives."""
    for _ in range(10000):
        tmp = os.path.join(d, f".{base}.tmp-{random.randrange(1 << 32)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                pass  # (a filesystem without locks: the sweep's age rule still guards it)
        return fd, tmp
    raise FileExistsError(f"{d}: no free temporary name for {base}")


def write_atomic(path: str, write) -> None:
    """Calls ``write(fileobj)`` on a temporary file beside ``path``, fsyncs it and renames it
    over ``path``: readers see the old file or the whole new one, never a part. A new file gets
    mode 0666 less the umask; a replaced one keeps its mode. An OSError (``path`` under a
    regular file, no space, no permission) names ``path``."""
    d = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(d, exist_ok=True)
        fd, tmp = _make_temp(d, os.path.basename(path))
    except OSError as e:
        raise _naming(e, path) from e
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            try:
                os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
            except FileNotFoundError:
                pass
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise _naming(e, path) from e
        raise
    _fsync_dir(d)


def save_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    path: PathLike,
    config: Mapping[str, int],
    metadata: Optional[Mapping[str, object]] = None,
) -> str:
    """Writes ``state_dict`` (in its order, as F32) with the dinoclip metadata, including the
    data's SHA-256 (:data:`DATA_SHA256_KEY`), to ``path``."""
    path = os.fspath(path)
    meta = {str(k): _meta_value(v) for k, v in (metadata or {}).items()}
    meta["format"] = MODEL_FORMAT
    meta["config"] = json.dumps({k: int(config[k]) for k in CONFIG_KEYS}, separators=(",", ":"))
    arrays = []
    for name, t in state_dict.items():
        a = t.detach().to("cpu", torch.float32).contiguous().numpy()
        arrays.append((name, np.ascontiguousarray(a, dtype="<f4")))
    data = [memoryview(a.reshape(-1)).cast("B") for _, a in arrays]
    # hashed from memory before the header that records it is written: no second pass over the file
    data_sha256 = hashlib.sha256()
    for b in data:
        data_sha256.update(b)
    meta[DATA_SHA256_KEY] = data_sha256.hexdigest()
    header = encode_safetensors_header(arrays, meta)

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
    are always set by ``save``. The write is atomic (temporary file + ``os.replace``).
    """
    path = os.fspath(path)
    if os.path.isdir(path) or path.endswith(os.sep):
        path = os.path.join(path, MODEL_FILE)
    if not isinstance(model, ProjectorWithResiduals):
        raise TypeError(f"save: want a ProjectorWithResiduals, got {type(model).__name__}")
    return save_state_dict(model.state_dict(), path, model.config, metadata)
