"""What a run leaves in its folder: episode CSV, per-step timings, their summary, a plot.

Files are appended and flushed every episode so a crash loses at most one episode
of logs; a resumed run appends to the same files.
"""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np

EPISODE_FIELDS = ('episode', 'return', 'steps', 'total_steps', 'sim_time_s', 'wall_time_s',
                  'updates', 'updates_per_step', 'cycle_mean_ms', 'cycle_p99_ms', 'random_steps',
                  'weights_version', 'weights_age_steps_mean', 'weights_age_ms_mean',
                  'weights_swap_ms_max', 'transitions_sent', 'transitions_stored',
                  'batches_waited', 'frames_reused')
STEP_FIELDS = ('step', 'episode', 'cycle_ms', 'wall_cycle_ms', 'action_ms', 'sampling_ms', 'update_ms',
               'environment_ms', 'reward', 'updates', 'weights_version', 'weights_age_steps',
               'weights_age_ms', 'swap_ms', 'frame_age_ms', 'frame_reused')
# Thesis Table 5.2's columns.
COMPONENTS = ('action_ms', 'sampling_ms', 'update_ms', 'environment_ms', 'cycle_ms')


def strict_json(value):
    """NaN and inf (a CI of one run, a missing time) as null: the JSON files stay standard."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def percentile_summary(values) -> dict:
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return {'n': 0, 'mean': float('nan'), 'median': float('nan'), 'p99': float('nan'),
                'max': float('nan')}
    return {'n': int(arr.size), 'mean': float(arr.mean()), 'median': float(np.median(arr)),
            'p99': float(np.percentile(arr, 99)), 'max': float(arr.max())}


class RunLog:
    def __init__(self, run_dir: str | Path, title: str = ''):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.title = title
        self.episodes_path = self.dir / 'episodes.csv'
        self.steps_path = self.dir / 'steps.csv'
        self.pending_steps: list[dict] = []
        self.wall_start = time.monotonic()
        self.wall_offset = 0.0   # wall time of earlier sessions of a resumed run

    def _append(self, path: Path, fields, rows) -> None:
        new = not path.exists()
        with path.open('a', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction='ignore')
            if new:
                writer.writeheader()
            writer.writerows(rows)

    def wall_time(self) -> float:
        return self.wall_offset + time.monotonic() - self.wall_start

    def step(self, row: dict) -> None:
        self.pending_steps.append(row)

    def episode(self, row: dict) -> list[dict]:
        """Append the episode's row and its step rows; returns those step rows."""
        steps, self.pending_steps = self.pending_steps, []
        self._append(self.steps_path, STEP_FIELDS, steps)
        self._append(self.episodes_path, EPISODE_FIELDS, [row])
        return steps

    def read_episodes(self) -> list[dict]:
        if not self.episodes_path.exists():
            return []
        with self.episodes_path.open() as f:
            return list(csv.DictReader(f))

    def timing_summary(self) -> dict:
        """Median/p99 of each component over all learning steps so far (Table 5.2 style)."""
        if self.pending_steps:
            self._append(self.steps_path, STEP_FIELDS, self.pending_steps)
            self.pending_steps = []
        if not self.steps_path.exists():
            return {}
        with self.steps_path.open() as f:
            rows = list(csv.DictReader(f))
        summary = {c: percentile_summary([float(r[c]) for r in rows if r[c] != '']) for c in COMPONENTS}
        learning = [r for r in rows if float(r['update_ms'] or 0) > 0]
        summary['steps_with_update'] = len(learning)
        summary['update_ms_when_updating'] = percentile_summary([float(r['update_ms']) for r in learning])
        summary['sampling_ms_when_updating'] = percentile_summary(
            [float(r['sampling_ms']) for r in learning])
        (self.dir / 'timing_summary.json').write_text(json.dumps(summary, indent=2))
        lines = [f"{'component':<26}{'median ms':>12}{'p99 ms':>12}{'mean ms':>12}{'n':>9}"]
        for name in COMPONENTS + ('update_ms_when_updating', 'sampling_ms_when_updating'):
            s = summary[name]
            lines.append(f"{name:<26}{s['median']:>12.2f}{s['p99']:>12.2f}{s['mean']:>12.2f}{s['n']:>9}")
        (self.dir / 'timing_summary.txt').write_text('\n'.join(lines) + '\n')
        return summary

    def plot(self) -> Path | None:
        """Learning curve (return per episode, against episodes and wall time)."""
        rows = self.read_episodes()
        if not rows:
            return None
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        ep = np.array([int(r['episode']) for r in rows])
        ret = np.array([float(r['return']) for r in rows])
        wall = np.array([float(r['wall_time_s']) for r in rows]) / 60.0
        window = max(1, min(20, len(ret) // 5))
        smooth = np.convolve(ret, np.ones(window) / window, mode='valid')
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, x, label in ((axes[0], ep, 'episode'), (axes[1], wall, 'wall time [min]')):
            ax.plot(x, ret, '.', alpha=0.4, label='return')
            ax.plot(x[window - 1:], smooth, '-', label=f'mean of {window}')
            ax.set_xlabel(label)
            ax.set_ylabel('episode return')
            ax.grid(alpha=0.3)
        axes[0].legend()
        fig.suptitle(self.title)
        fig.tight_layout()
        path = self.dir / 'learning_curve.png'
        tmp = self.dir / 'learning_curve.tmp.png'
        fig.savefig(tmp, dpi=90)
        plt.close(fig)
        tmp.replace(path)
        return path
