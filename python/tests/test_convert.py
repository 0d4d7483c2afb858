"""The original .pt state_dict <-> dinoclip checkpoint."""

import os
import re
import struct
import subprocess
import sys

import pytest
import torch

from dinoclip import checkpoint, convert
from dinoclip.convert import ConversionError
from dinoclip.model import ProjectorWithResiduals


def original(seed=0, cfg=(12, 16, 2, 8)):
    torch.manual_seed(seed)
    i, h, b, o = cfg
    return ProjectorWithResiduals(input_dim=i, hidden_dim=h, num_residual_blocks=b, output_dim=o)


def test_round_trip_through_the_cli(tmp_path):
    m = original()
    torch.save(m.state_dict(), tmp_path / "orig.pt")
    assert convert.main(["to-dinoclip", str(tmp_path / "orig.pt"), str(tmp_path / "m.safetensors")]) == 0
    # the same bytes as saving the model directly
    direct = checkpoint.save(m, tmp_path / "direct.safetensors")
    assert (tmp_path / "m.safetensors").read_bytes() == open(direct, "rb").read()
    assert convert.main(["to-torch", str(tmp_path / "m.safetensors"), str(tmp_path / "back.pt")]) == 0
    sd = torch.load(tmp_path / "back.pt", weights_only=True)
    assert list(sd) == list(m.state_dict())
    for k, v in m.state_dict().items():
        assert torch.equal(sd[k], v) and sd[k].dtype == torch.float32
    fresh = ProjectorWithResiduals(input_dim=12, hidden_dim=16, num_residual_blocks=2, output_dim=8)
    fresh.load_state_dict(sd, strict=True)  # loads into the original class


def test_default_size_round_trip(tmp_path):
    m = ProjectorWithResiduals()
    torch.save(m.state_dict(), tmp_path / "dinov2_alignment_model_epoch_16.pt")
    out = convert.torch_to_dinoclip(str(tmp_path / "dinov2_alignment_model_epoch_16.pt"), str(tmp_path / "ckpt"))
    assert out == str(tmp_path / "ckpt" / "model.safetensors")
    back = checkpoint.load(tmp_path / "ckpt")
    assert back.config == m.config
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), back.state_dict().values()))


@pytest.mark.parametrize("wrap", ["state_dict", "model_state_dict", "module", "_orig_mod.module.",
                                  "module._orig_mod.", "module.module._orig_mod."])
def test_wrapped_state_dicts(tmp_path, wrap):
    m = original(1)
    sd = m.state_dict()
    if wrap == "module":
        obj = {"module." + k: v for k, v in sd.items()}
    elif wrap.endswith("."):  # wrappers nested (torch.compile of a DDP model: _orig_mod.module.)
        obj = {wrap + k: v for k, v in sd.items()}
    else:
        obj = {wrap: sd, "epoch": 16, "optimizer": {"lr": 0.001}}
    torch.save(obj, tmp_path / "w.pt")
    convert.torch_to_dinoclip(str(tmp_path / "w.pt"), str(tmp_path / "w.safetensors"))
    back = checkpoint.load(tmp_path / "w.safetensors")
    assert torch.equal(back.output_proj[2].weight, m.output_proj[2].weight)


