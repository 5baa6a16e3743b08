"""The policy's episodes, without ROS: what the policy node does in each turn of its timer.

`EpisodeRunner` takes plain inputs (frames as (C,H,W) uint8 arrays and rewards, each keyed
by its image's stamp in ns; joint positions and velocities; the arm_driver's homing counts)
and a clock reading with every tick, and answers through callables (`Outputs`): a command
to publish, a homing to request, metric rows, diagnostics, a checkpoint to write. The node
only converts messages to these and wires topics, timers and services to it; tests drive it
with a fake clock and fake inputs.

Each tick while an episode runs: take the newest frame whose reward has arrived (paired by
stamp), store the transition of the previous action, act, publish the command. In sync
mode the backend then samples and updates in the same turn, so a slow update stretches the
measured cycle, as on the real robot.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from asyncrl_ros.learning.evaluate import EvalLog, format_summary
from asyncrl_ros.learning.backends import FrameStacker
from asyncrl_ros.run.run_log import RunLog, percentile_summary
from asyncrl_ros.run.tensorboard_log import TensorBoardLog

# The camera and the action timer share a period: a tick that comes just before the
# newest frame's reward arrives acts again on the previous frame, if it is this fresh,
# rather than losing a whole cycle. Older than that (after a sync update, a silent
# camera), the tick passes and the arm_driver's watchdog covers the gap.
REUSE_MAX_AGE_CYCLES = 1.5
# Ticks in a row with no frame to act on before the policy says the camera went quiet.
SILENT_TICKS_WARN = 3
# How many frames and rewards wait to be paired.
KEEP_FRAMES = 16
KEEP_REWARDS = 64


class Phase(Enum):
    START = 'start'            # ask the arm_driver to home the arm (once it can)
    RESETTING = 'resetting'    # homing, then a frame taken from the home pose
    RUNNING = 'running'        # acting every tick
    DONE = 'done'              # the run (or the evaluation) is over


@dataclass
class Homing:
    """The arm_driver's homing status: homings started and finished since it started."""
    active: bool
    started: int
    finished: int


class Observation(NamedTuple):
    stamp: int            # the image's stamp, ns
    frame: np.ndarray     # (C,H,W) uint8, a copy
    reward: float         # the reward computed from this frame
    terminal: bool
    reused: bool          # acted on before (see REUSE_MAX_AGE_CYCLES)


