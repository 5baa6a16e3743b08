"""Rewards of the two visual reaching tasks, computed from a camera image (no ROS here).

- Franka visual reacher (paper, Eq. 3):  R = 0.25 * dt[ms] * mean(M)
- UR5 reacher/tracker (thesis, Eq. 3.1): R = 800 * mean(M * W) - penalty(q)

M is the red-target mask, W a centre weight.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

# HSV thresholds of the red target in OpenCV units (hue 0-180, saturation and value 0-255).
# Red wraps around hue 0, hence two hue bands.
RED_HUE_LOW_MAX = 10
RED_HUE_HIGH_MIN = 170
RED_SAT_MIN = 120
RED_VAL_MIN = 70

FRANKA_ALPHA = 0.25   # paper, Eq. 3
UR5_ALPHA = 800.0     # thesis, Eq. 3.1
UR5_BETA = 1.0        # thesis, Eq. 3.1


def red_mask(image_rgb: np.ndarray, hue_low_max: int = RED_HUE_LOW_MAX,
             hue_high_min: int = RED_HUE_HIGH_MIN, sat_min: int = RED_SAT_MIN,
             val_min: int = RED_VAL_MIN) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) bool: red hue (either band), S >= sat_min, V >= val_min."""
    if not isinstance(image_rgb, np.ndarray):
        raise ValueError(f'red_mask: image must be a numpy array, got {type(image_rgb).__name__}')
    if image_rgb.dtype != np.uint8:
        raise ValueError(f'red_mask: image must be uint8, got {image_rgb.dtype}')
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or 0 in image_rgb.shape:
        raise ValueError(f'red_mask: image must have shape (H, W, 3), got {image_rgb.shape}')
    hsv = cv2.cvtColor(np.ascontiguousarray(image_rgb), cv2.COLOR_RGB2HSV)
    low = cv2.inRange(hsv, (0, sat_min, val_min), (hue_low_max, 255, 255))
    high = cv2.inRange(hsv, (hue_high_min, sat_min, val_min), (180, 255, 255))
    return (low | high) > 0


def _check_mask(mask: np.ndarray, name: str) -> None:
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
        raise ValueError(f'{name}: mask must be a bool numpy array, got '
                         f'{getattr(mask, "dtype", type(mask).__name__)}')
    if mask.ndim != 2 or 0 in mask.shape:
        raise ValueError(f'{name}: mask must have shape (H, W), got {mask.shape}')


def franka_reward(mask: np.ndarray, dt_ms: float, alpha: float = FRANKA_ALPHA) -> float:
    """Paper Eq. 3: R = alpha * dt[ms] * mean(mask); a reward rate times the action cycle time."""
    _check_mask(mask, 'franka_reward')
    if not (np.isfinite(dt_ms) and dt_ms > 0):
        raise ValueError(f'franka_reward: dt_ms must be finite and > 0, got {dt_ms}')
    return float(alpha * dt_ms * mask.mean())


@functools.lru_cache(maxsize=8)
def centre_weight(h: int, w: int) -> np.ndarray:
    """(h, w) weights, 1 at the image centre falling to 0 at the edges (read-only, cached).

    Thesis Eq. 3.1 only says W "decrease[s] quadratically from 1 to 0 from its center to
    edges"; the authors' released code (ur5_async_rl, reacher_env._compute_reward_) uses the
    product of two linear falloffs, a degree-2 surface: W = (1 - |2u - 1|) (1 - |2v - 1|) with
    u, v the pixel centres' coordinates in [0, 1]. We follow it, scaled to peak at 1 as the
    thesis states (the released code peaks at 1/4 and also clips the first term at 4).
    """
    if isinstance(h, bool) or isinstance(w, bool) or not (int(h) == h and int(w) == w) \
            or h < 1 or w < 1:
        raise ValueError(f'centre_weight: h and w must be positive integers, got {h}, {w}')
    tent = lambda n: 1.0 - np.abs(2.0 * (np.arange(n) + 0.5) / n - 1.0)  # noqa: E731
    W = np.outer(tent(int(h)), tent(int(w)))
    W.setflags(write=False)
    return W


def ur5_penalty(q: np.ndarray) -> float:
    """Joint-twist penalty of thesis Eq. 3.1, in the joint order of the UR driver (0-based).

    Eq. 3.1 prints |pi - sum_{n=1..3} w_n| + |sum_{n=4..5} w_n|; read literally (pan, shoulder,
    elbow / wrist 1, wrist 2) it mixes pan and pitch axes and costs ~6 at the authors' own reset
    pose. The authors' code computes |pi + q1 + q2 + q3| + |q0 + q4|, which is zero exactly when
    the wrist camera looks horizontally along the base's -y axis (the monitor), whatever the
    pan and reach; see test_reward.py. We use the code's form.
    """
    q = np.asarray(q, dtype=np.float64)
    if q.ndim != 1 or q.size not in (5, 6) or not np.all(np.isfinite(q)):
        raise ValueError(f'ur5_penalty: q must be 5 or 6 finite joint angles, got {q!r}')
    return float(abs(np.pi + q[1] + q[2] + q[3]) + abs(q[0] + q[4]))


def ur5_reward(mask: np.ndarray, q: np.ndarray, alpha: float = UR5_ALPHA,
               beta: float = UR5_BETA) -> float:
    """Thesis Eq. 3.1: R = alpha * mean(M * W) - beta * ur5_penalty(q)."""
    _check_mask(mask, 'ur5_reward')
    W = centre_weight(*mask.shape)
    return float(alpha * np.mean(mask * W) - beta * ur5_penalty(q))
