"""Conversion between the original PyTorch checkpoint and dinoclip checkpoints.

The original project published ``dinov2_alignment_model_epoch_16.pt``: ``torch.save`` of a
``ProjectorWithResiduals.state_dict()``. dinoclip keeps models as safetensors files with the same
names and shapes (docs/FORMAT.md). Both ways::

    python -m dinoclip.convert to-dinoclip dinov2_alignment_model_epoch_16.pt model.safetensors
    python -m dinoclip.convert to-torch runs/base model.pt

``to-dinoclip`` reads a ``.pt`` holding a state_dict, or a dict wrapping one under
``state_dict`` / ``model_state_dict``, with ``torch.load(weights_only=True)`` (no pickled code is
run), its zip members' CRCs checked first; a safetensors file is read as a model file is (its
recorded SHA-256 verified). The model's shape is inferred from the tensors, and every name and
shape is checked as ``load_state_dict(strict=True)`` would. OUT is a ``.safetensors`` file, or a checkpoint directory
to write ``model.safetensors`` into. ``to-torch`` reads a dinoclip model file, checkpoint
directory or run directory (its best checkpoint, else its last) and writes a plain state_dict
that loads into the original class; of a run whose best is the moving average of its weights
(``best_from`` ``ema`` in its run.json), it converts that average, ``best/ema.safetensors``, as
the Go side takes it. Both write atomically, neither into a training checkpoint, a run
directory's top level, or anywhere else inside a run; and neither replaces a file of another
kind than it writes (a checkpoint's optimizer state, a .npy array, a model where a .pt goes):
only an empty file or an earlier output of its kind.
"""

from __future__ import annotations

import argparse
import os
import pickle
import pickletools
import re
import stat
import struct
import sys
import warnings
import zipfile
from collections import OrderedDict
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
import torch

from . import checkpoint
from . import _files
from ._files import open_regular, oserror_message
from ._places import place_refusal
from .checkpoint import CheckpointError, MODEL_FILE
from .model import ProjectorWithResiduals

__all__ = ["ConversionError", "read_torch_state_dict", "torch_to_dinoclip", "dinoclip_to_torch", "place_refusal",
           "main"]

#: dict keys under which training scripts commonly nest a state_dict
WRAPPER_KEYS = ("state_dict", "model_state_dict")
#: key prefixes that wrapping a model adds to its state_dict: DataParallel / DistributedDataParallel,
#: torch.compile
WRAPPER_PREFIXES = ("module.", "_orig_mod.")

class ConversionError(CheckpointError):
    """A checkpoint that cannot be converted."""


def _unwrap(obj, path: str) -> Mapping[str, torch.Tensor]:
    if not isinstance(obj, Mapping):
        raise ConversionError(
            f"{path}: holds a {type(obj).__name__}, want a state_dict (a dict of tensors)"
        )
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    found = [(key, obj[key]) for key in WRAPPER_KEYS
             if isinstance(obj.get(key), Mapping) and obj[key] and all(isinstance(v, torch.Tensor) for v in obj[key].values())]
    # Two state_dicts that differ (a training script's model beside another one's, say): which
    # is the projector is not for a converter to guess.
    if len(found) > 1 and not _same_tensors(found[0][1], found[1][1]):
        raise ConversionError(f"{path}: holds both {found[0][0]!r} and {found[1][0]!r}, and they differ: "
                              f"save the one to convert on its own (torch.save(obj[KEY], 'model.pt'))")
    if found:
        return found[0][1]
    # An empty state_dict, plain or under a wrapper key, is said to be one ("not a state_dict: ...
    # its keys are none" or "... not tensors, e.g. 'state_dict'" hid it).
    empty = [k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping) and not obj[k]]
    if not obj or empty:
        raise ConversionError(f"{path}: the state_dict{f' under {empty[0]!r}' if obj else ''} is empty (no tensors), no model to convert: "
                              "save the projector's state_dict()")
    keys = ", ".join(repr(k) for k in list(obj)[:8]) or "none"
    non = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    raise ConversionError(
        f"{path}: not a state_dict: want a dict of tensors, or one under "
        f"{' or '.join(repr(k) for k in WRAPPER_KEYS)}; its keys are {keys}"
        + (f" ({len(non)} are not tensors, e.g. {non[0]!r})" if non else "")
    )


def _same_tensors(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    return list(a) == list(b) and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)


