"""policy: acts on a fixed timer at the action cycle time and runs the episodes.

Each turn of the timer: take the newest camera frame whose reward has arrived
(paired by stamp), store the transition of the previous action, act, publish the
joint velocities. In sync mode the learning backend then samples and updates in the
same turn, so a slow update stretches the measured cycle, as on the real robot.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from asyncrl_ros.arms import configured_arm
from asyncrl_ros.checkpoint import load_checkpoint, save_checkpoint
from asyncrl_ros.evaluate import EvalBackend, EvalLog, format_summary
from asyncrl_ros.learning import FrameStacker, InProcessLearner
from asyncrl_ros.nodes.common import (COMMAND_QOS, LATCHED_QOS, METRICS_QOS, REWARD_QOS,
                                      SENSOR_QOS, SERVICE_HOME, TOPIC_EPISODE_METRICS,
                                      TOPIC_HOMING, TOPIC_IMAGE, TOPIC_JOINT_STATES,
                                      TOPIC_POLICY_COMMAND, TOPIC_REWARD, TOPIC_STEP_METRICS,
                                      TOPIC_TRANSITIONS, TOPIC_WEIGHTS, TRANSITION_QOS,
                                      WEIGHTS_QOS, Diagnostics, declare, declare_config,
                                      image_to_numpy, run_node,
                                      stamp_ns, transition_to_msg)
from asyncrl_ros.nodes.learner_node import TOPIC_LEARNER_STATUS
from asyncrl_ros.remote import RemoteLearner, ShmWeightsSource, TopicWeightsSource, shm_names
from asyncrl_ros.run_log import RunLog, percentile_summary
from asyncrl_ros.tensorboard_log import TensorBoardLog
from asyncrl_ros_interfaces.msg import (EpisodeMetrics, HomingStatus, LearnerStatus, Reward,
                                        StepMetrics, Transition, Weights)

CHECKPOINT = 'checkpoint.pt'
# The camera and the action timer share a period: a tick that comes just before the
# newest frame's reward arrives acts again on the previous frame, if it is this fresh,
# rather than losing a whole cycle. Older than that (after a sync update, a silent
# camera), the tick passes and the arm_driver's watchdog covers the gap.
REUSE_MAX_AGE_CYCLES = 1.5
# Ticks in a row with no frame to act on before the policy says the camera went quiet.
SILENT_TICKS_WARN = 3


def in_process_backend(node: 'PolicyNode', cfg, proprio_dim: int, action_dim: int):
    """sync (Seq-SAC): replay and updates inside the policy's own timer turn."""
    return InProcessLearner(cfg, proprio_dim, action_dim, node.run_dir, node.resume)


def remote_backend(node: 'PolicyNode', cfg, proprio_dim: int, action_dim: int):
    """async1/async2: transitions out over a topic, weights in from the learner."""
    pub = node.create_publisher(Transition, TOPIC_TRANSITIONS, TRANSITION_QOS)

    def send(transition: dict) -> None:
        pub.publish(transition_to_msg(transition, node.get_clock().now().to_msg()))

    if cfg.asynchronous.weights_transport == 'shm':
        weights = ShmWeightsSource(shm_names(node.run_dir)['weights'])
    else:
        weights = TopicWeightsSource()
        node.create_subscription(Weights, TOPIC_WEIGHTS,
                                 lambda m: weights.offer(m.version, bytes(m.data),
                                                   stamp_ns(m.header.stamp)), WEIGHTS_QOS)
    return RemoteLearner(cfg, proprio_dim, action_dim, send, weights,
                         receivers=pub.get_subscription_count)


# How the learning side is wired in each mode: the policy's code is the same in all three.
BACKENDS = {'sync': in_process_backend, 'async1': remote_backend, 'async2': remote_backend}


