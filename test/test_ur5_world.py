"""The simulated UR5e reacher/tracker: real MuJoCo physics, real rendering, the monitor target."""
import os

os.environ.setdefault('MUJOCO_GL', 'egl')

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from asyncrl_ros.robot.kinematics import ur5_fk  # noqa: E402
from asyncrl_ros.robot.reward import red_mask, ur5_penalty, ur5_reward  # noqa: E402
from asyncrl_ros.robot.monitor_target import MonitorTarget  # noqa: E402
from asyncrl_ros.sim.ur5_scene import SCREEN_CENTRE, default_monitor  # noqa: E402
from asyncrl_ros.sim.ur5_world import (JOINT_NAMES, TASK_VELOCITY_LIMIT,  # noqa: E402
                                       UR5_WORKSPACE_MAX, UR5_WORKSPACE_MIN, UR5World)
from world_checks import ArmWorldChecks, module_world  # noqa: E402


world = module_world(UR5World)


@pytest.fixture
def home(world):
    world.task = 'reacher'
    world.set_joint_positions(world.home_qpos)
    return world


def red_blob(world) -> np.ndarray:
    return red_mask(world.render())


class TestArmWorld(ArmWorldChecks):
    """Time, joint state, camera and bad input, as every simulated arm."""


# ---- the model ----------------------------------------------------------------------------
def test_model_is_the_real_ur5e(world):
    assert world.joint_names == JOINT_NAMES == [
        'shoulder_pan_joint', 'shoulder_lift_joint', 'elbow_joint', 'wrist_1_joint',
        'wrist_2_joint', 'wrist_3_joint']
    assert world.model.njnt == world.n_joints == 6 and world.model.nu == 6
    # Menagerie's 20 UR5e meshes, loaded from the wheel: thousands of vertices, not primitives.
    assert world.model.nmesh == 20 and world.model.nmeshvert > 10_000 and world.model.nkey == 0
    assert np.all((world.joint_lower < world.home_qpos) & (world.home_qpos < world.joint_upper))
    np.testing.assert_allclose(world.velocity_limits, TASK_VELOCITY_LIMIT)
    assert TASK_VELOCITY_LIMIT == 0.7 and world.actuated.tolist() == [True] * 5 + [False]


def test_home_is_in_the_box_level_and_facing_the_screen_centre(home):
    ee = home.ee_position()
    assert np.all(ee >= UR5_WORKSPACE_MIN) and np.all(ee <= UR5_WORKSPACE_MAX)
    np.testing.assert_allclose(UR5_WORKSPACE_MAX - UR5_WORKSPACE_MIN, [0.8, 0.7, 0.7])
    # The camera looks along the tool axis, straight at the screen centre 0.6 m away ...
    np.testing.assert_allclose(home.ee_rotation()[:, 2], [0, -1, 0], atol=1e-9)
    np.testing.assert_allclose(ee[[0, 2]], SCREEN_CENTRE[[0, 2]], atol=1e-3)
    assert ee[1] - SCREEN_CENTRE[1] == pytest.approx(0.6, abs=1e-3)
    # ... which is exactly where the thesis' twist penalty is zero.
    assert ur5_penalty(home.joint_state()[0]) == pytest.approx(0.0, abs=1e-12)


def test_flange_is_ur5e_forward_kinematics(world):
    rng = np.random.default_rng(0)
    for q in rng.uniform(np.maximum(world.joint_lower, -3), np.minimum(world.joint_upper, 3),
                         (8, 6)):
        world.set_joint_positions(q)
        T = ur5_fk(q, 'ur5e')
        # Link offsets are UR's published UR5e lengths: same frame, no offset to document.
        np.testing.assert_allclose(world.ee_position(), T[:3, 3], atol=1e-9)
        np.testing.assert_allclose(world.ee_rotation(), T[:3, :3], atol=1e-9)
    # Also while moving: after step() the flange pose belongs to the joint positions reported.
    world.set_joint_positions(world.home_qpos)
    world.set_joint_velocity([0.5, -0.4, 0.3, 0.2, -0.6, 0.0])
    world.step(0.3)
    np.testing.assert_allclose(world.ee_position(), ur5_fk(world.joint_state()[0], 'ur5e')[:3, 3],
                               atol=1e-9)
    # The wrist camera (on the flange) renders from there too, not from one physics step ago.
    np.testing.assert_allclose(world.data.cam_xpos[world.model.camera('wrist').id],
                               world.ee_position(), atol=1e-12)


