"""What the converter refuses to write over, and which state_dict it refuses to guess."""

import json
import os

import pytest
import torch

from dinoclip import checkpoint, convert
from dinoclip.convert import ConversionError
from dinoclip.model import ProjectorWithResiduals


def _model(seed):
    torch.manual_seed(seed)
    return ProjectorWithResiduals(input_dim=12, hidden_dim=16, num_residual_blocks=2, output_dim=8)


def _run(tmp_path):
    """A training run's layout (docs/FORMAT.md), as the converter recognises it."""
    run = tmp_path / "run"
    ck = run / "checkpoints" / "step-00000003"
    ck.mkdir(parents=True)
    checkpoint.save(_model(0), ck / "model.safetensors")
    (ck / "optimizer.safetensors").write_bytes(b"the run's optimizer state")
    (run / "run.json").write_text("{}\n")
    os.symlink(os.path.join("checkpoints", "step-00000003"), run / "last")
    return run


@pytest.mark.parametrize("target", ["run.json", "last/optimizer.safetensors", "last/model.safetensors", "lock"])
def test_to_torch_refuses_a_runs_files(tmp_path, target, capsys):
    run = _run(tmp_path)
    dst = run / target
    before = dst.read_bytes() if dst.exists() else None
    assert convert.main(["to-torch", str(run), str(dst)]) == 1
    err = capsys.readouterr().err
    assert "training run" in err or "training checkpoint" in err
    assert (dst.read_bytes() if dst.exists() else None) == before


def test_to_torch_refuses_an_index_and_a_link_into_a_run(tmp_path, capsys):
    src = checkpoint.save(_model(0), tmp_path / "m.safetensors")
    index = tmp_path / "index"
    index.mkdir()
    manifest = json.dumps({"format": "dinoclip-index/1", "dim": 8}).encode()
    (index / "manifest.json").write_bytes(manifest)
    assert convert.main(["to-torch", src, str(index / "manifest.json")]) == 1
    assert "search index" in capsys.readouterr().err
    assert (index / "manifest.json").read_bytes() == manifest
    assert convert.main(["to-torch", src, str(index / "keys-00000.npy")]) == 1
    assert not (index / "keys-00000.npy").exists()

    run = _run(tmp_path)
    os.symlink(run / "run.json", tmp_path / "out.pt")
    assert convert.main(["to-torch", src, str(tmp_path / "out.pt")]) == 1
    assert (run / "run.json").read_text() == "{}\n"
    # A folder with a manifest.json of its own is no index.
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text('{"format": "something else"}')
    assert convert.main(["to-torch", src, str(other / "m.pt")]) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the index writer's lock is a POSIX flock")
