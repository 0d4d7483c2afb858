"""Reading inputs as the Go side reads them: what it refuses is refused here too, before anything
large is allocated or read, and a named pipe is refused instead of blocking."""

import json
import os
import re
import struct
import subprocess
import sys
import threading
import zipfile

import pytest
import torch
from safetensors.torch import save_file

from dinoclip import _files, checkpoint, convert
from dinoclip.checkpoint import CheckpointError
from test_checkpoint import CountingOpen, data_region, flip_bit, header, rewrite_metadata, small

NON_FINITE = ": the model's weights must be finite numbers (a run that diverged leaves NaN weights; use an earlier checkpoint)"
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")


def saved(tmp_path, name="model.safetensors", **meta):
    return checkpoint.save(small(), tmp_path / name, meta or None)


# ---------------------------------------------------------------------------
# the shape is checked against the header before the data is read or a model built


@pytest.mark.parametrize("config,message", [
    ({"input_dim": 12, "hidden_dim": 200000, "output_dim": 8, "num_residual_blocks": 2}, re.escape(
        "12 -> 200000 x 2 residual blocks -> 100000 -> 8 has 1.8e+11 weights, more than the 2147483647 dinoclip handles")),
    ({"input_dim": 12, "hidden_dim": 16, "output_dim": 8, "num_residual_blocks": 4000},
     "the config has 4000 residual blocks, but the file holds only 26 tensors"),
    ({"input_dim": 12, "hidden_dim": 16, "output_dim": 8, "num_residual_blocks": 1000000},
     "1000000 residual blocks, more than the 4096 dinoclip handles"),
    ({"input_dim": 12, "hidden_dim": 32, "output_dim": 8, "num_residual_blocks": 2},
     r"not a ProjectorWithResiduals of shape .*input_proj.weight has shape \[16, 12\], want \[32, 12\];.*"),
])
def test_config_refused_from_the_header(tmp_path, monkeypatch, config, message):
    """A config the metadata gets wrong (its SHA-256 does not cover it) is refused having read the
    header only, as the Go side refuses it, not by allocating or building what it says (one that
    fits the header is built on the meta device only, to compare names and shapes)."""
    p = saved(tmp_path)
    rewrite_metadata(p, lambda m: m.update(config=json.dumps(config)))
    n, _ = header(p)
    counting = CountingOpen()
    monkeypatch.setattr(checkpoint, "open_regular", counting)
    if "shape" not in message:
        monkeypatch.setattr(checkpoint.ProjectorWithResiduals, "__init__", lambda *a, **k: pytest.fail("built a model"))
    with pytest.raises(CheckpointError, match=f"^{re.escape(p)}: {message}$"):
        checkpoint.load(p)
    assert counting.read <= 8 + n


def test_read_config_bounds_the_config(tmp_path):
    p = saved(tmp_path)
    rewrite_metadata(p, lambda m: m.update(config=json.dumps({**small().config, "hidden_dim": 200000})))
    with pytest.raises(CheckpointError, match="more than the 2147483647 dinoclip handles"):
        checkpoint.read_config(p)