@pytest.mark.parametrize("case,pattern", [
    ("missing", r"missing residual_blocks\.0\.layers\.3\.weight"),
    ("unexpected", r"unexpected residual_blocks\.0\.layers\.2\.weight"),
    ("shape", r"hidden_norm\.weight has shape \[15\], want \[16\]"),
    ("head", r"output_proj\.0\.weight has shape \[6, 16\], want \[8, 16\]"),
    ("no_input", r"no input_proj\.weight and output_proj\.2\.weight"),
    # present, but of another rank: said so, not said to be missing
    ("not_matrix", r"no model config, and input_proj\.weight has shape \[1, 16, 12\], not a matrix: the shape cannot "
                   r"be inferred from it"),
    # an empty state_dict, plain or under a wrapper key: said to be empty ("its keys are none", "1 are not tensors")
    ("empty", r"bad\.pt: the state_dict is empty \(no tensors\), no model to convert"),
    ("empty_wrapped", r"bad\.pt: the state_dict under 'state_dict' is empty \(no tensors\), no model to convert"),
    ("not_dict", r"holds a list, want a state_dict"),
    ("not_tensors", r"not a state_dict.*'epoch'"),
    ("nan", r"layer_norm\.bias\[0\] is NaN: the model's weights must be finite numbers"),
    # finite as float64, +Inf as float32: checked after the cast, naming where (flat, as Go does)
    # and that the value is finite but beyond float32's range, not infinite
    ("float32_overflow", r"output_proj\.0\.weight\[35\] is 1e\+39, a float64 beyond float32's range "
                         r"\(\+Inf in float32\): the model's weights must be finite float32 numbers$"),
    # a few stored values declaring a huge shape: refused before any model is built (one of
    # 10^8 x 10^8 could not even be allocated)
    ("expanded", r"input_proj\.weight has shape \[100000000, 100000000\] but stores only 1 elements"),
    ("expanded_fits", r"input_proj\.weight has shape \[16, 12\] but stores only 12 elements"),
    # what torch.load(weights_only=True) accepts but has no dense values in memory: refused
    # by name, not a NotImplementedError from torch
    ("sparse", r"input_proj\.weight is a torch\.sparse_coo tensor, not a dense \(strided\) one"),
    ("sparse_csr", r"output_proj\.0\.weight is a torch\.sparse_csr tensor"),
    ("meta", r"layer_norm\.bias is on the meta device, not on the CPU with data"),
])
@pytest.mark.filterwarnings("ignore:.*[Ss]parse:UserWarning")
def test_errors(tmp_path, case, pattern):
    sd = dict(original().state_dict())
    obj = sd
    if case == "missing":
        del sd["residual_blocks.0.layers.3.weight"]
    elif case == "unexpected":
        sd["residual_blocks.0.layers.2.weight"] = torch.zeros(16)
    elif case == "shape":
        sd["hidden_norm.weight"] = torch.ones(15)
    elif case == "head":
        sd["output_proj.0.weight"] = torch.zeros(6, 16)
    elif case == "no_input":
        del sd["input_proj.weight"]
    elif case == "not_matrix":
        sd["input_proj.weight"] = sd["input_proj.weight"].unsqueeze(0)
    elif case == "empty":
        obj = {}
    elif case == "empty_wrapped":
        obj = {"state_dict": {}}
    elif case == "not_dict":
        obj = [1, 2]
    elif case == "not_tensors":
        obj = {"epoch": 3, "loss": 0.1}
    elif case == "nan":
        sd["layer_norm.bias"] = torch.full((8,), float("nan"))
    elif case == "float32_overflow":
        sd = {k: v.double() for k, v in sd.items()}
        sd["output_proj.0.weight"][2, 3] = 1e39
        obj = sd
    elif case == "expanded":
        sd["input_proj.weight"] = torch.zeros(1, 1).expand(10**8, 10**8)
    elif case == "expanded_fits":
        sd["input_proj.weight"] = torch.zeros(1, 12).expand(16, 12)
    elif case == "sparse":
        sd["input_proj.weight"] = sd["input_proj.weight"].to_sparse()
    elif case == "sparse_csr":
        sd["output_proj.0.weight"] = sd["output_proj.0.weight"].to_sparse_csr()
    elif case == "meta":
        sd["layer_norm.bias"] = torch.empty(8, device="meta")
    torch.save(obj, tmp_path / "bad.pt")
    with pytest.raises(checkpoint.CheckpointError, match=pattern):  # (ConversionError, or the checks it shares)
        convert.torch_to_dinoclip(str(tmp_path / "bad.pt"), str(tmp_path / "out.safetensors"))
    assert not (tmp_path / "out.safetensors").exists()


@pytest.mark.parametrize("where", ["checkpoint", "checkpoint_link", "run_top", "run_json",
                                   "in_checkpoints", "new_checkpoint", "new_checkpoint_file", "run_subdir",
                                   "run_json_subdir"])
