"""How the extractor speaks: its one error type, and its lines on stderr."""

from __future__ import annotations

import re
import sys


class ExtractError(Exception):
    """A problem with the inputs or options, reported as one line."""


def log(msg: str) -> None:
    """Writes ``msg`` to stderr as a line, its control characters escaped (:func:`printable`)."""
    print(printable(msg), file=sys.stderr, flush=True)


# The control characters but tab (C0, DEL and C1), the line and paragraph separators, and the
# bidirectional marks, overrides and isolates: a path read from a captions file or a tar, or a
# file's own name, may hold them, and printed raw a NUL or an escape sequence (ESC [, or CSI)
# garbles the terminal, a line break splits one message into two, and an override shows the text
# after it reversed. (A backslash is left as it is: it is in every Windows path.)
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(msg: str) -> str:
    """``msg`` with its control characters written as escapes (``\\x00``, ``\\u202e``)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", msg)


def error(msg: str) -> None:
    """Writes ``msg`` to stderr as the extractor's line of an error: ``dinoclip.extract: MSG``."""
    log(f"dinoclip.extract: {msg}")


def counted(n: int, singular: str, plural: str) -> str:
    """``n`` with its noun in the number it takes: "1 image", "2 images" (a folder of one photo
    or a file of one query is common, and "1 images" reads as a slip)."""
    return f"{n} {singular if n == 1 else plural}"


_SHELL_PLAIN = re.compile(r"[A-Za-z0-9_./:@%+=,-]+")


def shell_arg(path: str) -> str:
    """``path`` as one shell word, quoted where it needs to be, for the commands messages tell the
    user to run, as the Go side writes it (printable.ShellArg): plain, else in single quotes, else,
    where it holds what :func:`printable` escapes or bytes that are no UTF-8 (a path's undecodable
    bytes, as ``os.fsdecode`` keeps them), in ANSI-C quotes (``$'...'``), each such byte as ``\\xNN``.
    A relative path that begins with "-" is written as ./-..., which a command does not take for an
    option."""
    if path.startswith("-"):
        path = "./" + path
    if _SHELL_PLAIN.fullmatch(path):
        return path
    if not _CONTROL.search(path) and not any(0xDC80 <= ord(c) <= 0xDCFF for c in path):
        return "'" + path.replace("'", "'\\''") + "'"
    out = ["$'"]
    for c in path:
        if 0xDC80 <= ord(c) <= 0xDCFF:  # (a byte that is no UTF-8, as os.fsdecode keeps it)
            out.append(f"\\x{ord(c) - 0xDC00:02x}")
        elif _CONTROL.fullmatch(c):
            out.extend(f"\\x{b:02x}" for b in c.encode("utf-8"))
        elif c in "'\\":
            out.append("\\" + c)
        else:
            out.append(c)
    out.append("'")
    return "".join(out)
