"""Image crops for pixel-based SAC: random crop in training (RAD/DrQ), centre crop when acting."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

if TYPE_CHECKING:   # the host replay (and a process that only samples) never loads torch
    import torch


def _check_crop(h: int, w: int, out_h: int, out_w: int) -> None:
    if not (0 < out_h <= h and 0 < out_w <= w):
        raise ValueError(f"crop size {out_h}x{out_w} (HxW) does not fit in images of {h}x{w}")


def crop_at(images: np.ndarray, index, ys: np.ndarray, xs: np.ndarray,
            out_h: int, out_w: int) -> np.ndarray:
    """Gather images[index] cropped at per-row offsets (ys, xs) in one vectorised copy.

    images: (N, C, H, W); index: int array of shape (B,) or (B, K); ys, xs: (B,).
    Returns (B, C, out_h, out_w) or (B, K, C, out_h, out_w).
    """
    _check_crop(images.shape[-2], images.shape[-1], out_h, out_w)
    # A view of every possible crop window: indexing it copies only the chosen crops,
    # so gather and crop cost one pass over the output bytes.
    windows = sliding_window_view(images, (out_h, out_w), axis=(-2, -1))
    index = np.asarray(index)
    extra = (None,) * (index.ndim - 1)
    ys = np.asarray(ys)[(slice(None),) + extra]
    xs = np.asarray(xs)[(slice(None),) + extra]
    return windows[index, :, ys, xs]


def crop_at_tensor(images: torch.Tensor, index: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor,
                   out_h: int, out_w: int) -> torch.Tensor:
    """`crop_at` for torch tensors on any device (the GPU replay): same arguments, same result.

    The window view is as_strided; one advanced-indexing gather reads only the chosen crops.
    """
    n, c, h, w = images.shape
    _check_crop(h, w, out_h, out_w)
    sn, sc, sh, sw = images.stride()
    windows = images.as_strided((n, c, h - out_h + 1, w - out_w + 1, out_h, out_w), (sn, sc, sh, sw, sh, sw))
    extra = (None,) * (index.ndim - 1)
    return windows[index, :, ys[(slice(None),) + extra], xs[(slice(None),) + extra]]


def random_crop(images: np.ndarray, out_h: int, out_w: int, rng: np.random.Generator) -> np.ndarray:
    """Crop each image of a (B, C, H, W) batch at its own random offset."""
    if images.ndim != 4:
        raise ValueError(f"random_crop expects (B, C, H, W) images, got shape {images.shape}")
    b, _, h, w = images.shape
    _check_crop(h, w, out_h, out_w)
    ys = rng.integers(0, h - out_h + 1, size=b)
    xs = rng.integers(0, w - out_w + 1, size=b)
    return crop_at(images, np.arange(b), ys, xs, out_h, out_w)


def center_crop(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Centre crop of a (C, H, W) image or (B, C, H, W) batch; returns a view (no copy)."""
    if image.ndim not in (3, 4):
        raise ValueError(f"center_crop expects (C, H, W) or (B, C, H, W), got shape {image.shape}")
    h, w = image.shape[-2:]
    _check_crop(h, w, out_h, out_w)
    top, left = (h - out_h) // 2, (w - out_w) // 2
    return image[..., top:top + out_h, left:left + out_w]
