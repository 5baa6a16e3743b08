"""Forward kinematics against MuJoCo Menagerie's models (shipped inside genesis-world)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import mujoco
import numpy as np
import pytest

from asyncrl_ros.robot.kinematics import (PANDA_Q_MAX, PANDA_Q_MIN, UR_DH, UR_MENAGERIE_FROM_DH, dh_fk,
                                    panda_fk, position_jacobian, ur5_fk)

# genesis is never imported: only its model files are used.
XML = Path(importlib.util.find_spec('genesis').submodule_search_locations[0]) / 'assets' / 'xml'


def _model(relpath: str):
    model = mujoco.MjModel.from_xml_path(str(XML / relpath))
    return model, mujoco.MjData(model)


def _pose(model, data, q):
    data.qpos[:] = q
    mujoco.mj_kinematics(model, data)
    return data


def test_panda_fk_matches_menagerie():
    model, data = _model('franka_emika_panda/panda_nohand.xml')
    rng = np.random.default_rng(0)
    for q in rng.uniform(PANDA_Q_MIN, PANDA_Q_MAX, (20, 7)):
        _pose(model, data, q)
        T = panda_fk(q)
        # Menagerie's attachment body sits 0.107 m along link7's z: Franka's flange.
        np.testing.assert_allclose(T[:3, 3], data.site('attachment_site').xpos, atol=1e-9)
        # The flange frame is DH frame 7 translated, not rotated: same axes as Menagerie's link7.
        np.testing.assert_allclose(T[:3, :3], data.body('link7').xmat.reshape(3, 3), atol=1e-9)
        np.testing.assert_allclose(T[:3, 3] - 0.107 * T[:3, 2], data.body('link7').xpos, atol=1e-9)


def test_ur5e_fk_matches_menagerie():
    model, data = _model('universal_robots_ur5e/ur5e.xml')
    # Menagerie's link offsets, i.e. UR5e's DH table rounded to the millimetre.
    menagerie_dh = UR_DH['ur5e'].copy()
    menagerie_dh[:, :2] = [[0.163, 0], [0, -0.425], [0, -0.392], [0.138 - 0.131 + 0.127, 0],
                           [0.1, 0], [0.1, 0]]
    rounding = np.abs(menagerie_dh[:, :2] - UR_DH['ur5e'][:, :2]).sum()   # 2.1 mm
    rng = np.random.default_rng(1)
    for q in rng.uniform(-2 * np.pi, 2 * np.pi, (20, 6)):
        site = _pose(model, data, q).site('attachment_site')
        T = ur5_fk(q, 'ur5e')
        # Same chain, same frames: exact with Menagerie's own lengths ...
        np.testing.assert_allclose(UR_MENAGERIE_FROM_DH @ dh_fk(q, menagerie_dh, False)[:3, 3],
                                   site.xpos, atol=1e-9)
        # ... and within the rounding with the published ones; the tool axis agrees exactly.
        assert np.linalg.norm(UR_MENAGERIE_FROM_DH @ T[:3, 3] - site.xpos) <= rounding + 1e-9
        np.testing.assert_allclose(UR_MENAGERIE_FROM_DH @ T[:3, 2],
                                   site.xmat.reshape(3, 3)[:, 2], atol=1e-9)


def test_ur5_zero_pose_is_the_published_one():
    # UR5 at all-zero joints: flange at (a2 + a3, -(d4 + d6), d1 - d5), tool axis along -y.
    T = ur5_fk(np.zeros(6), 'ur5')
    np.testing.assert_allclose(T[:3, 3], [-0.81725, -0.19145, -0.005491], atol=1e-9)
    np.testing.assert_allclose(T[:3, 2], [0, -1, 0], atol=1e-12)
    assert not np.allclose(ur5_fk(np.zeros(6), 'ur5e')[:3, 3], T[:3, 3], atol=1e-3)


def test_fk_is_batched_and_rigid():
    rng = np.random.default_rng(2)
    Q = rng.uniform(PANDA_Q_MIN, PANDA_Q_MAX, (4, 3, 7))
    T = panda_fk(Q)
    assert T.shape == (4, 3, 4, 4)
    np.testing.assert_allclose(T[2, 1], panda_fk(Q[2, 1]), atol=1e-14)
    R = T[..., :3, :3]
    np.testing.assert_allclose(R @ np.swapaxes(R, -1, -2), np.broadcast_to(np.eye(3), R.shape),
                               atol=1e-12)
    U = ur5_fk(rng.uniform(-6, 6, (5, 6)), 'ur5e')
    assert U.shape == (5, 4, 4)
    np.testing.assert_allclose(np.linalg.det(U[:, :3, :3]), 1.0, atol=1e-12)


def test_fk_rejects_bad_input():
    with pytest.raises(ValueError, match='panda_fk.*7'):
        panda_fk(np.zeros(6))
    with pytest.raises(ValueError, match='ur5_fk.*6'):
        ur5_fk(np.zeros(7))
    with pytest.raises(ValueError, match="variant 'ur10'"):
        ur5_fk(np.zeros(6), 'ur10')
    with pytest.raises(ValueError, match='1-D'):
        position_jacobian(panda_fk, np.zeros((2, 7)))


def test_position_jacobian_matches_mujoco():
    model, data = _model('franka_emika_panda/panda_nohand.xml')
    site = model.site('attachment_site').id
    rng = np.random.default_rng(3)
    for q in rng.uniform(PANDA_Q_MIN, PANDA_Q_MAX, (5, 7)):
        _pose(model, data, q)
        mujoco.mj_comPos(model, data)
        jacp = np.zeros((3, model.nv))
        mujoco.mj_jacSite(model, data, jacp, None, site)
        J = position_jacobian(panda_fk, q)
        assert J.shape == (3, 7)
        np.testing.assert_allclose(J, jacp, atol=1e-7)
        # A function returning positions only gives the same Jacobian.
        np.testing.assert_allclose(position_jacobian(lambda x: panda_fk(x)[:3, 3], q), J)
