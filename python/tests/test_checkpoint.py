"""Checkpoint files: the format of docs/FORMAT.md, round trips, resolution, strict loading."""

import hashlib
import json
import os
import re
import shutil
import stat
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from dinoclip import _files, checkpoint
from dinoclip._files import open_regular
from dinoclip.checkpoint import CheckpointError
from dinoclip.model import ProjectorWithResiduals


def small(seed=0, cfg=(12, 16, 2, 8)):
    torch.manual_seed(seed)
    i, h, b, o = cfg
    return ProjectorWithResiduals(input_dim=i, hidden_dim=h, num_residual_blocks=b, output_dim=o)


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
    assert meta == {"format": "dinoclip-model/1",
                    "config": '{"input_dim":12,"hidden_dim":16,"output_dim":8,"num_residual_blocks":2}',
                    "dinoclip.sha256": listing_sha256(p)}
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
    fresh = ProjectorWithResiduals(input_dim=12, hidden_dim=16, num_residual_blocks=2, output_dim=8)
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


def test_resolve_run_picking_best_by_moving_average(tmp_path):
    """A run trained with --best-from ema is its checkpoints' moving average, as the Go side's eval
    and project take it: not the raw weights beside it, even when the average is missing; a best
    link that leads nowhere is an error, not a fallback to last."""
    run = tmp_path / "run"
    a = run / "checkpoints" / "step-00000001"
    checkpoint.save(small(1), a / "model.safetensors")
    checkpoint.save(small(2), a / "ema.safetensors")
    os.symlink("checkpoints/step-00000001", run / "best")
    (run / "run.json").write_text(json.dumps({"options": {"best_from": "ema", "ema": 0.99}}))
    assert checkpoint.resolve(run) == str(run / "best" / "ema.safetensors")
    assert torch.equal(checkpoint.load(run).input_proj.weight, small(2).input_proj.weight)
    (run / "run.json").write_text(json.dumps({"options": {"best_from": "raw"}}))
    assert checkpoint.resolve(run) == str(run / "best" / "model.safetensors")
    (run / "run.json").write_text(json.dumps({"options": {"best_from": "ema"}}))
    os.remove(a / "ema.safetensors")
    with pytest.raises(CheckpointError, match="picks its best checkpoint by the moving average"):
        checkpoint.resolve(run)
    os.remove(run / "run.json")
    os.remove(run / "best")
    os.symlink("checkpoints/gone", run / "best")
    with pytest.raises(CheckpointError, match="best checkpoint .* is missing"):
        checkpoint.resolve(run)


@pytest.mark.parametrize("run_json", [None, "{", '{"options": {"best_from": "EMA"}}', '{"options": "ema"}',
                                      '{"options": {"best_from": "raw", "Best_From": "ema"}}',
                                      '{"options": {"best_from": "ema", "best_from": "raw"}}', "huge",
                                      '{"options": {"best_from": "ema"}}'.encode("utf-16"),
                                      b'{"options": {"best_from": "ema"}, "note": "\xff"}'])
def test_resolve_refuses_run_whose_model_is_unknown(tmp_path, run_json):
    """A run keeping a moving average whose run.json is missing, damaged, edited to name neither
    model (or both), larger than any run writes (sparse here, refused by its size) or not UTF-8 (as
    the Go side reads it: UTF-16, or a byte that is no UTF-8) does not say which model is its own: an error, as on the
    Go side, not the raw weights. Without a moving average, its best model."""
    run = tmp_path / "run"
    a = run / "checkpoints" / "step-00000001"
    checkpoint.save(small(1), a / "model.safetensors")
    checkpoint.save(small(2), a / "ema.safetensors")
    os.symlink("checkpoints/step-00000001", run / "best")
    if run_json == "huge":
        with open(run / "run.json", "wb") as f:
            f.write(b'{"options": {"best_from": "ema"}}')
            f.truncate(checkpoint.MAX_RUN_FILE_BYTES + 1)
    elif isinstance(run_json, bytes):
        (run / "run.json").write_bytes(run_json)
    elif run_json is not None:
        (run / "run.json").write_text(run_json)
    with pytest.raises(CheckpointError, match="is unknown; name the model file") as e:
        checkpoint.resolve(run)
    assert run_json != "huge" or f"over {checkpoint.MAX_RUN_FILE_BYTES} bytes" in str(e.value)
    os.remove(a / "ema.safetensors")
    assert checkpoint.resolve(run) == str(run / "best" / "model.safetensors")


@pytest.mark.parametrize("run_json,ema", [('{"options": {"Best_From": "ema"}}', True), ('{"options": null}', False),
                                          ('{"options": {"best_from": null}}', False)])
def test_resolve_reads_run_json_as_go_does(tmp_path, run_json, ema):
    """run.json read as the Go side reads it (encoding/json): a key matched ignoring case, null as
    absent; the two sides pick the same model."""
    run = tmp_path / "run"
    a = run / "checkpoints" / "step-00000001"
    checkpoint.save(small(1), a / "model.safetensors")
    checkpoint.save(small(2), a / "ema.safetensors")
    os.symlink("checkpoints/step-00000001", run / "best")
    (run / "run.json").write_text(run_json)
    assert checkpoint.resolve(run) == str(run / "best" / ("ema.safetensors" if ema else "model.safetensors"))