def test_to_dinoclip_refuses_a_runs_files(tmp_path, where):
    """Not over a training checkpoint's model (it would resume with another model's optimizer
    state), nor beside a run's files (the run's name would resolve to it), nor anywhere else
    inside a run (its checkpoints/, a checkpoint directory the trainer has not written)."""
    torch.save(original().state_dict(), tmp_path / "m.pt")
    run = tmp_path / "run"
    ckpt = run / "checkpoints" / "step-3"
    ckpt.mkdir(parents=True)
    checkpoint.save(original(1), ckpt)
    (ckpt / "optimizer.safetensors").write_bytes(b"")
    os.symlink(os.path.join("checkpoints", "step-3"), run / "last")
    (run / "run.json").write_text("{}")
    before = (ckpt / "model.safetensors").read_bytes()
    out, pattern = {
        "checkpoint": (ckpt / "model.safetensors", "in a training checkpoint"),
        "checkpoint_link": (run / "last", "in a training checkpoint"),  # a directory: OUT/model.safetensors
        "run_top": (run, r"in a training run directory \(beside its run\.json, last\)"),
        "run_json": (tmp_path / "r2" / "x.safetensors", r"beside its run\.json"),
        # the run's layout (train/rundir.go): RUN/checkpoints/step-NNNNNNNN/
        "in_checkpoints": (run / "checkpoints" / "model.safetensors", rf"is in the checkpoints of the training run {run}:"),
        "new_checkpoint": (run / "checkpoints" / "step-00000100", "is in the checkpoints of the training run"),
        "new_checkpoint_file": (run / "checkpoints" / "step-00000100" / "model.safetensors",
                                "is in the checkpoints of the training run"),
        "run_subdir": (run / "exports" / "deep" / "m.safetensors", "inside the training run directory"),
        "run_json_subdir": (tmp_path / "r3" / "sub" / "m.safetensors", r"\(it holds run\.json, checkpoints/\)"),
    }[where]
    (tmp_path / "r2").mkdir()
    (tmp_path / "r2" / "run.json").write_text("{}")
    (tmp_path / "r3" / "checkpoints").mkdir(parents=True)
    if where == "run_json_subdir":
        (tmp_path / "r3" / "run.json").write_text("{}")
    with pytest.raises(ConversionError, match=pattern):
        convert.torch_to_dinoclip(str(tmp_path / "m.pt"), str(out))
    assert (ckpt / "model.safetensors").read_bytes() == before
    assert not (run / "model.safetensors").exists()
    assert sorted(os.listdir(tmp_path / "r2")) == ["run.json"]
    assert sorted(os.listdir(run / "checkpoints")) == ["step-3"]
    assert not (run / "exports").exists()
    assert not (tmp_path / "r3" / "sub").exists()


def test_to_dinoclip_writes_under_a_folder_named_checkpoints(tmp_path):
    """A folder named checkpoints outside a run (no run.json beside it) is no run's, and neither
    is a folder above that holds a user's best and last folders or a stray run.json."""
    torch.save(original().state_dict(), tmp_path / "m.pt")
    (tmp_path / "proj" / "checkpoints").mkdir(parents=True)
    (tmp_path / "proj" / "best").mkdir()
    (tmp_path / "proj" / "last").mkdir()
    (tmp_path / "run.json").write_text("{}")
    out = tmp_path / "proj" / "checkpoints" / "orig" / "model.safetensors"
    assert convert.torch_to_dinoclip(str(tmp_path / "m.pt"), str(out)) == str(out)
    assert checkpoint.load(out).config == original().config
    # Beside such folders too, as the Go commands write their outputs there (a run is known at its
    # top by its run.json or its best or last link).
    beside = tmp_path / "proj" / "model.safetensors"
    assert convert.torch_to_dinoclip(str(tmp_path / "m.pt"), str(beside)) == str(beside)


