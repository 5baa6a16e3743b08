"""Compare runs: learning curves with 95% confidence bands against wall time (the paper's
Figure 6), total updates per run (Figure 7) and component times (thesis Table 5.2).

    asyncrl-compare runs/*sync* runs/*async* [--out DIR] [--label-by mode|profile|dir]

Runs are grouped by label (config.yaml's mode, run.yaml's profile, or the folder name).
Writes learning_curves.{csv,png}, updates.csv, updates_summary.csv, updates.png and
components.csv into --out, and prints the component table. Runs evaluated with
`asyncrl --eval N` (eval.json) also give evaluation.csv: each run's mean deterministic
return with its 95% CI over episodes, and per group the mean over runs with its CI.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from asyncrl_ros.run.config import MODES
from asyncrl_ros.run.run_log import COMPONENTS, percentile_summary

LABEL_BY = ('mode', 'profile', 'dir')
GRID_POINTS = 100
SMOOTH_EPISODES = 5
OUT_DIR = 'comparison'
# Two-sided 95% Student-t quantiles for df = 1..30 (few runs per group: 1.96 would be too
# narrow); beyond 30 the normal value is within 2%.
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
       2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
       2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


class RunError(ValueError):
    """A run folder that cannot be used (the message names it)."""


@dataclass
class Run:
    dir: Path
    label: str
    wall_min: np.ndarray     # wall time at each episode's end
    returns: np.ndarray
    updates: int             # total SAC updates at the last logged episode
    steps: dict | None       # component -> values in ms; None without steps.csv
    evaluation: dict | None = None   # eval.json of `asyncrl --eval N`, if the run has one


def t95(n: int) -> float:
    if n < 2:
        return float('nan')
    return T95[n - 2] if n - 1 <= len(T95) else 1.96


def mean_ci(values) -> tuple[np.ndarray, np.ndarray]:
    """Mean and 95% CI half-width over axis 0 (runs): t * std / sqrt(n)."""
    values = np.asarray(values, dtype=float)
    n = values.shape[0]
    half = (t95(n) * values.std(axis=0, ddof=1) / np.sqrt(n) if n > 1
            else np.full(values.shape[1:], np.nan))
    return values.mean(axis=0), half


def _read_yaml(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise RunError(f'{path} is not a YAML mapping')
    return data


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline='') as f:
        return list(csv.DictReader(f))


def run_label(run_dir: Path, label_by: str) -> str:
    if label_by == 'dir':
        return run_dir.name
    name, key = ('config.yaml', 'mode') if label_by == 'mode' else ('run.yaml', 'profile')
    path = run_dir / name
    if not path.exists():
        raise RunError(f'{run_dir}: no {name}, so no {key} to label it by '
                       f'(use --label-by dir)')
    value = _read_yaml(path).get(key)
    if not value:
        raise RunError(f'{path} has no {key!r}')
    return str(value)


def load_run(run_dir: str | Path, label_by: str = LABEL_BY[0]) -> Run:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f'{run_dir}: no such run folder')
    label = run_label(run_dir, label_by)
    episodes_path = run_dir / 'episodes.csv'
    if not episodes_path.exists():
        raise RunError(f'{run_dir}: no episodes.csv (the run logged no episode)')
    try:
        rows = _read_csv(episodes_path)
        wall = np.array([float(r['wall_time_s']) for r in rows]) / 60.0
        returns = np.array([float(r['return']) for r in rows])
        updates = max((int(float(r['updates'] or 0)) for r in rows), default=0)
    except (KeyError, ValueError, TypeError) as err:
        raise RunError(f'{episodes_path}: unreadable ({err})') from err
    if not len(rows):
        raise RunError(f'{episodes_path}: no episodes')
    order = np.argsort(wall, kind='stable')
    steps = None
    steps_path = run_dir / 'steps.csv'
    if steps_path.exists():
        try:
            step_rows = _read_csv(steps_path)
            steps = {c: np.array([float(r[c]) for r in step_rows if r.get(c) not in (None, '')])
                     for c in COMPONENTS}
        except ValueError as err:
            raise RunError(f'{steps_path}: unreadable ({err})') from err
    evaluation = None
    eval_path = run_dir / 'eval.json'
    if eval_path.exists():
        try:
            evaluation = json.loads(eval_path.read_text())
            float(evaluation['mean_return'])
        except (ValueError, KeyError, TypeError) as err:
            raise RunError(f'{eval_path}: unreadable ({err})') from err
    return Run(run_dir, label, wall[order], returns[order], updates, steps, evaluation)


def smooth(returns: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over the last `window` episodes (fewer at the start)."""
    csum = np.concatenate([[0.0], np.cumsum(returns)])
    idx = np.arange(1, len(returns) + 1)
    lo = np.maximum(0, idx - window)
    return (csum[idx] - csum[lo]) / (idx - lo)


