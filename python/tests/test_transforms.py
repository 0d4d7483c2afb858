"""Our PIL/numpy preprocessing against the Hugging Face image processors of the two models.

transformers 5 has two backends per processor: PIL (``BitImageProcessorPil``, what 4.x's "slow"
processors did) and torchvision (``BitImageProcessor`` when torchvision is installed, else it falls
back to PIL). Ours is the PIL one to within float rounding; torchvision's bicubic resize differs
from PIL's by up to one intensity level on a few pixels.
"""

import io
import random

import numpy as np
import pytest
import torch

from conftest import make_image
from dinoclip.transforms import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, clip_transform, dinov2_transform

SIZES = [(300, 200), (200, 300), (256, 256), (57, 91), (640, 480), (225, 224)]


def _pil_class(name):
    import transformers

    return getattr(transformers, name + "Pil", None) or getattr(transformers, name)


def hf_dinov2(cls=None):
    BitImageProcessor = cls or _pil_class("BitImageProcessor")

    # facebook/dinov2-base's preprocessor_config.json
    return BitImageProcessor(do_resize=True, size={"shortest_edge": 256}, resample=3, do_center_crop=True,
                             crop_size={"height": 224, "width": 224}, do_rescale=True, rescale_factor=1 / 255,
                             do_normalize=True, image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD),
                             do_convert_rgb=True)


def hf_clip(cls=None):
    CLIPImageProcessor = cls or _pil_class("CLIPImageProcessor")

    # openai/clip-vit-base-patch16's preprocessor_config.json
    return CLIPImageProcessor(do_resize=True, size={"shortest_edge": 224}, resample=3, do_center_crop=True,
                              crop_size={"height": 224, "width": 224}, do_rescale=True, rescale_factor=1 / 255,
                              do_normalize=True, image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD),
                              do_convert_rgb=True)


@pytest.mark.parametrize("which", ["dinov2", "clip"])
def test_matches_hugging_face(which):
    ours = dinov2_transform() if which == "dinov2" else clip_transform(224)
    theirs = hf_dinov2() if which == "dinov2" else hf_clip()
    rng = random.Random(5)
    for i, size in enumerate(SIZES):
        img = make_image(rng, size=size, mode=["RGB", "L", "RGBA"][i % 3])
        a = ours(img)
        b = theirs(images=img, return_tensors="np")["pixel_values"][0]
        assert a.shape == (3, 224, 224) and a.dtype == torch.float32
        np.testing.assert_allclose(a.numpy(), b, rtol=0, atol=2e-6, err_msg=f"{which} {size}")


@pytest.mark.parametrize("which", ["dinov2", "clip"])
def test_close_to_the_torchvision_backend(which):
    pytest.importorskip("torchvision")
    import transformers

    name = "BitImageProcessor" if which == "dinov2" else "CLIPImageProcessor"
    cls = getattr(transformers, name)
    if "Torchvision" not in " ".join(c.__name__ for c in cls.__mro__):
        pytest.skip(f"{name} has no torchvision backend in transformers {transformers.__version__}")
    ours = dinov2_transform() if which == "dinov2" else clip_transform(224)
    theirs = hf_dinov2(cls) if which == "dinov2" else hf_clip(cls)
    rng = random.Random(6)
    for size in SIZES:
        img = make_image(rng, size=size)
        a = ours(img).numpy()
        b = theirs(images=img, return_tensors="np")["pixel_values"][0]
        std = np.asarray(IMAGENET_STD if which == "dinov2" else CLIP_STD).reshape(3, 1, 1)
        levels = np.abs(a - b) * std * 255  # in 8-bit intensity levels
        assert levels.max() < 1.5 and levels.mean() < 0.05, (size, levels.max(), levels.mean())


