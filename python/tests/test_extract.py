"""python -m dinoclip.extract: every subcommand's files, their formats and values, resuming."""

import errno
import gzip
import hashlib
import io
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import threading
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import EMBED_DIM, FEATURE_DIM, make_caption, make_image
from dinoclip import _files, _inputs, encoders, extract, transforms
from dinoclip.transforms import clip_transform, dinov2_transform

# Rows computed in a batch and one at a time differ by float32 rounding only.
TOL = dict(rtol=1e-4, atol=1e-5)


def run(tiny_models, *args, workers="0"):
    return extract.main([*map(str, args), "--dinov2", tiny_models["dinov2"], "--clip", tiny_models["clip"],
                         "--device", "cpu", "--workers", workers, "--batch-size", "4", "--quiet"])


def read_npy(path, dtype="<f4"):
    """Reads a .npy file, checking that it is what numpy.save writes: format 1.0, C order,
    the expected little-endian dtype, and no trailing bytes."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        assert version == (1, 0), path
        shape, fortran, dt = np.lib.format.read_array_header_1_0(f)
        offset = f.tell()
    assert version == (1, 0), path
    assert not fortran, path
    assert dt == np.dtype(dtype), (path, dt)
    assert os.path.getsize(path) == offset + int(np.prod(shape)) * dt.itemsize, path
    a = np.load(path, allow_pickle=False)
    if dt.kind == "f":
        assert np.isfinite(a).all()
    return a


@pytest.fixture(scope="module")
def models(tiny_models):
    return encoders.load_dinov2(tiny_models["dinov2"]), encoders.load_clip(tiny_models["clip"]), \
        encoders.load_tokenizer(tiny_models["clip"])


def direct(models, images, captions=None):
    """What the rows must be: each image (caption) on its own, through the same functions."""
    dinov2, clip, tok = models
    dt, ct = dinov2_transform(), clip_transform(224)
    with torch.inference_mode():
        d = np.stack([encoders.dinov2_features(dinov2, dt(im)[None])[0].numpy() for im in images])
        if captions is None:
            c = np.stack([encoders.clip_image_embeddings(clip, ct(im)[None])[0].numpy() for im in images])
        else:
            c = np.stack([encoders.clip_text_embeddings(clip, tok([t]))[0].numpy() for t in captions])
    return d, c


def folder_images(root):
    paths = []
    for d, dirs, files in os.walk(root):
        dirs.sort()
        paths += [os.path.join(d, f) for f in sorted(files) if not f.endswith(".txt")]
    return paths


# ---------------------------------------------------------------------------
# train-folder


def test_train_folder(extracted, image_folder, models):
    out = extracted["train"]
    names = sorted(os.listdir(out))
    assert names == ["extract.json"] + [f"shard-0000{k}.{w}" for k in range(3) for w in ("clip.npy", "dino.npy", "images.txt")]
    # the image of each row, by its absolute path
    listed = [(out / f"shard-0000{k}.images.txt").read_text().splitlines() for k in range(3)]
    assert sum(listed, []) == [os.path.abspath(p) for p in folder_images(image_folder)]
    dino = [read_npy(out / f"shard-0000{k}.dino.npy") for k in range(3)]
    clip = [read_npy(out / f"shard-0000{k}.clip.npy") for k in range(3)]
    assert [a.shape for a in dino] == [(5, FEATURE_DIM), (5, FEATURE_DIM), (2, FEATURE_DIM)]
    assert [a.shape for a in clip] == [(5, EMBED_DIM), (5, EMBED_DIM), (2, EMBED_DIM)]
    # row i is image i in path order: DINOv2 mean-pooled features, CLIP image embeddings
    images = [Image.open(p) for p in folder_images(image_folder)]
    d, c = direct(models, images)
    np.testing.assert_allclose(np.concatenate(dino), d, **TOL)
    np.testing.assert_allclose(np.concatenate(clip), c, **TOL)
    m = json.loads((out / "extract.json").read_text())
    assert m["target"] == "image" and m["shard_size"] == 5 and m["feature_dim"] == FEATURE_DIM


def test_train_folder_resumes(tmp_path, tiny_models, image_folder, monkeypatch, capfd):
    out = tmp_path / "t"
    assert run(tiny_models, "train-folder", image_folder, "--out", out, "--shard-size", "5") == 0
    first = {n: os.stat(out / n) for n in os.listdir(out)}
    os.unlink(out / "shard-00001.clip.npy")  # as if killed between the two files
    capfd.readouterr()
    assert run(tiny_models, "train-folder", image_folder, "--out", out, "--shard-size", "5") == 0
    err = capfd.readouterr().err
    assert "(2 already done)" in err and "shard-00001: 5 rows" in err and "shard-00000:" not in err
    for n in ("shard-00000.dino.npy", "shard-00000.clip.npy", "shard-00002.dino.npy"):
        st = os.stat(out / n)
        assert (st.st_ino, st.st_mtime_ns) == (first[n].st_ino, first[n].st_mtime_ns), n
    assert os.stat(out / "shard-00001.dino.npy").st_ino != first["shard-00001.dino.npy"].st_ino
    # all done: no model is even loaded
    monkeypatch.setattr(encoders, "load_dinov2", lambda *a, **k: pytest.fail("loaded a model"))
    assert run(tiny_models, "train-folder", image_folder, "--out", out, "--shard-size", "5") == 0
    # other settings are refused rather than mixed in or taken as done
    capfd.readouterr()
    assert run(tiny_models, "train-folder", image_folder, "--out", out, "--shard-size", "4") == 1
    assert "shard_size was 5, now 4" in capfd.readouterr().err
    # what a writer killed while writing a shard left, too young for the resume to take it for a
    # dead writer's, goes with a later run, though that has no shard left to write
    left = out / ".shard-00001.dino.npy.tmp-12"
    left.write_bytes(b"partial")
    old = time.time() - 2 * _files.STALE_AGE
    os.utime(left, (old, old))
    assert run(tiny_models, "train-folder", image_folder, "--out", out, "--shard-size", "5") == 0
    assert f"removed {left}" in capfd.readouterr().err
    assert not [n for n in os.listdir(out) if ".tmp-" in n]


def test_train_folder_resume_refuses_a_damaged_shard(tmp_path, tiny_models, image_folder, capfd):
    """A shard whose two .npy files are there but not whole, or not of one shard (a file emptied,
    cut short, of another shard, or no .npy file) is refused on resume, naming it, rather than
    counted done (its .clip.npy was not even opened) or met with a traceback (numpy's EOFError)."""
    ref = tmp_path / "ref"
    assert run(tiny_models, "train-folder", image_folder, "--out", ref, "--shard-size", "5") == 0
    clip0 = (ref / "shard-00000.clip.npy").read_bytes()

    def npy(a):
        b = io.BytesIO()
        np.save(b, a)
        return b.getvalue()

    for damage, name, data, says in [
            ("emptied", "shard-00001.dino.npy", b"", "not a shard this tool wrote"),
            ("cut short", "shard-00001.clip.npy", clip0[:200], "not a shard this tool wrote"),
            ("another shard's", "shard-00002.clip.npy", clip0, "hold 2 and 5 rows"),
            ("no .npy file", "shard-00002.dino.npy", b"rows\n" * 40, "does not begin as one"),
            ("longer", "shard-00001.clip.npy", clip0 + b"\0" * 4, "longer than its header says"),
            ("of another width", "shard-00001.clip.npy", npy(np.zeros((5, EMBED_DIM + 1), np.float32)),
             f"[5, {EMBED_DIM + 1}] float32, not a shard this tool wrote ([rows, {EMBED_DIM}] float32)"),
            ("float16", "shard-00001.dino.npy", npy(np.zeros((5, FEATURE_DIM), np.float16)), "float16, not a shard"),
            ("1-D", "shard-00001.dino.npy", npy(np.zeros(5, np.float32)), "[5] float32, not a shard")]:
        out = tmp_path / damage.replace(" ", "-")
        shutil.copytree(ref, out)
        (out / name).write_bytes(data)
        capfd.readouterr()
        assert run(tiny_models, "train-folder", image_folder, "--out", out, "--shard-size", "5") == 1, damage
        err = capfd.readouterr().err
        assert str(out / name) in err and says in err and "remove" in err and "Traceback" not in err, (damage, err)
    # Shards of the other dtype under a record from before --float16 was recorded: the flag to give
    out = tmp_path / "float16-unrecorded"
    assert run(tiny_models, "train-folder", image_folder, "--out", out, "--shard-size", "5", "--float16") == 0
    record = json.loads((out / extract.MANIFEST).read_text())
    del record["float16"]
    (out / extract.MANIFEST).write_text(json.dumps(record))
    capfd.readouterr()
    assert run(tiny_models, "train-folder", image_folder, "--out", out, "--shard-size", "5") == 1
    assert "shard-00000.dino.npy: float16, written by a run with --float16: run with --float16 to go on" in \
        capfd.readouterr().err


def test_train_folder_resume_refuses_other_preprocessing(tmp_path, tiny_models, image_folder, monkeypatch, capfd):
    """Shards whose extract.json records another version of the preprocessing (none recorded:
    version 1, which dropped an image's alpha) are not added to: those done and those extracted
    now would disagree on images with transparency. A run with nothing left to extract skips
    them, as it does any whole extraction; shards of this version resume."""
    out = tmp_path / "t"
    assert run(tiny_models, "train-folder", image_folder, "--out", out, "--shard-size", "5") == 0
    manifest = json.loads((out / extract.MANIFEST).read_text())
    assert manifest["preprocessing"] == transforms.PREPROCESSING_VERSION == 2
    older = {k: v for k, v in manifest.items() if k != "preprocessing"}
    with monkeypatch.context() as m:
        m.setattr(encoders, "load_dinov2", lambda *a, **k: pytest.fail("loaded a model"))
        (out / extract.MANIFEST).write_text(json.dumps(older))
        capfd.readouterr()
        assert run(tiny_models, "train-folder", image_folder, "--out", out, "--shard-size", "5") == 0
        assert "(3 already done)" in capfd.readouterr().err
        os.unlink(out / "shard-00001.clip.npy")  # as if killed between the two files
        for recorded, want in ((None, "an earlier dinoclip's preprocessing (version 1; now 2: images with "
                                      "transparency are composited onto white"),
                               (3, "preprocessing version 3, which this dinoclip (version 2) does not make"),
                               ("2", "preprocessing version '2', which")):
            (out / extract.MANIFEST).write_text(json.dumps(older if recorded is None else
                                                           {**older, "preprocessing": recorded}))
            assert run(tiny_models, "train-folder", image_folder, "--out", out, "--shard-size", "5") == 1
            err = capfd.readouterr().err
            assert f"{out} holds shards whose images were made with {want}" in err, err
            assert f"Use another --out, or delete {out} to extract it all anew; or, where no image of the inputs " \
                   f"has transparency" in err, err
            assert f'set "preprocessing": 2 in {out / extract.MANIFEST} to go on' in err, err
            assert not (out / "shard-00001.clip.npy").exists()
        # the same refusal under the directory's lock, just before the shards are written (another
        # process sharing the --out may have recorded meanwhile)
        settings = {**{k: v for k, v in manifest.items() if k not in ("rows", "inputs_sha256")}}
        (out / extract.MANIFEST).write_text(json.dumps(older))
        with pytest.raises(extract.ExtractError, match="an earlier dinoclip's preprocessing"):
            extract._check_manifest(str(out), settings, write=True)
    # as the message says: where no image has transparency (these are opaque), the record is mended
    (out / extract.MANIFEST).write_text(json.dumps({**older, "preprocessing": 2}))
    assert run(tiny_models, "train-folder", image_folder, "--out", out, "--shard-size", "5") == 0
    assert "(2 already done)" in capfd.readouterr().err
    assert (out / "shard-00001.clip.npy").exists()
    # a record of version 1 beside no shard (a run killed between recording and its first shard)
    # describes none: the run goes on, and records this version
    empty = tmp_path / "e"
    empty.mkdir()
    (empty / extract.MANIFEST).write_text(json.dumps(older))
    assert run(tiny_models, "train-folder", image_folder, "--out", empty, "--shard-size", "5") == 0
    assert json.loads((empty / extract.MANIFEST).read_text())["preprocessing"] == 2


def test_train_wds_resume_refuses_other_preprocessing(tmp_path, tiny_models, wds, monkeypatch, capfd):
    """train-wds as train-folder: shards of version 1 are skipped where all are done, and not
    added to where one is left."""
    root, _ = wds
    out = tmp_path / "o"
    assert run(tiny_models, "train-wds", root, "--out", out) == 0
    manifest = json.loads((out / extract.MANIFEST).read_text())
    (out / extract.MANIFEST).write_text(json.dumps({k: v for k, v in manifest.items() if k != "preprocessing"}))
    monkeypatch.setattr(encoders, "load_dinov2", lambda *a, **k: pytest.fail("loaded a model"))
    capfd.readouterr()
    assert run(tiny_models, "train-wds", root, "--out", out) == 0
    assert "(2 already done)" in capfd.readouterr().err
    os.unlink(out / "00001.dino.npy")
    assert run(tiny_models, "train-wds", root, "--out", out) == 1
    assert f"{out} holds shards whose images were made with an earlier dinoclip's preprocessing (version 1" in \
        capfd.readouterr().err
    assert not (out / "00001.dino.npy").exists()


def test_train_folder_resume_refuses_a_changed_folder(tmp_path, tiny_models, image_folder, monkeypatch, capfd):
    """A rerun into the same --out after the folder changed (an image replaced by another of
    another name, the count the same; one added; one's contents replaced) is refused: every shard
    is a slice of the folder's list, and those written would be skipped as done, listing images
    since removed. The same folder resumes; with --target image a caption's text is no input."""
    folder = tmp_path / "photos"
    shutil.copytree(image_folder, folder)
    out = tmp_path / "t"
    assert run(tiny_models, "train-folder", folder, "--out", out, "--shard-size", "5") == 0
    assert "inputs_sha256" in json.loads((out / "extract.json").read_text())
    monkeypatch.setattr(encoders, "load_dinov2", lambda *a, **k: pytest.fail("loaded a model"))
    (folder / "b" / "img08.txt").write_text("another caption\n")
    capfd.readouterr()
    assert run(tiny_models, "train-folder", folder, "--out", out, "--shard-size", "5") == 0
    assert "(3 already done)" in capfd.readouterr().err
    first = folder / "a" / "img00.jpg"
    for change, count in [
        (lambda: os.rename(folder / "b" / "img08.jpg", folder / "b" / "img07b.jpg"),
         "12 images, some replaced or captioned otherwise"),
        (lambda: shutil.copy(first, folder / "b" / "new.jpg"), "12 images then, 13 now"),
        (lambda: first.write_bytes(first.read_bytes() + b"\0" * 10), "12 images, some replaced or captioned otherwise"),
    ]:
        shutil.rmtree(folder)  # (each change alone)
        shutil.copytree(image_folder, folder)
        change()
        assert run(tiny_models, "train-folder", folder, "--out", out, "--shard-size", "5") == 1
        assert (f"{folder} changed since the shards in {out} were extracted from it ({count}): each shard is a "
                "slice of its list of images, so none can be kept") in capfd.readouterr().err


@pytest.mark.skipif(os.name != "posix", reason="symbolic links are POSIX's")
def test_train_folder_resumes_through_a_link_and_names_a_changed_setting(tmp_path, tiny_models, image_folder,
                                                                        monkeypatch, capfd):
    """The folder reached through a link, with a captions file naming its images by absolute
    path, is the same folder: the rerun resumes. A setting changed (the target) is refused naming
    the setting, not as a changed folder."""
    caps = tmp_path / "c.jsonl"
    caps.write_text("".join(json.dumps({"image": os.path.abspath(p), "caption": "x"}) + "\n"
                            for p in folder_images(image_folder)))
    os.symlink(image_folder, tmp_path / "link")
    out = tmp_path / "t"
    assert run(tiny_models, "train-folder", image_folder, "--captions", caps, "--out", out, "--shard-size", "5") == 0
    monkeypatch.setattr(encoders, "load_dinov2", lambda *a, **k: pytest.fail("loaded a model"))
    capfd.readouterr()
    assert run(tiny_models, "train-folder", tmp_path / "link", "--captions", caps, "--out", out, "--shard-size", "5") == 0
    assert "(3 already done)" in capfd.readouterr().err
    assert run(tiny_models, "train-folder", image_folder, "--captions", caps, "--out", out, "--shard-size", "5",
               "--target", "text") == 1
    err = capfd.readouterr().err
    assert "target was 'image', now 'text'" in err and "changed since" not in err, err


def test_train_folder_resume_refuses_other_inputs(tmp_path, tiny_models, image_folder, monkeypatch, capfd):
    """Another folder, captions file, dtype or model into the same --out is refused, naming the
    setting; the same model folder spelt another way is not another model."""
    out = tmp_path / "t"
    assert run(tiny_models, "train-folder", image_folder, "--out", out, "--shard-size", "5") == 0
    monkeypatch.setattr(encoders, "load_dinov2", lambda *a, **k: pytest.fail("loaded a model"))
    other = tmp_path / "other"
    shutil.copytree(image_folder, other)
    caps = tmp_path / "c.jsonl"
    caps.write_text("".join(json.dumps({"image": p, "caption": "x"}) + "\n" for p in folder_images(image_folder)))
    capfd.readouterr()
    for args, what in (([other], "root was"), ([image_folder, "--captions", caps], "captions was None"),
                       ([image_folder, "--float16"], "float16 was False, now True")):
        assert run(tiny_models, "train-folder", *args, "--out", out, "--shard-size", "5") == 1
        assert what in capfd.readouterr().err
    common = ["--device", "cpu", "--workers", "0", "--quiet", "--shard-size", "5"]
    copy = tmp_path / "dinov2-copy"
    shutil.copytree(tiny_models["dinov2"], copy)
    assert extract.main(["train-folder", str(image_folder), "--out", str(out), "--dinov2", str(copy),
                         "--clip", tiny_models["clip"], *common]) == 1
    assert "dinov2 was" in capfd.readouterr().err
    # a trailing slash, and a relative path from another working directory: the same model
    monkeypatch.chdir(os.path.dirname(tiny_models["dinov2"]))
    for dinov2 in (tiny_models["dinov2"] + "/", "dinov2"):
        assert extract.main(["train-folder", str(image_folder), "--out", str(out), "--dinov2", dinov2,
                             "--clip", tiny_models["clip"], *common]) == 0
        assert "(3 already done)" in capfd.readouterr().err
    # a damaged extract.json is not taken as "no settings"
    (out / "extract.json").write_text('{"command": "train-fol')
    assert run(tiny_models, "train-folder", image_folder, "--out", out, "--shard-size", "5") == 1
    err = capfd.readouterr().err
    assert "extract.json is unreadable" in err and "use another --out" in err
    # nor is one larger than any run records, read whole into memory (sparse: not read past the limit)
    with open(out / "extract.json", "wb") as f:
        f.write(b'{"command": "train-folder"}')
        f.truncate(extract.MAX_RECORD_BYTES[extract.MANIFEST] + 1)
    assert run(tiny_models, "train-folder", image_folder, "--out", out, "--shard-size", "5") == 1
    err = capfd.readouterr().err
    assert f"extract.json is unreadable (over {extract.MAX_RECORD_BYTES[extract.MANIFEST]} bytes)" in err, err
    # one an editor saved with a byte-order mark (as the preprocessing's refusal asks to edit it) is
    # said to be that
    (out / "extract.json").write_bytes(b"\xef\xbb\xbf" + b'{"command": "train-folder"}')
    assert run(tiny_models, "train-folder", image_folder, "--out", out, "--shard-size", "5") == 1
    err = capfd.readouterr().err
    assert "extract.json begins with a UTF-8 byte-order mark" in err and "save it without one" in err, err


def test_train_folder_reads_sidecars_only_for_text(tmp_path, tiny_models, image_folder, capfd):
    folder = tmp_path / "f"
    shutil.copytree(image_folder / "a", folder)
    (folder / "img00.txt").write_bytes(b"caf\xe9 in latin-1\n")
    pairs = extract.read_folder(str(folder), need_captions=False)
    assert len(pairs) == 7 and all(c is None for _, c in pairs)
    assert run(tiny_models, "train-folder", folder, "--out", tmp_path / "o", "--target", "text") == 1
    assert f"{folder / 'img00.txt'}:1: not valid UTF-8" in capfd.readouterr().err


def test_train_folder_skips_named_pipes(tmp_path, image_folder, capfd):
    folder = tmp_path / "f"
    shutil.copytree(image_folder / "a", folder)
    os.mkfifo(folder / "pipe.jpg")
    os.symlink(folder / "pipe.jpg", folder / "link.png")
    os.symlink(folder / "img00.jpg", folder / "good-link.jpg")
    pairs = extract.read_folder(str(folder), need_captions=False)
    assert sorted(os.path.basename(p) for p, _ in pairs) == sorted(
        [n for n in os.listdir(image_folder / "a") if not n.endswith(".txt")] + ["good-link.jpg"])
    assert "skipped 2 entries that are not regular files" in capfd.readouterr().err
    # one named in a captions file is reported as not decoding instead of blocking the reader
    # (a thread that blocked is released by opening the pipe's other end)
    result = []
    t = threading.Thread(target=lambda: result.append(extract._ImageDataset(
        [str(folder / "pipe.jpg")], extract._open_path, dinov2_transform(), None)[0]), daemon=True)
    t.start()
    t.join(10)
    if t.is_alive():
        os.close(os.open(folder / "pipe.jpg", os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("opening a named pipe blocked")
    assert result[0][1] is None and "not a regular file" in result[0][3]


@pytest.mark.skipif(os.name != "posix", reason="symbolic links are POSIX's")
def test_train_folder_follows_linked_folders(tmp_path, image_folder, capfd):
    """Every image under the folder, those of a linked folder included (os.walk passes links
    by); a folder reached again (a link to one walked, a loop to the folder itself) is walked
    once, a link to a folder holding the folder (whose other folders are not under it) is not
    followed, and both are said."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copytree(image_folder / "a", root / "a")
    shutil.copytree(image_folder / "a", tmp_path / "beside")  # not under the folder
    os.symlink(image_folder / "b", root / "linked")  # outside the folder
    os.symlink("a", root / "dup")                    # a second name of a folder walked
    os.symlink("..", root / "a" / "up")              # a loop
    os.symlink("..", root / "parent")                # the folder holding it (and beside/)
    pairs = extract.read_folder(str(root))
    images = lambda d: sorted(n for n in os.listdir(d) if not n.endswith(".txt"))
    assert [os.path.relpath(p, root) for p, _ in pairs] == (
        [os.path.join("a", n) for n in images(image_folder / "a")]
        + [os.path.join("linked", n) for n in images(image_folder / "b")])
    assert all(c == (image_folder / os.path.relpath(p, root).replace("linked", "b", 1)).with_suffix(".txt")
               .read_text().strip() for p, c in pairs)
    assert capfd.readouterr().err == (
        f"{root}: skipped 3 linked folders already walked under another name, or holding {root} itself, "
        f"e.g. {root / 'a' / 'up'} (= {os.path.realpath(root)})\n")


@pytest.mark.parametrize("name,text,message", [
    ("null.jsonl", '{"image": "a/img00.jpg", "caption": "x"}\n{"image": "a/img01.jpg", "caption": null}\n',
     "null.jsonl:2: \"image\" and \"caption\" must be strings, got str and NoneType"),
    ("list.jsonl", '{"image": "a/img00.jpg", "caption": ["a", "b"]}\n', "list.jsonl:1: "),
    ("short.csv", "image,caption\na/img00.jpg,a dog\na/img01.jpg\n", "short.csv:3: the row has no caption column"),
    # an empty (or blank) caption is missing as a target, not the CLIP embedding of ""
    ("empty.jsonl", '{"image": "a/img00.jpg", "caption": "x"}\n{"image": "a/img01.jpg", "caption": ""}\n',
     "empty.jsonl:2: the caption of a/img01.jpg is empty"),
    ("blank.csv", "image,caption\na/img00.jpg,a dog\na/img01.jpg, \t\n", "blank.csv:3: the caption of a/img01.jpg is empty"),
    ("latin1.tsv", b"image\tcaption\na/img00.jpg\ta dog\na/img01.jpg\tcaf\xe9\n", "latin1.tsv:3: not valid UTF-8"),
    ("latin1.jsonl", b'{"image": "a/img00.jpg", "caption": "caf\xe9"}\n', "latin1.jsonl:1: not valid UTF-8"),
    # nested deeper than the parser recurses (RecursionError)
    ("deep.jsonl", '{"image": "a/img00.jpg", "caption": "x"}\n' + "[" * 100000 + "]" * 100000 + "\n",
     "deep.jsonl:2: want a JSON object with \"image\" and \"caption\" (maximum recursion depth exceeded"),
    # a quote left open runs on past csv's field limit (csv.Error), named at the line reached
    ("open.csv", 'image,caption\na/img00.jpg,a dog\na/img01.jpg,"a cat\n' + "x" * 140000 + "\n",
     "open.csv:3: the row runs on to line 4, where csv gives up (field larger than field limit (131072)): a quote "
     "left open? Close it"),
    # ... and within it, takes the rows after it into its caption
    ("swallow.csv", 'image,caption\na/img00.jpg,"a dog\na/img01.jpg,a cat\na/img02.jpg,a car\n',
     "swallow.csv:2: the caption column of the row runs on to line 4"),
    # ... in any column, named where its row begins past blank lines
    ("note.csv", 'image,caption,note\n\n\na/img00.jpg,a dog,"open\na/img01.jpg,a cat,x\na/img02.jpg,a cow,y"\n'
     'a/img03.jpg,last,z\n', "note.csv:4: the note column of the row runs on to line 6"),
    # ... whether the images it took in exist or not, under a header wider than its rows
    ("missing.csv", 'image,caption,\na/img00.jpg,"a dog\nx1.jpg,a cat\nx2.jpg,"a bird"\na/img01.jpg,c\n',
     "missing.csv:2: the caption column of the row runs on to line 4"),
    # ... and where the next quoted caption closed the quote, its comma spilling past the header
    ("closed.csv", 'image,caption\na/img00.jpg,"a dog\na/img01.jpg,"a cat, sitting"\na/img02.jpg,bird\n',
     "closed.csv:2: the caption column of the row runs on to line 3"),
    # ... named where its row begins past blank lines where it runs on to the file's end
    ("end.csv", 'image,caption\na/img00.jpg,a dog\n\n\na/img01.jpg,"a cat\na/img02.jpg,a cow\n',
     "end.csv:5: the caption column of the row runs on to line 6"),
    # a column named twice (the reader keeps the last, the checks looked at the first)
    ("twice.csv", 'image,caption,image\na/img00.jpg,a dog,x.jpg\n',
     "twice.csv: the header row names image twice (columns 1 and 3): rename all but one"),
    ("thrice.tsv", 'caption\timage\tcaption\tcaption\na dog\ta/img00.jpg\tx\ty\n',
     "thrice.tsv: the header row names caption 3 times (columns 1, 3 and 4): rename all but one"),
    # ... and with the caption first
    ("first.csv", 'caption,image\n"a dog,a/img00.jpg\n"a cat",a/img01.jpg\n', "first.csv:2: the caption column"),
    # ... and in the header row
    ("header.csv", '"image,caption\n' + "x" * 140000 + "\n", "header.csv:1: the row runs on to line 2, where csv gives up"),
    # a caption's comma unquoted cut the caption there, and a field past the header's was dropped
    ("extra.csv", 'image,caption\na/img00.jpg,a dog\n\na/img01.jpg,a dog, running on the beach\n',
     "extra.csv:4: the row has more fields than the header names (2): a caption holding a comma must be quoted"),
    # ... named at its first line where an extra field holds a line break of its own
    ("extra_ml.csv", 'image,caption\na/img00.jpg,a dog\na/img01.jpg,a cat,"x\ny"\n',
     "extra_ml.csv:3: the row has more fields than the header names (2)"),
])
def test_train_folder_bad_captions_files(tmp_path, tiny_models, image_folder, monkeypatch, capfd, name, text, message):
    """Refused with the line, before any model is loaded."""
    caps = tmp_path / name
    caps.write_bytes(text if isinstance(text, bytes) else text.encode())
    monkeypatch.setattr(encoders, "load_dinov2", lambda *a, **k: pytest.fail("loaded a model"))
    assert run(tiny_models, "train-folder", image_folder, "--out", tmp_path / "o", "--captions", caps,
               "--target", "text") == 1
    err = capfd.readouterr().err
    assert message in err and "Traceback" not in err


def test_train_folder_captions_that_are_no_file(tmp_path, image_folder):
    """--captions naming what is not a file says what it is."""
    os.mkfifo(tmp_path / "fifo.jsonl")
    (tmp_path / "dir.jsonl").mkdir()
    for name, what in (("fifo.jsonl", "a named pipe"), ("dir.jsonl", "a directory"), ("none.jsonl", "no such file")):
        with pytest.raises(extract.ExtractError, match=f"--captions {re.escape(str(tmp_path / name))}: {what}, not a captions file"):
            extract.read_folder(str(image_folder), str(tmp_path / name))


def test_train_folder_refuses_a_folder_it_cannot_list(tmp_path, monkeypatch):
    """A folder under ROOT that cannot be listed is an error naming it: os.walk passes it by
    without a word, and its images would be missing from the shards."""
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "x.jpg").write_bytes(b"x")
    real_scandir = os.scandir
    def scandir(p="."):
        if os.fspath(p).endswith(os.sep + "b"):
            raise PermissionError(13, "Permission denied", os.fspath(p))
        return real_scandir(p)
    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(extract.ExtractError, match=f"cannot list {re.escape(str(root / 'b'))}: Permission denied"):
        extract.read_folder(str(root), need_captions=False)


def test_train_folder_empty_captions_are_missing(tmp_path, tiny_models, image_folder, monkeypatch, capfd):
    """With --target text an empty (or blank) caption is refused as a missing one is, before any
    model loads: in a sidecar .txt and in a captions file. Without it captions are no targets,
    and an empty one is no error."""
    folder = tmp_path / "f"
    shutil.copytree(image_folder / "a", folder)
    (folder / "img01.txt").write_text(" \n\n")
    monkeypatch.setattr(encoders, "load_dinov2", lambda *a, **k: pytest.fail("loaded a model"))
    assert run(tiny_models, "train-folder", folder, "--out", tmp_path / "o", "--target", "text") == 1
    err = capfd.readouterr().err
    assert err == (f"dinoclip.extract: {folder / 'img01.jpg'} has an empty caption file {folder / 'img01.txt'} "
                   "(or pass --captions)\n")
    assert not (tmp_path / "o" / "extract.json").exists()
    assert len(extract.read_folder(str(folder), need_captions=False)) == 7
    caps = tmp_path / "c.jsonl"
    caps.write_text(json.dumps({"image": "img00.jpg", "caption": ""}) + "\n")
    assert extract.read_folder(str(folder), str(caps), need_captions=False) == [(str(folder / "img00.jpg"), "")]


def test_train_folder_text_target_float16_jsonl(tmp_path, tiny_models, image_folder, models):
    imgs = folder_images(image_folder)
    rng = random.Random(7)
    rows = [(os.path.relpath(p, image_folder), make_caption(rng)) for p in imgs[:4]]
    rows.append((rows[0][0], "the same image again, another caption"))
    caps = tmp_path / "captions.jsonl"
    caps.write_text("".join(json.dumps({"image": i, "caption": c}) + "\n" for i, c in rows))
    out = tmp_path / "t"
    assert run(tiny_models, "train-folder", image_folder, "--out", out, "--captions", caps,
               "--target", "text", "--float16") == 0
    dino = read_npy(out / "shard-00000.dino.npy", "<f2")
    clip = read_npy(out / "shard-00000.clip.npy", "<f2")
    assert dino.shape == (5, FEATURE_DIM) and clip.shape == (5, EMBED_DIM)
    d, c = direct(models, [Image.open(image_folder / i) for i, _ in rows], [c for _, c in rows])
    np.testing.assert_allclose(dino.astype(np.float32), d, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(clip.astype(np.float32), c, rtol=2e-3, atol=2e-3)


def test_train_folder_csv_and_bad_inputs(tmp_path, tiny_models, image_folder, capfd):
    imgs = folder_images(image_folder)
    csvf = tmp_path / "c.csv"
    # (quoted: a comma, and line breaks of its own, one before a comma, one at the end as pandas
    # quotes a caption ending in one; a trailing comma, an empty field past the header's)
    csvf.write_text("image,caption\n" + "".join(f'{p},"a, b\nit runs, then sits {i}\n",\n' for i, p in enumerate(imgs[:3])))
    assert run(tiny_models, "train-folder", image_folder, "--out", tmp_path / "o", "--captions", csvf) == 0
    assert read_npy(tmp_path / "o" / "shard-00000.dino.npy").shape == (3, FEATURE_DIM)
    # a missing image named in the captions file: one-line error, nothing loaded; a control
    # character in its name is written as an escape (a NUL printed raw garbles the terminal, and
    # the C1 CSI or a bidirectional override as much), a non-ASCII one as it is
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"image": "nöpe\x00\x1b[31m\x9b1m\u202e.jpg", "caption": "x"}) + "\n")
    capfd.readouterr()
    assert run(tiny_models, "train-folder", image_folder, "--out", tmp_path / "o2", "--captions", bad) == 1
    assert capfd.readouterr().err == (f"dinoclip.extract: {bad}: {image_folder / 'nöpe'}\\x00\\x1b[31m\\x9b1m\\u202e.jpg "
                                      f"does not exist; a relative path is taken from the folder, {image_folder}\n")
    # counted by image, not by row; a directory is no image file
    bad.write_text("".join(json.dumps({"image": image, "caption": "x"}) + "\n"
                           for image in ("nope.jpg", imgs[0], "nope.jpg", "a", "nope.jpg")))
    assert run(tiny_models, "train-folder", image_folder, "--out", tmp_path / "o2", "--captions", bad) == 1
    assert capfd.readouterr().err == (f"dinoclip.extract: {bad}: {image_folder / 'nope.jpg'} does not exist; of the 3 "
                                      f"images it names, 2 are missing or no files\n")
    bad.write_text(json.dumps({"image": "a", "caption": "x"}) + "\n" + json.dumps({"image": imgs[0], "caption": "x"}) + "\n")
    assert run(tiny_models, "train-folder", image_folder, "--out", tmp_path / "o2", "--captions", bad) == 1
    assert capfd.readouterr().err == f"dinoclip.extract: {bad}: {image_folder / 'a'} is a directory, not an image file\n"
    # an absolute path is not said to be taken from the folder
    bad.write_text(json.dumps({"image": str(tmp_path / "nope.jpg"), "caption": "x"}) + "\n")
    assert run(tiny_models, "train-folder", image_folder, "--out", tmp_path / "o2", "--captions", bad) == 1
    assert capfd.readouterr().err == f"dinoclip.extract: {bad}: {tmp_path / 'nope.jpg'} does not exist\n"
    # an image that does not decode is left out and reported
    folder = tmp_path / "f"
    shutil.copytree(image_folder / "a", folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "two\nlines.png").write_bytes((folder / "img02.png").read_bytes())
    assert run(tiny_models, "train-folder", folder, "--out", tmp_path / "o3") == 0
    assert read_npy(tmp_path / "o3" / "shard-00000.dino.npy").shape == (8, FEATURE_DIM)
    err = capfd.readouterr().err
    assert f"1 image did not decode (e.g. {folder / 'broken.jpg'}: " in err and "<_io." not in err, err
    # the list of the rows' images leaves the broken one out; a line break in a name is U+FFFD
    listed = (tmp_path / "o3" / "shard-00000.images.txt").read_text(encoding="utf-8").split("\n")
    assert listed[-1] == "" and len(listed) == 9
    kept = [os.path.abspath(p) for p in folder_images(folder) if not p.endswith("broken.jpg")]
    assert listed[:-1] == [p.replace("\n", "\ufffd") for p in kept]
    # --target text needs captions
    (folder / "nocap.png").write_bytes((folder / "img02.png").read_bytes())
    assert run(tiny_models, "train-folder", folder, "--out", tmp_path / "o4", "--target", "text") == 1
    assert (f"3 of 10 images have no caption file, e.g. {folder / 'broken.jpg'} has no {folder / 'broken.txt'} "
            "(or pass --captions)") in capfd.readouterr().err  # (and the two others, counted)


def png_rgb48(a):
    """A 16-bit-per-channel RGB PNG of uint16 [h, w, 3] ``a`` (PIL writes none)."""
    h, w, _ = a.shape

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_clipped_greyscale_images_are_warned_of(tmp_path, tiny_models, image_folder, capfd):
    # A 16-bit greyscale PNG (PIL mode I;16) and a float TIFF (mode F) go through convert("RGB") as
    # in the reference preprocessing, which clips their values to 0..255: the rows are kept, and said
    # to be of clipped images; 8-bit images and a 16-bit colour PNG (opened as 8-bit RGB) are not.
    folder = tmp_path / "f"
    shutil.copytree(image_folder / "a", folder)
    ramp = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    Image.fromarray(ramp).save(folder / "grey16.png")
    Image.fromarray((ramp / 65535).astype(np.float32)).save(folder / "float.tif")
    (folder / "rgb48.png").write_bytes(png_rgb48(np.full((48, 64, 3), 40000, np.uint16)))
    assert Image.open(folder / "grey16.png").mode.startswith("I;16") and Image.open(folder / "float.tif").mode == "F"
    assert Image.open(folder / "rgb48.png").mode == "RGB"  # (scaled to 8 bits: 40000 -> 156)
    # by mode and values: 0..255 in a wide mode loses nothing
    assert [m for m in ("RGB", "L", "P", "RGBA", "I;16", "I;16B", "I", "F")
            if extract.clipped(Image.new(m, (2, 2), 256 if m.startswith("I") else 0.5 if m == "F" else 0))] == \
        ["I;16", "I;16B", "I", "F"]
    assert not any(extract.clipped(Image.new(m, (2, 2), 200)) for m in ("I;16", "I", "F"))
    assert extract.clipped(Image.new("F", (2, 2), 1.5))  # (0..1 with overshoot: black too)
    capfd.readouterr()
    assert run(tiny_models, "train-folder", folder, "--out", tmp_path / "o") == 0
    assert read_npy(tmp_path / "o" / "shard-00000.dino.npy").shape == (10, FEATURE_DIM)  # 7 + 3
    err = capfd.readouterr().err
    assert "warning: 2 images are 16-bit, 32-bit or floating-point greyscale (e.g. " in err
    assert str(folder / "float.tif") in err or str(folder / "grey16.png") in err
    # only 8-bit images: no warning
    assert run(tiny_models, "train-folder", image_folder / "a", "--out", tmp_path / "o2") == 0
    assert "floating-point greyscale" not in capfd.readouterr().err


# (A DecompressionBombWarning not silenced is an error here, and the image would fail to decode:
# pytest keeps the warnings a test raises from stderr.)
@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_large_images_are_noted(tmp_path, tiny_models, monkeypatch, capfd):
    # Past PIL's MAX_IMAGE_PIXELS an image is decoded in full, with a note naming the largest (PIL's
    # own warning names none and is printed raw, with its source line); past twice as many it is
    # refused, and reported as an image that did not decode. Images are counted once however many
    # rows name them.
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    folder = tmp_path / "f"
    folder.mkdir()
    rng = random.Random(3)
    for name, size in (("small", (40, 40)), ("at", (40, 50)), ("large", (60, 50)), ("larger", (62, 50)),
                       ("bomb", (100, 100))):
        make_image(rng, size).save(folder / f"{name}.png")
    caps = tmp_path / "caps.jsonl"
    caps.write_text("".join(json.dumps({"image": f"{n}.png", "caption": "x"}) + "\n"
                            for n in ("small", "at", "large", "larger", "large", "bomb")))
    capfd.readouterr()
    assert run(tiny_models, "train-folder", folder, "--out", tmp_path / "o", "--captions", caps) == 0
    assert read_npy(tmp_path / "o" / "shard-00000.dino.npy").shape == (5, FEATURE_DIM)
    err = capfd.readouterr().err
    assert f"note: 2 images have more than the 2,000 pixels past which PIL warns of a decompression bomb " \
        f"(the largest: {folder / 'larger.png'}, 3,100 pixels)" in err, err
    assert f"1 image did not decode (e.g. {folder / 'bomb.png'}: DecompressionBombError" in err, err
    # none past the limit: no note
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10**6)
    assert run(tiny_models, "train-folder", folder, "--out", tmp_path / "o2") == 0
    assert "decompression bomb" not in capfd.readouterr().err


def test_image_warnings_are_not_repeated_for_each_image(tmp_path, tiny_models, image_folder):
    # A warning PIL gives for an image (an APNG whose acTL chunk counts no frames) is given once, as
    # Python gives a warning: a warnings filter set around each image's decoding had it again for
    # every image.
    png = (image_folder / "a" / "img02.png").read_bytes()
    at = 8 + 25  # (after the signature and IHDR)
    actl = struct.pack(">I", 8) + b"acTL" + bytes(8) + struct.pack(">I", zlib.crc32(b"acTL" + bytes(8)))
    folder = tmp_path / "f"
    folder.mkdir()
    for i in range(4):
        (folder / f"a{i}.png").write_bytes(png[:at] + actl + png[at:])
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("default")
        assert run(tiny_models, "train-folder", folder, "--out", tmp_path / "o", "--target", "image") == 0
    assert [str(w.message) for w in shown if "APNG" in str(w.message)] == ["Invalid APNG, will use default PNG image if possible"]


# ---------------------------------------------------------------------------
# train-wds


def write_tar(path, samples):
    """img2dataset layout: KEY.jpg, KEY.txt, KEY.json per sample (any of them may be left out)."""
    with tarfile.open(path, "w") as tf:
        for key, files in samples:
            for ext, data in files.items():
                ti = tarfile.TarInfo(f"{key}.{ext}")
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))


def jpeg_bytes(img):
    b = io.BytesIO()
    img.save(b, format="JPEG", quality=90)
    return b.getvalue()


@pytest.fixture(scope="module")
def wds(tmp_path_factory):
    root = tmp_path_factory.mktemp("wds")
    rng = random.Random(3)
    shards = {}
    for s, n in (("00000", 5), ("00001", 3)):
        samples, good = [], []
        for i in range(n):
            key = f"{s}{i:04d}"
            img, cap = make_image(rng), make_caption(rng)
            data = jpeg_bytes(img)
            samples.append((key, {"jpg": data, "txt": cap.encode(), "json": json.dumps({"key": key}).encode()}))
            good.append((Image.open(io.BytesIO(data)), cap))
        if s == "00000":
            samples.insert(2, (f"{s}9998", {"txt": b"caption without an image"}))
            samples.append((f"{s}9999", {"jpg": b"\xff\xd8broken", "txt": b"broken image"}))
        write_tar(root / f"{s}.tar", samples)
        shards[s] = good
    (root / "00000_stats.json").write_text("{}")  # img2dataset writes these beside the tars
    return root, shards


def test_train_wds(tmp_path, tiny_models, wds, models, capfd):
    root, shards = wds
    out = tmp_path / "o"
    assert run(tiny_models, "train-wds", root, "--out", out, workers="1") == 0
    err = capfd.readouterr().err
    assert "00000: 5 rows of 7 samples" in err and "1 image did not decode (e.g. 000009999: " in err
    assert "1 sample lacks an image or a caption" in err
    assert sorted(n for n in os.listdir(out) if n.endswith(".npy")) == [
        "00000.clip.npy", "00000.dino.npy", "00001.clip.npy", "00001.dino.npy"]
    # the rows' sample keys
    assert len((out / "00000.images.txt").read_text().splitlines()) == 5
    for s, good in shards.items():
        dino, clip = read_npy(out / f"{s}.dino.npy"), read_npy(out / f"{s}.clip.npy")
        d, c = direct(models, [im for im, _ in good])
        np.testing.assert_allclose(dino, d, **TOL)
        np.testing.assert_allclose(clip, c, **TOL)
    # resume: nothing to do
    capfd.readouterr()
    assert run(tiny_models, "train-wds", root / "00000.tar", root / "00001.tar", "--out", out) == 0
    assert "(2 already done)" in capfd.readouterr().err
    # text target into another directory
    assert run(tiny_models, "train-wds", root / "00001.tar", "--out", tmp_path / "t", "--target", "text") == 0
    d, c = direct(models, [im for im, _ in shards["00001"]], [cap for _, cap in shards["00001"]])
    np.testing.assert_allclose(read_npy(tmp_path / "t" / "00001.clip.npy"), c, **TOL)


def test_train_wds_errors(tmp_path, tiny_models, wds, capfd):
    root, _ = wds
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(root / "00000.tar", other / "00000.tar")
    assert run(tiny_models, "train-wds", root / "00000.tar", other / "00000.tar", "--out", tmp_path / "o") == 1
    assert "would both be output shard 00000" in capfd.readouterr().err
    (tmp_path / "x.tar").write_bytes(b"not a tar" * 100)
    assert run(tiny_models, "train-wds", tmp_path / "x.tar", "--out", tmp_path / "o") == 1
    err = capfd.readouterr().err
    # one line, however many compressions tarfile tried
    assert "x.tar: not a tar file (" in err.splitlines()[-1] and "method gz: " in err.splitlines()[-1], err
    # a shard named as a set's captions (beside an images.tar's shard, dinoclip reads a set)
    shutil.copy(root / "00000.tar", tmp_path / "Captions.tar")
    assert run(tiny_models, "train-wds", tmp_path / "Captions.tar", "--out", tmp_path / "o") == 1
    assert "would be output shard Captions, whose Captions.clip.npy is named as an evaluation set's" in capfd.readouterr().err
    assert not (tmp_path / "o").exists()


def test_train_wds_empty_captions_are_missing(tmp_path, tiny_models, models, capfd):
    """With --target text a sample whose KEY.txt is empty (or blank) is left out and counted, as
    one without a KEY.txt is, not given the CLIP embedding of "" as its target; with the default
    image target its caption is not needed and it stays."""
    rng = random.Random(11)
    imgs = [make_image(rng) for _ in range(4)]
    data = [jpeg_bytes(im) for im in imgs]
    tar = tmp_path / "00007.tar"
    # (a byte-order mark is no text: k4's caption is "two cats", k5's is empty, as train-folder reads them)
    write_tar(tar, [("k0", {"jpg": data[0], "txt": b"a red dog"}), ("k1", {"jpg": data[1], "txt": b""}),
                    ("k2", {"jpg": data[2], "txt": b" \n"}), ("k3", {"jpg": data[3]}),
                    ("k4", {"jpg": data[0], "txt": b"\xef\xbb\xbftwo cats"}), ("k5", {"jpg": data[1], "txt": b"\xef\xbb\xbf"}),
                    ("k6", {"jpg": data[2], "txt": b"a r\xffd dog"})])  # (not UTF-8: no caption either)
    idx = extract.index_tar(str(tar), need_captions=True)
    assert (idx.keys, idx.captions, idx.incomplete, idx.empty, idx.not_utf8) == (
        ["k0", "k4"], ["a red dog", "two cats"], 1, 3, 1)
    assert extract.index_tar(str(tar), need_captions=False).keys == ["k0", "k1", "k2", "k3", "k4", "k5", "k6"]
    out = tmp_path / "o"
    assert run(tiny_models, "train-wds", tar, "--out", out, "--target", "text") == 0
    err = capfd.readouterr().err
    assert ("00007: 2 rows of 7 samples; skipped: 1 sample lacks an image or a caption, 3 samples have an empty "
            "caption, 1 sample has a caption that is not UTF-8") in err
    assert (out / "00007.images.txt").read_text() == "k0\nk4\n"
    d, c = direct(models, [Image.open(io.BytesIO(data[0]))] * 2, ["a red dog", "two cats"])
    np.testing.assert_allclose(read_npy(out / "00007.clip.npy"), c, **TOL)


def test_train_wds_leaves_out_ambiguous_and_oversized_samples(tmp_path, monkeypatch, capfd, tiny_models):
    """A key that comes with two images or two captions (a repeated key) is left out and counted:
    its first image was paired with its last caption. A caption over MAX_CAPTION_CHARS is no
    caption (the tokenizer would encode all of it), and an image member over MAX_TAR_IMAGE_BYTES
    is not read whole into memory; both are left out and counted. Without --target text the
    captions are not read at all."""
    rng = random.Random(12)
    data = [jpeg_bytes(make_image(rng)) for _ in range(3)]
    monkeypatch.setattr(_inputs, "MAX_CAPTION_CHARS", 10)
    monkeypatch.setattr(_inputs, "MAX_TAR_IMAGE_BYTES", max(len(d) for d in data[:2]))
    big = data[0] + b"\0" * (_inputs.MAX_TAR_IMAGE_BYTES + 1 - len(data[0]))  # (a JPEG with trailing bytes)
    tar = tmp_path / "00003.tar"
    write_tar(tar, [("a", {"jpg": data[0], "txt": b"a red dog"}), ("b", {"jpg": data[1], "txt": b"two cats"}),
                    ("a", {"jpg": data[1], "txt": b"a blue cat"}),  # the key again
                    ("c", {"jpg": data[1], "txt": b"a caption of many words"}),  # over 10 characters
                    ("d", {"jpg": big, "txt": b"a big dog"}),
                    ("e", {"jpg": data[2], "txt": b"x", "png": data[1]})])  # two images under one key
    idx = extract.index_tar(str(tar), need_captions=True)
    assert (idx.keys, idx.captions, idx.twice, idx.too_long, idx.too_large) == (["b"], ["two cats"], 2, 1, 1)
    assert extract.index_tar(str(tar), need_captions=False).keys == ["b", "c"]
    assert run(tiny_models, "train-wds", tar, "--out", tmp_path / "o", "--target", "text") == 0
    assert ("00003: 1 row of 5 samples; skipped: 1 sample has a caption over 10 characters, 1 sample has an "
            "image over 0 MiB, 2 keys come with two images or two captions") in capfd.readouterr().err
    # A compressed tar's images are held in memory: past MAX_COMPRESSED_TAR_IMAGE_BYTES in all
    # (each under MAX_TAR_IMAGE_BYTES) the tar is refused, to be decompressed first.
    monkeypatch.setattr(_inputs, "MAX_COMPRESSED_TAR_IMAGE_BYTES", len(data[0]) + len(data[1]) - 1)
    gz = tmp_path / "00004.tar.gz"
    gz.write_bytes(gzip.compress(tar.read_bytes()))
    with pytest.raises(extract.ExtractError, match="its images come to over .*: decompress it"):
        extract.index_tar(str(gz), need_captions=True)
    plain = extract.index_tar(str(tar), need_captions=True)  # (a plain tar's are read as needed)
    assert plain.keys == ["b"]
    # Captions from elsewhere are refused before the models load, naming where they are: a
    # sidecar, a row of a captions file, a line of texts.
    with pytest.raises(extract.ExtractError, match=r"caption 'a caption of many words'\.\.\. has 23 characters, over the 10"):
        _inputs.check_caption("a caption of many words", "caption", "mend it")
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(data[0])
    (folder / "a.txt").write_text("a caption of many words")
    with pytest.raises(extract.ExtractError, match=re.escape(str(folder / "a.txt")) + ": caption .* has 23 characters"):
        extract.read_folder(str(folder))
    caps = tmp_path / "caps.csv"
    caps.write_text("image,caption\na.jpg,a dog\na.jpg,a caption of many words\n")
    with pytest.raises(extract.ExtractError, match=re.escape(str(caps)) + ":3: caption .* has 23 characters"):
        extract.read_folder(str(folder), str(caps))
    lines = tmp_path / "texts.txt"
    lines.write_text("a dog\na caption of many words\n")
    with pytest.raises(extract.ExtractError, match=re.escape(str(lines)) + ":2: line .* has 23 characters"):
        extract.read_lines(str(lines))


def test_open_decodes_only_image_formats(tmp_path):
    """A file named like an image is offered to the image decoders only: PIL picks a decoder by
    contents, and an EPS file (which PIL hands to Ghostscript) named .jpg is left undecoded."""
    from PIL import UnidentifiedImageError

    eps = tmp_path / "evil.jpg"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    with pytest.raises(UnidentifiedImageError):
        extract._open_path(str(eps))
    with pytest.raises(UnidentifiedImageError):
        extract._TarOpener(str(eps))(eps.read_bytes())
    jpg = tmp_path / "ok.jpg"
    jpg.write_bytes(jpeg_bytes(make_image(random.Random(1))))
    assert extract._open_path(str(jpg)).format == "JPEG"


def test_train_wds_refuses_another_tar_of_a_shards_name(tmp_path, tiny_models, wds, monkeypatch, capfd):
    """Shards are named after their tars, and img2dataset names every folder's tars 00000.tar,
    00001.tar, ...: extract.json records each shard's tar (size and a sample of its bytes), and
    another folder's tar of the same name (other images) is refused naming both, not skipped as
    done; so is the same tar changed since, to another size or to the same one. The same tars
    resume wherever they are (a link, another working directory, a copy of the folder), and the
    shards of other tars are added to the record."""
    root, _ = wds
    mine = tmp_path / "mine"
    mine.mkdir()
    shutil.copy(root / "00001.tar", mine / "00001.tar")
    out = tmp_path / "o"
    assert run(tiny_models, "train-wds", mine, "--out", out) == 0
    ident = extract._tar_id
    assert json.loads((out / "extract.json").read_text())["tars"] == {"00001": ident(mine / "00001.tar")}
    other = tmp_path / "other"
    other.mkdir()
    write_tar(other / "00001.tar", [("x", {"jpg": jpeg_bytes(make_image(random.Random(5))), "txt": b"a cat"})])
    with monkeypatch.context() as m:
        m.setattr(encoders, "load_dinov2", lambda *a, **k: pytest.fail("loaded a model"))
        capfd.readouterr()
        for given in (other, other / "00001.tar"):
            assert run(tiny_models, "train-wds", given, "--out", out) == 1
            err = capfd.readouterr().err
            assert err == (f"dinoclip.extract: output shard 00001 in {out} was extracted from "
                           f"{os.path.realpath(mine / '00001.tar')} ({os.path.getsize(mine / '00001.tar')} bytes), "
                           f"not from {os.path.realpath(other / '00001.tar')} "
                           f"({os.path.getsize(other / '00001.tar')} bytes): use another --out for this tar, or "
                           "remove 00001.dino.npy and 00001.clip.npy from it to extract the shard anew\n")
        # the same bytes elsewhere (the folder copied, moved or mounted at another path): done
        assert run(tiny_models, "train-wds", root / "00001.tar", "--out", out) == 0
        assert "(1 already done)" in capfd.readouterr().err
    # the same tar, through a link and from another working directory: done
    os.symlink(mine, tmp_path / "link")
    monkeypatch.chdir(tmp_path)
    assert run(tiny_models, "train-wds", "link/00001.tar", "--out", out) == 0
    assert "(1 already done)" in capfd.readouterr().err
    # another tar's shard is recorded beside it
    assert run(tiny_models, "train-wds", root / "00000.tar", mine, "--out", out) == 0
    assert "(1 already done)" in capfd.readouterr().err
    assert json.loads((out / "extract.json").read_text())["tars"] == {
        "00000": ident(root / "00000.tar"), "00001": ident(mine / "00001.tar")}
    # the tar changed since (written anew by img2dataset, say): to the same size (tar pads to
    # 10 KiB records), and to another
    data = (mine / "00001.tar").read_bytes()
    (mine / "00001.tar").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert run(tiny_models, "train-wds", mine, "--out", out) == 1
    assert (f"({len(data)} bytes), not from {os.path.realpath(mine / '00001.tar')} ({len(data)} bytes) (the same "
            "size, other contents)") in capfd.readouterr().err
    (mine / "00001.tar").write_bytes(data + bytes(512))
    assert run(tiny_models, "train-wds", mine, "--out", out) == 1
    assert (f"was extracted from {os.path.realpath(mine / '00001.tar')} ({len(data)} bytes), not from "
            f"{os.path.realpath(mine / '00001.tar')} ({len(data) + 512} bytes)") in capfd.readouterr().err
    # a shard never finished (killed between its files) holds nothing of its recorded tar: made
    # anew from the tar given, which is recorded in its place
    os.unlink(out / "00001.clip.npy")
    assert run(tiny_models, "train-wds", other, "--out", out) == 0
    assert (out / "00001.images.txt").read_text() == "x\n"
    assert json.loads((out / "extract.json").read_text())["tars"]["00001"] == ident(other / "00001.tar")


def test_target_none_takes_no_clip(tmp_path, tiny_models, wds, image_folder, monkeypatch, capfd):
    """--target none loads no CLIP model, so a --clip given with it is refused (it was ignored),
    before anything is made; the default --clip is no --clip given. Its advice for another tar
    of a shard's name names the files that target writes: no NAME.clip.npy."""
    root, _ = wds
    out = tmp_path / "o"
    monkeypatch.setattr(encoders, "load_clip", lambda *a, **k: pytest.fail("loaded a CLIP model"))
    for cmd, src in (("train-wds", root / "00001.tar"), ("train-folder", image_folder)):
        assert run(tiny_models, cmd, src, "--out", out, "--target", "none") == 2
        assert capfd.readouterr().err == (f"dinoclip.extract: --clip {tiny_models['clip']}: --target none loads no "
                                          "CLIP model (it extracts DINOv2 features alone); drop --clip, or name "
                                          "another --target\n")
        assert not out.exists()
    alone = lambda *args: extract.main(["train-wds", *map(str, args), "--out", str(out), "--target", "none",
                                        "--dinov2", tiny_models["dinov2"], "--device", "cpu", "--workers", "0",
                                        "--quiet"])
    assert alone(root / "00001.tar") == 0
    other = tmp_path / "other"
    other.mkdir()
    write_tar(other / "00001.tar", [("x", {"jpg": jpeg_bytes(make_image(random.Random(5))), "txt": b"a cat"})])
    capfd.readouterr()
    assert alone(other / "00001.tar") == 1
    assert capfd.readouterr().err.endswith(": use another --out for this tar, or remove 00001.dino.npy from it to "
                                           "extract the shard anew\n")


def test_train_wds_tar_rewritten_during_the_run(tmp_path, tiny_models, wds, monkeypatch, capfd):
    """A tar rewritten after the run recorded it (one still being written, another put in its
    place) is found before its samples are read, or after: its shard is not written, and the run
    again takes the tar as it is then."""
    root, _ = wds
    mine = tmp_path / "mine"
    mine.mkdir()
    shutil.copy(root / "00001.tar", mine / "00001.tar")
    out = tmp_path / "o"
    real_index, real_extractor = extract.index_tar, extract._extractor
    rewrite = lambda: shutil.copy(root / "00000.tar", mine / "00001.tar")
    for when in ("before", "during"):
        shutil.copy(root / "00001.tar", mine / "00001.tar")
        with monkeypatch.context() as m:
            if when == "before":  # while the models load
                m.setattr(extract, "_extractor", lambda *a: (rewrite(), real_extractor(*a))[1])
            else:  # once its samples are listed
                m.setattr(extract, "index_tar", lambda *a, **k: (real_index(*a, **k), rewrite())[0])
            assert run(tiny_models, "train-wds", mine, "--out", out) == 1
        err = capfd.readouterr().err
        phrase = "changed since this run began" if when == "before" else "changed while it was extracted"
        assert f"{mine / '00001.tar'} {phrase}" in err and "output shard 00001 is not written" in err, (when, err)
        assert not (out / "00001.dino.npy").exists() and not (out / "00001.clip.npy").exists()
    # run again: the tar as it is now (00000.tar's samples) is extracted and recorded
    assert run(tiny_models, "train-wds", mine, "--out", out) == 0
    assert json.loads((out / "extract.json").read_text())["tars"]["00001"] == extract._tar_id(mine / "00001.tar")


def test_train_wds_truncated_tar(tmp_path, tiny_models, wds, capfd):
    root, shards = wds
    data = (root / "00001.tar").read_bytes()
    with tarfile.open(root / "00001.tar") as tf:
        members = tf.getmembers()
    # cut inside a member's data: an error naming the tar and its shard, no traceback
    cut = tmp_path / "cut" / "00001.tar"
    cut.parent.mkdir()
    cut.write_bytes(data[:members[4].offset_data + 10])
    assert run(tiny_models, "train-wds", cut, "--out", tmp_path / "o") == 1
    err = capfd.readouterr().err
    assert f"{cut}: truncated or corrupt tar file" in err and "output shard 00001 is not written" in err
    # cut at a member's header: tarfile sees an end there, with no end-of-archive marker
    cut.write_bytes(data[:members[3].offset])
    assert run(tiny_models, "train-wds", cut, "--out", tmp_path / "o") == 1
    err = capfd.readouterr().err
    assert f"{cut}: no end-of-archive marker after its 1 samples, at byte {members[3].offset}" in err
    # the same, compressed: found in the decompressed stream
    gz = tmp_path / "cut" / "00002.tar.gz"
    gz.write_bytes(gzip.compress(data[:members[3].offset]))
    assert run(tiny_models, "train-wds", gz, "--out", tmp_path / "o") == 1
    assert "no end-of-archive marker" in capfd.readouterr().err
    # a whole tar, and a whole compressed one: no complaint
    assert run(tiny_models, "train-wds", root / "00001.tar", "--out", tmp_path / "o2") == 0
    whole = tmp_path / "whole" / "00003.tar.gz"
    whole.parent.mkdir()
    whole.write_bytes(gzip.compress(data))
    assert run(tiny_models, "train-wds", whole, "--out", tmp_path / "o3") == 0
    assert "marker" not in capfd.readouterr().err


def guarded(fifo, fn, timeout=180):
    """fn()'s result (or exception), run in a thread: one that blocks opening the named pipe
    ``fifo`` (waiting for a writer) is released by opening its other end, and the test fails."""
    result = []

    def target():
        try:
            result.append(fn())
        except BaseException as e:  # pytest.fail too
            result.append(e)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        t.join(10)
        pytest.fail(f"opening the named pipe {fifo} blocked")
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def test_train_wds_takes_regular_files_only(tmp_path, tiny_models, wds, monkeypatch, capfd):
    """Of a directory, entries named like a tar that are not regular files (a directory, a
    broken link, a named pipe) are skipped and reported, as train-folder skips them; named on
    the command line, each is refused before any model loads, and a named pipe is never read
    (reading one would wait for a writer forever)."""
    root, _ = wds
    d = tmp_path / "d"
    d.mkdir()
    shutil.copy(root / "00000.tar", d / "00000.tar")
    (d / "dir.tar").mkdir()
    os.symlink(d / "gone", d / "gone.tar")
    os.mkfifo(d / "pipe.tar")
    out = tmp_path / "o"
    assert guarded(d / "pipe.tar", lambda: run(tiny_models, "train-wds", d, "--out", out)) == 0
    err = capfd.readouterr().err
    assert f"{d}: skipped 3 entries that are not regular files, e.g. {d / 'dir.tar'}" in err
    assert "Traceback" not in err
    assert sorted(n for n in os.listdir(out) if n.endswith(".npy")) == ["00000.clip.npy", "00000.dino.npy"]

    monkeypatch.setattr(encoders, "load_dinov2", lambda *a, **k: pytest.fail("loaded a model"))
    for name, message in (("pipe.tar", "a named pipe, not a tar file or a directory of them"),
                          ("gone.tar", "a broken symbolic link")):
        rc = guarded(d / "pipe.tar", lambda: run(tiny_models, "train-wds", d / name, "--out", tmp_path / "o2"))
        err = capfd.readouterr().err
        assert rc == 1 and err == f"dinoclip.extract: {d / name}: {message}\n"
    # index_tar itself refuses what is not a regular file, without blocking
    for name, kind in (("pipe.tar", "a named pipe"), ("dir.tar", "a directory")):
        with pytest.raises(extract.ExtractError) as e:
            guarded(d / "pipe.tar", lambda: extract.index_tar(str(d / name)))
        assert str(e.value) == f"{d / name}: {kind}, not a regular file; output shard {name[:-4]} is not written"


def test_train_wds_compressed_tars_in_a_directory(tmp_path, tiny_models, wds, models, capfd):
    """A directory's tars are those of every form a tar named on the command line may take,
    and an output shard is named without the whole tar suffix."""
    import bz2
    import lzma

    assert [_inputs.tar_name(n) for n in ("a.tar", "a.tar.gz", "a.tgz", "a.tar.xz", "a.txz", "a.tar.bz2",
                                           "a.tbz2", "a.TAR.XZ", "a.b.tar", "a.bin")] == ["a"] * 8 + ["a.b", "a"]
    root, shards = wds
    d = tmp_path / "d"
    d.mkdir()
    (d / "00000.tar.xz").write_bytes(lzma.compress((root / "00000.tar").read_bytes()))
    (d / "00001.tbz2").write_bytes(bz2.compress((root / "00001.tar").read_bytes()))
    # a compressed copy beside a plain tar of the same name: the plain one, with a word
    (d / "00001.tar").write_bytes((root / "00001.tar").read_bytes())
    (d / "00001.tar.gz").write_bytes(b"never read")
    (d / "notes.txt").write_text("not a tar")
    out = tmp_path / "o"
    assert run(tiny_models, "train-wds", d, "--out", out) == 0
    err = capfd.readouterr().err
    assert "2 tar files ->" in err and "skipped 2 tar files" in err and "(beside " + str(d / "00001.tar") + ")" in err
    assert sorted(n for n in os.listdir(out) if n.endswith(".npy")) == [
        "00000.clip.npy", "00000.dino.npy", "00001.clip.npy", "00001.dino.npy"]
    for s, good in shards.items():
        d_, c = direct(models, [im for im, _ in good])
        np.testing.assert_allclose(read_npy(out / f"{s}.dino.npy"), d_, **TOL)
        np.testing.assert_allclose(read_npy(out / f"{s}.clip.npy"), c, **TOL)
    # an empty directory names the forms it looks for
    (tmp_path / "empty").mkdir()
    assert run(tiny_models, "train-wds", tmp_path / "empty", "--out", out) == 1
    assert "no tar files (.tar, .tar.gz, .tgz, " in capfd.readouterr().err


def scale(monkeypatch, name, factor):
    """encoders.NAME's outputs multiplied by ``factor`` (1e6: beyond float16; NaN)."""
    f = getattr(encoders, name)
    monkeypatch.setattr(encoders, name, lambda *a, **k: f(*a, **k) * factor)


def test_train_non_finite_rows_refused_before_writing(tmp_path, tiny_models, wds, image_folder, monkeypatch, capfd):
    """Rows that cannot be written (beyond float16 with --float16; NaN from the model) are an
    error naming the shard and the cause, before any of the shard's files is written; the run
    leaves nothing (its extract.json once refused the mended rerun as mixing settings with
    shards that do not exist)."""
    root, _ = wds
    out = tmp_path / "o"
    scale(monkeypatch, "clip_image_embeddings", 1e6)
    assert run(tiny_models, "train-wds", root / "00001.tar", "--out", out, "--float16") == 1
    err = capfd.readouterr().err
    assert re.search(rf"dinoclip\.extract: output shard {re.escape(str(out / '00001'))}: \d+ values of \.clip\.npy "
                     r"overflow float16 \(largest magnitude [0-9.e+]+\); drop --float16; not written\n", err), err
    assert "Traceback" not in err
    assert not out.exists()
    # float32 holds them: the same --out, without --float16
    assert run(tiny_models, "train-wds", root / "00001.tar", "--out", out) == 0
    monkeypatch.undo()

    folder = tmp_path / "f"
    shutil.copytree(image_folder / "b", folder)
    out = tmp_path / "f-out"
    scale(monkeypatch, "dinov2_features", float("nan"))
    assert run(tiny_models, "train-folder", folder, "--out", out, "--precision", "bf16") == 1
    err = capfd.readouterr().err
    assert (f"dinoclip.extract: output shard {out / 'shard-00000'}: {5 * FEATURE_DIM} non-finite values (NaN or "
            "Inf) from the model in .dino.npy, e.g. in row 0; --precision bf16 can overflow, try fp32; "
            "not written") in err
    assert "Traceback" not in err and not out.exists()
    # into an --out that holds other files, it leaves them and removes only its own record
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert run(tiny_models, "train-folder", folder, "--out", out, "--precision", "bf16") == 1
    assert sorted(os.listdir(out)) == ["notes.txt"]


# ---------------------------------------------------------------------------
# eval-coco / eval-flickr


def test_eval_coco(extracted, karpathy, models, capfd):
    ev = extracted["eval"]
    assert sorted(os.listdir(ev)) == sorted(extract.EVAL_FILES)
    info = json.loads((ev / "eval.json").read_text())
    assert info["name"] == "mscoco-4" and info["images"] == 4 and info["captions"] == 21
    idx = read_npy(ev / "captions.image.npy", "<i8")
    assert idx.tolist() == [0] * 5 + [1] * 6 + [2] * 5 + [3] * 5
    data = json.load(open(karpathy["json"]))
    test = [im for im in data["images"] if im["split"] == "test"]
    imgs = [Image.open(os.path.join(karpathy["images"], im["filepath"], im["filename"])) for im in test]
    caps = [s["raw"] for im in test for s in im["sentences"]]
    d, c = direct(models, imgs)
    np.testing.assert_allclose(read_npy(ev / "images.dino.npy"), d, **TOL)
    np.testing.assert_allclose(read_npy(ev / "images.clip.npy"), c, **TOL)
    _, t = direct(models, imgs[:1], caps)
    np.testing.assert_allclose(read_npy(ev / "captions.clip.npy"), t, **TOL)
    # the text embeddings do not depend on the padding: same as with an attention mask
    clip = models[1]
    tok = models[2].tokenizer(caps, padding=True, return_tensors="pt")
    with torch.inference_mode():
        masked = encoders.clip_text_embeddings(clip, tok["input_ids"], tok["attention_mask"]).numpy()
    np.testing.assert_allclose(t, masked, **TOL)


def test_default_eval_name_is_as_documented(capsys):
    """The README and --help give the default name of an evaluation set as the code makes it:
    from the json's dataset and the number of images (a 4-image split is mscoco-4, not
    mscoco-5k)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    for dataset, json_name, n, kind, name in [("coco", "dataset_coco.json", 5000, "coco", "mscoco-5k"),
                                              ("coco", "dataset_coco.json", 4, "coco", "mscoco-4"),
                                              ("flickr30k", "dataset_flickr30k.json", 1000, "flickr", "flickr30k-1k"),
                                              (None, "dataset_flickr8k.json", 1000, "flickr", "flickr8k-1k"),
                                              ("flickr30k", "x.json", 1500, "flickr", "flickr30k-1500")]:
        assert extract._default_eval_name(dataset, json_name, n, kind) == name
        assert f"`{name}`" in readme, name
    with pytest.raises(SystemExit):
        extract.main(["eval-coco", "--help"])
    assert "(mscoco-5k for the full test split, mscoco-4\nfor 4 images)" in capsys.readouterr().out


def test_eval_flickr_and_resume(tmp_path, tiny_models, karpathy, monkeypatch, capfd):
    src = json.load(open(karpathy["json"]))
    flat = tmp_path / "flickr30k-images"
    flat.mkdir()
    images = []
    for im in src["images"]:
        shutil.copy(os.path.join(karpathy["images"], im["filepath"], im["filename"]), flat / im["filename"])
        images.append({"filename": im["filename"], "split": im["split"], "sentences": im["sentences"][:5]})
    js = tmp_path / "dataset_flickr30k.json"
    js.write_text(json.dumps({"dataset": "flickr30k", "images": images}))
    out = tmp_path / "ev"
    assert run(tiny_models, "eval-flickr", "--karpathy", js, "--images", flat, "--out", out, "--float16") == 0
    assert json.loads((out / "eval.json").read_text())["name"] == "flickr30k-4"
    assert read_npy(out / "images.dino.npy", "<f2").shape == (4, FEATURE_DIM)
    assert read_npy(out / "images.clip.npy", "<f2").shape == (4, EMBED_DIM)
    assert read_npy(out / "captions.clip.npy", "<f2").shape == (20, EMBED_DIM)
    assert read_npy(out / "captions.image.npy", "<i8").tolist() == [i // 5 for i in range(20)]
    # complete: skipped without loading a model
    monkeypatch.setattr(encoders, "load_dinov2", lambda *a, **k: pytest.fail("loaded a model"))
    capfd.readouterr()
    assert run(tiny_models, "eval-flickr", "--karpathy", js, "--images", flat, "--out", out, "--float16") == 0
    assert "already complete" in capfd.readouterr().err
    # a missing image is found before any model is loaded; so is an unknown split
    os.unlink(flat / images[0]["filename"])
    assert run(tiny_models, "eval-flickr", "--karpathy", js, "--images", flat, "--out", tmp_path / "e2") == 1
    assert "1 of 4 images is not under --images" in capfd.readouterr().err
    assert run(tiny_models, "eval-flickr", "--karpathy", js, "--images", flat, "--out", tmp_path / "e3",
               "--split", "val") == 1
    assert "no images in split 'val' (splits: test, train)" in capfd.readouterr().err


def test_eval_complete_set_made_otherwise_is_refused(tmp_path, tiny_models, karpathy, extracted, monkeypatch, capfd):
    """A complete evaluation set in --out made from other inputs, models or dtype is not taken as
    done: refused, naming what differs (as train-folder and train-wds refuse other settings)."""
    out = tmp_path / "ev"
    shutil.copytree(extracted["eval"], out)
    before = {n: (out / n).read_bytes() for n in extract.EVAL_FILES}
    monkeypatch.setattr(encoders, "load_dinov2", lambda *a, **k: pytest.fail("loaded a model"))
    other = tmp_path / "other" / "dataset_coco.json"
    other.parent.mkdir()
    shutil.copy(karpathy["json"], other)
    model_copy = tmp_path / "clip-copy"
    shutil.copytree(tiny_models["clip"], model_copy)
    common = ["--device", "cpu", "--workers", "0", "--quiet", "--out", str(out), "--dinov2", tiny_models["dinov2"]]
    same = ["--karpathy", karpathy["json"], "--images", karpathy["images"]]
    capfd.readouterr()
    for args, what in ((["--karpathy", str(other), "--images", karpathy["images"], "--clip", tiny_models["clip"]],
                        f"karpathy was {os.path.realpath(karpathy['json'])!r}, now {os.path.realpath(other)!r}"),
                       ([*same, "--clip", tiny_models["clip"], "--float16"], "dtype was 'float32', now 'float16'"),
                       ([*same, "--clip", tiny_models["clip"], "--precision", "bf16"], "precision was 'fp32', now 'bf16'"),
                       ([*same, "--clip", str(model_copy)], "clip was "),
                       ([*same, "--clip", tiny_models["clip"], "--split", "train"],
                        "source was 'dataset_coco.json split test', now 'dataset_coco.json split train'"),
                       ([*same, "--clip", tiny_models["clip"], "--name", "other"], "name was 'mscoco-4', now 'other'")):
        assert extract.main(["eval-coco", *args, *common]) == 1
        err = capfd.readouterr().err
        assert err.startswith(f"dinoclip.extract: {out} holds an evaluation set extracted with other settings (") \
            and what in err and err.endswith(f"; use another --out, or delete {out} to redo it\n") \
            and err.count("\n") == 1, err
    assert {n: (out / n).read_bytes() for n in extract.EVAL_FILES} == before
    # the same inputs (the name spelt out as the default made it) are done, also named through
    # links (compared by real path)
    assert extract.main(["eval-coco", *same, "--clip", tiny_models["clip"], "--name", "mscoco-4", *common]) == 0
    assert "already complete" in capfd.readouterr().err
    link = tmp_path / "link"
    link.symlink_to(os.path.dirname(karpathy["json"]))
    via = ["--karpathy", str(link / os.path.basename(karpathy["json"])), "--images", karpathy["images"]]
    assert extract.main(["eval-coco", *via, "--clip", tiny_models["clip"], *common]) == 0
    assert "already complete" in capfd.readouterr().err


@pytest.mark.parametrize("other_dtype", ["float32", "float16"])
def test_eval_set_completed_meanwhile_by_another_run(tmp_path, tiny_models, karpathy, extracted, monkeypatch, capfd,
                                                     other_dtype):
    """Another run into the same --out that completes the set while this one extracts (both write
    under the directory's lock, in turn): this one finds a whole set when it comes to write, and
    checks it as a set made before it, never mixing its files with the other's. Made otherwise
    (float32 here, this run float16), refused; made alike, done."""
    out = tmp_path / "ev"
    other = tmp_path / "other"
    args = ["eval-coco", "--karpathy", karpathy["json"], "--images", karpathy["images"], "--out", out]
    if other_dtype == "float16":
        assert run(tiny_models, *args[:-1], other, "--float16") == 0
    else:
        shutil.copytree(extracted["eval"], other)
    before = {n: (other / n).read_bytes() for n in extract.EVAL_FILES}
    check_finite = extract._check_finite

    def the_other_run_finishes(*a, **k):  # (after this run's extraction, before its writes)
        check_finite(*a, **k)
        shutil.copytree(other, out)

    monkeypatch.setattr(extract, "_check_finite", the_other_run_finishes)
    capfd.readouterr()
    rc = run(tiny_models, *args, "--float16")
    err = capfd.readouterr().err
    if other_dtype == "float16":
        assert rc == 0 and "evaluation set completed by another run meanwhile; skipping" in err, err
    else:
        assert rc == 1 and "dtype was 'float32', now 'float16'" in err, err
    assert {n: (out / n).read_bytes() for n in extract.EVAL_FILES} == before


@pytest.mark.skipif(os.name != "posix", reason="symbolic links are POSIX's")
def test_eval_refuses_a_device_in_place_of_a_file_before_extracting(tmp_path, tiny_models, karpathy, extracted,
                                                                    monkeypatch, capfd):
    """A set whose eval.json is a link to a device is not taken for unfinished and overwritten, then
    refused at its last file: refused before any model loads, the set's files as they were."""
    out = tmp_path / "ev"
    shutil.copytree(extracted["eval"], out)
    os.remove(out / "eval.json")
    os.symlink("/dev/zero", out / "eval.json")
    before = {n: (out / n).read_bytes() for n in extract.EVAL_FILES if n != "eval.json"}
    monkeypatch.setattr(encoders, "load_dinov2", lambda *a, **k: pytest.fail("loaded a model"))
    capfd.readouterr()
    assert run(tiny_models, "eval-coco", "--karpathy", karpathy["json"], "--images", karpathy["images"],
               "--out", out) == 1
    assert "/dev/zero" in capfd.readouterr().err
    assert {n: (out / n).read_bytes() for n in before} == before


@pytest.mark.skipif(os.name != "posix", reason="symbolic links and file modes are POSIX's")
def test_eval_rerun_over_a_read_only_or_linked_set(tmp_path, tiny_models, karpathy, extracted, monkeypatch, capfd):
    """A whole set stored read-only (chmod -w, DVC, git-annex) is done, not refused as unwritable.
    A set whose files are links to another directory's is written where they lead, all of it: the
    other directory's images.dino.npy is replaced with the rest, never left beside new files."""
    ro = tmp_path / "ro"
    shutil.copytree(extracted["eval"], ro)
    for n in extract.EVAL_FILES:
        os.chmod(ro / n, 0o444)
    monkeypatch.setattr(encoders, "load_dinov2", lambda *a, **k: pytest.fail("loaded a model"))
    args = ["eval-coco", "--karpathy", karpathy["json"], "--images", karpathy["images"]]
    capfd.readouterr()
    assert run(tiny_models, *args, "--out", ro) == 0
    assert "already complete" in capfd.readouterr().err
    monkeypatch.undo()
    other, out = tmp_path / "other", tmp_path / "out"
    shutil.copytree(extracted["eval"], other)
    os.remove(other / "eval.json")
    out.mkdir()
    for n in extract.EVAL_FILES:
        os.symlink(other / n, out / n)
    assert run(tiny_models, *args, "--out", out, "--float16") == 0
    assert read_npy(other / "images.dino.npy", "<f2").dtype == np.float16
    assert read_npy(other / "images.clip.npy", "<f2").dtype == np.float16


def test_eval_warns_of_clipped_greyscale_images(tmp_path, tiny_models, karpathy, capfd):
    images = tmp_path / "images"
    shutil.copytree(karpathy["images"], images)
    grey = images / "val2014" / "COCO_val2014_000000000002.jpg"  # (opened by its contents: a PNG)
    Image.fromarray(np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)).save(grey, format="PNG")
    capfd.readouterr()
    assert run(tiny_models, "eval-coco", "--karpathy", karpathy["json"], "--images", images,
               "--out", tmp_path / "ev") == 0
    assert f"warning: 1 image is 16-bit, 32-bit or floating-point greyscale (e.g. {grey})" in capfd.readouterr().err
    assert read_npy(tmp_path / "ev" / "images.dino.npy").shape == (karpathy["n_images"], FEATURE_DIM)


@pytest.mark.parametrize("fail_at", [1, 2, 3])
def test_eval_set_stopped_while_written_does_not_load(tmp_path, tiny_models, karpathy, extracted, monkeypatch,
                                                      capfd, fail_at):
    """A run stopped while it writes the set (here a write failing) leaves no images.dino.npy, which
    it removes first and writes last: its files beside those of an earlier run (whose eval.json was
    lost) are no set that loads; and with captions.clip.npy written before images.clip.npy, the
    directory is never one training shard's two files."""
    out = tmp_path / "ev"
    shutil.copytree(extracted["eval"], out)
    os.remove(out / "eval.json")  # (an earlier run's set, not complete)
    written = []
    save = extract.save_npy

    def save_then_stop(path, *a, **k):
        if len(written) + 1 == fail_at:
            raise OSError(28, "No space left on device", path)
        written.append(os.path.basename(path))
        return save(path, *a, **k)

    monkeypatch.setattr(extract, "save_npy", save_then_stop)
    assert run(tiny_models, "eval-coco", "--karpathy", karpathy["json"], "--images", karpathy["images"],
               "--out", out, "--float16") == 1
    assert not (out / "images.dino.npy").exists()
    assert written == ["captions.image.npy", "captions.clip.npy"][:fail_at - 1]


@pytest.mark.parametrize("dataset,why", [("co\x1b[31mco", "want a name of printable characters"),
                                         ("c" * 5000, "a name of 5002 bytes; want at most 4096")])  # (with "-4", the images counted)
def test_eval_default_name_checked_before_extracting(tmp_path, tiny_models, karpathy, monkeypatch, capfd,
                                                     dataset, why):
    """The name a Karpathy json's "dataset" gives, as --name is: one dinoclip refuses (not printable,
    or too long for the eval.json it reads) is refused before any model loads."""
    data = json.load(open(karpathy["json"]))
    data["dataset"] = dataset
    js = tmp_path / "dataset_coco.json"
    js.write_text(json.dumps(data))
    monkeypatch.setattr(encoders, "load_dinov2", lambda *a, **k: pytest.fail("loaded a model"))
    capfd.readouterr()
    assert run(tiny_models, "eval-coco", "--karpathy", js, "--images", karpathy["images"],
               "--out", tmp_path / "ev") == 1
    err = capfd.readouterr().err
    assert "the default name, from" in err and why in err, err
    assert not (tmp_path / "ev").exists()


@pytest.mark.skipif(os.name != "posix", reason="symbolic links are POSIX's")
def test_eval_refuses_to_replace_its_karpathy_file(tmp_path, tiny_models, karpathy, monkeypatch, capfd):
    """Before any model loads: an output file that is the --karpathy file (named as it, or
    through a link) would replace it with the set."""
    monkeypatch.setattr(encoders, "load_dinov2", lambda *a, **k: pytest.fail("loaded a model"))
    data = open(karpathy["json"], "rb").read()
    ev = tmp_path / "ev"
    ev.mkdir()
    shutil.copy(karpathy["json"], ev / "eval.json")
    own = tmp_path / "dataset_coco.json"
    shutil.copy(karpathy["json"], own)
    os.symlink(own, ev / "captions.clip.npy")
    for js, name in ((ev / "eval.json", "eval.json"), (own, "captions.clip.npy")):
        assert run(tiny_models, "eval-coco", "--karpathy", js, "--images", karpathy["images"], "--out", ev) == 1
        assert capfd.readouterr().err == (f"dinoclip.extract: --out {ev}: its {name} is the --karpathy file {js}: "
                                          "write the evaluation set to another directory\n")
    assert (ev / "eval.json").read_bytes() == data and own.read_bytes() == data


@pytest.mark.parametrize("name", ["   ", "", "a\x1b[31mb", "set\u202eodd"])
def test_eval_refuses_a_name_dinoclip_refuses(tmp_path, tiny_models, karpathy, monkeypatch, capfd, name):
    """Before any model loads: a blank name, or one that cannot be printed, which dinoclip's
    eval refuses when it loads the set (the extraction would be lost)."""
    monkeypatch.setattr(encoders, "load_dinov2", lambda *a, **k: pytest.fail("loaded a model"))
    out = tmp_path / "ev"
    assert run(tiny_models, "eval-coco", "--karpathy", karpathy["json"], "--images", karpathy["images"],
               "--out", out, "--name", name) == 1
    assert capfd.readouterr().err == f"dinoclip.extract: --name {name!r}: want a name of printable characters, not blank\n"
    assert not out.exists()


def test_deeply_nested_json_is_one_line(tmp_path, tiny_models, karpathy, image_folder, monkeypatch, capfd):
    """JSON nested deeper than the parser recurses (RecursionError, not a ValueError): in
    --karpathy, and in the extract.json and eval.json that record how an --out was made."""
    monkeypatch.setattr(encoders, "load_dinov2", lambda *a, **k: pytest.fail("loaded a model"))
    deep = "[" * 100000 + "]" * 100000
    js = tmp_path / "dataset_coco.json"
    js.write_text(deep)
    assert run(tiny_models, "eval-coco", "--karpathy", js, "--images", karpathy["images"], "--out", tmp_path / "e") == 1
    err = capfd.readouterr().err
    assert err == f"dinoclip.extract: --karpathy {js}: maximum recursion depth exceeded while decoding a JSON " \
                  "array from a unicode string\n", err
    ev = tmp_path / "ev"
    ev.mkdir()
    for name in extract.EVAL_FILES:
        (ev / name).write_bytes(b"")
    (ev / "eval.json").write_text(deep)
    assert run(tiny_models, "eval-coco", "--karpathy", karpathy["json"], "--images", karpathy["images"], "--out", ev) == 1
    err = capfd.readouterr().err
    assert err.startswith(f"dinoclip.extract: {ev / 'eval.json'} is unreadable (maximum recursion depth") and \
        err.count("\n") == 1, err
    tr = tmp_path / "tr"
    tr.mkdir()
    (tr / extract.MANIFEST).write_text(deep)
    assert run(tiny_models, "train-folder", image_folder, "--out", tr) == 1
    err = capfd.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"dinoclip.extract: {tr / extract.MANIFEST} is unreadable (maximum recursion depth"), err


def test_named_pipe_and_directory_inputs_are_refused(tmp_path, tiny_models, karpathy, monkeypatch, capfd):
    """texts FILE and --karpathy JSON that are named pipes are refused without waiting for a
    writer; a directory, or a missing file, is one line naming it."""
    monkeypatch.setattr(encoders, "load_clip", lambda *a, **k: pytest.fail("loaded a model"))
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    out = tmp_path / "q.npy"
    assert guarded(fifo, lambda: run_texts(tiny_models, fifo, "--out", out)) == 1
    assert capfd.readouterr().err == f"dinoclip.extract: {fifo}: a named pipe, not a regular file\n"
    assert guarded(fifo, lambda: run(tiny_models, "eval-coco", "--karpathy", fifo, "--images", karpathy["images"],
                                     "--out", tmp_path / "ev")) == 1
    assert capfd.readouterr().err == f"dinoclip.extract: --karpathy {fifo}: a named pipe, not a regular file\n"
    assert run_texts(tiny_models, tmp_path, "--out", out) == 1
    assert capfd.readouterr().err == f"dinoclip.extract: {tmp_path}: a directory, not a regular file\n"
    assert run_texts(tiny_models, tmp_path / "missing.txt", "--out", out) == 1
    assert capfd.readouterr().err == f"dinoclip.extract: {tmp_path / 'missing.txt'}: No such file or directory\n"
    assert not out.exists()


@pytest.mark.parametrize("change,message", [
    (lambda d: d["images"].insert(1, "COCO_val2014_x.jpg"), "images[1] is a str, want a JSON object"),
    (lambda d: d["images"][0].update(filepath=7), "image COCO_val2014_000000000000.jpg: filepath 7 is not a string"),
    (lambda d: d["images"][0].update(filename=12), "image 0 of split 'test' has no filename (a string): 12"),
    (lambda d: d["images"][1].update(sentences="a dog"), "image COCO_val2014_000000000001.jpg: sentences is a str, want a list"),
    (lambda d: d["images"][1]["sentences"].append("a dog"), "000001.jpg: sentence 6 is a str, want a JSON object"),
    (lambda d: d["images"][1]["sentences"][2].update(raw=3.5), "000001.jpg: sentence 2: raw 3.5 is not a string"),
    (lambda d: d["images"][1]["sentences"][2].update(raw=None, tokens=[1, 2]),
     "000001.jpg: sentence 2: tokens [1, 2] is not a list of strings"),
    (lambda d: d.update(dataset=5), '"dataset" is a int, want a string'),
    (lambda d: d["images"][1]["sentences"][2].update(raw="a \ud800 b"),
     "000001.jpg: sentence 2: caption 'a \\ud800 b' is not Unicode text (it holds a lone surrogate"),
])
def test_karpathy_wrong_types(tmp_path, karpathy, change, message):
    data = json.load(open(karpathy["json"]))
    change(data)
    js = tmp_path / "dataset_coco.json"
    js.write_text(json.dumps(data))
    with pytest.raises(extract.ExtractError) as e:
        extract.read_karpathy(str(js), karpathy["images"])
    assert message in str(e.value)


@pytest.mark.parametrize("command", ["eval-coco", "eval-flickr"])
def test_karpathy_image_listed_twice_is_refused(tmp_path, karpathy, monkeypatch, capfd, command):
    """One image in the split twice, by its name or by another name of the same file: its rows
    would be identical, every caption of it a tie that scores as a miss. Refused before any
    model loads, naming both entries; every eval-* subcommand reads the split alike."""
    monkeypatch.setattr(extract, "_extractor", lambda *a: pytest.fail("loaded the models"))
    images = tmp_path / "images"
    shutil.copytree(karpathy["images"], images)
    if hasattr(os, "symlink"):
        os.symlink("COCO_val2014_000000000002.jpg", images / "val2014" / "alias.jpg")
    data = json.load(open(karpathy["json"]))
    for j, filename in enumerate(["COCO_val2014_000000000002.jpg", "alias.jpg"]):
        if filename == "alias.jpg" and not hasattr(os, "symlink"):
            continue
        js = tmp_path / f"dataset_coco{j}.json"
        js.write_text(json.dumps({**data, "images": data["images"] + [{**data["images"][2], "filename": filename}]}))
        assert extract.main([command, "--karpathy", str(js), "--images", str(images), "--out", str(tmp_path / "o"),
                             "--device", "cpu", "--quiet"]) == 1
        assert capfd.readouterr().err == (
            f"dinoclip.extract: {js}: images[2] (COCO_val2014_000000000002.jpg) and images[6] ({filename}) of split "
            f"'test' are the same image, {images / 'val2014' / filename}: each image must be listed once\n")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["eval-coco", "eval-flickr"])
def test_karpathy_empty_captions_are_counted(tmp_path, karpathy, monkeypatch, capfd, command):
    """An empty caption (raw "" or blank, no tokens) is left out, as before, but said: the set
    has fewer captions than the split lists."""
    monkeypatch.setattr(extract, "_extractor", lambda *a: (_ for _ in ()).throw(extract.ExtractError("stop")))
    data = json.load(open(karpathy["json"]))
    data["images"][1]["sentences"][3]["raw"] = ""
    data["images"][3]["sentences"][0]["raw"] = "  "
    data["images"][3]["sentences"][1]["raw"] = "\ufeff"  # (a byte-order mark is no text)
    js = tmp_path / "dataset_coco.json"
    js.write_text(json.dumps(data))
    assert extract.main([command, "--karpathy", str(js), "--images", karpathy["images"], "--out", str(tmp_path / "o"),
                         "--device", "cpu", "--quiet"]) == 1
    err = capfd.readouterr().err.splitlines()
    assert err[0] == f"{js}: skipped 3 empty captions of split 'test', e.g. sentence 3 of COCO_val2014_000000000001.jpg"
    assert err[1].startswith(f"{js} split 'test': 4 images, {karpathy['n_captions'] - 3} captions")
    assert err[-1] == "dinoclip.extract: stop"


def test_bad_device_and_out_refused_up_front(tmp_path, tiny_models, karpathy, image_folder, monkeypatch, capfd):
    monkeypatch.setattr(encoders, "load_dinov2", lambda *a, **k: pytest.fail("loaded a model"))
    monkeypatch.setattr(extract, "read_karpathy", lambda *a, **k: pytest.fail("read the inputs"))
    assert extract.main(["train-folder", str(image_folder), "--out", str(tmp_path / "o"), "--device", "bogus"]) == 2
    err = capfd.readouterr().err
    assert err.startswith("dinoclip.extract: --device bogus: ") and err.count("\n") == 1
    afile = tmp_path / "afile"
    afile.write_text("x")
    for cmd in (["eval-coco", "--karpathy", karpathy["json"], "--images", karpathy["images"]],
                ["train-folder", str(image_folder)]):
        assert run(tiny_models, *cmd, "--out", afile) == 1
        assert f"--out {afile} exists and is not a directory" in capfd.readouterr().err
    assert afile.read_text() == "x"


def test_unusable_device_is_one_line(tmp_path, tiny_models, monkeypatch, capfd):
    """--device meta (shapes without values) is refused; a device this torch has no backend for
    fails the first tensor put on it each its own way: one line, before any model loads."""
    monkeypatch.setattr(encoders, "load_clip", lambda *a, **k: pytest.fail("loaded a model"))
    src = tmp_path / "q.txt"
    src.write_text("a dog\n", encoding="utf-8")
    args = ["texts", str(src), "--out", str(tmp_path / "q.npy"), "--clip", tiny_models["clip"], "--quiet"]
    assert extract.main([*args, "--device", "meta"]) == 1
    assert capfd.readouterr().err == "dinoclip.extract: --device meta: holds no values; use cuda or cpu\n"
    tried = 0
    for device in ("mps", "xla"):
        try:
            torch.zeros(1).to(device)
            continue  # (usable on this machine)
        except Exception:
            pass
        tried += 1
        assert extract.main([*args, "--device", device]) == 1
        err = capfd.readouterr().err
        assert err.startswith(f"dinoclip.extract: --device {device}: not usable here (") and err.count("\n") == 1, err
    assert tried or pytest.skip("mps and xla are both usable here")
    assert not (tmp_path / "q.npy").exists()


def test_eval_non_finite_rows_refused_before_writing(tmp_path, tiny_models, karpathy, monkeypatch, capfd):
    ev = tmp_path / "ev"
    scale(monkeypatch, "clip_text_embeddings", float("nan"))
    assert run(tiny_models, "eval-coco", "--karpathy", karpathy["json"], "--images", karpathy["images"],
               "--out", ev) == 1
    err = capfd.readouterr().err
    assert (f"dinoclip.extract: evaluation set {ev}: {21 * EMBED_DIM} non-finite values (NaN or Inf) from the "
            "model in captions.clip.npy, e.g. in row 0; not written") in err
    assert "Traceback" not in err and not ev.exists()


def test_out_that_cannot_be_written(tmp_path, tiny_models, wds, image_folder, karpathy, monkeypatch, capfd):
    """--out under a regular file, or in a directory that cannot be written: one line naming
    it, status 1, before any model loads; a write that fails anyway (no space) names its file."""
    import errno

    root, _ = wds
    afile = tmp_path / "afile"
    afile.write_text("x")
    under = afile / "x"
    with monkeypatch.context() as m:
        m.setattr(encoders, "load_dinov2", lambda *a, **k: pytest.fail("loaded a model"))
        m.setattr(encoders, "load_clip", lambda *a, **k: pytest.fail("loaded a model"))
        for cmd in (["train-wds", root / "00001.tar"], ["train-folder", image_folder],
                    ["eval-coco", "--karpathy", karpathy["json"], "--images", karpathy["images"]]):
            assert run(tiny_models, *cmd, "--out", under) == 1
            assert capfd.readouterr().err == \
                f"dinoclip.extract: --out {under}: cannot be created, {afile} is not a directory\n"
        assert run_texts(tiny_models, root / "00000_stats.json", "--out", under / "q.npy") == 1
        assert capfd.readouterr().err == \
            f"dinoclip.extract: --out {under / 'q.npy'}: cannot be created, {afile} is not a directory\n"
        # (os.access: root may write anywhere, so the test cannot use a directory's mode)
        m.setattr(os, "access", lambda *a, **k: False)
        assert run_texts(tiny_models, root / "00000_stats.json", "--out", tmp_path / "q.npy") == 1
        assert capfd.readouterr().err == \
            f"dinoclip.extract: --out {tmp_path / 'q.npy'}: cannot be written, {tmp_path} is not writable\n"
    assert afile.read_text() == "x" and not (tmp_path / "q.npy").exists()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "o"
    monkeypatch.setattr(os, "fsync", full)
    assert run(tiny_models, "train-wds", root / "00001.tar", "--out", out) == 1
    err = capfd.readouterr().err
    assert err.endswith(f"dinoclip.extract: {out / extract.MANIFEST}: cannot write it: No space left on device\n")
    assert "Traceback" not in err and not out.exists()  # (made by the run, and left empty: removed)


def test_help(capsys):
    for cmd in ("train-folder", "train-wds", "eval-coco", "eval-flickr"):
        with pytest.raises(SystemExit) as e:
            extract.main([cmd, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert "--out DIR" in out and "--dinov2" in out and "--float16" in out
    with pytest.raises(SystemExit):
        extract.main(["--help"])
    assert "train-wds" in capsys.readouterr().out


def test_module_entry_point(tmp_path):
    r = subprocess.run([sys.executable, "-m", "dinoclip.extract", "eval-coco", "--karpathy", str(tmp_path / "no.json"),
                        "--images", str(tmp_path), "--out", str(tmp_path / "o"), "--device", "cpu"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "dinoclip.extract: --karpathy" in r.stderr


@pytest.mark.parametrize("which", ["dinov2", "clip"])
def test_unavailable_model_is_one_line(tmp_path, tiny_models, image_folder, which):
    """No network (HF_HUB_OFFLINE=1, so nothing is fetched and the test needs none) and a model
    that is not in the cache: one line naming the model and the flag that takes a local folder,
    no traceback. An empty local folder gets the same message."""
    models = {"dinov2": tiny_models["dinov2"], "clip": tiny_models["clip"]}
    flag = "--" + which
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    empty = tmp_path / "empty"
    empty.mkdir()
    for missing in ("nobody-dinoclip-test/no-such-model", str(empty), str(tmp_path / "no" / "such" / "folder")):
        models[which] = missing
        r = subprocess.run([sys.executable, "-m", "dinoclip.extract", "train-folder", str(image_folder),
                            "--out", str(tmp_path / "o"), "--device", "cpu", "--workers", "0", "--quiet",
                            "--dinov2", models["dinov2"], "--clip", models["clip"]],
                           capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 1, r.stderr
        assert "Traceback" not in r.stderr, r.stderr
        # The folder's summary line, then the error: one line.
        errors = [ln for ln in r.stderr.strip().splitlines() if ln.startswith("dinoclip.extract:")]
        assert len(errors) == 1 and r.stderr.strip().endswith(errors[0]), r.stderr
        name = "DINOv2" if which == "dinov2" else "CLIP"
        assert errors[0].startswith(f"dinoclip.extract: could not load the {name} model {missing!r}"), errors[0]
        assert f"pass the folder with {flag} DIR" in errors[0], errors[0]
        if "/no-such-model" in missing:  # (a hub name: the download it advises is the pinned
            # huggingface_hub's command, whose CLI is hf)
            assert f"(hf download {missing} --local-dir DIR; " in errors[0], errors[0]
            assert "HF_HUB_OFFLINE=1 skips the retries" in errors[0], errors[0]
    assert shutil.which("hf", path=os.path.dirname(sys.executable)), "the environment has no hf command"


def clip_without(tiny_models, tmp_path, drop_weight=None, tokenizer=True):
    """A copy of the tiny CLIP folder: without the weight ``drop_weight``, or without the
    tokenizer's files (config.json and model.safetensors alone)."""
    from safetensors.torch import load_file, save_file

    d = tmp_path / "clip-copy"
    d.mkdir()
    for name in os.listdir(tiny_models["clip"]):
        if tokenizer or name in ("config.json", "model.safetensors"):
            shutil.copy(os.path.join(tiny_models["clip"], name), d / name)
    if drop_weight:
        sd = load_file(d / "model.safetensors")
        del sd[drop_weight]
        save_file(sd, d / "model.safetensors", metadata={"format": "pt"})
    return d


@pytest.mark.parametrize("flag", ["--dinov2", "--clip"])
def test_model_of_another_kind_is_refused(tmp_path, tiny_models, image_folder, capfd, flag):
    """A CLIP folder as --dinov2, a DINOv2 folder as --clip: transformers would build the model
    with random weights and say so only in a warning; the run would write random features."""
    models = {"--dinov2": tiny_models["dinov2"], "--clip": tiny_models["clip"]}
    other = tiny_models["clip" if flag == "--dinov2" else "dinov2"]
    models[flag] = other
    out = tmp_path / "o"
    rc = extract.main(["train-folder", str(image_folder), "--out", str(out), "--device", "cpu", "--workers", "0",
                       "--quiet", "--dinov2", models["--dinov2"], "--clip", models["--clip"]])
    err = capfd.readouterr().err
    what, kind, found = ("DINOv2", "dinov2", "clip") if flag == "--dinov2" else ("CLIP", "clip", "dinov2")
    assert rc == 1 and "Traceback" not in err, err
    assert err.endswith(f"dinoclip.extract: could not load the {what} model {other!r}: its config is of a "
                        f"{found!r} model, not a {kind!r} one; pass the folder of a {what} model with {flag} DIR\n"), err
    assert not out.exists()  # (made by the run, and left empty: removed)


def test_failed_run_removes_only_the_empty_out_it_made(tmp_path, tiny_models, image_folder, karpathy, monkeypatch,
                                                       capfd):
    """A run that fails removes the --out directories it made (--out and those above it) while
    they are empty; an --out that existed before, or that holds anything, stays as it is."""
    bad = ["--dinov2", tiny_models["clip"], "--clip", tiny_models["clip"]]  # a CLIP folder as DINOv2
    common = ["--device", "cpu", "--workers", "0", "--quiet"]
    work = tmp_path / "work"
    work.mkdir()
    for cmd in (["train-folder", str(image_folder)],
                ["eval-flickr", "--karpathy", karpathy["json"], "--images", karpathy["images"]]):
        out = work / "new" / "deeper" / "o"
        assert extract.main([*cmd, "--out", str(out), *bad, *common]) == 1
        assert "its config is of a 'clip' model" in capfd.readouterr().err
        assert os.listdir(work) == []
    # texts: the directories made for the file
    src = tmp_path / "q.txt"
    src.write_text("a dog\n")
    assert extract.main(["texts", str(src), "--out", str(work / "new" / "q.npy"), "--clip",
                         tiny_models["dinov2"], "--device", "cpu", "--quiet"]) == 1
    assert "its config is of a 'dinov2' model" in capfd.readouterr().err
    assert os.listdir(work) == []
    # an --out that was there before stays, empty or not
    out = tmp_path / "existing"
    out.mkdir()
    assert extract.main(["train-folder", str(image_folder), "--out", str(out), *bad, *common]) == 1
    assert out.is_dir() and os.listdir(out) == []
    # one the run made and wrote into stays with what it holds (and all above it)
    out = tmp_path / "made" / "o"

    def fail_after_writing(args):
        extract.make_dirs(args.out)
        (out / "kept.txt").write_text("x")
        raise extract.ExtractError("failed")

    monkeypatch.setattr(extract, "cmd_train_folder", fail_after_writing)
    assert extract.main(["train-folder", str(image_folder), "--out", str(out), *common]) == 1
    assert (out / "kept.txt").read_text() == "x"
    capfd.readouterr()


def test_model_missing_weights_is_refused(tmp_path, tiny_models):
    """A CLIP folder whose weights file lacks some: they would be random."""
    d = clip_without(tiny_models, tmp_path, drop_weight="logit_scale")
    with pytest.raises(encoders.ModelUnavailable) as e:
        encoders.load_clip(str(d))
    assert str(e.value) == (f"could not load the CLIP model {str(d)!r}: 1 of its weights are missing (e.g. "
                            "logit_scale) and would be random; pass the folder of a whole CLIP model with --clip DIR")


def test_tokenizer_without_its_files_is_refused(tmp_path, tiny_models, karpathy, monkeypatch, capfd):
    """A CLIP folder without the tokenizer's files: transformers 5 builds a tokenizer of its two
    special tokens, which gives every text the same ids (and embedding). A folder whose files are
    no tokenizer's at all (a DINOv2 folder's): one line, not transformers' ValueError."""
    d = clip_without(tiny_models, tmp_path, tokenizer=False)
    clip = encoders.load_clip(str(d))
    for kw in ({}, {"clip": clip}):
        with pytest.raises(encoders.ModelUnavailable) as e:
            encoders.load_tokenizer(str(d), **kw)
        msg = str(e.value)
        assert msg.startswith(f"could not load the CLIP tokenizer of the model {str(d)!r}: it has ") and \
            f"tokens, the text model takes {clip.config.text_config.vocab_size} (the folder has no tokenizer.json, " \
            "vocab.json, merges.txt)" in msg, msg
    src = tmp_path / "q.txt"
    src.write_text("a red dog\ntwo cats\n", encoding="utf-8")
    capfd.readouterr()
    assert extract.main(["texts", str(src), "--out", str(tmp_path / "q.npy"), "--clip", str(d), "--device", "cpu",
                         "--quiet"]) == 1
    err = capfd.readouterr().err
    assert err.startswith("dinoclip.extract: could not load the CLIP tokenizer") and err.count("\n") == 1, err
    assert not (tmp_path / "q.npy").exists()
    # an evaluation set's tokenizer is refused before its images run, not after
    monkeypatch.setattr(extract.Extractor, "images", lambda *a, **k: pytest.fail("ran the images"))
    assert extract.main(["eval-coco", "--karpathy", karpathy["json"], "--images", karpathy["images"],
                         "--out", str(tmp_path / "ev"), "--dinov2", tiny_models["dinov2"], "--clip", str(d),
                         "--device", "cpu", "--workers", "0", "--quiet"]) == 1
    err = capfd.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("dinoclip.extract: could not load the CLIP tokenizer"), err
    with pytest.raises(encoders.ModelUnavailable) as e:
        encoders.load_tokenizer(tiny_models["dinov2"])
    assert str(e.value).startswith(f"could not load the CLIP tokenizer of the model {tiny_models['dinov2']!r} (")
    assert str(e.value).endswith("not the files of one; pass its folder with --clip DIR") and "\n" not in str(e.value)


def test_missing_folder_is_not_taken_for_a_model_name(tmp_path, monkeypatch):
    """A path that can only be a folder, and is not one, is refused before transformers is asked
    (which would take it for a model's name on the Hugging Face hub); ``owner/name`` is still
    passed on, as it may name either."""
    def load(name):
        raise OSError(f"asked transformers for {name}")

    for missing in (str(tmp_path / "no-such"), "./no-such-dinoclip-folder", "~/no-such-dinoclip-folder",
                    "a/b/c", "C:\\models\\clip"):
        with pytest.raises(encoders.ModelUnavailable) as e:
            encoders._from_pretrained(load, missing, "CLIP", "--clip")
        assert "(no such folder)" in str(e.value) and "asked transformers" not in str(e.value), missing
    with pytest.raises(encoders.ModelUnavailable) as e:
        encoders._from_pretrained(load, "owner/name", "CLIP", "--clip")
    assert "asked transformers for owner/name" in str(e.value)
    assert encoders._from_pretrained(lambda name: name, str(tmp_path), "CLIP", "--clip") == str(tmp_path)
    (tmp_path / "models").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path))
    assert encoders._from_pretrained(lambda name: name, "~/models", "CLIP", "--clip") == str(tmp_path / "models")


# ---------------------------------------------------------------------------
# texts


def run_texts(tiny_models, *args):
    return extract.main(["texts", *map(str, args), "--clip", tiny_models["clip"], "--device", "cpu",
                         "--batch-size", "2", "--quiet"])


def text_embeddings(models, lines):
    """The CLIP text embedding of each line, one text at a time."""
    _, clip, tok = models
    with torch.inference_mode():
        return np.stack([encoders.clip_text_embeddings(clip, tok([t]))[0].numpy() for t in lines])


def test_texts(tmp_path, tiny_models, models):
    lines = ["a red dog on the beach", "two cats sleeping", "ünïcödé street at night", "car"]
    src = tmp_path / "q.txt"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "sub" / "q.clip.npy"
    assert run_texts(tiny_models, src, "--out", out) == 0
    emb = read_npy(out)
    assert emb.shape == (len(lines), EMBED_DIM)
    want = text_embeddings(models, lines)
    # batches of two against one text at a time: float32 rounding only
    np.testing.assert_allclose(emb, want, **TOL)
    # float16 output
    out16 = tmp_path / "q16.npy"
    assert run_texts(tiny_models, src, "--out", out16, "--float16") == 0
    np.testing.assert_allclose(read_npy(out16, "<f2").astype(np.float32), want, rtol=2e-3, atol=2e-3)


def test_texts_records_its_clip_model(tmp_path, tiny_models, capfd):
    """Beside FILE.npy, FILE.json names the CLIP model (as extract.json does) and the SHA-256 of
    the .npy, for dinoclip search to compare with its index's model; a file of that name that is
    no such record (a user's own) is refused before the model loads, not replaced."""
    src = tmp_path / "q.txt"
    src.write_text("a red dog\ntwo cats\n", encoding="utf-8")
    out = tmp_path / "q.clip.npy"
    assert run_texts(tiny_models, src, "--out", out) == 0
    assert "their CLIP model recorded in" in capfd.readouterr().err
    record = json.loads((tmp_path / "q.clip.json").read_text(encoding="utf-8"))
    assert record == {"format": "dinoclip-queries/1", "clip": os.path.realpath(tiny_models["clip"]),
                      "source": os.path.realpath(src), "rows": 2, "dim": EMBED_DIM,
                      "sha256": hashlib.sha256(out.read_bytes()).hexdigest(), "texts": ["a red dog", "two cats"]}
    # rewritten with the queries
    src.write_text("a car\n", encoding="utf-8")
    assert run_texts(tiny_models, src, "--out", out) == 0
    record = json.loads((tmp_path / "q.clip.json").read_text(encoding="utf-8"))
    assert record["rows"] == 1 and record["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert record["texts"] == ["a car"]
    # its own record of many texts (over a MiB) too
    (tmp_path / "q.clip.json").write_text(json.dumps({"format": "dinoclip-queries/1", "texts": ["x" * 100] * 20000}))
    assert run_texts(tiny_models, src, "--out", out) == 0
    assert json.loads((tmp_path / "q.clip.json").read_text(encoding="utf-8"))["texts"] == ["a car"]
    capfd.readouterr()
    mine = tmp_path / "mine.json"
    mine.write_text('{"a": 1}\n', encoding="utf-8")
    assert extract.main(["texts", str(src), "--out", str(tmp_path / "mine.npy"), "--clip", str(tmp_path / "no-model"),
                         "--device", "cpu"]) == 1
    assert f"{mine} exists and is not a record of queries" in capfd.readouterr().err
    assert mine.read_text(encoding="utf-8") == '{"a": 1}\n' and not (tmp_path / "mine.npy").exists()


def test_texts_line_ends(tmp_path, tiny_models, models, capfd):
    """Row i is line i + 1 as `wc -l` counts: lines end at \\n only (a CRLF's \\r goes with it),
    and a byte order mark is not text."""
    lines = ["a dog\fa cat", "x\x1cy\x1dz\x1e", "one\u0085two\u2028three\u2029four", "car"]
    src = tmp_path / "q.txt"
    src.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8") + b"\r\n")
    assert run_texts(tiny_models, src, "--out", tmp_path / "q.npy") == 0
    emb = read_npy(tmp_path / "q.npy")
    assert emb.shape == (len(lines), EMBED_DIM)
    np.testing.assert_allclose(emb, text_embeddings(models, lines), **TOL)
    # invalid UTF-8: the file and line
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"a dog\nnaf\xefve\n")
    assert run_texts(tiny_models, bad, "--out", tmp_path / "b.npy") == 1
    assert f"{bad}:2: not valid UTF-8" in capfd.readouterr().err


def test_texts_trailing_empty_lines(tmp_path, tiny_models, models, capfd):
    """Empty (or blank) lines after the last text, as a file ending in "\\n\\n" has, number no row:
    they are ignored, with a word, where one between texts stays an error (test_texts_errors).
    A file of one text says so in the singular."""
    src = tmp_path / "q.txt"
    src.write_text("a red dog\ntwo cats\n\n \r\n\n", encoding="utf-8")
    capfd.readouterr()
    assert run_texts(tiny_models, src, "--out", tmp_path / "q.npy") == 0
    np.testing.assert_allclose(read_npy(tmp_path / "q.npy"), text_embeddings(models, ["a red dog", "two cats"]), **TOL)
    err = capfd.readouterr().err
    assert f"{src}: ignored 3 empty lines at its end" in err and "2 texts -> [2, " in err, err
    src.write_text("a red dog\n\n", encoding="utf-8")
    assert run_texts(tiny_models, src, "--out", tmp_path / "q.npy") == 0
    err = capfd.readouterr().err
    assert f"{src}: ignored 1 empty line at its end" in err and "1 text -> [1, " in err, err
    src.write_text("\n\n", encoding="utf-8")
    assert run_texts(tiny_models, src, "--out", tmp_path / "e.npy") == 1
    assert f"{src}: no lines" in capfd.readouterr().err


def test_texts_non_finite_rows_refused(tmp_path, tiny_models, monkeypatch, capfd):
    src = tmp_path / "q.txt"
    src.write_text("a red dog\ntwo cats\n", encoding="utf-8")
    out = tmp_path / "q.npy"
    scale(monkeypatch, "clip_text_embeddings", 1e6)
    assert run_texts(tiny_models, src, "--out", out, "--float16") == 1
    err = capfd.readouterr().err
    assert re.fullmatch(rf"dinoclip\.extract: {re.escape(str(out))}: \d+ values of the embeddings overflow "
                        r"float16 \(largest magnitude [0-9.e+]+\); drop --float16; not written\n", err), err
    assert not out.exists()
    assert run_texts(tiny_models, src, "--out", out) == 0  # float32 holds them


def test_texts_errors(tmp_path, tiny_models, capfd):
    blank = tmp_path / "blank.txt"
    blank.write_text("a dog\n\na cat\n", encoding="utf-8")
    assert run_texts(tiny_models, blank, "--out", tmp_path / "o.npy") == 1
    assert "blank.txt:2: empty line" in capfd.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    assert run_texts(tiny_models, empty, "--out", tmp_path / "o.npy") == 1
    assert "no lines" in capfd.readouterr().err
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    assert run_texts(tiny_models, binary, "--out", tmp_path / "o.npy") == 1
    good = tmp_path / "g.txt"
    good.write_text("a dog\n", encoding="utf-8")
    assert run_texts(tiny_models, good, "--out", tmp_path / "o.txt") == 1
    assert "want a .npy file" in capfd.readouterr().err
    assert run_texts(tiny_models, tmp_path / "missing.txt", "--out", tmp_path / "o.npy") == 1
    assert not (tmp_path / "o.npy").exists()


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="no file size limit (RLIMIT_FSIZE)")
def test_texts_disk_full_names_the_output(tmp_path, tiny_models, monkeypatch, capfd):
    """A disk that fills while the embeddings are written: the kernel writes part of the data,
    then refuses the rest. The message names the output and the system's reason, not numpy's
    "N requested and M written"; no file (nor temporary) is left. A file size limit
    (RLIMIT_FSIZE, on the write alone) stands in for the full disk: the same short write, then
    EFBIG where a full disk gives ENOSPC."""
    import resource

    from dinoclip import npyio

    src = tmp_path / "q.txt"
    src.write_text("".join(make_caption(random.Random(i)) + "\n" for i in range(200)), encoding="utf-8")
    out = tmp_path / "o" / "q.npy"
    out.parent.mkdir()
    real = npyio.write_atomic

    def limited(path, write):
        # room for the header and part of the 200 x EMBED_DIM float32 rows
        old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
        old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # (its default ends the process)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, old_limit[1]))
        try:
            real(path, write)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
            signal.signal(signal.SIGXFSZ, old_handler)

    monkeypatch.setattr(npyio, "write_atomic", limited)
    assert run_texts(tiny_models, src, "--out", out) == 1
    assert capfd.readouterr().err == f"dinoclip.extract: {out}: cannot write it: {os.strerror(errno.EFBIG)}\n"
    assert os.listdir(out.parent) == []


@pytest.mark.skipif(os.name != "posix", reason="symbolic links are POSIX's")
def test_outputs_in_a_run_a_checkpoint_or_an_index_are_refused(tmp_path, tiny_models, image_folder, wds, karpathy,
                                                               monkeypatch, capfd):
    """No subcommand writes into a training run (its top level, its checkpoints, a checkpoint, a
    directory yet to be made inside it), a search index or a search's output: the places convert
    refuses (with its message), before any model loads and without making --out."""
    run_dir = tmp_path / "run"
    ck = run_dir / "checkpoints" / "step-00000003"
    ck.mkdir(parents=True)
    (ck / "optimizer.safetensors").write_bytes(b"the run's optimizer state")
    (run_dir / "run.json").write_text("{}\n")
    index = tmp_path / "index"
    index.mkdir()
    (index / "manifest.json").write_text(json.dumps({"format": "dinoclip-index/1", "dim": 8}))
    os.symlink(run_dir, tmp_path / "link")
    hits = tmp_path / "hits"  # a search's output
    hits.mkdir()
    (hits / "search.json").write_text("{}\n")
    (hits / "ids.npy").write_bytes(b"ids")
    queries = tmp_path / "q.txt"
    queries.write_text("a dog\n")
    monkeypatch.setattr(encoders, "load_dinov2", lambda *a, **k: pytest.fail("loaded a model"))
    monkeypatch.setattr(encoders, "load_clip", lambda *a, **k: pytest.fail("loaded a model"))
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    cases = [
        (["texts", queries, "--out", run_dir / "q.npy"], "is in a training run directory (beside its run.json): "
         "write the embeddings outside the run"),
        (["texts", queries, "--out", ck / "q.npy"], "is in a training checkpoint (beside its optimizer.safetensors): "
         "write the embeddings outside the run's checkpoints"),
        (["texts", queries, "--out", index / "q.npy"], "is in a dinoclip search index (beside its manifest.json): "
         "write the embeddings outside the index"),
        (["train-folder", image_folder, "--out", run_dir / "checkpoints" / "new"],
         f"is in the checkpoints of the training run {os.path.realpath(run_dir)}: write the shards outside the run"),
        (["train-wds", wds[0], "--out", tmp_path / "link"], "is in a training run directory"),
        (["train-wds", wds[0], "--out", index], "write the shards outside the index"),
        (["texts", queries, "--out", hits / "q.npy"], "is in a dinoclip search's output (beside its search.json and "
         "ids.npy): write the embeddings outside it"),
        (["eval-coco", "--karpathy", karpathy["json"], "--images", karpathy["images"], "--out", ck],
         "write the evaluation set outside the run's checkpoints"),
        (["eval-coco", "--karpathy", karpathy["json"], "--images", karpathy["images"], "--out", hits / "sub"],
         f"is inside the dinoclip search output {hits}: write the evaluation set outside it"),
    ]
    for args, message in cases:
        rc = extract.main([*map(str, args), "--clip", tiny_models["clip"], "--device", "cpu", "--quiet"]
                          + (["--dinov2", tiny_models["dinov2"], "--workers", "0"] if args[0] != "texts" else []))
        err = capfd.readouterr().err
        out = args[args.index("--out") + 1]
        assert rc == 1 and err.startswith(f"dinoclip.extract: --out {out} ") and message in err, (args, err)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    # beside a run (a sibling directory) is no place of its
    monkeypatch.undo()
    assert run(tiny_models, "train-folder", image_folder / "b", "--out", tmp_path / "feat") == 0
    # nor is a folder of the user's own named checkpoints, best or last, as for the Go commands and convert
    mine = tmp_path / "mine"
    for d in ("checkpoints", "best", "last"):
        (mine / d).mkdir(parents=True)
    assert run(tiny_models, "train-folder", image_folder / "b", "--out", mine) == 0
    assert extract.main(["texts", str(queries), "--out", str(mine / "q.npy"), "--clip", tiny_models["clip"],
                         "--device", "cpu", "--quiet"]) == 0


def test_training_shards_and_an_evaluation_set_share_no_out(tmp_path, tiny_models, image_folder, karpathy, extracted,
                                                            monkeypatch, capfd):
    """An evaluation set is not written beside training shards, nor shards beside a set: dinoclip
    would read the directory as neither. Refused before any model loads or anything is written."""
    train = tmp_path / "train"
    shutil.copytree(extracted["train"], train)
    ev = tmp_path / "ev"
    shutil.copytree(extracted["eval"], ev)
    monkeypatch.setattr(encoders, "load_dinov2", lambda *a, **k: pytest.fail("loaded a model"))
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    capfd.readouterr()
    assert run(tiny_models, "eval-coco", "--karpathy", karpathy["json"], "--images", karpathy["images"],
               "--out", train) == 1
    assert (f"--out {train} holds training shards (extract.json), which dinoclip could not tell from the "
            "evaluation set: write the evaluation set into another directory") in capfd.readouterr().err
    os.remove(train / "extract.json")
    assert run(tiny_models, "eval-flickr", "--karpathy", karpathy["json"], "--images", karpathy["images"],
               "--out", train) == 1
    assert f"--out {train} holds training shards (shard-00000.clip.npy)" in capfd.readouterr().err
    assert run(tiny_models, "train-folder", image_folder, "--out", ev) == 1
    assert (f"--out {ev} holds an evaluation set (captions.image.npy), which dinoclip could not tell from the "
            "shards: write the shards into another directory") in capfd.readouterr().err
    # a set as dinoclip tells one: a shard may be named images (a train-wds images.tar)
    for name in ("captions.image.npy", "eval.json"):
        os.remove(ev / name)
    assert run(tiny_models, "train-folder", image_folder, "--out", ev) == 1
    assert f"--out {ev} holds an evaluation set (captions.clip.npy)" in capfd.readouterr().err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == \
        [p for p in before if not p.endswith(("extract.json", "captions.image.npy", "eval.json"))]
    os.remove(ev / "captions.clip.npy")
    monkeypatch.undo()
    assert run(tiny_models, "train-folder", image_folder / "b", "--out", ev) == 0


def test_karpathy_images_outside_images_root_or_not_files(tmp_path, karpathy, capfd):
    """The json names images relative to --images: an absolute or .. path is refused (it read a
    file elsewhere); one that exists but is no regular file is said to be so, not missing."""
    data = json.loads(Path(karpathy["json"]).read_text())
    root = Path(karpathy["images"])
    first = next(im for im in data["images"] if im["split"] == "test")
    for change, message in [
        ({"filepath": str(root / "val2014")}, f"{str(root / 'val2014')!r} is not a path under --images {root}"),
        ({"filepath": "val2014/../val2014"}, "'val2014/../val2014' is not a path under --images"),
        ({"filename": "../coco/val2014/" + first["filename"]}, "is not a path under --images"),
    ]:
        edited = json.loads(json.dumps(data))
        next(im for im in edited["images"] if im["split"] == "test").update(change)
        path = tmp_path / "k.json"
        path.write_text(json.dumps(edited))
        with pytest.raises(extract.ExtractError, match=re.escape(message)):
            extract.read_karpathy(str(path), str(root), "test")
    images = tmp_path / "images"
    shutil.copytree(root, images)
    target = images / "val2014" / first["filename"]
    os.remove(target)
    target.mkdir()
    with pytest.raises(extract.ExtractError, match=re.escape(f"1 of 4 images is no regular file (a directory, a "
                                                             f"named pipe, a device), e.g. {target}")):
        extract.read_karpathy(karpathy["json"], str(images), "test")
    # A split file of no images says so, not "(splits: )".
    empty = tmp_path / "empty.json"
    empty.write_text('{"images": []}')
    with pytest.raises(extract.ExtractError, match=re.escape("no images in split 'test' (its images list is empty)")):
        extract.read_karpathy(str(empty), str(images), "test")


@pytest.mark.skipif(os.name != "posix", reason="symbolic links are POSIX's")
def test_texts_refuses_to_replace_its_input(tmp_path, capfd):
    """Before any model loads: the input file as --out (or a link to it) would lose the texts."""
    src = tmp_path / "qq.npy"
    src.write_text("a dog\n", encoding="utf-8")
    os.symlink(src, tmp_path / "link.npy")
    for out in (src, tmp_path / "link.npy"):
        assert extract.main(["texts", str(src), "--out", str(out), "--clip", str(tmp_path / "no-model"),
                             "--device", "cpu"]) == 1
        assert capfd.readouterr().err == (f"dinoclip.extract: --out {out} is the input file {src}: write the "
                                          "embeddings to another file\n")
    assert src.read_text(encoding="utf-8") == "a dog\n"


def test_model_id_expands_home(tmp_path, monkeypatch):
    """A folder named with ~ (quoted, or from a config) is recorded by its real path, as the
    same folder named otherwise is: a rerun does not take it for other settings."""
    (tmp_path / "models" / "clip").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path))
    real = os.path.realpath(tmp_path / "models" / "clip")
    assert encoders.model_id("~/models/clip") == encoders.model_id(str(tmp_path / "models" / "clip")) == real
    assert encoders.model_id("openai/clip-vit-base-patch16") == "openai/clip-vit-base-patch16"


def test_train_refuses_shards_no_record_describes(tmp_path, tiny_models, wds, image_folder, capfd):
    """Shards in --out without an extract.json recording how they were made (another program's, or
    copied in) are refused, not reported as done; so is an extract.json that names no command ({}
    matched any settings)."""
    root, _ = wds
    for command, src, shard in (("train-folder", image_folder / "b", "shard-00000"), ("train-wds", root / "00000.tar", "00000")):
        out = tmp_path / command
        out.mkdir()
        for suffix in (".dino.npy", ".clip.npy"):
            np.save(out / (shard + suffix), np.zeros((2, 4), np.float32))
        assert run(tiny_models, command, src, "--out", out) == 1
        err = capfd.readouterr().err
        assert f"{out} holds shards ({shard}) but no extract.json recording how they were made" in err, err
        (out / extract.MANIFEST).write_text("{}")
        assert run(tiny_models, command, src, "--out", out) == 1
        assert "is unreadable (it names no command)" in capfd.readouterr().err


def test_caption_with_a_lone_surrogate_is_refused(tmp_path, tiny_models, image_folder, capfd):
    """A caption holding a lone surrogate (a "\\ud800" escape in a JSON line) is refused in one line
    naming it, not with the tokenizer's traceback, and the run leaves nothing behind."""
    caps = tmp_path / "c.jsonl"
    lines = [json.dumps({"image": p, "caption": "x"}) for p in folder_images(image_folder)]
    lines[1] = json.dumps({"image": folder_images(image_folder)[1], "caption": "a \ud800 b"})
    caps.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o"
    assert run(tiny_models, "train-folder", image_folder, "--captions", caps, "--target", "text", "--out", out) == 1
    err = capfd.readouterr().err
    assert "caption 'a \\ud800 b' is not Unicode text" in err and "Traceback" not in err, err
    assert not out.exists()


def test_absurd_sizes(tmp_path, tiny_models, image_folder, capfd, monkeypatch):
    """A --batch-size beyond any device is refused before a model loads (one past an index's range
    failed in the DataLoader with a traceback); a --shard-size beyond a float's range makes one
    shard (the count was divided in floats: 0 shards, and no row said to be readable)."""
    monkeypatch.setattr(encoders, "load_dinov2", lambda *a, **k: pytest.fail("loaded a model"))
    huge = str(10 ** 30)
    assert extract.main(["train-folder", str(image_folder), "--out", str(tmp_path / "o"), "--dinov2",
                         tiny_models["dinov2"], "--clip", tiny_models["clip"], "--device", "cpu",
                         "--batch-size", huge]) == 2
    assert f"--batch-size {huge}: more than {extract.MAX_BATCH}" in capfd.readouterr().err
    monkeypatch.undo()
    out = tmp_path / "one"
    assert run(tiny_models, "train-folder", image_folder, "--out", out, "--shard-size", str(10 ** 330)) == 0
    assert "12 images -> 1 shard of up to" in capfd.readouterr().err
    assert sorted(n for n in os.listdir(out) if n.endswith(".npy")) == ["shard-00000.clip.npy", "shard-00000.dino.npy"]


@pytest.mark.parametrize("cpus", [None, 1])
def test_absurd_worker_count_is_refused(tmp_path, tiny_models, image_folder, capfd, monkeypatch, cpus):
    """--workers beyond 4 per CPU is refused before any process is forked (100000 of them ran the
    machine out of memory). The CPUs are those the process may use: with its affinity set to one
    (taskset, a container's cpuset), 4 workers, however many the machine has."""
    if cpus is not None:
        if not hasattr(os, "sched_getaffinity"):
            pytest.skip("no CPU affinity on this system")
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)))
    most = 4 * (cpus or extract.usable_cpus())
    args = ["train-folder", str(image_folder), "--out", str(tmp_path / "o"), "--dinov2", tiny_models["dinov2"],
            "--clip", tiny_models["clip"], "--quiet", "--workers"]
    assert extract.main([*args, str(most + 1), "--device", "cpu"]) == 2
    assert f"--workers {most + 1}: more than {most} (4 per CPU here)" in capfd.readouterr().err
    assert not (tmp_path / "o").exists()
    # 4 per CPU pass (refused next, for the device, which is checked after them: no worker forked)
    assert extract.main([*args, str(most), "--device", "no-such-device"]) == 2
    err = capfd.readouterr().err
    assert "--device no-such-device" in err and "--workers" not in err, err


