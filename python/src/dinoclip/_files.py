"""Files as the Go side's internal/atomicfile handles them: inputs opened only when they are
regular files (a named pipe refused without waiting), outputs written to a temporary file that is
renamed into place (:func:`write_atomic`), the file written being the one the system resolves the
name to (:func:`destination`), and what killed writers left swept."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import re
import signal
import stat
import sys
import time
from typing import Iterable, List, Optional, Sequence

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


def file_kind(mode: int) -> str:
    """What a file that is not a regular file is, for a message."""
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return kind
    return "a special file"


class NotRegularFileError(OSError):
    """:func:`open_regular`'s refusal of what is not a regular file."""


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask (what taskset or a container's cpuset
    leaves it), where the system has one, not the machine's count."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # no affinity masks (macOS, Windows)
        return os.cpu_count() or 1


def read_regular(path: str, limit: int) -> bytes:
    """The bytes of the regular file at ``path`` (as :func:`open_regular` opens it, links followed)
    when there are at most ``limit`` of them, else a ValueError: a small record replaced by a huge
    file must not fill memory before it is found out. A larger file is refused by its size, unread;
    one growing meanwhile once ``limit + 1`` bytes are read. (Read a piece at a time, as it grows:
    ``read(limit + 1)`` would set aside that much memory for a file of a few bytes.)"""
    with open_regular(path) as f:
        if os.fstat(f.fileno()).st_size > limit:
            raise ValueError(f"over {limit} bytes")
        data = bytearray()
        while len(data) <= limit and (piece := f.read(min(1 << 20, limit + 1 - len(data)))):
            data += piece
    if len(data) > limit:
        raise ValueError(f"over {limit} bytes")
    return bytes(data)


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


# A temporary of a file named BASE is named ".BASE.tmp-N", N decimal digits, as the Go side's
# atomicfile names its own: hidden, and told from every name a user would choose, so that a sweep
# of what killed writers left never takes a user's file.
_TEMP_MARK = ".tmp-"
# A temporary's name: its base (:func:`_temp_base`) is group 1.
_TEMP_NAME = re.compile(r"\.(.+)" + re.escape(_TEMP_MARK) + "[0-9]+")
# How long a temporary must have gone unmodified before a sweep takes it for a killed writer's
# (atomicfile.StaleAge): besides the lock, it covers the moments a live writer holds none
# (between creating the temporary and locking it, between closing it and renaming it).
STALE_AGE = 60.0


# The longest base a temporary's name holds whole (atomicfile.maxTempBase): with the dot, the mark
# and 10 digits, the 255 bytes a name may have on common filesystems.
_MAX_TEMP_BASE = 255 - 1 - len(_TEMP_MARK) - 10


def temp_of(name: str) -> Optional[str]:
    """The name whose temporary ``name`` is (".out.npy.tmp-123": "out.npy"), or None where it is
    none (atomicfile.TempOf)."""
    i = name.rfind(_TEMP_MARK)
    digits = name[i + len(_TEMP_MARK):] if i >= 2 else ""
    if not name.startswith(".") or not digits.isascii() or not digits.isdigit():
        return None
    return name[1:i]


def _temp_base(base: str) -> str:
    """The base that ``base``'s temporaries are named by (atomicfile.TempBase): ``base`` itself,
    or for a name too long to take the temporary's additions (240 to 255 bytes, which the system
    allows), its start, whole characters, and ``~`` and 8 hex digits of the SHA-256 of the whole
    name, so that the temporary can be made, and the Go side's sweep knows it as ``base``'s."""
    b = os.fsencode(base)
    if len(b) <= _MAX_TEMP_BASE:
        return base
    cut = _MAX_TEMP_BASE - 9
    while cut > 0 and b[cut] & 0xC0 == 0x80:
        cut -= 1
    return os.fsdecode(b[:cut] + b"~" + hashlib.sha256(b).hexdigest()[:8].encode())


def _make_temp(d: str, base: str):
    """A new temporary file for ``base`` in ``d``, open for writing: named ``.BASE.tmp-N`` (N
    decimal digits) and locked (flock) while it is written, as the Go side's atomicfile names
    and locks its own, so that its sweep of what a killed writer left takes this one too, and
    only once its writer is gone. Mode 0666 less the umask, as a plain create gives."""
    for _ in range(10000):
        tmp = os.path.join(d, f".{_temp_base(base)}{_TEMP_MARK}{random.randrange(1 << 32)}")
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


