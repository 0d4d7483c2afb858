#!/usr/bin/env python3
"""Golden reference dumps of the original ProjectorWithResiduals training step.

Builds the original PyTorch architecture (docs/MODEL.md; the class is dinoclip.model's,
from the package in python/src) at a small size, trains it for 20 steps with
torch.optim.AdamW + torch.optim.lr_scheduler.OneCycleLR and the unit-norm MSE loss
(docs/TRAINING.md), and records everything the Go reimplementation needs to check
itself against PyTorch in two safetensors files:

    <out>/golden_f64.safetensors   the whole run in float64
    <out>/golden_f32.safetensors   the same run in float32
    <out>/golden_{infonce,mse_infonce}_{f64,f32}.safetensors
                                   the same run with the InfoNCE loss, and with the MSE plus
                                   INFONCE_WEIGHT x InfoNCE, with CLIP's learnable logit scale
    <out>/golden_fullbatch_f64.safetensors
                                   a full-batch run in float64: one batch of float32-exact
                                   rows, every step, as `dinoclip train --precision fp64
                                   --batch ROWS --epochs STEPS` runs it from --init

Tensors in each file (all in the dtype of the run):
    init/<name>    every state_dict entry before any step (original names/shapes)
    out0           [B, out]      model output on batch 0 at init
    grad0/<name>   gradients of the first step (batch 0, at init)
    x              [S, B, in]    the batch of each step, in order
    t              [S, B, out]   the target of each step (row 0 of every batch is all zeros)
    loss           [S]           loss.item() of each step, before that step's update
    lr, beta1      [S]           lr and beta1 each optimizer step used
    final/<name>   weights after all S steps
    (InfoNCE runs) grad0/logit_scale [1], logit_scale [S] (before each step's update),
                   final_logit_scale [1]

The safetensors __metadata__ records the configuration and the torch version.
Usage: python python/tools/golden.py [--out DIR]
"""

import argparse
import json
import math
import os
import struct
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
import torch.optim.adam as _adam_mod
from safetensors.numpy import load_file, save

try:  # the one copy of the architecture lives in the dinoclip package (python/src)
    from dinoclip.model import ProjectorWithResiduals
except ImportError:  # not installed: use the source tree beside this script
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    from dinoclip.model import ProjectorWithResiduals

# ---- configuration (small) -------------------------------------------------
INPUT_DIM = 12
HIDDEN_DIM = 16
OUTPUT_DIM = 8
NUM_RESIDUAL_BLOCKS = 2
BATCH = 6
EPOCHS = 4
STEPS_PER_EPOCH = 5
STEPS = EPOCHS * STEPS_PER_EPOCH
MAX_LR = 1e-2
WEIGHT_DECAY = 0.01
BETA2 = 0.999
EPS = 1e-8
SEED = 1234            # torch.manual_seed for the model's initialisation
DATA_SEED = 5678       # torch.Generator seed for the batches

# OneCycleLR defaults (not passed; recorded from the scheduler object)
# pct_start=0.3, div_factor=25, final_div_factor=1e4, base_momentum=0.85, max_momentum=0.95


def unit_norm_mse(p, t):
    return F.mse_loss(F.normalize(p, dim=1), F.normalize(t, dim=1))


# The contrastive runs: CLIP's logit scale, stored as its log, initialised to log(1/0.07) and
# used as exp(logit_scale) clamped at 100 (docs/TRAINING.md).
INIT_LOGIT_SCALE = math.log(1 / 0.07)
MAX_LOGIT_SCALE = 100.0
INFONCE_WEIGHT = 0.5  # the weight of the InfoNCE term of the mse+infonce run


