"""Where learning runs and in which precision: `sac.device` and `sac.precision` resolved.

`auto` picks CUDA when there is one, else the CPU; bf16 autocast where the hardware does
bf16 natively (a GPU with bf16, a CPU with AVX-512 BF16 or AMX), else fp32: emulated bf16 on
other CPUs is slower than fp32. Every choice `auto` makes comes with a one-line note to log.
No ROS here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

# torch is imported where it is needed: the config (and so every node, also those that never
# learn) imports this module, and torch costs more than a second of start-up.

PRECISIONS = ('auto', 'fp32', 'bf16')
_DEVICE_RE = re.compile(r'^(auto|cpu|cuda(:\d+)?)$')


def check_device(key: str, spec: str) -> None:
    """Reject an unknown device and a CUDA device this machine does not have (one line)."""
    if not isinstance(spec, str) or not _DEVICE_RE.match(spec):
        raise ValueError(f"unknown {key} {spec!r} (choose one of auto, cpu, cuda, cuda:N)")
    if spec.startswith('cuda'):
        import torch
        if not torch.cuda.is_available():
            raise ValueError(f"'{key}' is {spec!r} but CUDA is not available here "
                             f"(torch {torch.__version__}, {_no_cuda_reason()}); "
                             f"use {key}: auto or cpu")
        index = int(spec.split(':')[1]) if ':' in spec else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"'{key}' is {spec!r} but this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)")


def check_precision(key: str, spec: str) -> None:
    if spec not in PRECISIONS:
        raise ValueError(f"unknown {key} {spec!r} (choose one of {', '.join(PRECISIONS)})")


def _no_cuda_reason() -> str:
    import torch
    return 'a CPU-only build' if torch.version.cuda is None else 'no GPU found'


@lru_cache(maxsize=1)
def cpu_bf16_flags() -> tuple[str, ...]:
    """The CPU's native-bf16 feature flags (AVX-512 BF16, AMX), from /proc/cpuinfo.

    torch has no public probe: mkldnn's `_is_mkldnn_bf16_supported()` is True on any AVX-512
    CPU, where bf16 is emulated and slower than fp32. Elsewhere than Linux: none found.
    """
    try:
        text = Path('/proc/cpuinfo').read_text()
    except OSError:
        return ()
    flags = next((line.split(':', 1)[1].split() for line in text.splitlines()
                  if line.startswith('flags')), [])
    return tuple(f for f in ('avx512_bf16', 'amx_bf16') if f in flags)


def resolve_device(spec: str, key: str = 'sac.device') -> tuple[torch.device, str]:
    """(device, note): `auto` becomes cuda when available, else cpu, and says so."""
    import torch
    check_device(key, spec)
    if spec == 'cpu':
        return torch.device('cpu'), ''
    if spec != 'auto':  # 'cuda' means cuda:0, so that equal devices compare equal
        return torch.device('cuda', int(spec.split(':')[1]) if ':' in spec else 0), ''
    if torch.cuda.is_available():
        return torch.device('cuda', 0), f"{key} auto: CUDA ({torch.cuda.get_device_name(0)})"
    return torch.device('cpu'), f"{key} auto: no CUDA ({_no_cuda_reason()}), using the CPU"


def resolve_precision(spec: str, device: torch.device, key: str = 'sac.precision') -> tuple[bool, str]:
    """(bf16, note) for learning on `device`."""
    import torch
    check_precision(key, spec)
    if spec != 'auto':
        return spec == 'bf16', ''
    if device.type == 'cuda':
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return True, f"{key} auto: {device} supports bf16, updates run under bf16 autocast"
        return False, f"{key} auto: {device} has no native bf16, updates run in fp32"
    flags = cpu_bf16_flags()
    if flags:
        return True, f"{key} auto: the CPU has {'/'.join(flags)}, updates run under bf16 autocast"
    return False, f"{key} auto: the CPU has neither AVX-512 BF16 nor AMX, updates run in fp32"


@dataclass(frozen=True)
class Placement:
    """Resolved `sac.device`, `sac.act_device` and `sac.precision`, with the notes to log."""
    device: torch.device
    act_device: torch.device
    bf16: bool
    notes: tuple[str, ...] = field(default=())

    @property
    def precision(self) -> str:
        return 'bf16' if self.bf16 else 'fp32'

    def describe(self) -> str:
        return f"learning on {self.device} in {self.precision}, acting on {self.act_device} in fp32"


def resolve(sac_cfg, device: str | torch.device | None = None) -> Placement:
    """Placement of a SACConfig (duck-typed: device, act_device, precision).

    `device` overrides both the learning and the acting device (an acting-only agent).
    """
    import torch
    if device is not None:
        device = torch.device(device)
        if device.type == 'cuda' and device.index is None:
            device = torch.device('cuda', 0)
        bf16, note = resolve_precision(sac_cfg.precision, device, 'sac.precision')
        return Placement(device, device, bf16, (note,) if note else ())
    device, note_d = resolve_device(sac_cfg.device, 'sac.device')
    act_device, note_a = resolve_device(sac_cfg.act_device, 'sac.act_device')
    bf16, note_p = resolve_precision(sac_cfg.precision, device, 'sac.precision')
    return Placement(device, act_device, bf16, tuple(n for n in (note_d, note_a, note_p) if n))