@pytest.mark.parametrize("short,long", [(3, 1000), (7, 2000), (5, 1283), (9, 3001), (4, 1100)])
@pytest.mark.parametrize("portrait", [True, False])
def test_thin_image_resizes_only_what_the_crop_keeps(short, long, portrait, monkeypatch):
    """An image whose resized long edge passes MAX_RESIZED_EDGE is resized over the cropped part (and
    a wide margin) only: within 2 intensity levels of the full resize (PIL's box resize is not bit
    for bit the whole one; measured at most 2 on these shapes, 24 with a margin of 257 pixels),
    and a 1 x 100000 image no longer needs gigabytes."""
    from PIL import Image

    from dinoclip import transforms

    rng = np.random.default_rng(short * long)
    pixels = rng.integers(0, 256, size=(long, short, 3) if portrait else (short, long, 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB")
    t = dinov2_transform()
    assert int(256 * long / short) > transforms.MAX_RESIZED_EDGE  # (the path under test)
    part = t(image)
    monkeypatch.setattr(transforms, "MAX_RESIZED_EDGE", 1 << 30)  # the full resize, for reference
    full = t(image)
    monkeypatch.undo()
    assert part.shape == full.shape == (3, 224, 224)
    level = torch.tensor([1 / (255 * s) for s in IMAGENET_STD]).reshape(3, 1, 1)  # one intensity level
    assert float(((part - full).abs() / level).max()) <= 2 + 1e-3


def test_extremely_thin_image_is_cheap():
    """A 1 x 100000 image (the full resize: 256 x 25,600,000 pixels) is resized in bounded memory, its
    centre pixel the image's colour."""
    from PIL import Image

    for size in ((1, 100000), (100000, 1)):
        out = dinov2_transform()(Image.new("RGB", size, (10, 200, 30)))
        assert out.shape == (3, 224, 224)
        want = (torch.tensor([10, 200, 30]) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
        assert torch.allclose(out[:, 112, 112], want.float(), atol=1e-5)


def _transparent_images():
    """Images with transparency of each kind PIL reads: an alpha band (RGBA, LA), a palette colour
    marked transparent (a GIF's or PNG's tRNS) and an RGB colour key (an RGB PNG's tRNS)."""
    from PIL import Image

    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, size=(300, 400, 3), dtype=np.uint8)
    alpha = np.full((300, 400), 255, np.uint8)
    alpha[150:] = 0  # the lower half transparent
    alpha[100:150] = 90  # a band half transparent
    rgba = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    la = Image.fromarray(np.dstack([rgb[..., 0], alpha]), "LA")
    def as_png(img, transparency):  # (read back, as an extractor meets it: PNG's tRNS chunk)
        buf = io.BytesIO()
        img.save(buf, format="PNG", transparency=transparency)
        buf.seek(0)
        return Image.open(buf)

    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal = as_png(pal, pal.getpixel((200, 150)))  # (a colour the centre crop holds)
    keyed = as_png(Image.fromarray(rgb // 64 * 64), (0, 0, 0))  # few colours, one of them the key
    return {"RGBA": rgba, "LA": la, "P with a transparent colour": pal, "RGB with a colour key": keyed}


@pytest.mark.parametrize("which", ["dinov2", "clip"])
def test_transparency_as_hugging_face_composites_it(which):
    """An image with transparency is composited onto white, as the pinned transformers' processors
    do (PIL's convert("RGB") alone drops the alpha: up to 4.5 normalised units apart here)."""
    from PIL import Image

    ours = dinov2_transform() if which == "dinov2" else clip_transform(224)
    theirs = hf_dinov2() if which == "dinov2" else hf_clip()
    for name, img in _transparent_images().items():
        a = ours(img).numpy()
        b = theirs(images=img, return_tensors="np")["pixel_values"][0]
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-6, err_msg=f"{which} {name}")
        # (The test tells the two apart: convert("RGB") keeps a transparent colour as a colour
        # key in the image's info, which to_rgb honours, so the pixels alone are taken.)
        dropped = ours(Image.fromarray(np.asarray(img.convert("RGB")))).numpy()
        assert np.abs(dropped - b).max() > 0.5, name
