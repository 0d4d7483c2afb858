"""What the extractor reads, checked before any model loads: image folders and their captions (each
image's sidecar ``.txt``, or a ``.jsonl``, ``.csv`` or ``.tsv`` file of pairs), webdataset tars
(indexed where they lie, not unpacked), Karpathy splits of COCO and Flickr30k, and text files of
queries. A problem is an :class:`ExtractError` naming the file, and the line where there is one."""

from __future__ import annotations

import csv
import io
import json
import lzma
import os
import re
import stat
import tarfile
import zlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ._files import file_kind, open_regular, oserror_message
from ._messages import ExtractError, counted, log


# The files of an image folder taken as images, by their names' ends (any case).
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
# The members of a webdataset tar taken as a sample's image, by their extensions.
WDS_IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
# The names of the tar files train-wds takes from a directory, and strips from a tar's name to
# name its output shard: plain, and each compression this Python's tarfile reads (which is what
# a tar named on the command line may be).
_TAR_COMPRESSED = {"gz": (".tar.gz", ".tgz"), "bz2": (".tar.bz2", ".tbz2", ".tbz"), "xz": (".tar.xz", ".txz"),
                   "zst": (".tar.zst", ".tzst")}
TAR_SUFFIXES = (".tar",) + tuple(
    suf for meth, sufs in _TAR_COMPRESSED.items() if meth in tarfile.TarFile.OPEN_METH for suf in sufs)


def log_irregular(where: str, irregular: Sequence[str]) -> None:
    """Reports the entries of a directory listing that were left out for not being regular
    files (named pipes, devices, directories, broken links): reading one would block or fail."""
    if irregular:
        what = counted(len(irregular), "entry that is not a regular file", "entries that are not regular files")
        log(f"{where}: skipped {what}, e.g. {irregular[0]}")


# A caption longer than this many characters is no caption (real ones are a sentence or a few):
# the tokenizer encodes all of a text before it cuts it to CLIP's 77 tokens, and a caption of
# 20 MB took 4 GB and a minute.
MAX_CAPTION_CHARS = 1 << 16


