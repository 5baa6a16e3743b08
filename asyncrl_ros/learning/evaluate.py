"""Evaluation (`asyncrl --eval N RUN_DIR`): a run's policy, on the mean, for N episodes.

The bringup starts the run's node graph without its learning processes (the world,
reward, target monitor and arm_driver are the real ones) and sets the policy's `evaluate`
parameter to N. The policy then acts through `EvalBackend`: the acting weights of the
run's checkpoint (checkpoint.pt in sync; in the async modes the learner's
learner_checkpoint.pt, where the newest weights are), always deterministic (explore off),
storing, sending and learning nothing, and saving no checkpoint. `EvalLog` writes each
episode's return to eval.csv and the mean with its 95% CI (Student t, the thesis'
evaluation performance) to eval.json, which asyncrl-compare shows. No ROS here.
"""
from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import yaml

from asyncrl_ros.learning.checkpoint import FORMAT
from asyncrl_ros.run.config import ConfigError, ExperimentConfig, load_config
from asyncrl_ros.run.run_log import strict_json

EVAL_JSON = 'eval.json'
EVAL_CSV = 'eval.csv'
# The config an evaluation ran with (the run's own, plus any --set); config.yaml stays the run's.
EVAL_CONFIG = 'eval_config.yaml'
EVAL_FIELDS = ('evaluation', 'episode', 'return', 'steps', 'cycle_mean_ms', 'checkpoint',
               'updates', 'training_episode')


def acting_checkpoint(run_dir: str | Path, mode: str) -> Path:
    """Where a run's acting weights are saved: the file of the mode's updater (the policy's
    in sync, the learner's in async)."""
    from asyncrl_ros.learning.modes import MODES
    updater = MODES[mode].updater
    return Path(run_dir) / ('checkpoint.pt' if updater == 'policy' else f'{updater}_checkpoint.pt')


def prepare_eval(run_dir: str | None, episodes: int, profile: str | None = None,
                 overrides: Sequence[dict] = ()):
    """(Profile, config, run folder) of the run to evaluate; one-line ConfigError otherwise."""
    from asyncrl_ros.learning.modes import MODES
    from asyncrl_ros.run.profiles import check_profile, get_profile
    if not run_dir:
        raise ConfigError('--eval N needs a run folder: asyncrl --eval N RUN_DIR')
    if episodes < 1:
        raise ConfigError(f'--eval needs a number of episodes >= 1, got {episodes}')
    run = Path(run_dir).resolve()
    if not run.is_dir():
        raise ConfigError(f'cannot evaluate {run}: no such run folder')
    meta = run / 'run.yaml'
    if not meta.is_file():
        raise ConfigError(f'cannot evaluate {run}: not a run folder (no run.yaml)')
    started_as = (yaml.safe_load(meta.read_text()) or {}).get('profile')
    if profile and started_as != profile:
        raise ConfigError(f"cannot evaluate {run} as '{profile}': it is a '{started_as}' run")
    prof = get_profile(started_as)
    cfg = check_profile(prof, load_config(run / 'config.yaml', *overrides,
                                          validate=False)).validate()
    path = acting_checkpoint(run, cfg.mode)
    if not path.is_file():
        who = f'the {MODES[cfg.mode].updater}'
        raise ConfigError(f'cannot evaluate {run}: no checkpoint ({path.name}: {who} has not '
                          'saved its networks yet)')
    return prof, cfg, run


def eval_nodes(nodes: Sequence[str]) -> list[str]:
    """The run's nodes without its learning processes: nothing learns during an evaluation."""
    from asyncrl_ros.run.runs import LEARNING_NODES
    return [n for n in nodes if n not in LEARNING_NODES]


def write_eval_config(run_dir: Path, cfg: ExperimentConfig) -> Path:
    path = run_dir / EVAL_CONFIG
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return path


def eval_stamp(run_dir: Path) -> int | None:
    """When eval.json was last written (None: never), to tell a new evaluation from an old one."""
    path = Path(run_dir) / EVAL_JSON
    return path.stat().st_mtime_ns if path.exists() else None


def _load(path: Path) -> dict:
    # mmap: a sync checkpoint also holds the replay (GBs); only the networks are read.
    try:
        state = torch.load(path, map_location='cpu', weights_only=False, mmap=True)
    except Exception as err:  # noqa: BLE001 - any failure means: not a checkpoint we can use
        raise ValueError(f'cannot evaluate: {path} is unreadable ({type(err).__name__}: {err})') from None
    if not isinstance(state, dict) or state.get('format') != FORMAT or not state.get('agent'):
        raise ValueError(f'cannot evaluate: {path} holds no asyncrl_ros networks')
    return state


