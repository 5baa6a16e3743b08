"""Simulated UR5e for the thesis' reacher and tracker: joint-velocity control, wrist camera,
and a monitor showing a red target that stays still (reacher) or bounces about (tracker).

Core code (no ROS). Same API as `PandaWorld`, plus `task` and `reset_target`. One `UR5World`
owns one MuJoCo model, its data and an offscreen renderer; one thread should drive it.
"""
from __future__ import annotations

import math

import mujoco
import numpy as np

from asyncrl_ros.sim.monitor_target import TASKS, MonitorTarget
from asyncrl_ros.sim.ur5_scene import (ACTUATED, CAMERA_NAME, FLANGE_BODY, JOINT_NAMES,
                                       SCENE_GROUP, TARGET_BODY, TARGET_LIFT, TASK_VELOCITY_LIMIT,
                                       UR5_WORKSPACE, UR5_WORKSPACE_MAX, UR5_WORKSPACE_MIN,
                                       build_spec, default_monitor)

__all__ = ['UR5World', 'HOME_QPOS', 'JOINT_NAMES', 'TASKS', 'TASK_VELOCITY_LIMIT',
           'UR5_WORKSPACE', 'UR5_WORKSPACE_MIN', 'UR5_WORKSPACE_MAX']

# Pan at pi/2 and the wrist level (ur5_penalty exactly 0: wrist_1 = -pi - lift - elbow,
# wrist_2 = -pan), close to the authors' reset pose (1.59, -2.0, 2.1, -3.02, -1.64, pi): the
# flange at (0.1333, -0.400, 0.550), 0.6 m from the screen centre, looking straight at it with
# the image's up along world +z.
_LIFT, _ELBOW = -1.7341, 2.0761
HOME_QPOS = np.array([np.pi / 2, _LIFT, _ELBOW, -np.pi - _LIFT - _ELBOW, -np.pi / 2, 0.0])
HOME_QPOS.flags.writeable = False


