"""Opening input files that must be regular files."""

from __future__ import annotations

import os
import stat


def file_kind(mode: int) -> str:
    """What a file that is not a regular file is, for a message."""
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return kind
    return "a special file"


class NotRegularFileError(OSError):
    """:func:`open_regular`'s refusal of what is not a regular file."""


def open_regular(path: str, follow: bool = True):
    """``path`` opened for binary reading if it is a regular file (a link to one included, unless
    not ``follow``: then a link is an OSError), else an OSError saying what it is. Opening a named
    pipe would block until something writes to it: it is opened non-blocking, and refused by what
    it is, never read."""
    nonblock = getattr(os, "O_NONBLOCK", 0)  # (Windows has no named pipes to block on here)
    nofollow = 0 if follow else getattr(os, "O_NOFOLLOW", 0)
    if not follow and not nofollow and os.path.islink(path):  # (no O_NOFOLLOW: Windows)
        raise NotRegularFileError(f"{path}: a symbolic link, not a regular file")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0) | nonblock | nofollow)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(f"{path}: {file_kind(mode)}, not a regular file")
        if nonblock:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
