"""MjSpec builder for the simulated visual reacher: a Franka Panda on a table, a wrist camera
and a red target (the paper's bean bag).

World frame = robot base frame; the table top is the plane z = 0.
The arm model is MuJoCo Menagerie's Panda (see `asyncrl_ros.sim.common`).
"""
from __future__ import annotations

import mujoco
import numpy as np

from asyncrl_ros.robot.kinematics import PANDA_DQ_MAX
from asyncrl_ros.robot.robot_specs import (PANDA_JOINT_NAMES, PANDA_WORKSPACE, PANDA_WORKSPACE_MAX,
                                     PANDA_WORKSPACE_MIN, Workspace)  # noqa: F401 (re-exported)
from asyncrl_ros.robot.targets import TARGET_HALF_SIZE, random_target_position  # noqa: F401 (re-exported)
from asyncrl_ros.sim.common import (CAMERA_NAME, FLOOR_RGBA, SCENE_GROUP, TARGET_BODY,
                                    TARGET_RGBA, add_velocity_servos, configure_scene,
                                    load_arm, menagerie_xml_path)

PREFIX = 'panda_'
JOINT_NAMES = list(PANDA_JOINT_NAMES)   # the robot's own names (robot_specs)
FLANGE_BODY = f'{PREFIX}attachment'

# Franka Panda datasheet: maximum joint velocities (rad/s, kinematics.PANDA_DQ_MAX) and
# torques (N m).
VELOCITY_LIMITS = PANDA_DQ_MAX.copy()
TORQUE_LIMITS = np.array([87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0])
# Velocity-servo gains (N m s/rad), about (largest joint-space inertia) / 8 ms: the joint
# reaches the commanded velocity in a few ms, well inside one 40 ms action cycle. The
# implicitfast integrator treats them as implicit damping, so they stay stable at 2 ms steps.
SERVO_KV = np.array([400.0, 400.0, 150.0, 150.0, 20.0, 20.0, 20.0])


# The paper's 40 x 60 x 30 cm box (robot_specs).
WORKSPACE = PANDA_WORKSPACE
WORKSPACE_MIN = PANDA_WORKSPACE_MIN
WORKSPACE_MAX = PANDA_WORKSPACE_MAX
for _a in (VELOCITY_LIMITS, TORQUE_LIMITS, SERVO_KV):
    _a.flags.writeable = False  # shared constants: a stray in-place edit would move everyone's box
del _a

# Bean bag: a flat red box resting on the table (half sizes, m).
TABLE_HALF_SIZE = np.array([0.70, 0.80, 0.02])
TABLE_CENTRE_X = 0.35
# Wrist camera vertical field of view (deg); a 16:9 frame is wider than high.
CAMERA_FOVY = 55.0

# Light wood: HSV saturation ~0.40 (OpenCV ~100), safely below the red mask's S >= 120.
TABLE_RGBA = (0.62, 0.50, 0.37, 1.0)


def panda_xml_path() -> str:
    """Menagerie's panda_nohand.xml inside the installed genesis-world package."""
    return menagerie_xml_path('franka_emika_panda', 'panda_nohand.xml', 'Panda')


def build_spec(image_width: int, image_height: int, physics_dt: float) -> mujoco.MjSpec:
    """The whole scene as an MjSpec (compile with `.compile()`)."""
    spec = mujoco.MjSpec()
    configure_scene(spec, 'panda_visual_reacher', image_width, image_height, physics_dt,
                    light_pos=[0.4, 0.0, 2.0])
    spec.option.impratio = 10.0  # the arm model's own setting (attach keeps the parent's)
    world = spec.worldbody
    world.add_geom(name='table', type=mujoco.mjtGeom.mjGEOM_BOX, size=TABLE_HALF_SIZE,
                   pos=[TABLE_CENTRE_X, 0.0, -TABLE_HALF_SIZE[2]], rgba=TABLE_RGBA,
                   group=SCENE_GROUP)
    world.add_geom(name='floor', type=mujoco.mjtGeom.mjGEOM_PLANE, size=[3, 3, 0.1],
                   pos=[0, 0, -0.75], rgba=FLOOR_RGBA, group=SCENE_GROUP)

    target = world.add_body(name=TARGET_BODY, mocap=True,
                            pos=[WORKSPACE.centre[0], WORKSPACE.centre[1], TARGET_HALF_SIZE[2]])
    # Visual only: the arm never knocks the target about (the bag is re-placed, not pushed).
    target.add_geom(name='target', type=mujoco.mjtGeom.mjGEOM_BOX, size=TARGET_HALF_SIZE,
                    rgba=TARGET_RGBA, contype=0, conaffinity=0, group=SCENE_GROUP)
    spec.add_material(name='matte', specular=0.0, shininess=0.0, reflectance=0.0)
    spec.geom('target').material = 'matte'
    spec.geom('table').material = 'matte'

    frame = world.add_frame()
    frame.attach_body(load_arm(panda_xml_path()).body('link0'), PREFIX, '')

    flange = spec.body(FLANGE_BODY)
    # MuJoCo cameras look along their -z: turn half a turn about x so the camera looks along
    # the flange's +z (the tool axis).
    flange.add_camera(name=CAMERA_NAME, pos=[0, 0, 0], quat=[0, 1, 0, 0], fovy=CAMERA_FOVY)

    add_velocity_servos(spec, JOINT_NAMES, SERVO_KV, VELOCITY_LIMITS, TORQUE_LIMITS)
    return spec