class EvalBackend:
    """The policy's backend under --eval: the run's acting weights, always on the mean;
    nothing stored, sent, learned or saved. Same interface as InProcessLearner/RemoteLearner."""

    swap_ms = 0.0
    sent = stored = 0
    replay: tuple = ()   # holds nothing

    def __init__(self, cfg: ExperimentConfig, proprio_dim: int, action_dim: int,
                 run_dir: str | Path):
        from asyncrl_ros.agent.device import resolve_device
        from asyncrl_ros.learning.remote import make_agent
        self.agent = make_agent(cfg, proprio_dim, action_dim,
                                device=resolve_device(cfg.sac.act_device, 'sac.act_device')[0])
        path = acting_checkpoint(run_dir, cfg.mode)
        state = _load(path)
        nets = state['agent']
        # Encoder and actor only: strict, so a checkpoint of other shapes fails here.
        self.agent.load_policy_state_dict({f'{part}.{k}': v for part in ('encoder', 'actor')
                                           for k, v in nets[part].items()})
        extra = state.get('extra') or {}
        from asyncrl_ros.learning.modes import MODES
        self.updates = int(nets['num_updates'])   # the agent's own count
        if MODES[cfg.mode].updater == 'policy':   # sync: one checkpoint holds it all
            counters = extra
        else:   # the policy's counters are in its own checkpoint.pt, beside the learner's
            counters = _load_extra(Path(run_dir) / 'checkpoint.pt')
        self.info = {'checkpoint': path.name, 'updates': self.updates,
                     'training_episode': int(counters.get('episode', 0)),
                     'training_steps': int(counters.get('total_steps', 0))}

    @property
    def weights_version(self) -> int:
        return self.updates

    def act(self, stacked: np.ndarray, proprio: np.ndarray, explore: bool = False) -> np.ndarray:
        return self.agent.act(stacked, proprio, deterministic=True)   # explore is always off

    def waiting_for(self) -> str | None:
        return None

    def start_episode(self, frame, proprio) -> None:
        pass

    def add(self, action, reward, next_frame, next_proprio, terminal: bool) -> None:
        pass

    def learn(self) -> dict:
        return {'sampling_ms': 0.0, 'update_ms': 0.0}

    def poll_weights(self, step: int) -> None:
        pass

    def age(self, step: int) -> tuple[int, float]:
        return 0, 0.0

    def on_learner_status(self, updates: int, stored: int, missing: int) -> None:
        pass

    def close(self) -> None:
        pass


def _load_extra(path: Path) -> dict:
    try:
        return torch.load(path, map_location='cpu', weights_only=False, mmap=True).get('extra') or {}
    except Exception:  # noqa: BLE001 - counters are informative only
        return {}


def summarise(returns: Sequence[float]) -> dict:
    """Mean return and its 95% CI half-width (Student t over episodes; NaN for one episode)."""
    from asyncrl_ros.run.compare import mean_ci
    values = np.asarray(returns, dtype=float)
    mean, half = mean_ci(values) if len(values) else (np.nan, np.nan)
    mean, half = float(mean), float(half)
    return {'episodes': len(values), 'mean_return': mean, 'ci95_half': half,
            'low': mean - half, 'high': mean + half,
            'std': float(values.std(ddof=1)) if len(values) > 1 else float('nan'),
            'returns': [float(r) for r in values]}


class EvalLog:
    """eval.csv (a row per episode, appended across evaluations) and eval.json (the latest)."""

    def __init__(self, run_dir: str | Path, episodes: int, info: dict):
        self.dir = Path(run_dir)
        self.requested = episodes
        self.info = dict(info)
        self.started = datetime.now().isoformat(timespec='seconds')
        self.returns: list[float] = []

    def episode(self, ret: float, steps: int, cycle_mean_ms: float) -> None:
        self.returns.append(float(ret))
        path = self.dir / EVAL_CSV
        new = not path.exists()
        with path.open('a', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=EVAL_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow({'evaluation': self.started, 'episode': len(self.returns),
                             'return': ret, 'steps': steps, 'cycle_mean_ms': cycle_mean_ms,
                             'checkpoint': self.info.get('checkpoint'),
                             'updates': self.info.get('updates'),
                             'training_episode': self.info.get('training_episode')})

    @property
    def complete(self) -> bool:
        return len(self.returns) >= self.requested

    def finish(self, tensorboard: bool = True) -> dict:
        """Write eval.json (also for a stopped evaluation: `complete` says which) and return it;
        TensorBoard's eval/mean_return at the checkpoint's training episode."""
        summary = {**summarise(self.returns), 'requested': self.requested,
                   'complete': self.complete, 'explore': False, **self.info,
                   'started': self.started,
                   'finished': datetime.now().isoformat(timespec='seconds')}
        tmp = self.dir / f'.{EVAL_JSON}.tmp'
        tmp.write_text(json.dumps(strict_json(summary), indent=2))   # no CI from 1 episode: null
        tmp.replace(self.dir / EVAL_JSON)
        if tensorboard and self.returns:
            from asyncrl_ros.run.tensorboard_log import TensorBoardLog
            tb = TensorBoardLog(self.dir, 'eval')
            tb.scalars({'eval/mean_return': summary['mean_return'],
                        'eval/ci95_half': summary['ci95_half']}, summary.get('training_episode', 0))
            tb.close()
        return summary


def format_summary(s: dict) -> str:
    ci = '' if not np.isfinite(s['ci95_half']) else f" ± {s['ci95_half']:.1f} (95% CI)"
    return (f"evaluation: mean return {s['mean_return']:.1f}{ci} over {s['episodes']} "
            f"episode(s), explore off, {s.get('checkpoint')} at {s.get('updates')} updates"
            + ('' if s.get('complete', True) else f" (stopped: {s['requested']} asked)"))
