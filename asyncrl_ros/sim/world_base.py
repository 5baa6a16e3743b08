"""What the simulated arms share: a MuJoCo model with joint-velocity servos, simulated time
counted in physics steps, and a fast offscreen wrist camera.

Core code (no ROS). One world owns one MuJoCo model, its data and an offscreen renderer; it
is not thread-safe, so one thread should drive it.
"""
from __future__ import annotations

import math
from typing import Self

import mujoco
import numpy as np

from asyncrl_ros.sim.common import CAMERA_NAME, SCENE_GROUP, TARGET_BODY, Workspace


class ArmWorld:
    """An arm seen from its wrist camera; subclasses build the scene and command the joints."""

    n_joints: int

    def __init__(self, image_width: int, image_height: int, physics_dt: float, seed: int, *,
                 joint_names, flange_body: str, home_qpos, velocity_limits,
                 workspace: Workspace):
        if int(image_width) <= 0 or int(image_height) <= 0:
            raise ValueError(f'image size must be positive, got {image_width}x{image_height}')
        if not (math.isfinite(physics_dt) and 0 < physics_dt <= 0.01):
            raise ValueError(f'physics_dt must be in (0, 0.01] s, got {physics_dt}')
        self.image_width, self.image_height = int(image_width), int(image_height)
        self.physics_dt = float(physics_dt)
        self.rng = np.random.default_rng(seed)

        self.model = self._build_spec().compile()
        self.data = mujoco.MjData(self.model)
        self.joint_names = list(joint_names)
        self._qadr = np.array([self.model.joint(n).qposadr[0] for n in joint_names])
        self._dadr = np.array([self.model.joint(n).dofadr[0] for n in joint_names])
        self._act = np.array([self.model.actuator(f'{n}_velocity').id for n in joint_names])
        self._flange = self.model.body(flange_body).id
        self._mocap = self.model.body(TARGET_BODY).mocapid[0]
        self.home_qpos = np.array(home_qpos, dtype=float)
        ranges = np.array([self.model.joint(n).range for n in joint_names])
        self.joint_lower, self.joint_upper = ranges[:, 0].copy(), ranges[:, 1].copy()
        self.velocity_limits = np.array(velocity_limits, dtype=float)
        self.workspace = workspace
        self._steps = 0

        self._renderer: mujoco.Renderer | None = mujoco.Renderer(
            self.model, self.image_height, self.image_width)
        # Shadows and reflections cost most of a frame on a software renderer.
        flags = self._renderer.scene.flags
        for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION,
                     mujoco.mjtRndFlag.mjRND_SKYBOX, mujoco.mjtRndFlag.mjRND_FOG,
                     mujoco.mjtRndFlag.mjRND_HAZE):
            flags[flag] = False
        # Only the scene group (room, table, target): the arm's meshes never enter the view.
        self._scene_option = mujoco.MjvOption()
        self._scene_option.geomgroup[:] = 0
        self._scene_option.geomgroup[SCENE_GROUP] = 1
        self._camera = self.model.camera(CAMERA_NAME).id

        self.set_joint_positions(self.home_qpos)

    def _build_spec(self) -> mujoco.MjSpec:
        """The scene, for this world's image size and physics step."""
        raise NotImplementedError

    # ---- time ---------------------------------------------------------------------------
    def step(self, duration: float) -> None:
        """Advance simulated time by `duration` s, a whole number of physics steps."""
        n = self._n_steps(duration)
        if n:
            mujoco.mj_step(self.model, self.data, nstep=n)
            self._steps += n
            self._after_step(n)

    def _after_step(self, n: int) -> None:
        self._update_poses()

    def _update_poses(self) -> None:
        # mj_step leaves body and camera poses one physics step behind the state, and poses of
        # mocap bodies only reach the renderer through forward kinematics.
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_camlight(self.model, self.data)

    @property
    def time(self) -> float:
        """Simulated seconds since construction (counted in steps: no drift from summing dt)."""
        return self._steps * self.physics_dt

    # ---- state --------------------------------------------------------------------------
    def joint_state(self) -> tuple[np.ndarray, np.ndarray]:
        """Joint positions (rad) and velocities (rad/s), copies."""
        return self.data.qpos[self._qadr].copy(), self.data.qvel[self._dadr].copy()

    def set_joint_positions(self, q: np.ndarray) -> None:
        """Teleport the arm to `q` at rest, with zero velocity command."""
        q = self._joint_vector(q, 'q')
        if np.any(q < self.joint_lower) or np.any(q > self.joint_upper):
            raise ValueError(f'q outside the joint limits: {np.round(q, 4).tolist()}')
        self.data.qpos[self._qadr] = q
        self.data.qvel[:] = 0.0
        self.data.qacc_warmstart[:] = 0.0
        self.data.ctrl[:] = 0.0
        mujoco.mj_forward(self.model, self.data)

    def ee_position(self) -> np.ndarray:
        """Flange position in the world (= robot base) frame, m."""
        return self.data.xpos[self._flange].copy()

    def target_position(self) -> np.ndarray:
        """World xyz of the target's centre."""
        return self.data.mocap_pos[self._mocap].copy()

    # ---- camera -------------------------------------------------------------------------
    def render(self) -> np.ndarray:
        """RGB uint8 (H, W, 3) frame from the wrist camera."""
        if self._renderer is None:
            raise RuntimeError(f'{type(self).__name__} is closed')
        self._renderer.update_scene(self.data, camera=self._camera,
                                    scene_option=self._scene_option)
        return self._renderer.render()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- helpers ------------------------------------------------------------------------
    def _joint_vector(self, x, name: str) -> np.ndarray:
        try:
            x = np.asarray(x, dtype=float)
        except (TypeError, ValueError) as e:
            raise ValueError(f'{name} must be {self.n_joints} numbers: {e}') from None
        if x.shape != (self.n_joints,):
            raise ValueError(f'{name} must have shape ({self.n_joints},), got {x.shape}')
        if not np.all(np.isfinite(x)):
            raise ValueError(f'{name} must be finite, got {x.tolist()}')
        return x

    @staticmethod
    def _target_vector(xyz) -> np.ndarray:
        xyz = np.asarray(xyz, dtype=float)
        if xyz.shape != (3,) or not np.all(np.isfinite(xyz)):
            raise ValueError(f'target position must be 3 finite numbers, got {xyz!r}')
        return xyz

    def _n_steps(self, duration: float) -> int:
        if not (isinstance(duration, (int, float, np.floating, np.integer))
                and math.isfinite(duration) and duration >= 0):
            raise ValueError(f'duration must be a finite number >= 0 s, got {duration!r}')
        n = round(duration / self.physics_dt)
        # Loose enough for float32 durations, tight enough to catch a stray fraction of a step.
        if abs(n * self.physics_dt - duration) > 1e-3 * self.physics_dt:
            raise ValueError(f'duration {duration} s is not a whole number of physics steps '
                             f'of {self.physics_dt} s')
        return n