# ---- control --------------------------------------------------------------------------------
def test_commanded_velocity_is_tracked(home):
    home.set_joint_velocity([0.0, 0.0, 0.0, 0.0, 0.3, 0.0])
    home.step(0.1)
    cmd = np.array([0.4, -0.3, 0.5, -0.2, 0.3, 0.0])
    home.set_joint_velocity(cmd)
    home.step(0.2)
    np.testing.assert_allclose(home.joint_state()[1], cmd, atol=0.02)


def test_velocity_is_clamped_to_the_task_limit(home):
    home.set_joint_velocity([10.0, -10.0, 10.0, -10.0, 10.0, 0.0])
    home.step(0.2)
    qdot = home.joint_state()[1]
    # Unclamped, the servos would reach several rad/s within these 200 ms.
    np.testing.assert_allclose(np.abs(qdot[:5]), TASK_VELOCITY_LIMIT, rtol=0.03)


def test_last_wrist_joint_is_held_even_when_commanded(home):
    q0 = home.joint_state()[0]
    home.set_joint_velocity([0.3, 0.2, -0.3, 0.4, -0.5, 0.7])
    assert home.data.ctrl[home._act[5]] == 0.0
    home.step(0.5)
    q, qdot = home.joint_state()
    assert abs(qdot[5]) < 1e-3 and abs(q[5] - q0[5]) < 1e-3
    assert np.all(np.abs(q[:5] - q0[:5]) > 0.05)   # the other five did move


# ---- camera and reward ----------------------------------------------------------------------
def test_targets_anywhere_on_the_screen_are_seen_from_home(home):
    rng = np.random.default_rng(1)
    for _ in range(15):
        home.reset_target(rng)
        mask = red_blob(home)
        assert mask.mean() > 0
        # Only the disc is red: every red pixel lies within the disc's image radius (~5 px).
        ys, xs = np.nonzero(mask)
        assert np.max(np.hypot(ys - ys.mean(), xs - xs.mean())) < 7


def test_reward_is_higher_with_the_target_centred_than_at_the_screen_edge(home):
    q = home.joint_state()[0]
    m = home.monitor
    home.set_target(m.to_world([0.0, 0.0]))
    centred = red_blob(home)
    ys, xs = np.nonzero(centred)
    assert abs(ys.mean() - 44.5) < 1.0 and abs(xs.mean() - 79.5) < 1.0
    rewards = [ur5_reward(centred, q)]
    for uv in ([m.high[0], 0.0], [0.0, m.low[1]], m.high):
        home.set_target(m.to_world(uv))
        edge = red_blob(home)
        assert edge.mean() > 0
        rewards.append(ur5_reward(edge, q))
    assert rewards[0] > 1.5 * max(rewards[1:]) > 0


# ---- the monitor target ---------------------------------------------------------------------
def test_tracker_moves_at_constant_speed_and_bounces_inside_the_screen():
    target = default_monitor()
    target.reset(np.random.default_rng(2), 'tracker')
    dt, path, flips = 0.04, [target.position.copy()], 0
    for _ in range(3000):   # 120 s: dozens of bounces off every edge
        v0 = target.velocity.copy()
        path.append(target.step(dt))
        flips += int(np.sum(np.sign(target.velocity) != np.sign(v0)))
        assert np.linalg.norm(target.velocity) == pytest.approx(target.speed)
    path = np.array(path)
    assert np.all(path >= target.low - 1e-12) and np.all(path <= target.high + 1e-12)
    assert flips >= 20
    step = np.linalg.norm(np.diff(path, axis=0), axis=1)
    assert np.all(step <= target.speed * dt + 1e-12)
    # Away from the edges, every step covers exactly speed * dt.
    assert np.mean(np.isclose(step, target.speed * dt, rtol=1e-9)) > 0.9
    # The bounce is folded exactly: one long step lands where many short ones do.
    one = default_monitor()
    one.position, one.velocity = path[0].copy(), target.velocity.copy()
    many = default_monitor()
    many.position, many.velocity = path[0].copy(), target.velocity.copy()
    one.step(37.3)
    for _ in range(373):
        many.step(0.1)
    np.testing.assert_allclose(one.position, many.position, atol=1e-9)
    np.testing.assert_allclose(one.velocity, many.velocity)


