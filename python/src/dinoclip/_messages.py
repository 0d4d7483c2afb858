"""How the extractor speaks: its one error type, and its lines on stderr."""

from __future__ import annotations

import re
import sys


class ExtractError(Exception):
    """A problem with the inputs or options, reported as one line."""


def log(msg: str) -> None:
    """Writes ``msg`` to stderr as a line, its control characters escaped (:func:`printable`)."""
    print(printable(msg), file=sys.stderr, flush=True)


# The C0 control characters but tab, and DEL: a path read from a captions file or a tar, or a
# file's own name, may hold them, and printed raw a NUL or an escape sequence garbles the
# terminal, and a line break splits one message into two.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def printable(msg: str) -> str:
    """``msg`` with its control characters written as escapes (``\\x00``)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", msg)


def counted(n: int, singular: str, plural: str) -> str:
    """``n`` with its noun in the number it takes: "1 image", "2 images" (a folder of one photo
    or a file of one query is common, and "1 images" reads as a slip)."""
    return f"{n} {singular if n == 1 else plural}"
