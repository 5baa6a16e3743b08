"""Forward kinematics of the Franka Panda and the UR5 / UR5e from their published parameters.

Every function takes joint angles of shape (n,) or (..., n) and works on the batch at once,
so a bisection or a test can evaluate many configurations in one call.

Frames:
- Panda: base = link0 (franka_ros2 `fr3_link0`/`panda_link0`); flange = Franka's "F" frame,
  0.107 m along joint 7's axis, *not* rotated by the hand's -45 deg. MuJoCo Menagerie's
  `panda_nohand.xml` puts `link7` exactly at DH frame 7 and `attachment_site` at the flange
  position (its orientation is turned a further 135 deg about z).
- UR: base = UR's DH base frame, i.e. the controller's/teach pendant's `base` frame
  (ur_description `base`, which is `base_link` turned by pi about z); tool = the tool flange
  (ur_description `tool0`). Positions in Menagerie's `ur5e.xml` world frame are
  Rz(-pi/2) @ p (UR_MENAGERIE_FROM_DH), and its `attachment_site` sits at the flange origin;
  Menagerie rounds the lengths to the millimetre, so it differs from the published UR5e
  parameters by up to 2.1 mm.
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np

# Franka Panda, Craig's (modified) DH convention (Franka Control Interface documentation,
# "Denavit-Hartenberg parameters"), per joint i: d_i, a_{i-1}, alpha_{i-1}.
PANDA_MDH = np.array([
    [0.333, 0.0, 0.0],
    [0.0, 0.0, -np.pi / 2],
    [0.316, 0.0, np.pi / 2],
    [0.0, 0.0825, np.pi / 2],
    [0.384, -0.0825, -np.pi / 2],
    [0.0, 0.0, np.pi / 2],
    [0.0, 0.088, np.pi / 2],
])
# The flange frame F: d = 0.107 along joint 7's axis, no rotation.
PANDA_FLANGE_D = 0.107
# Joint position and velocity limits (Franka documentation, "Limits for Panda").
PANDA_Q_MIN = np.array([-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973])
PANDA_Q_MAX = np.array([2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973])
PANDA_DQ_MAX = np.array([2.1750, 2.1750, 2.1750, 2.1750, 2.6100, 2.6100, 2.6100])
PANDA_DDQ_MAX = np.array([15.0, 7.5, 10.0, 12.5, 15.0, 20.0, 20.0])   # rad/s^2

# Universal Robots, standard DH convention, per joint: d_i, a_i, alpha_i
# (Universal Robots, "DH parameters for calculations of kinematics and dynamics").
UR_DH = {
    'ur5': np.array([
        [0.089159, 0.0, np.pi / 2],
        [0.0, -0.425, 0.0],
        [0.0, -0.39225, 0.0],
        [0.10915, 0.0, np.pi / 2],
        [0.09465, 0.0, -np.pi / 2],
        [0.0823, 0.0, 0.0],
    ]),
    'ur5e': np.array([
        [0.1625, 0.0, np.pi / 2],
        [0.0, -0.425, 0.0],
        [0.0, -0.3922, 0.0],
        [0.1333, 0.0, np.pi / 2],
        [0.0997, 0.0, -np.pi / 2],
        [0.0996, 0.0, 0.0],
    ]),
}
# UR5 and UR5e: every joint +-2 pi, at most pi rad/s (UR5 / UR5e technical specifications).
UR_Q_LIMIT = 2 * np.pi
UR_DQ_MAX = np.pi
# p_menagerie = Rz(-pi/2) @ p_dh (Menagerie's ur5e base body is turned relative to UR's base).
UR_MENAGERIE_FROM_DH = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def _joints(q, n: int, name: str) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    if q.ndim == 0 or q.shape[-1] != n:
        raise ValueError(f'{name}: expected joint angles of shape (..., {n}), got {q.shape}')
    return q


def _dh_matrix(theta: float, d: float, a: float, alpha: float, modified: bool) -> np.ndarray:
    ct, st, ca, sa = np.cos(theta), np.sin(theta), np.cos(alpha), np.sin(alpha)
    if modified:  # Craig: Rx(alpha_{i-1}) Tx(a_{i-1}) Rz(theta_i) Tz(d_i)
        return np.array([[ct, -st, 0, a], [st * ca, ct * ca, -sa, -sa * d],
                         [st * sa, ct * sa, ca, ca * d], [0, 0, 0, 1]])
    # standard: Rz(theta_i) Tz(d_i) Tx(a_i) Rx(alpha_i)
    return np.array([[ct, -st * ca, st * sa, a * ct], [st, ct * ca, -ct * sa, a * st],
                     [0, sa, ca, d], [0, 0, 0, 1]])


@functools.lru_cache(maxsize=16)
def _coefficients(key: bytes, modified: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A revolute link is C0 + cos(theta) C1 + sin(theta) C2; returns the (n, 4, 4) stacks."""
    table = np.frombuffer(key).reshape(-1, 3)
    T0, Tpi, Thalf = (np.stack([_dh_matrix(th, *row, modified) for row in table])
                      for th in (0.0, np.pi, np.pi / 2))
    C0, C1 = (T0 + Tpi) / 2, (T0 - Tpi) / 2
    return C0, C1, Thalf - C0