def test_to_torch_refuses_an_index_being_appended_to(tmp_path, capsys):
    """An index whose first append is under way has no manifest yet: its held .lock marks it, as
    the Go side judges; a .lock nobody holds is no mark."""
    import fcntl

    src = checkpoint.save(_model(0), tmp_path / "m.safetensors")
    index = tmp_path / "index"
    index.mkdir()
    (index / ".lock").write_bytes(b"")
    with open(index / ".lock", "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert convert.main(["to-torch", src, str(index / "keys-00000.npy")]) == 1
        assert "search index" in capsys.readouterr().err
        assert not (index / "keys-00000.npy").exists()
    assert convert.main(["to-torch", src, str(index / "m.pt")]) == 0


@pytest.mark.parametrize("shard", ["keys-00000.npy", ".ids-00003.npy.tmp-42", "images-00001.txt"])
def test_outputs_refused_in_an_index_killed_before_its_manifest(tmp_path, capsys, shard):
    """An index whose first append was killed before its manifest: its lock file (held by none) and
    its shard files or their temporaries. A file written there would have the rerun that finishes
    it refuse the directory, as the Go side refuses it (retrieval.IsUnfinishedIndex). A lock file
    alone, or beside files of other names, is no index."""
    src = checkpoint.save(_model(0), tmp_path / "m.safetensors")
    index = tmp_path / "index"
    index.mkdir()
    (index / ".lock").write_bytes(b"")
    (index / "notes.txt").write_text("mine")
    assert convert.main(["to-torch", src, str(index / "m.pt")]) == 0
    os.remove(index / "m.pt")
    (index / shard).write_bytes(b"")
    assert convert.main(["to-torch", src, str(index / "m.pt")]) == 1
    assert "whose first append was stopped before its manifest.json" in capsys.readouterr().err
    assert not (index / "m.pt").exists()
    # nor below it, in a directory made there (a name the index's rerun refuses too)
    assert convert.main(["to-torch", src, str(index / "sub" / "m.pt")]) == 1
    assert f"is inside the dinoclip search index {index}" in capsys.readouterr().err
    assert not (index / "sub").exists()


def test_two_different_state_dicts_are_not_guessed(tmp_path):
    a, b = _model(0).state_dict(), _model(1).state_dict()
    torch.save({"state_dict": a, "model_state_dict": b}, tmp_path / "two.pt")
    with pytest.raises(ConversionError, match="holds both 'state_dict' and 'model_state_dict', and they differ"):
        convert.read_torch_state_dict(str(tmp_path / "two.pt"))
    torch.save({"state_dict": a, "model_state_dict": {k: v.clone() for k, v in a.items()}}, tmp_path / "same.pt")
    assert list(convert.read_torch_state_dict(str(tmp_path / "same.pt"))) == list(a)


def test_to_dinoclip_names_a_file_output(tmp_path, capsys):
    torch.save(_model(0).state_dict(), tmp_path / "m.pt")
    (tmp_path / "out").write_text("a user's file")
    assert convert.main(["to-dinoclip", str(tmp_path / "m.pt"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "is a file: name a .safetensors file" in err and "File exists" not in err
    assert (tmp_path / "out").read_text() == "a user's file"


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/null"), reason="POSIX's")
def test_to_dinoclip_names_what_its_output_is(tmp_path, capsys):
    """A device or a named pipe at OUT is named as such (each was "a file")."""
    torch.save(_model(0).state_dict(), tmp_path / "m.pt")
    os.mkfifo(tmp_path / "fifo")
    for out, kind in (("/dev/null", "a device"), (str(tmp_path / "fifo"), "a named pipe")):
        assert convert.main(["to-dinoclip", str(tmp_path / "m.pt"), out]) == 1
        assert capsys.readouterr().err == (f"dinoclip.convert: {out} is {kind}: name a .safetensors file to write, "
                                           "or a checkpoint directory to write model.safetensors in\n")


def test_to_torch_refuses_an_empty_output(tmp_path, capsys, monkeypatch):
    """An empty OUT is refused as to-dinoclip refuses it, not resolved to the working directory
    ("/cwd/ is a directory")."""
    src = checkpoint.save(_model(0), tmp_path / "m.safetensors")
    monkeypatch.chdir(tmp_path)
    assert convert.main(["to-torch", src, ""]) == 1
    assert capsys.readouterr().err == "dinoclip.convert: OUT is empty: name the .pt file to write\n"


def test_trailing_data_is_not_called_truncated(tmp_path, capsys):
    """A model file longer than its header describes says so, in the Go reader's words, where it
    said "truncated, or not a safetensors file"."""
    src = checkpoint.save(_model(0), tmp_path / "m.safetensors")
    size = os.path.getsize(src)
    with open(src, "ab") as f:
        f.write(b"\0" * 7)
    assert convert.main(["to-torch", src, str(tmp_path / "o.pt")]) == 1
    assert capsys.readouterr().err == (f"dinoclip.convert: {src}: the file is {size + 7} bytes, 7 bytes more than its "
                                       "safetensors header describes (trailing data)\n")
    assert not (tmp_path / "o.pt").exists()


@pytest.mark.skipif(os.name != "posix", reason="symbolic links are POSIX's")
def test_the_destination_guarded_is_the_one_written(tmp_path, capsys):
    """The guard judges the file the system writes: LINK/../model.safetensors is beside where
    LINK leads (here a run's top level, refused), and a link at OUT is written through, the
    file it leads to judged and replaced, the link kept."""
    run = _run(tmp_path)
    torch.save(_model(1).state_dict(), tmp_path / "m.pt")
    os.symlink(run / "checkpoints", tmp_path / "L")
    out = os.path.join(str(tmp_path / "L"), "..", "model.safetensors")
    assert convert.main(["to-dinoclip", str(tmp_path / "m.pt"), out]) == 1
    assert f"{run / 'model.safetensors'} is in a training run directory" in capsys.readouterr().err
    assert not (run / "model.safetensors").exists()

    src = checkpoint.save(_model(0), tmp_path / "m.safetensors")
    os.symlink(tmp_path / "elsewhere.pt", run / "x.pt")
    assert convert.main(["to-torch", src, str(run / "x.pt")]) == 0
    assert os.readlink(run / "x.pt") == str(tmp_path / "elsewhere.pt")
    assert list(torch.load(tmp_path / "elsewhere.pt", weights_only=True)) == list(_model(0).state_dict())


def test_an_output_that_is_the_input_is_refused(tmp_path, capsys):
    src = checkpoint.save(_model(0), tmp_path / "in.safetensors")
    before = open(src, "rb").read()
    assert convert.main(["to-torch", src, src]) == 1
    assert capsys.readouterr().err == (f"dinoclip.convert: {src} is the input {src}: write the converted model "
                                       "to another file\n")
    torch.save(_model(0).state_dict(), tmp_path / "pt.safetensors")  # a .pt misnamed
    pt = str(tmp_path / "pt.safetensors")
    pt_before = open(pt, "rb").read()
    assert convert.main(["to-dinoclip", pt, pt]) == 1
    assert "is the input" in capsys.readouterr().err
    assert open(src, "rb").read() == before and open(pt, "rb").read() == pt_before


@pytest.mark.skipif(os.name != "posix", reason="symbolic links are POSIX's")
def test_a_dangling_checkpoint_directory_is_named(tmp_path, capsys):
    torch.save(_model(0).state_dict(), tmp_path / "m.pt")
    os.symlink(tmp_path / "nowhere", tmp_path / "ckdir")
    assert convert.main(["to-dinoclip", str(tmp_path / "m.pt"), str(tmp_path / "ckdir") + os.sep]) == 1
    assert capsys.readouterr().err == (f"dinoclip.convert: {tmp_path / 'ckdir' / 'model.safetensors'}: cannot write "
                                       f"it: {tmp_path / 'ckdir'} is a symbolic link to {tmp_path / 'nowhere'}, "
                                       "which does not exist\n")


@pytest.mark.skipif(os.name != "posix", reason="resource limits are POSIX's")
def test_to_torch_out_of_space_is_one_line(tmp_path):
    """A write that fails for want of space (here a file size limit: EFBIG, as ENOSPC) is one
    line naming the file, not torch's own RuntimeError ("unexpected pos") over a traceback, and
    leaves no temporary."""
    import subprocess
    import sys

    src = checkpoint.save(ProjectorWithResiduals(input_dim=64, hidden_dim=128, num_residual_blocks=1, output_dim=32), tmp_path / "m.safetensors")
    (tmp_path / "out").mkdir()
    dst = tmp_path / "out" / "m.pt"
    code = ("import resource, signal, sys\n"
            "from dinoclip import convert\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (50000, 50000))\n"
            "sys.exit(convert.main(sys.argv[1:]))\n")
    r = subprocess.run([sys.executable, "-c", code, "to-torch", src, str(dst)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=120)
    assert (r.returncode, r.stderr) == (1, f"dinoclip.convert: {dst}: cannot write it: File too large\n")
    assert os.listdir(tmp_path / "out") == []


def test_an_interrupted_torch_save_is_the_interrupt(tmp_path):
    """torch.save's zip writer turns what stops a write into a RuntimeError of its own; the
    converter raises the interrupt (so that the command line ends as interrupted)."""
    class Interrupted:
        written = 0

        def write(self, b):
            if self.written > 1000:  # (the first writes go through: the zip writer is under way)
                raise KeyboardInterrupt
            self.written += len(b)
            return len(b)

        def flush(self):
            pass

    with pytest.raises(KeyboardInterrupt):
        convert._torch_save(_model(0).state_dict(), Interrupted())


def _outputs(tmp_path):
    """Files an output may be given by a slip, or be the place of an earlier output, by name."""
    import numpy as np
    import struct
    from safetensors.torch import save_file

    d = tmp_path / "outs"
    d.mkdir()
    model = checkpoint.save(_model(1), d / "model.safetensors")
    whole = open(model, "rb").read()
    save_file({"m": torch.zeros(4)}, str(d / "optimizer.safetensors"), metadata={"format": "dinoclip-optimizer/1"})
    state = (d / "optimizer.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", state[:8])
    np.save(d / "feats.npy", np.zeros((2, 3), np.float32))
    torch.save(_model(2).state_dict(), d / "zip.pt")
    torch.save(_model(2).state_dict(), d / "legacy.pt", _use_new_zipfile_serialization=False)
    # (protocols 4 and 5 frame the magic number: a file torch.save wrote all the same)
    torch.save(_model(2).state_dict(), d / "legacy4.pt", _use_new_zipfile_serialization=False, pickle_protocol=4)
    zipped = (d / "zip.pt").read_bytes()
    files = {
        "model": whole,
        "model_cut_in_data": whole[:-100],                # an earlier output a kill cut short
        "model_cut_in_header": whole[:60],
        "state": state,
        "state_cut_in_data": state[:-4],                  # still a state: its header is whole
        "state_cut_in_format": state[:state.index(b"dinoclip-opt") + 8],
        "npy": (d / "feats.npy").read_bytes(),
        "notes": b"my notes\n",
        "zip_pt": zipped,
        "zip_pt_cut": zipped[:len(zipped) // 2],
        "zip_pt_cut_in_header": zipped[:20],               # (nothing there tells: an earlier output's)
        "legacy_pt": (d / "legacy.pt").read_bytes(),
        "legacy4_pt": (d / "legacy4.pt").read_bytes(),
        "empty": b"",
    }
    assert 8 + n > len(files["state_cut_in_format"])
    return files


KINDS = {
    "state": "a training checkpoint's optimizer or float64 state (safetensors)",
    "state_cut_in_data": "a training checkpoint's optimizer or float64 state (safetensors)",
    "state_cut_in_format": ("a safetensors file cut short in its header, where its format begins as a training "
                            "checkpoint's optimizer or float64 state's"),
    "npy": "a .npy array",
}


@pytest.mark.parametrize("kind", ["model", "model_cut_in_data", "model_cut_in_header", "state", "state_cut_in_data",
                                  "state_cut_in_format", "npy", "notes", "zip_pt", "legacy_pt", "empty"])
def test_to_dinoclip_replaces_only_a_model_or_an_empty_file(tmp_path, capsys, kind):
    """to-dinoclip's OUT replaces an empty file and a safetensors model (an earlier output, even one
    cut short), and keeps any other file, as the Go side's average --out does: a checkpoint's
    optimizer state, a .npy of features or a PyTorch file, named by a slip, was lost."""
    torch.save(_model(0).state_dict(), tmp_path / "m.pt")
    out = tmp_path / "out.safetensors"
    out.write_bytes(_outputs(tmp_path)[kind])
    before = out.read_bytes()
    code = convert.main(["to-dinoclip", str(tmp_path / "m.pt"), str(out)])
    if kind.startswith("model") or kind == "empty":
        assert code == 0 and checkpoint.load(out).config == _model(0).config
        return
    what = KINDS.get(kind, "a file that is not a safetensors model")
    assert code == 1 and capsys.readouterr().err == (
        f"dinoclip.convert: {out} exists and is {what}, which the converted model would replace: remove it first if "
        "it may go, or write the converted model elsewhere\n")
    assert out.read_bytes() == before


@pytest.mark.parametrize("kind", ["zip_pt", "zip_pt_cut", "zip_pt_cut_in_header", "legacy_pt", "legacy4_pt", "empty", "model",
                                  "state", "npy", "notes"])
def test_to_torch_replaces_only_a_torch_file_or_an_empty_file(tmp_path, capsys, kind):
    """to-torch's OUT replaces an empty file and a torch.save file (an earlier output), and keeps any
    other: a features .npy given as OUT by a slip was lost."""
    src = checkpoint.save(_model(0), tmp_path / "m.safetensors")
    out = tmp_path / "out.pt"
    out.write_bytes(_outputs(tmp_path)[kind])
    before = out.read_bytes()
    code = convert.main(["to-torch", src, str(out)])
    if kind.endswith("pt") or "_cut" in kind or kind == "empty":
        assert code == 0 and list(torch.load(out, weights_only=True)) == list(_model(0).state_dict())
        return
    what = {"model": "a safetensors model"}.get(kind) or KINDS.get(kind, "a file that torch.save did not write")
    assert code == 1 and capsys.readouterr().err == (
        f"dinoclip.convert: {out} exists and is {what}, which the converted model would replace: remove it first if "
        "it may go, or write the converted model elsewhere\n")
    assert out.read_bytes() == before