@pytest.mark.parametrize("command", ["train-folder", "train-wds"])
def test_shards_are_recorded_after_another_run_removed_the_record(tmp_path, tiny_models, image_folder, wds,
                                                                  monkeypatch, capfd, command):
    """A run that found its settings recorded by another run sharing the --out (and so recorded
    nothing) records them again after each shard it writes: the other run, failing before its first
    shard, removes its record (_drop_first_record), which left this run's shards described by none
    (exit 0, and every rerun refused). (Where there are flocks the removal waits for the write:
    test_a_shard_written_is_never_left_described_by_none; here it comes within the write, as it can
    on a filesystem without them.)"""
    out = tmp_path / "o"
    inputs = [image_folder, "--shard-size", "5"] if command == "train-folder" else [wds[0]]
    write = extract._write_shard

    def after_the_other_run_failed(d, name, *args, **kwargs):
        if not any(n.endswith(".npy") for n in os.listdir(d)):  # (before the first shard)
            os.remove(os.path.join(d, extract.MANIFEST))  # (what the other run's removal does)
        write(d, name, *args, **kwargs)

    monkeypatch.setattr(extract, "_write_shard", after_the_other_run_failed)
    assert run(tiny_models, command, *inputs, "--out", out) == 0
    monkeypatch.undo()
    assert (out / extract.MANIFEST).exists()
    capfd.readouterr()
    assert run(tiny_models, command, *inputs, "--out", out) == 0
    assert "already done)" in capfd.readouterr().err


