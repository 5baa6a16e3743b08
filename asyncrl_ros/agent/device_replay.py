"""FrameReplay with its frames on a torch device: the GPU-resident replay of a CUDA learner.

Frames are stored once, as uint8, on the device; so are the per-frame rows a batch needs
(proprioception, action, reward, not-done) in one float32 table. Sampling draws indices and
crop offsets exactly as FrameReplay does (same code, same host RNG), uploads them (a few KB)
and gathers + crops on the device: no frame crosses to the host per batch. Episode
bookkeeping stays in FrameReplay's host arrays, so state_dict() is FrameReplay's (numpy on the
way out) and checkpoints move freely between the two.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from asyncrl_ros.agent.augment import crop_at_tensor
from asyncrl_ros.agent.device import resolve_device
from asyncrl_ros.agent.replay import Crops, FrameReplay

GiB = 2 ** 30
# Device memory left free for the networks, optimizer state and the update's activations
# (the hi-res update needs a few GiB at batch 128).
DEFAULT_RESERVE_BYTES = 4 * GiB


def replay_nbytes(capacity: int, frame_shape: tuple[int, int, int], proprio_dim: int, action_dim: int) -> int:
    """Device bytes of a DeviceFrameReplay: the frames plus the row table."""
    return capacity * (int(np.prod(frame_shape)) + 4 * (proprio_dim + action_dim + 2))


def check_fits(need: int, device: torch.device | str, reserve: int = DEFAULT_RESERVE_BYTES,
               mem_get_info: Callable | None = None, what: str = 'the replay') -> None:
    """Raise one clear line when `need` bytes (plus `reserve`) exceed the CUDA device's free memory."""
    device = torch.device(device)
    if device.type != 'cuda':
        return   # host memory is mapped lazily, as FrameReplay's
    free, total = (mem_get_info or torch.cuda.mem_get_info)(device)
    if need + reserve > free:
        raise ValueError(
            f"{what} needs {need / GiB:.1f} GiB on {device}, which has {free / GiB:.1f} GiB free "
            f"of {total / GiB:.1f} GiB ({reserve / GiB:.1f} GiB kept for the networks): lower "
            f"sac.replay_capacity or set sac.device: cpu")


def check_replay_fits(cfg, proprio_dim: int, action_dim: int, mem_get_info: Callable | None = None) -> None:
    """For the bringup, before any node starts: a learner that owns its replay (sync, async1)
    on CUDA keeps it there, and it must fit. (Asks the driver, so this process gets a CUDA
    context: call it in a short-lived process if that matters.)"""
    from asyncrl_ros.learning.modes import MODES
    device = resolve_device(cfg.sac.device)[0]
    # The replay_sampler (async2) keeps a host replay; a policy or learner owner, the device's.
    if MODES[cfg.mode].replay_owner == 'replay_sampler' or device.type != 'cuda':
        return
    frame = (3, cfg.image.height, cfg.image.width)
    check_fits(replay_nbytes(cfg.sac.replay_capacity, frame, proprio_dim, action_dim), device,
               mem_get_info=mem_get_info,
               what=f"the replay ({cfg.sac.replay_capacity} frames of {frame[1]}x{frame[2]})")