def test_foreign_safetensors_refused_without_reading_it(tmp_path, monkeypatch):
    """A 6 GB safetensors of another model (sparse here) is refused from its header."""
    p = tmp_path / "llm.safetensors"
    size = 6 << 30
    h = json.dumps({"__metadata__": {"format": "pt"}, "model.embed_tokens.weight": {
        "dtype": "F32", "shape": [size // 4 // 4096, 4096], "data_offsets": [0, size]}}).encode()
    h += b" " * (-len(h) % 8)
    with open(p, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        f.truncate(8 + len(h) + size)
    counting = CountingOpen()
    monkeypatch.setattr(checkpoint, "open_regular", counting)
    with pytest.raises(CheckpointError, match="no input_proj.weight and output_proj.2.weight"):
        checkpoint.load(p)
    assert counting.read <= 8 + len(h)


def test_header_limit_is_the_go_sides(tmp_path):
    p = tmp_path / "m.safetensors"
    p.write_bytes(struct.pack("<Q", 100_000_001) + b"{" + b" " * 100_000_000)
    with pytest.raises(CheckpointError, match="not a safetensors file \\(header length 100000001\\)"):
        checkpoint.load(p)
    # 100,000,000 bytes is within the limit: parsed (and found to hold no model)
    p.write_bytes(struct.pack("<Q", 100_000_000) + b"{}" + b" " * 99_999_998)
    with pytest.raises(CheckpointError, match="no model config"):
        checkpoint.load(p)


# ---------------------------------------------------------------------------
# NaN and infinite weights


@pytest.mark.parametrize("dtype,value,shown", [
    (torch.float32, float("nan"), "NaN" + NON_FINITE),
    (torch.float16, float("inf"), "+Inf" + NON_FINITE),
    # finite as float64, infinite as float32: said so, not called infinite (nor blamed on a
    # diverged run)
    (torch.float64, -1e300, "-1e+300, a float64 beyond float32's range (-Inf in float32): the model's weights "
                            "must be finite float32 numbers"),
])
def test_non_finite_weights_refused_on_load(tmp_path, dtype, value, shown):
    sd = {k: v.detach().to(dtype).clone() for k, v in small().state_dict().items()}
    sd["output_proj.0.weight"].view(-1)[5] = value
    p = str(tmp_path / "m.safetensors")
    save_file(sd, p, metadata={"format": "pt"})
    message = f"^{re.escape(p)}: output_proj.0.weight\\[5\\] is {re.escape(shown)}$"
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load(p)
    assert convert.main(["to-torch", p, str(tmp_path / "o.pt")]) == 1
    assert not os.path.exists(tmp_path / "o.pt")


def test_dtypes_go_does_not_read_are_refused(tmp_path):
    """A tensor stored as float8 (or an integer) is no weight dinoclip reads, on either side:
    refused by load and to-torch, naming it."""
    sd = {k: v.detach().clone() for k, v in small().state_dict().items()}
    sd["input_proj.weight"] = sd["input_proj.weight"].to(torch.float8_e4m3fn)
    p = str(tmp_path / "f8.safetensors")
    save_file(sd, p, metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"tensors input_proj\.weight \(torch\.float8_e4m3fn\) are not float32"):
        checkpoint.load(p)
    assert convert.main(["to-torch", p, str(tmp_path / "o.pt")]) == 1
    assert not os.path.exists(tmp_path / "o.pt")


def test_save_refuses_non_finite_weights(tmp_path):
    m = small()
    with torch.no_grad():
        m.input_proj.weight[0, 3] = float("nan")
    p = tmp_path / "m.safetensors"
    with pytest.raises(CheckpointError, match=re.escape(f"{p}: input_proj.weight[3] is NaN{NON_FINITE}")):
        checkpoint.save(m, p)
    assert not os.path.exists(p)


# ---------------------------------------------------------------------------
# metadata


@pytest.mark.parametrize("meta,message", [
    ({"step": -1}, "metadata step '-1' is not a count"),
    ({"epoch": 1.5}, "metadata epoch '1.5' is not a count"),
    ({"step": "9223372036854775808"}, "metadata step '9223372036854775808' is not a count"),
    ({"precision": "fp16"}, "metadata precision 'fp16', want fp32, bf16 or fp64"),
])
def test_metadata_go_refuses_is_refused_on_save_and_load(tmp_path, meta, message):
    p = tmp_path / "m.safetensors"
    with pytest.raises(CheckpointError, match=re.escape(message)) as e:
        checkpoint.save(small(), p, meta)
    assert "tampered" not in str(e.value)  # (the caller's metadata, not a file's)
    assert not os.path.exists(p)
    q = saved(tmp_path)
    rewrite_metadata(q, lambda m: m.update({k: str(v) for k, v in meta.items()}))
    with pytest.raises(CheckpointError, match=re.escape(message)):
        checkpoint.load(q)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        checkpoint.read_config(q)


def test_metadata_go_accepts_is_accepted(tmp_path):
    for meta in ({"step": "9223372036854775807", "epoch": 0}, {"precision": "bf16"}, {"precision": "fp64"}):
        assert checkpoint.load(saved(tmp_path, **meta)).metadata.items() >= {
            k: str(v) for k, v in meta.items()}.items()


# ---------------------------------------------------------------------------
# to-dinoclip: corrupt inputs are not converted (and stamped with a new SHA-256)


def test_to_dinoclip_checks_a_safetensors_input(tmp_path, capfd):
    p = saved(tmp_path)
    assert convert.main(["to-dinoclip", p, str(tmp_path / "ok.safetensors")]) == 0
    assert torch.equal(checkpoint.load(tmp_path / "ok.safetensors").input_proj.weight, small().input_proj.weight)
    start, size = data_region(p)
    flip_bit(p, start + size // 2)
    capfd.readouterr()
    assert convert.main(["to-dinoclip", p, str(tmp_path / "bad.safetensors")]) == 1
    err = capfd.readouterr().err
    assert err.startswith(f"dinoclip.convert: {p}: tensors do not match their recorded SHA-256") and err.count("\n") == 1
    assert not os.path.exists(tmp_path / "bad.safetensors")


def test_to_dinoclip_checks_a_zip_archive(tmp_path, capfd):
    p = tmp_path / "m.pt"
    torch.save(small().state_dict(), p)
    with zipfile.ZipFile(p) as z:
        member = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)  # a tensor
        start = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra)
    flip_bit(p, start + member.file_size // 2)
    assert zipfile.ZipFile(p).testzip() == member.filename
    capfd.readouterr()
    assert convert.main(["to-dinoclip", str(p), str(tmp_path / "bad.safetensors")]) == 1
    assert capfd.readouterr().err == f"dinoclip.convert: {p}: {member.filename} fails its CRC check: the file is corrupt\n"
    assert not os.path.exists(tmp_path / "bad.safetensors")


def test_to_dinoclip_damaged_zip_structure_is_one_line(tmp_path, capfd):
    """Damage zipfile reports with other exceptions (a member name not UTF-8, an encryption flag)
    is one line too."""
    p = tmp_path / "m.pt"
    torch.save(small().state_dict(), p)
    b = bytearray(p.read_bytes())
    b[31] = 0xFF  # in the first member's name
    p.write_bytes(bytes(b))
    capfd.readouterr()
    assert convert.main(["to-dinoclip", str(p), str(tmp_path / "bad.safetensors")]) == 1
    err = capfd.readouterr().err
    assert err.startswith(f"dinoclip.convert: {p}: a damaged zip archive (") and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_to_dinoclip_reads_any_safetensors_layout(tmp_path):
    """A safetensors input whose header starts with spaces (valid JSON, which the Go side reads)
    is read as one, not handed to torch.load."""
    p = saved(tmp_path)
    raw = open(p, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = raw[8:8 + n].rstrip(b" ")
    pad = (8 - (len(header) + 8) % 8) % 8 + 8
    lead = tmp_path / "lead.safetensors"
    lead.write_bytes(struct.pack("<Q", len(header) + pad) + b" " * pad + header + raw[8 + n:])
    assert checkpoint.load_state_dict(str(lead))[2] == checkpoint.load_state_dict(p)[2]
    assert convert.main(["to-dinoclip", str(lead), str(tmp_path / "o.safetensors")]) == 0


def test_protocol_4_pickle_error_is_one_line(tmp_path):
    import pickle

    p = tmp_path / "p4.pt"
    with open(p, "wb") as f:
        pickle.dump({k: v.numpy() for k, v in small().state_dict().items()}, f, protocol=4)
    r = subprocess.run([sys.executable, "-m", "dinoclip.convert", "to-dinoclip", str(p), str(tmp_path / "o.safetensors")],
                       capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "default"})
    assert r.returncode == 1
    # (said to be a pickle that torch.save did not write, not a checkpoint to save "as a plain state_dict")
    assert r.stderr.startswith(f"dinoclip.convert: {p}: a pickle not written by torch.save") and r.stderr.count("\n") == 1, r.stderr
    assert "save the state_dict with torch.save" in r.stderr and "besides tensors" not in r.stderr


# ---------------------------------------------------------------------------
# named pipes (and directories) are refused, not read


def without_blocking(fifo, fn):
    """What ``fn()`` returns or raises, failing the test if it blocks on opening the named pipe
    ``fifo`` (then let go by opening its other end)."""
    result = {}

    def call():
        try:
            result["value"] = fn()
        except BaseException as e:  # handed to the test
            result["error"] = e

    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(10)
    if t.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        t.join(10)
        pytest.fail(f"blocked on the named pipe {fifo}")
    if "error" in result:
        raise result["error"]
    return result["value"]


@needs_fifo
def test_named_pipes_are_refused(tmp_path, capfd):
    fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match=f"^{re.escape(str(fifo))}: a named pipe, not a regular file$"):
        without_blocking(fifo, lambda: checkpoint.load(fifo))
    pt = tmp_path / "fifo.pt"
    os.mkfifo(pt)
    for args, name in ((["to-torch", str(fifo), str(tmp_path / "o.pt")], fifo),
                       (["to-dinoclip", str(pt), str(tmp_path / "o.safetensors")], pt)):
        assert without_blocking(name, lambda: convert.main(args)) == 1
        assert capfd.readouterr().err == f"dinoclip.convert: {name}: a named pipe, not a regular file\n"


def run_dir(tmp_path):
    """A run directory whose best and last checkpoints are links to one checkpoint."""
    run = tmp_path / "run"
    ck = run / "checkpoints" / "step-00000001"
    checkpoint.save(small(), ck / checkpoint.MODEL_FILE)
    for link in ("best", "last"):
        os.symlink(os.path.join("checkpoints", "step-00000001"), run / link)
    return run, ck


@needs_fifo
def test_resolve_with_run_json_a_named_pipe(tmp_path):
    """Refused, as the Go side refuses it, not waited on (nor taken for a run without one)."""
    run, ck = run_dir(tmp_path)
    os.mkfifo(run / "run.json")
    with pytest.raises(checkpoint.CheckpointError, match="run.json: a named pipe, not a regular file"):
        without_blocking(run / "run.json", lambda: checkpoint.resolve(run))


@pytest.mark.parametrize("kind", ["fifo", "dir"])
def test_resolve_takes_a_best_model_that_is_not_a_file_as_go_does(tmp_path, kind):
    """best/model.safetensors that is a named pipe or a directory is an error, not a reason to take
    another checkpoint's model."""
    if kind == "fifo" and not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes")
    run, ck = run_dir(tmp_path)
    best = tmp_path / "run" / "checkpoints" / "step-00000002"
    best.mkdir()
    os.unlink(run / "best")
    os.symlink(os.path.join("checkpoints", "step-00000002"), run / "best")
    model = best / checkpoint.MODEL_FILE
    os.mkfifo(model) if kind == "fifo" else model.mkdir()
    assert checkpoint.resolve(run) == str(run / "best" / checkpoint.MODEL_FILE)
    what = "a named pipe" if kind == "fifo" else "a directory"
    with pytest.raises(OSError, match=f"{what}, not a regular file$"):
        without_blocking(model, lambda: checkpoint.load(run))


def test_read_regular_refuses_by_size_unread(tmp_path, monkeypatch):
    """A file over the limit is refused by its size before a byte of it is read; one at the limit is
    read whole, a piece at a time."""
    counting = CountingOpen()
    monkeypatch.setattr(_files, "open_regular", counting)
    path = tmp_path / "record.json"
    with open(path, "wb") as f:
        f.truncate(3 << 20)
    with pytest.raises(ValueError, match=f"over {(3 << 20) - 1} bytes"):
        _files.read_regular(str(path), (3 << 20) - 1)
    assert counting.read == 0
    assert len(_files.read_regular(str(path), 3 << 20)) == 3 << 20 and counting.read == 3 << 20


def test_metadata_that_is_not_unicode_is_refused_on_save(tmp_path):
    """A lone surrogate (os.fsdecode's stand-in for a path's undecodable bytes) cannot be written in
    the UTF-8 header: refused in a sentence, not a UnicodeEncodeError, and nothing written."""
    p = tmp_path / "m.safetensors"
    with pytest.raises(CheckpointError, match="metadata 'note' holds text that is not Unicode"):
        checkpoint.save(small(), p, {"note": "caf\udce9"})
    assert not os.path.exists(p)