def test_resolve_refuses_link_out_of_the_runs_checkpoints(tmp_path):
    """A best link into another run's checkpoints gives that run's model under this run's name: an
    error, as on the Go side. An absolute link into its own checkpoints is sound, and a directory
    holding a model of its own is that model, whatever its links."""
    other = tmp_path / "other" / "checkpoints" / "step-00000005"
    checkpoint.save(small(5), other / "model.safetensors")
    run = tmp_path / "run"
    own = run / "checkpoints" / "step-00000001"
    checkpoint.save(small(1), own / "model.safetensors")
    os.symlink("checkpoints/step-00000001", run / "last")
    os.symlink("../other/checkpoints/step-00000005", run / "best")
    with pytest.raises(CheckpointError, match="not into its checkpoints"):
        checkpoint.resolve(run)
    # (checkpoint.save refuses the run's directory: put there by hand)
    os.replace(checkpoint.save(small(2), tmp_path / "elsewhere.safetensors"), run / "model.safetensors")
    assert checkpoint.resolve(run) == str(run / "model.safetensors")
    os.remove(run / "model.safetensors")
    os.remove(run / "best")
    os.symlink(own, run / "best")
    assert checkpoint.resolve(run) == str(run / "best" / "model.safetensors")


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
        _files.write_atomic(str(p), boom)
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
        _files.write_atomic(str(p), full)
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(p)
    assert _files.oserror_message(e.value) == f"{p}: cannot write it: No space left on device"
    assert os.listdir(tmp_path) == []
    (tmp_path / "afile").write_text("x")
    under = tmp_path / "afile" / "sub" / "m.bin"
    with pytest.raises(NotADirectoryError) as e:
        _files.write_atomic(str(under), lambda f: f.write(b"x"))
    assert _files.oserror_message(e.value) == f"{under}: cannot write it: Not a directory"


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

    _files.write_atomic(str(path), write)
    assert re.fullmatch(r"\.x\.bin\.tmp-[0-9]+", seen[0]), seen
    os.chmod(path, 0o600)
    _files.write_atomic(str(path), lambda f: f.write(b"more"))
    assert path.read_bytes() == b"more" and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["x.bin"]


# ---------------------------------------------------------------------------
# the tensors' SHA-256 (metadata dinoclip.sha256)


def data_region(path):
    """The offset and length of the data buffer of a safetensors file."""
    n, _ = header(path)
    return 8 + n, os.path.getsize(path) - 8 - n


def raw_metadata(path):
    """A file's ``__metadata__`` as it is in the header (with the key, unlike read_metadata)."""
    return json.loads(header(path)[1]).get("__metadata__", {})


def listing_sha256(path):
    """The value of dinoclip.sha256 for the file at ``path``, computed here as docs/FORMAT.md
    gives it: the SHA-256 of one line per tensor in order of data offset."""
    n, raw = header(path)
    data = open(path, "rb").read()[8 + n:]
    h = json.loads(raw)
    h.pop("__metadata__", None)
    lines = ""
    for name, t in sorted(h.items(), key=lambda kv: kv[1]["data_offsets"]):
        b, e = t["data_offsets"]
        lines += (f"{len(name.encode())}:{name}\t{t['dtype']}\t{','.join(map(str, t['shape']))}\t{b}\t{e}\t"
                  f"{hashlib.sha256(data[b:e]).hexdigest()}\n")
    return hashlib.sha256(lines.encode()).hexdigest()


def flip_bit(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([b ^ 0x01]))


def rewrite_metadata(path, edit):
    """Rewrites ``path`` (a file :func:`checkpoint.save` wrote) with its tensors unchanged and
    ``edit(metadata)`` as its metadata (the header's, key included)."""
    sd = load_file(str(path))
    meta = raw_metadata(path)
    edit(meta)
    save_file(sd, str(path), metadata=meta)


REMEDY = "the file is corrupt or was edited; a tool that rewrote its tensors must drop the metadata key dinoclip.sha256"
CORRUPT = r"tensors do not match their recorded SHA-256: " + re.escape(REMEDY) + "$"


def test_recorded_value_is_the_listing_hash(tmp_path):
    p = checkpoint.save(small(2), tmp_path / "model.safetensors")
    assert raw_metadata(p)[checkpoint.SHA256_KEY] == listing_sha256(p)
    assert checkpoint.SHA256_KEY == "dinoclip.sha256" and "dinoclip.data_sha256" not in raw_metadata(p)


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_load_refuses_a_flipped_bit(tmp_path, where):
    p = checkpoint.save(small(), tmp_path / "model.safetensors")
    start, size = data_region(p)
    flip_bit(p, start + {"first": 0, "middle": size // 2, "last": size - 1}[where])
    # the header still checks out: the bit would otherwise load as a wrong weight
    assert checkpoint.read_config(p) == small().config
    with pytest.raises(CheckpointError, match="^" + re.escape(p) + ": " + CORRUPT):
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


def swap_offsets(path):
    """Exchanges the data_offsets of two tensors of the same shape in the header of ``path``,
    keeping its length (every check of the layout still passes), and returns their names."""
    n, raw = header(path)
    h = json.loads(raw)
    h.pop("__metadata__", None)
    offsets = {k: json.dumps(t["data_offsets"], separators=(",", ":")).encode() for k, t in h.items()}
    a, b = next((a, b) for a in h for b in h if a < b and h[a]["shape"] == h[b]["shape"]
                and len(offsets[a]) == len(offsets[b]))
    x, y = offsets[a], offsets[b]
    assert len(x) == len(y) and raw.count(x) == raw.count(y) == 1
    raw = raw.replace(x, b"\0").replace(y, x).replace(b"\0", y)
    with open(path, "r+b") as f:
        f.seek(8)
        f.write(raw)
    return a, b


def test_load_refuses_swapped_offsets(tmp_path):
    """Two same-shape tensors' data swapped in the header: refused, where without the key the
    file loads with the two exchanged (what the key's listing of the table guards against)."""
    m = small(6)
    p = checkpoint.save(m, tmp_path / "model.safetensors")
    swap_offsets(p)
    with pytest.raises(CheckpointError, match="^" + re.escape(p) + ": " + CORRUPT):
        checkpoint.load(p)
    q = checkpoint.save(m, tmp_path / "unkeyed.safetensors")
    rewrite_metadata(q, lambda meta: meta.pop(checkpoint.SHA256_KEY))
    a, b = swap_offsets(q)
    sd = checkpoint.load(q).state_dict()
    assert torch.equal(sd[a], m.state_dict()[b]) and torch.equal(sd[b], m.state_dict()[a])


def test_tool_that_keeps_the_metadata_is_told_the_remedy(tmp_path):
    """A tool that converts the tensors (to fp16) and copies the metadata (safe_open's, key
    included) makes a file that is refused, with what the tool must do; dropping the key loads."""
    from safetensors import safe_open

    p = checkpoint.save(small(7), tmp_path / "model.safetensors")
    with safe_open(p, "pt") as f:
        meta = f.metadata()
        sd = {k: f.get_tensor(k).to(torch.float16) for k in f.keys()}
    assert checkpoint.SHA256_KEY in meta
    save_file(sd, p, metadata=meta)
    with pytest.raises(CheckpointError) as e:
        checkpoint.load(p)
    assert str(e.value) == f"{p}: tensors do not match their recorded SHA-256: {REMEDY}"
    meta.pop(checkpoint.SHA256_KEY)
    save_file(sd, p, metadata=meta)
    assert checkpoint.load(p).input_proj.weight.dtype == torch.float32


def test_file_without_the_key_loads(tmp_path):
    """Files without the key (safetensors' save_file) load unverified."""
    m = small(4)
    p = checkpoint.save(m, tmp_path / "model.safetensors")
    rewrite_metadata(p, lambda meta: meta.pop(checkpoint.SHA256_KEY))
    assert checkpoint.SHA256_KEY not in raw_metadata(p)
    back = checkpoint.load(p)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), back.state_dict().values()))


