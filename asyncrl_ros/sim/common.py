"""What the Panda and UR5 scenes share: Menagerie arm models, a cheap offscreen set-up, the
velocity servos and the names the worlds look up (the workspace box, `Workspace`, is a robot
fact: `asyncrl_ros.robot.robot_specs`).

The arm models are MuJoCo Menagerie's, shipped inside the genesis-world wheel (found with
`importlib.util.find_spec`, never imported: importing genesis pulls in its whole runtime).
"""
from __future__ import annotations

import importlib.util
import os

import mujoco
import numpy as np

from asyncrl_ros.robot.robot_specs import Workspace  # noqa: F401  (the box is a robot fact)

CAMERA_NAME = 'wrist'
TARGET_BODY = 'target'
# Geom group the wrist camera renders; the arms' own meshes (groups 2 and 3) stay hidden.
SCENE_GROUP = 0
# Red: saturated and non-specular, so dim white lights leave it inside the HSV red mask.
TARGET_RGBA = (0.75, 0.04, 0.03, 1.0)
FLOOR_RGBA = (0.30, 0.30, 0.32, 1.0)


def menagerie_xml_path(folder: str, filename: str, robot: str) -> str:
    """`assets/xml/<folder>/<filename>` inside the installed genesis-world package."""
    spec = importlib.util.find_spec('genesis')
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f'genesis-world is not installed: it provides the {robot} model '
                                '(pip install --no-deps genesis-world)')
    path = os.path.join(spec.submodule_search_locations[0], 'assets', 'xml', folder, filename)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{robot} model not found at {path}')
    return path


def load_arm(path: str) -> mujoco.MjSpec:
    """The arm's MjSpec, bare: no actuators, keyframes or lights, gravity compensated."""
    arm = mujoco.MjSpec.from_file(path)
    meshdir = os.path.join(os.path.dirname(path), arm.meshdir)
    # Absolute mesh paths: relative ones would resolve against the parent spec's folder once
    # attached, or against the working folder once grown into a scene.
    for mesh in arm.meshes:
        mesh.file = os.path.join(meshdir, mesh.file)
    for element in [*arm.actuators, *arm.keys, *arm.lights]:
        arm.delete(element)
    for body in arm.bodies:
        body.gravcomp = 1.0
    return arm


def configure_scene(spec: mujoco.MjSpec, name: str, image_width: int, image_height: int,
                    physics_dt: float, light_pos) -> None:
    """Physics options, a cheap offscreen buffer and dim even lighting (one top light)."""
    spec.modelname = name
    spec.compiler.degree = False
    spec.option.timestep = physics_dt
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    # Offscreen buffer sized to the frame, no multisampling: llvmpipe pays for every sample.
    spec.visual.global_.offwidth = image_width
    spec.visual.global_.offheight = image_height
    spec.visual.quality.offsamples = 0
    spec.visual.quality.shadowsize = 0
    # Dim, even light: a bright headlight washes red towards pink (low saturation).
    spec.visual.headlight.ambient = [0.25, 0.25, 0.25]
    spec.visual.headlight.diffuse = [0.35, 0.35, 0.35]
    spec.visual.headlight.specular = [0.0, 0.0, 0.0]
    spec.worldbody.add_light(name='top', pos=light_pos, dir=[0, 0, -1],
                             type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL, castshadow=False,
                             diffuse=[0.35, 0.35, 0.35], specular=[0.0, 0.0, 0.0])


def add_velocity_servos(spec: mujoco.MjSpec, joint_names, kv, velocity_limits,
                        torque_limits=None) -> None:
    """One joint-velocity servo `<joint>_velocity` per joint, in `joint_names` order."""
    for i, name in enumerate(joint_names):
        # torque = (kv + b) * u - kv * qdot: the feed-forward b * u cancels the joint's own
        # viscous damping b, so the steady state is qdot = u exactly (no droop).
        b = spec.joint(name).damping[0]
        limits = {} if torque_limits is None else dict(
            forcelimited=True, forcerange=[-torque_limits[i], torque_limits[i]])
        spec.add_actuator(name=f'{name}_velocity', target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT,
                          gaintype=mujoco.mjtGain.mjGAIN_FIXED,
                          biastype=mujoco.mjtBias.mjBIAS_AFFINE,
                          gainprm=[kv[i] + b] + [0] * 9, biasprm=[0, 0, -kv[i]] + [0] * 7,
                          ctrllimited=True, ctrlrange=[-velocity_limits[i], velocity_limits[i]],
                          **limits)
