"""sim_world: the MuJoCo Panda, running on its own at a real-time factor.

It is the clock of the graph (/clock) and never waits for anyone: physics advances
by wall time x real_time_factor whatever the agent is doing, as a real arm would. Until the
policy's first learned action (its step metrics say so) it may run faster
(random_phase_real_time_factor): random actions need no update kept in ratio to the cycle.
With `follow_update_cost` ('auto') it keeps re-timing the update once learning begins and
follows it (asyncrl_ros.learning.world_speed.UpdateCostFollower).
It speaks the real arm's interfaces: /joint_states, a camera image, and velocity
commands on the ros2_control forward velocity controller's topic.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray

from asyncrl_ros.learning.world_speed import FOLLOW_EVERY_S, UpdateCostFollower
from asyncrl_ros.nodes.common import (run_node, COMMAND_QOS, LATCHED_QOS, METRICS_QOS, SENSOR_QOS,
                                      TOPIC_IMAGE, TOPIC_JOINT_STATES, TOPIC_LEARNER_STATUS,
                                      TOPIC_ROBOT_COMMAND, TOPIC_STEP_METRICS, TOPIC_TARGET_POSE,
                                      Diagnostics, declare, declare_config, numpy_to_image,
                                      to_time_msg)
from asyncrl_ros.sim.panda_world import PandaWorld
from asyncrl_ros.sim.ur5_world import UR5World
from asyncrl_ros_interfaces.msg import LearnerStatus, StepMetrics

# The simulated model of each arm (the real UR5 is simulated by the UR5e model).
WORLDS = {'franka': PandaWorld, 'ur5': UR5World, 'ur5e': UR5World}


class SimWorldNode(Node):
    def __init__(self):
        super().__init__('sim_world')
        cfg = declare_config(self)
        self.rtf = declare(self, 'real_time_factor', cfg.sim.real_time_factor,
                           'Simulated seconds per wall second')
        self.random_phase_rtf = declare(
            self, 'random_phase_real_time_factor', cfg.sim.random_phase_real_time_factor,
            'Simulated seconds per wall second until the first learned action (0: as real_time_factor)')
        self.clock_period = declare(self, 'clock_period_ms', cfg.sim.clock_period_ms,
                                    'Period of /clock and of physics chunks, sim ms') / 1000.0
        self.image_period = declare(self, 'image_period_ms', cfg.sim.image_period_ms,
                                    'Camera period, sim ms') / 1000.0
        js_rate = declare(self, 'joint_state_rate_hz', cfg.sim.joint_state_rate_hz,
                          'Joint state rate, Hz of sim time')
        width = declare(self, 'image_width', cfg.image.width, 'Camera width, px')
        height = declare(self, 'image_height', cfg.image.height, 'Camera height, px')
        follow = declare(self, 'follow_update_cost', cfg.sim.follow_update_cost,
                         'Re-time the update in the run and follow it (auto)')
        follow_every = declare(self, 'follow_every_s', FOLLOW_EVERY_S,
                               'Wall seconds between re-timings of the update')
        physics_dt = declare(self, 'physics_dt', cfg.sim.physics_dt, 'MuJoCo timestep, s')
        seed = declare(self, 'seed', cfg.run.seed, 'Random seed')
        if cfg.arm not in WORLDS:
            raise ValueError(f"no simulated world for arm '{cfg.arm}'")
        self.world_class = WORLDS[cfg.arm]
        if self.rtf <= 0:
            raise ValueError(f'real_time_factor must be > 0, got {self.rtf}')
        if self.random_phase_rtf < 0:
            raise ValueError(f'random_phase_real_time_factor must be >= 0, got {self.random_phase_rtf}')
        # Set by the policy's first step metrics without a random action (latched: a resumed
        # run's first step ends the random phase at once).
        self.learning = self.random_phase_rtf == 0
        self.js_period = 1.0 / js_rate
        self.follower = UpdateCostFollower(self.rtf, follow_every) if follow else None

        self.lock = threading.Lock()
        self.pending_command: np.ndarray | None = None
        self.pending_target: np.ndarray | None = None

        self.clock_pub = self.create_publisher(Clock, '/clock', 10)
        self.js_pub = self.create_publisher(JointState, TOPIC_JOINT_STATES, SENSOR_QOS)
        self.image_pub = self.create_publisher(Image, TOPIC_IMAGE, SENSOR_QOS)
        self.create_subscription(Float64MultiArray, TOPIC_ROBOT_COMMAND, self.on_command,
                                 COMMAND_QOS)
        self.create_subscription(PoseStamped, TOPIC_TARGET_POSE, self.on_target, LATCHED_QOS)
        if not self.learning or self.follower:
            self.create_subscription(StepMetrics, TOPIC_STEP_METRICS, self.on_step, METRICS_QOS)
        if self.follower:
            self.create_subscription(LearnerStatus, TOPIC_LEARNER_STATUS, self.on_learner,
                                     METRICS_QOS)

        self.overruns = 0
        self.diagnostics = Diagnostics(self, 'mujoco')
        self.create_timer(1.0, self.report)
        self.running = True
        # The world is built in the thread that steps and renders it: an EGL context is
        # current in one thread only.
        self.world: PandaWorld | None = None
        self.world_error: BaseException | None = None
        ready = threading.Event()
        self.thread = threading.Thread(
            target=self.run_world, args=(dict(image_width=width, image_height=height,
                                              physics_dt=physics_dt, seed=seed), ready),
            name='physics', daemon=True)
        self.thread.start()
        ready.wait()
        if self.world_error is not None:
            raise RuntimeError(f'could not build the MuJoCo world: {self.world_error}')
        self.get_logger().info(
            f'{self.world_class.__name__} {width}x{height} at real-time factor {self.rtf:g}'
            + ('' if self.learning else f' (x{self.random_phase_rtf:g} until the first learned action)')
            + f': clock every {self.clock_period * 1e3:g} ms, camera every '
            f'{self.image_period * 1e3:g} ms (sim)')

    def on_command(self, msg: Float64MultiArray):
        cmd = np.asarray(msg.data, dtype=float)
        if cmd.shape != (self.world_class.n_joints,) or not np.all(np.isfinite(cmd)):
            # ros2_control drops wrong-length commands silently; we at least say so.
            self.get_logger().warning(
                f'ignoring command of length {cmd.size} (or non-finite); need '
                f'{self.world_class.n_joints} finite values', throttle_duration_sec=2.0)
            return
        with self.lock:
            self.pending_command = cmd

    def on_step(self, msg: StepMetrics):
        if not msg.random_action and not self.learning:
            self.learning = True   # read by the physics thread at its next chunk
            self.get_logger().info(f'first learned action at step {msg.step}: the world now runs '
                                   f'at x{self.rtf:g} real time')
        if self.follower and self.learning:
            self.follower.start(time.monotonic())
            self.follower.in_cycle_update(msg.sampling_ms + msg.update_ms)   # sync's; 0 in async

    def on_learner(self, msg: LearnerStatus):
        self.follower.learner_updates(msg.updates, msg.wait_ms, time.monotonic())

    def follow(self):
        old = self.rtf
        new = self.follower.poll(time.monotonic())
        if new is not None:
            self.rtf = new   # read by the physics thread at its next chunk
            self.get_logger().info(
                f'auto: one update keeps the learner busy {self.follower.cost_ms:.0f} ms in this '
                f'run, {self.follower.cost_ms * old:.0f} ms of world time at x{old:.3g}; '
                f'the world now runs at x{new:.3g}')

    @property
    def factor(self) -> float:
        return self.rtf if self.learning else self.random_phase_rtf

    def on_target(self, msg: PoseStamped):
        p = msg.pose.position
        with self.lock:
            self.pending_target = np.array([p.x, p.y, p.z])

    def run_world(self, world_args: dict, ready: threading.Event):
        try:
            world = self.world = self.world_class(**world_args)
            world.set_joint_positions(world.home_qpos)
        except Exception as err:  # noqa: BLE001 - reported by the constructor
            self.world_error = err
            ready.set()
            return
        ready.set()
        next_js = next_image = world.time
        wall0, sim0 = time.monotonic(), world.time
        factor = self.factor
        while self.running and rclpy.ok():
            with self.lock:
                if self.pending_command is not None:
                    world.set_joint_velocity(self.pending_command)
                    self.pending_command = None
                if self.pending_target is not None:
                    world.set_target(self.pending_target)
                    self.pending_target = None
            world.step(self.clock_period)
            now = world.time
            stamp = to_time_msg(now)
            self.clock_pub.publish(Clock(clock=stamp))
            if now + 1e-9 >= next_js:
                next_js += self.js_period
                self.publish_joint_state(stamp)
            if now + 1e-9 >= next_image:
                next_image += self.image_period
                self.image_pub.publish(numpy_to_image(stamp, world.render(), 'rgb8', 'wrist_camera'))
            if self.factor != factor:   # the random phase ended: pace from here on
                factor, wall0, sim0 = self.factor, time.monotonic(), now
            deadline = wall0 + (now - sim0) / factor
            slack = deadline - time.monotonic()
            if slack > 0:
                time.sleep(slack)
            elif slack < -0.1:
                # Behind by more than 100 ms of wall time: the CPU cannot hold this factor.
                self.overruns += 1
                self.get_logger().warning(
                    f'world is {-slack * 1e3:.0f} ms behind real time x{factor:g}; lower '
                    f"{'real_time_factor' if self.learning else 'random_phase_real_time_factor'}",
                    throttle_duration_sec=10.0)
                wall0, sim0 = time.monotonic(), now
        world.close()

    def report(self):
        if self.follower:
            self.follow()
        level = 'WARN' if self.overruns else 'OK'
        message = (f'fell behind real time x{self.factor:g} {self.overruns} times' if self.overruns
                   else f'running at x{self.factor:g} real time')
        sim_time = self.world.time if self.world is not None else 0.0
        self.diagnostics.publish([('world', level, message, {'sim_time_s': f'{sim_time:.2f}'})])

    def publish_joint_state(self, stamp):
        q, qd = self.world.joint_state()
        msg = JointState()
        msg.header.stamp = stamp
        msg.name = list(self.world.joint_names)
        msg.position = q.tolist()
        msg.velocity = qd.tolist()
        self.js_pub.publish(msg)

    def destroy_node(self):
        self.running = False
        self.thread.join(timeout=2.0)
        return super().destroy_node()


def main(args=None):
    run_node(SimWorldNode, args)


if __name__ == '__main__':
    main()