def group_runs(runs: list[Run]) -> dict[str, list[Run]]:
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.label, []).append(run)
    order = lambda label: (MODES.index(label) if label in MODES else len(MODES), label)  # noqa: E731
    return {label: groups[label] for label in sorted(groups, key=order)}


def learning_curves(groups: dict[str, list[Run]], window: int = SMOOTH_EPISODES,
                    points: int = GRID_POINTS) -> list[dict]:
    """Per group: every run interpolated on a common wall-time grid, mean and 95% CI.

    The grid spans the time all runs of the group cover (latest first episode to the
    earliest last one), so each point averages the same runs."""
    rows = []
    for label, runs in groups.items():
        start = max(r.wall_min[0] for r in runs)
        end = min(r.wall_min[-1] for r in runs)
        if end < start:
            print(f'asyncrl-compare: {label}: runs do not overlap in wall time; no curve',
                  file=sys.stderr)
            continue
        grid = np.linspace(start, end, points if end > start else 1)
        curves = [np.interp(grid, r.wall_min, smooth(r.returns, window)) for r in runs]
        mean, half = mean_ci(curves)
        rows += [{'label': label, 'time_min': t, 'n_runs': len(runs), 'mean_return': m,
                  'ci95_half': h, 'low': m - h, 'high': m + h}
                 for t, m, h in zip(grid, mean, half)]
    return rows


def update_tables(groups: dict[str, list[Run]]) -> tuple[list[dict], list[dict]]:
    per_run = [{'label': label, 'run': str(r.dir), 'total_updates': r.updates,
                'wall_min': float(r.wall_min[-1])} for label, runs in groups.items() for r in runs]
    summary = []
    for label, runs in groups.items():
        mean, half = mean_ci([[r.updates] for r in runs])
        summary.append({'label': label, 'n_runs': len(runs), 'mean_updates': float(mean[0]),
                        'ci95_half': float(half[0])})
    return per_run, summary


def component_table(groups: dict[str, list[Run]]) -> list[dict]:
    """Median/p99 per run and over all steps of the group (run = 'all')."""
    rows = []
    for label, runs in groups.items():
        with_steps = [r for r in runs if r.steps is not None]
        for name in COMPONENTS:
            for run_name, values in ([(str(r.dir), r.steps[name]) for r in with_steps]
                                     + [('all', np.concatenate([r.steps[name] for r in with_steps])
                                         if with_steps else np.array([]))]):
                s = percentile_summary(values)
                rows.append({'label': label, 'run': run_name, 'component': name,
                             'median_ms': s['median'], 'p99_ms': s['p99'], 'mean_ms': s['mean'],
                             'n': s['n']})
    return rows


