"""The arms' facts live on the robot side: a real-arm run's safety limits never load the
simulator, and the simulated scenes use the very same facts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from asyncrl_ros.robot import robot_specs as rs
from asyncrl_ros.robot.arms import get_arm

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, sys, types
import asyncrl_ros.robot.kinematics, asyncrl_ros.robot.safety, asyncrl_ros.robot.robot_specs
import numpy as np
from asyncrl_ros.robot.targets import make_target
for kind, task in (('table', 'reacher'), ('screen', 'tracker')):   # the real arms' targets too
    make_target(kind, np.random.default_rng(0), task).step(0.04)
from asyncrl_ros.robot.arms import ARMS, get_arm
from asyncrl_ros.robot.safety import SafetyFilter
cfg = types.SimpleNamespace(joint_margin_rad=0.05, max_acceleration=5.0)
for name in ARMS:
    arm = get_arm(name)
    SafetyFilter(arm.safety_limits(cfg, 0.01), arm.fk_position)
print(json.dumps(sorted(m for m in sys.modules
                        if m == 'mujoco' or m.startswith(('mujoco.', 'asyncrl_ros.sim')))))
"""


def test_real_arm_specs_and_safety_load_no_simulator():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
    out = subprocess.run([sys.executable, '-c', PROBE], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_simulated_scenes_use_the_robot_facts():
    from asyncrl_ros.robot.kinematics import PANDA_DQ_MAX
    from asyncrl_ros.sim import common, panda_world, scene, ur5_scene, ur5_world
    assert common.Workspace is rs.Workspace
    assert scene.WORKSPACE is rs.PANDA_WORKSPACE and panda_world.HOME_QPOS is rs.PANDA_HOME_QPOS
    assert scene.JOINT_NAMES == list(rs.PANDA_JOINT_NAMES)
    np.testing.assert_array_equal(scene.VELOCITY_LIMITS, PANDA_DQ_MAX)
    assert ur5_scene.UR5_WORKSPACE is rs.UR5_WORKSPACE and ur5_world.HOME_QPOS is rs.UR5_HOME_QPOS
    assert ur5_scene.JOINT_NAMES == list(rs.UR5_JOINT_NAMES)
    assert ur5_scene.ACTUATED is rs.UR5_ACTUATED
    assert ur5_scene.TASK_VELOCITY_LIMIT == rs.UR5_TASK_VELOCITY_LIMIT


def test_arm_specs_are_built_from_the_robot_facts():
    franka, ur5 = get_arm('franka'), get_arm('ur5')
    np.testing.assert_array_equal(franka.home_qpos, rs.PANDA_HOME_QPOS)
    np.testing.assert_array_equal(franka.workspace_min, rs.PANDA_WORKSPACE_MIN)
    np.testing.assert_array_equal(ur5.home_qpos, rs.UR5_HOME_QPOS)
    np.testing.assert_array_equal(ur5.workspace_max, rs.UR5_WORKSPACE_MAX)
    franka.home_qpos[0] = 1.0    # each spec holds its own copies; the shared facts are read-only
    assert rs.PANDA_HOME_QPOS[0] == 0.0 and not rs.PANDA_HOME_QPOS.flags.writeable