class Killed(BaseException):
    """A kill -9 in a test: no record is made after it, and only the process's locks go."""


@pytest.mark.parametrize("command", ["train-folder", "train-wds"])
def test_a_shard_written_is_never_left_described_by_none(tmp_path, tiny_models, image_folder, wds, monkeypatch,
                                                         command):
    """Another run sharing the --out that failed removes its record where no shard is there
    (_drop_first_record), under the directory's lock. A shard's write takes that lock from before
    its record is made again to after it is made once more, so the removal waits for the shard
    and keeps the record: a kill just after the shard's rename left it with no extract.json
    describing it, and every rerun refused."""
    out = tmp_path / "o"
    inputs = [image_folder, "--shard-size", "5"] if command == "train-folder" else [wds[0]]
    write = extract._write_shard
    removal = {}

    def the_other_run_fails():  # (its _drop_first_record, its record being the one there)
        with extract._locked(str(out)):
            if not extract._holds_shard_files(str(out)):
                os.remove(out / extract.MANIFEST)
                removal["removed"] = True

    def write_then_killed(*args, **kwargs):
        other = threading.Thread(target=the_other_run_fails)
        other.start()
        other.join(0.5)  # (it waits, where the lock is held)
        removal["waited"] = other.is_alive()
        write(*args, **kwargs)
        removal["thread"] = other
        raise Killed

    monkeypatch.setattr(extract, "_write_shard", write_then_killed)
    with pytest.raises(Killed):
        run(tiny_models, command, *inputs, "--out", out)
    removal["thread"].join()
    monkeypatch.undo()
    assert removal == {"waited": True, "thread": removal["thread"]}
    assert (out / extract.MANIFEST).exists()
    assert run(tiny_models, command, *inputs, "--out", out) == 0


