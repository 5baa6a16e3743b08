"""The arms' configured bounds: the paper's Franka bounds as the Franka settings' defaults,
their validation (one ConfigError line before any node starts), the warning when a setting
widens them, the shipped velocity controller, and arm_driver applying them."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from asyncrl_ros.robot.arms import (PAPER_FRANKA_JOINT_RANGES, PAPER_FRANKA_MAX_VELOCITY,
                              RELOD_FRANKA_JOINT_RANGES, configured_arm, get_arm)
from asyncrl_ros.run.config import ConfigError, load_config
from asyncrl_ros.robot.kinematics import PANDA_DDQ_MAX
from asyncrl_ros.run.profiles import load_profiles, resolve

CONFIG = Path(__file__).resolve().parents[1] / 'config'
SETTINGS = [f'{name}:{setting}' for name, prof in load_profiles().items()
            for setting in prof.settings]
# The paper's settings (baseline, hires); 'quick' is a CPU setting that says it is wider.
FRANKA_SETTINGS = [s for s in SETTINGS if s.startswith('franka_') and not s.endswith(':quick')]
QUICK_SETTINGS = [s for s in SETTINGS if s.startswith('franka_') and s.endswith(':quick')]


def resolved(profile_setting: str, *overrides: dict):
    """'franka_sim_sync:baseline' -> that profile's setting, as the bringup resolves it."""
    profile, setting = profile_setting.split(':')
    return resolve(profile, setting, overrides=list(overrides))[1]


def test_paper_ranges_are_relods_but_for_joint_2():
    ours, relod = np.array(PAPER_FRANKA_JOINT_RANGES), np.array(RELOD_FRANKA_JOINT_RANGES)
    assert relod.tolist() == [[-0.5, 0.5], [0, 1.2], [-0.5, 0.5], [-2.8, -0.2], [-0.4, 0.4],
                              [1.7, 2.96], [-0.9, 0.9]]
    differs = np.flatnonzero(np.any(ours != relod, axis=1))
    assert differs.tolist() == [1] and ours[1].tolist() == [-0.2, 1.2]
    # ReLoD's own joint 2 range would not hold our home pose: the config says so.
    with pytest.raises(ConfigError, match='panda_joint2.*home'):
        load_config({'safety': {'joint_ranges': [list(r) for r in relod]}})


@pytest.mark.parametrize('setting', FRANKA_SETTINGS)
def test_every_franka_setting_has_the_papers_bounds(setting):
    cfg = resolved(setting)
    arm = configured_arm(cfg)
    np.testing.assert_array_equal(arm.velocity_limits, PAPER_FRANKA_MAX_VELOCITY)
    np.testing.assert_array_equal(np.stack([arm.joint_lower, arm.joint_upper], 1),
                                  PAPER_FRANKA_JOINT_RANGES)
    assert cfg.safety.velocity_fraction == 1.0       # actions span +-0.2 rad/s, as ReLoD's
    assert cfg.warnings() == []
    # The driver's filter gets them, homing keeps the arm's own speed.
    limits = arm.safety_limits(cfg.safety, 0.01)
    assert np.all(limits.velocity_limits == 0.2) and np.all(arm.homing_velocity_limits > 2)


@pytest.mark.parametrize('setting', QUICK_SETTINGS)
def test_quick_franka_settings_say_they_are_wider_than_the_paper(setting):
    cfg = resolved(setting)
    assert 'wider than the paper' in ' '.join(cfg.warnings())


@pytest.mark.parametrize('setting', SETTINGS)
def test_every_setting_ramps_within_the_hardware(setting):
    cfg = resolved(setting)
    assert 0 < cfg.safety.max_acceleration <= PANDA_DDQ_MAX.min()


@pytest.mark.parametrize('override, says', [
    ({'max_velocity': 0.5}, 'joint velocities up to 0.5 rad/s (paper 0.2)'),
    ({'max_velocity': 0.0}, 'joint velocities up to 2.61 rad/s'),
    ({'joint_ranges': [[-0.5, 0.5], [-0.2, 1.2], [-0.5, 0.5], [-2.8, -0.2], [-0.4, 0.4],
                       [1.7, 2.96], [-1.5, 0.9]]}, 'joint ranges of joint 7'),
])
def test_widening_the_papers_bounds_is_one_warning_line(override, says):
    cfg = resolved('franka_sim_sync:baseline', {'safety': override})
    lines = cfg.warnings()
    assert len(lines) == 1 and '\n' not in lines[0] and says in lines[0], lines
    # Narrowing is no warning; other arms have no paper bounds to widen.
    assert resolved('franka_sim_sync:baseline',
                    {'safety': {'max_velocity': 0.1}}).warnings() == []
    assert load_config({'arm': 'ur5'}).warnings() == []


