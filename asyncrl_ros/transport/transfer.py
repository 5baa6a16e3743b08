"""Host <-> device copies that stay off a CUDA learner's critical path. No ROS here.

- `HostSnapshot`: the acting weights from the learning device to host memory (for the
  shared-memory WeightStore), copied on a side stream while the next update runs.
- `DeviceBatchLoader`: async2's batches (numpy views of a shared-memory ring slot) to the
  device through pinned memory, with non-blocking copies on a side stream.

On the CPU both are plain: a synchronous copy, and torch.from_numpy views.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch

from asyncrl_ros.agent.sac import BATCH_KEYS


class HostSnapshot:
    """Snapshots of live device tensors (e.g. remote.policy_tensors(agent)) in host memory.

    start() takes a snapshot of the tensors' current values; ready() returns the host copies
    once they are complete, else None. On CUDA, start() enqueues a device-to-device copy on the
    current stream (microseconds, ordered after the update that wrote the weights) and the
    copy to pinned host memory on a side stream, then returns at once: neither the caller nor
    the next update waits for PCIe. On the CPU the copy is done in start().

        snap = HostSnapshot(policy_tensors(agent))
        store = WeightStore.create(name, snap.host)       # same keys, shapes, dtypes (CPU)
        ...                                               # in the update loop:
        snap.start()                                      # False (skipped) if one is in flight
        if (host := snap.ready()) is not None:
            version = store.publish(host)

    The dict from ready() is valid until the next start().
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor]):
        self.keys = list(tensors)
        self.src = [tensors[k].detach() for k in self.keys]  # aliases of the live tensors
        devices = {t.device for t in self.src}
        if len(devices) != 1:
            raise ValueError(f"HostSnapshot: tensors on several devices {sorted(map(str, devices))}")
        self.device = devices.pop()
        self.cuda = self.device.type == 'cuda'
        dst = [torch.empty(t.shape, dtype=t.dtype, pin_memory=self.cuda) for t in self.src]
        self.host = dict(zip(self.keys, dst))
        self._dst = dst
        self.pending = False
        if self.cuda:
            self._stage = [torch.empty_like(t) for t in self.src]
            self._stream = torch.cuda.Stream(self.device)
            self._done = torch.cuda.Event()

    @torch.no_grad()
    def start(self) -> bool:
        """Begin a snapshot; False when the previous one was not yet picked up by ready()."""
        if self.pending:
            return False
        self.pending = True
        if not self.cuda:
            torch._foreach_copy_(self._dst, self.src)
            return True
        # The device-side snapshot frees the live weights for the next update at once; the
        # stage is only rewritten after ready() said its host copy is complete.
        torch._foreach_copy_(self._stage, self.src)
        self._stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self._stream):
            for d, s in zip(self._dst, self._stage):
                d.copy_(s, non_blocking=True)
            self._done.record(self._stream)
        return True

    def ready(self) -> dict[str, torch.Tensor] | None:
        """The host copies of the last start(), once complete (once per start), else None."""
        if not self.pending or (self.cuda and not self._done.query()):
            return None
        self.pending = False
        return self.host

    def wait(self) -> dict[str, torch.Tensor] | None:
        """ready(), blocking until the copy in flight (if any) is complete (e.g. at shutdown)."""
        if self.pending and self.cuda:
            self._done.synchronize()
        return self.ready()


class DeviceBatchLoader:
    """Batches of numpy arrays -> tensors on `device` for SACAgent.update.

    CUDA: each batch is copied (host memcpy) into pinned buffers, so the caller may release
    the ring slot as soon as this returns, then to the device by non-blocking copies on a side
    stream; the current stream waits for them on an event (no host sync), so the update is
    ordered after its batch and the copy overlaps compute already queued. `slots` buffer sets
    alternate, so a batch can be loaded while the previous one is still in use.
    CPU: torch.from_numpy views, no copy (the arrays must outlive the update, as before).
    """

    def __init__(self, device: str | torch.device, keys: Iterable[str] | None = BATCH_KEYS, slots: int = 2):
        self.device = torch.device(device)
        self.keys = None if keys is None else tuple(keys)
        self.cuda = self.device.type == 'cuda'
        self._slots: list[dict | None] = [None] * slots
        self._copied: list[torch.cuda.Event | None] = [None] * slots
        self._turn = 0
        if self.cuda:
            self._stream = torch.cuda.Stream(self.device)

    def _buffers(self, i: int, batch: Mapping[str, np.ndarray]) -> dict:
        """Set i's (pinned host, device) buffer pairs, (re)allocated when the layout changes."""
        bufs = self._slots[i]
        if bufs is None or {k: (tuple(h.shape), h.numpy().dtype) for k, (h, _) in bufs.items()} != \
                {k: (np.shape(v), np.asarray(v).dtype) for k, v in batch.items()}:
            bufs = {}
            for k, v in batch.items():
                host = torch.from_numpy(np.empty_like(v)).pin_memory()
                bufs[k] = (host, torch.empty_like(host, device=self.device))
            self._slots[i] = bufs
        return bufs

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
        if self.keys is not None:
            batch = {k: batch[k] for k in self.keys}
        if not self.cuda:
            return {k: torch.from_numpy(np.asarray(v)) for k, v in batch.items()}
        i = self._turn
        self._turn = (i + 1) % len(self._slots)
        if self._copied[i] is not None:
            self._copied[i].synchronize()   # this set's last upload is done: its pinned memory is free
        bufs = self._buffers(i, batch)
        for k, v in batch.items():
            bufs[k][0].numpy()[...] = v
        # Whatever the compute stream has queued so far (the updates that read this set's
        # device buffers last time) runs before they are overwritten.
        self._stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self._stream):
            for host, dev in bufs.values():
                dev.copy_(host, non_blocking=True)
            done = self._copied[i] = torch.cuda.Event()
            done.record(self._stream)
        torch.cuda.current_stream(self.device).wait_event(done)
        return {k: dev for k, (_, dev) in bufs.items()}