def sweep_stale_temporaries(d: str, bases: Iterable[str]) -> None:
    """Removes from ``d`` the temporaries of the names ``bases`` that writers killed before
    renaming them into place left (:func:`_sweep_stale`), saying nothing of those a writer may be
    at: a run that finds its shards done writes none of them again, which is when the temporaries
    of a name are swept, so a kill's leftover younger than :data:`STALE_AGE` at the resume stayed
    for good. (The directory is listed once to find them, however many names, and again for each
    name that has one.)"""
    wanted = {_temp_base(b): b for b in bases}
    try:
        names = os.listdir(d)
    except OSError:
        return
    for base in sorted({m.group(1) for n in names if (m := _TEMP_NAME.fullmatch(n)) and m.group(1) in wanted}):
        _sweep_stale(d, wanted[base], warn_live=False)


def _sweep_stale(d: str, base: str, warn_live: bool = True) -> None:
    """Removes from ``d`` the temporaries of ``base`` that writers killed before renaming them
    into place left (atomicfile.SweepStale): regular files named as :func:`_make_temp` names
    them, whose lock nobody holds, unmodified for :data:`STALE_AGE`; and says on stderr what it
    removed, and (``warn_live``) what it left because a writer may be at it, as the Go side does.
    Without file locks (Windows) every one is kept: a live writer's could not be told from a dead
    one's."""
    if fcntl is None:
        return
    try:
        names = os.listdir(d)
    except OSError:
        return  # (the write that follows says why d cannot be written)
    pattern = re.compile(re.escape(f".{_temp_base(base)}{_TEMP_MARK}") + "[0-9]+")
    for name in names:
        if not pattern.fullmatch(name):
            continue
        p = os.path.join(d, name)
        try:
            st = os.lstat(p)
            # a link or a named pipe is no writer's (opening a pipe would wait for one)
            if not stat.S_ISREG(st.st_mode):
                continue
            live = time.time() - st.st_mtime < STALE_AGE
            if not live:
                fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    live = True  # a live writer holds it
                finally:
                    os.close(fd)
        except OSError:
            continue
        target = os.path.join(d, base)
        if live and not warn_live:
            continue
        if live:
            print(f"dinoclip: warning: {p}: left by a dinoclip killed while writing {target}, or being "
                  f"written by another one now: remove once no other dinoclip writes {target}", file=sys.stderr)
            continue
        try:
            os.unlink(p)
            print(f"dinoclip: removed {p}, left by a dinoclip killed while writing {target}", file=sys.stderr)
        except OSError:
            pass  # (gone meanwhile, or not ours to remove: the write goes on beside it)


def _resolve(path: str) -> str:
    """``path`` made absolute as the system resolves it (a ``..`` after a link leads out of where
    the link leads), as far as it exists; the rest applied to that as ``mkdir -p`` would make it
    (a dangling link is kept as it is, not followed to where it would lead). A ``..`` after what
    does not exist is a FileNotFoundError, as the system would give (``NEW/../x`` names nothing
    while NEW is missing; ``mkdir -p`` would make NEW)."""
    try:
        return os.path.realpath(path, strict=True)
    except OSError:
        head, tail = os.path.split(path.rstrip(os.sep))
        if not tail:
            return os.path.abspath(path)
        if tail == os.pardir:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", head or os.curdir) from None
        return os.path.normpath(os.path.join(_resolve(head or os.curdir), tail))


def make_dirs(path: str) -> None:
    """``os.makedirs(path, exist_ok=True)``, but a ``..`` after a directory that does not exist
    is refused as the system refuses it, not made (see :func:`_resolve`)."""
    os.makedirs(_resolve(path), exist_ok=True)


def destination(path: str) -> str:
    """The file :func:`write_atomic` replaces for ``path`` (atomicfile.Destination), absolute:
    ``path`` with its directory resolved as the system resolves it, or where a symbolic link
    at ``path`` leads, link after link (a dangling one: the file it would lead to). An existing
    one that is not a regular file (a device, a named pipe, a directory) or is read-only is
    refused, as the rename would replace it by a plain file; so is a name ending in a separator
    (a directory's, not a file's), and a link leading into a directory that does not exist
    (which the write would make: a place the user did not name)."""
    if path.endswith(("/", os.sep)):
        raise IsADirectoryError(errno.EISDIR, "the name ends with a separator: a directory's, not a file's", path)
    given, followed = path, False
    for _ in range(40):
        d, base = os.path.split(path)
        path = os.path.join(_resolve(d or os.curdir), base)
        try:
            st = os.lstat(path)
        except OSError:
            if followed and not os.path.isdir(os.path.dirname(path)):
                raise FileNotFoundError(errno.ENOENT, f"a symbolic link to {path}, in a directory that does not "
                                                      "exist", given) from None
            return path  # created (or the create says why not)
        if stat.S_ISLNK(st.st_mode):
            followed = True
            # relative to the link's (resolved) directory, its ".." resolved by the next round
            path = os.path.join(os.path.dirname(path), os.readlink(path))
        elif not stat.S_ISREG(st.st_mode):
            raise FileExistsError(errno.EEXIST, f"it is {file_kind(st.st_mode)}, not a regular file; refusing to "
                                                "replace it", path)
        elif not st.st_mode & stat.S_IWUSR:
            raise PermissionError(errno.EACCES, "the file is read-only; refusing to replace it", path)
        else:
            return path
    raise OSError(errno.ELOOP, "too many levels of symbolic links", path)