@pytest.mark.parametrize("value", ["", "abc", "upper", "long", "g" * 64])
def test_malformed_key_refused(tmp_path, value):
    """As on the Go side, when the header is read: by load, read_metadata and read_config."""
    p = checkpoint.save(small(), tmp_path / "model.safetensors")
    recorded = raw_metadata(p)[checkpoint.SHA256_KEY]
    value = {"upper": recorded.upper(), "long": recorded + "0"}.get(value, value)
    rewrite_metadata(p, lambda meta: meta.update({checkpoint.SHA256_KEY: value}))
    for read in (checkpoint.load, checkpoint.read_metadata, checkpoint.read_config):
        with pytest.raises(CheckpointError, match=f"metadata dinoclip.sha256 {re.escape(repr(value))} is not a SHA-256"):
            read(p)


def test_unknown_tensor_field_refused(tmp_path):
    """A tensor entry with a field besides dtype, shape and data_offsets is refused, as the Go side
    refuses it: no writer puts one there."""
    p = checkpoint.save(small(), tmp_path / "model.safetensors")
    n, raw = header(p)
    h = json.loads(raw)
    first = next(k for k in h if k != "__metadata__")
    h[first]["dinoclip.sha256"] = "0" * 64
    text = json.dumps(h, separators=(",", ":"))
    text += " " * (-len(text) % 8)
    data = open(p, "rb").read()[8 + n:]
    write_raw(tmp_path / "model.safetensors", text, data)
    for read in (checkpoint.load, checkpoint.read_metadata, checkpoint.read_config):
        with pytest.raises(CheckpointError, match=f"tensor {re.escape(repr(first))} has unknown field 'dinoclip.sha256'"):
            read(p)


def test_metadata_handed_back_lacks_the_key(tmp_path):
    """load's model.metadata, load_state_dict's and read_metadata's metadata leave the key out
    (it was verified; copied into a file of other tensors it would refuse that file); saving
    records it anew, whatever the metadata given holds (a stale one is replaced)."""
    p = checkpoint.save(small(5), tmp_path / "a.safetensors", metadata={"step": 2})
    recorded = raw_metadata(p)[checkpoint.SHA256_KEY]
    want = {"format": "dinoclip-model/1", "config": raw_metadata(p)["config"], "step": "2"}
    assert checkpoint.load(p).metadata == want
    assert checkpoint.load_state_dict(p)[1] == want
    assert checkpoint.read_metadata(p) == want
    p2 = checkpoint.save(small(5), tmp_path / "b.safetensors", metadata={"step": 2, checkpoint.SHA256_KEY: "0" * 64})
    assert raw_metadata(p2)[checkpoint.SHA256_KEY] == recorded
    assert open(p, "rb").read() == open(p2, "rb").read()


def write_raw(path, header_text, data=b""):
    h = header_text.encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + data)
    return path


@pytest.mark.parametrize("text,key", [
    ('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', "a"),
    ('{"__metadata__":{"format":"pt","format":"dinoclip-optimizer/1"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', "format"),
    ('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"dtype":"F64"}}', "dtype"),
])
def test_duplicate_key_refused(tmp_path, text, key):
    """A key repeated anywhere in the header is refused, as the Go side refuses it, rather than
    the last one taken."""
    p = write_raw(tmp_path / "d.safetensors", text, bytes(4))
    for read in (checkpoint.load, checkpoint.read_metadata):
        with pytest.raises(CheckpointError, match=f"malformed safetensors header: duplicate key {key!r}$"):
            read(p)