def infonce(p, t, logit_scale):
    """Symmetric InfoNCE over the batch: the mean of the cross-entropies of the rows
    (prediction -> target) and of the columns (target -> prediction) of the logits."""
    scale = logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
    logits = scale * F.normalize(p, dim=1) @ F.normalize(t, dim=1).T
    labels = torch.arange(p.shape[0])
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def objective(loss_name, p, t, logit_scale):
    if loss_name == "mse":
        return unit_norm_mse(p, t)
    if loss_name == "infonce":
        return infonce(p, t, logit_scale)
    if loss_name == "mse+infonce":
        return unit_norm_mse(p, t) + INFONCE_WEIGHT * infonce(p, t, logit_scale)
    raise ValueError(loss_name)


def make_batches():
    """All batches in float64 from one seeded generator; target row 0 is zeroed."""
    gen = torch.Generator().manual_seed(DATA_SEED)
    xs, ts = [], []
    for _ in range(STEPS):
        x = torch.randn(BATCH, INPUT_DIM, generator=gen, dtype=torch.float64)
        t = torch.randn(BATCH, OUTPUT_DIM, generator=gen, dtype=torch.float64)
        t[0].zero_()  # exercises the 1e-12 clamp of F.normalize
        xs.append(x)
        ts.append(t)
    return torch.stack(xs), torch.stack(ts)


FULLBATCH_DATA_SEED = 91011  # torch.Generator seed for the full-batch run's one batch


def make_fullbatch():
    """One batch, repeated every step: x, t ~ N(0,1) drawn in float64, rounded to float32 (so that
    float32 .npy shards hold them exactly), target row 0 zeroed."""
    gen = torch.Generator().manual_seed(FULLBATCH_DATA_SEED)
    x = torch.randn(BATCH, INPUT_DIM, generator=gen, dtype=torch.float64).float().double()
    t = torch.randn(BATCH, OUTPUT_DIM, generator=gen, dtype=torch.float64).float().double()
    t[0].zero_()
    return x.expand(STEPS, -1, -1).contiguous(), t.expand(STEPS, -1, -1).contiguous()


def initial_state():
    """The model's initial weights: PyTorch default init, built in float32 under
    torch.manual_seed(SEED). Both runs start from these values (exact in float64)."""
    torch.manual_seed(SEED)
    model = ProjectorWithResiduals(input_dim=INPUT_DIM, hidden_dim=HIDDEN_DIM, num_residual_blocks=NUM_RESIDUAL_BLOCKS, output_dim=OUTPUT_DIM)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class _PathSpy:
    """Records which AdamW implementation torch actually ran (foreach or single-tensor)."""

    def __init__(self):
        self.used = set()
        self._orig = {}

    def __enter__(self):
        for name, tag in (("_single_tensor_adam", "single_tensor"),
                          ("_multi_tensor_adam", "foreach"),
                          ("_fused_adam", "fused")):
            orig = getattr(_adam_mod, name, None)
            if orig is None:
                continue
            self._orig[name] = orig

            def wrapped(*a, __orig=orig, __tag=tag, **kw):
                self.used.add(__tag)
                return __orig(*a, **kw)

            setattr(_adam_mod, name, wrapped)
        return self

    def __exit__(self, *exc):
        for name, orig in self._orig.items():
            setattr(_adam_mod, name, orig)
        return False


def to_np(t):
    # .clone(): Tensor.numpy() shares memory, and the optimizer updates parameters in place
    return np.ascontiguousarray(t.detach().cpu().clone().numpy())


