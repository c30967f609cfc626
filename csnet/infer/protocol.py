"""The CSNet test protocol (SPEC 4): how an image becomes a network input and logits become a saliency map.

- :func:`preprocess`: uint8 H x W x 3 -> float [0, 1] -> bilinear resize to 224 x 224 -> ImageNet mean/std.
- :func:`postprocess`: logits -> sigmoid -> bilinear resize back to H x W -> ``round(255 * p)`` as uint8.

The release resized with scikit-image (bilinear, no antialiasing) on float64 images; torch's
``F.interpolate(mode="bilinear", align_corners=False, antialias=False)`` in float64 gives the same input
tensors bit for bit (checked against ``../shared/reference/official_io.npz``) and the same maps except in the
outermost 1-2 pixels when upsampling (edge clamping instead of reflection). Everything is computed in float64
and the network input is returned as float32.

The resizes run in NumPy (:mod:`csnet.infer.resize`, the same formula and order of operations as torch's, equal
to it bit for bit) so that memory stays bounded whatever the image's shape: only the source pixels the
bilinear taps read are converted to float64, and the full-size map is built a block of rows at a time into
uint8. Through torch the whole image became float64 (24 bytes per pixel) and the map a float64 H x W array.
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch

from csnet.constants import IMAGENET_MEAN, IMAGENET_STD
from csnet.infer.resize import resize_image, resized_row_blocks

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "INPUT_SIZE", "preprocess", "postprocess"]

INPUT_SIZE = 224  # training and test resolution of the released models


def preprocess(image: np.ndarray, size: int = INPUT_SIZE) -> torch.Tensor:
    """Turn one photo into the network input of the test protocol.

    Args:
        image: uint8 array, H x W x 3 (RGB) or H x W (grayscale, replicated to 3 channels).
        size: side of the square network input.

    Returns:
        float32 tensor ``1 x 3 x size x size``, ImageNet-normalized.

    Raises:
        ValueError: not uint8, or not H x W / H x W x 3.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got dtype {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image must be H x W x 3 (RGB) or H x W, got shape {image.shape}")
    resized = resize_image(image, size, size, divisor=255.0)  # size x size x 3 float64
    normalized = (resized - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)
    return torch.from_numpy(np.ascontiguousarray(normalized.transpose(2, 0, 1)[None], dtype=np.float32))


def postprocess(logits: Union[torch.Tensor, np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """Turn the logits of one image into its saliency map at the original size.

    Args:
        logits: ``h x w``, ``1 x h x w`` or ``1 x 1 x h x w`` (tensor on any device, or array).
        size: ``(H, W)`` of the original image.

    Returns:
        uint8 array ``H x W``: ``round(255 * sigmoid(logits))`` resized bilinearly to ``(H, W)``.

    Raises:
        ValueError: logits of another shape (a batch of several maps, several channels).
    """
    x = torch.as_tensor(logits).detach()
    if x.ndim < 2 or x.ndim > 4 or any(d != 1 for d in x.shape[:-2]):
        raise ValueError(f"logits must be h x w, 1 x h x w or 1 x 1 x h x w, got shape {tuple(x.shape)}")
    height, width = int(size[0]), int(size[1])
    if height <= 0 or width <= 0:
        raise ValueError(f"size must be positive (H, W), got {size}")
    prob = torch.sigmoid(x.to("cpu", torch.float64).reshape(*x.shape[-2:])).numpy()
    out = np.empty((height, width), dtype=np.uint8)
    for rows, block in resized_row_blocks(prob, height, width):
        # round-half-to-even on exact .5 values (np.rint, as torch.round); bilinear weights keep prob in [0, 1]
        out[rows] = np.clip(np.rint(block * 255.0), 0, 255)
    return out
