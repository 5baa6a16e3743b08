"""MjSpec builder for the simulated visual reacher: a Franka Panda on a table, a wrist camera
and a red target (the paper's bean bag).

World frame = robot base frame; the table top is the plane z = 0.
The arm model is MuJoCo Menagerie's Panda shipped inside the genesis-world wheel (found with
`importlib.util.find_spec`, never imported: importing genesis pulls in its whole runtime).
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

import mujoco
import numpy as np

PREFIX = 'panda_'
JOINT_NAMES = [f'{PREFIX}joint{i}' for i in range(1, 8)]
FLANGE_BODY = f'{PREFIX}attachment'
CAMERA_NAME = 'wrist'
TARGET_BODY = 'target'

# Franka Panda datasheet: maximum joint velocities (rad/s) and torques (N m).
VELOCITY_LIMITS = np.array([2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61])
TORQUE_LIMITS = np.array([87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0])
# Velocity-servo gains (N m s/rad), about (largest joint-space inertia) / 8 ms: the joint
# reaches the commanded velocity in a few ms, well inside one 40 ms action cycle. The
# implicitfast integrator treats them as implicit damping, so they stay stable at 2 ms steps.
SERVO_KV = np.array([400.0, 400.0, 150.0, 150.0, 20.0, 20.0, 20.0])


@dataclass(frozen=True)
class Workspace:
    """The paper's 40 x 60 x 30 cm box for the end effector (x depth, y width, z height).

    In front of the base, over the table: x 0.30..0.70, y -0.30..0.30, z 0.12..0.42 m (the
    floor keeps the wrist clear of the table, the top holds the home pose's flange at 0.40).
    """
    centre: tuple[float, float, float] = (0.50, 0.0, 0.27)
    size: tuple[float, float, float] = (0.40, 0.60, 0.30)

    @property
    def low(self) -> np.ndarray:
        return np.asarray(self.centre) - np.asarray(self.size) / 2

    @property
    def high(self) -> np.ndarray:
        return np.asarray(self.centre) + np.asarray(self.size) / 2


WORKSPACE = Workspace()
WORKSPACE_MIN = WORKSPACE.low
WORKSPACE_MAX = WORKSPACE.high
for _a in (VELOCITY_LIMITS, TORQUE_LIMITS, SERVO_KV, WORKSPACE_MIN, WORKSPACE_MAX):
    _a.flags.writeable = False  # shared constants: a stray in-place edit would move everyone's box
del _a

# Bean bag: a flat red box resting on the table (half sizes, m).
TARGET_HALF_SIZE = np.array([0.045, 0.045, 0.015])
TARGET_HALF_SIZE.flags.writeable = False
TABLE_HALF_SIZE = np.array([0.70, 0.80, 0.02])
TABLE_CENTRE_X = 0.35
# Wrist camera vertical field of view (deg); a 16:9 frame is wider than high.
CAMERA_FOVY = 55.0

# Red: saturated and non-specular, so dim white lights leave it inside the HSV red mask.
TARGET_RGBA = (0.75, 0.04, 0.03, 1.0)
# Light wood: HSV saturation ~0.40 (OpenCV ~100), safely below the red mask's S >= 120.
TABLE_RGBA = (0.62, 0.50, 0.37, 1.0)
FLOOR_RGBA = (0.30, 0.30, 0.32, 1.0)
# Geom group the wrist camera renders; the arm's own meshes (groups 2 and 3) stay hidden.
SCENE_GROUP = 0


def random_target_position(rng: np.random.Generator) -> np.ndarray:
    """A target centre resting on the table, the whole bag inside the box footprint."""
    low = WORKSPACE_MIN[:2] + TARGET_HALF_SIZE[:2]
    high = WORKSPACE_MAX[:2] - TARGET_HALF_SIZE[:2]
    return np.array([*rng.uniform(low, high), TARGET_HALF_SIZE[2]])


def panda_xml_path() -> str:
    """Menagerie's panda_nohand.xml inside the installed genesis-world package."""
    spec = importlib.util.find_spec('genesis')
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError('genesis-world is not installed: it provides the Panda model '
                                '(pip install --no-deps genesis-world)')
    path = os.path.join(spec.submodule_search_locations[0], 'assets', 'xml',
                        'franka_emika_panda', 'panda_nohand.xml')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'Panda model not found at {path}')
    return path


def _load_arm() -> mujoco.MjSpec:
    path = panda_xml_path()
    arm = mujoco.MjSpec.from_file(path)
    meshdir = os.path.join(os.path.dirname(path), arm.meshdir)
    # Relative mesh paths would resolve against the parent spec's folder once attached.
    for mesh in arm.meshes:
        mesh.file = os.path.join(meshdir, mesh.file)
    for actuator in list(arm.actuators):
        arm.delete(actuator)
    for key in list(arm.keys):
        arm.delete(key)
    for light in list(arm.lights):
        arm.delete(light)
    for body in arm.bodies:
        body.gravcomp = 1.0
    return arm


def build_spec(image_width: int, image_height: int, physics_dt: float) -> mujoco.MjSpec:
    """The whole scene as an MjSpec (compile with `.compile()`)."""
    spec = mujoco.MjSpec()
    spec.modelname = 'panda_visual_reacher'
    spec.compiler.degree = False
    spec.option.timestep = physics_dt
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.impratio = 10.0  # the arm model's own setting (attach keeps the parent's)
    # Offscreen buffer sized to the frame, no multisampling: llvmpipe pays for every sample.
    spec.visual.global_.offwidth = image_width
    spec.visual.global_.offheight = image_height
    spec.visual.quality.offsamples = 0
    spec.visual.quality.shadowsize = 0
    # Dim, even light: a bright headlight washes red towards pink (low saturation).
    spec.visual.headlight.ambient = [0.25, 0.25, 0.25]
    spec.visual.headlight.diffuse = [0.35, 0.35, 0.35]
    spec.visual.headlight.specular = [0.0, 0.0, 0.0]

    world = spec.worldbody
    world.add_light(name='top', pos=[0.4, 0.0, 2.0], dir=[0, 0, -1],
                    type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL, castshadow=False,
                    diffuse=[0.35, 0.35, 0.35], specular=[0.0, 0.0, 0.0])
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
    frame.attach_body(_load_arm().body('link0'), PREFIX, '')

    flange = spec.body(FLANGE_BODY)
    # MuJoCo cameras look along their -z: turn half a turn about x so the camera looks along
    # the flange's +z (the tool axis).
    flange.add_camera(name=CAMERA_NAME, pos=[0, 0, 0], quat=[0, 1, 0, 0], fovy=CAMERA_FOVY)

    for name, kv, vmax, tmax in zip(JOINT_NAMES, SERVO_KV, VELOCITY_LIMITS, TORQUE_LIMITS):
        # torque = (kv + b) * u - kv * qdot: the feed-forward b * u cancels the joint's own
        # viscous damping b, so the steady state is qdot = u exactly (no droop).
        b = spec.joint(name).damping[0]
        spec.add_actuator(name=f'{name}_velocity', target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT,
                          gaintype=mujoco.mjtGain.mjGAIN_FIXED,
                          biastype=mujoco.mjtBias.mjBIAS_AFFINE,
                          gainprm=[kv + b] + [0] * 9, biasprm=[0, 0, -kv] + [0] * 7,
                          ctrllimited=True, ctrlrange=[-vmax, vmax],
                          forcelimited=True, forcerange=[-tmax, tmax])
    return spec
