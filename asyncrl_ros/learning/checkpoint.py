"""One-file checkpoints of a training run (agent, replay, counters), written atomically."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from asyncrl_ros.transport.atomic_file import write_atomically

FORMAT = "asyncrl_ros.learning.checkpoint/1"


def _map_arrays(tree, fn_type, fn):
    if isinstance(tree, dict):
        return {k: _map_arrays(v, fn_type, fn) for k, v in tree.items()}
    return fn(tree) if isinstance(tree, fn_type) else tree


def save_checkpoint(path: str | os.PathLike, agent, replay=None, extra: dict | None = None) -> None:
    """Write agent.state_dict(), replay.state_dict() and `extra` to `path`; a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "agent": None if agent is None else agent.state_dict(),
        # Tensors over the numpy buffers: torch.save streams them, pickling ndarrays would copy GBs.
        "replay": None if replay is None else _map_arrays(replay.state_dict(), np.ndarray, torch.from_numpy),
        "extra": dict(extra or {}),
    }
    write_atomically(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint -> {'format', 'agent', 'replay' (numpy arrays) or None, 'extra'}."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        # weights_only=False: these are files this package wrote itself, and `extra` may hold numpy
        # RNG states (ndarrays) that the weights-only unpickler rejects. Never load untrusted files.
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:
        raise ValueError(f"checkpoint {path} is truncated or corrupt: {type(e).__name__}: {e}") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an asyncrl_ros checkpoint (expected format {FORMAT!r})")
    if payload["replay"] is not None:
        payload["replay"] = _map_arrays(payload["replay"], torch.Tensor, lambda t: t.numpy())
    return payload


def restore_checkpoint(path: str | os.PathLike, agent, replay=None) -> dict:
    """Load `path` into agent (and replay, if given); return the `extra` dict."""
    payload = load_checkpoint(path)
    agent.load_state_dict(payload["agent"])
    if replay is not None:
        if payload["replay"] is None:
            raise ValueError(f"checkpoint {path} holds no replay buffer")
        replay.load_state_dict(payload["replay"])
    return payload["extra"]