def same_file(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` both exist and are one file (through links and other names): an
    output that is an input would replace what is being read."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _makedirs(d: str, path: str) -> None:
    """Makes the directory ``d`` for ``path``, naming what stands in the way of it."""
    try:
        os.makedirs(d, exist_ok=True)
    except FileExistsError:
        # an entry on the way is no directory: say which, not "File exists"
        p = d
        while not os.path.lexists(p):
            p = os.path.dirname(p)
        if os.path.islink(p):
            try:
                os.stat(p)
                end = "is not a directory"
            except OSError as e:
                # (links that lead back to one another lead nowhere, but each one's target exists)
                end = "is in a loop of symbolic links" if e.errno == errno.ELOOP else "does not exist"
            what = f"a symbolic link to {os.readlink(p)}, which {end}"
        else:
            what = "not a directory"
        raise FileExistsError(errno.EEXIST, f"{p} is {what}", path) from None


def exit_on_sigterm() -> None:
    """Has SIGTERM end the process as SystemExit (status 128 + 15, as the signal would), for a
    command line: the temporary file being written is then removed (:func:`write_atomic`),
    where the signal's default action ends the process at once and leaves it. What objects being
    torn down then raise (a DataLoader whose workers the same signal ended) is not printed: the
    process is ending as asked."""
    def end(signum, frame):
        sys.unraisablehook = lambda unraisable: None
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, end)


def missing_dirs(path: str) -> List[str]:
    """The directories that writing into ``path`` would make (it and those above it that do not
    exist yet, as :func:`make_dirs` resolves them), deepest first."""
    try:
        p = _resolve(path or os.curdir)
    except OSError:
        return []  # (a ``..`` after a missing directory: none is made)
    missing = []
    while not os.path.lexists(p) and os.path.dirname(p) != p:
        missing.append(p)
        p = os.path.dirname(p)
    return missing


def remove_empty(dirs: Sequence[str]) -> None:
    """Removes the directories ``dirs`` (deepest first) that exist and are empty, stopping at
    the first that holds anything: rmdir removes nothing else, so whatever a run (or another
    process) wrote there stays. (What a failed write made, :func:`missing_dirs` before it, goes.)"""
    for d in dirs:
        try:
            os.rmdir(d)
        except FileNotFoundError:
            continue  # (not made: the run failed before it)
        except OSError:
            return  # not empty (or no longer a directory): it, and those above it, stay


def write_atomic(path: str, write) -> None:
    """Calls ``write(fileobj)`` on a temporary file beside the file ``path`` names
    (:func:`destination`: where a link at ``path`` leads), fsyncs it and renames it over that
    file: readers see the old file or the whole new one, never a part. A new file gets mode
    0666 less the umask; a replaced one keeps its mode. What an earlier writer of the file,
    killed, left is removed first (:func:`_sweep_stale`); the temporary is removed when the
    write fails or is interrupted (KeyboardInterrupt, SystemExit). A destination that is not a
    regular file (a device, a named pipe, a directory) or is read-only is refused
    (:func:`destination`, naming it); another OSError (``path`` under a regular file, no space,
    no permission) names ``path``."""
    dst = destination(path)
    d, base = os.path.split(dst)
    made = missing_dirs(d)  # (a failed write leaves no empty directory it made)
    try:
        _makedirs(d, path)
        _sweep_stale(d, base)
        fd, tmp = _make_temp(d, base)
    except OSError as e:
        remove_empty(made)
        raise _naming(e, path) from e
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            try:
                os.chmod(tmp, stat.S_IMODE(os.stat(dst).st_mode))
            except FileNotFoundError:
                pass
        os.replace(tmp, dst)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        remove_empty(made)
        if isinstance(e, OSError):
            raise _naming(e, path) from e
        raise
    _fsync_dir(d)