def evaluation_table(groups: dict[str, list[Run]]) -> list[dict]:
    """Per evaluated run its mean return and CI (over episodes); per group (run = 'all')
    the mean of the runs' means and its CI over runs."""
    rows = []
    for label, runs in groups.items():
        evaluated = [r for r in runs if r.evaluation]
        if not evaluated:
            continue
        for r in evaluated:
            e = r.evaluation
            half = e.get('ci95_half')   # null: one episode, no CI
            rows.append({'label': label, 'run': str(r.dir), 'n': e.get('episodes'),
                         'mean_return': float(e['mean_return']),
                         'ci95_half': float('nan') if half is None else float(half),
                         'updates': e.get('updates')})
        mean, half = mean_ci([[float(r.evaluation['mean_return'])] for r in evaluated])
        rows.append({'label': label, 'run': 'all', 'n': len(evaluated),
                     'mean_return': float(mean[0]), 'ci95_half': float(half[0]), 'updates': ''})
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    with path.open('w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def format_components(rows: list[dict]) -> str:
    pooled = [r for r in rows if r['run'] == 'all']
    labels = list(dict.fromkeys(r['label'] for r in pooled))
    head = f"{'component':<16}" + ''.join(f'{lab + " median":>18}{lab + " p99":>14}' for lab in labels)
    lines = [head]
    for name in COMPONENTS:
        cells = {r['label']: r for r in pooled if r['component'] == name}
        lines.append(f'{name:<16}' + ''.join(
            f"{cells[lab]['median_ms']:>18.2f}{cells[lab]['p99_ms']:>14.2f}" for lab in labels))
    return '\n'.join(lines)


def plot(curves: list[dict], per_run: list[dict], summary: list[dict], out: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label in dict.fromkeys(r['label'] for r in curves):
        rows = [r for r in curves if r['label'] == label]
        t = np.array([r['time_min'] for r in rows])
        m = np.array([r['mean_return'] for r in rows])
        line, = ax.plot(t, m, label=f"{label} (n={rows[0]['n_runs']})")
        if rows[0]['n_runs'] > 1:
            ax.fill_between(t, [r['low'] for r in rows], [r['high'] for r in rows],
                            color=line.get_color(), alpha=0.25, linewidth=0)
    ax.set_xlabel('wall time [min]')
    ax.set_ylabel('episode return')
    ax.set_title('Learning curves (mean, 95% CI over runs)')
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / 'learning_curves.png', dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(summary), 4.5))
    for i, s in enumerate(summary):
        err = None if np.isnan(s['ci95_half']) else s['ci95_half']
        ax.bar(i, s['mean_updates'], yerr=err, capsize=6, alpha=0.6)
        points = [r['total_updates'] for r in per_run if r['label'] == s['label']]
        ax.plot(i + np.linspace(-0.15, 0.15, len(points)), points, 'k.', markersize=8)
    ax.set_xticks(range(len(summary)), [s['label'] for s in summary])
    ax.set_ylabel('total updates')
    ax.set_title('Updates per run')
    ax.grid(axis='y', alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / 'updates.png', dpi=100)
    plt.close(fig)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog='asyncrl-compare', description=__doc__.splitlines()[0])
    parser.add_argument('runs', nargs='+', metavar='RUN_DIR', help='run folders')
    parser.add_argument('--out', default=OUT_DIR, help=f'output folder (default {OUT_DIR})')
    parser.add_argument('--label-by', choices=LABEL_BY, default=LABEL_BY[0],
                        help='group runs by mode (config.yaml), profile (run.yaml) or folder name')
    parser.add_argument('--smooth', type=int, default=SMOOTH_EPISODES,
                        help='trailing mean over this many episodes before averaging runs')
    parser.add_argument('--points', type=int, default=GRID_POINTS,
                        help='points of the common wall-time grid')
    args = parser.parse_args(argv)
    if args.smooth < 1 or args.points < 1:
        parser.error('--smooth and --points must be at least 1')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    runs = []
    for run_dir in args.runs:
        try:
            runs.append(load_run(run_dir, args.label_by))
        except RunError as err:   # its message names the folder
            print(f'asyncrl-compare: skipping {err}', file=sys.stderr)
            continue
        except (OSError, yaml.YAMLError) as err:
            print(f'asyncrl-compare: skipping {run_dir}: {err}', file=sys.stderr)
            continue
        if runs[-1].steps is None:
            print(f'asyncrl-compare: {run_dir}: no steps.csv; left out of component times',
                  file=sys.stderr)
    if not runs:
        print('asyncrl-compare: error: no usable run folder', file=sys.stderr)
        return 1
    groups = group_runs(runs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    curves = learning_curves(groups, args.smooth, args.points)
    per_run, summary = update_tables(groups)
    components = component_table(groups)
    evaluations = evaluation_table(groups)
    write_csv(out / 'learning_curves.csv', curves)
    write_csv(out / 'updates.csv', per_run)
    write_csv(out / 'updates_summary.csv', summary)
    write_csv(out / 'components.csv', components)
    write_csv(out / 'evaluation.csv', evaluations)
    if not evaluations:   # none of these runs was evaluated: no stale table from earlier ones
        (out / 'evaluation.csv').unlink(missing_ok=True)
    plot(curves, per_run, summary, out)
    for s in summary:
        print(f"{s['label']:<12} runs {s['n_runs']:>3}   updates {s['mean_updates']:>10.0f}"
              f" ± {s['ci95_half']:.0f} (95% CI)")
    for e in (r for r in evaluations if r['run'] == 'all'):
        print(f"{e['label']:<12} evaluated runs {e['n']:>3}   deterministic return "
              f"{e['mean_return']:>8.1f} ± {e['ci95_half']:.1f} (95% CI over runs)")
    print(format_components(components))
    print(f'asyncrl-compare: wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