def test_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ConversionError, match="weights_only=True") as e:
        convert.torch_to_dinoclip(str(tmp_path / "evil.pt"), str(tmp_path / "o.safetensors"))
    # one line, naming what was refused, without torch's advice to load with weights_only=False
    assert "\n" not in str(e.value) and "system" in str(e.value) and "weights_only=False" not in str(e.value)
    # a training script's wrapper holding its arguments: torch numbers its advice (1), (2) before
    # the cause, which names the class; neither that advice (`weights_only` set to `False`) nor the
    # one to allowlist the class is passed on
    import argparse

    torch.save({"model_state_dict": original().state_dict(), "args": argparse.Namespace(lr=1)}, tmp_path / "ns.pt")
    with pytest.raises(ConversionError) as e:
        convert.torch_to_dinoclip(str(tmp_path / "ns.pt"), str(tmp_path / "o.safetensors"))
    assert "\n" not in str(e.value) and "argparse.Namespace" in str(e.value), str(e.value)
    assert "weights_only` set to `False" not in str(e.value) and "add_safe_globals" not in str(e.value), str(e.value)
    assert "(Unsupported global: GLOBAL argparse.Namespace was not an allowed global by default.)" in str(e.value)
    (tmp_path / "notes.pt").write_text("not a checkpoint\n")
    with pytest.raises(ConversionError, match=r"not a PyTorch checkpoint .*\(Unsupported operand \d+\)") as e:
        convert.torch_to_dinoclip(str(tmp_path / "notes.pt"), str(tmp_path / "o.safetensors"))
    assert "\n" not in str(e.value)


def test_text_is_no_checkpoint(tmp_path):
    """Bytes that are no pickle at all: said so, not a bare number (torch.load's KeyError)."""
    (tmp_path / "junk.pt").write_text("junk\n")
    with pytest.raises(convert.ConversionError, match=r"junk\.pt: not a PyTorch checkpoint .*\(KeyError \d+: the bytes are no pickle\)"):
        convert.read_torch_state_dict(str(tmp_path / "junk.pt"))
    (tmp_path / "empty.pt").write_bytes(b"")  # (not "not a checkpoint torch.load reads ... saved again")
    with pytest.raises(convert.ConversionError, match=r"empty\.pt: the file is empty \(0 bytes\): no checkpoint$"):
        convert.read_torch_state_dict(str(tmp_path / "empty.pt"))


def test_to_torch_errors(tmp_path):
    os.mkdir(tmp_path / "empty")
    with pytest.raises(checkpoint.CheckpointError, match="holds no model.safetensors"):
        convert.dinoclip_to_torch(str(tmp_path / "empty"), str(tmp_path / "x.pt"))
    # A .pt named .safetensors (to-torch taken for to-dinoclip) would fail its readers on its
    # first bytes: refused, nothing written.
    src = checkpoint.save(original(), tmp_path / "m.safetensors")
    for name in ("out.safetensors", "OUT.SafeTensors"):
        with pytest.raises(convert.ConversionError, match="to-torch writes a PyTorch .pt file"):
            convert.dinoclip_to_torch(src, str(tmp_path / name))
    assert sorted(os.listdir(tmp_path)) == ["empty", "m.safetensors"]


