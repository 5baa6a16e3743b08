"""Where a learner's batches come from, and where its weights go: the async modes' wiring
as plain objects (no ROS), so that no node imports another.

- OwnReplayBatches: async1, the learner owns the replay and samples from it;
- RingBatches: async2, batches sampled and cropped by replay_sampler, read in place from
  its shared-memory ring;
- ShmWeightsSink: versioned weights for policies on this machine.
"""
from __future__ import annotations

import time
from collections import deque
from pathlib import Path

import numpy as np

from asyncrl_ros.learning.remote import ReplayOwner, batch_spec
from asyncrl_ros.agent.replay_files import REPLAY_FOLDER
from asyncrl_ros.transport.shm_ring import BatchRing, unlink_stale
from asyncrl_ros.transport.shm_weights import WeightStore


def replay_owner(cfg, run_dir: Path, proprio_dim: int, action_dim: int, resume: bool,
                 device=None) -> ReplayOwner:
    """The run's replay, kept in its folder in the run folder (resumed from it if asked)."""
    return ReplayOwner(cfg, proprio_dim, action_dim, device=device,
                       folder=Path(run_dir) / REPLAY_FOLDER, resume=resume)


def ring_spec(cfg, proprio_dim: int, action_dim: int) -> dict:
    # Plus the sampler's transition counts at sampling time, so the learner can report them.
    return {**batch_spec(cfg, proprio_dim, action_dim), 'counts': ((2,), np.int64)}


class OwnReplayBatches:
    """async1: transitions arrive in `inbox` (a subscription fills it); sample from our replay."""

    def __init__(self, owner: ReplayOwner, inbox: deque):
        self.owner, self.inbox = owner, inbox

    def next_batch(self, updates: int, timeout: float):
        self.owner.drain(self.inbox)
        batch = self.owner.sample(updates)
        if batch is None:
            time.sleep(timeout)
        return batch

    def release(self) -> None:
        pass

    def stored_missing(self) -> tuple[int, int]:
        return self.owner.stored, self.owner.missing

    def save(self) -> None:
        self.owner.drain(self.inbox)
        self.owner.commit()

    def describe(self) -> str:
        return (f'replay of {len(self.owner.replay)} transitions' if self.owner.resumed
                else 'no committed replay: an empty replay')

    def close(self) -> None:
        pass


class RingBatches:
    """async2: batches sampled and cropped by replay_sampler, read in place from shared memory."""

    def __init__(self, cfg, proprio_dim: int, action_dim: int, name: str):
        self.spec = ring_spec(cfg, proprio_dim, action_dim)
        self.cfg, self.name = cfg, name
        self.ring: BatchRing | None = None
        self.retired: list[BatchRing] = []   # rings of a dead sampler (views may live on)
        self.stored = self.missing = 0
        self.next_check = 0.0

    def next_batch(self, updates: int, timeout: float):
        if self.ring is None:
            try:
                self.ring = BatchRing.attach(self.name, self.spec, self.cfg.asynchronous.ring_slots)
            except (FileNotFoundError, ValueError):   # not there, or its header not yet
                time.sleep(timeout)
                return None
        views = self.ring.acquire_read(timeout=timeout)
        if views is None:
            if time.monotonic() >= self.next_check:
                self.next_check = time.monotonic() + 0.5
                if self.ring.replaced():   # the sampler was restarted: its new ring
                    self.retired.append(self.ring)
                    self.ring = None
            return None
        self.stored, self.missing = int(views['counts'][0]), int(views['counts'][1])
        return views

    def release(self) -> None:
        self.ring.release_read()

    def stored_missing(self) -> tuple[int, int]:
        return self.stored, self.missing

    def save(self) -> None:
        pass   # the sampler keeps the replay

    def describe(self) -> str:
        return 'batches from replay_sampler'

    def close(self) -> None:
        if self.ring is not None:
            self.ring.close()


class ShmWeightsSink:
    def __init__(self, name: str, example: dict):
        unlink_stale(name)   # a killed learner's (policies still mapping it re-attach)
        self.store = WeightStore.create(name, example)

    def publish(self, tensors: dict) -> int:
        return self.store.publish(tensors)

    def close(self) -> None:
        self.store.close()
        self.store.unlink()
