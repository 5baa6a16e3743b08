"""MjSpec builder for the thesis' UR5 reacher/tracker: a UR5e on a table, a wrist camera and a
monitor in front of it showing a red target.

World frame = UR's base frame (the controller's `base`, i.e. the DH base of
`asyncrl_ros.robot.kinematics.ur5_fk`; ur_description's `base_link` turned by pi about z). The robot
stands on the table top, the plane z = 0; the monitor stands along -y, facing the robot.
The arm model is MuJoCo Menagerie's UR5e (see `asyncrl_ros.sim.common`), with its link
offsets set to UR's published UR5e DH lengths (Menagerie rounds them to the millimetre), so
`tool0` is exactly `ur5_fk(q, 'ur5e')` for the simulated and the real arm alike.
"""
from __future__ import annotations

import mujoco
import numpy as np

from asyncrl_ros.robot.kinematics import UR_DH
from asyncrl_ros.robot.robot_specs import (UR5_ACTUATED, UR5_ARM_PLANE_X, UR5_JOINT_NAMES,
                                     UR5_TASK_VELOCITY_LIMIT, UR5_WORKSPACE, UR5_WORKSPACE_MAX,
                                     UR5_WORKSPACE_MIN)
from asyncrl_ros.robot.monitor_target import MonitorTarget
from asyncrl_ros.robot.targets import SCREEN_CENTRE, SCREEN_RIGHT, SCREEN_UP, default_monitor  # noqa: F401
from asyncrl_ros.sim.common import (CAMERA_NAME, FLOOR_RGBA, SCENE_GROUP, TARGET_BODY,
                                    TARGET_RGBA, add_velocity_servos, configure_scene,
                                    load_arm, menagerie_xml_path)

__all__ = ['JOINT_NAMES', 'FLANGE_BODY', 'CAMERA_NAME', 'TARGET_BODY', 'TASK_VELOCITY_LIMIT',
           'UR5_WORKSPACE', 'UR5_WORKSPACE_MIN', 'UR5_WORKSPACE_MAX', 'default_monitor',
           'build_spec', 'ur5e_xml_path']

# The robot's facts (joint names, task velocity limit, actuated joints, workspace box) are
# robot_specs'; the scene is built around them.
JOINT_NAMES = list(UR5_JOINT_NAMES)   # ur_robot_driver's, in its command order
# The tool flange, named as in ur_description; the wrist camera sits on it.
FLANGE_BODY = 'tool0'

TASK_VELOCITY_LIMIT = UR5_TASK_VELOCITY_LIMIT
ACTUATED = UR5_ACTUATED
# Velocity-servo gains (N m s/rad), about (largest joint-space inertia over the joint range) /
# 4-9 ms for the three big joints: they reach the commanded velocity within a few tens of ms,
# inside one action cycle. The wrists (inertia 1e-4..2e-2 kg m^2; the model has no rotor
# inertia) track within a few ms at 10. The servo stands for UR's own joint-velocity
# controller, so it is not torque-limited: MuJoCo's implicit damping is unconditionally stable
# only unclamped; clamped at the UR5e's 150 / 28 N m, random +-0.7 rad/s reversals oscillate at
# 10 ms physics steps.
SERVO_KV = np.array([400.0, 400.0, 150.0, 10.0, 10.0, 10.0])

# The flange's plane at home (pan at pi/2): monitor and box are centred on it.
ARM_PLANE_X = UR5_ARM_PLANE_X

SCREEN_THICKNESS = 0.02
BEZEL = 0.015
# The disc floats just in front of the screen surface: a visible red, never z-fighting.
TARGET_LIFT = 0.002
TARGET_HALF_THICKNESS = 0.001
for _a in (SERVO_KV,):
    _a.flags.writeable = False  # shared constants
del _a

# A webcam's vertical field of view at 16:9 (Logitech C920-like: ~70 x 43 deg): from home the
# whole screen fills ~60 % of the frame and the disc ~60 px of a 160 x 90 frame.
CAMERA_FOVY = 43.3
TABLE_HALF_SIZE = np.array([0.8, 0.8, 0.02])
TABLE_CENTRE_Y = -0.45

# Matte colours; every non-target colour stays far below the red mask's S >= 120.
SCREEN_RGBA = (0.92, 0.92, 0.92, 1.0)
BEZEL_RGBA = (0.06, 0.06, 0.07, 1.0)
TABLE_RGBA = (0.55, 0.55, 0.57, 1.0)
WALL_RGBA = (0.45, 0.46, 0.48, 1.0)


def ur5e_xml_path() -> str:
    """Menagerie's ur5e.xml inside the installed genesis-world package."""
    return menagerie_xml_path('universal_robots_ur5e', 'ur5e.xml', 'UR5e')


