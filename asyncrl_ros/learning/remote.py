"""The async modes' pieces, free of ROS: the policy's view of a learner in another
process, the replay owner, the learner's core, and how weights travel.

Process wiring (which node owns what) lives in the nodes; nothing here knows the mode.
"""
from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from asyncrl_ros.run.config import ExperimentConfig
from asyncrl_ros.agent.device import resolve_device
from asyncrl_ros.agent.device_replay import DeviceFrameReplay
from asyncrl_ros.agent.replay import FrameReplay
from asyncrl_ros.agent.sac import SACAgent
from asyncrl_ros.transport.shm_weights import WeightStore


def shm_names(run_dir: str | Path) -> dict[str, str]:
    """Shared-memory segment names of one run (the same in every process of the run)."""
    digest = hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:10]
    return {'weights': f'asyncrl_{digest}_weights', 'batches': f'asyncrl_{digest}_batches'}


def make_agent(cfg: ExperimentConfig, proprio_dim: int, action_dim: int,
               device: str | torch.device | None = None) -> SACAgent:
    """The agent on sac.device / sac.act_device / sac.precision, or all on `device` (acting only)."""
    stacked = (3 * cfg.sac.frame_stack, cfg.image.height, cfg.image.width)
    return SACAgent(cfg.sac, stacked, proprio_dim, action_dim, device=device, seed=cfg.run.seed)


def make_replay(cfg: ExperimentConfig, proprio_dim: int, action_dim: int,
                device: str | torch.device | None = None, folder=None,
                resume: bool = False) -> FrameReplay:
    """The replay; on a CUDA `device` (the learner's, when it samples its own batches) a
    DeviceFrameReplay whose batches stay there. Host otherwise: on the CPU that is the same
    memory, and a replay_sampler hands numpy batches to the ring. With a `folder` it is kept
    there as it grows (see replay_files.py); `resume` maps a committed one back."""
    args = (cfg.sac.replay_capacity, (3, cfg.image.height, cfg.image.width), proprio_dim, action_dim)
    kwargs = dict(frame_stack=cfg.sac.frame_stack, seed=cfg.run.seed, folder=folder, resume=resume)
    if device is not None and torch.device(device).type == 'cuda':
        return DeviceFrameReplay(*args, device=device, **kwargs)
    return FrameReplay(*args, **kwargs)


def updates_allowed(cfg: ExperimentConfig, steps: int) -> float:
    """The update cap: max_updates_per_step per step since learning began. Counting from
    there means no burst to catch up on the random phase (nor on the steps that filled a
    first batch, when that took longer)."""
    return cfg.run.max_updates_per_step * max(0, steps - cfg.learning_starts)


def batch_spec(cfg: ExperimentConfig, proprio_dim: int, action_dim: int) -> dict:
    """Layout of one mini-batch slot in the sampler -> learner ring."""
    b, c = cfg.sac.batch_size, 3 * cfg.sac.frame_stack
    image = ((b, c, cfg.sac.crop_height, cfg.sac.crop_width), np.uint8)
    return {'obs_image': image, 'obs_proprio': ((b, proprio_dim), np.float32),
            'action': ((b, action_dim), np.float32), 'reward': ((b,), np.float32),
            'next_obs_image': image, 'next_obs_proprio': ((b, proprio_dim), np.float32),
            'not_done': ((b,), np.float32)}


class PolicyNet(nn.Module):
    """What acting needs (encoder + actor), keyed like SACAgent.policy_state_dict()."""

    def __init__(self, agent: SACAgent):
        super().__init__()
        self.encoder = agent.encoder
        self.actor = agent.actor


def policy_tensors(agent: SACAgent) -> dict[str, torch.Tensor]:
    """The live acting tensors (no copy), for publishing."""
    return PolicyNet(agent).state_dict()


def weights_to_bytes(state: dict[str, torch.Tensor]) -> bytes:
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state.items()}, buf)
    return buf.getvalue()


class ShmWeightsSource:
    """Policy side of the shared-memory weights: attach when the learner has created them,
    and re-attach when a restarted learner has created them anew.

    Versions count on across learner restarts (a restarted learner's store starts at 1
    again), so the versions recorded per step never go backwards.
    """

    # How often to look for a restarted learner's segment (one stat() call).
    CHECK_EVERY_S = 0.5

    def __init__(self, name: str):
        self.name = name
        self.store: WeightStore | None = None
        self.offset = 0    # versions of earlier learner lives
        self.version = 0   # as reported: offset + the current store's version
        self.restarts = 0
        self.next_check = 0.0

    def _attach(self, net: PolicyNet) -> WeightStore | None:
        try:
            return WeightStore.attach(self.name, net.state_dict())
        except (FileNotFoundError, ValueError):
            return None   # learner not up yet, or still writing the header

    def load_into(self, net: PolicyNet) -> int | None:
        now = time.monotonic()
        if self.store is None or (now >= self.next_check and self.store.replaced()):
            self.next_check = now + self.CHECK_EVERY_S
            fresh = self._attach(net)
            if fresh is None:
                return self.version or None
            if self.store is not None:   # a restarted learner: keep counting up
                self.store.close()
                self.offset, self.restarts = self.version, self.restarts + 1
            self.store = fresh
        elif now >= self.next_check:
            self.next_check = now + self.CHECK_EVERY_S
        got = self.store.load_into(net)
        if got:
            self.version = self.offset + got
        return self.version or None

    def close(self):
        if self.store is not None:
            self.store.close()