def test_world_moves_the_tracker_target_with_time_and_keeps_the_reacher_target(home):
    start = home.reset_target(np.random.default_rng(3))
    home.set_joint_velocity(np.zeros(6))
    home.step(2.0)
    np.testing.assert_array_equal(home.target_position(), start)

    home.task = 'tracker'
    m = home.monitor
    uv = [home.target_screen_position()]
    for _ in range(100):
        home.step(0.04)
        uv.append(home.target_screen_position())
        # The disc the camera sees is where the monitor says it is, on the screen.
        np.testing.assert_allclose(home.target_position(), m.to_world() + 0.002 * m.normal,
                                   atol=1e-12)
    steps = np.linalg.norm(np.diff(uv, axis=0), axis=1)
    assert np.median(steps) == pytest.approx(m.speed * 0.04, rel=1e-6)
    home.task = 'reacher'


def test_reset_is_random_and_reproducible(world):
    a = [world.reset_target(np.random.default_rng(7)) for _ in range(2)]
    np.testing.assert_array_equal(a[0], a[1])
    b = np.array([world.reset_target(np.random.default_rng(s)) for s in range(30)])
    assert np.ptp(b[:, 0]) > 0.2 and np.ptp(b[:, 2]) > 0.1   # spread over the screen


def test_random_target_positions_lie_on_the_screen(world):
    m = world.monitor
    for xyz in [world.random_target_position(np.random.default_rng(s)) for s in range(20)]:
        uv, height = m.to_screen(xyz)
        assert np.all(uv >= m.low) and np.all(uv <= m.high) and height == pytest.approx(0.002)
        world.set_target(xyz)
        np.testing.assert_allclose(world.target_position(), xyz, atol=1e-12)


def test_set_target_round_trips_through_screen_coordinates(world):
    uv = np.array([0.1, -0.05])
    world.set_target(world.monitor.to_world(uv))
    np.testing.assert_allclose(world.target_screen_position(), uv, atol=1e-12)
    world.set_target(world.target_position())   # what the world reports is accepted back
    np.testing.assert_allclose(world.target_screen_position(), uv, atol=1e-12)


# ---- bad input ------------------------------------------------------------------------------
def test_bad_positions_tasks_and_targets_raise(world):
    q = world.home_qpos.copy()
    q[2] = 3.5   # the elbow stops at +-pi
    with pytest.raises(ValueError, match='limits'):
        world.set_joint_positions(q)
    with pytest.raises(ValueError, match='task'):
        world.task = 'pusher'
    with pytest.raises(ValueError, match='task'):
        UR5World(image_width=32, image_height=18, task='static')
    m = world.monitor
    with pytest.raises(ValueError, match='off the screen surface'):
        world.set_target(m.to_world([0.0, 0.0]) + 0.1 * m.normal)
    with pytest.raises(ValueError, match='off the screen'):
        world.set_target(m.to_world([m.width, 0.0]))
    with pytest.raises(ValueError, match='target'):
        world.set_target([0.1, np.nan, 0.5])
    with pytest.raises(ValueError, match='task'):
        m.reset(np.random.default_rng(0), 'static')
    with pytest.raises(ValueError, match='dt'):
        m.step(-0.04)
    with pytest.raises(ValueError, match='radius'):
        MonitorTarget(centre=[0, 0, 0], right=[1, 0, 0], up=[0, 0, 1], radius=0.2)
    with pytest.raises(ValueError, match='orthogonal'):
        MonitorTarget(centre=[0, 0, 0], right=[1, 0, 0], up=[1, 0, 1])
