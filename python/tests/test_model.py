"""The model: names, order, shapes and parameter count of the original (docs/MODEL.md)."""

import math
from pathlib import Path

import pytest
import torch

from dinoclip.model import DEFAULT_CONFIG, ProjectorWithResiduals, num_parameters

GOLDEN = Path(__file__).resolve().parents[2] / "train" / "testdata" / "golden_f32.safetensors"


def expected_state_dict(i=768, h=2048, b=6, o=512):
    """The table of docs/MODEL.md: state_dict names and shapes, in order."""
    out = [("input_proj.weight", (h, i)), ("input_proj.bias", (h,))]
    for k in range(b):
        p = f"residual_blocks.{k}.layers."
        out += [(p + "0.weight", (h, h)), (p + "0.bias", (h,)),
                (p + "1.weight", (h,)), (p + "1.bias", (h,)),
                (p + "3.weight", (h, h)), (p + "3.bias", (h,)),
                (p + "4.weight", (h,)), (p + "4.bias", (h,))]
    out += [("hidden_norm.weight", (h,)), ("hidden_norm.bias", (h,)),
            ("output_proj.0.weight", (h // 2, h)), ("output_proj.0.bias", (h // 2,)),
            ("output_proj.2.weight", (o, h // 2)), ("output_proj.2.bias", (o,)),
            ("layer_norm.weight", (o,)), ("layer_norm.bias", (o,))]
    return out


def test_default_state_dict_names_order_shapes_and_count():
    m = ProjectorWithResiduals()
    got = [(k, tuple(v.shape)) for k, v in m.state_dict().items()]
    assert got == expected_state_dict()
    assert sum(p.numel() for p in m.parameters()) == 54_608_384
    assert num_parameters(DEFAULT_CONFIG) == 54_608_384
    assert m.config == DEFAULT_CONFIG
    assert list(m.config) == ["input_dim", "hidden_dim", "output_dim", "num_residual_blocks"]
    assert all(v.dtype == torch.float32 for v in m.state_dict().values())


@pytest.mark.parametrize("cfg", [(12, 16, 2, 8), (32, 64, 0, 16), (5, 7, 1, 3)])
def test_small_configs(cfg):
    i, h, b, o = cfg
    m = ProjectorWithResiduals(input_dim=i, hidden_dim=h, num_residual_blocks=b, output_dim=o)
    assert [(k, tuple(v.shape)) for k, v in m.state_dict().items()] == expected_state_dict(i, h, b, o)
    assert sum(p.numel() for p in m.parameters()) == num_parameters(m.config)
    assert m(torch.randn(3, i)).shape == (3, o)


def test_layers_are_the_originals():
    m = ProjectorWithResiduals(input_dim=8, hidden_dim=16, num_residual_blocks=1, output_dim=4)
    layers = m.residual_blocks[0].layers
    assert [type(l).__name__ for l in layers] == ["Linear", "LayerNorm", "GELU", "Linear", "LayerNorm"]
    assert layers[2].approximate == "none"  # exact erf GELU
    assert [type(l).__name__ for l in m.output_proj] == ["Linear", "GELU", "Linear"]
    for ln in (layers[1], layers[4], m.hidden_norm, m.layer_norm):
        assert ln.eps == 1e-5 and ln.elementwise_affine
    # default init: LayerNorm 1/0, Linear within +-1/sqrt(fan_in)
    assert torch.all(m.layer_norm.weight == 1) and torch.all(m.layer_norm.bias == 0)
    bound = 1 / math.sqrt(8)
    assert m.input_proj.weight.abs().max() <= bound and m.input_proj.bias.abs().max() <= bound


def test_forward_is_the_formula():
    torch.manual_seed(0)
    m = ProjectorWithResiduals(input_dim=6, hidden_dim=10, num_residual_blocks=2, output_dim=4).double()
    for p in m.parameters():  # non-trivial LayerNorm parameters too
        torch.nn.init.normal_(p, std=0.5)
    x = torch.randn(5, 6, dtype=torch.float64)
    F = torch.nn.functional
    ln = lambda mod, v: F.layer_norm(v, v.shape[-1:], mod.weight, mod.bias, 1e-5)  # noqa: E731
    h = x @ m.input_proj.weight.T + m.input_proj.bias
    for blk in m.residual_blocks:
        L = blk.layers
        y = ln(L[1], h @ L[0].weight.T + L[0].bias)
        y = 0.5 * y * (1 + torch.erf(y / math.sqrt(2)))
        y = ln(L[4], y @ L[3].weight.T + L[3].bias)
        h = h + y
    h = ln(m.hidden_norm, h)
    h = h @ m.output_proj[0].weight.T + m.output_proj[0].bias
    h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
    h = h @ m.output_proj[2].weight.T + m.output_proj[2].bias
    want = ln(m.layer_norm, h)
    torch.testing.assert_close(m(x), want, rtol=1e-12, atol=1e-12)


def test_matches_golden_init_and_output():
    """golden.py (which imports this class) made train/testdata/golden_f32.safetensors: the same
    seed must give the same initial weights, and the same output on batch 0."""
    from safetensors.torch import load_file

    g = load_file(str(GOLDEN))
    torch.manual_seed(1234)
    m = ProjectorWithResiduals(input_dim=12, hidden_dim=16, num_residual_blocks=2, output_dim=8)
    for k, v in m.state_dict().items():
        assert torch.equal(v, g["init/" + k]), k
    torch.testing.assert_close(m(g["x"][0]), g["out0"], rtol=1e-5, atol=1e-6)


def test_bad_config():
    with pytest.raises(ValueError, match="hidden_dim"):
        ProjectorWithResiduals(input_dim=4, hidden_dim=1, num_residual_blocks=1, output_dim=4)
    with pytest.raises(ValueError, match="lacks"):
        ProjectorWithResiduals.from_config({"input_dim": 4})


def test_positional_arguments_in_the_originals_order():
    """The original class takes (input_dim, output_dim, hidden_dim, num_residual_blocks): a call
    copied from the original project, ProjectorWithResiduals(768, 512) say, builds the same shape."""
    import inspect

    names = list(inspect.signature(ProjectorWithResiduals).parameters)
    assert names == ["input_dim", "output_dim", "hidden_dim", "num_residual_blocks"]
    assert ProjectorWithResiduals(16, 8, 12, 1).config == {"input_dim": 16, "hidden_dim": 12, "output_dim": 8, "num_residual_blocks": 1}
    defaults = {k: p.default for k, p in inspect.signature(ProjectorWithResiduals).parameters.items()}
    assert defaults == DEFAULT_CONFIG


def test_numpy_integers_are_taken():
    """nn.Linear takes numpy's integers (a shape read from an array); so does the model, as ints."""
    import numpy as np

    m = ProjectorWithResiduals(input_dim=np.int64(6), output_dim=np.int32(4), hidden_dim=np.int64(8), num_residual_blocks=np.int64(1))
    assert m.config == {"input_dim": 6, "hidden_dim": 8, "output_dim": 4, "num_residual_blocks": 1}
    assert all(type(v) is int for v in m.config.values())
    with pytest.raises(ValueError, match="input_dim must be an integer >= 1"):
        ProjectorWithResiduals(input_dim=np.float64(6))
    with pytest.raises(ValueError, match="num_residual_blocks"):
        ProjectorWithResiduals(input_dim=4, output_dim=4, hidden_dim=4, num_residual_blocks=True)