class DeviceFrameReplay(FrameReplay):
    """FrameReplay whose samples are device tensors that SACAgent.update takes as they are."""

    def __init__(self, capacity: int, frame_shape: tuple[int, int, int], proprio_dim: int,
                 action_dim: int, frame_stack: int = 3, seed: int = 0,
                 device: str | torch.device = 'cuda', reserve_bytes: int = DEFAULT_RESERVE_BYTES,
                 mem_get_info: Callable | None = None, folder=None, resume: bool = False):
        self.device = torch.device(device)
        check_fits(replay_nbytes(capacity, frame_shape, proprio_dim, action_dim), self.device,
                   reserve_bytes, mem_get_info,
                   f"the replay ({capacity} frames of {frame_shape[1]}x{frame_shape[2]})")
        # The row table is needed by _store, which a resume does not call.
        self._cols = np.cumsum([0, proprio_dim, action_dim, 1, 1])
        self.table = torch.zeros(capacity, int(self._cols[-1]), dtype=torch.float32, device=self.device)
        super().__init__(capacity, frame_shape, proprio_dim, action_dim, frame_stack, seed,
                         folder, resume)

    # ----------------------------------------------------------------- storage
    def _new_frames(self) -> torch.Tensor:
        # With a folder, the frames are also kept in its file: that is what a resume reads.
        shape = (self.capacity, *self.frame_shape)
        self.frames_file = None if self.files is None else self.files.array('frames', shape, np.uint8)
        # Never-written rows are never sampled, so no need to clear them.
        return torch.empty(*shape, dtype=torch.uint8, device=self.device)

    def _row(self, slots) -> np.ndarray:
        return np.concatenate([self.proprio[slots], self.action[slots], self.reward[slots, None],
                               (~self.terminal[slots, None]).astype(np.float32)], axis=1)

    def _store(self, slot: int, frame: np.ndarray) -> None:
        if self.frames_file is not None:
            self.frames_file[slot] = frame
        self.frames[slot].copy_(torch.from_numpy(np.ascontiguousarray(frame)))
        self.table[slot].copy_(torch.from_numpy(self._row([slot])[0]))

    def _frames_at(self, slots: np.ndarray) -> np.ndarray:
        return self.frames[torch.as_tensor(slots, device=self.device)].cpu().numpy()

    def _frames_head(self, stored: int) -> np.ndarray:
        return self.frames[:stored].cpu().numpy()

    def _load_frames(self, frames: np.ndarray) -> None:
        if self.frames_file is not None:
            self.frames_file[:len(frames)] = frames
        self.frames[:len(frames)].copy_(torch.from_numpy(np.ascontiguousarray(frames)))

    def _load_frames_from_files(self, stored: int) -> None:
        chunk = 1024   # bounded host memory whatever the replay's size
        for i in range(0, stored, chunk):
            rows = np.ascontiguousarray(self.frames_file[i:min(i + chunk, stored)])
            self.frames[i:i + len(rows)].copy_(torch.from_numpy(rows))

    def _set_counters(self, state: dict) -> None:
        super()._set_counters(state)
        stored = min(self.total, self.capacity)
        self.table[:stored].copy_(torch.from_numpy(self._row(np.arange(stored))))

    @property
    def nbytes(self) -> int:
        return super().nbytes + self.table.nbytes

    # ---------------------------------------------------------------- sampling
    def batch_at(self, t: np.ndarray, crops: Crops | None = None) -> dict[str, torch.Tensor]:
        """FrameReplay.batch_at, gathered and cropped on the device."""
        stacks, prev, now = self._slots(t)
        b, k = stacks.shape
        host = [stacks.ravel(), prev, now] + ([] if crops is None else [*crops.obs, *crops.next])
        idx = torch.from_numpy(np.concatenate(host).astype(np.int64)).to(self.device)  # one upload
        parts = torch.split(idx, [b * k, b, b] + ([] if crops is None else [b] * 4))
        stacks, prev, now = parts[0].view(b, k), parts[1], parts[2]

        def images(slots, yx):
            if crops is None:
                out = self.frames[slots]
            else:
                out = crop_at_tensor(self.frames, slots, *yx, crops.h, crops.w)
            return out.reshape(b, -1, *out.shape[-2:])

        p, a, r, d, _ = self._cols
        before, after = self.table[prev], self.table[now]
        return {
            "obs_image": images(stacks[:, :-1], parts[3:5]),
            "obs_proprio": before[:, p:a], "action": after[:, a:r], "reward": after[:, r],
            "next_obs_image": images(stacks[:, 1:], parts[5:7]),
            "next_obs_proprio": after[:, p:a], "not_done": after[:, d],
        }
