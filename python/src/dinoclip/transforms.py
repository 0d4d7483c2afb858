"""Image preprocessing for DINOv2 and CLIP, without torchvision.

Both follow the Hugging Face image processors of the models (docs/MODEL.md): convert to RGB
(transparency composited onto white: :func:`to_rgb`), resize so the shortest edge is ``resize``
pixels (PIL bicubic; the long edge is ``int(resize * long / short)``), centre crop ``crop`` x
``crop`` (top-left at ``(size - crop) // 2``), scale to [0, 1], normalise with the mean and
standard deviation, and return a float32 ``[3, crop, crop]`` tensor.

- DINOv2 (``facebook/dinov2-base``): shortest edge 256, crop 224, ImageNet mean/std.
- CLIP (``openai/clip-vit-base-patch16``): shortest edge 224, crop 224, CLIP mean/std.

The tests check these against transformers' ``BitImageProcessor`` / ``CLIPImageProcessor``.

An image so thin that its resized long edge would pass ``MAX_RESIZED_EDGE`` (a 1 x 20000 PNG of 157
bytes became 256 x 5,120,000 pixels, 13 GB, before the crop threw nearly all of it away) is
resized only over the part of it the crop keeps, with a wide margin (PIL's ``box``), at the same
scale and filter: its pixels may differ from the full resize by a few intensity levels (PIL's box
resize is not bit for bit the whole one), where the processors would have exhausted the memory.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CLIP_MEAN",
    "CLIP_STD",
    "MAX_RESIZED_EDGE",
    "PREPROCESSING_VERSION",
    "ImageTransform",
    "to_rgb",
    "dinov2_transform",
    "clip_transform",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# The version of this preprocessing, which extract.json records: raised with any change that gives
# some image other pixels, so that an extraction resumed by a newer dinoclip is refused rather than
# mixing shards of the two. 1 (an extract.json without the key): the alpha dropped, as PIL's
# convert("RGB") does; 2: transparency composited onto white (to_rgb).
PREPROCESSING_VERSION = 2
# What each version changed, as a refused resume says it.
PREPROCESSING_CHANGES = {2: "images with transparency are composited onto white, as transformers' processors do, "
                            "where version 1 dropped their alpha"}

# The longest resized edge resized whole (see the module docstring): 64k pixels, 50 MB at a short
# edge of 256, far beyond any photograph's aspect ratio.
MAX_RESIZED_EDGE = 1 << 16


def to_rgb(image):
    """``image`` as 8-bit RGB, as transformers' ``convert_to_rgb`` makes it (the processors'
    ``do_convert_rgb``): an image with transparency (an alpha band, or a palette or RGB colour
    marked transparent) composited onto white, any other converted (PIL's ``convert("RGB")``).
    OpenAI's ``clip`` package, and older transformers, drop the alpha instead, which shows
    whatever colour a transparent pixel holds (often black); the two agree on opaque images."""
    from PIL import Image

    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


class ImageTransform:
    """PIL image -> normalised float32 tensor [3, crop, crop] (see the module docstring)."""

    def __init__(self, resize: int, crop: int, mean: Sequence[float], std: Sequence[float]):
        if resize < 1 or crop < 1:
            raise ValueError(f"resize {resize} and crop {crop} must be positive")
        self.resize = int(resize)
        self.crop = int(crop)
        self.mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)

    def __repr__(self) -> str:
        return (
            f"ImageTransform(resize={self.resize}, crop={self.crop}, "
            f"mean={tuple(self.mean.ravel().tolist())}, std={tuple(self.std.ravel().tolist())})"
        )

    def __call__(self, image) -> torch.Tensor:
        from PIL import Image

        image = to_rgb(image)
        w, h = image.size
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = self.resize, int(self.resize * long / short)
        size = (new_short, new_long) if w <= h else (new_long, new_short)  # (width, height)
        if new_long > MAX_RESIZED_EDGE:
            # Only the part of the long edge the centre crop keeps, at the same scale, with a wide
            # margin of output pixels each side (PIL's resize of a box is not the whole resize bit for
            # bit near the box's edges: narrow margins gave up to 24 levels, this one at most 2 in the
            # tests' shapes), the whole at most MAX_RESIZED_EDGE + crop output pixels long.
            keep = min(self.crop, new_long)
            first = (new_long - keep) // 2
            scale = long / new_long  # source pixels per output pixel
            margin = MAX_RESIZED_EDGE // 2
            lo, hi = max(0, first - margin), min(new_long, first + keep + margin)
            box = (lo * scale, hi * scale)
            box = (0.0, box[0], float(w), box[1]) if w <= h else (box[0], 0.0, box[1], float(h))
            size = (new_short, hi - lo) if w <= h else (hi - lo, new_short)
            image = image.resize(size, resample=Image.BICUBIC, box=box, reducing_gap=None)
            a = np.asarray(image, dtype=np.uint8)  # [H, W, 3]
            a = a[first - lo:first - lo + keep] if w <= h else a[:, first - lo:first - lo + keep]
        else:
            if size != (w, h):
                image = image.resize(size, resample=Image.BICUBIC, reducing_gap=None)
            a = np.asarray(image, dtype=np.uint8)  # [H, W, 3]
        a = _center_crop(a, self.crop)
        x = (a.transpose(2, 0, 1).astype(np.float64) * (1 / 255)).astype(np.float32)
        x = (x - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def _center_crop(a: np.ndarray, crop: int) -> np.ndarray:
    h, w = a.shape[:2]
    if h < crop or w < crop:  # pad with zeros, centred, as the HF processors do
        ph, pw = max(crop, h), max(crop, w)
        out = np.zeros((ph, pw, a.shape[2]), dtype=a.dtype)
        top, left = (ph - h) // 2, (pw - w) // 2
        out[top:top + h, left:left + w] = a
        a, h, w = out, ph, pw
    top, left = (h - crop) // 2, (w - crop) // 2
    return a[top:top + crop, left:left + crop]


def dinov2_transform(resize: int = 256, crop: int = 224) -> ImageTransform:
    """DINOv2 preprocessing: shortest edge 256 bicubic, centre crop 224, ImageNet mean/std."""
    return ImageTransform(resize, crop, IMAGENET_MEAN, IMAGENET_STD)


def clip_transform(image_size: int = 224) -> ImageTransform:
    """CLIP preprocessing: shortest edge ``image_size`` bicubic, centre crop, CLIP mean/std."""
    return ImageTransform(image_size, image_size, CLIP_MEAN, CLIP_STD)