def _unpickling_detail(e: Exception) -> str:
    """What ``torch.load(weights_only=True)`` (or zipfile) found wrong, in one line: its message
    less the paragraphs around the cause (which advise ``weights_only=False``, which would run
    whatever code the file holds, or allowlisting the class it refused)."""
    if isinstance(e, KeyError):
        # (torch.load of bytes that are no pickle at all: the bare key it looked up, "174812789")
        return f"{type(e).__name__} {e}: the bytes are no pickle"
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for ln in lines:
        # (1) and (2): the two ways torch offers to load it anyway, before the cause
        if ln.startswith(("Weights only load failed", "Check the documentation", "(1)", "(2)")):
            continue
        if "WeightsUnpickler error:" in ln:
            ln = ln.split("WeightsUnpickler error:", 1)[1].strip()
            if not ln:
                continue
            ln = ln.split(" Please use ", 1)[0]  # (torch.serialization.add_safe_globals([...]))
        return ln
    return type(e).__name__


# What torch.save's legacy (not zip) format begins with: a pickle of its magic number, in the protocol
# it was saved with (2 by default; 4 and 5 frame it, the frame's length first). A pickle that begins
# otherwise was written by something else (pickle.dump), which torch.load does not read.
_LEGACY_MAGICS = tuple(pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=p) for p in range(2, pickle.HIGHEST_PROTOCOL + 1))
# torch's words for a file that ends early or lacks a part (a legacy file's "unexpected EOF", a zip's
# "failed locating file data/0", a storage "record size ... does not match expected size"): its
# RuntimeErrors have no type of their own to tell them by.
_DAMAGED = re.compile(r"unexpected EOF|corrupt|failed locating file|does not match expected size")
# What to do with such a file.
_AGAIN = "save it again, or copy it again from where it came"


def _is_legacy_torch(head: bytes) -> bool:
    """Whether a file starting with ``head`` (non-empty) begins as torch.save's legacy format does
    (or is the start of one: a file cut short within its magic number)."""
    return any(magic[:len(head)] == head[:len(magic)] for magic in _LEGACY_MAGICS)


def _legacy_pickles_whole(f) -> bool:
    """Whether the legacy torch.save file open as ``f`` holds its five pickles whole (its magic number,
    protocol version, system information, the object and its storages' keys), walked without being run
    (pickletools.genops): torch.load's weights-only unpickler stops at the first FRAME of protocols 4
    and 5, before it would find a file cut short."""
    f.seek(0)
    try:
        for _ in range(5):
            for _ in pickletools.genops(f):
                pass
    except Exception:  # (genops's ValueError at the end of the bytes, or an opcode it does not know)
        return False
    return True


def _load_failure(e: Exception, path: str, head: bytes, torchscript: bool, f) -> str:
    """Why ``torch.load(weights_only=True)`` failed with ``e`` on ``path`` (open as ``f``, starting
    with ``head``; ``torchscript``: a zip archive of TorchScript's layout), as one line saying what to
    do: torch's own advice (weights_only=False, which runs whatever code the file holds) is not passed
    on."""
    detail = _unpickling_detail(e)
    if torchscript:
        return (f"{path}: a TorchScript archive (torch.jit.save), not a state_dict: save its weights with "
                f"torch.save(torch.jit.load({path!r}).state_dict(), 'model.pt') and convert that")
    if checkpoint._pickle_protocol(head) and not _is_legacy_torch(head):
        # (a pickle's PROTO opcode, as pickle.dump writes it, but not torch.save's magic number after it)
        return (f"{path}: a pickle not written by torch.save (pickle.dump's?), which torch.load does not read "
                f"({detail}): save the state_dict with torch.save(state_dict, 'model.pt') and convert that")
    framed = checkpoint._pickle_protocol(head) >= 4 and _is_legacy_torch(head)
    if framed and not _legacy_pickles_whole(f):
        return f"{path}: the file is cut short or corrupt (its pickles end early, or hold what no pickle does): {_AGAIN}"
    if framed and not isinstance(e, EOFError):
        # (torch.load's weights-only unpickler reads no FRAME, which protocols 4 and 5 write: a plain
        # state_dict so saved was told it held objects besides tensors)
        return (f"{path}: a torch.save file in the legacy format with pickle protocol {head[1]}, which "
                f"torch.load(weights_only=True) does not read ({detail}): save the state_dict again with "
                "torch.save's defaults (torch.save(state_dict, 'model.pt')) and convert that")
    if isinstance(e, (EOFError, IndexError, struct.error)):  # (the unpickler ran past the end of the bytes there are)
        name = "struct.error" if isinstance(e, struct.error) else type(e).__name__
        return f"{path}: the file is cut short or corrupt (its pickle ends early: {name}): {_AGAIN}"
    if isinstance(e, RuntimeError) and _DAMAGED.search(str(e)):
        # (its first sentence: the rest is torch's paragraph on what may have caused it)
        return f"{path}: the file is cut short or corrupt ({detail.split('. ', 1)[0].rstrip('.')}): {_AGAIN}"
    return (f"{path}: not a PyTorch checkpoint that torch.load(weights_only=True) reads ({detail}); a checkpoint "
            "holding objects besides tensors must be saved again as a plain state_dict")