def dh_fk(q, table: np.ndarray, modified: bool) -> np.ndarray:
    """Pose of the last frame of a revolute DH chain, batched over q's leading dimensions.

    table rows: (d, a, alpha) per joint; modified=True is Craig's convention
    Rx(alpha_{i-1}) Tx(a_{i-1}) Rz(theta_i) Tz(d_i) with a, alpha of the row being the
    previous link's; modified=False is the standard Rz(theta_i) Tz(d_i) Tx(a_i) Rx(alpha_i).
    """
    table = np.ascontiguousarray(table, dtype=np.float64)
    q = _joints(q, len(table), 'dh_fk')
    C0, C1, C2 = _coefficients(table.tobytes(), bool(modified))
    # All links at once as (..., n, 4, 4): one numpy call per term instead of per entry.
    L = C0 + np.cos(q)[..., None, None] * C1 + np.sin(q)[..., None, None] * C2
    T = L[..., 0, :, :]
    for i in range(1, len(table)):
        T = T @ L[..., i, :, :]
    return T


_PANDA_FLANGE = np.eye(4)
_PANDA_FLANGE[2, 3] = PANDA_FLANGE_D


def panda_fk(q) -> np.ndarray:
    """Franka Panda flange pose in the link0 frame: (7,) -> (4, 4), (..., 7) -> (..., 4, 4)."""
    return dh_fk(_joints(q, 7, 'panda_fk'), PANDA_MDH, True) @ _PANDA_FLANGE


def ur5_fk(q, variant: str = 'ur5') -> np.ndarray:
    """UR5 / UR5e tool-flange pose in UR's DH base frame: (6,) -> (4, 4), batched likewise."""
    if variant not in UR_DH:
        raise ValueError(f"ur5_fk: unknown variant '{variant}' (choose one of {', '.join(UR_DH)})")
    return dh_fk(_joints(q, 6, 'ur5_fk'), UR_DH[variant], False)


def position_jacobian(fk: Callable[[np.ndarray], np.ndarray], q, eps: float = 1e-6) -> np.ndarray:
    """3 x n Jacobian of the end-effector position by central differences.

    `fk` maps one configuration to a 4x4 pose or a 3-vector position.
    """
    q = np.asarray(q, dtype=np.float64)
    if q.ndim != 1:
        raise ValueError(f'position_jacobian: q must be 1-D, got shape {q.shape}')

    def pos(x):
        p = np.asarray(fk(x), dtype=np.float64)
        return p[:3, 3] if p.shape == (4, 4) else p.reshape(3)

    J = np.empty((3, q.size))
    for i in range(q.size):
        dq = np.zeros_like(q)
        dq[i] = eps
        J[:, i] = (pos(q + dq) - pos(q - dq)) / (2 * eps)
    return J
