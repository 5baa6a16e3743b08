"""Soft Actor-Critic from pixels (SAC-AE / ReLoD style) with the hyperparameters of thesis Table 5.3.

The actor shares the critic's encoder but sees its features detached, so the encoder learns from
the critic loss only. Images arrive as uint8 stacks of `frame_stack` RGB frames (oldest first).
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from asyncrl_ros.agent.augment import center_crop
from asyncrl_ros.agent.device import resolve
from asyncrl_ros.agent.networks import Actor, Critic, Encoder, squashed_gaussian_sample
from asyncrl_ros.agent.sac_config import SACConfig  # noqa: F401 - SACConfig is part of this module's API

BATCH_KEYS = ("obs_image", "obs_proprio", "action", "reward",
              "next_obs_image", "next_obs_proprio", "not_done")


class SACAgent:
    """Encoder + tanh-Gaussian actor + twin critics with targets, Adam optimisers and auto-temperature."""

    def __init__(self, cfg: SACConfig, image_shape: tuple[int, int, int], proprio_dim: int,
                 action_dim: int, device: str | torch.device | None = None, seed: int = 0):
        """`device` None: learn on cfg.device and act on cfg.act_device; a device here sets both."""
        c, h, w = image_shape
        if c != 3 * cfg.frame_stack:
            raise ValueError(f"image_shape {image_shape}: expected {3 * cfg.frame_stack} channels "
                             f"(frame_stack={cfg.frame_stack} RGB frames)")
        if h < cfg.crop_height or w < cfg.crop_width:
            raise ValueError(f"image_shape {image_shape} is smaller than the crop "
                             f"{cfg.crop_height}x{cfg.crop_width}")
        if proprio_dim < 0 or action_dim <= 0:
            raise ValueError(f"bad proprio_dim={proprio_dim} or action_dim={action_dim}")
        self.placement = resolve(cfg, device)
        self.cfg, self.device, self.act_device = cfg, self.placement.device, self.placement.act_device
        self.bf16 = self.placement.bf16
        self.image_shape, self.proprio_dim, self.action_dim = tuple(image_shape), proprio_dim, action_dim
        self.crop_shape = (c, cfg.crop_height, cfg.crop_width)

        # Seed a private copy of the CPU RNG so building an agent leaves the caller's RNG alone.
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            self.encoder = Encoder(c, cfg.num_filters, cfg.num_conv_layers)
            if min(self.encoder.output_hw(cfg.crop_height, cfg.crop_width)) < 1:
                raise ValueError(f"crop {cfg.crop_height}x{cfg.crop_width} is too small for "
                                 f"{cfg.num_conv_layers} conv layers")
            feat = self.encoder.feature_dim
            self.actor = Actor(feat, proprio_dim, action_dim, cfg.hidden_dim)
            self.critic = Critic(feat, proprio_dim, action_dim, cfg.hidden_dim)
        self.encoder_target = copy.deepcopy(self.encoder)
        self.critic_target = copy.deepcopy(self.critic)
        for m in (self.encoder, self.actor, self.critic, self.encoder_target, self.critic_target):
            m.to(self.device)
        self.encoder_target.requires_grad_(False)
        self.critic_target.requires_grad_(False)
        # Acting on another device than learning (a CUDA learner, a CPU policy): a copy of
        # encoder + actor there, refreshed on the first act() after the weights changed.
        self._acting = nn.ModuleDict({"encoder": self.encoder, "actor": self.actor})  # no copy
        self._act_copy = None
        if self.act_device != self.device:
            self._act_copy = copy.deepcopy(self._acting).to(self.act_device).requires_grad_(False)
        self._act_stale = True

        self.log_alpha = torch.tensor(math.log(cfg.init_temperature), device=self.device,
                                      requires_grad=True)
        self.target_entropy = -float(action_dim)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic_optimizer = torch.optim.Adam([
            {"params": self.critic.parameters(), "lr": cfg.critic_lr},
            {"params": self.encoder.parameters(), "lr": cfg.encoder_lr},
        ])
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr)

        # Separate noise streams: how often we act does not change what learning samples.
        self.act_rng = torch.Generator(device=self.act_device).manual_seed(seed)
        self.update_rng = torch.Generator(device=self.device).manual_seed(seed + 1)
        self.num_updates = 0  # critic updates so far; drives the every-N schedules

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp().detach()

    def _noise(self, like: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        return torch.randn(like.shape, generator=rng, device=like.device, dtype=like.dtype)

    def _autocast(self):
        """bf16 autocast of the forward passes (a no-op in fp32); parameters stay fp32."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _acting_modules(self) -> tuple[nn.Module, nn.Module]:
        if self._act_copy is None:
            return self.encoder, self.actor
        if self._act_stale:
            with torch.no_grad():
                for dst, src in zip(self._act_copy.state_dict().values(), self._acting.state_dict().values()):
                    dst.copy_(src)
            self._act_stale = False
        return self._act_copy.encoder, self._act_copy.actor

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, image_u8: np.ndarray, proprio: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Action in [-1, 1] for one uncropped (C, H, W) uint8 stack (centre-cropped here)."""
        if tuple(image_u8.shape) != self.image_shape:
            raise ValueError(f"act: image shape {tuple(image_u8.shape)} != {self.image_shape}")
        if np.size(proprio) != self.proprio_dim:
            raise ValueError(f"act: proprio has {np.size(proprio)} values, expected {self.proprio_dim}")
        encoder, actor = self._acting_modules()
        image = center_crop(np.asarray(image_u8), self.cfg.crop_height, self.cfg.crop_width)
        image = torch.as_tensor(np.ascontiguousarray(image), device=self.act_device).unsqueeze(0)
        proprio = torch.as_tensor(proprio, dtype=torch.float32, device=self.act_device).view(1, -1)
        mu, log_std = actor(encoder(image), proprio)  # fp32: one observation is cheap
        if deterministic:
            action = torch.tanh(mu)
        else:
            action, _ = squashed_gaussian_sample(mu, log_std, self._noise(mu, self.act_rng))
        return action[0].cpu().numpy().astype(np.float32)

    # ---------------------------------------------------------------- learning
    def _to_tensors(self, batch: dict) -> dict[str, torch.Tensor]:
        missing = [k for k in BATCH_KEYS if k not in batch]
        if missing:
            raise ValueError(f"batch is missing keys {missing}")
        out = {}
        for k in BATCH_KEYS:
            if k.endswith("image"):
                out[k] = torch.as_tensor(batch[k], device=self.device)
                if tuple(out[k].shape[1:]) != self.crop_shape:
                    raise ValueError(f"batch[{k!r}] has shape {tuple(out[k].shape)}, "
                                     f"expected (B, *{self.crop_shape}) (cropped images)")
            else:
                out[k] = torch.as_tensor(batch[k], dtype=torch.float32, device=self.device)
        return out

    def update_critic(self, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One critic (and encoder) step on the soft Bellman target."""
        # Heads return fp32 (networks.py), so under bf16 autocast targets and losses stay fp32.
        with torch.no_grad(), self._autocast():
            mu, log_std = self.actor(self.encoder(b["next_obs_image"]), b["next_obs_proprio"])
            next_action, next_log_prob = squashed_gaussian_sample(mu, log_std, self._noise(mu, self.update_rng))
            target_q1, target_q2 = self.critic_target(
                self.encoder_target(b["next_obs_image"]), b["next_obs_proprio"], next_action)
            target_v = torch.min(target_q1, target_q2) - self.alpha * next_log_prob
            target_q = b["reward"] + b["not_done"] * self.cfg.gamma * target_v

        with self._autocast():
            q1, q2 = self.critic(self.encoder(b["obs_image"]), b["obs_proprio"], b["action"])
            critic_loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        return {"critic_loss": critic_loss.detach(), "q1": q1.detach().mean(),
                "q2": q2.detach().mean(), "target_q": target_q.mean()}

    def update_actor_and_alpha(self, obs_image: torch.Tensor, obs_proprio: torch.Tensor) -> dict[str, torch.Tensor]:
        """One actor step and one temperature step; the encoder is not touched."""
        with torch.no_grad(), self._autocast():
            features = self.encoder(obs_image)  # detached: the encoder learns from the critic only
        with self._autocast():
            mu, log_std = self.actor(features, obs_proprio)
            action, log_prob = squashed_gaussian_sample(mu, log_std, self._noise(mu, self.update_rng))
            self.critic.requires_grad_(False)  # skip critic weight gradients we would throw away
            q1, q2 = self.critic(features, obs_proprio, action)
            self.critic.requires_grad_(True)
            actor_loss = (self.alpha * log_prob - torch.min(q1, q2)).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()

        alpha_loss = (self.log_alpha.exp() * (-log_prob - self.target_entropy).detach()).mean()
        self.alpha_optimizer.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_optimizer.step()
        return {"actor_loss": actor_loss.detach(), "alpha_loss": alpha_loss.detach(),
                "entropy": -log_prob.detach().mean()}

    @torch.no_grad()
    def update_targets(self) -> None:
        """Polyak-average the target critic (tau critic) and target encoder (tau encoder)."""
        for tau, net, target in ((self.cfg.critic_tau, self.critic, self.critic_target),
                                 (self.cfg.encoder_tau, self.encoder, self.encoder_target)):
            for p, p_target in zip(net.parameters(), target.parameters()):
                p_target.lerp_(p, tau)

    def update(self, batch: dict) -> dict[str, float]:
        """One SAC update on a cropped batch. Actor metrics appear only on updates that step the actor."""
        b = self._to_tensors(batch)
        metrics = self.update_critic(b)
        if self.num_updates % self.cfg.actor_update_freq == 0:
            metrics |= self.update_actor_and_alpha(b["obs_image"], b["obs_proprio"])
        if self.num_updates % self.cfg.critic_target_update_freq == 0:
            self.update_targets()
        self.num_updates += 1
        self._act_stale = True
        metrics["alpha"] = self.alpha
        names = list(metrics)
        values = torch.stack([metrics[k].float() for k in names]).tolist()  # one device sync
        return dict(zip(names, values)) | {"num_updates": float(self.num_updates)}

    # --------------------------------------------------------------- state I/O
    def state_dict(self) -> dict:
        """All training state. Tensors alias the live ones: save or copy before the next update."""
        return {
            "encoder": self.encoder.state_dict(), "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(), "encoder_target": self.encoder_target.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "alpha_optimizer": self.alpha_optimizer.state_dict(),
            "log_alpha": self.log_alpha.detach(), "num_updates": self.num_updates,
            "act_rng": self.act_rng.get_state(), "update_rng": self.update_rng.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        missing = [k for k in self.state_dict() if k not in state]
        if missing:
            raise ValueError(f"SAC state is missing keys {missing}")
        for name in ("encoder", "actor", "critic", "encoder_target", "critic_target"):
            getattr(self, name).load_state_dict(state[name])
        for name in ("actor_optimizer", "critic_optimizer", "alpha_optimizer"):
            getattr(self, name).load_state_dict(state[name])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])  # in place: the optimizer holds this tensor
        self.num_updates = int(state["num_updates"])
        _set_rng_state(self.act_rng, state["act_rng"])
        _set_rng_state(self.update_rng, state["update_rng"])
        self._act_stale = True

    def policy_state_dict(self) -> dict[str, torch.Tensor]:
        """Flat CPU snapshot of what acting needs (encoder + actor), safe to ship to a policy process."""
        return ({f"encoder.{k}": v.detach().to("cpu", copy=True) for k, v in self.encoder.state_dict().items()}
                | {f"actor.{k}": v.detach().to("cpu", copy=True) for k, v in self.actor.state_dict().items()})

    def load_policy_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for prefix, module in (("encoder.", self.encoder), ("actor.", self.actor)):
            module.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        self._act_stale = True


def _set_rng_state(rng: torch.Generator, state: torch.Tensor) -> None:
    """Restore a noise stream; a checkpoint from another device type (CPU and CUDA generators
    keep different states) cannot continue its stream, and this one keeps its own seed."""
    if state.numel() == rng.get_state().numel():
        rng.set_state(state.cpu())
