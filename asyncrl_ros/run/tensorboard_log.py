"""TensorBoard event files of a run, one writer per process: <run>/tensorboard/<process>.

`tensorboard --logdir runs` shows every run, each process as a sub-run (policy, learner,
eval). The CSVs and the PNG stay the run's record; these are for watching it live. No ROS
here: the policy calls `episode` at each episode's end, learners call `update` after each
SAC update, which averages and writes only every `every_updates` updates (cheap).

Scalars, by tag (policy: step = episode; learners: step = update count):
  episode/return, episode/length_steps, episode/sim_time_s, time/wall_min, time/training_min
  cycle/mean_ms, cycle/p99_ms (sim time), cycle/wall_mean_ms
  learning/updates, learning/updates_per_step, learning/weights_version,
  learning/weights_age_steps, learning/weights_age_ms
  replay/size, replay/transitions_sent, replay/transitions_stored
  components/{action,sampling,update,environment}_ms: thesis Table 5.2, the median over the
      episode's steps on which that component ran (sampling and update: steps that updated)
  loss/critic, loss/actor, loss/temperature, sac/temperature, sac/entropy, sac/q1,
      sac/target_q (means over the last `every_updates` updates), learner/update_ms
Images every run.tensorboard_images_every episodes: observation/frames (the stack the policy
acted on last) and observation/reward_mask (the reward's red mask of each of those frames).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

SUBDIR = 'tensorboard'
FLUSH_SECS = 10   # what `tensorboard` shows lags by at most this

# tag -> episodes.csv column (run_log.EPISODE_FIELDS)
EPISODE_SCALARS = {
    'episode/return': 'return', 'episode/length_steps': 'steps', 'episode/sim_time_s': 'sim_time_s',
    'cycle/mean_ms': 'cycle_mean_ms', 'cycle/p99_ms': 'cycle_p99_ms',
    'learning/updates': 'updates', 'learning/updates_per_step': 'updates_per_step',
    'learning/weights_version': 'weights_version',
    'learning/weights_age_steps': 'weights_age_steps_mean',
    'learning/weights_age_ms': 'weights_age_ms_mean',
    'replay/transitions_sent': 'transitions_sent', 'replay/transitions_stored': 'transitions_stored',
}
# Per-step components (steps.csv) summarised per episode.
STEP_COMPONENTS = ('action_ms', 'sampling_ms', 'update_ms', 'environment_ms')
# SACAgent.update's metrics -> tag. The actor's appear only on updates that step the actor.
UPDATE_SCALARS = {'critic_loss': 'loss/critic', 'actor_loss': 'loss/actor',
                  'alpha_loss': 'loss/temperature', 'alpha': 'sac/temperature',
                  'entropy': 'sac/entropy', 'q1': 'sac/q1', 'target_q': 'sac/target_q'}


def _finite(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


class TensorBoardLog:
    """One SummaryWriter. Disabled (every call a no-op) when `enabled` is false or the
    tensorboard package is missing (said once): watching must never stop a run."""

    def __init__(self, run_dir: str | Path, process: str, enabled: bool = True,
                 every_updates: int = 50, purge_step: int | None = None):
        self.dir = Path(run_dir) / SUBDIR / process
        self.every = max(1, int(every_updates))
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            print(f'[tensorboard] not writing {self.dir}: {err} (pip install tensorboard)',
                  file=sys.stderr, flush=True)
            return
        # purge_step: a resumed run drops what an earlier session wrote after its checkpoint.
        self.writer = SummaryWriter(str(self.dir), purge_step=purge_step, flush_secs=FLUSH_SECS)

    @property
    def enabled(self) -> bool:
        return self.writer is not None

    def scalars(self, values: dict, step: int) -> None:
        if self.writer is None:
            return
        for tag, value in values.items():
            value = _finite(value)
            if value is not None:
                self.writer.add_scalar(tag, value, step)

    def episode(self, row: dict, steps: list[dict] = (), replay_size: int | None = None,
                training_min: float | None = None) -> None:
        """One episode's row (episodes.csv's columns) and its step rows (steps.csv's)."""
        if self.writer is None:
            return
        values = {tag: row.get(col) for tag, col in EPISODE_SCALARS.items()}
        wall_s = _finite(row.get('wall_time_s'))
        values['time/wall_min'] = None if wall_s is None else wall_s / 60.0
        values['time/training_min'] = training_min
        values['replay/size'] = replay_size
        for name in STEP_COMPONENTS:
            ran = [v for v in (_finite(s.get(name)) for s in steps) if v is not None and v > 0]
            values[f'components/{name}'] = float(np.median(ran)) if ran else None
        wall = [v for v in (_finite(s.get('wall_cycle_ms')) for s in steps) if v is not None]
        values['cycle/wall_mean_ms'] = float(np.mean(wall)) if wall else None
        self.scalars(values, int(row['episode']))
        self.writer.flush()   # once per episode: a few small writes

    def update(self, metrics: dict, updates: int, **extra: float) -> None:
        """After each update: accumulate; every `every_updates` write the means."""
        if self.writer is None:
            return
        for key, value in {**metrics, **extra}.items():
            tag = UPDATE_SCALARS.get(key, f'learner/{key}' if key in extra else None)
            value = _finite(value)
            if tag is not None and value is not None:
                self.sums[tag] = self.sums.get(tag, 0.0) + value
                self.counts[tag] = self.counts.get(tag, 0) + 1
        if updates % self.every == 0:
            self.scalars({tag: s / self.counts[tag] for tag, s in self.sums.items()}, updates)
            self.sums, self.counts = {}, {}

    def images(self, episode: int, stacked: np.ndarray) -> None:
        """The policy's stacked observation ((k*3, H, W) uint8) and each frame's reward mask."""
        if self.writer is None:
            return
        from asyncrl_ros.robot.reward import red_mask
        frames = np.asarray(stacked, dtype=np.uint8).reshape(-1, 3, *stacked.shape[-2:])
        masks = np.stack([red_mask(f.transpose(1, 2, 0)) for f in frames])[:, None]
        self.writer.add_images('observation/frames', frames, episode, dataformats='NCHW')
        self.writer.add_images('observation/reward_mask', masks.astype(np.uint8) * 255, episode,
                               dataformats='NCHW')

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
