"""The policy's episodes without ROS: EpisodeRunner driven by a fake clock, fake frames,
rewards and homing, and a fake learning backend. No processes, no DDS; fast."""
from __future__ import annotations

import numpy as np
import pytest

from asyncrl_ros.learning.checkpoint import load_checkpoint, save_checkpoint
from asyncrl_ros.run.config import load_config
from asyncrl_ros.learning.episode_runner import (REUSE_MAX_AGE_CYCLES, EpisodeRunner, FramePairing, Homing,
                                        Outputs, Phase)
from asyncrl_ros.run.run_log import RunLog

A = 7                       # actuated joints
CYCLE = 40_000_000          # 40 ms in ns
STEPS = 5                   # 0.2 s episodes
H, W = 12, 16


def config(**run):
    return load_config({'image': {'width': W, 'height': H},
                        'task': {'action_cycle_ms': 40.0, 'episode_s': 0.2, 'reset_s': 1.0},
                        'sac': {'crop_height': H, 'crop_width': W, 'batch_size': 4},
                        'run': {'init_random_steps': 0, 'tensorboard': False,
                                'checkpoint_every_episodes': 100, **run}})


def frame(value: int) -> np.ndarray:
    return np.full((3, H, W), value % 256, dtype=np.uint8)


class FakeLearner:
    """The backend interface (InProcessLearner/RemoteLearner/EvalBackend), recording calls."""

    def __init__(self, info: dict | None = None):
        self.info = info or {}
        self.updates = self.weights_version = self.sent = 0
        self.swap_ms = 0.0
        self.replay: list = []
        self.starts: list[tuple[np.ndarray, np.ndarray]] = []
        self.added: list[tuple] = []
        self.acted: list[tuple[np.ndarray, np.ndarray, bool]] = []
        self.action = np.full(A, 0.5, dtype=np.float32)
        self.waiting: str | None = None
        self.closed = False

    def waiting_for(self):
        return self.waiting

    def start_episode(self, frame, proprio):
        self.starts.append((frame, proprio))

    def add(self, action, reward, next_frame, next_proprio, terminal):
        self.added.append((np.array(action), reward, next_frame, next_proprio, terminal))
        self.sent += 1

    def act(self, stacked, proprio, explore=True):
        self.acted.append((stacked, proprio, explore))
        return self.action.copy()

    def learn(self):
        return {'sampling_ms': 0.0, 'update_ms': 0.0}

    def poll_weights(self, step):
        pass

    def age(self, step):
        return 0, 0.0

    def on_learner_status(self, updates, stored, missing):
        self.updates = updates

    def checkpoint_parts(self):
        return None, None

    def restore_parts(self, state):
        pass

    def state_dict(self):
        return {'sent': self.sent}

    def load_state_dict(self, state):
        self.sent = state['sent']

    def close(self):
        self.closed = True


class FakeLog:
    def __init__(self):
        self.lines: list[tuple[str, str]] = []

    def _add(self, level, text, **_):
        self.lines.append((level, text))

    def info(self, text, **kw):
        self._add('info', text, **kw)

    def warning(self, text, **kw):
        self._add('warning', text, **kw)

    def error(self, text, **kw):
        self._add('error', text, **kw)

    def has(self, level, part):
        return any(lv == level and part in t for lv, t in self.lines)