class TopicWeightsSource:
    """Policy side of weights that arrive as serialised bytes (ROS topic, remote learner).

    Only newer versions are taken. A lower version with a newer stamp comes from a
    restarted learner: taken, and counted on from the last version, as ShmWeightsSource
    does."""

    def __init__(self):
        self.pending: tuple[int, bytes, int] | None = None
        self.version = 0
        self.raw = 0       # the learner's own count
        self.stamp_ns = 0
        self.offset = 0

    def offer(self, version: int, data: bytes, stamp_ns: int = 0) -> None:
        self.pending = (version, data, stamp_ns)   # only the newest matters

    def load_into(self, net: PolicyNet) -> int | None:
        if self.pending is None:
            return self.version if self.version else None
        version, data, stamp_ns = self.pending
        self.pending = None
        restarted = version < self.raw and stamp_ns > self.stamp_ns
        if version > self.raw or restarted:
            if restarted:
                self.offset = self.version
            net.load_state_dict(torch.load(io.BytesIO(data), weights_only=True))
            self.raw, self.stamp_ns, self.version = version, stamp_ns, self.offset + version
        return self.version

    def close(self):
        pass


class RemoteLearner:
    """The policy's backend in the async modes: sends transitions, picks up new weights.

    Never waits: a transition is handed to `send` (a non-blocking publish), and a new
    weight version is copied in only when one is complete (seqlock in shared memory).
    """

    def __init__(self, cfg: ExperimentConfig, proprio_dim: int, action_dim: int,
                 send: Callable[[dict], None], weights,
                 receivers: Callable[[], int] = lambda: 1) -> None:
        torch.set_num_threads(1)   # acting is small; leave the cores to the world and learner
        # Acting only: the whole agent on sac.act_device (CPU by default), whatever sac.device.
        self.agent = make_agent(cfg, proprio_dim, action_dim,
                                device=resolve_device(cfg.sac.act_device, 'sac.act_device')[0])
        self.net = PolicyNet(self.agent)
        self.send = send
        self.receivers = receivers
        self.weights = weights
        self.pending_start: tuple[np.ndarray, np.ndarray] | None = None
        self.sent = 0
        self.version = 0
        self.version_seen_at: dict[int, tuple[float, int]] = {0: (time.monotonic(), 0)}
        self.swap_ms = 0.0
        self.replay = _NoReplay()
        self.learner_updates = self.stored = self.missing = 0

    @property
    def updates(self) -> int:
        return self.learner_updates

    def waiting_for(self) -> str | None:
        """Before the first episode: what must exist so that no transition is sent to nobody."""
        if self.sent == 0 and self.receivers() == 0:
            return 'the replay owner (learner or replay_sampler) to subscribe to the transitions'
        return None

    def on_learner_status(self, updates: int, stored: int, missing: int) -> None:
        self.learner_updates, self.stored, self.missing = updates, stored, missing

    @property
    def weights_version(self) -> int:
        return self.version

    def poll_weights(self, step: int) -> None:
        t0 = time.perf_counter()
        version = self.weights.load_into(self.net)
        self.swap_ms = (time.perf_counter() - t0) * 1e3
        if version is not None and version != self.version:
            self.version = version
            self.version_seen_at[version] = (time.monotonic(), step)
            # Keep the map small; only the acting version's age matters.
            for old in [v for v in self.version_seen_at if v < version]:
                del self.version_seen_at[old]

    def age(self, step: int) -> tuple[int, float]:
        """Steps and ms since the acting weights were picked up."""
        seen_wall, seen_step = self.version_seen_at[self.version]
        return step - seen_step, (time.monotonic() - seen_wall) * 1e3

    def act(self, stacked: np.ndarray, proprio: np.ndarray, explore: bool = True) -> np.ndarray:
        return self.agent.act(stacked, proprio, deterministic=not explore)

    def start_episode(self, frame: np.ndarray, proprio: np.ndarray) -> None:
        self.pending_start = (frame, proprio)

    def add(self, action, reward, next_frame, next_proprio, terminal: bool) -> None:
        transition = {'action': action, 'reward': float(reward), 'next_frame': next_frame,
                      'next_proprio': next_proprio, 'terminal': terminal, 'step': self.sent,
                      'weights_version': self.version}
        if self.pending_start is not None:
            transition['first_frame'], transition['first_proprio'] = self.pending_start
            self.pending_start = None
        self.send(transition)
        self.sent += 1

    def learn(self) -> dict:
        return {'sampling_ms': 0.0, 'update_ms': 0.0}

    def close(self) -> None:
        self.weights.close()

    def checkpoint_parts(self):
        return None, None   # the learner and the replay owner save theirs

    def restore_parts(self, state: dict) -> None:
        pass

    def state_dict(self) -> dict:
        return {'sent': self.sent}

    def load_state_dict(self, state: dict) -> None:
        self.sent = int(state.get('sent', 0))