def test_a_shard_write_keeps_its_lock_when_out_moves(tmp_path, tiny_models, image_folder, monkeypatch):
    """The lock of --out is told by the directory, not its path: a folder above a relative --out
    renamed while a shard is written (the path now resolving elsewhere) had the run wait on its own
    lock, taken again to record the settings, for good."""
    (tmp_path / "before").mkdir()
    monkeypatch.chdir(tmp_path / "before")
    write = extract._write_shard

    def renamed_then_written(*args, **kwargs):
        if (tmp_path / "before").exists():
            os.rename(tmp_path / "before", tmp_path / "after")
        write(*args, **kwargs)

    monkeypatch.setattr(extract, "_write_shard", renamed_then_written)
    rc = []
    extraction = threading.Thread(target=lambda: rc.append(run(tiny_models, "train-folder", image_folder, "--out", "o",
                                                               "--shard-size", "5")), daemon=True)
    extraction.start()
    extraction.join(120)
    assert not extraction.is_alive(), "the run waits on the lock of its own --out"
    assert rc == [0]
    assert sorted(n for n in os.listdir(tmp_path / "after" / "o") if n.endswith(".dino.npy")) == \
        [f"shard-0000{i}.dino.npy" for i in range(3)]


@pytest.mark.parametrize("change", ["removed", "replaced"])
def test_the_lock_of_out_is_of_the_directory_there_once_it_is_had(tmp_path, change):
    """--out removed (a run that failed, once it was empty) or replaced while its lock was awaited:
    the lock is taken of the directory the path names once the wait is over, made again where it
    is gone and wanted (the lock of the one removed guards nothing); not wanted, its going is an
    error (a failing run's removal of its record finds nothing to remove)."""
    import fcntl

    for make in (True, False):
        out = tmp_path / f"{change}-{make}"
        out.mkdir()
        held, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # (another process: holds the lock while the path changes, then ends)
            try:
                fcntl.flock(os.open(out, os.O_RDONLY), fcntl.LOCK_EX)
                os.write(w, b"x")
                time.sleep(0.5)  # (the test waits on the lock meanwhile)
                os.rename(out, tmp_path / "gone") if change == "replaced" else os.rmdir(out)
                if change == "replaced":
                    out.mkdir()
            finally:
                os._exit(0)
        os.read(held, 1)
        try:
            if not make and change == "removed":
                with pytest.raises(FileNotFoundError):
                    with extract._locked(str(out)):
                        pass
                continue
            with extract._locked(str(out), make=make):
                probe = os.open(out, os.O_RDONLY)  # (another open file of the directory there now)
                with pytest.raises(BlockingIOError):
                    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.close(probe)
        finally:
            os.waitpid(pid, 0)
            shutil.rmtree(tmp_path / "gone", ignore_errors=True)