def _is_safetensors(head: bytes) -> bool:
    """Whether a file starting with ``head`` (up to its first 4 KiB) is laid out as a
    safetensors file: an 8-byte header length, then a JSON object (after spaces, which JSON
    allows). A truncated one counts too: its reader says what is wrong with it."""
    return len(head) > 8 and head[8:].lstrip(b" \t\r\n")[:1] == b"{"


def read_torch_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """The state_dict in a ``.pt`` file, loaded with ``weights_only=True``.

    Accepts a plain state_dict or one nested under ``state_dict`` / ``model_state_dict``. The
    ``module.`` (DataParallel) and ``_orig_mod.`` (torch.compile) prefixes shared by every key are
    removed, nested in any order (``_orig_mod.module.``: a compiled DDP model). A safetensors
    file (which torch.load reads too, but without its checks) is read as
    :func:`checkpoint.load_state_dict` reads a model file: its recorded SHA-256 verified. A zip
    archive (torch.save's format) whose members fail their CRC check is refused: torch.load does
    not check them, and a flipped bit would be converted and stamped with a new SHA-256.
    """
    with open_regular(path) as f:  # (a named pipe would block)
        head = f.read(4096)
        if not head:
            raise ConversionError(f"{path}: the file is empty (0 bytes): no checkpoint")
        if _is_safetensors(head):
            return checkpoint.load_state_dict(path)[0]
        f.seek(0)
        torchscript = False
        if head.startswith(b"PK\x03\x04"):
            try:
                archive = zipfile.ZipFile(f)
                bad = archive.testzip()
                # (as torch tells one: a constants.pkl in its folder; torch.load refuses it with weights_only)
                torchscript = any(n.split("/", 1)[-1] == "constants.pkl" for n in archive.namelist())
            except Exception as e:  # zipfile raises many kinds (a bad name, an unknown method, encryption)
                raise ConversionError(f"{path}: a damaged zip archive ({_unpickling_detail(e)}): "
                                      "the file is corrupt") from None
            if bad is not None:
                raise ConversionError(f"{path}: {bad} fails its CRC check: the file is corrupt")
            f.seek(0)
        try:
            with warnings.catch_warnings():
                # (torch warns of a pickle protocol it may not read: its error, if any, follows in one line)
                warnings.simplefilter("ignore", UserWarning)
                obj = torch.load(f, map_location="cpu", weights_only=True)
        except Exception as e:  # unpickling errors of several types
            raise ConversionError(_load_failure(e, path, head, torchscript, f)) from None
    sd = OrderedDict(_unwrap(obj, path))
    # The wrappers nest, in either order (torch.compile of a DDP model saves _orig_mod.module.*,
    # DDP of a compiled one module._orig_mod.*): each prefix shared by every key is removed, until
    # none is.
    stripped = True
    while stripped:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if sd and all(isinstance(k, str) and k.startswith(prefix) for k in sd):
                sd = OrderedDict((k[len(prefix):], v) for k, v in sd.items())
                stripped = True
    bad = [k for k in sd if not isinstance(k, str)]
    if bad:
        raise ConversionError(f"{path}: state_dict has non-string keys, e.g. {bad[0]!r}")
    return sd


