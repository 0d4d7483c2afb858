"""Atomic .npy writes in the formats of docs/FORMAT.md."""

from __future__ import annotations

import os

import numpy as np

from ._files import write_atomic

__all__ = ["save_npy", "embedding_dtype"]


def embedding_dtype(float16: bool) -> np.dtype:
    return np.dtype("<f2") if float16 else np.dtype("<f4")


def save_npy(path: str, array: np.ndarray, dtype=None) -> None:
    """Writes ``array`` (converted to ``dtype``, little-endian, C order) as ``numpy.save`` does
    (format 1.0, or 2.0 when the header needs it), to a temporary file renamed into place.

    Float arrays must be finite (after the conversion, so a float16 overflow is caught): the
    readers reject NaN and Inf, so the writer refuses them first, naming the row.
    """
    a = np.asarray(array)
    dt = np.dtype(dtype) if dtype is not None else a.dtype
    dt = dt.newbyteorder("<") if dt.byteorder not in ("|", "<") else dt
    a = np.ascontiguousarray(a.astype(dt, copy=False))
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise ValueError(f"{path}: row {row} holds NaN or Inf (as {a.dtype})")
    write_atomic(os.fspath(path), lambda f: np.lib.format.write_array(_Writes(f), a, version=None, allow_pickle=False))


class _Writes:
    """A file's ``write`` alone. Given a real file, numpy writes the array with ``tofile``, whose
    short write (a full disk) is an OSError without errno or file name ("320000 requested and
    51168 written"): through ``write`` it is the system's own error (ENOSPC), which
    :func:`write_atomic` reports naming the output. (numpy writes 16 MiB chunks this way.)"""

    def __init__(self, f):
        self.write = f.write