class Rig:
    """A runner, its fake clock and world: a frame every cycle, its reward a little later."""

    def __init__(self, tmp_path, cfg=None, learner=None, evaluate=0, resume_state=None):
        self.now = 10 * CYCLE
        self.learner = learner or FakeLearner()
        self.commands: list[np.ndarray] = []
        self.stops: list[int] = []
        self.home_requests: list[int] = []
        self.steps: list[dict] = []
        self.episodes: list[dict] = []
        self.checks: list[list] = []
        self.saved: list[tuple] = []
        self.log = FakeLog()
        self.homing = Homing(active=False, started=0, finished=0)
        self.path = tmp_path / 'checkpoint.pt'
        out = Outputs(command=self.commands.append, stop=lambda: self.stops.append(self.now),
                      request_home=lambda: self.home_requests.append(self.now),
                      step_metrics=self.steps.append, episode_metrics=self.episodes.append,
                      diagnostics=self.checks.append, save_checkpoint=self.save)
        self.runner = EpisodeRunner(cfg or config(), self.learner, tmp_path, A, out, self.log,
                                    evaluate=evaluate, resume_state=resume_state,
                                    wall=lambda: self.now * 1e-9)
        self.runner.on_joints(np.arange(A, dtype=np.float32), -np.arange(A, dtype=np.float32))

    def save(self, agent, replay, extra):
        save_checkpoint(self.path, agent, replay, extra)
        self.saved.append(extra)

    def frame(self, value: int | None = None, reward: float | None = 1.0, terminal=False):
        """A camera frame stamped now (its value: the stamp in cycles), and its reward."""
        stamp = self.now
        self.runner.on_frame(stamp, frame(stamp // CYCLE if value is None else value))
        if reward is not None:
            self.runner.on_reward(stamp, reward, terminal)
        return stamp

    def advance(self, ns: int = CYCLE):
        self.now += ns

    def tick(self):
        self.runner.tick(self.now)

    def publish_homing(self, active: bool, started: int, finished: int):
        self.homing = Homing(active, started, finished)
        self.runner.on_homing(self.homing, self.now)

    def reset(self):
        """Tick until the runner asks for homing, home, and tick until the episode starts."""
        if self.runner.homing is None:
            self.publish_homing(False, self.homing.started, self.homing.finished)
        self.tick()
        assert self.runner.phase is Phase.RESETTING and self.home_requests
        n = self.homing.started + 1
        self.advance(CYCLE // 4)
        self.publish_homing(True, n, n - 1)
        self.advance(CYCLE // 4)
        self.publish_homing(False, n, n)
        self.advance(CYCLE // 2)
        self.frame()
        self.tick()
        assert self.runner.phase is Phase.RUNNING

    def cycle(self, reward: float | None = 1.0, terminal=False):
        """The next cycle: a frame and its reward, then the timer's tick."""
        self.advance()
        self.frame(reward=reward, terminal=terminal)
        self.tick()


# ---- pairing a frame with its reward ----

def test_pairing_takes_the_newest_frame_whose_reward_arrived():
    p = FramePairing(reuse_max_age_ns=int(1.5 * CYCLE))
    assert p.take(0) is None
    for i in (1, 2, 3):
        p.add_frame(i * CYCLE, frame(i))
    p.add_reward(1 * CYCLE, 0.1)
    p.add_reward(2 * CYCLE, 0.2)          # the reward of frame 3 is late
    obs = p.take(3 * CYCLE)
    assert (obs.stamp, obs.reward, obs.reused) == (2 * CYCLE, 0.2, False)
    assert np.all(obs.frame == 2)
    p.add_reward(3 * CYCLE, 0.3)
    obs = p.take(3 * CYCLE + 1)
    assert (obs.stamp, obs.reward, obs.reused) == (3 * CYCLE, 0.3, False)
    assert p.last_consumed == 3 * CYCLE


def test_pairing_reuses_the_consumed_frame_only_while_fresh():
    p = FramePairing(reuse_max_age_ns=int(REUSE_MAX_AGE_CYCLES * CYCLE))
    p.add_frame(CYCLE, frame(1))
    p.add_reward(CYCLE, 0.5)
    assert not p.take(CYCLE).reused
    assert p.take(None) is None                        # no reuse without a clock reading
    again = p.take(CYCLE + int(1.5 * CYCLE))           # exactly 1.5 cycles old: reused
    assert again.reused and again.stamp == CYCLE
    assert p.take(CYCLE + int(1.5 * CYCLE) + 1) is None   # older: nothing to act on


def test_pairing_frame_is_a_copy_and_old_entries_are_dropped():
    p = FramePairing(reuse_max_age_ns=0)
    source = frame(7)
    p.add_frame(1, source)
    p.add_reward(1, 1.0)
    taken = p.take(1)
    source[:] = 0
    assert np.all(taken.frame == 7)
    for i in range(2, 40):
        p.add_frame(i, frame(i))
        p.add_reward(i, 1.0)
    assert len(p.frames) == 16 and min(p.frames) == 24
    for i in range(40, 200):
        p.add_reward(i, 1.0)
    assert len(p.rewards) <= 64 and max(p.rewards) == 199


# ---- homing and the start of an episode ----

def test_waits_for_the_backend_the_home_service_and_the_homing_status(tmp_path):
    rig = Rig(tmp_path)
    rig.learner.waiting = 'the replay owner'
    rig.tick()
    assert not rig.home_requests and rig.log.has('info', 'waiting for the replay owner')
    rig.learner.waiting = None
    rig.tick()
    assert not rig.home_requests and rig.log.has('info', 'waiting for the arm_driver homing status')
    rig.runner.out.home_service_ready = lambda: False
    rig.publish_homing(False, 3, 3)     # a driver that homed before: our ticket is 4
    rig.tick()
    assert not rig.home_requests and rig.log.has('info', 'the arm_driver home service')
    rig.runner.out.home_service_ready = lambda: True
    rig.tick()
    assert rig.home_requests == [rig.now] and rig.runner.home_ticket == 4
    assert rig.stops == [rig.now]       # the arm is stopped before homing
    assert rig.runner.phase is Phase.RESETTING


def test_episode_starts_on_a_frame_taken_after_homing_ended_and_acts_at_once(tmp_path):
    rig = Rig(tmp_path)
    rig.publish_homing(False, 3, 3)
    rig.tick()
    rig.frame(reward=1.0)
    rig.advance()
    rig.tick()   # homing not reported finished yet: nothing happens
    assert rig.runner.phase is Phase.RESETTING and not rig.commands
    rig.publish_homing(False, 3, 3)     # the old count again: not our homing
    rig.advance()
    rig.frame()
    rig.tick()
    assert rig.runner.phase is Phase.RESETTING and not rig.commands
    rig.publish_homing(True, 4, 3)
    rig.publish_homing(False, 4, 4)     # ours finished now
    rig.tick()   # the newest frame is older than the end of homing
    assert rig.runner.phase is Phase.RESETTING
    rig.advance()
    rig.frame(reward=None)
    rig.tick()   # a frame after homing, but its reward has not arrived
    assert rig.runner.phase is Phase.RESETTING
    first = rig.now
    rig.runner.on_reward(first, 0.25)
    rig.tick()
    assert rig.runner.phase is Phase.RUNNING
    # The first frame starts the episode (replay) and is acted on in the same turn.
    assert len(rig.learner.starts) == 1 and np.all(rig.learner.starts[0][0] == first // CYCLE)
    assert np.all(rig.learner.starts[0][1][2 * A:] == 0)   # no previous action yet
    assert len(rig.commands) == 1 and not rig.learner.added
    assert rig.steps[0]['frame_reused'] == 0 and rig.steps[0]['step'] == 1
    assert rig.steps[0]['cycle_ms'] == 0.0


def test_homing_refused_or_never_finished_is_asked_again(tmp_path):
    rig = Rig(tmp_path)
    rig.publish_homing(False, 0, 0)
    rig.tick()
    rig.runner.on_home_response(False, 'busy')
    assert rig.runner.phase is Phase.START and rig.log.has('warning', 'homing refused (busy)')
    rig.tick()
    assert len(rig.home_requests) == 2 and rig.runner.phase is Phase.RESETTING
    # arm_driver ends any homing by 3 x reset_s; past that plus 5 s we ask again.
    rig.advance(int((3 * 1.0 + 5.0) * 1e9))
    rig.tick()
    assert rig.runner.phase is Phase.RESETTING
    rig.advance(CYCLE)
    rig.tick()
    assert rig.runner.phase is Phase.START and rig.log.has('warning', 'not reported finished')
    rig.tick()
    assert len(rig.home_requests) == 3


# ---- acting, storing, stacking ----

def test_each_transition_pairs_the_previous_action_with_the_next_frame_and_its_reward(tmp_path):
    rig = Rig(tmp_path)
    rig.reset()
    rewards = [0.1, 0.2, 0.3]
    for r in rewards:
        rig.cycle(reward=r)
    assert [t[1] for t in rig.learner.added] == rewards
    assert len(rig.commands) == 4
    # The action stored with each reward is the one sent the cycle before.
    for (action, _, next_frame, next_proprio, terminal), cmd in zip(rig.learner.added,
                                                                  rig.commands):
        np.testing.assert_array_equal(action, cmd)
        np.testing.assert_array_equal(next_proprio[2 * A:], cmd)
        assert not terminal
    np.testing.assert_array_equal(rig.learner.added[0][3][:A], np.arange(A))
    np.testing.assert_array_equal(rig.learner.added[0][3][A:2 * A], -np.arange(A))
    assert [s['reward'] for s in rig.steps] == [1.0, *rewards]


def test_the_stack_holds_the_last_frames_from_the_episodes_first(tmp_path):
    rig = Rig(tmp_path)
    rig.reset()
    f0 = rig.now // CYCLE
    rig.cycle()
    rig.cycle()
    rig.cycle()
    firsts = [s[0].reshape(3, 3, H, W)[:, 0, 0, 0].tolist() for s in rig.learner.acted]
    assert firsts == [[f0] * 3, [f0, f0, f0 + 1], [f0, f0 + 1, f0 + 2], [f0 + 1, f0 + 2, f0 + 3]]
    assert rig.learner.acted[0][0].shape == (9, H, W) and rig.learner.acted[0][1].shape == (3 * A,)


def test_random_phase_then_the_learner_acts(tmp_path):
    rig = Rig(tmp_path, config(init_random_steps=3))
    rig.reset()
    for _ in range(3):
        rig.cycle()
    assert len(rig.learner.acted) == 1       # steps 1-3 random, step 4 acted by the learner
    assert [s['random_action'] for s in rig.steps] == [True, True, True, False]
    assert all(np.all(np.abs(c) <= 1) for c in rig.commands[:3])
    assert len({tuple(c) for c in rig.commands[:3]}) == 3
    np.testing.assert_array_equal(rig.commands[3], rig.learner.action)
    rig.cycle()   # end of the 5-step episode is the next one; finish it
    rig.cycle()
    assert rig.episodes[0]['random_steps'] == 3


def test_actions_reach_the_arm_clipped_and_never_non_finite(tmp_path):
    rig = Rig(tmp_path)
    rig.learner.action = np.array([2.0, -3.0, 0.5, 0, 0, 0, np.nan], dtype=np.float32)
    rig.reset()
    np.testing.assert_array_equal(rig.commands[0], np.zeros(A))
    assert rig.log.has('error', 'non-finite action')
    rig.learner.action = np.array([2.0, -3.0, 0.5, 0, 0, 0, 0], dtype=np.float32)
    rig.cycle()
    np.testing.assert_array_equal(rig.commands[1], [1.0, -1.0, 0.5, 0, 0, 0, 0])


# ---- late and missing rewards ----

def test_a_reward_arriving_just_after_the_tick_reuses_the_previous_frame(tmp_path):
    rig = Rig(tmp_path)
    rig.reset()
    rig.cycle(reward=0.5)
    rig.advance()
    late = rig.frame(reward=None)   # the newest frame's reward comes after this tick
    rig.tick()
    assert len(rig.commands) == 3
    step = rig.steps[-1]
    assert step['frame_reused'] == 1 and step['frame_age_ms'] == pytest.approx(40.0)
    assert step['reward'] == 0.5
    # The reused frame's transition is stored again: the cycle's action is not lost.
    assert len(rig.learner.added) == 2 and rig.learner.added[-1][1] == 0.5
    rig.runner.on_reward(late, 0.7)
    rig.cycle(reward=0.9)
    assert rig.steps[-1]['frame_reused'] == 0 and rig.steps[-1]['reward'] == 0.9
    rig.cycle()
    rig.cycle()   # the episode ends here
    assert rig.episodes[0]['frames_reused'] == 1


def test_a_reward_later_than_reuse_allows_skips_the_tick_and_a_silent_camera_is_reported(
        tmp_path):
    rig = Rig(tmp_path)
    rig.reset()
    acted = len(rig.commands)
    rig.advance(2 * CYCLE)              # the last paired frame is 2 cycles old now
    stamp = rig.frame(reward=None)
    rig.tick()
    assert len(rig.commands) == acted and rig.runner.t == 1
    assert not rig.log.has('warning', 'no camera frame')
    rig.advance()
    rig.tick()
    rig.advance()
    rig.tick()
    assert rig.log.has('warning', 'no camera frame with reward for 3 cycles')
    rig.runner.on_reward(stamp, 0.4)    # too late: it is not the newest frame any more...
    rig.advance()
    rig.frame(reward=0.6)
    rig.tick()                          # ...the newest paired one is acted on
    assert rig.steps[-1]['reward'] == 0.6 and rig.steps[-1]['frame_reused'] == 0
    assert rig.runner.silent_ticks == 0
    assert rig.steps[-1]['cycle_ms'] == pytest.approx(5 * 40.0)


# ---- the end of an episode ----

def test_episode_ends_at_the_time_limit(tmp_path):
    rig = Rig(tmp_path)
    rig.reset()
    requests = len(rig.home_requests)
    for _ in range(STEPS):
        rig.cycle(reward=0.5)
    assert len(rig.commands) == STEPS            # the last frame is stored, not acted on
    assert len(rig.learner.added) == STEPS and not any(t[4] for t in rig.learner.added)
    (row,) = rig.episodes
    assert row['episode'] == 1 and row['steps'] == STEPS and row['total_steps'] == STEPS
    assert row['episode_return'] == pytest.approx(0.5 * STEPS)
    assert row['sim_time_s'] == pytest.approx(STEPS * 0.04)
    assert row['cycle_mean_ms'] == pytest.approx(40.0)
    assert rig.stops[-1] == rig.now              # the arm stopped, homing asked again
    assert len(rig.home_requests) == requests + 1 and rig.runner.phase is Phase.RESETTING
    assert rig.runner.training_time_s == pytest.approx(STEPS * 0.04)
    assert [c[0] for c in rig.checks[0]] == ['action cycle', 'learner']
    assert rig.checks[0][0][1] == 'OK'
    logged = RunLog(tmp_path).read_episodes()
    assert [int(r['steps']) for r in logged] == [STEPS]
    # The next episode: a fresh start, a fresh stack.
    rig.reset()
    assert len(rig.learner.starts) == 2 and rig.runner.t == 1 and rig.runner.episode == 1
    assert np.all(rig.learner.starts[1][1][2 * A:] == 0)   # no action carried over
    np.testing.assert_array_equal(rig.learner.acted[-1][0][:3], rig.learner.acted[-1][0][6:])


def test_episode_ends_at_a_terminal_reward(tmp_path):
    rig = Rig(tmp_path)
    rig.reset()
    rig.cycle(reward=0.5)
    rig.cycle(reward=2.0, terminal=True)
    assert [t[4] for t in rig.learner.added] == [False, True]
    assert len(rig.commands) == 2
    (row,) = rig.episodes
    assert row['steps'] == 2 and row['episode_return'] == pytest.approx(2.5)
    assert rig.runner.phase is Phase.RESETTING


def test_run_finishes_after_max_episodes_saves_and_stops(tmp_path):
    rig = Rig(tmp_path, config(max_episodes=2))
    for _ in range(2):
        rig.reset()
        for _ in range(STEPS):
            rig.cycle()
    assert rig.runner.done and len(rig.saved) == 1 and rig.saved[0]['episode'] == 2
    assert rig.log.has('info', 'run finished: 2 episodes, 10 steps')
    assert (tmp_path / 'timing_summary.txt').is_file()
    n = len(rig.commands)
    rig.advance()
    rig.frame()
    rig.tick()
    assert len(rig.commands) == n       # done: nothing more
    rig.runner.shutdown()               # finished: nothing more to save
    assert len(rig.saved) == 1 and rig.learner.closed


# ---- checkpoints ----

def test_counters_survive_a_save_and_restore(tmp_path):
    rig = Rig(tmp_path, config(checkpoint_every_episodes=2, init_random_steps=100))
    for _ in range(2):
        rig.reset()
        for _ in range(STEPS):
            rig.cycle()
    assert len(rig.saved) == 1 and rig.path.is_file()
    assert rig.log.has('info', 'checkpoint saved (10 transitions sent')
    state = load_checkpoint(rig.path)
    extra = state['extra']
    assert (extra['episode'], extra['total_steps'], extra['learner']) == (2, 10, {'sent': 10})
    assert extra['training_time_s'] == pytest.approx(2 * STEPS * 0.04)
    assert extra['config']['run']['checkpoint_every_episodes'] == 2

    # The same run continued in one piece, and resumed from its checkpoint: same counters,
    # same random actions.
    rig.reset()
    uninterrupted = rig.commands[-1]
    resumed = Rig(tmp_path / 'resumed', config(checkpoint_every_episodes=2, init_random_steps=100),
                  resume_state=state)
    assert (resumed.runner.episode, resumed.runner.total_steps) == (2, 10)
    assert resumed.runner.training_time_s == pytest.approx(extra['training_time_s'])
    assert resumed.learner.sent == 10
    assert resumed.runner.log.wall_offset == extra['wall_time_s']
    assert resumed.log.has('info', 'resumed at episode 2, step 10')
    resumed.reset()
    np.testing.assert_array_equal(resumed.commands[-1], uninterrupted)
    for _ in range(STEPS):
        resumed.cycle()
    assert resumed.episodes[-1]['episode'] == 3 and resumed.episodes[-1]['total_steps'] == 15


def test_stopped_mid_episode_saves_what_it_has(tmp_path):
    rig = Rig(tmp_path)
    rig.tick()   # nothing acted yet: nothing to save
    rig.runner.shutdown()
    assert not rig.saved
    rig = Rig(tmp_path)
    rig.reset()
    rig.cycle()
    rig.runner.shutdown()
    assert len(rig.saved) == 1 and rig.saved[0]['total_steps'] == 2 and rig.learner.closed


# ---- evaluation ----

def test_evaluation_acts_on_the_mean_from_the_first_step_and_saves_nothing(tmp_path):
    learner = FakeLearner(info={'checkpoint': 'checkpoint.pt', 'updates': 9})
    rig = Rig(tmp_path, config(init_random_steps=1000), learner=learner, evaluate=2)
    for _ in range(2):
        rig.reset()
        for _ in range(STEPS):
            rig.cycle(reward=1.0)
    assert rig.runner.done and not rig.saved and not rig.episodes
    assert len(learner.acted) == 2 * STEPS   # no random phase in an evaluation
    assert (tmp_path / 'eval.json').is_file()
    assert rig.runner.eval_log.returns == [STEPS * 1.0, STEPS * 1.0]