class PolicyNode(Node):
    def __init__(self):
        super().__init__('policy')
        self.cfg = cfg = declare_config(self)
        run_dir = declare(self, 'run_dir', '', 'Run folder for logs and checkpoints')
        resume = declare(self, 'resume', False, 'Continue from run_dir/checkpoint.pt')
        self.explore = declare(self, 'explore', True, 'Sample actions (False: act on the mean)',
                               read_only=False)
        # --eval N: the run's saved policy on the mean for N episodes; nothing learned or saved.
        self.evaluate = declare(self, 'evaluate', 0,
                                "Evaluate run_dir's checkpoint for this many episodes (0: train)")
        if not run_dir:
            raise ValueError("parameter 'run_dir' is required")
        # The configured bounds (the paper's 0.2 rad/s on the Franka) set the action scale.
        self.arm = configured_arm(cfg)
        self.cycle = cfg.task.action_cycle_ms / 1000.0
        self.steps_per_episode = int(round(cfg.task.episode_s / self.cycle))
        act = self.arm.actuated
        self.action_scale = self.arm.velocity_limits[act] * cfg.safety.velocity_fraction
        n = self.arm.n_actuated
        self.proprio_dim = 3 * n
        self.run_dir = Path(run_dir)
        self.resume = resume
        if self.evaluate:
            self.learner = EvalBackend(cfg, self.proprio_dim, n, run_dir)
            self.eval_log = EvalLog(run_dir, self.evaluate, self.learner.info)
        else:
            self.learner = BACKENDS[cfg.mode](self, cfg, self.proprio_dim, n)
        self.stacker = FrameStacker(cfg.sac.frame_stack)
        self.rng = np.random.default_rng(cfg.run.seed)
        self.log = RunLog(run_dir, title=f'{Path(run_dir).name} ({cfg.mode})')
        self.checkpoint_path = Path(run_dir) / CHECKPOINT

        # Counters that a checkpoint carries.
        self.episode = 0
        self.total_steps = 0
        self.training_time_s = 0.0
        if resume and not self.evaluate:
            self.restore()
        # TensorBoard: episodes under 'policy'; sync's in-process updates under 'learner', as
        # the learner node's are in async (steps are episodes there, updates here). A resumed
        # run drops what an earlier session wrote after its checkpoint.
        tb = cfg.run.tensorboard and not self.evaluate
        self.tb = TensorBoardLog(run_dir, 'policy', tb, purge_step=self.episode + 1 if resume else None)
        self.tb_updates = TensorBoardLog(run_dir, 'learner', tb and cfg.mode == 'sync',
                                         cfg.run.tensorboard_every_updates,
                                         purge_step=self.learner.updates + 1 if resume else None)

        # Latest inputs, filled by callbacks; all work happens in the timer.
        self.images: OrderedDict[int, Image] = OrderedDict()
        self.rewards: dict[int, float] = {}
        self.q = self.qd = None
        self.homing: HomingStatus | None = None
        self.home_ticket = 0            # the arm_driver's homing count that ends our reset
        self.home_requested_ns = 0
        self.homing_done_ns: int | None = None
        self.last_obs_ns = -1

        self.state = 'start'
        self.t = 0
        self.prev_action = np.zeros(n, dtype=np.float32)
        self.ep_return = 0.0
        self.ep_cycles: list[float] = []
        self.ep_ages: list[tuple[int, float, float]] = []
        self.ep_random = self.ep_reused = 0
        self.silent_ticks = 0
        self.ep_start_sim = self.ep_start_wall = 0.0
        self.last_tick_ns: int | None = None
        self.last_tick_wall: float | None = None
        self.done = False

        self.cmd_pub = self.create_publisher(Float64MultiArray, TOPIC_POLICY_COMMAND, COMMAND_QOS)
        self.step_pub = self.create_publisher(StepMetrics, TOPIC_STEP_METRICS, METRICS_QOS)
        self.episode_pub = self.create_publisher(EpisodeMetrics, TOPIC_EPISODE_METRICS, METRICS_QOS)
        self.create_subscription(Image, TOPIC_IMAGE, self.on_image, SENSOR_QOS)
        self.create_subscription(Reward, TOPIC_REWARD, self.on_reward, REWARD_QOS)
        self.create_subscription(JointState, TOPIC_JOINT_STATES, self.on_joint_state, SENSOR_QOS)
        self.create_subscription(HomingStatus, TOPIC_HOMING, self.on_homing, LATCHED_QOS)
        self.create_subscription(LearnerStatus, TOPIC_LEARNER_STATUS, self.on_learner_status,
                                 METRICS_QOS)
        self.home_client = self.create_client(Trigger, SERVICE_HOME)
        self.diagnostics = Diagnostics(self)
        self.updates_seen = (0, time.monotonic())
        self.batches_waited = 0   # reported by a learner in another process
        self.create_timer(self.cycle, self.tick)
        self.get_logger().info(
            f'{cfg.mode} policy: cycle {cfg.task.action_cycle_ms:g} ms, {self.steps_per_episode} '
            f'steps per episode, {cfg.run.init_random_steps} random steps, batch '
            f'{cfg.sac.batch_size}, run folder {run_dir}')

    # ---- callbacks: store only ----
    def on_image(self, msg: Image):
        self.images[stamp_ns(msg.header.stamp)] = msg
        while len(self.images) > 16:
            self.images.popitem(last=False)

    def on_reward(self, msg: Reward):
        self.rewards[stamp_ns(msg.header.stamp)] = msg.reward
        if len(self.rewards) > 64:
            for key in sorted(self.rewards)[:-32]:
                del self.rewards[key]

    def on_joint_state(self, msg: JointState):
        try:
            self.q = self.arm.order_joints(msg.name, msg.position)
            self.qd = self.arm.order_joints(msg.name, msg.velocity)
        except ValueError as err:
            self.get_logger().error(str(err), throttle_duration_sec=5.0)

    def on_homing(self, msg: HomingStatus):
        self.homing = msg
        if (self.state == 'resetting' and self.homing_done_ns is None and not msg.active
                and msg.finished >= self.home_ticket):
            self.homing_done_ns = self.get_clock().now().nanoseconds

    def on_learner_status(self, msg: LearnerStatus):
        self.learner.on_learner_status(msg.updates, msg.transitions_stored, msg.transitions_missing)
        self.batches_waited = msg.batches_waited

    # ---- the action cycle ----
    def observation(self, now_ns: int | None = None):
        """Newest frame whose reward has arrived: one not acted on yet, or (given `now_ns`)
        the last one again while it is younger than REUSE_MAX_AGE_CYCLES."""
        if self.q is None:
            return None
        key = next((k for k in reversed(self.images) if k in self.rewards), None)
        if key is None:
            return None
        if key <= self.last_obs_ns and (
                now_ns is None or now_ns - key > REUSE_MAX_AGE_CYCLES * self.cycle * 1e9):
            return None
        frame = image_to_numpy(self.images[key]).transpose(2, 0, 1).copy()
        act = self.arm.actuated
        proprio = np.concatenate([self.q[act], self.qd[act], self.prev_action]).astype(np.float32)
        return key, frame, self.rewards[key], proprio

    def tick(self):
        if self.done:
            return
        now_ns = self.get_clock().now().nanoseconds
        if self.state == 'start':
            self.request_home()
            return
        if self.state == 'resetting':
            if not self.reset_finished():
                self.check_reset_progress(now_ns)
                return
            self.begin_episode()
            if self.state != 'running':
                return
        t_env = time.perf_counter()
        obs = self.observation(now_ns)
        if obs is None:
            self.silent_ticks += 1
            if self.silent_ticks >= SILENT_TICKS_WARN:
                self.get_logger().warning(
                    f'no camera frame with reward for {self.silent_ticks} cycles: not acting',
                    throttle_duration_sec=5.0)
            return
        self.silent_ticks = 0
        stamp, frame, reward, proprio = obs
        reused = stamp <= self.last_obs_ns
        self.ep_reused += reused
        self.last_obs_ns = stamp
        cycle_ms = (now_ns - self.last_tick_ns) / 1e6 if self.last_tick_ns else float('nan')
        self.last_tick_ns = now_ns
        wall_now = time.monotonic()
        wall_cycle_ms = (wall_now - self.last_tick_wall) * 1e3 if self.last_tick_wall else float('nan')
        self.last_tick_wall = wall_now
        if self.t > 0:
            self.learner.add(self.prev_action, reward, frame, proprio, terminal=False)
            self.ep_return += reward
            self.ep_cycles.append(cycle_ms)
        self.stacker.push(frame)
        if self.t >= self.steps_per_episode:
            self.end_episode()
            return

        self.learner.poll_weights(self.total_steps)
        t_act = time.perf_counter()
        random_action = self.total_steps < self.cfg.run.init_random_steps and not self.evaluate
        if random_action:
            action = self.rng.uniform(-1.0, 1.0, self.arm.n_actuated).astype(np.float32)
            self.ep_random += 1
        else:
            action = self.learner.act(self.stacker.stacked(), proprio,
                                      explore=self.get_parameter('explore').value).astype(np.float32)
        t_pub = time.perf_counter()
        self.publish_command(action)
        t_learn = time.perf_counter()
        updates_before = self.learner.updates
        timings = self.learner.learn()
        if self.learner.updates != updates_before:   # sync: the update ran in this turn
            self.tb_updates.update(getattr(self.learner, 'last_metrics', {}), self.learner.updates,
                                   update_ms=timings['update_ms'], sampling_ms=timings['sampling_ms'])
        env_ms = ((t_act - t_env) + (t_learn - t_pub)) * 1e3
        act_ms = (t_pub - t_act) * 1e3

        self.prev_action = action
        age_steps, age_ms = self.learner.age(self.total_steps)
        self.t += 1
        self.total_steps += 1
        row = {'step': self.total_steps, 'episode': self.episode, 'cycle_ms': cycle_ms,
               'wall_cycle_ms': wall_cycle_ms,
               'action_ms': act_ms, 'environment_ms': env_ms, 'reward': reward,
               'updates': self.learner.updates, 'weights_version': self.learner.weights_version,
               'weights_age_steps': age_steps, 'weights_age_ms': age_ms,
               'swap_ms': self.learner.swap_ms, 'frame_age_ms': (now_ns - stamp) / 1e6,
               'frame_reused': int(reused), **timings}
        self.ep_ages.append((age_steps, age_ms, self.learner.swap_ms))
        self.log.step(row)
        self.publish_step_metrics(row, random_action)

    def publish_command(self, action: np.ndarray):
        if not np.all(np.isfinite(action)):
            # A NaN from the network must never reach the robot; the driver would zero it too.
            self.get_logger().error('non-finite action from the actor; sending zero')
            action = np.zeros_like(action)
        velocity = self.arm.full_command(np.clip(action, -1.0, 1.0) * self.action_scale)
        self.cmd_pub.publish(Float64MultiArray(data=[float(v) for v in velocity]))

    def publish_step_metrics(self, row: dict, random_action: bool):
        msg = StepMetrics()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.step, msg.episode, msg.reward = row['step'], row['episode'], float(row['reward'])
        msg.cycle_ms = float(row['cycle_ms']) if np.isfinite(row['cycle_ms']) else 0.0
        msg.action_ms, msg.environment_ms = row['action_ms'], row['environment_ms']
        msg.sampling_ms, msg.update_ms = row['sampling_ms'], row['update_ms']
        msg.updates, msg.weights_version = row['updates'], row['weights_version']
        msg.weights_age_steps, msg.weights_age_ms = row['weights_age_steps'], row['weights_age_ms']
        msg.replay_size = len(self.learner.replay)
        msg.random_action = random_action
        self.step_pub.publish(msg)

    # ---- episodes ----
    def request_home(self):
        waiting = self.learner.waiting_for()
        if waiting is None and not self.home_client.service_is_ready():
            waiting = 'the arm_driver home service'
        if waiting is None and self.homing is None:
            # Our ticket is the driver's count + 1: without the count, a driver that has
            # homed before (a restarted policy) would look finished at once.
            waiting = f'the arm_driver homing status on {TOPIC_HOMING}'
        if waiting is not None:
            self.get_logger().info(f'waiting for {waiting}', throttle_duration_sec=5.0)
            return
        self.cmd_pub.publish(Float64MultiArray(data=[0.0] * self.arm.n_joints))
        # Counts, not edges: a quick homing's start and end may reach us as one message.
        self.home_ticket = self.homing.started + 1
        self.home_requested_ns = self.get_clock().now().nanoseconds
        self.homing_done_ns = None
        future = self.home_client.call_async(Trigger.Request())
        future.add_done_callback(self.on_home_response)
        self.state = 'resetting'

    def on_home_response(self, future):
        response = future.result()
        if response is None or not response.success:
            msg = response.message if response else 'no response'
            self.get_logger().warning(f'homing refused ({msg}); asking again')
            self.state = 'start'

    def check_reset_progress(self, now_ns: int):
        # arm_driver ends any homing by 3 x reset_s; past that, our request or its answer was lost.
        waited_s = (now_ns - self.home_requested_ns) * 1e-9
        if self.homing_done_ns is None and waited_s > 3 * self.cfg.task.reset_s + 5.0:
            self.get_logger().warning(
                f'homing #{self.home_ticket} not reported finished after {waited_s:.0f} s '
                f'(arm_driver status: {self.homing}); asking again')
            self.state = 'start'

    def reset_finished(self) -> bool:
        if self.homing_done_ns is None:
            return False
        # A frame taken after homing ended shows the new target from the home pose.
        newest = next(reversed(self.images), -1) if self.images else -1
        return newest > self.homing_done_ns and newest in self.rewards and self.q is not None

    def begin_episode(self):
        self.prev_action[:] = 0.0
        obs = self.observation()
        if obs is None:
            return
        stamp, frame, _, proprio = obs
        self.last_obs_ns = stamp
        self.last_tick_ns = self.get_clock().now().nanoseconds
        self.last_tick_wall = time.monotonic()
        self.stacker.reset(frame)
        self.learner.start_episode(frame, proprio)
        self.t = 0
        self.ep_return, self.ep_cycles, self.ep_ages = 0.0, [], []
        self.ep_random = self.ep_reused = 0
        self.ep_start_sim = self.get_clock().now().nanoseconds * 1e-9
        self.ep_start_wall = time.monotonic()
        self.state = 'running'
        # The first action of the episode comes in this same turn; `observation` above
        # consumed the frame, so hand it back to the acting code.
        self.last_obs_ns = stamp - 1

    def end_episode(self):
        self.cmd_pub.publish(Float64MultiArray(data=[0.0] * self.arm.n_joints))
        if self.evaluate:
            self.end_eval_episode()
            return
        sim_time = self.get_clock().now().nanoseconds * 1e-9 - self.ep_start_sim
        self.training_time_s += sim_time
        self.episode += 1
        cycles = percentile_summary([c for c in self.ep_cycles if np.isfinite(c)])
        row = {'episode': self.episode, 'return': self.ep_return, 'steps': self.t,
               'total_steps': self.total_steps, 'sim_time_s': sim_time,
               'wall_time_s': self.log.wall_time(), 'updates': self.learner.updates,
               'updates_per_step': self.learner.updates / max(self.total_steps, 1),
               'cycle_mean_ms': cycles['mean'], 'cycle_p99_ms': cycles['p99'],
               'random_steps': self.ep_random, 'weights_version': self.learner.weights_version,
               'transitions_sent': self.learner.sent,
               'transitions_stored': getattr(self.learner, 'stored', self.learner.sent),
               'batches_waited': self.batches_waited, 'frames_reused': self.ep_reused}
        ages = np.array(self.ep_ages) if self.ep_ages else np.zeros((1, 3))
        row.update(weights_age_steps_mean=ages[:, 0].mean(), weights_age_ms_mean=ages[:, 1].mean(),
                   weights_swap_ms_max=ages[:, 2].max())
        steps = self.log.episode(row)
        self.tb.episode(row, steps, replay_size=len(self.learner.replay) or min(
            row['transitions_stored'], self.cfg.sac.replay_capacity),
            training_min=self.training_time_s / 60)
        every = self.cfg.run.tensorboard_images_every
        if every and self.episode % every == 0:
            self.tb.images(self.episode, self.stacker.stacked())
        self.publish_episode_metrics(row, sim_time)
        self.report(cycles)
        print(f"[episode {self.episode:4d}] return {self.ep_return:8.3f}  steps {self.t:3d}  "
              f"total {self.total_steps:6d}  updates {self.learner.updates:6d} "
              f"({row['updates_per_step']:.2f}/step, weights age {row['weights_age_steps_mean']:.0f} "
              f"steps, learner waited {self.batches_waited}x)  "
              f"cycle {cycles['mean']:6.1f}/{cycles['p99']:6.1f} ms (mean/p99, sim)  "
              f"train {self.training_time_s / 60:5.1f}/{self.cfg.run.training_minutes:g} min  "
              f"wall {self.log.wall_time() / 60:6.1f} min", flush=True)
        finished = (self.training_time_s >= self.cfg.run.training_minutes * 60 or
                    (self.cfg.run.max_episodes and self.episode >= self.cfg.run.max_episodes))
        if finished or self.episode % self.cfg.run.checkpoint_every_episodes == 0:
            self.save()
        if self.episode % 5 == 0 or finished:
            self.log.plot()
        if finished:
            self.finish()
        else:
            self.request_home()

    def end_eval_episode(self):
        self.episode += 1
        cycles = percentile_summary([c for c in self.ep_cycles if np.isfinite(c)])
        self.eval_log.episode(self.ep_return, self.t, cycles['mean'])
        print(f'[eval {self.episode:3d}/{self.evaluate}] return {self.ep_return:8.3f}  steps '
              f'{self.t:3d}  cycle {cycles["mean"]:6.1f}/{cycles["p99"]:6.1f} ms (mean/p99, sim)',
              flush=True)
        if self.eval_log.complete:
            self.done = True
            print(format_summary(self.eval_log.finish(self.cfg.run.tensorboard)), flush=True)
        else:
            self.request_home()

    def report(self, cycles: dict):
        nominal = self.cfg.task.action_cycle_ms
        over = cycles['p99'] > 1.1 * nominal
        checks = [('action cycle', 'WARN' if over else 'OK',
                   f"p99 {cycles['p99']:.1f} ms vs nominal {nominal:g} ms" + (' (overrun)' if over else ''),
                   {'mean_ms': f"{cycles['mean']:.2f}", 'p99_ms': f"{cycles['p99']:.2f}"})]
        updates, since = self.updates_seen
        if self.learner.updates != updates:
            self.updates_seen = (self.learner.updates, time.monotonic())
        learning = self.total_steps > self.cfg.learning_starts
        stalled = learning and self.cfg.mode != 'sync' and time.monotonic() - since > 60.0
        checks.append(('learner', 'WARN' if stalled else 'OK',
                       'learner stalled: no update for 60 s, acting on the last weights'
                       if stalled else f'{self.learner.updates} updates',
                       {'weights_version': self.learner.weights_version}))
        self.diagnostics.publish(checks)

    def publish_episode_metrics(self, row: dict, sim_time: float):
        msg = EpisodeMetrics()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.episode, msg.episode_return, msg.steps = row['episode'], float(row['return']), row['steps']
        msg.total_steps, msg.sim_time_s = row['total_steps'], sim_time
        msg.wall_time_s, msg.updates = row['wall_time_s'], row['updates']
        msg.cycle_mean_ms = float(np.nan_to_num(row['cycle_mean_ms']))
        msg.cycle_p99_ms = float(np.nan_to_num(row['cycle_p99_ms']))
        self.episode_pub.publish(msg)

    def finish(self):
        self.done = True
        summary = self.log.timing_summary()
        self.get_logger().info(
            f'run finished: {self.episode} episodes, {self.total_steps} steps, '
            f'{self.learner.updates} updates; timing summary in {self.log.dir}/timing_summary.txt')
        if summary:
            print((self.log.dir / 'timing_summary.txt').read_text(), flush=True)

    # ---- checkpoints ----
    def save(self):
        t0 = time.perf_counter()
        extra = {'episode': self.episode, 'total_steps': self.total_steps,
                 'training_time_s': self.training_time_s, 'wall_time_s': self.log.wall_time(),
                 'learner': self.learner.state_dict(), 'rng': self.rng.bit_generator.state,
                 'config': self.cfg.to_dict()}
        # Sync: the whole training state; async: the counters (learner and replay owner
        # save their own parts beside this file).
        save_checkpoint(self.checkpoint_path, *self.learner.checkpoint_parts(), extra)
        self.log.timing_summary()
        self.get_logger().info(f'checkpoint saved ({self.learner.sent} transitions sent, '
                               f'{self.learner.updates} updates) in {time.perf_counter() - t0:.1f} s')

    def restore(self):
        if not self.checkpoint_path.is_file():
            raise FileNotFoundError(f'--resume: no checkpoint at {self.checkpoint_path}')
        state = load_checkpoint(self.checkpoint_path)
        self.learner.restore_parts(state)
        extra = state['extra']
        self.learner.load_state_dict(extra['learner'])
        self.episode, self.total_steps = extra['episode'], extra['total_steps']
        self.training_time_s = extra['training_time_s']
        self.log.wall_offset = extra['wall_time_s']
        self.rng.bit_generator.state = extra['rng']
        self.get_logger().info(f'resumed at episode {self.episode}, step {self.total_steps}, '
                               f'{self.learner.updates} updates')

    def shutdown(self):
        """Ctrl-C / SIGTERM: stop the arm and save everything learned so far."""
        if self.evaluate:   # an evaluation saves no checkpoint; a stopped one says what it has
            if not self.eval_log.complete and self.eval_log.returns:
                print(format_summary(self.eval_log.finish(self.cfg.run.tensorboard)), flush=True)
        elif not self.done and self.total_steps > 0:
            self.save()
            self.log.plot()
        self.tb.close()
        self.tb_updates.close()
        self.learner.close()


def main(args=None):
    run_node(PolicyNode, args, on_exit=PolicyNode.shutdown)


if __name__ == '__main__':
    main()
