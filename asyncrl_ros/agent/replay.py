"""Replay buffer that stores every camera frame once and rebuilds frame stacks by index.

Frames live in a ring indexed by an absolute frame counter t (slot = t % capacity). Frame t is
either the first frame of an episode or the next frame of the transition (t-1 -> t), whose action,
reward and terminal flag are stored beside it. A stack ending at frame t is frames
t-frame_stack+1 .. t (oldest first), with indices before the episode's first frame clamped to it.

With a `folder`, the arrays are memory-mapped files there (replay_files.py): `commit()` makes
what was written durable at the cost of what is new, and `resume=True` maps a committed
replay back, losing at most what was written after its last commit.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from asyncrl_ros.agent.augment import crop_at
from asyncrl_ros.agent.replay_files import ReplayFiles, replay_signature


class Crops(NamedTuple):
    """Random-crop offsets of one batch: obs and next obs are cropped independently."""
    h: int
    w: int
    obs: tuple[np.ndarray, np.ndarray]   # (ys, xs): top-left corner of each row's crop
    next: tuple[np.ndarray, np.ndarray]


class FrameReplay:
    """Uniform replay of pixel transitions; each frame is held once, not 2*frame_stack times."""

    _ARRAYS = ("frames", "proprio", "action", "reward", "terminal", "is_first", "episode_start")

    def __init__(self, capacity: int, frame_shape: tuple[int, int, int], proprio_dim: int,
                 action_dim: int, frame_stack: int = 3, seed: int = 0,
                 folder=None, resume: bool = False):
        if capacity <= frame_stack + 1:
            raise ValueError(f"capacity {capacity} must exceed frame_stack + 1 = {frame_stack + 1}")
        if frame_stack < 1 or len(frame_shape) != 3 or min(frame_shape) <= 0:
            raise ValueError(f"bad frame_stack={frame_stack} or frame_shape={frame_shape}")
        self.capacity, self.frame_stack = int(capacity), int(frame_stack)
        self.frame_shape = tuple(int(s) for s in frame_shape)
        self.proprio_dim, self.action_dim = int(proprio_dim), int(action_dim)
        self.files = None if folder is None else ReplayFiles(folder, self._signature(), resume)
        # Frames written between commits may overwrite committed ones (the ring wraps); the
        # files say beforehand how far that can reach (see _resume). Never more than this.
        # Each reservation is one small synchronous write (every 64 frames once wrapped).
        self._reserve_frames = max(1, min(64, self.capacity // 10))
        new = self._array
        self.frames = self._new_frames()
        self.proprio = new("proprio", (capacity, proprio_dim), np.float32)  # proprioception at frame t
        self.action = new("action", (capacity, action_dim), np.float32)     # transition (t-1 -> t)
        self.reward = new("reward", (capacity,), np.float32)
        self.terminal = new("terminal", (capacity,), bool)
        self.is_first = new("is_first", (capacity,), bool)
        self.episode_start = new("episode_start", (capacity,), np.int64)  # abs. index of its episode's start
        self.total = 0               # frames ever written = absolute index of the next frame
        self._floor = 0              # frames below this are gone (overwritten after a commit, then a crash)
        self._open_episode = -1      # absolute start of the episode that add() continues; -1: none
        self._num_first = 0          # episode-first frames currently stored
        self.rng = np.random.default_rng(seed)
        self.committed_extra: dict = {}   # what the owner committed beside the counters
        if self.files is not None and self.files.meta is not None:
            self._resume(self.files.meta)

    def _signature(self) -> dict:
        return replay_signature(self.capacity, self.frame_shape, self.proprio_dim,
                                self.action_dim, self.frame_stack)

    def _array(self, name: str, shape: tuple, dtype) -> np.ndarray:
        if self.files is not None:
            return self.files.array(name, shape, dtype)
        # np.zeros maps pages lazily, so a large, mostly empty buffer costs little memory.
        return np.zeros(shape, dtype)

    # ----------------------------------------------------------------- writing
    def _check(self, frame: np.ndarray, proprio: np.ndarray) -> None:
        if frame.dtype != np.uint8 or tuple(frame.shape) != self.frame_shape:
            raise ValueError(f"frame must be uint8 {self.frame_shape}, got {frame.dtype} {frame.shape}")
        if np.size(proprio) != self.proprio_dim:
            raise ValueError(f"proprio has {np.size(proprio)} values, expected {self.proprio_dim}")

    def _write(self, frame, proprio, action, reward, terminal, first) -> None:
        if (self.files is not None and self.total >= self.capacity
                and self.total >= self.files.reserved_until):
            self.files.reserve(self.total + self._reserve_frames)
        slot = self.total % self.capacity
        overwritten = self.total - self.capacity
        if overwritten >= max(0, self._floor) and self.is_first[slot]:
            self._num_first -= 1
        self.proprio[slot] = np.ravel(proprio)
        self.action[slot] = action
        self.reward[slot] = reward
        self.terminal[slot] = terminal
        self.is_first[slot] = first
        self.episode_start[slot] = self.total if first else self._open_episode
        self._store(slot, frame)
        self._num_first += bool(first)
        self.total += 1

    def start_episode(self, frame: np.ndarray, proprio: np.ndarray) -> None:
        """Register the first observation of a new episode (ends any open one)."""
        self._check(frame, proprio)
        self._open_episode = self.total
        self._write(frame, proprio, 0.0, 0.0, False, True)

    def add(self, action: np.ndarray, reward: float, next_frame: np.ndarray,
            next_proprio: np.ndarray, terminal: bool) -> None:
        """Append one transition to the open episode. terminal=False for time-limit ends (bootstrap)."""
        if self._open_episode < 0:
            raise ValueError("add() needs an open episode: call start_episode() first "
                             "(also after a terminal transition)")
        self._check(next_frame, next_proprio)
        if np.size(action) != self.action_dim:
            raise ValueError(f"action has {np.size(action)} values, expected {self.action_dim}")
        self._write(next_frame, next_proprio, np.ravel(action), reward, bool(terminal), False)
        if terminal:
            self._open_episode = -1

    # ---------------------------------------------------------------- sampling
    @property
    def _oldest(self) -> int:
        return max(0, self.total - self.capacity, self._floor)

    def _valid(self, t: np.ndarray) -> np.ndarray:
        """Transitions ending at frame t whose two stacks use only frames still stored."""
        slots = t % self.capacity
        oldest_needed = np.maximum(t - self.frame_stack, self.episode_start[slots])
        return ~self.is_first[slots] & (oldest_needed >= self._oldest)

    def __len__(self) -> int:
        """Number of sampleable transitions."""
        stored = self.total - self._oldest
        # Only the first frame_stack stored frames can have stacks reaching overwritten frames.
        head = np.arange(self._oldest, min(self._oldest + self.frame_stack, self.total))
        lost = np.count_nonzero(~self.is_first[head % self.capacity] & ~self._valid(head))
        return stored - self._num_first - lost

    def _sample_indices(self, batch_size: int) -> np.ndarray:
        n = len(self)
        if n == 0:
            raise ValueError("cannot sample: the replay holds no complete transition yet")
        stored, chosen, have = self.total - self._oldest, [], 0
        while have < batch_size:  # rejection sampling is uniform over the valid transitions
            draw = int((batch_size - have) * stored / n * 1.2) + 8
            t = self.rng.integers(self._oldest, self.total, size=draw)
            t = t[self._valid(t)]
            chosen.append(t)
            have += len(t)
        return np.concatenate(chosen)[:batch_size]

    def _stack_index(self, t: np.ndarray) -> np.ndarray:
        """(B, frame_stack + 1) absolute frame indices: obs stack = [:, :-1], next-obs stack = [:, 1:]."""
        idx = t[:, None] + np.arange(-self.frame_stack, 1)
        return np.maximum(idx, self.episode_start[t % self.capacity][:, None])

    def draw(self, batch_size: int, crop_hw: tuple[int, int] | None = None) -> tuple[np.ndarray, Crops | None]:
        """The random part of sampling: transition indices (absolute frame t of each next obs)
        and crop offsets. Every storage (host, device) samples through this."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        _, h, w = self.frame_shape
        if crop_hw is not None and not (0 < crop_hw[0] <= h and 0 < crop_hw[1] <= w):
            raise ValueError(f"crop_hw {crop_hw} does not fit in frames of {self.frame_shape[1:]}")
        t = self._sample_indices(batch_size)
        if crop_hw is None:
            return t, None
        ch, cw = int(crop_hw[0]), int(crop_hw[1])
        ys = lambda: self.rng.integers(0, h - ch + 1, size=batch_size)  # noqa: E731
        xs = lambda: self.rng.integers(0, w - cw + 1, size=batch_size)  # noqa: E731
        obs = ys(), xs()   # in this order: the RNG stream of earlier versions
        return t, Crops(ch, cw, obs, (ys(), xs()))

    def _slots(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ring slots of the (B, frame_stack + 1) frames, the obs (t - 1) and the next obs (t)."""
        return self._stack_index(t) % self.capacity, (t - 1) % self.capacity, t % self.capacity

    def _images(self, slots: np.ndarray, crops: Crops | None, yx) -> np.ndarray:
        images = self.frames[slots] if crops is None else crop_at(self.frames, slots, *yx, crops.h, crops.w)
        return images.reshape(len(slots), -1, *images.shape[-2:])

    def batch_at(self, t: np.ndarray, crops: Crops | None = None) -> dict[str, np.ndarray]:
        """The batch of transitions ending at frames t, cropped at `crops` (see `draw`)."""
        stacks, prev, now = self._slots(t)
        obs_yx, next_yx = (None, None) if crops is None else (crops.obs, crops.next)
        return {
            "obs_image": self._images(stacks[:, :-1], crops, obs_yx),
            "obs_proprio": self.proprio[prev], "action": self.action[now], "reward": self.reward[now],
            "next_obs_image": self._images(stacks[:, 1:], crops, next_yx),
            "next_obs_proprio": self.proprio[now], "not_done": (~self.terminal[now]).astype(np.float32),
        }

    def sample(self, batch_size: int, crop_hw: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
        """Batch for SACAgent.update; obs and next obs get independent random crops (none if crop_hw is None)."""
        return self.batch_at(*self.draw(batch_size, crop_hw))

    def stacked_obs(self, t: int) -> np.ndarray:
        """Uncropped (3*frame_stack, H, W) stack ending at absolute frame t (debugging, tests)."""
        if not self._oldest <= t < self.total:
            raise ValueError(f"frame {t} is not stored (stored: {self._oldest}..{self.total - 1})")
        idx = self._stack_index(np.array([t]))[:, 1:]
        if idx.min() < self._oldest:
            raise ValueError(f"the stack ending at frame {t} reaches overwritten frames")
        return self._frames_at(idx[0] % self.capacity).reshape(-1, *self.frame_shape[1:])

    # ---------------------------------------------- frame storage (DeviceFrameReplay overrides)
    def _new_frames(self):
        return self._array("frames", (self.capacity, *self.frame_shape), np.uint8)

    def _store(self, slot: int, frame: np.ndarray) -> None:
        self.frames[slot] = frame

    def _frames_at(self, slots: np.ndarray) -> np.ndarray:
        return self.frames[slots]

    def _frames_head(self, stored: int) -> np.ndarray:
        return self.frames[:stored]  # a view: saving a large replay must not double it

    def _load_frames(self, frames: np.ndarray) -> None:
        self.frames[:len(frames)] = frames

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in self._ARRAYS)

    # --------------------------------------------------------------- state I/O
    def state_dict(self) -> dict:
        """Stored part of the ring as numpy arrays (views), counters and RNG state."""
        stored = min(self.total, self.capacity)
        state = {name: getattr(self, name)[:stored] for name in self._ARRAYS if name != "frames"}
        state["frames"] = self._frames_head(stored)
        state.update(self._counters(), capacity=self.capacity, frame_shape=self.frame_shape,
                     proprio_dim=self.proprio_dim, action_dim=self.action_dim,
                     frame_stack=self.frame_stack)
        return state

    def _counters(self) -> dict:
        return {"total": self.total, "floor": self._floor, "open_episode": self._open_episode,
                "rng": self.rng.bit_generator.state}

    def _set_counters(self, state: dict) -> None:
        self.total, self._open_episode = int(state["total"]), int(state["open_episode"])
        self._floor = int(state.get("floor", 0))
        self.rng.bit_generator.state = state["rng"]
        live = np.arange(self._oldest, self.total) % self.capacity
        self._num_first = int(np.count_nonzero(self.is_first[live]))

    # ------------------------------------------------------ files (folder=...)
    def commit(self, extra: dict | None = None) -> None:
        """Make every row written so far durable, with the counters and `extra` (the owner's
        own counters, given back as `committed_extra` on resume). Costs what is new."""
        if self.files is None:
            raise ValueError("commit() needs a replay created with a folder")
        self.files.commit({**self._counters(), "extra": dict(extra or {})},
                          reserved_until=self.total + self._reserve_frames)
        self.committed_extra = dict(extra or {})

    def _resume(self, meta: dict) -> None:
        """Take the committed counters. Rows written after that commit are beyond `total` and
        ignored; once the ring has wrapped they may also have overwritten the oldest committed
        frames, up to the frame `reserved_until` announced before writing them (on disk
        before any such row, whatever reached the disk after): those are cut off below
        `_floor`. At most `_reserve_frames` of the oldest frames, the next to go anyway."""
        floor = max(int(meta.get("floor", 0)), int(meta["reserved_until"]) - self.capacity)
        meta = {**meta, "floor": floor}
        self._load_frames_from_files(min(int(meta["total"]), self.capacity))
        self._set_counters(meta)
        self.committed_extra = dict(meta.get("extra", {}))

    def _load_frames_from_files(self, stored: int) -> None:
        """Host frames are the mapping itself; a device replay copies them over (override)."""

    def load_state_dict(self, state: dict) -> None:
        for key in ("capacity", "frame_shape", "proprio_dim", "action_dim", "frame_stack"):
            mine, theirs = getattr(self, key), state[key]
            if tuple(np.atleast_1d(mine)) != tuple(np.atleast_1d(theirs)):
                raise ValueError(f"replay state has {key}={theirs}, this buffer has {mine}")
        total = int(state["total"])
        stored = min(total, self.capacity)
        for name in self._ARRAYS:
            if len(state[name]) != stored:
                raise ValueError(f"replay state array {name!r} has {len(state[name])} rows, expected {stored}")
            if name == "frames":
                self._load_frames(state[name])
            else:
                getattr(self, name)[:stored] = state[name]
        self._set_counters(state)