class _NoReplay:
    """The policy holds no replay in the async modes."""

    def __len__(self) -> int:
        return 0


class ReplayOwner:
    """The one process's replay: stores the transitions that arrive, in order, counts what
    arrived and what not, and hands out batches within the update cap.

    With a `folder` (the run's replay folder) every episode's start commits what came
    before it, so a crash loses at most the episode in progress; `resume` continues from
    the last commit."""

    def __init__(self, cfg: ExperimentConfig, proprio_dim: int, action_dim: int,
                 device: str | torch.device | None = None, folder=None, resume: bool = False):
        self.cfg = cfg
        self.replay = make_replay(cfg, proprio_dim, action_dim, device, folder, resume)
        self.stored = 0
        self.missing = 0
        self.episodes = 0
        self.sampled = 0          # batches handed out (the sampler's share of the cap)
        self.expected_step = 0    # a late subscriber counts what it never saw as missing
        self.open_episode = False
        if 'owner' in self.replay.committed_extra:
            self.load_state_dict(self.replay.committed_extra['owner'])

    @property
    def resumed(self) -> bool:
        return 'owner' in self.replay.committed_extra

    def ingest(self, t: dict) -> None:
        """One transition as it came over the wire ({'step', ...}; see transition_to_msg)."""
        if 'first_frame' in t:
            self.commit()   # before this transition is counted: a resume will count it missing
        if self.expected_step is not None and t['step'] != self.expected_step:
            self.missing += max(0, t['step'] - self.expected_step)
        self.expected_step = t['step'] + 1
        if 'first_frame' in t:
            self._start_episode(t['first_frame'], t['first_proprio'])
        elif not self.open_episode:
            self.missing += 1   # its episode's start was lost: cannot be stacked
            return
        self.add(t['action'], t['reward'], t['next_frame'], t['next_proprio'], t['terminal'])

    def drain(self, inbox) -> None:
        """Ingest what a subscription queued (a deque of transition dicts), oldest first."""
        while inbox:
            self.ingest(inbox.popleft())

    def start_episode(self, frame: np.ndarray, proprio: np.ndarray) -> None:
        self.commit()   # everything before this episode is kept whatever happens next
        self._start_episode(frame, proprio)

    def _start_episode(self, frame: np.ndarray, proprio: np.ndarray) -> None:
        self.replay.start_episode(frame, proprio)
        self.episodes += 1
        self.open_episode = True

    def add(self, action, reward, next_frame, next_proprio, terminal: bool) -> None:
        self.replay.add(action, reward, next_frame, next_proprio, terminal)
        self.stored += 1

    def commit(self) -> None:
        """Make the replay and these counters durable (only what is new is written)."""
        if self.replay.files is not None:
            self.replay.commit({'owner': self.state_dict()})

    def may_sample(self, done: int) -> bool:
        """Whether the cap allows a (done + 1)-th batch and the replay holds enough for one."""
        return (done + 1 <= updates_allowed(self.cfg, self.stored)
                and len(self.replay) >= self.cfg.sac.batch_size)

    def sample_due(self) -> bool:
        return self.may_sample(self.sampled)

    def sample(self, done: int):
        """A batch, if may_sample(done); else None."""
        if not self.may_sample(done):
            return None
        cfg = self.cfg
        return self.replay.sample(cfg.sac.batch_size, (cfg.sac.crop_height, cfg.sac.crop_width))

    def stats(self) -> dict:
        # The same names as the learner's stats (learner_stats.json) for the same counts.
        return {'transitions_stored': self.stored, 'transitions_missing': self.missing,
                'episodes': self.episodes, 'replay_size': len(self.replay), 'batches': self.sampled}

    def state_dict(self) -> dict:
        return {'stats': self.stats(), 'expected_step': self.expected_step}

    def load_state_dict(self, state: dict) -> None:
        stats = state['stats']
        self.stored, self.missing = stats['transitions_stored'], stats['transitions_missing']
        self.episodes = stats['episodes']
        self.sampled = int(stats.get('batches', 0))
        self.expected_step = state['expected_step']
        # A resumed run starts a new episode before its next transition.
        self.open_episode = False