def model_from_state_dict(sd: Mapping[str, torch.Tensor], where: str) -> ProjectorWithResiduals:
    """A ProjectorWithResiduals holding ``sd``, its shape inferred; strict name/shape check."""
    # What torch.load(weights_only=True) accepts includes sparse tensors and meta tensors (a
    # shape without data, e.g. from a model built on the meta device); the checks below (and
    # the copy into the model) need a dense tensor whose values are in memory.
    for k, v in sd.items():
        if v.layout != torch.strided:
            raise ConversionError(f"{where}: {k} is a {v.layout} tensor, not a dense (strided) one "
                                  "(save its .to_dense())")
        if v.device.type != "cpu":
            raise ConversionError(f"{where}: {k} is on the {v.device.type} device, not on the CPU with data"
                                  + (" (a meta tensor holds no values)" if v.device.type == "meta" else ""))
    # A few stored values can declare a huge shape (torch.expand, stride 0); the model inferred
    # from it would take gigabytes. Every tensor must hold the elements of its shape, so the
    # model is no bigger than the file.
    for k, v in sd.items():
        if v.untyped_storage().nbytes() < v.numel() * v.element_size():
            raise ConversionError(f"{where}: {k} has shape {list(v.shape)} but stores only "
                                  f"{v.untyped_storage().nbytes() // v.element_size()} elements "
                                  "(an expanded view; save a .contiguous() copy)")
    try:
        config = checkpoint.infer_config({k: v.shape for k, v in sd.items()})
    except CheckpointError as e:
        raise ConversionError(f"{where}: {e}; keys: {', '.join(list(sd)[:6])}{', ...' if len(sd) > 6 else ''}") from None
    # The checks a model file's tensors get (checkpoint.load_state_dict): its size, then its
    # names and shapes against a model built on the meta device (no weights allocated), its
    # dtypes, and finite values (as float32: a float64 beyond its range is infinite there).
    checkpoint._check_size(config, where)
    problems = checkpoint._shape_problems({k: tuple(v.shape) for k, v in sd.items()},
                                          checkpoint._model_shapes(config, where))
    if problems:
        raise ConversionError(
            f"{where}: not a ProjectorWithResiduals state_dict (shape inferred as {config}): "
            + checkpoint._shown(problems)
        )
    checkpoint._check_float(sd, where)
    checkpoint._check_finite(sd, sd, where)
    model = ProjectorWithResiduals.from_config(config)
    checkpoint._load_into(model, sd)
    return model


def _destination(dst: str, src: str, torch_out: bool) -> str:
    """The file to write for ``dst``, as the system resolves it (:func:`_files.destination`:
    where a link at ``dst`` leads; a ``..`` after a link out of where the link leads), refused
    where a file would be taken for a run's or an index's own (:func:`place_refusal`), when
    it is the model file ``src`` being converted, which the output would replace; then (``torch_out``:
    the output is a torch.save file, else a safetensors model) a .pt named as safetensors, and a file
    of another kind than the output (:func:`_replace_refusal`)."""
    given, dst = dst, _files.destination(dst)
    why = place_refusal(os.path.dirname(dst))
    if why:
        raise ConversionError(f"{dst} {why}")
    if _files.same_file(dst, src):
        raise ConversionError(f"{dst} is the input {src}: write the converted model to another file")
    if torch_out and given.lower().endswith(".safetensors"):
        # (A reader would take it for a dinoclip model and fail on its first bytes. Said before what
        # the file there is: it is to be named otherwise whatever it holds.)
        raise ConversionError(f"{given}: to-torch writes a PyTorch .pt file (torch.save), not safetensors: name it "
                              ".pt (to-dinoclip writes safetensors)")
    why = _replace_refusal(given, dst, torch_out)
    if why:
        raise ConversionError(why)
    return dst


# How much of a file is read to tell its kind: the format of a safetensors header cut short is
# looked for in it, as the Go side looks (cutHeaderFormat).
_KIND_HEAD = 64 << 10
# The format in a safetensors header's metadata (the Go side's cutFormat): its value, and its closing
# quote where the header goes on past it (a header cut short may end inside the value).
_CUT_FORMAT = re.compile(rb'"__metadata__"\s*:\s*\{[^}]*?"format"\s*:\s*"([^"\\]*)("?)')