@pytest.mark.parametrize("text,data,want", [
    ('{"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4,
     "__metadata__ value for 'k' must be a string, not 1"),
    ('{"__metadata__":{"k":null},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4,
     "__metadata__ value for 'k' must be a string, not null"),
    ('{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}', 20,
     "tensor 'a': shape [2, 3] of F32 needs 24 bytes but data_offsets [0, 20] hold 20"),
    ('{"a":{"dtype":"F16","shape":[4],"data_offsets":[0,16]}}', 16,
     "tensor 'a': shape [4] of F16 needs 8 bytes but data_offsets [0, 16] hold 16"),
    # thousands of huge dimensions: worked out a dimension at a time, not as a product of millions
    # of digits (which took minutes, and printed, raised Python's own ValueError)
    ('{"a":{"dtype":"F32","shape":[' + ",".join(["4611686018427387904"] * 200000) + '],"data_offsets":[0,4]}}', 4,
     "tensor 'a': shape [4611686018427387904, 4611686018427387904, 4611686018427387904, 4611686018427387904, "
     "4611686018427387904, 4611686018427387904, 4611686018427387904, 4611686018427387904, ...] of F32 needs 2^64 "
     "or more bytes but data_offsets [0, 4] hold 4"),
])
def test_tampered_header_named(tmp_path, text, data, want):
    """A header whose metadata holds a value that is no string, or whose tensor's shape and dtype
    do not fill its byte range, is refused naming the key or tensor, as the Go side does (the
    safetensors library's words named neither)."""
    p = write_raw(tmp_path / "t.safetensors", text, bytes(data))
    for read in (checkpoint.load, checkpoint.read_metadata):
        with pytest.raises(CheckpointError, match=re.escape(f"{p}: malformed safetensors header: {want}")):
            read(p)


class CountingOpen:
    """Stands in for ``open_regular`` in the checkpoint module, counting the bytes read through it."""

    def __init__(self):
        self.read = 0

    def __call__(self, *args, **kwargs):
        f = open_regular(*args, **kwargs)
        counter = self
        real_read = f.read

        class Wrapped:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                f.close()

            def read(self, n=-1):
                b = real_read(n)
                counter.read += len(b)
                return b

            def __getattr__(self, name):
                return getattr(f, name)

        return Wrapped()


def test_huge_wrong_file_refused_without_reading_it(tmp_path, monkeypatch):
    """A sparse 3 GB file of zeros, and a small model followed by 3 GB more: refused from the
    header and the file's size, reading no more than the header."""
    zeros = tmp_path / "zeros.safetensors"
    with open(zeros, "wb") as f:
        f.truncate(3 << 30)
    grown = checkpoint.save(small(), tmp_path / "grown.safetensors")
    n, _ = header(grown)
    size = os.path.getsize(grown)
    with open(grown, "r+b") as f:
        f.truncate(size + (3 << 30))
    for p, pattern, most in ((zeros, "not a safetensors file", 8),
                             (grown, f"the file is {size + (3 << 30)} bytes, {3 << 30} bytes more than its safetensors "
                              r"header describes \(trailing data\)", 8 + n)):
        counting = CountingOpen()
        monkeypatch.setattr(checkpoint, "open_regular", counting)
        with pytest.raises(CheckpointError, match=pattern):
            checkpoint.load(p)
        assert counting.read <= most, (p, counting.read)


def test_file_longer_than_its_header_says_refused(tmp_path):
    p = checkpoint.save(small(), tmp_path / "model.safetensors")
    with open(p, "ab") as f:
        f.write(b"\0" * 8)
    with pytest.raises(CheckpointError, match=r"8 bytes more than its safetensors header describes \(trailing data\)"):
        checkpoint.load(p)
    os.truncate(p, os.path.getsize(p) - 16)
    with pytest.raises(CheckpointError, match="truncated, or not a safetensors file"):
        checkpoint.load(p)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_dev_zero_refused():
    with pytest.raises(OSError, match="/dev/zero: a device, not a regular file"):
        checkpoint.load("/dev/zero")


def test_optimizer_file_refused_before_its_data_is_read(tmp_path, monkeypatch):
    p = tmp_path / "optimizer.safetensors"
    save_file({"exp_avg": torch.zeros(1 << 16), "exp_avg_sq": torch.zeros(1 << 16)}, str(p),
              metadata={"format": "dinoclip-optimizer/1", "state": "{}"})
    n, _ = header(p)
    counting = CountingOpen()
    monkeypatch.setattr(checkpoint, "open_regular", counting)
    with pytest.raises(CheckpointError, match="format 'dinoclip-optimizer/1'.*not a model file"):
        checkpoint.load(p)
    assert counting.read <= 8 + n


@pytest.mark.skipif(os.name != "posix", reason="symbolic links, named pipes and file modes are POSIX's")
def test_atomic_write_goes_through_links_and_refuses_what_it_cannot_replace(tmp_path):
    """As the Go side's atomicfile.Write: a link at the path is written through (the file it
    leads to, link after link, is replaced and the links kept), and what the rename would turn
    into a plain file (a device, a named pipe, a directory) or a read-only file is refused,
    one line naming it."""
    (tmp_path / "real").mkdir()
    os.symlink("real/target.bin", tmp_path / "hop")
    os.symlink("hop", tmp_path / "out.bin")
    _files.write_atomic(str(tmp_path / "out.bin"), lambda f: f.write(b"new"))
    assert os.readlink(tmp_path / "out.bin") == "hop" and os.readlink(tmp_path / "hop") == "real/target.bin"
    assert (tmp_path / "real" / "target.bin").read_bytes() == b"new"
    assert sorted(os.listdir(tmp_path / "real")) == ["target.bin"]

    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "ro.bin").write_bytes(b"keep")
    os.chmod(tmp_path / "ro.bin", 0o444)
    (tmp_path / "dir").mkdir()
    refused = [("pipe", "it is a named pipe, not a regular file; refusing to replace it"),
               ("ro.bin", "the file is read-only; refusing to replace it"),
               ("dir", "it is a directory, not a regular file; refusing to replace it")]
    if os.geteuid() == 0:  # (only root makes device nodes)
        os.mknod(tmp_path / "nulldev", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        refused.append(("nulldev", "it is a device, not a regular file; refusing to replace it"))
    for name, why in refused:
        os.symlink(name, tmp_path / f"to-{name}")
        for p in (tmp_path / name, tmp_path / f"to-{name}"):
            with pytest.raises(OSError) as e:
                _files.write_atomic(str(p), lambda f: f.write(b"x"))
            assert _files.oserror_message(e.value) == f"{tmp_path / name}: {why}"
    assert stat.S_ISFIFO(os.lstat(tmp_path / "pipe").st_mode) and (tmp_path / "ro.bin").read_bytes() == b"keep"
    assert os.path.isdir(tmp_path / "dir")
    # No directory the user did not name is made: none for a name ending in a separator, none
    # where a link leads into one that does not exist.
    os.symlink("nodir/x.bin", tmp_path / "dangling.bin")
    for p, why in ((str(tmp_path / "new.bin") + os.sep, "the name ends with a separator"),
                   (tmp_path / "dangling.bin", "a symbolic link to .*nodir/x.bin, in a directory that does not exist")):
        with pytest.raises(OSError, match=why):
            _files.write_atomic(str(p), lambda f: f.write(b"x"))
    assert not os.path.lexists(tmp_path / "new.bin") and not os.path.lexists(tmp_path / "nodir")
    if os.geteuid() == 0:
        assert stat.S_ISCHR(os.lstat(tmp_path / "nulldev").st_mode)
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]