class UR5World:
    """A UR5e facing a monitor, driven by joint-velocity servo targets, seen from its wrist."""

    n_joints: int = 6

    def __init__(self, image_width: int = 160, image_height: int = 90,
                 physics_dt: float = 0.002, seed: int = 0, task: str = 'reacher',
                 monitor: MonitorTarget | None = None):
        if int(image_width) <= 0 or int(image_height) <= 0:
            raise ValueError(f'image size must be positive, got {image_width}x{image_height}')
        if not (math.isfinite(physics_dt) and 0 < physics_dt <= 0.01):
            raise ValueError(f'physics_dt must be in (0, 0.01] s, got {physics_dt}')
        if task not in TASKS:
            raise ValueError(f"unknown task '{task}' (choose one of {', '.join(TASKS)})")
        self.image_width, self.image_height = int(image_width), int(image_height)
        self.physics_dt = float(physics_dt)
        self.rng = np.random.default_rng(seed)
        self.monitor = default_monitor() if monitor is None else monitor
        self._task = task

        self.model = build_spec(self.image_width, self.image_height, self.physics_dt,
                                self.monitor).compile()
        self.data = mujoco.MjData(self.model)
        self.joint_names = list(JOINT_NAMES)
        self._qadr = np.array([self.model.joint(n).qposadr[0] for n in JOINT_NAMES])
        self._dadr = np.array([self.model.joint(n).dofadr[0] for n in JOINT_NAMES])
        self._act = np.array([self.model.actuator(f'{n}_velocity').id for n in JOINT_NAMES])
        self._flange = self.model.body(FLANGE_BODY).id
        self._mocap = self.model.body(TARGET_BODY).mocapid[0]
        self.home_qpos = HOME_QPOS.copy()
        ranges = np.array([self.model.joint(n).range for n in JOINT_NAMES])
        self.joint_lower, self.joint_upper = ranges[:, 0].copy(), ranges[:, 1].copy()
        self.velocity_limits = np.full(self.n_joints, TASK_VELOCITY_LIMIT)
        self.actuated = ACTUATED.copy()
        self.workspace = UR5_WORKSPACE
        self._steps = 0

        self._renderer: mujoco.Renderer | None = mujoco.Renderer(
            self.model, self.image_height, self.image_width)
        # Shadows and reflections cost most of a frame on a software renderer.
        flags = self._renderer.scene.flags
        for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION,
                     mujoco.mjtRndFlag.mjRND_SKYBOX, mujoco.mjtRndFlag.mjRND_FOG,
                     mujoco.mjtRndFlag.mjRND_HAZE):
            flags[flag] = False
        # Only the room, monitor and target: the arm's meshes never enter the wrist view.
        self._scene_option = mujoco.MjvOption()
        self._scene_option.geomgroup[:] = 0
        self._scene_option.geomgroup[SCENE_GROUP] = 1
        self._camera = self.model.camera(CAMERA_NAME).id

        self.set_joint_positions(self.home_qpos)
        self.reset_target()

    # ---- task and target ------------------------------------------------------------------
    @property
    def task(self) -> str:
        """'reacher' (target still) or 'tracker' (target moving); setting it re-draws the target."""
        return self._task

    @task.setter
    def task(self, task: str) -> None:
        if task not in TASKS:
            raise ValueError(f"unknown task '{task}' (choose one of {', '.join(TASKS)})")
        self._task = task
        self.reset_target()

    def reset_target(self, rng: np.random.Generator | None = None) -> np.ndarray:
        """A new episode's target (random place; random direction for the tracker); world xyz."""
        self.monitor.reset(self.rng if rng is None else rng, self._task)
        self._place_target()
        return self.target_position()

    def set_target(self, xyz) -> None:
        """Move the target's centre to `xyz` (world, m), a point on the screen; keeps its motion."""
        xyz = np.asarray(xyz, dtype=float)
        if xyz.shape != (3,) or not np.all(np.isfinite(xyz)):
            raise ValueError(f'target position must be 3 finite numbers, got {xyz!r}')
        uv, height = self.monitor.to_screen(xyz)
        # Accept the surface itself and the disc's own lift (what target_position returns).
        if not -0.005 <= height <= TARGET_LIFT + 0.005:
            raise ValueError(f'target position {xyz.tolist()} is {height:.3f} m off the screen '
                             'surface: the target lives on the monitor')
        self.monitor.set_position(uv)
        self._place_target()

    def target_position(self) -> np.ndarray:
        """World xyz of the red disc's centre (just in front of the screen surface)."""
        return self.data.mocap_pos[self._mocap].copy()

    def random_target_position(self, rng: np.random.Generator | None = None) -> np.ndarray:
        """A random target position on the screen (world xyz), for set_target; moves nothing."""
        uv = (self.rng if rng is None else rng).uniform(self.monitor.low, self.monitor.high)
        return self.monitor.to_world(uv) + TARGET_LIFT * self.monitor.normal

    def target_screen_position(self) -> np.ndarray:
        """(u, v) of the disc's centre on the screen, m from its centre."""
        return self.monitor.position.copy()

    def _place_target(self) -> None:
        m = self.monitor
        self.data.mocap_pos[self._mocap] = m.to_world() + TARGET_LIFT * m.normal
        # Poses of mocap bodies (and, after mj_step, of the links and the camera) only reach the
        # renderer through forward kinematics.
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_camlight(self.model, self.data)

    # ---- control and time -------------------------------------------------------------
    def set_joint_velocity(self, qdot: np.ndarray) -> None:
        """Servo targets (rad/s), clipped to +-TASK_VELOCITY_LIMIT; wrist_3 is always held (0)."""
        qdot = self._joint_vector(qdot, 'qdot')
        qdot = np.where(self.actuated, np.clip(qdot, -self.velocity_limits, self.velocity_limits),
                        0.0)
        self.data.ctrl[self._act] = qdot

    def step(self, duration: float) -> None:
        """Advance simulated time by `duration` s, a whole number of physics steps; the tracker's
        target moves with it."""
        n = self._n_steps(duration)
        if n:
            mujoco.mj_step(self.model, self.data, nstep=n)
            self._steps += n
            self.monitor.step(n * self.physics_dt)
            # Also brings the flange, camera and target poses up to the new state for render().
            self._place_target()

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
        """Tool-flange (tool0) position in the world (= UR base) frame, m."""
        return self.data.xpos[self._flange].copy()

    def ee_rotation(self) -> np.ndarray:
        """Tool-flange orientation in the world frame (3 x 3; column z is the camera axis)."""
        return self.data.xmat[self._flange].reshape(3, 3).copy()

    # ---- camera -------------------------------------------------------------------------
    def render(self) -> np.ndarray:
        """RGB uint8 (H, W, 3) frame from the wrist camera."""
        if self._renderer is None:
            raise RuntimeError('UR5World is closed')
        self._renderer.update_scene(self.data, camera=self._camera,
                                    scene_option=self._scene_option)
        return self._renderer.render()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> UR5World:
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