def test_cli_exit_code_and_message(tmp_path):
    torch.save({"a": torch.zeros(2)}, tmp_path / "bad.pt")
    r = subprocess.run([sys.executable, "-m", "dinoclip.convert", "to-dinoclip", str(tmp_path / "bad.pt"),
                        str(tmp_path / "o.safetensors")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.startswith("dinoclip.convert: ") and "input_proj.weight" in r.stderr
    assert r.stderr.count("\n") == 1  # one line, no traceback


def test_float64_beyond_float32_is_not_called_infinite(tmp_path, capfd):
    """A float64 weight too large for float32 (1e300) is refused as beyond float32's range, as
    the Go side words it, not as "+Inf" (a finite number, not a diverged run's)."""
    sd = {k: v.double() for k, v in original().state_dict().items()}
    sd["input_proj.bias"][0] = 1e300
    torch.save(sd, tmp_path / "big.pt")
    assert convert.main(["to-dinoclip", str(tmp_path / "big.pt"), str(tmp_path / "o.safetensors")]) == 1
    assert capfd.readouterr().err == (
        f"dinoclip.convert: {tmp_path / 'big.pt'}: input_proj.bias[0] is 1e+300, a float64 beyond float32's "
        "range (+Inf in float32): the model's weights must be finite float32 numbers\n")
    assert not (tmp_path / "o.safetensors").exists()


def test_cli_output_errors_are_one_line(tmp_path, monkeypatch, capfd):
    """An output that cannot be written (under a regular file; no permission; no space):
    the path and the cause on one line, status 1, no traceback."""
    import errno

    torch.save(original().state_dict(), tmp_path / "m.pt")
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "x" / "m.safetensors"
    assert convert.main(["to-dinoclip", str(tmp_path / "m.pt"), str(out)]) == 1
    assert capfd.readouterr().err == f"dinoclip.convert: {out}: cannot write it: Not a directory\n"
    assert convert.main(["to-torch", str(tmp_path / "missing"), str(tmp_path / "o.pt")]) == 1
    assert capfd.readouterr().err.count("\n") == 1
    checkpoint.save(original(), tmp_path / "ok.safetensors")
    for err in (errno.EACCES, errno.ENOSPC):
        def fail(*a, err=err):
            raise OSError(err, os.strerror(err))

        monkeypatch.setattr(os, "replace", fail)
        assert convert.main(["to-torch", str(tmp_path / "ok.safetensors"), str(tmp_path / "o.pt")]) == 1
        assert capfd.readouterr().err == \
            f"dinoclip.convert: {tmp_path / 'o.pt'}: cannot write it: {os.strerror(err)}\n"
        assert not (tmp_path / "o.pt").exists()
        # the directories it made for the output go with it, those already there stay
        (tmp_path / "there").mkdir(exist_ok=True)
        deep = tmp_path / "there" / "new" / "newer" / "o.pt"
        assert convert.main(["to-torch", str(tmp_path / "ok.safetensors"), str(deep)]) == 1
        capfd.readouterr()
        assert not (tmp_path / "there" / "new").exists() and (tmp_path / "there").is_dir()


def test_converted_file_records_its_sha256(tmp_path):
    """to-dinoclip records the tensors' SHA-256; to-torch refuses a file whose data no longer
    matches it, in one line naming the file and the remedy, and writes nothing."""
    from test_checkpoint import listing_sha256, raw_metadata

    torch.save(original(2).state_dict(), tmp_path / "m.pt")
    out = convert.torch_to_dinoclip(str(tmp_path / "m.pt"), str(tmp_path / "m.safetensors"))
    with open(out, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        f.seek(n, os.SEEK_CUR)
        data = f.read()
    assert raw_metadata(out)[checkpoint.SHA256_KEY] == listing_sha256(out)
    assert checkpoint.SHA256_KEY not in checkpoint.read_metadata(out)
    with open(out, "r+b") as f:
        f.seek(8 + n + len(data) // 3)
        b = f.read(1)[0]
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b ^ 0x80]))
    r = subprocess.run([sys.executable, "-m", "dinoclip.convert", "to-torch", out, str(tmp_path / "back.pt")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and not (tmp_path / "back.pt").exists()
    assert r.stderr == (f"dinoclip.convert: {out}: tensors do not match their recorded SHA-256: the file is "
                        "corrupt or was edited; a tool that rewrote its tensors must drop the metadata key "
                        "dinoclip.sha256\n")


def test_to_dinoclip_output_name(tmp_path, monkeypatch):
    """An empty OUT is refused, not taken for the current directory (./model.safetensors); a
    .safetensors suffix in capitals names a file, not a checkpoint directory to make."""
    torch.save(original().state_dict(), tmp_path / "orig.pt")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConversionError, match="OUT is empty"):
        convert.torch_to_dinoclip("orig.pt", "")
    assert not (tmp_path / "model.safetensors").exists()
    assert convert.torch_to_dinoclip("orig.pt", "x.SAFETENSORS") == str(tmp_path / "x.SAFETENSORS")
    assert (tmp_path / "x.SAFETENSORS").is_file()
    assert checkpoint.load(tmp_path / "x.SAFETENSORS").config == original().config
    # A directory named like a file: the trailing separator that writes into it is offered.
    (tmp_path / "d.safetensors").mkdir()
    with pytest.raises(ConversionError, match=re.escape("give it with a trailing separator (d.safetensors" + os.sep + ")")):
        convert.torch_to_dinoclip("orig.pt", "d.safetensors")
    assert convert.torch_to_dinoclip("orig.pt", "d.safetensors" + os.sep) == os.path.join(str(tmp_path), "d.safetensors", "model.safetensors")


def test_long_lists_of_problems_are_cut_to_ten(tmp_path):
    """A state_dict of thousands of stray tensors, or of every tensor an integer, names the first
    10 and how many more, as the Go side does: each made a line of megabytes."""
    sd = dict(original().state_dict())
    sd.update({f"extra.{i}": torch.zeros(1) for i in range(2000)})
    torch.save(sd, tmp_path / "extra.pt")
    with pytest.raises(ConversionError) as e:
        convert.torch_to_dinoclip(str(tmp_path / "extra.pt"), str(tmp_path / "o.safetensors"))
    assert str(e.value).endswith("unexpected extra.8; unexpected extra.9; and 1990 more"), str(e.value)[-300:]
    # a safetensors file (read as a model file is) alike
    from safetensors.torch import save_file

    save_file(sd, str(tmp_path / "extra.safetensors"))
    for read in (checkpoint.load, lambda p: convert.torch_to_dinoclip(str(p), str(tmp_path / "o.safetensors"))):
        with pytest.raises(checkpoint.CheckpointError) as e:
            read(tmp_path / "extra.safetensors")
        # (save_file orders the tensors by name)
        assert str(e.value).count("unexpected") == 10 and str(e.value).endswith("; and 1990 more"), str(e.value)[-300:]
    torch.save({k: v.to(torch.int32) for k, v in original().state_dict().items()}, tmp_path / "int.pt")
    with pytest.raises(checkpoint.CheckpointError) as e:
        convert.torch_to_dinoclip(str(tmp_path / "int.pt"), str(tmp_path / "o.safetensors"))
    assert str(e.value).count("torch.int32") == 10 and str(e.value).endswith(
        "residual_blocks.0.layers.4.bias (torch.int32), and 16 more are not float32, float16, bfloat16 or float64")
    assert not (tmp_path / "o.safetensors").exists()


def _zip_rewritten(src, dst, edit):
    """``dst``: the zip archive ``src`` (torch.save's) with each member's bytes ``edit(name, data)``
    (None leaves it out), its CRCs right: a file whose parts, not bytes, are damaged."""
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            data = edit(name, zin.read(name))
            if data is not None:
                zout.writestr(name, data)


@pytest.mark.parametrize("case,detail", [
    ("legacy_cut", "unexpected EOF, expected"),                  # a legacy .pt cut in half
    ("pickle_cut", "its pickle ends early: EOFError"),           # a zip whose data.pkl is cut short
    ("data_missing", "PytorchStreamReader failed locating file"),  # a zip missing data/0 (torch: a paragraph)
    ("legacy_cut_early", "its pickle ends early: struct.error"),   # a legacy .pt cut within its first pickles
])
def test_a_damaged_torch_file_is_said_to_be(tmp_path, case, detail):
    """A .pt cut short or missing a part is said to be cut short or corrupt, in one line: not told
    to be saved again as a plain state_dict, as one holding other objects is."""
    sd = original().state_dict()
    bad = tmp_path / "bad.pt"
    if case.startswith("legacy_cut"):
        torch.save(sd, tmp_path / "whole.pt", _use_new_zipfile_serialization=False)
        whole = (tmp_path / "whole.pt").read_bytes()
        bad.write_bytes(whole[:len(whole) // 2] if case == "legacy_cut" else whole[:18])
    else:
        torch.save(sd, tmp_path / "whole.pt")
        if case == "pickle_cut":
            _zip_rewritten(tmp_path / "whole.pt", bad, lambda n, d: d[:-5] if n.endswith("/data.pkl") else d)
        else:
            _zip_rewritten(tmp_path / "whole.pt", bad, lambda n, d: None if n.endswith("/data/0") else d)
    with pytest.raises(ConversionError) as e:
        convert.torch_to_dinoclip(str(bad), str(tmp_path / "o.safetensors"))
    msg = str(e.value)
    assert msg.startswith(f"{bad}: the file is cut short or corrupt (") and detail in msg, msg
    assert msg.endswith("): save it again, or copy it again from where it came"), msg
    assert "\n" not in msg and "besides tensors" not in msg and "miniz" not in msg, msg


def test_a_pickle_and_a_torchscript_archive_are_named(tmp_path):
    """pickle.dump's file is said to be a pickle torch.save did not write; a TorchScript archive is
    said to be one, with how to save its weights, and not torch's advice to load it with
    weights_only=False (which runs whatever code it holds)."""
    import pickle
    import warnings

    m = original()
    with open(tmp_path / "p.pt", "wb") as f:
        pickle.dump(m.state_dict(), f)
    with pytest.raises(ConversionError) as e:
        convert.torch_to_dinoclip(str(tmp_path / "p.pt"), str(tmp_path / "o.safetensors"))
    assert str(e.value) == (f"{tmp_path / 'p.pt'}: a pickle not written by torch.save (pickle.dump's?), which torch.load "
                            "does not read (Unsupported operand 149): save the state_dict with torch.save(state_dict, "
                            "'model.pt') and convert that")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # (torch.jit is deprecated)
        torch.jit.save(torch.jit.script(m), tmp_path / "ts.pt")
    with pytest.raises(ConversionError) as e:
        convert.torch_to_dinoclip(str(tmp_path / "ts.pt"), str(tmp_path / "o.safetensors"))
    ts = str(tmp_path / "ts.pt")
    assert str(e.value) == (f"{ts}: a TorchScript archive (torch.jit.save), not a state_dict: save its weights with "
                            f"torch.save(torch.jit.load({ts!r}).state_dict(), 'model.pt') and convert that")
    assert not (tmp_path / "o.safetensors").exists()


@pytest.mark.parametrize("protocol", [4, 5])
def test_a_legacy_file_of_a_framed_pickle_protocol_is_named(tmp_path, protocol):
    """A plain state_dict torch.save wrote in the legacy format with pickle protocol 4 or 5, whose
    frames torch.load(weights_only=True) does not read, is said to be that, not to hold objects
    besides tensors."""
    p = tmp_path / "p.pt"
    torch.save(original().state_dict(), p, _use_new_zipfile_serialization=False, pickle_protocol=protocol)
    with pytest.raises(ConversionError) as e:
        convert.torch_to_dinoclip(str(p), str(tmp_path / "o.safetensors"))
    assert str(e.value).startswith(f"{p}: a torch.save file in the legacy format with pickle protocol {protocol}, which "
                                   "torch.load(weights_only=True) does not read ("), str(e.value)
    assert str(e.value).endswith("save the state_dict again with torch.save's defaults (torch.save(state_dict, "
                                 "'model.pt')) and convert that"), str(e.value)
    # Cut short within its pickles (a download cut off), it is said to be that, not to be saved again.
    whole = p.read_bytes()
    for n in (3, 40, 200):
        p.write_bytes(whole[:n])
        with pytest.raises(ConversionError) as e:
            convert.torch_to_dinoclip(str(p), str(tmp_path / "o.safetensors"))
        assert str(e.value).startswith(f"{p}: the file is cut short or corrupt (its pickles end early"), (n, str(e.value))


def test_to_torch_says_it_takes_a_runs_moving_average(capsys):
    """to-torch's help (and the module's docstring) say that a run whose best is the moving average
    of its weights is converted as that average, best/ema.safetensors, as it is."""
    with pytest.raises(SystemExit):
        convert.main(["to-torch", "--help"])
    assert "best/ema.safetensors" in " ".join(capsys.readouterr().out.split())
    assert "best/ema.safetensors" in convert.__doc__