def _safetensors_format(path: str, head: bytes, size: int) -> Optional[Tuple[str, bool, bool]]:
    """For a safetensors file of ``size`` bytes starting with ``head``, whole or cut short (by a
    writer killed, or a copy), as the Go side's safetensors.Open tells one: its metadata's format
    ("" for none or unknown), whether it is cut short in its header, and whether, cut there in its
    format's value, what there is begins as a trainer state's (checkpoint.MayBeStateFormat). None
    for a file that is no safetensors file (nor one cut short)."""
    if len(head) < 8:
        return None
    (n,) = struct.unpack("<Q", head[:8])
    if n > checkpoint._MAX_HEADER:
        return None
    if n > size - 8:
        # (cut short in its header: told by the header's opening brace, which no other format has there)
        if head[8:9] != b"{":
            return None
        m = _CUT_FORMAT.search(head)
        if m is None:  # (cut before its format: nothing tells a state from a model)
            return "", True, False
        fmt = m.group(1).decode("utf-8", "replace")
        if m.group(2) or checkpoint.is_state_format(fmt):
            return fmt, True, False
        return "", True, any(f.startswith(fmt) for f in checkpoint.STATE_FORMATS)
    try:
        with open_regular(path) as f:
            header, start, table = checkpoint._parse_header(f, path)
    except (CheckpointError, OSError):
        return None
    if size > start + (table[-1][4] if table else 0):
        return None  # (trailing data: a file that the Go side does not open, as malformed)
    return str((header.get("__metadata__") or {}).get("format", "")), False, False


def _is_torch_save(head: bytes) -> bool:
    """Whether a file starting with ``head`` (non-empty) was written by torch.save, whole or cut
    short: a zip archive whose first member is its pickle (``NAME/data.pkl``), or the legacy format."""
    if head.startswith(b"PK\x03\x04"):
        if len(head) < 30:
            return True  # (cut within the zip's first header, which tells nothing yet: an earlier output's)
        (name_length,) = struct.unpack("<H", head[26:28])  # (a zip's local file header names its member at 30)
        name = head[30:30 + name_length]
        if len(name) < name_length:
            return True  # (cut within that member's name: likewise)
        return re.fullmatch(rb"[^/]+/data\.pkl", name) is not None
    return _is_legacy_torch(head)


def _replace_refusal(given: str, dst: str, torch_out: bool) -> Optional[str]:
    """Why the converted model is not to replace the existing file ``dst`` (``given`` by the user), or
    None where it may: as the Go side's average and project --out judge theirs (otherKindError), a
    file of another kind than the output (a checkpoint's optimizer state, a .npy array of features, a
    model where a .pt goes, or the other way round: OUT given by a slip) is kept; an empty file (as
    mktemp makes) and one of the output's kind (an earlier output, even cut short: a safetensors
    model for to-dinoclip, a torch.save file for to-torch) are replaced. One that cannot be read is
    kept, as another kind."""
    try:
        st = os.stat(dst)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
        return None  # (none, or what write_atomic refuses to replace)
    try:
        with open_regular(dst) as f:
            head = f.read(_KIND_HEAD)
    except OSError:
        head = b""
    st_format = None if head.startswith(np.lib.format.MAGIC_PREFIX) else _safetensors_format(dst, head, st.st_size)
    if head.startswith(np.lib.format.MAGIC_PREFIX):
        kind = "a .npy array"
    elif st_format is not None:
        fmt, cut, may_be_state = st_format
        if checkpoint.is_state_format(fmt):
            kind = "a training checkpoint's optimizer or float64 state (safetensors)"
        elif may_be_state:
            kind = ("a safetensors file cut short in its header, where its format begins as a training checkpoint's "
                    "optimizer or float64 state's")
        elif not torch_out:
            return None  # a model: an earlier output, or one cut short
        else:
            kind = "a safetensors file cut short" if cut else "a safetensors model"
    elif torch_out and head and _is_torch_save(head):
        return None
    else:
        kind = "a file that torch.save did not write" if torch_out else "a file that is not a safetensors model"
    return (f"{given} exists and is {kind}, which the converted model would replace: remove it first if it may go, "
            "or write the converted model elsewhere")