def _load_arm() -> mujoco.MjSpec:
    arm = load_arm(ur5e_xml_path())
    if arm.body('ee_virtual_link') is not None:  # genesis' addition; tool0 replaces it
        arm.delete(arm.body('ee_virtual_link'))
    for joint in arm.joints:
        joint.name = f'{joint.name}_joint'

    # Published UR5e lengths: d1, a2, a3, d4 (= shoulder 0.138 - elbow 0.131 + wrist_2's y
    # offset), d5, d6. Menagerie's are these rounded to the mm; the meshes move < 1 mm.
    (d1, _, _), (_, a2, _), (_, a3, _), (d4, _, _), (d5, _, _), (d6, _, _) = UR_DH['ur5e']
    arm.body('shoulder_link').pos = [0, 0, d1]
    arm.body('forearm_link').pos = [0, -0.131, -a2]
    arm.body('wrist_1_link').pos = [0, 0, -a3]
    arm.body('wrist_2_link').pos = [0, d4 - 0.138 + 0.131, 0]
    arm.body('wrist_3_link').pos = [0, 0, d5]
    arm.site('attachment_site').pos = [0, d6, 0]
    # tool0: UR's flange frame, as ur5_fk's (z the tool axis); Menagerie's attachment_site has
    # the same origin and z, its x and y a quarter turn about z away.
    arm.body('wrist_3_link').add_body(name=FLANGE_BODY, pos=[0, d6, 0],
                                      quat=[np.sqrt(0.5), -np.sqrt(0.5), 0, 0])
    # Menagerie's base body is ur_description's base_link; UR's base frame (the world here) is
    # base_link turned by pi about z.
    arm.body('base').quat = [0, 0, 0, 1]
    return arm


def _quat_from_axes(x, y, z) -> np.ndarray:
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, np.column_stack([x, y, z]).ravel())
    return quat


def build_spec(image_width: int, image_height: int, physics_dt: float,
               monitor: MonitorTarget) -> mujoco.MjSpec:
    """The whole scene as an MjSpec (compile with `.compile()`); the screen is `monitor`'s."""
    # The scene grows around the arm's own spec: no attach, so the UR driver's joint names need
    # no prefix.
    spec = _load_arm()
    configure_scene(spec, 'ur5e_visual_reacher', image_width, image_height, physics_dt,
                    light_pos=[0.0, -0.5, 2.0])
    spec.add_material(name='matte', specular=0.0, shininess=0.0, reflectance=0.0)

    world = spec.worldbody

    def box(name, size, pos, rgba, body=world, **kw):
        body.add_geom(name=name, type=mujoco.mjtGeom.mjGEOM_BOX, size=size, pos=pos, rgba=rgba,
                      material='matte', group=SCENE_GROUP, **kw)

    box('table', TABLE_HALF_SIZE, [ARM_PLANE_X, TABLE_CENTRE_Y, -TABLE_HALF_SIZE[2]], TABLE_RGBA)
    world.add_geom(name='floor', type=mujoco.mjtGeom.mjGEOM_PLANE, size=[3, 3, 0.1],
                   pos=[0, 0, -0.75], rgba=FLOOR_RGBA, material='matte', group=SCENE_GROUP)
    # A wall behind the monitor, so the frame around the screen is not a black void.
    world.add_geom(name='wall', type=mujoco.mjtGeom.mjGEOM_PLANE, size=[3, 2, 0.1],
                   pos=[0, -1.8, 0.5], quat=_quat_from_axes([-1, 0, 0], [0, 0, 1], [0, 1, 0]),
                   rgba=WALL_RGBA, material='matte', group=SCENE_GROUP, contype=0,
                   conaffinity=0)

    m = monitor
    screen = world.add_body(name='monitor', pos=m.centre,
                            quat=_quat_from_axes(m.right, m.up, m.normal))
    half_w, half_h = m.width / 2, m.height / 2
    box('screen', [half_w, half_h, SCREEN_THICKNESS / 2], [0, 0, -SCREEN_THICKNESS / 2],
        SCREEN_RGBA, body=screen)
    box('bezel', [half_w + BEZEL, half_h + BEZEL, SCREEN_THICKNESS / 2],
        [0, 0, -1.5 * SCREEN_THICKNESS], BEZEL_RGBA, body=screen)
    # A stand from the table top to the bottom of the bezel.
    stand_top = m.centre[2] - half_h - BEZEL
    if stand_top > 0:
        foot = m.centre - 2 * SCREEN_THICKNESS * m.normal
        box('stand', [0.03, 0.02, stand_top / 2], [foot[0], foot[1], stand_top / 2], BEZEL_RGBA)

    # The red disc: visual only (the arm never pushes it), a cylinder whose axis is the normal.
    target = world.add_body(name=TARGET_BODY, mocap=True,
                            pos=m.to_world() + TARGET_LIFT * m.normal,
                            quat=_quat_from_axes(m.right, m.up, m.normal))
    target.add_geom(name='target', type=mujoco.mjtGeom.mjGEOM_CYLINDER,
                    size=[m.radius, TARGET_HALF_THICKNESS, 0], rgba=TARGET_RGBA,
                    material='matte', contype=0, conaffinity=0, group=SCENE_GROUP)

    # MuJoCo cameras look along their -z: half a turn about x makes the camera look along the
    # flange's +z (the tool axis), image up along the flange's -y.
    spec.body(FLANGE_BODY).add_camera(name=CAMERA_NAME, pos=[0, 0, 0], quat=[0, 1, 0, 0],
                                      fovy=CAMERA_FOVY)

    add_velocity_servos(spec, JOINT_NAMES, SERVO_KV,
                        np.full(len(JOINT_NAMES), TASK_VELOCITY_LIMIT))
    return spec