def check_caption(text: str, what: str, remedy: str) -> None:
    """Refuses ``text`` holding a lone surrogate (as a "\\ud800" escape in JSON gives): it is no
    Unicode text, and the tokenizer fails on it with a TypeError; and one longer than
    MAX_CAPTION_CHARS."""
    if len(text) > MAX_CAPTION_CHARS:
        raise ExtractError(f"{what} {text[:40]!r}... has {len(text)} characters, over the {MAX_CAPTION_CHARS} "
                           f"of any caption: {remedy}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ExtractError(f"{what} {text!r} is not Unicode text (it holds a lone surrogate, as a \\ud800 "
                           f"escape in JSON gives): {remedy}") from None


def _rel(root: str, p: str) -> str:
    return p if os.path.isabs(p) else os.path.join(root, p)


def _read_text(path: str) -> str:
    """The text of a UTF-8 file, without a leading byte order mark; invalid UTF-8 is an error
    naming the line."""
    try:
        with open_regular(path) as f:  # (a named pipe would block)
            data = f.read()
    except OSError as e:
        raise ExtractError(oserror_message(e)) from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ExtractError(f"{path}:{line}: not valid UTF-8 ({e.reason})") from None


# A line break, as csv keeps it within a quoted field.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _row_start(path: str, after: int, end: int) -> int:
    """The line of the captions file ``path`` that a row read after line ``after``, up to line
    ``end``, begins on: the first after ``after`` that is not blank (the reader skips those). The
    file is read again: counting the row's line breaks back from its end was one line early where
    a quote ran on to the file's last line break, which is then the field's. (Only on refusal.)"""
    lines = io.StringIO(_read_text(path), newline="").readlines()
    at = after
    while at < min(end, len(lines)) and lines[at] in ("\n", "\r\n", "\r"):
        at += 1
    return at + 1


def _check_row_shape(row: dict, fields: Sequence[str], delimiter: str, path: str, after: int, end: int) -> None:
    """Refuses a row of a captions file (csv.DictReader's of header ``fields``, read after line
    ``after`` up to line ``end``) that is not one pair, where a pair or more were lost without a
    word: a field that runs on past a line break into a line that reads as a row (a quote left
    open, which took the rows after it into that field), or a row of more fields than the header
    with something in them (a caption's delimiter unquoted: the caption was cut there; an empty
    field after a trailing delimiter is none). A line reads as a row where its field in the image
    column names an image file (IMAGE_EXTS), found or not. A caption's own line breaks are
    whitespace to CLIP's tokenizer (as a trailing one pandas quotes) and are taken."""
    start = lambda: _row_start(path, after, end)
    column = fields.index("image")
    for name, value in row.items():
        if not isinstance(value, str) or ("\n" not in value and "\r" not in value):
            continue
        rows = csv.reader(_LINE_BREAK.split(value), delimiter=delimiter)
        if any(len(f) > column and f[column].strip().lower().endswith(IMAGE_EXTS) for f in rows):
            shown = repr(value[:60]) + ("..." if len(value) > 60 else "")
            raise ExtractError(f"{path}:{start()}: the {name} column of the row runs on to line {end} ({shown}), "
                               f"taking in what reads as rows of the file: a quote left open? Close it (a caption with "
                               f"a line of its own that reads as a row: give the captions as .jsonl)")
    if any(v.strip() for v in row.get(None, ())):
        raise ExtractError(f"{path}:{start()}: the row has more fields than the header names ({len(fields)}): a "
                           f"caption holding a {'tab' if delimiter == chr(9) else 'comma'} must be quoted (\"...\")")


def read_folder(root: str, captions: Optional[str] = None, need_captions: bool = True) -> List[Tuple[str, Optional[str]]]:
    """The (image path, caption) pairs of an image folder, in a fixed order.

    With ``captions`` (a .jsonl file of objects with ``image`` and ``caption``, or a .csv/.tsv
    file with a header row naming ``image`` and ``caption`` columns; image paths relative to
    ``root`` or absolute) the pairs are that file's rows, in its order; an image may appear in
    several rows. Without it, every image file under ``root`` (recursively: each folder's files
    by name, then its subfolders by name; links to folders followed, a folder reached twice
    walked once, none holding ``root``) is paired with the text of
    its sidecar ``.txt`` file (``a/b.jpg`` -> ``a/b.txt``) when ``need_captions`` (an image
    without one is an error), else with None. When
    ``need_captions``, an empty (or blank) caption is an error as a missing one is: the CLIP
    embedding of no text would be its row's training target. Entries that are not
    regular files (named pipes, devices) are skipped with a warning. Of a captions file, the
    first 1000 images are checked to exist; a missing one further down is reported as not
    decoding.
    """
    if not os.path.isdir(root):
        raise ExtractError(f"{root}: not a directory")
    pairs: List[Tuple[str, Optional[str]]] = []
    if captions:
        if not os.path.isfile(captions):
            what = file_kind(os.stat(captions).st_mode) if os.path.exists(captions) else "no such file"
            raise ExtractError(f"--captions {captions}: {what}, not a captions file")
        if captions.endswith(".jsonl"):
            for n, line in enumerate(_read_text(captions).split("\n"), 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    img, cap = rec["image"], rec["caption"]
                except (json.JSONDecodeError, KeyError, TypeError, RecursionError) as e:  # (nested too deep)
                    raise ExtractError(
                        f"{captions}:{n}: want a JSON object with \"image\" and \"caption\" ({e})") from None
                # str() would turn null or a list into a caption ("None", "['a', 'b']")
                if not isinstance(img, str) or not isinstance(cap, str):
                    raise ExtractError(f"{captions}:{n}: \"image\" and \"caption\" must be strings, "
                                       f"got {type(img).__name__} and {type(cap).__name__}")
                if need_captions and not cap.strip():
                    raise ExtractError(f"{captions}:{n}: the caption of {img} is empty")
                if need_captions:  # (refused now, not when its shard comes)
                    check_caption(cap, f"{captions}:{n}: caption", "mend it in the captions file")
                pairs.append((_rel(root, img), cap))
        elif captions.endswith((".csv", ".tsv")):
            delimiter = "\t" if captions.endswith(".tsv") else ","
            reader = csv.DictReader(io.StringIO(_read_text(captions), newline=""), delimiter=delimiter)
            after = 0  # (no row read yet: a csv.Error in the header is named at line 1)
            try:
                if not reader.fieldnames or "image" not in reader.fieldnames or "caption" not in reader.fieldnames:
                    raise ExtractError(f"{captions}: the header row must name an image and a caption column, "
                                       f"got {reader.fieldnames}")
                for name in ("image", "caption"):  # (the reader would take the last of them)
                    columns = [str(i + 1) for i, f in enumerate(reader.fieldnames) if f == name]
                    if len(columns) > 1:
                        times = "twice" if len(columns) == 2 else f"{len(columns)} times"
                        raise ExtractError(f"{captions}: the header row names {name} {times} (columns "
                                           f"{', '.join(columns[:-1])} and {columns[-1]}): rename all but one")
                after = reader.line_num  # (the line before the next row)
                for row in reader:
                    _check_row_shape(row, reader.fieldnames, delimiter, captions, after, reader.line_num)
                    after = reader.line_num
                    # a short row leaves its last columns None: refused here, not in the tokenizer
                    # after the models have loaded
                    if row["image"] is None or row["caption"] is None:
                        raise ExtractError(f"{captions}:{reader.line_num}: the row has no "
                                           f"{'image' if row['image'] is None else 'caption'} column")
                    if need_captions and not row["caption"].strip():
                        raise ExtractError(f"{captions}:{reader.line_num}: the caption of {row['image']} is empty")
                    if need_captions:  # (refused now, not when its shard comes)
                        check_caption(row["caption"], f"{captions}:{reader.line_num}: caption", "mend it in the captions file")
                    pairs.append((_rel(root, row["image"]), row["caption"]))
            except csv.Error as e:  # a field over csv's limit (a quote left open runs on to the end)
                # (named where its row begins, and the line reached: the DictReader's own count
                # stops at the last whole row)
                reached = reader.reader.line_num
                raise ExtractError(f"{captions}:{_row_start(captions, after, reached)}: the row runs on to line "
                                   f"{reached}, where csv gives up ({e}): a quote left open? Close it") from None
        else:
            raise ExtractError(f"--captions {captions}: want a .jsonl, .csv or .tsv file")
        # A wrong path convention shows in the first rows; checking them all would stat millions
        # of files on every resume. A missing image further down is counted as not decoding.
        named = list(dict.fromkeys(p for p, _ in pairs[:1000]))  # (an image may be named in several rows)
        missing = [p for p in named if not os.path.isfile(p)]
        if missing:
            p = missing[0]
            why = "does not exist" if not os.path.exists(p) else \
                f"is {file_kind(os.stat(p).st_mode)}, not an image file"
            msg = f"{captions}: {p} {why}"
            if len(missing) > 1:
                scope = "its first 1000 rows name" if len(pairs) > 1000 else "it names"
                msg += f"; of the {len(named)} images {scope}, {len(missing)} are missing or no files"
            if len(missing) == len(named) and all(m.startswith(os.path.join(root, "")) for m in missing):
                msg += f"; a relative path is taken from the folder, {root}"
            raise ExtractError(msg)
        if not pairs:
            raise ExtractError(f"{captions}: no rows")
        return pairs
    irregular, repeated, uncaptioned = [], [], []
    walked = set()  # the real paths of the folders walked
    top = os.path.realpath(root)
    # Links to folders are followed: "every image under the folder" includes those of a linked
    # one (os.walk would pass it by without a word). A folder reached again, by a link to one
    # walked, is walked once; a link to a folder that holds ROOT (.., /: a loop, and the rest of
    # that folder is not under ROOT) is not followed.
    def unlistable(e: OSError):
        # (os.walk passes a folder it cannot list by without a word: its images would be missing)
        raise ExtractError(f"{root}: cannot list {e.filename}: {e.strerror}") from None

    for d, dirs, files in os.walk(root, followlinks=True, onerror=unlistable):
        real = os.path.realpath(d)
        holds_root = real != top and (top + os.sep).startswith(real.rstrip(os.sep) + os.sep)
        if real in walked or holds_root:
            repeated.append((d, real))
            dirs[:] = []
            continue
        walked.add(real)
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(IMAGE_EXTS):
                p = os.path.join(d, name)
                if not os.path.isfile(p):  # reading a named pipe would wait for a writer forever
                    irregular.append(p)
                    continue
                side = os.path.splitext(p)[0] + ".txt"
                cap = None
                if need_captions:
                    if not os.path.isfile(side):
                        uncaptioned.append((p, side))  # (all counted, then refused)
                        continue
                    cap = _read_text(side).strip()
                    if not cap:
                        raise ExtractError(f"{p} has an empty caption file {side} (or pass --captions)")
                    check_caption(cap, f"{side}: caption", "mend the caption file")
                pairs.append((p, cap))
    log_irregular(root, irregular)
    if repeated:
        log(f"{root}: skipped {len(repeated)} linked folders already walked under another name, or holding "
             f"{root} itself, e.g. {repeated[0][0]} (= {repeated[0][1]})")
    if uncaptioned:
        p, side = uncaptioned[0]
        raise ExtractError(f"{len(uncaptioned)} of {len(pairs) + len(uncaptioned)} images "
                           f"{'has' if len(uncaptioned) == 1 else 'have'} no caption file, e.g. "
                           f"{p} has no {side} (or pass --captions)")
    if not pairs:
        raise ExtractError(f"{root}: no images ({', '.join(IMAGE_EXTS)})")
    return pairs


@dataclass
class TarIndex:
    refs: list          # per sample: (offset, size), or the bytes of a compressed tar
    keys: List[str]
    captions: List[Optional[str]]
    incomplete: int     # samples without an image (or, when needed, a caption)
    empty: int = 0      # samples left out, when captions are needed, for an empty (or blank) one
    not_utf8: int = 0   # samples left out, when captions are needed, for one that is not UTF-8
    too_long: int = 0   # samples left out, when captions are needed, for one over MAX_CAPTION_CHARS
    too_large: int = 0  # samples left out for an image member over MAX_TAR_IMAGE_BYTES
    twice: int = 0      # keys left out for two images or two captions (which pairs with which?)

    def skipped(self) -> List[Tuple[int, str]]:
        """What was left out, for the report of the tar's shard: (count, the count in words) pairs."""
        return [(n, counted(n, one, more)) for n, one, more in (
            (self.incomplete, "sample lacks an image or a caption", "samples lack an image or a caption"),
            (self.empty, "sample has an empty caption", "samples have an empty caption"),
            (self.not_utf8, "sample has a caption that is not UTF-8", "samples have a caption that is not UTF-8"),
            (self.too_long, f"sample has a caption over {MAX_CAPTION_CHARS} characters",
             f"samples have a caption over {MAX_CAPTION_CHARS} characters"),
            (self.too_large, f"sample has an image over {MAX_TAR_IMAGE_BYTES >> 20} MiB",
             f"samples have an image over {MAX_TAR_IMAGE_BYTES >> 20} MiB"),
            (self.twice, "key comes with two images or two captions (which pairs with which is unknown)",
             "keys come with two images or two captions (which pairs with which is unknown)"))]


# An image member of a tar larger than this is left out: it is read whole into memory (a
# compressed tar of 1 MB held an image of 1 GiB), and no photograph is as large.
MAX_TAR_IMAGE_BYTES = 256 << 20


# The images of a compressed tar are held in memory, read as its stream is decompressed: a tar
# whose images come to more is refused, to be decompressed first (a plain tar's images are read
# from the file as they are needed).
MAX_COMPRESSED_TAR_IMAGE_BYTES = 1 << 30


def index_tar(path: str, need_captions: bool = True) -> TarIndex:
    """The samples of a webdataset tar as img2dataset writes it: ``KEY.jpg`` (or png/webp) with
    ``KEY.txt`` (and ``KEY.json``, unused), in the order their keys first appear."""
    try:
        fh = open_regular(path)  # not a named pipe, device or directory
    except OSError as e:
        raise ExtractError(f"{oserror_message(e)}; output shard {tar_name(path)} is not written") from None
    with fh:
        try:
            tf = tarfile.open(fileobj=fh, mode="r:")
            compressed = False
        except tarfile.ReadError:
            fh.seek(0)
            try:
                tf = tarfile.open(fileobj=fh, mode="r:*")
            except tarfile.ReadError as e:  # (tarfile's lists each compression it tried, a line each)
                head, *tried = str(e).splitlines()
                why = head.rstrip(":") + (": " + "; ".join(t.lstrip("- ") for t in tried) if tried else "")
                raise ExtractError(f"{path}: not a tar file ({why})") from None
            compressed = True
        return _index_open_tar(path, tf, compressed, need_captions)


def _index_open_tar(path: str, tf: tarfile.TarFile, compressed: bool, need_captions: bool) -> TarIndex:
    """index_tar of the tar file ``path`` opened as ``tf`` (which this closes)."""
    samples: Dict[str, dict] = {}
    held = 0  # bytes of images held in memory (a compressed tar's)
    try:
        with tf:
            for m in tf:
                if not m.isfile():
                    continue
                d, base = os.path.split(m.name)
                if base.startswith(".") or "." not in base:
                    continue
                stem, ext = base.split(".", 1)
                key = os.path.join(d, stem) if d else stem
                ext = ext.lower()
                s = samples.setdefault(key, {})
                if ext in WDS_IMAGE_EXTS:
                    # A key's second image (or caption, below): two samples under one key, or
                    # one sample twice, and which image goes with which caption is unknown
                    # (the first image paired with the last caption).
                    if "image" in s:
                        s["twice"] = True
                    elif m.size > MAX_TAR_IMAGE_BYTES:
                        s["image"], s["too_large"] = None, True
                    elif compressed:
                        held += m.size
                        if held > MAX_COMPRESSED_TAR_IMAGE_BYTES:
                            raise ExtractError(f"{path}: its images come to over {MAX_COMPRESSED_TAR_IMAGE_BYTES >> 20} MiB, "
                                               f"which a compressed tar's are held in memory to decode: decompress it "
                                               f"(a plain tar's images are read as they are needed); output shard "
                                               f"{tar_name(path)} is not written")
                        s["image"] = tf.extractfile(m).read()
                    else:
                        s["image"] = (m.offset_data, m.size)
                elif ext == "txt" and need_captions:  # (unused otherwise: not read)
                    if "caption" in s:
                        s["twice"] = True
                    elif m.size > 4 * MAX_CAPTION_CHARS:  # (UTF-8: at most 4 bytes a character)
                        s["caption"], s["too_long"] = "", True
                    else:
                        # (a byte-order mark is no text, as train-folder's sidecars read it; bytes that
                        # are not UTF-8 are no caption: decoded with U+FFFD, a target would be made of
                        # guesses)
                        try:
                            s["caption"] = tf.extractfile(m).read().decode("utf-8").lstrip("\ufeff").strip()
                            s["too_long"] = len(s["caption"]) > MAX_CAPTION_CHARS
                        except UnicodeDecodeError:
                            s["caption"], s["not_utf8"] = "", True
            # tarfile ends quietly where a header is missing, cut or corrupt: a tar cut at a
            # member's boundary looks complete. A whole tar has a zero block (the end-of-archive
            # marker) there, in the decompressed stream of a compressed one.
            end = tf.offset
            tf.fileobj.seek(end)
            block = tf.fileobj.read(tarfile.BLOCKSIZE)
    except (tarfile.ReadError, EOFError, OSError, zlib.error, lzma.LZMAError) as e:  # cut short, or corrupt inside
        raise ExtractError(f"{path}: truncated or corrupt tar file ({e}); output shard {tar_name(path)} "
                           f"is not written") from None
    if len(block) < tarfile.BLOCKSIZE or block.count(0) != len(block):
        raise ExtractError(f"{path}: no end-of-archive marker after its {len(samples)} samples, at byte {end}"
                           f"{' of its decompressed stream' if compressed else ''} (cut short, or corrupt); "
                           f"output shard {tar_name(path)} is not written")
    idx = TarIndex([], [], [], 0)
    for key, s in samples.items():
        if s.get("twice"):
            idx.twice += 1
            continue
        if "image" not in s or (need_captions and "caption" not in s):
            idx.incomplete += 1
            continue
        if s.get("too_large"):
            idx.too_large += 1
            continue
        if need_captions and s.get("not_utf8"):
            idx.not_utf8 += 1
            continue
        if need_captions and s.get("too_long"):
            idx.too_long += 1
            continue
        # (stripped as read) no text is no caption: the CLIP embedding of "" would be the target
        if need_captions and not s["caption"]:
            idx.empty += 1
            continue
        idx.refs.append(s["image"])
        idx.keys.append(key)
        idx.captions.append(s.get("caption"))
    return idx


def read_karpathy(path: str, images_root: str, split: str = "test"):
    """The images of one split of a Karpathy-split json (``dataset_coco.json``,
    ``dataset_flickr30k.json``, ``dataset_flickr8k.json``): their paths, all their captions, and
    the image of each caption. An image's path is ``images_root/filepath/filename`` (COCO's
    ``filepath`` is ``val2014`` or ``train2014``), else ``images_root/filename``. An image listed
    twice in the split (the same file) is an error; empty captions are left out, and counted on
    stderr."""
    try:
        with open_regular(path) as f:  # (a named pipe would block)
            data = json.loads(f.read().decode("utf-8"))
    except OSError as e:
        raise ExtractError(f"--karpathy {oserror_message(e)}") from None
    except (ValueError, RecursionError) as e:  # not UTF-8, not JSON, or nested too deep for the parser
        raise ExtractError(f"--karpathy {path}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ExtractError(f"--karpathy {path}: want a JSON object with an \"images\" list (Karpathy split)")
    dataset = data.get("dataset")
    if dataset is not None and not isinstance(dataset, str):
        raise ExtractError(f"{path}: \"dataset\" is a {type(dataset).__name__}, want a string")
    for j, im in enumerate(data["images"]):
        if not isinstance(im, dict):
            raise ExtractError(f"{path}: images[{j}] is a {type(im).__name__}, want a JSON object")
    picked = [(j, im) for j, im in enumerate(data["images"]) if im.get("split") == split]
    if not picked:
        splits = sorted({str(im.get("split")) for im in data["images"]})
        held = f"splits: {', '.join(splits)}" if splits else "its images list is empty"
        raise ExtractError(f"{path}: no images in split {split!r} ({held})")
    paths, captions, cap_image, missing, not_files = [], [], [], [], []
    seen: Dict[Tuple[int, int], Tuple[int, str]] = {}  # (device, inode) -> (images[j], filename)
    empty, first_empty = 0, None
    for i, (j, im) in enumerate(picked):
        fn = im.get("filename")
        if not fn or not isinstance(fn, str):
            raise ExtractError(f"{path}: image {i} of split {split!r} has no filename (a string): {fn!r}")
        fp = im.get("filepath")
        if fp is not None and not isinstance(fp, str):
            raise ExtractError(f"{path}: image {fn}: filepath {fp!r} is not a string")
        for part in (fp, fn):  # (joined to --images: an absolute path or a .. would leave it)
            if part and (os.path.isabs(part) or ".." in part.replace("\\", "/").split("/")):
                raise ExtractError(f"{path}: image {fn}: {part!r} is not a path under --images {images_root} "
                                   f"(absolute, or with a ..): the json names images relative to --images")
        cands = [os.path.join(images_root, fp, fn)] if fp else []
        cands.append(os.path.join(images_root, fn))
        p = next((c for c in cands if os.path.isfile(c)), None)
        if p is None:
            # (One that exists but is no regular file, a directory or a pipe, is said to be so.)
            p = next((c for c in cands if os.path.exists(c)), None)
            (not_files if p else missing).append(p or cands[0])
            p = p or cands[0]
        else:
            # One image listed twice (by one name, or two that lead to one file) would be two
            # identical rows: every caption of it would tie between them, and a tie scores as a
            # miss for the row that is not its own.
            st = os.stat(p)
            other = seen.setdefault((st.st_dev, st.st_ino), (j, fn))
            if other[0] != j:
                raise ExtractError(f"{path}: images[{other[0]}] ({other[1]}) and images[{j}] ({fn}) of split "
                                   f"{split!r} are the same image, {p}: each image must be listed once")
        paths.append(p)
        sents = im.get("sentences") or []
        if not isinstance(sents, list):
            raise ExtractError(f"{path}: image {fn}: sentences is a {type(sents).__name__}, want a list")
        caps = []
        for k, s in enumerate(sents):
            if not isinstance(s, dict):
                raise ExtractError(f"{path}: image {fn}: sentence {k} is a {type(s).__name__}, want a JSON object")
            raw, tokens = s.get("raw"), s.get("tokens")
            if raw is None and tokens:
                if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                    raise ExtractError(f"{path}: image {fn}: sentence {k}: tokens {tokens!r} is not a list of strings")
                raw = " ".join(tokens)
            if raw is not None and not isinstance(raw, str):
                raise ExtractError(f"{path}: image {fn}: sentence {k}: raw {raw!r} is not a string")
            if raw is not None:  # (refused now, not after the images have run)
                check_caption(raw, f"{path}: image {fn}: sentence {k}: caption", "mend it in the json")
            if raw is not None:
                raw = raw.lstrip("\ufeff").strip()  # (a byte-order mark is no text)
            if raw:
                caps.append(raw)
            else:
                empty += 1
                first_empty = first_empty or f"sentence {k} of {fn}"
        if not caps:
            raise ExtractError(f"{path}: image {fn} has no captions")
        captions.extend(caps)
        cap_image.extend([i] * len(caps))
    if missing:
        raise ExtractError(f"{len(missing)} of {len(picked)} images {'is' if len(missing) == 1 else 'are'} not under "
                           f"--images {images_root}, "
                           f"e.g. {missing[0]}")
    if not_files:
        are = "is no regular file" if len(not_files) == 1 else "are not regular files"
        raise ExtractError(f"{len(not_files)} of {len(picked)} images {are} (a directory, a named pipe, a device), "
                           f"e.g. {not_files[0]}")
    if empty:
        # (kept out: the CLIP embedding of no text would be a query of the set)
        log(f"{path}: skipped {empty} empty captions of split {split!r}, e.g. {first_empty}")
    return paths, captions, np.asarray(cap_image, dtype=np.int64), dataset


def expand_tars(inputs: Sequence[str]) -> List[str]:
    """The tar files of the command line: each file named as it is, and of each directory its
    files named like a tar (TAR_SUFFIXES), in name order. Entries that are not regular files
    are left out of a directory's (and reported, as train-folder does); named, they are
    refused here, before any model loads or any tar is read."""
    tars = []
    for p in inputs:
        try:
            mode = os.stat(p).st_mode
        except FileNotFoundError:
            kind = "a broken symbolic link" if os.path.islink(p) else "no such file or directory"
            raise ExtractError(f"{p}: {kind}") from None
        except OSError as e:
            raise ExtractError(oserror_message(e)) from None
        if stat.S_ISDIR(mode):
            try:
                names = sorted(n for n in os.listdir(p) if n.lower().endswith(TAR_SUFFIXES))
            except OSError as e:
                raise ExtractError(oserror_message(e)) from None
            found, irregular = [], []
            for n in names:
                f = os.path.join(p, n)
                (found if os.path.isfile(f) else irregular).append(f)
            log_irregular(p, irregular)
            if not found:
                raise ExtractError(f"{p}: no tar files ({', '.join(TAR_SUFFIXES)})")
            # One shard per name: of x.tar and x.tar.gz (a compressed copy beside it), the
            # first form of TAR_SUFFIXES, the plain tar.
            rank = lambda f: next(i for i, suf in enumerate(TAR_SUFFIXES) if f.lower().endswith(suf))
            chosen: Dict[str, str] = {}
            for f in sorted(found, key=rank):
                chosen.setdefault(tar_name(f), f)
            copies = sorted(set(found) - set(chosen.values()))
            if copies:
                log(f"{p}: skipped {len(copies)} tar files whose shard another form of the same name "
                     f"gives, e.g. {copies[0]} (beside {chosen[tar_name(copies[0])]})")
            tars.extend(sorted(chosen.values()))
        elif stat.S_ISREG(mode):
            tars.append(p)
        else:
            raise ExtractError(f"{p}: {file_kind(mode)}, not a tar file or a directory of them")
    return tars


def tar_name(path: str) -> str:
    """The output shard of a tar: its name without the tar suffix (00042.tar.xz -> 00042)."""
    base = os.path.basename(path)
    for suf in TAR_SUFFIXES:
        if base.lower().endswith(suf):
            return base[: -len(suf)]
    return os.path.splitext(base)[0]


def read_lines(path: str) -> List[str]:
    """The lines of a UTF-8 text file, one query each, without their line ends. An empty (or
    blank) line is an error naming it: row i of the output must be line i + 1. Those after the
    last line of text (a file ending in "\\n\\n") are ignored: they number no row."""
    # Lines end at \n alone, as `wc -l` counts them (str.splitlines would also break at \f,
    # U+2028 and others); a CRLF file's \r goes with its line end.
    lines = _read_text(path).split("\n")
    if lines[-1] == "":
        lines.pop()  # after the last line end
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    end = len(lines)
    while end and not lines[end - 1].strip():
        end -= 1
    for n, line in enumerate(lines[:end], 1):
        if not line.strip():
            raise ExtractError(f"{path}:{n}: empty line (row {n - 1} of the output would have no text)")
        check_caption(line, f"{path}:{n}: line", "mend the file")
    if not end:
        raise ExtractError(f"{path}: no lines")
    if end < len(lines):
        log(f"{path}: ignored {counted(len(lines) - end, 'empty line', 'empty lines')} at its end")
    return lines[:end]