class FramePairing:
    """Frames and rewards keyed by the image's stamp; the newest frame whose reward has
    arrived is the one to act on. Remembers the last frame it handed out (consumed)."""

    def __init__(self, reuse_max_age_ns: int):
        self.frames: OrderedDict[int, np.ndarray] = OrderedDict()
        self.rewards: dict[int, tuple[float, bool]] = {}
        self.reuse_max_age_ns = reuse_max_age_ns
        self.last_consumed: int | None = None

    def add_frame(self, stamp: int, frame: np.ndarray) -> None:
        self.frames[stamp] = frame
        while len(self.frames) > KEEP_FRAMES:
            self.frames.popitem(last=False)

    def add_reward(self, stamp: int, reward: float, terminal: bool = False) -> None:
        self.rewards[stamp] = (reward, terminal)
        if len(self.rewards) > KEEP_REWARDS:
            for key in sorted(self.rewards)[:-KEEP_REWARDS // 2]:
                del self.rewards[key]

    def newest_frame(self) -> int | None:
        return next(reversed(self.frames), None)

    def has_reward(self, stamp: int | None) -> bool:
        return stamp in self.rewards

    def take(self, now_ns: int | None = None) -> Observation | None:
        """The newest paired frame not consumed yet or, given `now_ns`, the consumed one
        again while it is at most `reuse_max_age_ns` old. Marks it consumed."""
        key = next((k for k in reversed(self.frames) if k in self.rewards), None)
        if key is None:
            return None
        reused = self.last_consumed is not None and key <= self.last_consumed
        if reused and (now_ns is None or now_ns - key > self.reuse_max_age_ns):
            return None
        self.last_consumed = key
        reward, terminal = self.rewards[key]
        return Observation(key, self.frames[key].copy(), reward, terminal, reused)


def _nothing(*args, **kwargs) -> None:
    return None


@dataclass
class Outputs:
    """What the runner asks of the world around it (the node's publishers and services)."""
    command: Callable[[np.ndarray], None] = _nothing   # actuated joints, each in [-1, 1]
    stop: Callable[[], None] = _nothing                # zero velocity on every joint
    home_service_ready: Callable[[], bool] = lambda: True
    request_home: Callable[[], None] = _nothing        # answer: EpisodeRunner.on_home_response
    step_metrics: Callable[[dict], None] = _nothing    # keys: StepMetrics' fields (and more)
    episode_metrics: Callable[[dict], None] = _nothing  # keys: EpisodeMetrics' fields (and more)
    diagnostics: Callable[[list], None] = _nothing     # [(name, level, message, values)]
    save_checkpoint: Callable[..., None] = _nothing    # (agent, replay, extra): write the file


class EpisodeRunner:
    """Episodes of the policy: homing, pairing, stacking, acting, storing, counters.

    `learner` is the backend (InProcessLearner, RemoteLearner or EvalBackend); `evaluate`
    > 0 makes this an evaluation of that many episodes (EvalBackend): no random phase,
    nothing saved, eval.csv and eval.json written.
    `resume_state` is a loaded checkpoint to continue from. `log` has rclpy's logger methods
    (info/warning/error with throttle_duration_sec)."""

    def __init__(self, cfg, learner, run_dir: str | Path, action_dim: int, out: Outputs, log,
                 explore: Callable[[], bool] = lambda: True, evaluate: int = 0,
                 resume_state: dict | None = None, wall: Callable[[], float] = time.monotonic):
        self.cfg, self.learner, self.out, self.logger = cfg, learner, out, log
        self.explore, self.evaluate, self.wall = explore, evaluate, wall
        self.eval_log = EvalLog(run_dir, evaluate, learner.info) if evaluate else None
        self.action_dim = action_dim
        self.cycle_ns = int(round(cfg.task.action_cycle_ms * 1e6))
        self.steps_per_episode = int(round(cfg.task.episode_s / (cfg.task.action_cycle_ms / 1000.0)))
        self.pairing = FramePairing(int(REUSE_MAX_AGE_CYCLES * self.cycle_ns))
        self.stacker = FrameStacker(cfg.sac.frame_stack)
        self.rng = np.random.default_rng(cfg.run.seed)
        self.log = RunLog(run_dir, title=f'{Path(run_dir).name} ({cfg.mode})')

        # Counters that a checkpoint carries.
        self.episode = 0
        self.total_steps = 0
        self.training_time_s = 0.0
        if resume_state is not None:
            self.restore(resume_state)
        # TensorBoard: episodes under 'policy'; sync's in-process updates under 'learner', as
        # the learner node's are in async (steps are episodes there, updates here). A resumed
        # run drops what an earlier session wrote after its checkpoint.
        tb = cfg.run.tensorboard and not evaluate
        resumed = resume_state is not None
        self.tb = TensorBoardLog(run_dir, 'policy', tb,
                                 purge_step=self.episode + 1 if resumed else None)
        self.tb_updates = TensorBoardLog(run_dir, 'learner', tb and cfg.mode == 'sync',
                                         cfg.run.tensorboard_every_updates,
                                         purge_step=learner.updates + 1 if resumed else None)

        # Inputs, as the node last saw them.
        self.q = self.qd = None          # actuated joints' positions and velocities
        self.homing: Homing | None = None
        self.home_ticket = 0             # the arm_driver's homing count that ends our reset
        self.home_requested_ns = 0
        self.homing_done_ns: int | None = None
        self.batches_waited = 0          # reported by a learner in another process

        self.phase = Phase.START
        self.t = 0                       # steps into the episode
        self.prev_action = np.zeros(action_dim, dtype=np.float32)
        self.ep_return = 0.0
        self.ep_cycles: list[float] = []
        self.ep_ages: list[tuple[int, float, float]] = []
        self.ep_random = self.ep_reused = 0
        self.ep_start_ns = 0
        self.silent_ticks = 0
        self.last_tick_ns: int | None = None
        self.last_tick_wall: float | None = None
        self.updates_seen = (0, wall())
        log.info(f'{cfg.mode} policy: cycle {cfg.task.action_cycle_ms:g} ms, '
                 f'{self.steps_per_episode} steps per episode, {cfg.run.init_random_steps} '
                 f'random steps, batch {cfg.sac.batch_size}, run folder {run_dir}')

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    # ---- inputs: stored only; all work happens in `tick` ----
    def on_frame(self, stamp_ns: int, frame: np.ndarray) -> None:
        """A camera frame (C,H,W) uint8; a view is fine (copied when acted on)."""
        self.pairing.add_frame(stamp_ns, frame)

    def on_reward(self, stamp_ns: int, reward: float, terminal: bool = False) -> None:
        """The reward of the frame stamped `stamp_ns` (terminal: the episode ends there)."""
        self.pairing.add_reward(stamp_ns, reward, terminal)

    def on_joints(self, q: np.ndarray, qd: np.ndarray) -> None:
        self.q, self.qd = q, qd

    def on_homing(self, status: Homing, now_ns: int) -> None:
        self.homing = status
        if (self.phase is Phase.RESETTING and self.homing_done_ns is None and not status.active
                and status.finished >= self.home_ticket):
            self.homing_done_ns = now_ns

    def on_home_response(self, success: bool, message: str) -> None:
        if not success and self.phase is not Phase.DONE:
            self.logger.warning(f'homing refused ({message}); asking again')
            self.phase = Phase.START

    def on_learner_status(self, updates: int, stored: int, missing: int,
                          batches_waited: int) -> None:
        self.learner.on_learner_status(updates, stored, missing)
        self.batches_waited = batches_waited

    # ---- the action cycle ----
    def observe(self, now_ns: int | None = None) -> tuple[Observation, np.ndarray] | None:
        """The frame to act on (see FramePairing.take) and the proprioception beside it."""
        if self.q is None:
            return None
        obs = self.pairing.take(now_ns)
        if obs is None:
            return None
        proprio = np.concatenate([self.q, self.qd, self.prev_action]).astype(np.float32)
        return obs, proprio

    def tick(self, now_ns: int) -> None:
        if self.phase is Phase.DONE:
            return
        if self.phase is Phase.START:
            self.request_home(now_ns)
            return
        seen = None
        if self.phase is Phase.RESETTING:
            if not self.reset_finished():
                self.check_reset_progress(now_ns)
                return
            # The episode's first frame is also the first one acted on, in this same turn.
            seen = self.begin_episode(now_ns)
            if seen is None:
                return
        t_env = time.perf_counter()
        seen = seen or self.observe(now_ns)
        if seen is None:
            self.silent_ticks += 1
            if self.silent_ticks >= SILENT_TICKS_WARN:
                self.logger.warning(
                    f'no camera frame with reward for {self.silent_ticks} cycles: not acting',
                    throttle_duration_sec=5.0)
            return
        self.silent_ticks = 0
        obs, proprio = seen
        self.ep_reused += obs.reused
        cycle_ms = ((now_ns - self.last_tick_ns) / 1e6 if self.last_tick_ns is not None
                    else float('nan'))
        self.last_tick_ns = now_ns
        wall_now = self.wall()
        wall_cycle_ms = ((wall_now - self.last_tick_wall) * 1e3 if self.last_tick_wall is not None
                         else float('nan'))
        self.last_tick_wall = wall_now
        if self.t > 0:
            self.learner.add(self.prev_action, obs.reward, obs.frame, proprio,
                             terminal=obs.terminal)
            self.ep_return += obs.reward
            self.ep_cycles.append(cycle_ms)
        self.stacker.push(obs.frame)
        if self.t >= self.steps_per_episode or (self.t > 0 and obs.terminal):
            self.end_episode(now_ns)
            return

        self.learner.poll_weights(self.total_steps)
        t_act = time.perf_counter()
        random_action = self.total_steps < self.cfg.run.init_random_steps and not self.evaluate
        if random_action:
            action = self.rng.uniform(-1.0, 1.0, self.action_dim).astype(np.float32)
            self.ep_random += 1
        else:
            action = self.learner.act(self.stacker.stacked(), proprio,
                                      explore=self.explore()).astype(np.float32)
        t_pub = time.perf_counter()
        self.command(action)
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
               'action_ms': act_ms, 'environment_ms': env_ms, 'reward': obs.reward,
               'updates': self.learner.updates, 'weights_version': self.learner.weights_version,
               'weights_age_steps': age_steps, 'weights_age_ms': age_ms,
               'swap_ms': self.learner.swap_ms, 'frame_age_ms': (now_ns - obs.stamp) / 1e6,
               'frame_reused': int(obs.reused), **timings}
        self.ep_ages.append((age_steps, age_ms, self.learner.swap_ms))
        self.log.step(row)
        self.out.step_metrics({**row, 'replay_size': len(self.learner.replay),
                               'random_action': random_action})

    def command(self, action: np.ndarray) -> None:
        if not np.all(np.isfinite(action)):
            # A NaN from the network must never reach the robot; the driver would zero it too.
            self.logger.error('non-finite action from the actor; sending zero')
            action = np.zeros_like(action)
        self.out.command(np.clip(action, -1.0, 1.0))

    # ---- episodes ----
    def request_home(self, now_ns: int) -> None:
        waiting = self.learner.waiting_for()
        if waiting is None and not self.out.home_service_ready():
            waiting = 'the arm_driver home service'
        if waiting is None and self.homing is None:
            # Our ticket is the driver's count + 1: without the count, a driver that has
            # homed before (a restarted policy) would look finished at once.
            waiting = 'the arm_driver homing status'
        if waiting is not None:
            self.logger.info(f'waiting for {waiting}', throttle_duration_sec=5.0)
            return
        self.out.stop()
        # Counts, not edges: a quick homing's start and end may reach us as one message.
        self.home_ticket = self.homing.started + 1
        self.home_requested_ns = now_ns
        self.homing_done_ns = None
        self.phase = Phase.RESETTING
        self.out.request_home()

    def check_reset_progress(self, now_ns: int) -> None:
        # arm_driver ends any homing by 3 x reset_s; past that, our request or its answer was lost.
        waited_s = (now_ns - self.home_requested_ns) * 1e-9
        if self.homing_done_ns is None and waited_s > 3 * self.cfg.task.reset_s + 5.0:
            self.logger.warning(
                f'homing #{self.home_ticket} not reported finished after {waited_s:.0f} s '
                f'(arm_driver status: {self.homing}); asking again')
            self.phase = Phase.START

    def reset_finished(self) -> bool:
        if self.homing_done_ns is None:
            return False
        # A frame taken after homing ended shows the new target from the home pose.
        newest = self.pairing.newest_frame()
        return (newest is not None and newest > self.homing_done_ns
                and self.pairing.has_reward(newest) and self.q is not None)

    def begin_episode(self, now_ns: int) -> tuple[Observation, np.ndarray] | None:
        """Start an episode on a fresh frame; returns that frame, the first one to act on."""
        self.prev_action[:] = 0.0
        seen = self.observe()
        if seen is None:
            return None
        obs, proprio = seen
        self.last_tick_ns = now_ns
        self.last_tick_wall = self.wall()
        self.stacker.reset(obs.frame)
        self.learner.start_episode(obs.frame, proprio)   # the replay owner commits the last ones
        self.t = 0
        self.ep_return, self.ep_cycles, self.ep_ages = 0.0, [], []
        self.ep_random = self.ep_reused = 0
        self.ep_start_ns = now_ns
        self.phase = Phase.RUNNING
        return seen

    def end_episode(self, now_ns: int) -> None:
        self.out.stop()
        if self.evaluate:
            self.end_eval_episode(now_ns)
            return
        sim_time = (now_ns - self.ep_start_ns) * 1e-9
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
        self.out.episode_metrics({**row, 'episode_return': row['return']})
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
            self.request_home(now_ns)

    def end_eval_episode(self, now_ns: int) -> None:
        self.episode += 1
        cycles = percentile_summary([c for c in self.ep_cycles if np.isfinite(c)])
        self.eval_log.episode(self.ep_return, self.t, cycles['mean'])
        print(f'[eval {self.episode:3d}/{self.evaluate}] return {self.ep_return:8.3f}  steps '
              f'{self.t:3d}  cycle {cycles["mean"]:6.1f}/{cycles["p99"]:6.1f} ms (mean/p99, sim)',
              flush=True)
        if self.eval_log.complete:
            self.phase = Phase.DONE
            print(format_summary(self.eval_log.finish(self.cfg.run.tensorboard)), flush=True)
        else:
            self.request_home(now_ns)

    def report(self, cycles: dict) -> None:
        nominal = self.cfg.task.action_cycle_ms
        over = cycles['p99'] > 1.1 * nominal
        checks = [('action cycle', 'WARN' if over else 'OK',
                   f"p99 {cycles['p99']:.1f} ms vs nominal {nominal:g} ms" + (' (overrun)' if over else ''),
                   {'mean_ms': f"{cycles['mean']:.2f}", 'p99_ms': f"{cycles['p99']:.2f}"})]
        updates, since = self.updates_seen
        if self.learner.updates != updates:
            self.updates_seen = (self.learner.updates, self.wall())
        learning = self.total_steps > self.cfg.learning_starts
        stalled = learning and self.cfg.mode != 'sync' and self.wall() - since > 60.0
        checks.append(('learner', 'WARN' if stalled else 'OK',
                       'learner stalled: no update for 60 s, acting on the last weights'
                       if stalled else f'{self.learner.updates} updates',
                       {'weights_version': self.learner.weights_version}))
        self.out.diagnostics(checks)

    def finish(self) -> None:
        self.phase = Phase.DONE
        summary = self.log.timing_summary()
        self.logger.info(
            f'run finished: {self.episode} episodes, {self.total_steps} steps, '
            f'{self.learner.updates} updates; timing summary in {self.log.dir}/timing_summary.txt')
        if summary:
            print((self.log.dir / 'timing_summary.txt').read_text(), flush=True)

    # ---- checkpoints ----
    def checkpoint_extra(self) -> dict:
        """The counters a checkpoint carries beside the backend's parts."""
        return {'episode': self.episode, 'total_steps': self.total_steps,
                'training_time_s': self.training_time_s, 'wall_time_s': self.log.wall_time(),
                'learner': self.learner.state_dict(), 'rng': self.rng.bit_generator.state,
                'config': self.cfg.to_dict()}

    def save(self) -> None:
        t0 = time.perf_counter()
        # Sync: the whole training state; async: the counters (learner and replay owner
        # save their own parts beside this file).
        self.out.save_checkpoint(*self.learner.checkpoint_parts(), self.checkpoint_extra())
        self.log.timing_summary()
        self.logger.info(f'checkpoint saved ({self.learner.sent} transitions sent, '
                         f'{self.learner.updates} updates) in {time.perf_counter() - t0:.1f} s')

    def restore(self, state: dict) -> None:
        """Continue from a loaded checkpoint ({'agent', 'replay', 'extra'})."""
        self.learner.restore_parts(state)
        extra = state['extra']
        self.learner.load_state_dict(extra['learner'])
        self.episode, self.total_steps = extra['episode'], extra['total_steps']
        self.training_time_s = extra['training_time_s']
        self.log.wall_offset = extra['wall_time_s']
        self.rng.bit_generator.state = extra['rng']
        self.logger.info(f'resumed at episode {self.episode}, step {self.total_steps}, '
                         f'{self.learner.updates} updates')

    def shutdown(self) -> None:
        """Ctrl-C / SIGTERM: save everything learned so far; an evaluation says what it has."""
        if self.evaluate:   # an evaluation saves no checkpoint; a stopped one says what it has
            if not self.eval_log.complete and self.eval_log.returns:
                print(format_summary(self.eval_log.finish(self.cfg.run.tensorboard)), flush=True)
        elif not self.done and self.total_steps > 0:
            self.save()
            self.log.plot()
        self.tb.close()
        self.tb_updates.close()
        self.learner.close()
