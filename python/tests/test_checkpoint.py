"""Checkpoint files: the format of docs/FORMAT.md, round trips, resolution, strict loading."""

import hashlib
import json
import os
import re
import stat
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from dinoclip import checkpoint
from dinoclip.checkpoint import CheckpointError
from dinoclip.model import ProjectorWithResiduals


def small(seed=0, cfg=(12, 16, 2, 8)):
    torch.manual_seed(seed)
    return ProjectorWithResiduals(*cfg)


def header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        raw = f.read(n)
    return n, raw


def test_save_writes_the_format(tmp_path):
    m = small()
    p = checkpoint.save(m, tmp_path / "model.safetensors")
    n, raw = header(p)
    assert n % 8 == 0
    h = json.loads(raw)
    meta = h.pop("__metadata__")
    data = open(p, "rb").read()[8 + n:]
    assert meta == {"format": "dinoclip-model/1",
                    "config": '{"input_dim":12,"hidden_dim":16,"output_dim":8,"num_residual_blocks":2}',
                    "dinoclip.data_sha256": hashlib.sha256(data).hexdigest()}
    # metadata first, then the tensors in state_dict order, contiguous, all F32
    assert raw.decode().startswith('{"__metadata__":{"config":')
    sd = m.state_dict()
    assert list(h) == list(sd)
    off = 0
    for k, v in sd.items():
        assert h[k]["dtype"] == "F32" and h[k]["shape"] == list(v.shape)
        assert h[k]["data_offsets"] == [off, off + 4 * v.numel()]
        off += 4 * v.numel()
    assert os.path.getsize(p) == 8 + n + off
    # PyTorch loads it into the original class, strictly
    fresh = ProjectorWithResiduals(12, 16, 2, 8)
    fresh.load_state_dict(load_file(p), strict=True)
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, sd[k])
    assert [f for f in os.listdir(tmp_path) if f != "model.safetensors"] == []  # no temp files left


def test_round_trip_and_metadata(tmp_path):
    m = small(1)
    p = checkpoint.save(m, tmp_path, metadata={"step": 3, "epoch": 1, "metrics": {"r5": 0.5}, "note": "x<y>&z\u2028"})
    assert p == str(tmp_path / "model.safetensors")
    back = checkpoint.load(tmp_path)
    assert back.config == m.config
    for (k, a), (k2, b) in zip(m.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert back.metadata["step"] == "3" and back.metadata["epoch"] == "1"
    assert json.loads(back.metadata["metrics"]) == {"r5": 0.5}
    assert back.metadata["note"] == "x<y>&z\u2028"
    _, raw = header(p)
    assert b"x<y>&z\\u2028" in raw  # escaped as Go's encoding/json (without HTML escaping) does
    assert not back.training
    # saving what was loaded, with its metadata, gives the same bytes
    p2 = checkpoint.save(back, tmp_path / "again.safetensors", metadata=back.metadata)
    assert open(p, "rb").read() == open(p2, "rb").read()


def test_resolve_run_directory(tmp_path):
    run = tmp_path / "run"
    a, b = run / "checkpoints" / "step-00000001", run / "checkpoints" / "step-00000002"
    checkpoint.save(small(1), str(a) + os.sep)
    checkpoint.save(small(2), str(b) + os.sep)
    os.symlink("checkpoints/step-00000002", run / "last")
    assert checkpoint.resolve(run) == str(run / "last" / "model.safetensors")
    os.symlink("checkpoints/step-00000001", run / "best")
    assert checkpoint.resolve(run) == str(run / "best" / "model.safetensors")
    loaded = checkpoint.load(run)
    assert torch.equal(loaded.input_proj.weight, small(1).input_proj.weight)
    assert checkpoint.resolve(a) == str(a / "model.safetensors")
    with pytest.raises(CheckpointError, match="holds no model.safetensors"):
        checkpoint.resolve(tmp_path / "run" / "checkpoints")
    with pytest.raises(FileNotFoundError):
        checkpoint.load(tmp_path / "nope")


def test_load_infers_config_and_accepts_other_float_dtypes(tmp_path):
    m = small(3, (10, 6, 3, 5))
    sd = {k: v.to(torch.float16) for k, v in m.state_dict().items()}
    save_file(sd, str(tmp_path / "plain.safetensors"))  # no metadata at all
    back = checkpoint.load(tmp_path / "plain.safetensors")
    assert back.config == {"input_dim": 10, "hidden_dim": 6, "output_dim": 5, "num_residual_blocks": 3}
    assert back.input_proj.weight.dtype == torch.float32
    assert torch.equal(back.input_proj.weight, sd["input_proj.weight"].float())
    assert checkpoint.read_config(tmp_path / "plain.safetensors") == back.config


@pytest.mark.parametrize("case,pattern", [
    ("missing", r"missing residual_blocks\.1\.layers\.4\.bias"),
    ("unexpected", r"unexpected extra\.weight"),
    ("shape", r"layer_norm\.bias has shape \[7\], want \[8\]"),
    ("optimizer", r"format 'dinoclip-optimizer/1'"),
    ("config", r"num_residual_blocks is missing"),
    ("newer", r"format 'dinoclip-model/2'"),
    ("step", r"metadata step '-1' is not a count"),
])
def test_load_errors(tmp_path, case, pattern):
    m = small()
    sd = dict(m.state_dict())
    meta = {"format": "dinoclip-model/1", "config": json.dumps(m.config)}
    if case == "missing":
        del sd["residual_blocks.1.layers.4.bias"]
    elif case == "unexpected":
        sd["extra.weight"] = torch.zeros(2)
    elif case == "shape":
        sd["layer_norm.bias"] = torch.zeros(7)
    elif case == "optimizer":
        meta["format"] = "dinoclip-optimizer/1"
    elif case == "newer":
        meta["format"] = "dinoclip-model/2"
    elif case == "step":
        meta["step"] = "-1"
    elif case == "config":
        meta["config"] = '{"input_dim":12,"hidden_dim":16,"output_dim":8}'
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "m.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match=pattern):
        checkpoint.load(tmp_path / "m.safetensors")


def test_torch_format_tag_loads(tmp_path):
    """safetensors' own PyTorch helpers tag a file "pt"; it is a model file like an untagged one."""
    m = small()
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(tmp_path / "m.safetensors"),
              metadata={"format": "pt"})
    back = checkpoint.load(tmp_path / "m.safetensors")
    assert back.config == m.config


