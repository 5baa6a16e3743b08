"""SAC's hyperparameters (thesis Table 5.3), apart from the algorithm so that reading a
config does not import torch (sac.py does, and re-exports SACConfig)."""
from __future__ import annotations

from dataclasses import dataclass, fields

from asyncrl_ros.agent.device import check_device, check_precision


@dataclass
class SACConfig:
    """SAC hyperparameters; defaults are the thesis values (Table 5.3), baseline 160x90 setting."""
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    encoder_lr: float = 1e-3
    alpha_lr: float = 1e-4
    init_temperature: float = 0.1
    gamma: float = 0.99
    critic_tau: float = 0.01
    encoder_tau: float = 0.05
    actor_update_freq: int = 2
    critic_target_update_freq: int = 2
    hidden_dim: int = 1024
    num_filters: int = 32
    num_conv_layers: int = 4
    batch_size: int = 128
    replay_capacity: int = 100_000
    frame_stack: int = 3
    crop_height: int = 88
    crop_width: int = 156
    torch_threads: int = 1  # applied by callers (torch.set_num_threads), not here
    # Learning device: auto (CUDA if available, else CPU), cpu, cuda, cuda:N.
    device: str = "auto"
    # Acting network's device: one observation at a time is cheap on the CPU.
    act_device: str = "cpu"
    # Update precision: auto (bf16 where the hardware does it natively), fp32, bf16 (autocast;
    # parameters, optimizer state and temperature stay fp32).
    precision: str = "auto"

    def __post_init__(self):
        check_device("SACConfig.device", self.device)
        check_device("SACConfig.act_device", self.act_device)
        check_precision("SACConfig.precision", self.precision)
        for f in fields(self):
            if f.type not in ("int", "float"):
                continue
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"SACConfig.{f.name} must be a positive number, got {value!r}")
            if f.type == "int" and not isinstance(value, int):
                raise ValueError(f"SACConfig.{f.name} must be an integer, got {value!r}")
        for name in ("gamma", "critic_tau", "encoder_tau"):
            if getattr(self, name) > 1:
                raise ValueError(f"SACConfig.{name} must be in (0, 1], got {getattr(self, name)!r}")

    @classmethod
    def from_dict(cls, d: dict) -> "SACConfig":
        """Build from a (YAML) dict, naming any key that is not a field."""
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown SACConfig keys: {unknown}")
        return cls(**d)
