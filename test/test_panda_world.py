"""The simulated Panda world: real MuJoCo physics and real offscreen rendering."""
import os

os.environ.setdefault('MUJOCO_GL', 'egl')

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from asyncrl_ros.sim.panda_world import (JOINT_NAMES, WORKSPACE_MAX, WORKSPACE_MIN,  # noqa: E402
                                         PandaWorld)
from world_checks import ArmWorldChecks, module_world  # noqa: E402


def red_fraction(rgb: np.ndarray) -> float:
    """The paper's red mask (OpenCV HSV ranges), as the reward sees it."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    return float((((h <= 10) | (h >= 170)) & (s >= 120) & (v >= 70)).mean())


world = module_world(PandaWorld)


@pytest.fixture
def home(world):
    world.set_joint_positions(world.home_qpos)
    return world


class TestArmWorld(ArmWorldChecks):
    """Time, joint state, camera and bad input, as every simulated arm."""


def test_model_is_the_real_panda(world):
    assert world.joint_names == [f'panda_joint{i}' for i in range(1, 8)] == JOINT_NAMES
    assert world.model.njnt == world.n_joints == 7 and world.model.nu == 7
    assert world.model.nmesh > 0 and world.model.nkey == 0
    assert np.all(world.joint_lower < world.joint_upper)
    np.testing.assert_allclose(world.velocity_limits, [2.175] * 4 + [2.61] * 3)
    assert np.all((world.joint_lower < world.home_qpos) & (world.home_qpos < world.joint_upper))


def test_home_pose_is_inside_the_workspace_above_the_table(home):
    ee = home.ee_position()
    assert np.all(ee >= WORKSPACE_MIN) and np.all(ee <= WORKSPACE_MAX)
    assert 0.3 <= ee[2] <= 0.5
    np.testing.assert_allclose(WORKSPACE_MAX - WORKSPACE_MIN, [0.40, 0.60, 0.30])


def test_commanded_velocity_is_tracked(home):
    qdot = np.zeros(7)
    qdot[0] = 0.3
    home.set_joint_velocity(qdot)
    home.step(0.2)
    measured = home.joint_state()[1]
    assert measured[0] == pytest.approx(0.3, rel=0.1)
    assert np.all(np.abs(measured[1:]) < 0.03)


def test_velocity_command_is_clipped_to_the_limits(home):
    home.set_joint_velocity(np.full(7, 10.0))
    home.step(0.1)
    # Unclipped, the servos would reach several rad/s; a few % over comes from coupled links.
    assert np.all(home.joint_state()[1] <= home.velocity_limits * 1.05)


def test_bad_joint_positions_raise(world):
    q = world.home_qpos.copy()
    q[3] = 0.5  # joint 4 must stay negative
    with pytest.raises(ValueError, match='limits'):
        world.set_joint_positions(q)


def test_target_under_camera_is_red_and_far_target_is_not(home):
    below = home.ee_position()
    home.set_target([below[0], below[1], 0.015])
    near = red_fraction(home.render())
    home.set_target([2.0, 2.0, 0.015])
    far = red_fraction(home.render())
    assert near > 0.01
    assert far < 1e-4
    # The table itself must not read as red (its saturation sits below the mask's threshold).
    assert red_fraction(home.render()) == far


def test_targets_in_the_footprint_are_visible_from_home(home):
    rng = np.random.default_rng(3)
    visible = []
    for _ in range(20):
        home.set_target(home.random_target_position(rng))
        visible.append(red_fraction(home.render()) > 0)
    assert np.mean(visible) >= 0.8


def test_random_targets_rest_on_the_table_inside_the_footprint(world):
    rng = np.random.default_rng(0)
    p = np.array([world.random_target_position(rng) for _ in range(500)])
    assert np.all(p[:, :2] >= WORKSPACE_MIN[:2]) and np.all(p[:, :2] <= WORKSPACE_MAX[:2])
    assert np.all(p[:, 2] > 0) and np.all(p[:, 2] < 0.05)
    # Spread over the footprint, not stuck in a corner.
    assert np.ptp(p[:, 0]) > 0.2 and np.ptp(p[:, 1]) > 0.4
    world.set_target(p[0])
    np.testing.assert_allclose(world.target_position(), p[0])


def test_set_target_rejects_bad_input(world):
    with pytest.raises(ValueError, match='target'):
        world.set_target([0.5, 0.0])
    with pytest.raises(ValueError, match='target'):
        world.set_target([0.5, np.nan, 0.0])
