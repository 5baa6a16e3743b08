"""Red-target mask and the two papers' rewards."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from asyncrl_ros.robot.kinematics import ur5_fk
from asyncrl_ros.robot.reward import (centre_weight, franka_reward, red_mask, ur5_penalty,
                                ur5_reward)


def _pixels(*rgb):
    return np.array([rgb], dtype=np.uint8)   # (1, N, 3)


def _hue(rgb):
    return int(cv2.cvtColor(_pixels(rgb), cv2.COLOR_RGB2HSV)[0, 0, 0])


def test_red_mask_thresholds():
    red = [(255, 0, 0), (100, 0, 0), (255, 85, 0), (255, 0, 85), (200, 30, 30)]
    not_red = [(60, 0, 0),        # too dark (V < 70)
               (255, 150, 150),   # too pale (S < 120)
               (255, 94, 0),      # hue 11: orange side
               (255, 0, 94),      # hue 169: magenta side
               (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0), (255, 255, 0)]
    assert [_hue(c) for c in [(255, 85, 0), (255, 94, 0), (255, 0, 85), (255, 0, 94)]] == \
        [10, 11, 170, 169]
    mask = red_mask(_pixels(*red, *not_red))
    assert mask.dtype == np.bool_ and mask.shape == (1, len(red) + len(not_red))
    assert mask.tolist() == [[True] * len(red) + [False] * len(not_red)]


def test_red_mask_overrides_and_layout():
    dark = _pixels((60, 0, 0), (255, 94, 0))
    assert red_mask(dark).tolist() == [[False, False]]
    assert red_mask(dark, val_min=50, hue_low_max=11).tolist() == [[True, True]]
    image = np.zeros((90, 160, 3), np.uint8)
    image[10:20, 30:50] = (230, 10, 10)
    mask = red_mask(image[:, ::-1][:, ::-1])   # non-contiguous view is fine
    assert mask.sum() == 200 and mask[10:20, 30:50].all()


@pytest.mark.parametrize('bad, match', [
    (np.zeros((4, 4, 3), np.float32), 'uint8'),
    (np.zeros((4, 4), np.uint8), r'\(H, W, 3\)'),
    (np.zeros((4, 4, 4), np.uint8), r'\(H, W, 3\)'),
    (np.zeros((0, 4, 3), np.uint8), r'\(H, W, 3\)'),
    ([[[255, 0, 0]]], 'numpy array'),
])
def test_red_mask_rejects_bad_images(bad, match):
    with pytest.raises(ValueError, match=match):
        red_mask(bad)


def test_franka_reward_is_paper_eq3():
    mask = np.zeros((90, 160), bool)
    mask[:45, :80] = True                                 # a quarter of the image
    assert franka_reward(mask, 40.0) == pytest.approx(0.25 * 40 * 0.25)
    assert franka_reward(mask, 80.0) == pytest.approx(2 * franka_reward(mask, 40.0))
    assert franka_reward(np.zeros((9, 16), bool), 40.0) == 0.0
    assert franka_reward(np.ones((9, 16), bool), 40.0, alpha=1.0) == pytest.approx(40.0)
    for dt in (0.0, -1.0, float('nan'), float('inf')):
        with pytest.raises(ValueError, match='dt_ms'):
            franka_reward(mask, dt)
    with pytest.raises(ValueError, match='bool'):
        franka_reward(mask.astype(np.uint8), 40.0)
    with pytest.raises(ValueError, match=r'\(H, W\)'):
        franka_reward(np.zeros((2, 3, 3), bool), 40.0)


def test_centre_weight_shape():
    W = centre_weight(91, 161)
    assert W.shape == (91, 161) and not W.flags.writeable
    assert W[45, 80] == pytest.approx(1.0) and W.max() == W[45, 80]
    assert W[0, 0] < 1e-3 and W[0, 80] < 0.02 and W[45, 0] < 0.02 and W.min() > 0
    np.testing.assert_allclose(W, W[::-1, ::-1])
    # Falls monotonically from the centre along rows, and quadratically along the diagonal.
    assert np.all(np.diff(W[45, 80:]) < 0) and np.all(np.diff(W[:46, 80]) > 0)
    k = np.arange(0, 45)
    t = (k + 0.0) / 45.5
    np.testing.assert_allclose(centre_weight(91, 91)[45 + k, 45 + k], (1 - t) ** 2, atol=1e-12)
    even = centre_weight(90, 160)
    np.testing.assert_allclose(even, even[::-1, ::-1])
    for h, w in [(0, 5), (5, -1), (2.5, 4), (True, 3)]:
        with pytest.raises(ValueError, match='positive integers'):
            centre_weight(h, w)


def _blob(cy, cx, h=90, w=160, r=5):
    mask = np.zeros((h, w), bool)
    mask[cy - r:cy + r, cx - r:cx + r] = True
    return mask


def test_ur5_reward_prefers_centred_large_targets():
    q = np.array([1.2, -2.0, 2.1, -np.pi - 0.1, -1.2])     # penalty 0
    assert ur5_penalty(q) == pytest.approx(0.0, abs=1e-12)
    centred, corner = ur5_reward(_blob(45, 80), q), ur5_reward(_blob(10, 20), q)
    assert centred > corner > 0
    assert ur5_reward(_blob(45, 80, r=10), q) > centred
    full = np.ones((90, 160), bool)
    assert ur5_reward(full, q) == pytest.approx(800 * centre_weight(90, 160).mean())
    assert ur5_reward(np.zeros((90, 160), bool), q) == pytest.approx(0.0, abs=1e-12)
    q6 = np.append(q, 3.0)                                   # wrist 3 does not count
    assert ur5_reward(full, q6) == pytest.approx(ur5_reward(full, q))
    twisted = q + np.array([0.3, 0.0, 0.0, 0.2, 0.0])
    assert ur5_reward(full, twisted) == pytest.approx(ur5_reward(full, q) - 0.5)


def test_ur5_penalty_is_zero_exactly_when_the_camera_faces_the_monitor():
    # The thesis' monitor stands along the base's -y axis; the camera looks along the tool z.
    rng = np.random.default_rng(0)
    for pan, lift, elbow in rng.uniform([1.0, -2.5, 0.5], [2.0, -1.0, 2.5], (10, 3)):
        q = np.array([pan, lift, elbow, -np.pi - lift - elbow, -pan, rng.uniform(-3, 3)])
        assert ur5_penalty(q) == pytest.approx(0.0, abs=1e-12)
        np.testing.assert_allclose(ur5_fk(q)[:3, 2], [0, -1, 0], atol=1e-12)
        tilted = q + np.array([0, 0, 0, 0.3, 0, 0])
        assert ur5_penalty(tilted) == pytest.approx(0.3)
        assert ur5_fk(tilted)[:3, 2] @ [0, -1, 0] < 0.99   # camera no longer level


def test_ur5_reward_rejects_bad_input():
    with pytest.raises(ValueError, match='5 or 6'):
        ur5_penalty(np.zeros(7))
    with pytest.raises(ValueError, match='5 or 6'):
        ur5_reward(np.ones((4, 4), bool), np.array([0, 0, np.nan, 0, 0]))
    with pytest.raises(ValueError, match='bool'):
        ur5_reward(np.ones((4, 4), np.float32), np.zeros(5))
