"""Where a dinoclip file may not be written: into a training run, its checkpoints, a search index
or a search's output, whose files are the Go side's and whose names would come to mean the file
written there (docs/FORMAT.md). :func:`place_refusal` says why; the model writer
(:func:`checkpoint.save_state_dict`), the converter and the extractor ask it, as the Go commands
ask cmd/dinoclip's placeError."""

from __future__ import annotations

import os
import re
from typing import Optional

from . import _files
from ._files import open_regular
from .checkpoint import BEST_LINK, CHECKPOINTS_DIR, LAST_LINK, OPTIMIZER_FILE, RUN_FILE


def _run_marks(d: str, top: bool) -> list:
    """The files of a training run directory (docs/FORMAT.md; train/rundir.go) that ``d``
    holds. In the directory written into (``top``) what a run alone makes there counts, its
    run.json and its best and last links: a run's name would resolve to a model file beside
    them (the Go commands' outputs judge a run so: a folder of one's own named checkpoints, best
    or last is common). Above it only a run's own layout does: a regular run.json with a
    checkpoints/ directory beside it (a run has both from its first checkpoint), as a user's
    own folders named best or last, or a stray run.json, are common outside runs."""
    if not top:
        run_json = os.path.join(d, RUN_FILE)
        if os.path.isfile(run_json) and not os.path.islink(run_json) and os.path.isdir(os.path.join(d, CHECKPOINTS_DIR)):
            return [RUN_FILE, CHECKPOINTS_DIR + "/"]
        return []
    marks = [RUN_FILE] if os.path.lexists(os.path.join(d, RUN_FILE)) else []
    return marks + [n for n in (BEST_LINK, LAST_LINK) if os.path.islink(os.path.join(d, n))]


INDEX_MANIFEST = "manifest.json"
#: what marks a directory as a search's output (``dinoclip search --out``), which holds nothing else
SEARCH_MARKS = ("search.json", "ids.npy")
INDEX_FORMAT_PREFIX = "dinoclip-index/"
INDEX_LOCK = ".lock"


def _is_index(d: str) -> bool:
    """Whether ``d`` is a ``dinoclip index`` directory, as the Go side judges it: its manifest.json
    names the index format (in its first 4 KiB), or ``dinoclip index`` holds its ``.lock``
    (appending, before its first manifest; docs/FORMAT.md)."""
    try:
        with open_regular(os.path.join(d, INDEX_MANIFEST), follow=False) as f:  # (a FIFO would block)
            if f'"{INDEX_FORMAT_PREFIX}'.encode() in f.read(4096):
                return True
    except OSError:
        pass
    return _index_appending(d)


# The names of an index's shard files (retrieval's shardName and imagesName).
_INDEX_SHARD = re.compile(r"(keys|ids)-[0-9]{5,}\.npy|images-[0-9]{5,}\.txt")


def _index_unfinished(d: str) -> bool:
    """Whether ``d`` holds what a first ``dinoclip index`` killed before its manifest leaves: no
    manifest, its lock file, and shard files or their temporaries (retrieval.IsUnfinishedIndex).
    A file written there would have the rerun that finishes the index refuse the directory."""
    if os.path.lexists(os.path.join(d, INDEX_MANIFEST)) or not os.path.lexists(os.path.join(d, INDEX_LOCK)):
        return False
    try:
        names = os.listdir(d)
    except OSError:
        return False
    return any(_INDEX_SHARD.fullmatch(_files.temp_of(n) or n) for n in names)


def _index_appending(d: str) -> bool:
    """Whether a process holds the flock of ``d``'s index lock file. On POSIX only: Python has no
    flock on Windows, where the Go writer's lock (LockFileEx) is not seen, and an index whose first
    append is under way (no manifest yet) is not recognised there."""
    if _files.fcntl is None:
        return False
    try:
        f = open_regular(os.path.join(d, INDEX_LOCK), follow=False)
    except OSError:
        return False
    try:
        _files.fcntl.flock(f.fileno(), _files.fcntl.LOCK_SH | _files.fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        f.close()  # (releases the shared lock if it was taken)
    return False


def place_refusal(d: str, what: str = "the file") -> Optional[str]:
    """Why nothing is to be written into the directory ``d`` (absolute, resolved as the system
    resolves it; it need not exist), as the rest of a sentence whose subject is what would be
    written there (``what``: its name in the remedy), or None where it may be: a file there would
    be taken for a run's or an index's own in a training checkpoint (resumed with another
    model's optimizer state), a run directory's top level (where the run's name resolves to
    ``model.safetensors`` before its best and last), anywhere else inside a run (its
    checkpoints/, a checkpoint being made: the run's files are the trainer's), a search index
    (its files are ``dinoclip index``'s), or a search's output (which the next search into it
    would refuse for holding anything else). The extractor refuses its outputs there too. A
    run's top level is known as the Go commands know it (:func:`_run_marks`)."""
    if _is_index(d):
        return f"is in a dinoclip search index (beside its {INDEX_MANIFEST}): write {what} outside the index"
    if _index_unfinished(d):
        return (f"is in a dinoclip search index whose first append was stopped before its {INDEX_MANIFEST} (run "
                f"the same dinoclip index again to finish it): write {what} outside the index")
    if all(os.path.lexists(os.path.join(d, m)) for m in SEARCH_MARKS):
        return f"is in a dinoclip search's output (beside its {' and '.join(SEARCH_MARKS)}): write {what} outside it"
    if os.path.exists(os.path.join(d, OPTIMIZER_FILE)):
        return f"is in a training checkpoint (beside its {OPTIMIZER_FILE}): write {what} outside the run's checkpoints"
    marks = _run_marks(d, top=True)
    if marks:
        return f"is in a training run directory (beside its {', '.join(marks)}): write {what} outside the run"
    # A run's checkpoints/ (or a checkpoint being made in it) by its name, under what the run alone
    # makes (its run.json, its best or last link): a run of links and no run.json too, as the Go
    # commands judge it.
    for c in (d, os.path.dirname(d)):
        run = os.path.dirname(c)
        if os.path.basename(c) == CHECKPOINTS_DIR and _run_marks(run, top=True):
            return f"is in the checkpoints of the training run {run}: write {what} outside the run"
    up = d
    while os.path.dirname(up) != up:
        up = os.path.dirname(up)
        marks = _run_marks(up, top=False)
        if marks:
            return (f"is inside the training run directory {up} (it holds {', '.join(marks)}): "
                    f"write {what} outside the run")
        # (A directory made inside an index is a name its rerun or next append refuses too; one
        # inside a search's output, a file the next search into it refuses.)
        if _is_index(up) or _index_unfinished(up):
            return f"is inside the dinoclip search index {up}: write {what} outside the index"
        if all(os.path.lexists(os.path.join(up, m)) for m in SEARCH_MARKS):
            return f"is inside the dinoclip search output {up}: write {what} outside it"
    return None