def _kind_of(path: str) -> str:
    """What ``path``, which exists and is no directory, is, for a message: a file, or what else
    (/dev/null was "a file")."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "a symbolic link leading nowhere"
    return "a file" if stat.S_ISREG(mode) else _files.file_kind(mode)


def torch_to_dinoclip(src: str, dst: str, metadata: Optional[Mapping[str, object]] = None) -> str:
    """Converts a ``.pt`` state_dict to a dinoclip model file; returns the path written."""
    if not dst:  # (os.path.join would make it ./model.safetensors, a place the user did not name)
        raise ConversionError("OUT is empty: name a .safetensors file to write, or a checkpoint directory")
    if not dst.lower().endswith(".safetensors"):  # (x.SAFETENSORS is a file's name, not a directory's)
        if os.path.lexists(dst) and not os.path.isdir(dst):
            raise ConversionError(f"{dst} is {_kind_of(dst)}: name a .safetensors file to write, or a checkpoint "
                                  f"directory to write {MODEL_FILE} in")
        dst = os.path.join(dst, MODEL_FILE)  # a checkpoint directory
    elif os.path.isdir(dst):
        raise ConversionError(f"{dst} is a directory, though named as a .safetensors file: to write {MODEL_FILE} "
                              f"into it, give it with a trailing separator ({os.path.join(dst, '')})")
    dst = _destination(dst, src, torch_out=False)
    sd = read_torch_state_dict(src)
    model = model_from_state_dict(sd, src)
    return checkpoint.save(model, dst, metadata)


def _torch_save(sd: Mapping[str, torch.Tensor], f) -> None:
    """``torch.save(sd, f)``, failing with what stopped the write of ``f`` (no space, an
    interrupt): torch's zip writer, closing ``f`` after it, raises a RuntimeError of its own
    ("unexpected pos") that would hide it."""
    try:
        torch.save(sd, f)
    except RuntimeError as e:
        if isinstance(e.__context__, (OSError, KeyboardInterrupt, SystemExit)):
            raise e.__context__ from None
        raise


def dinoclip_to_torch(src: str, dst: str) -> str:
    """Converts a dinoclip model (file, checkpoint or run directory) to a ``.pt`` state_dict
    (``torch.save(model.state_dict())``, as the original project saved it); returns the path
    written."""
    if not dst:  # (resolved, it was the working directory: "/cwd/ is a directory")
        raise ConversionError("OUT is empty: name the .pt file to write")
    if os.path.isdir(dst):
        raise ConversionError(f"{dst} is a directory; want the path of the .pt file to write")
    dst = _destination(dst, checkpoint.resolve(src), torch_out=True)
    model = checkpoint.load(src)
    sd = OrderedDict((k, v.detach().clone().contiguous()) for k, v in model.state_dict().items())
    _files.write_atomic(dst, lambda f: _torch_save(sd, f))
    return dst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m dinoclip.convert",
        description="Convert between the original project's PyTorch .pt state_dict and a dinoclip "
        "checkpoint (safetensors, docs/FORMAT.md).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  python -m dinoclip.convert to-dinoclip dinov2_alignment_model_epoch_16.pt model.safetensors\n"
        "  python -m dinoclip.convert to-dinoclip original.pt ckpt/     # writes ckpt/model.safetensors\n"
        "  python -m dinoclip.convert to-torch runs/base model.pt       # best (else last) checkpoint\n"
        "\n"
        "OUT may replace an empty file or an earlier output of its kind (a safetensors model; a torch.save\n"
        "file), not a file of another kind (a checkpoint's optimizer state, a .npy array): remove it first.",
    )
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    a = sub.add_parser(
        "to-dinoclip",
        help="PyTorch .pt state_dict -> dinoclip model.safetensors",
        description="Reads IN (torch.save of a ProjectorWithResiduals state_dict, or a dict holding one "
        "under 'state_dict'/'model_state_dict'; loaded with weights_only=True) and writes a dinoclip "
        "model file. OUT ending in .safetensors is the file; otherwise OUT is a checkpoint directory "
        "and OUT/model.safetensors is written.",
    )
    a.add_argument("input", metavar="IN.pt")
    a.add_argument("output", metavar="OUT.safetensors|DIR")
    b = sub.add_parser(
        "to-torch",
        help="dinoclip model -> PyTorch .pt state_dict",
        description="Reads IN (a dinoclip model.safetensors, a checkpoint directory, or a run directory: "
        "its best checkpoint, else its last; for a run whose best is the moving average of its weights, "
        "best_from ema in its run.json, that average, best/ema.safetensors) and writes torch.save(state_dict) "
        "to OUT, loadable into the original ProjectorWithResiduals with load_state_dict(strict=True).",
    )
    b.add_argument("input", metavar="IN(.safetensors|DIR)")
    b.add_argument("output", metavar="OUT.pt")
    args = ap.parse_args(argv)
    try:
        if args.command == "to-dinoclip":
            out = torch_to_dinoclip(args.input, args.output)
        else:
            out = dinoclip_to_torch(args.input, args.output)
    except CheckpointError as e:
        print(f"dinoclip.convert: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a missing input; an output under a file, without space or permission
        print(f"dinoclip.convert: {oserror_message(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # (the file being written is removed)
        print("dinoclip.convert: interrupted", file=sys.stderr)
        return 130
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    _files.exit_on_sigterm()
    sys.exit(main())