@pytest.mark.skipif(os.name != "posix", reason="symbolic links are POSIX's")
def test_atomic_write_resolves_dotdot_after_a_link_as_the_system_does(tmp_path):
    """LINK/../x is x beside where LINK leads (as open() takes it), not beside LINK: the file is
    written there, with its temporary in that directory (a rename cannot cross filesystems)."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    os.symlink(tmp_path / "a" / "b", tmp_path / "L")
    assert _files.destination(str(tmp_path / "L" / ".." / "x")) == str(tmp_path / "a" / "x")
    seen = []

    def write(f):
        seen.extend(n for n in os.listdir(tmp_path / "a") if ".tmp-" in n)
        f.write(b"data")

    _files.write_atomic(str(tmp_path / "L" / ".." / "x"), write)
    assert (tmp_path / "a" / "x").read_bytes() == b"data" and not (tmp_path / "x").exists()
    assert len(seen) == 1


@pytest.mark.skipif(os.name != "posix", reason="symbolic links are POSIX's")
def test_atomic_write_names_what_stands_in_the_way_of_its_directory(tmp_path):
    """A directory to write in that is a dangling link, or a regular file, is named, not "File
    exists"."""
    os.symlink(tmp_path / "nowhere", tmp_path / "ckdir")
    (tmp_path / "afile").write_text("x")
    for d, what in (("ckdir", f"a symbolic link to {tmp_path / 'nowhere'}, which does not exist"),
                    ("afile", "not a directory")):
        p = tmp_path / d / "m.bin"
        with pytest.raises(OSError) as e:
            _files.write_atomic(str(p), lambda f: f.write(b"x"))
        assert _files.oserror_message(e.value) == f"{p}: cannot write it: {tmp_path / d} is {what}"
    assert not (tmp_path / "nowhere").exists()


def _leave_files(d, names, recent):
    """Writes the files ``names`` in ``d``, each unmodified for twice a sweep's age but ``recent``;
    returns that age's mtime."""
    old = os.stat(d).st_mtime - 2 * _files.STALE_AGE
    for name in names:
        (d / name).write_bytes(b"partial")
        if name != recent:
            os.utime(d / name, (old, old))
    return old