def test_not_safetensors(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"\x01\x00")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        checkpoint.load(tmp_path / "x.safetensors")


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"old")

    def boom(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        checkpoint.write_atomic(str(p), boom)
    assert p.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_atomic_write_errors_name_the_path(tmp_path):
    """An OSError of a write (no space; a directory to create under a regular file) names the
    file being written, not its temporary file, keeps its type, and leaves nothing behind."""
    import errno

    p = tmp_path / "f.bin"

    def full(f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as e:
        checkpoint.write_atomic(str(p), full)
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(p)
    assert checkpoint.oserror_message(e.value) == f"{p}: cannot write it: No space left on device"
    assert os.listdir(tmp_path) == []
    (tmp_path / "afile").write_text("x")
    under = tmp_path / "afile" / "sub" / "m.bin"
    with pytest.raises(NotADirectoryError) as e:
        checkpoint.write_atomic(str(under), lambda f: f.write(b"x"))
    assert checkpoint.oserror_message(e.value) == f"{under}: cannot write it: Not a directory"


def test_default_model_file_size(tmp_path):
    """The full-size model: 54,608,384 float32 values, about 218 MB."""
    m = ProjectorWithResiduals()
    p = checkpoint.save(m, tmp_path / "model.safetensors")
    n, _ = header(p)
    assert os.path.getsize(p) == 8 + n + 4 * 54_608_384
    assert checkpoint.read_config(p) == {"input_dim": 768, "hidden_dim": 2048, "output_dim": 512, "num_residual_blocks": 6}


@pytest.mark.skipif(os.name != "posix", reason="file modes and flock are POSIX's")
def test_atomic_write_temporary_and_mode(tmp_path):
    """The temporary is named and locked as the Go side's atomicfile names and locks its own
    (.BASE.tmp-N, flock), so its sweep takes it only once the writer is gone; a replaced file
    keeps its mode."""
    import fcntl
    import re

    path = tmp_path / "x.bin"
    seen = []

    def write(f):
        (tmp,) = [n for n in os.listdir(tmp_path) if n.startswith(".")]
        seen.append(tmp)
        with open(tmp_path / tmp, "rb") as other:
            with pytest.raises(OSError):
                fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        f.write(b"data")

    checkpoint.write_atomic(str(path), write)
    assert re.fullmatch(r"\.x\.bin\.tmp-[0-9]+", seen[0]), seen
    os.chmod(path, 0o600)
    checkpoint.write_atomic(str(path), lambda f: f.write(b"more"))
    assert path.read_bytes() == b"more" and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["x.bin"]


# ---------------------------------------------------------------------------
# the data's SHA-256 (metadata dinoclip.data_sha256)


def data_region(path):
    """The offset and length of the data buffer of a safetensors file."""
    n, _ = header(path)
    return 8 + n, os.path.getsize(path) - 8 - n


def flip_bit(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([b ^ 0x01]))


def rewrite_metadata(path, edit):
    """Rewrites ``path`` (a file :func:`checkpoint.save` wrote) with its tensors unchanged and
    ``edit(metadata)`` as its metadata."""
    sd = load_file(str(path))
    meta = checkpoint.read_metadata(path)
    edit(meta)
    save_file(sd, str(path), metadata=meta)


CORRUPT = r"data does not match its recorded SHA-256 \(metadata dinoclip\.data_sha256\): the file is corrupt or was edited"


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_load_refuses_a_flipped_bit(tmp_path, where):
    p = checkpoint.save(small(), tmp_path / "model.safetensors")
    start, size = data_region(p)
    flip_bit(p, start + {"first": 0, "middle": size // 2, "last": size - 1}[where])
    # the header still checks out: the bit would otherwise load as a wrong weight
    assert checkpoint.read_config(p) == small().config
    with pytest.raises(CheckpointError, match=re.escape(p) + ": " + CORRUPT):
        checkpoint.load(p)


def test_load_refuses_a_truncated_then_padded_tensor(tmp_path):
    p = checkpoint.save(small(), tmp_path / "model.safetensors")
    start, _ = data_region(p)
    _, end = json.loads(header(p)[1])["input_proj.weight"]["data_offsets"]
    with open(p, "r+b") as f:  # the tensor's last values lost and made up with zeros
        f.seek(start + end - 16)
        f.write(bytes(16))
    with pytest.raises(CheckpointError, match=CORRUPT):
        checkpoint.load(p)


def test_file_without_the_key_loads(tmp_path):
    """Files from before the key (an earlier dinoclip's, safetensors' save_file) load as before."""
    m = small(4)
    p = checkpoint.save(m, tmp_path / "model.safetensors")
    rewrite_metadata(p, lambda meta: meta.pop(checkpoint.DATA_SHA256_KEY))
    assert checkpoint.DATA_SHA256_KEY not in checkpoint.read_metadata(p)
    back = checkpoint.load(p)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), back.state_dict().values()))


@pytest.mark.parametrize("value", ["", "abc", "upper", "long", "g" * 64])
def test_malformed_key_refused(tmp_path, value):
    p = checkpoint.save(small(), tmp_path / "model.safetensors")
    recorded = checkpoint.read_metadata(p)[checkpoint.DATA_SHA256_KEY]
    value = {"upper": recorded.upper(), "long": recorded + "0"}.get(value, value)
    rewrite_metadata(p, lambda meta: meta.update({checkpoint.DATA_SHA256_KEY: value}))
    with pytest.raises(CheckpointError, match=f"metadata dinoclip.data_sha256 {re.escape(repr(value))} is not a SHA-256"):
        checkpoint.load(p)


def test_key_survives_a_round_trip(tmp_path):
    """The key loads into the model's metadata; saving that metadata again records the hash of
    the data written, whatever the key held (a stale one is replaced)."""
    p = checkpoint.save(small(5), tmp_path / "a.safetensors")
    start, _ = data_region(p)
    recorded = checkpoint.load(p).metadata[checkpoint.DATA_SHA256_KEY]
    assert recorded == hashlib.sha256(open(p, "rb").read()[start:]).hexdigest()
    p2 = checkpoint.save(small(5), tmp_path / "b.safetensors", metadata={checkpoint.DATA_SHA256_KEY: "0" * 64})
    assert checkpoint.read_metadata(p2)[checkpoint.DATA_SHA256_KEY] == recorded
    assert open(p, "rb").read() == open(p2, "rb").read()