@pytest.mark.parametrize('data, says', [
    ({'safety': {'max_velocity': 2.5}}, "'safety.max_velocity' must be in (0, 2.175]"),
    ({'safety': {'max_velocity': -1.0}}, "'safety.max_velocity'"),
    ({'arm': 'ur5', 'safety': {'max_velocity': 0.8}}, "'safety.max_velocity' must be in (0, 0.7]"),
    ({'safety': {'max_acceleration': 10.0}}, "beyond the franka's joint acceleration limit 7.5"),
    ({'safety': {'max_acceleration': 0.0}}, "'safety.max_acceleration' must be > 0"),
    ({'arm': 'ur5', 'safety': {'max_acceleration': 0.0}}, "must be > 0 rad/s^2 for every arm"),
    ({'safety': {'joint_ranges': [[-3.0, 0.5]] + [list(r) for r in PAPER_FRANKA_JOINT_RANGES[1:]]}},
     'panda_joint1 [-3, 0.5] is beyond its limits [-2.8973, 2.8973]'),
    ({'safety': {'joint_ranges': [[-0.5, 0.5]] * 6}}, "'safety.joint_ranges' must be 7 x 2"),
    ({'safety': {'joint_ranges': [[0.5, -0.5]] * 7}}, 'lower < upper'),
    ({'safety': {'joint_ranges': 'wide'}}, "'safety.joint_ranges' must be 7 x 2"),
    ({'safety': {'workspace_max': [0.7, 0.3, 0.3]}}, 'does not hold the home pose'),
    ({'safety': {'workspace_min': [0.3, -0.3]}}, "'safety.workspace_min' must be 3"),
    ({'safety': {'workspace_min': [0.3, -0.3, 0.5]}}, "'safety.workspace_max'"),
    ({'arm': 'ur5', 'safety': {'joint_ranges': [[-1, 1]] * 6}}, 'shoulder_pan_joint'),
])
def test_bad_bounds_are_one_config_error_line(data, says):
    with pytest.raises(ConfigError) as err:
        load_config(data)
    assert says in str(err.value) and '\n' not in str(err.value), str(err.value)


def test_a_box_and_ranges_that_hold_home_are_applied():
    cfg = load_config({'safety': {'workspace_min': [0.35, -0.2, 0.15],
                                  'workspace_max': [0.65, 0.2, 0.45], 'max_velocity': 1.0}})
    arm = configured_arm(cfg)
    assert arm.workspace_min.tolist() == [0.35, -0.2, 0.15]
    assert arm.workspace_max.tolist() == [0.65, 0.2, 0.45]
    np.testing.assert_array_equal(arm.velocity_limits, 1.0)
    # Unconfigured: the arm's own.
    base, plain = get_arm('franka'), configured_arm(load_config())
    np.testing.assert_array_equal(plain.velocity_limits, base.velocity_limits)
    np.testing.assert_array_equal(plain.joint_lower, base.joint_lower)


def test_shipped_controller_is_a_velocity_forward_command_controller():
    doc = yaml.safe_load((CONFIG / 'franka_velocity_controller.yaml').read_text())
    manager = doc['controller_manager']['ros__parameters']
    assert manager['forward_velocity_controller']['type'] == \
        'forward_command_controller/ForwardCommandController'
    params = doc['forward_velocity_controller']['ros__parameters']
    assert params['interface_name'] == 'velocity'
    assert params['joints'] == list(get_arm('franka').joint_names)


def test_driver_bounds_policy_commands_by_the_paper_but_homes_at_the_arms_speed(
        tmp_path, start_node, ros_node):
    from std_srvs.srv import Trigger
    from asyncrl_ros.nodes.common import SERVICE_HOME
    from conftest import write_config
    from test_arm_driver_node import FakeRobotSide
    data = yaml.safe_load((CONFIG / 'overlays' / 'franka.yaml').read_text())
    cfg = write_config(tmp_path, {'safety': data['safety'],
                                  'task': {'action_cycle_ms': 40.0, 'reset_s': 0.5}})
    start_node('arm_driver', cfg)
    arm = get_arm('franka')
    side = FakeRobotSide(ros_node, arm.home_qpos)
    home = ros_node.create_client(Trigger, SERVICE_HOME)
    ros_node.spin_until(lambda: home.service_is_ready() and len(side.outputs) > 5
                        and side.cmd_pub.get_subscription_count() > 0, 30, 'arm_driver to come up')
    side.drive([5.0, 0, 0, 0, 0, 0, -5.0], 1.0)             # sideways, and the flange's roll
    policy = np.array([v for _, v in side.outputs])
    assert np.max(np.abs(policy)) == pytest.approx(0.2)    # reached, never beyond
    np.testing.assert_allclose(side.latest(), [0.2, 0, 0, 0, 0, 0, -0.2])
    # Homing 0.3 rad in 0.5 s asks for 0.6 rad/s: not the policy's bound.
    side.q = arm.home_qpos + np.eye(arm.n_joints)[0] * 0.3
    ros_node.spin_for(0.5)                       # the driver has the new joint state
    start = time.monotonic()
    future = home.call_async(Trigger.Request())
    ros_node.spin_until(future.done, 10, 'the home service to answer')

    def homing_speed():
        return max((abs(v[0]) for t, v in side.outputs if t > start), default=0.0)
    ros_node.spin_until(lambda: homing_speed() > 0.4, 10, 'homing faster than the policy may')
    ros_node.spin_for(0.5)
    assert homing_speed() <= arm.velocity_limits[0]