@pytest.mark.skipif(os.name != "posix", reason="flock is POSIX's")
def test_atomic_write_sweeps_what_killed_writers_of_the_file_left(tmp_path, capfd):
    """Before writing, the temporaries of the same file that a killed writer left (regular files
    named .BASE.tmp-N, whose lock nobody holds, unmodified for a minute) are removed, as the Go
    side's atomicfile.SweepStale removes them; a held, a recent one, another file's and any
    other name are left. What was removed, and what was left as perhaps another writer's, is
    said on stderr."""
    import fcntl

    names = {".x.bin.tmp-1": True, ".x.bin.tmp-2": False, ".x.bin.tmp-3": False, ".y.bin.tmp-4": False,
             ".x.bin.tmp-5a": False, "x.bin.tmp-6": False}
    old = _leave_files(tmp_path, names, recent=".x.bin.tmp-3")
    os.symlink(tmp_path / ".x.bin.tmp-1", tmp_path / ".x.bin.tmp-7")
    os.utime(tmp_path / ".x.bin.tmp-7", (old, old), follow_symlinks=False)
    with open(tmp_path / ".x.bin.tmp-2", "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # a writer at work
        _files.write_atomic(str(tmp_path / "x.bin"), lambda f: f.write(b"data"))
    left = set(os.listdir(tmp_path))
    assert left == {"x.bin", ".x.bin.tmp-7"} | {n for n, stale in names.items() if not stale}, left
    err = capfd.readouterr().err
    target = tmp_path / "x.bin"
    assert f"dinoclip: removed {tmp_path / '.x.bin.tmp-1'}, left by a dinoclip killed while writing {target}\n" in err
    for live in (".x.bin.tmp-2", ".x.bin.tmp-3"):
        assert f"dinoclip: warning: {tmp_path / live}: left by a dinoclip killed while writing {target}, or being " \
               "written by another one now" in err, err
    assert err.count("\n") == 3, err


@pytest.mark.skipif(os.name != "posix", reason="flock is POSIX's")
def test_sweep_of_names(tmp_path, capfd):
    """sweep_stale_temporaries removes the stale temporaries of the names it is given (a run whose
    shards are done writes none of them again), and leaves a recent or held one, another name's,
    and any other name, without a word of them."""
    import fcntl

    names = {".a.npy.tmp-1": True, ".b.images.txt.tmp-22": True, ".a.npy.tmp-3": False, ".c.npy.tmp-4": False,
             ".d.npy.tmp-5": False, "a.npy": False, ".a.npy.tmp-x": False}
    _leave_files(tmp_path, names, recent=".a.npy.tmp-3")
    with open(tmp_path / ".c.npy.tmp-4", "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # a writer at work
        _files.sweep_stale_temporaries(str(tmp_path), ["a.npy", "b.images.txt", "c.npy"])
    assert set(os.listdir(tmp_path)) == {n for n, stale in names.items() if not stale}
    err = capfd.readouterr().err
    assert err.count("dinoclip: removed ") == 2 and "warning" not in err, err


def test_atomic_write_of_a_long_name(tmp_path):
    """A name the system allows but too long for a temporary's additions (240 to 255 bytes) is
    written, its temporary named as the Go side's atomicfile.TempBase names it (the expected name
    is Go's, for the same base), so that either side's sweep knows the other's leftovers."""
    base = "é" * 123 + ".npy"  # 250 bytes
    assert _files._temp_base(base) == "é" * 115 + "~bf24afa6"
    assert _files._temp_base("x" * 239) == "x" * 239
    _files.write_atomic(str(tmp_path / base), lambda f: f.write(b"data"))
    assert os.listdir(tmp_path) == [base]
    old = os.stat(tmp_path).st_mtime - 2 * _files.STALE_AGE
    left = tmp_path / f".{_files._temp_base(base)}.tmp-7"
    left.write_bytes(b"partial")
    os.utime(left, (old, old))
    _files.write_atomic(str(tmp_path / base), lambda f: f.write(b"again"))
    assert os.listdir(tmp_path) == [base]


@pytest.mark.skipif(not hasattr(os, "kill") or os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("sig, rc", [("SIGTERM", 143), ("SIGINT", -2)])  # (KeyboardInterrupt: as killed by it)
def test_atomic_write_removes_its_temporary_when_a_signal_ends_it(tmp_path, sig, rc):
    """A command line (exit_on_sigterm) ended by SIGTERM, or by Ctrl-C, while it writes leaves
    no temporary behind."""
    import signal
    import subprocess
    import sys

    # (Ctrl-C made KeyboardInterrupt in the child: Python does so only where SIGINT starts at its
    # default, and tests run as a job a script started with & inherit it ignored.)
    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "from dinoclip import _files\n"
            "_files.exit_on_sigterm()\n"
            "def write(f):\n"
            "    f.write(b'partial'); f.flush(); print('writing', flush=True); time.sleep(60)\n"
            "_files.write_atomic(sys.argv[1], write)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "out.bin")], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    try:
        assert p.stdout.readline() == b"writing\n"
        assert [n for n in os.listdir(tmp_path) if n.startswith(".out.bin.tmp-")]
        p.send_signal(getattr(signal, sig))
        assert p.wait(timeout=30) == rc
    finally:
        p.kill()
        p.wait()
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "kill") or os.name != "posix", reason="POSIX signals")
def test_sigterm_ends_quietly(tmp_path):
    """A command line ended by SIGTERM (exit_on_sigterm) prints nothing of the objects torn down
    as it ends, whose finalisers may fail then (a DataLoader whose workers the same signal
    ended)."""
    import signal
    import subprocess
    import sys

    code = ("import time\n"
            "from dinoclip import _files\n"
            "_files.exit_on_sigterm()\n"
            "class Fragile:\n"
            "    def __del__(self):\n"
            "        raise RuntimeError('worker killed by signal')\n"
            "held = [Fragile()]\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert p.stdout.readline() == b"ready\n"
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 143 and err == b"", err


def test_dotdot_after_a_missing_directory_is_refused(tmp_path, monkeypatch):
    """NEW/../x names nothing while NEW does not exist, as the system says: refused, and NEW is
    not made (os.makedirs would make it), for an output file and for an --out directory."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError):
        _files.write_atomic("NEW/../x.bin", lambda f: f.write(b"x"))
    with pytest.raises(FileNotFoundError):
        _files.make_dirs("NEW/../out")
    assert os.listdir(tmp_path) == []
    (tmp_path / "there").mkdir()
    _files.make_dirs("there/../out")
    assert sorted(os.listdir(tmp_path)) == ["out", "there"]


def test_save_takes_model_names_as_strings(tmp_path):
    """The names of the training data's models (dinov2, clip) are strings, as dinoclip compares
    them: None leaves one out, anything else is refused (JSON text of it was recorded as a name)."""
    m = ProjectorWithResiduals(input_dim=8, hidden_dim=16, num_residual_blocks=1, output_dim=4)
    path = checkpoint.save(m, tmp_path / "m.safetensors", {"dinov2": "facebook/dinov2-base", "clip": None})
    meta = checkpoint.read_metadata(path)
    assert meta["dinov2"] == "facebook/dinov2-base" and "clip" not in meta
    for bad in ({"a": 1}, 5, "", "a\x1b[2Kb", "x" * 4097):
        with pytest.raises(checkpoint.CheckpointError, match="want a model's name"):
            checkpoint.save(m, tmp_path / "bad.safetensors", {"clip": bad})
    assert not (tmp_path / "bad.safetensors").exists()
    # a local folder's name with a wide space is one, as the Go side takes it
    path = checkpoint.save(m, tmp_path / "m.safetensors", {"clip": "/home/u/モデル\u3000clip"})
    assert checkpoint.read_metadata(path)["clip"] == "/home/u/モデル\u3000clip"


def test_save_refuses_a_runs_and_an_indexs_places(tmp_path):
    """A model saved into a run directory would be what the run's name loads, before its best and
    last; one in a checkpoint would meet another model's optimizer state; one in an index, a file
    of dinoclip index's. Each is refused, and nothing is written; beside them it is saved."""
    run = tmp_path / "run"
    step = run / "checkpoints" / "step-00000001"
    checkpoint.save(small(1), step / "model.safetensors")
    (step / checkpoint.OPTIMIZER_FILE).write_bytes(b"x")
    os.symlink("checkpoints/step-00000001", run / "best")
    (run / "run.json").write_text("{}")
    index = tmp_path / "index"
    index.mkdir()
    (index / "manifest.json").write_text('{"format": "dinoclip-index/1"}')
    for where, why in [(run, "in a training run directory"), (run / "best", "in a training checkpoint"),
                       (step / "model.safetensors", "in a training checkpoint"),
                       (run / "checkpoints" / "mine.safetensors", "in the checkpoints of the training run"),
                       (run / "checkpoints" / "step-00000002" / "model.safetensors", "in the checkpoints of the training run"),
                       (index / "m.safetensors", "in a dinoclip search index")]:
        with pytest.raises(CheckpointError, match=why):
            checkpoint.save(small(2), where)
    assert checkpoint.resolve(run) == str(run / "best" / "model.safetensors")
    assert torch.equal(checkpoint.load(run).input_proj.weight, small(1).input_proj.weight)
    assert sorted(os.listdir(index)) == ["manifest.json"]
    assert os.path.isfile(checkpoint.save(small(2), tmp_path / "beside.safetensors"))
    # A folder of the caller's own that holds folders named as a run's (a PyTorch project's
    # checkpoints/, a best/) is no run: saved there, as the Go commands write their outputs there.
    project = tmp_path / "project"
    for name in ("checkpoints", "best", "last"):
        (project / name).mkdir(parents=True)
    assert os.path.isfile(checkpoint.save(small(2), project / "model.safetensors"))


def test_save_and_load_refuse_more_blocks_than_go_handles(tmp_path):
    """The Go side handles at most MAX_BLOCKS residual blocks: such a model is not written, nor
    read (a file made elsewhere)."""
    m = ProjectorWithResiduals(input_dim=2, output_dim=2, hidden_dim=2, num_residual_blocks=checkpoint.MAX_BLOCKS + 1)
    with pytest.raises(CheckpointError, match="4097 residual blocks, more than the 4096 dinoclip handles"):
        checkpoint.save(m, tmp_path / "deep.safetensors")
    assert not os.listdir(tmp_path)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(tmp_path / "deep.safetensors"))
    with pytest.raises(CheckpointError, match="more than the 4096 dinoclip handles"):
        checkpoint.load(tmp_path / "deep.safetensors")


@pytest.mark.parametrize("legacy", [False, True])
def test_a_torch_file_is_told_for_what_it_is(tmp_path, legacy):
    """The original project's .pt (torch.save's zip, or its legacy pickle) given where a dinoclip
    model belongs is named as such, with the conversion to run, as the Go side names it."""
    pt = tmp_path / "orig.pt"
    torch.save(small(0).state_dict(), pt, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError, match=r"a PyTorch file \(torch.save's format\), not safetensors: python -m dinoclip.convert to-dinoclip"):
        checkpoint.load(pt)


@pytest.mark.parametrize("head", [b"PK\x03\x04\x00\x00\x00\x00", b"\x80\x02\x00\x00\x00\x00\x00\x00"])
def test_a_torch_file_is_told_by_a_header_past_its_end(tmp_path, head):
    """A zip or pickle whose first 8 bytes read as a header length within safetensors' limit (a
    zip entry of version 0 and no flags: 67 MB) is still told as a PyTorch file where that header
    would run past the file's end, as the Go side tells it; bytes of no such file are truncated."""
    f = tmp_path / "orig.pt"
    f.write_bytes(head + b"archive/data.pkl" + bytes(64))
    with pytest.raises(CheckpointError, match=r"a PyTorch file \(torch.save's format\), not safetensors"):
        checkpoint.load(f)
    f.write_bytes(b"\x50\x4b\x03\x05\x00\x00\x00\x00" + bytes(64))
    with pytest.raises(CheckpointError, match="truncated safetensors header"):
        checkpoint.load(f)
    # a header length of 640 mod 65536 begins as a pickle does: cut short, its opening brace tells
    # it from one
    f.write_bytes(struct.pack("<Q", 640) + b'{"a"')
    with pytest.raises(CheckpointError, match="truncated safetensors header"):
        checkpoint.load(f)


def test_a_number_of_thousands_of_digits_in_the_header(tmp_path):
    """A header holding an integer beyond Python's 4300 digits is refused as no safetensors file,
    not with Python's own ValueError."""
    h = ('{"a":1' + "0" * 5000 + "}").encode()
    p = tmp_path / "digits.safetensors"
    p.write_bytes(struct.pack("<Q", len(h)) + h)
    with pytest.raises(CheckpointError, match="not a safetensors file .*4300 digits"):
        checkpoint.load(p)


def test_save_refuses_a_header_over_the_readers_limit(tmp_path):
    """Metadata that makes a header over the 100,000,000-byte limit of load (and of the Go side,
    and of the safetensors library) is refused before anything is written: save writes nothing
    they would refuse."""
    p = tmp_path / "m.safetensors"
    with pytest.raises(CheckpointError, match=r"m\.safetensors: the metadata makes a safetensors header of \d+ bytes, "
                                              r"over the 100000000-byte limit of its readers .*: shorten the metadata$"):
        checkpoint.save(small(), p, metadata={"note": "x" * 100_000_100})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("config,key", [
    ('{"input_dim":12,"input_dim":99,"hidden_dim":16,"output_dim":8,"num_residual_blocks":2}', "input_dim"),
    # matched ignoring case, as the Go side's strictjson matches keys
    ('{"input_dim":12,"Input_Dim":99,"hidden_dim":16,"output_dim":8,"num_residual_blocks":2}', "Input_Dim"),
])
def test_config_key_given_twice_refused(tmp_path, config, key):
    """A key repeated in the metadata config is refused naming it, as the Go side refuses it, not
    read as its last value (which, put the other way round, had the tensors' shapes blamed)."""
    p = checkpoint.save(small(), tmp_path / "m.safetensors")
    rewrite_metadata(p, lambda meta: meta.update(config=config))
    for read in (checkpoint.load, checkpoint.read_config):
        with pytest.raises(CheckpointError, match=re.escape(f"key {key!r} appears twice in one object")):
            read(p)


@pytest.mark.skipif(os.name != "posix", reason="symbolic links are POSIX's")
def test_atomic_write_names_a_loop_of_links_in_its_way(tmp_path):
    """A directory to write in that is a link in a loop of links is said to be one (it was "a
    symbolic link to loop2, which does not exist", though loop2 exists)."""
    os.symlink("loop2", tmp_path / "loop1")
    os.symlink("loop1", tmp_path / "loop2")
    p = tmp_path / "loop1" / "m.bin"
    with pytest.raises(OSError) as e:
        _files.write_atomic(str(p), lambda f: f.write(b"x"))
    assert _files.oserror_message(e.value) == (f"{p}: cannot write it: {tmp_path / 'loop1'} is a symbolic link to loop2, "
                                               "which is in a loop of symbolic links")


ONE, TWO = "checkpoints/step-00000001", "checkpoints/step-00000002"


@pytest.mark.parametrize("damage,recorded,want", [
    ("file", f'"{ONE}"', "its best is a file, not a link to its best checkpoint; link it again (mv '{best}' "
                         f"'{{best}}.damaged' && ln -s {ONE} '{{best}}')"),
    ("dir", f'"{ONE}"', "its best is a directory that holds no model.safetensors, not a link to its best checkpoint; "
                        f"link it again (mv '{{best}}' '{{best}}.damaged' && ln -s {ONE} '{{best}}')"),
    ("file, gone", f'"{ONE}"', "its best is a file, not a link to its best checkpoint, which is gone; move it aside "
                               "(mv '{best}' '{best}.damaged'), and its last checkpoint is used"),
    ("absent", f'"{ONE}"', f"it records its best checkpoint {ONE} in run.json, but has no best link (a copy that left "
                           f"links out?); link it again (ln -s {ONE} '{{best}}')"),
    ("copy", f'"{ONE}"', None),
    ("absent, gone", f'"{ONE}"', None),
    ("absent, after last", f'"{TWO}"', None),
    ("absent", f'"/elsewhere/{ONE}"', None),
    ("absent", "5", None),
])
def test_resolve_damaged_best_as_go_does(tmp_path, damage, recorded, want):
    """A best that is not a link, or absent where run.json records a best checkpoint that is there,
    is refused as the Go side refuses it (TestResolveDamagedBest), with the command that mends it
    (its paths quoted): last, which would be taken instead, is another model. A copy that followed
    the links, a run whose recorded best is gone or recorded after its last checkpoint (a resume
    going back), and a best recorded as no run writes it, take what they always took."""
    run = tmp_path / "my run"
    for step in (ONE, TWO):
        checkpoint.save(small(1), str(run / step) + os.sep)
    os.symlink(ONE if damage == "absent, after last" else TWO, run / "last")
    (run / "run.json").write_text('{"best": {"checkpoint": ' + recorded + '}}')
    best = run / "best"
    if damage.startswith("file"):
        best.write_text(ONE)
    elif damage == "dir":
        (best / "sub").mkdir(parents=True)
    elif damage == "copy":
        shutil.copytree(run / ONE, best)
    if damage.endswith("gone"):
        shutil.rmtree(run / ONE)
    if want is None:
        taken = best if damage == "copy" else run / "last"
        assert checkpoint.resolve(run) == str(taken / "model.safetensors")
        return
    with pytest.raises(CheckpointError) as e:
        checkpoint.resolve(run)
    assert want.format(best=best) in str(e.value)


@pytest.mark.parametrize("target,why", [("/nonexistent-disk/model.safetensors", "no such file or directory"),
                                        ("model.safetensors", "too many levels of symbolic links")])
def test_resolve_names_a_broken_model_link_as_go_does(tmp_path, target, why):
    """A checkpoint whose model.safetensors is a link leading nowhere (a disk not mounted, a loop)
    is said to be one, as the Go side says it, not taken for a directory holding no model."""
    ck = tmp_path / "ck"
    ck.mkdir()
    os.symlink(target, ck / "model.safetensors")
    for named in (ck, ck / "model.safetensors"):
        with pytest.raises(CheckpointError) as e:
            checkpoint.resolve(named)
        assert str(e.value) == f"model: {ck / 'model.safetensors'} is a symbolic link to {target}, which cannot be opened ({why})"
    # The same through a run's best or last link (a run kept in git-annex, its disk not mounted).
    for link in ("best", "last"):
        run = tmp_path / ("run-" + link)
        run.mkdir()
        os.rename(ck, run / "ck")
        ck = run / "ck"
        os.symlink("ck", run / link)
        with pytest.raises(CheckpointError) as e:
            checkpoint.resolve(run)
        assert str(e.value) == (f"model: {run / link / 'model.safetensors'} is a symbolic link to {target}, "
                                f"which cannot be opened ({why})")


@pytest.mark.parametrize("path,want", [
    ("runs/base", "runs/base"), ("my run", "'my run'"), ("it's", "'it'\\''s'"), ("", "''"), ("$HOME", "'$HOME'"),
    ("esc\x1b[31mdir/run", "$'esc\\x1b[31mdir/run'"), ("it's\n\\", "$'it\\'s\\x0a\\\\'"),
    ("c1\u009b/rtl\u202e.x", "$'c1\\xc2\\x9b/rtl\\xe2\\x80\\xae.x'"), (os.fsdecode(b"latin1 \xe9"), "$'latin1 \\xe9'"),
    ("-tdecoy/best", "./-tdecoy/best"), ("-rf run", "'./-rf run'"),
])
def test_shell_arg_as_go_writes_it(path, want):
    """A path in a command a message suggests is one shell word, written as the Go side's
    printable.ShellArg writes it (TestShellArg's cases), which bash reads back as the path."""
    from dinoclip._messages import shell_arg
    assert shell_arg(path) == want
    if shutil.which("bash"):
        import subprocess
        same = "./" + path if path.startswith("-") else path  # (the same file)
        assert subprocess.run(["bash", "-c", "printf %s " + want], capture_output=True).stdout == os.fsencode(same)
