"""dinoclip: the PyTorch side of dinoclip.

Modules (none loads a model or imports transformers at import time):

- :mod:`dinoclip.model`: ``ProjectorWithResiduals``, the original architecture;
- :mod:`dinoclip.checkpoint`: ``load`` / ``save`` of dinoclip checkpoints (docs/FORMAT.md);
- :mod:`dinoclip.convert`: original ``.pt`` <-> dinoclip (``python -m dinoclip.convert``);
- :mod:`dinoclip.extract`: DINOv2/CLIP feature extraction (``python -m dinoclip.extract``);
- :mod:`dinoclip.benchmark`: a CLIP_benchmark-ready model (``encode_image`` / ``encode_text``);
- :mod:`dinoclip.encoders`, :mod:`dinoclip.transforms`: the DINOv2 and CLIP pieces both use.
"""

from .model import ProjectorWithResiduals

__version__ = "0.1.0"
__all__ = ["ProjectorWithResiduals", "__version__"]
