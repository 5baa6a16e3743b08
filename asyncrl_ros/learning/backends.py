"""Where learning happens, seen from the policy's action cycle.

The policy node talks to one of these backends and never knows the mode:
`InProcessLearner` is Seq-SAC (sync): store, sample and update in the policy's own
turn, so a slow update stretches the cycle exactly as on a real robot.
"""
from __future__ import annotations

import time
from collections import deque

import numpy as np
import torch

from asyncrl_ros.learning.batch_sources import replay_owner
from asyncrl_ros.run.config import ExperimentConfig
from asyncrl_ros.learning.remote import make_agent, updates_allowed


class FrameStacker:
    """The last k frames (C,H,W) as one (k*C,H,W) array; an episode starts with k copies."""

    def __init__(self, k: int):
        self.frames: deque = deque(maxlen=k)

    def reset(self, frame: np.ndarray) -> None:
        for _ in range(self.frames.maxlen):
            self.frames.append(frame)

    def push(self, frame: np.ndarray) -> None:
        self.frames.append(frame)

    def stacked(self) -> np.ndarray:
        return np.concatenate(list(self.frames), axis=0)


class InProcessLearner:
    """Replay and SAC in the acting process (sync mode)."""

    def __init__(self, cfg: ExperimentConfig, proprio_dim: int, action_dim: int,
                 run_dir, resume: bool = False):
        self.cfg = cfg
        torch.set_num_threads(cfg.sac.torch_threads)
        # On a GPU the replay lives there too: sampling is a gather on the device.
        self.agent = make_agent(cfg, proprio_dim, action_dim)
        self.owner = replay_owner(cfg, run_dir, proprio_dim, action_dim, resume, self.agent.device)
        self.replay = self.owner.replay
        # Steps counted for the cap, restored with the networks (the replay may hold a few
        # episodes more after a crash: no burst of updates to catch up on them).
        self.steps = 0
        self.last_metrics: dict = {}

    @property
    def updates(self) -> int:
        return self.agent.num_updates   # one count: the agent's, saved with its state

    @property
    def weights_version(self) -> int:
        # In-process, the acting weights are always the newest.
        return self.updates

    def act(self, stacked: np.ndarray, proprio: np.ndarray, explore: bool = True) -> np.ndarray:
        return self.agent.act(stacked, proprio, deterministic=not explore)

    def waiting_for(self) -> str | None:
        return None   # the replay is ours

    def start_episode(self, frame: np.ndarray, proprio: np.ndarray) -> None:
        self.owner.start_episode(frame, proprio)   # commits the episodes before it

    def add(self, action, reward, next_frame, next_proprio, terminal: bool) -> None:
        self.owner.add(action, reward, next_frame, next_proprio, terminal)
        self.steps += 1

    def learn(self) -> dict:
        """Sample and update as the cap allows; returns component times in ms."""
        timings = {'sampling_ms': 0.0, 'update_ms': 0.0}
        cfg = self.cfg
        if len(self.replay) < cfg.sac.batch_size:
            return timings
        while self.updates + 1 <= updates_allowed(cfg, self.steps):
            t0 = time.perf_counter()
            batch = self.replay.sample(cfg.sac.batch_size, (cfg.sac.crop_height, cfg.sac.crop_width))
            t1 = time.perf_counter()
            self.last_metrics = self.agent.update(batch)
            t2 = time.perf_counter()
            timings['sampling_ms'] += (t1 - t0) * 1e3
            timings['update_ms'] += (t2 - t1) * 1e3
        return timings

    def poll_weights(self, step: int) -> None:
        """In-process the acting weights are always the newest: nothing to pick up."""

    swap_ms = 0.0

    def age(self, step: int) -> tuple[int, float]:
        return 0, 0.0

    @property
    def sent(self) -> int:
        return self.steps

    def on_learner_status(self, updates: int, stored: int, missing: int) -> None:
        """No other learner exists in sync mode."""

    def close(self) -> None:
        pass

    def checkpoint_parts(self):
        self.owner.commit()   # the replay keeps itself in its folder, beside the checkpoint
        return self.agent, None

    def restore_parts(self, state: dict) -> None:
        self.agent.load_state_dict(state['agent'])   # the replay resumed from its folder

    def state_dict(self) -> dict:
        return {'steps': self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state['steps'])   # updates: the agent's own count, restored with it