def test_settings_recorded_meanwhile_stop_a_shard_before_it_is_written(tmp_path, tiny_models, image_folder,
                                                                       monkeypatch, capfd):
    """Another run's settings recorded while a shard was encoded (the run that recorded these failed,
    removed its record, and was run again mended) stop the shard before it is written among theirs,
    where a rerun of theirs would take it as done; recorded in the moment between that check and the
    write (on a filesystem without flocks: the write holds the directory's lock), they have the shard
    removed once it is written."""
    out = tmp_path / "o"

    def theirs():
        record = json.loads((out / extract.MANIFEST).read_text())
        (out / "theirs").write_text(json.dumps({**record, "precision": "bf16"}))
        os.replace(out / "theirs", out / extract.MANIFEST)  # (as the other run writes it: another file)

    images, write = extract.Extractor.images, extract._write_shard
    for moment in ("encoding", "writing"):
        if moment == "encoding":
            monkeypatch.setattr(extract.Extractor, "images", lambda self, *a, **k: (images(self, *a, **k), theirs())[0])
        else:
            monkeypatch.setattr(extract, "_write_shard", lambda *a, **k: (theirs(), write(*a, **k)))
        assert run(tiny_models, "train-folder", image_folder, "--out", out, "--shard-size", "5") == 1, moment
        assert "precision was 'bf16', now 'fp32'" in capfd.readouterr().err, moment
        assert not [n for n in os.listdir(out) if n.startswith("shard-")], moment
        assert json.loads((out / extract.MANIFEST).read_text())["precision"] == "bf16", moment  # (theirs, kept)
        monkeypatch.undo()
        shutil.rmtree(out)


