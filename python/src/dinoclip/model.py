"""ProjectorWithResiduals: the projector from DINOv2 features into CLIP space.

The architecture, parameter names, order and shapes are those of the original
"dinov2-clip" model (docs/MODEL.md), so a ``state_dict`` of either
loads into the other with ``load_state_dict(strict=True)``::

    x = input_proj(x)                        # Linear(input_dim -> hidden_dim)
    for block in residual_blocks:            # num_residual_blocks times
        x = x + block.layers(x)              # Linear, LayerNorm, GELU, Linear, LayerNorm
    x = hidden_norm(x)                       # LayerNorm(hidden_dim)
    x = output_proj(x)                       # Linear(h -> h//2), GELU, Linear(h//2 -> output_dim)
    x = layer_norm(x)                        # LayerNorm(output_dim); not L2-normalised

GELU is the exact (erf) form, every LayerNorm has eps 1e-5 and affine
parameters, and there is no dropout. Initialisation is PyTorch's default.
"""

from __future__ import annotations

import numbers
from typing import Dict

import torch
import torch.nn as nn

__all__ = [
    "ResidualBlock",
    "ProjectorWithResiduals",
    "DEFAULT_CONFIG",
    "CONFIG_KEYS",
    "num_parameters",
]

#: The original model's shape.
DEFAULT_CONFIG: Dict[str, int] = {
    "input_dim": 768,
    "hidden_dim": 2048,
    "output_dim": 512,
    "num_residual_blocks": 6,
}

#: The keys of a model config, in the order docs/FORMAT.md writes them.
CONFIG_KEYS = ("input_dim", "hidden_dim", "output_dim", "num_residual_blocks")


class ResidualBlock(nn.Module):
    """``x + layers(x)`` with ``layers`` = Linear, LayerNorm, GELU, Linear, LayerNorm."""

    def __init__(self, dim: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(dim, dim),
            nn.LayerNorm(dim),
            nn.GELU(),
            nn.Linear(dim, dim),
            nn.LayerNorm(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


class ProjectorWithResiduals(nn.Module):
    """Maps [..., input_dim] DINOv2 features to [..., output_dim] CLIP-space embeddings.

    The outputs are not L2-normalised; normalise them before computing cosine
    similarities.
    """

    # The original class's parameters in its order, so that a positional call
    # copied from the original project (ProjectorWithResiduals(768, 512))
    # builds the same shape here.
    def __init__(
        self,
        input_dim: int = 768,
        output_dim: int = 512,
        hidden_dim: int = 2048,
        num_residual_blocks: int = 6,
    ):
        super().__init__()
        dims = {}
        for name, v, least in (
            ("input_dim", input_dim, 1),
            ("hidden_dim", hidden_dim, 2),
            ("output_dim", output_dim, 1),
            ("num_residual_blocks", num_residual_blocks, 0),
        ):
            # (numbers.Integral takes numpy's integers too, as nn.Linear does.)
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {v!r}")
            dims[name] = int(v)
        input_dim, hidden_dim = dims["input_dim"], dims["hidden_dim"]
        output_dim, num_residual_blocks = dims["output_dim"], dims["num_residual_blocks"]
        self.input_dim = input_dim
        self.hidden_dim = hidden_dim
        self.output_dim = output_dim
        self.num_residual_blocks = num_residual_blocks
        # The construction order fixes both the state_dict order and the order
        # in which the default initialisation draws random numbers: keep it.
        self.input_proj = nn.Linear(input_dim, hidden_dim)
        self.residual_blocks = nn.ModuleList(
            [ResidualBlock(hidden_dim) for _ in range(num_residual_blocks)]
        )
        self.hidden_norm = nn.LayerNorm(hidden_dim)
        self.output_proj = nn.Sequential(
            nn.Linear(hidden_dim, hidden_dim // 2),
            nn.GELU(),
            nn.Linear(hidden_dim // 2, output_dim),
        )
        self.layer_norm = nn.LayerNorm(output_dim)

    @classmethod
    def from_config(cls, config: Dict[str, int]) -> "ProjectorWithResiduals":
        """Builds the model from a config dict (keys as in :data:`CONFIG_KEYS`)."""
        missing = [k for k in CONFIG_KEYS if k not in config]
        if missing:
            raise ValueError(f"model config {config!r} lacks {', '.join(missing)}")
        return cls(
            input_dim=config["input_dim"],
            hidden_dim=config["hidden_dim"],
            num_residual_blocks=config["num_residual_blocks"],
            output_dim=config["output_dim"],
        )

    @property
    def config(self) -> Dict[str, int]:
        """The model's shape, keys in docs/FORMAT.md order."""
        return {
            "input_dim": self.input_dim,
            "hidden_dim": self.hidden_dim,
            "output_dim": self.output_dim,
            "num_residual_blocks": self.num_residual_blocks,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_proj(x)
        for block in self.residual_blocks:
            x = block(x)
        x = self.hidden_norm(x)
        x = self.output_proj(x)
        return self.layer_norm(x)

    def extra_repr(self) -> str:
        c = self.config
        return ", ".join(f"{k}={c[k]}" for k in CONFIG_KEYS)


def num_parameters(config: Dict[str, int]) -> int:
    """The parameter count of a model of this shape (54,608,384 for the default)."""
    i, h, o, b = (config[k] for k in CONFIG_KEYS)
    hd = h // 2
    linear = lambda fan_in, fan_out: fan_in * fan_out + fan_out  # noqa: E731
    return (
        linear(i, h)
        + b * (2 * linear(h, h) + 4 * h)
        + 2 * h
        + linear(h, hd)
        + linear(hd, o)
        + 2 * o
    )