def run(dtype, init, xs64, ts64, epochs=EPOCHS, steps_per_epoch=STEPS_PER_EPOCH,
        data_seed=DATA_SEED, loss_name="mse",
        data_desc="x, t ~ N(0,1) drawn in float64 from torch.Generator().manual_seed(data_seed), "
                  "x then t per step, t row 0 zeroed, then cast to dtype"):
    torch.set_num_threads(1)
    model = ProjectorWithResiduals(input_dim=INPUT_DIM, hidden_dim=HIDDEN_DIM, num_residual_blocks=NUM_RESIDUAL_BLOCKS, output_dim=OUTPUT_DIM)
    model.load_state_dict(init, strict=True)
    model = model.to(dtype)
    xs = xs64.to(dtype)
    ts = ts64.to(dtype)

    groups = [{"params": list(model.parameters())}]
    logit_scale = None
    if loss_name != "mse":
        # Trained by the same AdamW without weight decay, as CLIP trains it; not in the model.
        logit_scale = torch.nn.Parameter(torch.tensor(INIT_LOGIT_SCALE, dtype=dtype))
        groups.append({"params": [logit_scale], "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=MAX_LR, betas=(0.9, BETA2), eps=EPS, weight_decay=WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=MAX_LR, epochs=epochs, steps_per_epoch=steps_per_epoch
    )

    tensors = {}
    for k, v in model.state_dict().items():
        tensors["init/" + k] = to_np(v)
    names = [n for n, _ in model.named_parameters()]

    losses, lrs, beta1s, scales = [], [], [], []
    spy = _PathSpy()
    with spy:
        for s in range(STEPS):
            opt.zero_grad(set_to_none=True)
            p = model(xs[s])
            loss = objective(loss_name, p, ts[s], logit_scale)
            loss.backward()
            if not torch.isfinite(loss):
                raise SystemExit(f"non-finite loss at step {s}: {loss.item()}")
            for n, prm in model.named_parameters():
                if prm.grad is None or not torch.isfinite(prm.grad).all():
                    raise SystemExit(f"missing/non-finite grad for {n} at step {s}")
            if s == 0:
                tensors["out0"] = to_np(p)
                for n, prm in model.named_parameters():
                    tensors["grad0/" + n] = to_np(prm.grad)
                if logit_scale is not None:
                    tensors["grad0/logit_scale"] = to_np(logit_scale.grad.reshape(1))
            if logit_scale is not None:
                scales.append(logit_scale.item())
            losses.append(loss.item())
            g = opt.param_groups[0]
            lrs.append(float(g["lr"]))
            beta1s.append(float(g["betas"][0]))
            opt.step()
            sched.step()

    for k, v in model.state_dict().items():
        tensors["final/" + k] = to_np(v)
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    tensors["x"] = to_np(xs)
    tensors["t"] = to_np(ts)
    tensors["loss"] = np.array(losses, dtype=np_dtype)
    tensors["lr"] = np.array(lrs, dtype=np_dtype)
    tensors["beta1"] = np.array(beta1s, dtype=np_dtype)
    if logit_scale is not None:
        tensors["logit_scale"] = np.array(scales, dtype=np_dtype)
        tensors["final_logit_scale"] = to_np(logit_scale.reshape(1))
    for k, v in tensors.items():
        assert v.dtype == np_dtype, (k, v.dtype)
    assert len(names) + (logit_scale is not None) == len([k for k in tensors if k.startswith("grad0/")])

    if spy.used - {"single_tensor", "foreach"} or len(spy.used) != 1:
        raise SystemExit(f"unexpected AdamW implementation(s): {sorted(spy.used)}")
    foreach = "true" if spy.used == {"foreach"} else "false"

    meta = {
        "input_dim": str(INPUT_DIM),
        "hidden_dim": str(HIDDEN_DIM),
        "output_dim": str(OUTPUT_DIM),
        "num_residual_blocks": str(NUM_RESIDUAL_BLOCKS),
        "batch": str(BATCH),
        "steps": str(STEPS),
        "epochs": str(epochs),
        "steps_per_epoch": str(steps_per_epoch),
        "max_lr": repr(MAX_LR),
        "weight_decay": repr(WEIGHT_DECAY),
        "beta2": repr(BETA2),
        "eps": repr(EPS),
        "pct_start": repr(0.3),
        "div_factor": repr(25.0),
        "final_div_factor": repr(1e4),
        "base_momentum": repr(0.85),
        "max_momentum": repr(0.95),
        "seed": str(SEED),
        "data_seed": str(data_seed),
        "dtype": "float64" if dtype == torch.float64 else "float32",
        "torch_version": torch.__version__,
        "foreach": foreach,
        "adamw_path": sorted(spy.used)[0],
        "init": "PyTorch default init built in float32 under torch.manual_seed(seed), then cast to dtype",
        "data": data_desc,
    }
    if loss_name != "mse":  # the MSE files keep the keys they always had
        meta["loss"] = loss_name
        meta["init_logit_scale"] = repr(INIT_LOGIT_SCALE)
        meta["max_logit_scale"] = repr(MAX_LOGIT_SCALE)
        meta["logit_scale_weight_decay"] = repr(0.0)
        if loss_name == "mse+infonce":
            meta["infonce_weight"] = repr(INFONCE_WEIGHT)
    # sanity: OneCycle values match the scheduler's own hyper-parameters
    assert abs(sched.total_steps - STEPS) == 0
    assert abs(lrs[0] - MAX_LR / 25.0) < 1e-15
    assert abs(beta1s[0] - 0.95) < 1e-15
    return tensors, meta


def serialize(tensors, meta):
    """safetensors bytes with a reproducible header.

    safetensors writes __metadata__ from a Rust HashMap, whose order changes from run to
    run; re-emit the header with the metadata keys sorted (tensor entries and data are
    left exactly as safetensors laid them out) so the files are byte-identical.
    """
    raw = save(tensors, metadata=meta)
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    fixed = {"__metadata__": dict(sorted(header.pop("__metadata__").items()))}
    fixed.update(header)
    h = json.dumps(fixed, separators=(",", ":"), ensure_ascii=True).encode("utf-8")
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def write_atomic(path, tensors, meta):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".golden-", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(serialize(tensors, meta))
            f.flush()
            os.fsync(f.fileno())
        back = load_file(tmp)  # round-trip check before the file goes in place
        assert sorted(back) == sorted(tensors)
        for k, v in tensors.items():
            assert back[k].dtype == v.dtype and back[k].shape == v.shape, k
            assert np.array_equal(back[k], v), k
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    default_out = os.path.normpath(os.path.join(here, "..", "..", "train", "testdata"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=default_out, help="output folder (default: %(default)s)")
    args = ap.parse_args(argv)

    torch.use_deterministic_algorithms(True)
    init = initial_state()
    xs64, ts64 = make_batches()
    for dtype, fname, loss_name in ((torch.float64, "golden_f64.safetensors", "mse"),
                                    (torch.float32, "golden_f32.safetensors", "mse"),
                                    (torch.float64, "golden_infonce_f64.safetensors", "infonce"),
                                    (torch.float32, "golden_infonce_f32.safetensors", "infonce"),
                                    (torch.float64, "golden_mse_infonce_f64.safetensors", "mse+infonce"),
                                    (torch.float32, "golden_mse_infonce_f32.safetensors", "mse+infonce")):
        tensors, meta = run(dtype, init, xs64, ts64, loss_name=loss_name)
        path = os.path.join(args.out, fname)
        write_atomic(path, tensors, meta)
        print(f"wrote {path} ({os.path.getsize(path)} bytes, {len(tensors)} tensors, "
              f"dtype {meta['dtype']}, torch {meta['torch_version']}, foreach={meta['foreach']})")
        print("  loss:", " ".join(f"{v:.6g}" for v in tensors["loss"]))
    # The full-batch run: the trainer's schedule depends only on the total step count, and a
    # full batch makes each epoch one step, so it is epochs=STEPS, steps_per_epoch=1.
    xs, ts = make_fullbatch()
    tensors, meta = run(torch.float64, init, xs, ts, epochs=STEPS, steps_per_epoch=1,
                        data_seed=FULLBATCH_DATA_SEED,
                        data_desc="one batch: x, t ~ N(0,1) drawn in float64 from "
                                  "torch.Generator().manual_seed(data_seed), rounded to float32, "
                                  "t row 0 zeroed; the same batch every step")
    path = os.path.join(args.out, "golden_fullbatch_f64.safetensors")
    write_atomic(path, tensors, meta)
    print(f"wrote {path} ({os.path.getsize(path)} bytes, full batch, float64)")
    print("  loss:", " ".join(f"{v:.6g}" for v in tensors["loss"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