def test_run_whose_images_all_fail_exits_1(tmp_path, tiny_models, capfd):
    """A run whose shards hold no row at all (every image failed to decode) says so and exits 1, and so
    does the same command again: its shards are written, empty, and done, but no script must take
    it for an extraction that worked."""
    folder = tmp_path / "bad"
    folder.mkdir()
    for n in ("a.jpg", "b.png"):
        (folder / n).write_bytes(b"\xff\xd8 not an image")
    out = tmp_path / "o"
    assert run(tiny_models, "train-folder", folder, "--out", out) == 1
    err = capfd.readouterr().err
    assert f"no image of {folder} could be read: the shards are empty" in err, err
    assert sorted(n for n in os.listdir(out) if n.endswith(".npy")) == ["shard-00000.clip.npy", "shard-00000.dino.npy"]
    # run again: its shards are done, and still empty
    assert run(tiny_models, "train-folder", folder, "--out", out) == 1
    assert f"no image of {folder} could be read: the shards are empty" in capfd.readouterr().err


def test_failed_run_keeps_a_record_another_run_shares(tmp_path):
    """The extract.json a failed run recorded first is removed only while it is still the file that
    run wrote and no shard is there, whole or being written: another run sharing the --out that
    recorded the same settings since (a new file, the same text), or is writing a shard, keeps it."""
    out = str(tmp_path / "o")
    settings = {"command": "train-folder", "target": "image"}
    for other_run in ("records again", "writes a shard"):
        extract._check_manifest(out, settings, write=True)
        path = os.path.join(out, extract.MANIFEST)
        if other_run == "records again":
            text = open(path).read()
            extract.write_atomic(path, lambda f: f.write(text.encode("utf-8")))
        else:
            open(os.path.join(out, ".shard-00000.dino.npy.tmp-7"), "w").close()
        extract._drop_first_record(out)
        assert os.path.exists(path), other_run
        os.remove(path)
    extract._check_manifest(out, settings, write=True)
    os.remove(os.path.join(out, ".shard-00000.dino.npy.tmp-7"))
    extract._drop_first_record(out)
    assert not os.path.exists(os.path.join(out, extract.MANIFEST))
    # an --out removed meanwhile (its lock with it) leaves nothing to remove, and raises nothing
    extract._check_manifest(out, settings, write=True)
    shutil.rmtree(out)
    extract._drop_first_record(out)
