"""asyncrl-reproduce: the seeds' sync-vs-async comparison in one command, on the simulated
Panda reacher (paper Figures 6 and 7, thesis Table 5.2).

    asyncrl-reproduce [--scale quick|paper] [--seeds S] [--out DIR] [--episodes E]
                      [--last K] [--set KEY=VALUE ...] [--dry-run]

Runs franka_sim_sync, franka_sim_async1 and franka_sim_async2 with run.seed = 0..S-1 at the
scale's setting (quick: the `quick` setting, minutes per run on a CPU; paper: the seeds'
`baseline`), one bringup at a time (each run has the machine to itself), into
DIR/<mode>-seed<k>, seed by seed so that a stopped reproduction has comparable runs. Then
asyncrl-compare into DIR/comparison and a short report, DIR/report.md (+ report.json).
Rerunning the same command skips finished runs and resumes interrupted ones.
No ROS here: the runs are bringup subprocesses.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import yaml

from asyncrl_ros.run.config import MODES, ConfigError, parse_override
from asyncrl_ros.learning import modes as registry
from asyncrl_ros.learning.modes import profile_name
# The thesis' baseline: sampling + update 21 + 24 ms (Table 5.2, RTX 2080Ti), 40 ms async cycle.
from asyncrl_ros.learning.world_speed import THESIS_CYCLE_MS, THESIS_SAMPLE_UPDATE_MS

PROFILES = {mode: profile_name('franka', 'sim', mode) for mode in MODES}
LAST_K = 5
PLAN = 'plan.json'


@dataclass(frozen=True)
class Scale:
    setting: str
    episodes: int | None   # per run; None: as long as the setting says (run.training_minutes)
    about: str


SCALES = {
    'quick': Scale('quick', 30, "the `quick` setting (small networks and batch, ~1000 random "
                   "steps, world speed `auto`), 30 episodes per run: minutes per run on a CPU"),
    'paper': Scale('baseline', None, "the seeds' baseline setting (160x90, batch 128, 1024-unit "
                   "MLPs), 72 min of training time per run: a GPU's job"),
}


def usage_error(message: str) -> int:
    print(f'asyncrl-reproduce: error: {message}', file=sys.stderr)
    return 2


# ---- run folders ----
def read_episodes(run_dir: Path) -> list[dict]:
    import csv
    path = run_dir / 'episodes.csv'
    if not path.is_file():
        return []
    with path.open(newline='') as f:
        return list(csv.DictReader(f))


def read_config(run_dir: Path) -> dict:
    path = run_dir / 'config.yaml'
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def finished(run_dir: Path, episodes: int | None = None) -> bool:
    """summary.json written and the run as long as the policy's own end: `episodes`
    (or run.max_episodes) episodes, or run.training_minutes of episode time."""
    if not (run_dir / 'summary.json').is_file():
        return False
    rows = read_episodes(run_dir)
    if not rows:
        return False
    run = read_config(run_dir).get('run', {})
    target = episodes or run.get('max_episodes') or 0
    if target and len(rows) >= target:
        return True
    trained_s = sum(float(r['sim_time_s'] or 0) for r in rows)
    return trained_s >= float(run.get('training_minutes', math.inf)) * 60


@dataclass
class PlannedRun:
    mode: str
    seed: int
    dir: Path
    setting: str

    @property
    def profile(self) -> str:
        return PROFILES[self.mode]

    @property
    def name(self) -> str:
        return self.dir.name

    def state(self, episodes: int | None = None) -> str:
        """'done', 'resume' (a checkpoint to continue from), 'restart' (started, nothing
        saved: starts afresh) or 'new'."""
        if not (self.dir / 'run.yaml').is_file():
            return 'new'
        if finished(self.dir, episodes):
            return 'done'
        return 'resume' if (self.dir / 'checkpoint.pt').is_file() else 'restart'

    def command(self, episodes: int | None, sets: list[str], resume: bool) -> list[str]:
        cmd = [sys.executable, '-m', 'asyncrl_ros.run.bringup']
        if resume:   # its config.yaml holds the seed and the overrides
            cmd += ['--resume', str(self.dir)]
        else:
            cmd += [self.profile, '--setting', self.setting, '--run-dir', str(self.dir),
                    '--set', f'run.seed={self.seed}']
            for s in sets:
                cmd += ['--set', s]
        return cmd + (['--episodes', str(episodes)] if episodes else [])


def shared_world_speed(out: Path, setting: str, sets: list[str], measure=None) -> dict | None:
    """One world speed for every run: with `sim.real_time_factor: auto`, time the learner
    once, before the first run, and give every run that factor (kept in plan.json, so a rerun
    keeps it). Timed per run, the factor varied 0.25-0.41x between runs of one setting here:
    the modes would meet different world speeds. None when the setting (or --set) fixes it."""
    from asyncrl_ros.run.profiles import resolve
    _, cfg = resolve(PROFILES['async2'], setting, None, [parse_override(s) for s in sets])
    if cfg.sim.real_time_factor != 'auto':
        return None
    plan = out / PLAN
    earlier = json.loads(plan.read_text()).get('world_speed') if plan.is_file() else None
    if earlier:
        return earlier
    if measure is None:
        from asyncrl_ros.run.bringup import preflight as measure
    data = measure(cfg)
    return {'factor': float(data['factor']), 'measured_ms': float(data['measured_ms'])}


def plan_runs(scale: str, seeds: int, out: Path) -> list[PlannedRun]:
    """Every (mode, seed), seed by seed: after any 3 runs each mode has as many seeds."""
    return [PlannedRun(mode, seed, out / f'{mode}-seed{seed}', SCALES[scale].setting)
            for seed in range(seeds) for mode in MODES]


def check_out(out: Path, scale: str, runs: list[PlannedRun]) -> None:
    """An output folder holds one scale; its run folders the planned profile and seed."""
    plan = out / PLAN
    if plan.is_file():
        earlier = json.loads(plan.read_text()).get('scale')
        if earlier != scale:
            raise ConfigError(f"{out} holds a '{earlier}' reproduction, not '{scale}': "
                              'choose another --out')
    for run in runs:
        meta = run.dir / 'run.yaml'
        if meta.is_file():
            profile = (yaml.safe_load(meta.read_text()) or {}).get('profile')
            seed = read_config(run.dir).get('run', {}).get('seed')
            if (profile, seed) != (run.profile, run.seed):
                raise ConfigError(f'{run.dir} holds a {profile} seed {seed} run, not '
                                  f'{run.profile} seed {run.seed}: choose another --out')


def target_episodes(run: PlannedRun, episodes: int | None, sets: list[str]) -> int | None:
    """Episodes the run will have in all (for the ETA); None if its setting cannot say."""
    if episodes:
        return episodes
    from asyncrl_ros.run.config import load_config
    from asyncrl_ros.run.profiles import resolve
    try:
        cfg = (load_config(run.dir / 'config.yaml') if (run.dir / 'config.yaml').is_file()
               else resolve(run.profile, run.setting, None, [parse_override(s) for s in sets])[1])
    except (ConfigError, OSError):
        return None
    by_time = math.ceil(cfg.run.training_minutes * 60 / cfg.task.episode_s)
    return min(cfg.run.max_episodes, by_time) if cfg.run.max_episodes else by_time


# ---- running ----
class Runner:
    """One bringup at a time; Ctrl-C / SIGTERM reach the running one (it saves) and end here."""

    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.stopping = False

    def on_signal(self, signum, _frame):
        self.stopping = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)   # the bringup's own clean stop

    def run(self, cmd: list[str], log: Path) -> int:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open('a') as f:
            f.write(f"\n# {datetime.now().isoformat(timespec='seconds')}: {' '.join(cmd)}\n")
            f.flush()
            self.proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,
                                         env=dict(os.environ))
            if self.stopping:   # a signal that came just before the start
                self.proc.send_signal(signal.SIGINT)
            try:
                return self.proc.wait()
            finally:
                self.proc = None


def fmt_duration(seconds: float) -> str:
    minutes = int(round(seconds / 60))
    return f'{minutes // 60} h {minutes % 60:02d} min' if minutes >= 60 else f'{minutes} min'


def eta(pending: list[PlannedRun], rates: dict[str, list[tuple[float, int]]],
        episodes: int | None, sets: list[str]) -> str:
    """Remaining episodes x wall seconds per episode measured so far (per mode when known)."""
    every = [x for r in rates.values() for x in r]
    if not pending:
        return 'nothing left'
    if not every:
        return 'unknown'
    left = 0.0
    for run in pending:
        target = target_episodes(run, episodes, sets)
        if target is None:
            return 'unknown'
        measured = rates.get(run.mode) or every
        per_episode = sum(t for t, _ in measured) / max(1, sum(n for _, n in measured))
        left += max(0, target - len(read_episodes(run.dir))) * per_episode
    return f"{fmt_duration(left)} (about {datetime.fromtimestamp(time.time() + left):%H:%M})"


# ---- the report ----
def final_return(returns: np.ndarray, last: int) -> float:
    return float(np.mean(returns[-last:])) if len(returns) else float('nan')


def diff_ci(a, b) -> dict:
    """Mean of a minus mean of b with Welch's 95% CI (unequal variances, Student t)."""
    from asyncrl_ros.run.compare import t95
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return {'mean': d, 'ci95_half': float('nan'), 'low': float('nan'), 'high': float('nan'),
                'df': float('nan')}
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    # Welch-Satterthwaite degrees of freedom (no spread at all: the pooled count).
    df = ((va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if se > 0
          else len(a) + len(b) - 2)
    half = t95(int(df) + 1) * se   # df rounded down: the wider interval
    return {'mean': d, 'ci95_half': half, 'low': d - half, 'high': d + half, 'df': float(df)}


def learner_update_ms(run_dir: Path) -> float | None:
    """Median of the async learner's update times (its TensorBoard learner/update_ms)."""
    path = run_dir / 'tensorboard' / 'learner'
    if not path.is_dir():
        return None
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        events = EventAccumulator(str(path), size_guidance={'scalars': 0})
        events.Reload()
        values = [e.value for e in events.Scalars('learner/update_ms')]
    except (ImportError, KeyError):
        return None
    return float(np.median(values)) if values else None


def step_components(runs: list) -> dict[str, tuple[float, float]]:
    """Median and p99 (ms) per Table 5.2 component over the runs' policy steps; sampling and
    update over the steps that did them (sync), as the thesis times one update."""
    from asyncrl_ros.run.compare import COMPONENTS
    from asyncrl_ros.run.run_log import percentile_summary
    out = {}
    for name in COMPONENTS:
        values = np.concatenate([np.asarray(r.steps[name]) for r in runs if r.steps] or [[]])
        if name in ('sampling_ms', 'update_ms'):
            values = values[values > 0]
        summary = percentile_summary(values)
        out[name] = (summary['median'], summary['p99'])
    return out


def world_speed(run_dir: Path) -> dict:
    """The run's real-time factor (realtime.json when `auto` measured it, else config.yaml),
    its sample + update cost and what share of a wall-clock action cycle that is."""
    cfg = read_config(run_dir)
    cycle = float(cfg.get('task', {}).get('action_cycle_ms', float('nan')))
    factor = cfg.get('sim', {}).get('real_time_factor')
    measured, source = None, 'config.yaml'
    path = run_dir / 'realtime.json'
    if path.is_file():
        info = json.loads(path.read_text())
        factor, measured = info.get('factor', factor), info.get('measured_ms')
        source = 'realtime.json (auto)'
    if measured is None:   # sync measures its own sample + update on every learning step
        timing = run_dir / 'timing_summary.json'
        if timing.is_file():
            t = json.loads(timing.read_text())
            total = (t.get('sampling_ms_when_updating', {}).get('median', float('nan'))
                     + t.get('update_ms_when_updating', {}).get('median', float('nan')))
            measured, source = (total, 'sync steps') if np.isfinite(total) else (None, source)
    if measured is None:   # async: the learner's own update times (sampling runs beside them)
        measured = learner_update_ms(run_dir)
        source = 'learner updates' if measured is not None else source
    try:
        factor = float(factor)
    except (TypeError, ValueError):
        factor = float('nan')   # 'auto' with no record of what it chose
    world = measured * factor if measured is not None else float('nan')   # ms of world time
    return {'real_time_factor': factor, 'source': source, 'action_cycle_ms': cycle,
            'sample_update_ms': measured, 'world_update_ms': world,
            'update_share': world / cycle if cycle > 0 else float('nan'),
            'thesis_share': THESIS_SAMPLE_UPDATE_MS / cycle if cycle > 0 else float('nan')}


def num(x, digits=1) -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return '-'
    return '-' if not np.isfinite(x) else f'{x:.{digits}f}'


def ci(mean, half, digits=1) -> str:
    """'mean ± half', or the mean alone where there is no CI (NaN, or null from a JSON)."""
    half = num(half, digits)
    return num(mean, digits) + ('' if half == '-' else f' ± {half}')


def build_report(out: Path, runs: list[PlannedRun], scale: str, seeds: int, last: int,
                 command: str) -> tuple[str, dict]:
    from asyncrl_ros.run.compare import COMPONENTS, RunError, group_runs, load_run, mean_ci
    loaded, per_run = [], []
    for run in runs:
        try:
            r = load_run(run.dir, 'mode')
        except RunError:
            continue
        loaded.append(r)
        rows = read_episodes(run.dir)
        per_run.append({'mode': run.mode, 'seed': run.seed, 'dir': run.name,
                        'episodes': len(rows), 'steps': int(rows[-1]['total_steps']) if rows else 0,
                        'updates': r.updates, 'final_return': final_return(r.returns, last),
                        'wall_min': float(r.wall_min[-1]), 'finished': finished(run.dir),
                        'eval': r.evaluation and {k: r.evaluation.get(k) for k in
                                                  ('episodes', 'mean_return', 'ci95_half')},
                        **world_speed(run.dir)})
    groups = group_runs(loaded)
    modes = {}
    for mode in groups:
        mine = [p for p in per_run if p['mode'] == mode]
        fin_m, fin_h = mean_ci([[p['final_return']] for p in mine])
        upd_m, upd_h = mean_ci([[p['updates']] for p in mine])
        modes[mode] = {'runs': len(mine), 'final_return': float(fin_m[0]),
                       'final_return_ci95_half': float(fin_h[0]), 'updates': float(upd_m[0]),
                       'updates_ci95_half': float(upd_h[0]),
                       'wall_min': float(np.mean([p['wall_min'] for p in mine])),
                       'episodes': float(np.mean([p['episodes'] for p in mine]))}
    sync = [p['final_return'] for p in per_run if p['mode'] == 'sync']
    diffs = {f'{m} - sync': {**diff_ci([p['final_return'] for p in per_run if p['mode'] == m], sync),
                              'runs': [modes[m]['runs'], len(sync)]}
             for m in ('async1', 'async2') if m in modes and sync}
    components = {label: step_components(group) for label, group in groups.items()}
    learner_ms = {m: [p['sample_update_ms'] for p in per_run if p['mode'] == m
                      and p['source'] == 'learner updates'] for m in modes}
    data = {'scale': scale, 'setting': SCALES[scale].setting, 'seeds': seeds, 'last_k': last,
            'command': command, 'generated': datetime.now().isoformat(timespec='seconds'),
            'modes': modes, 'differences': diffs, 'runs': per_run, 'components': components}

    lines = [f'# Sync vs async on the simulated Panda reacher: {scale} scale', '',
             f"`{command}`, {datetime.now():%Y-%m-%d %H:%M}: franka_sim_sync, franka_sim_async1 and "
             f"franka_sim_async2 at setting `{SCALES[scale].setting}` ({SCALES[scale].about}), "
             f"seeds 0..{seeds - 1}. Final return: the mean return of a run's last {last} "
             'episodes; 95% CIs are Student t over runs (one run: none).', '',
             '![return against wall time](comparison/learning_curves.png) '
             '![updates per run](comparison/updates.png)', '',
             '## Final return and updates (paper Figures 6 and 7)', '',
             '| mode | runs | episodes | final return | total updates | wall time per run [min] |',
             '|---|---|---|---|---|---|']
    for mode, m in modes.items():
        lines.append(f"| {mode} | {m['runs']} | {num(m['episodes'], 0)} | "
                     f"{ci(m['final_return'], m['final_return_ci95_half'])} | "
                     f"{ci(m['updates'], m['updates_ci95_half'], 0)} | {num(m['wall_min'])} |")
    lines += ['', '## Async − sync (final return, Welch 95% CI)', '']
    if diffs:
        lines += ['| difference | mean | 95% CI | runs | reading |', '|---|---|---|---|---|']
        for name, d in diffs.items():
            if not np.isfinite(d['ci95_half']):
                reading = 'no CI: needs 2 or more runs per mode'
            elif d['low'] > 0:
                reading = f"{name.split()[0]} ahead"
            elif d['high'] < 0:
                reading = 'sync ahead'
            else:
                reading = f'no clear difference with {min(d["runs"])} run(s) per mode'
            interval = ('-' if not np.isfinite(d['ci95_half'])
                        else f"[{num(d['low'])}, {num(d['high'])}]")
            lines.append(f"| {name.replace(' - ', ' − ')} | {num(d['mean'])} | {interval} | "
                         f"{d['runs'][0]} vs {d['runs'][1]} | {reading} |")
    else:
        lines.append('No difference: it needs sync runs and async runs.')
    labels = list(modes)
    lines += ['', '## Component times (thesis Table 5.2), median / p99 ms', '',
              '| component | ' + ' | '.join(labels) + ' |', '|---' * (len(labels) + 1) + '|']
    for name in COMPONENTS:
        cells = []
        for m in labels:
            med, p99 = components[m][name]
            if m != 'sync' and name == 'sampling_ms':
                cells.append(f'in the {registry.MODES[m].replay_owner}')
            elif m != 'sync' and name == 'update_ms':
                ms = [x for x in learner_ms.get(m, []) if x is not None]
                cells.append(f'learner: {num(np.median(ms), 2)}' if ms else 'in the learner')
            else:
                cells.append(f'{num(med, 2)} / {num(p99, 2)}')
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    lines += ['', "Over the policy's steps; sync's sampling and update over the steps that "
              'updated. In the async modes the policy neither samples nor updates: the '
              "learner's update time is the median of its TensorBoard learner/update_ms.", '',
              '## World speed: the update cost against the action cycle', '',
              f'The thesis (RTX 2080Ti) spent {THESIS_SAMPLE_UPDATE_MS:g} ms on sampling + '
              f'update against its {THESIS_CYCLE_MS:g} ms async action cycle '
              f'({THESIS_SAMPLE_UPDATE_MS / THESIS_CYCLE_MS:.3g} cycles; 0.6 of sync\'s 75 ms): '
              'that cost, paid inside the cycle, is what makes sync slow. On a CPU an update takes '
              'far longer, so the simulated world runs slower than real time by the real-time '
              'factor f: a sample + update of m ms of wall time lets m·f ms of world time pass. '
              '`sim.real_time_factor: auto` (the quick setting) measures m before the run and sets '
              f'f = min(1, {THESIS_SAMPLE_UPDATE_MS:g} / m): every update costs the world the '
              f"thesis' {THESIS_SAMPLE_UPDATE_MS:g} ms, whatever the mode's cycle; a fixed factor "
              'does the same for an m known beforehand. asyncrl-reproduce times m once, before '
              'its first run, and gives every run that f (plan.json): the modes meet one world '
              'speed. Per run (m: what auto measured, in '
              "realtime.json; else the run's own: sync's median sampling + update on its learning "
              "steps, async's median learner update):", '',
              '| run | f | m from | m [ms wall] | m·f [ms world] | cycle c [ms] | m·f / c | '
              f'thesis {THESIS_SAMPLE_UPDATE_MS:g} / c |', '|---|---|---|---|---|---|---|---|']
    for p in per_run:
        lines.append(f"| {p['dir']} | {num(p['real_time_factor'], 4)} | {p['source']} | "
                     f"{num(p['sample_update_ms'])} | {num(p['world_update_ms'])} | "
                     f"{num(p['action_cycle_ms'], 0)} | {num(p['update_share'], 2)} | "
                     f"{num(p['thesis_share'], 2)} |")
    factors = {p['mode']: p['real_time_factor'] for p in per_run}
    if len({round(f, 6) for f in factors.values() if np.isfinite(f)}) > 1:
        lines += ['', 'The modes ran their worlds at different speeds ('
                  + ', '.join(f'{m} {num(f, 4)}' for m, f in factors.items())
                  + '), each from its own measured learner: a minute of wall time is then a '
                  'different amount of world time per mode.']
    lines += ['', '## Runs', '',
              '| run | seed | episodes | steps | updates | final return | wall [min] | '
              'finished | deterministic eval |', '|---|---|---|---|---|---|---|---|---|']
    for p in per_run:
        ev = p['eval']
        evaluated = (f"{ci(ev['mean_return'], ev['ci95_half'])} "
                     f"({ev['episodes']} episodes)" if ev else '-')
        lines.append(f"| {p['dir']} | {p['seed']} | {p['episodes']} | {p['steps']} | "
                     f"{p['updates']} | {num(p['final_return'])} | {num(p['wall_min'])} | "
                     f"{'yes' if p['finished'] else 'no'} | {evaluated} |")
    shown = {x.dir for x in loaded}
    missing = [r.name for r in runs if r.dir not in shown]
    if missing:
        lines += ['', f"Not in this report (no episode logged yet): {', '.join(missing)}."]
    lines += ['', 'Files: comparison/ (asyncrl-compare: learning_curves.csv/png, updates.csv, '
              'updates_summary.csv, updates.png, components.csv), report.json (these numbers), '
              'one run folder per mode and seed (TensorBoard: `tensorboard --logdir '
              f'{out}`), logs/ (each bringup\'s output).', '']
    return '\n'.join(lines), data


def write_report(out: Path, runs: list[PlannedRun], scale: str, seeds: int, last: int,
                 command: str) -> Path | None:
    from asyncrl_ros.run import compare
    from asyncrl_ros.run.run_log import strict_json
    dirs = [str(r.dir) for r in runs if read_episodes(r.dir)]
    if not dirs:
        print('asyncrl-reproduce: no run has logged an episode yet: no comparison', file=sys.stderr)
        return None
    compare.main([*dirs, '--out', str(out / 'comparison')])
    text, data = build_report(out, runs, scale, seeds, last, command)
    (out / 'report.md').write_text(text)
    (out / 'report.json').write_text(json.dumps(strict_json(data), indent=2, default=str))
    print(f'[reproduce] report: {out / "report.md"}', flush=True)
    return out / 'report.md'


# ---- the command ----
def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog='asyncrl-reproduce', description=__doc__.splitlines()[0])
    parser.add_argument('--scale', default='quick',
                        help='quick (minutes per run on a CPU) or paper (the seeds\' baseline, a '
                             'GPU\'s job); default quick')
    parser.add_argument('--seeds', type=int, default=3, help='runs per mode, run.seed = 0..S-1 '
                        '(default 3)')
    parser.add_argument('--out', help='output folder (default reproduce/<scale>)')
    parser.add_argument('--episodes', type=int,
                        help="episodes per run (default: the scale's: quick 30, paper the "
                             "setting's 72 min of training time)")
    parser.add_argument('--last', type=int, default=LAST_K,
                        help=f'final return = mean of the last K episodes (default {LAST_K})')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                        help='override one value in every new run (repeatable)')
    parser.add_argument('--dry-run', action='store_true',
                        help='print the plan (each run, its state and command) and exit')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.scale not in SCALES:
        return usage_error(f"unknown scale '{args.scale}' (choose one of {', '.join(SCALES)})")
    if args.seeds < 1:
        return usage_error(f'--seeds must be at least 1, got {args.seeds}')
    if args.episodes is not None and args.episodes < 1:
        return usage_error(f'--episodes must be at least 1, got {args.episodes}')
    if args.last < 1:
        return usage_error(f'--last must be at least 1, got {args.last}')
    out = Path(args.out or Path('reproduce') / args.scale).resolve()
    episodes = args.episodes or SCALES[args.scale].episodes
    runs = plan_runs(args.scale, args.seeds, out)
    try:
        for s in args.set:
            parse_override(s)
        check_out(out, args.scale, runs)
        if not args.dry_run:   # the setting must exist before 3 x S runs fail on it
            from asyncrl_ros.run.profiles import resolve
            for mode in MODES:
                resolve(PROFILES[mode], SCALES[args.scale].setting, None,
                        [parse_override(s) for s in args.set])
    except (ConfigError, OSError, ValueError) as err:
        return usage_error(str(err).splitlines()[0] if str(err) else type(err).__name__)
    command = 'asyncrl-reproduce ' + ' '.join(argv if argv is not None else sys.argv[1:])
    states = {r.name: r.state(episodes) for r in runs}
    print(f'[reproduce] {args.scale} scale: {len(runs)} runs (3 modes x {args.seeds} seeds) in '
          f"{out}: {sum(s == 'done' for s in states.values())} finished, "
          f"{sum(s == 'resume' for s in states.values())} to resume", flush=True)
    if args.dry_run:
        for r in runs:
            state = states[r.name]
            cmd = '' if state == 'done' else ' '.join(r.command(episodes, args.set, state == 'resume'))
            print(f'{r.name:<14} {r.profile:<18} setting {r.setting:<9} seed {r.seed:<3} '
                  f'{state:<8} {cmd}')
        return 0
    out.mkdir(parents=True, exist_ok=True)
    try:
        speed = shared_world_speed(out, SCALES[args.scale].setting, args.set)
    except ConfigError as err:
        return usage_error(str(err).splitlines()[0])
    sets = list(args.set)
    if speed is not None:
        sets.append(f"sim.real_time_factor={speed['factor']}")
        print(f"[reproduce] every new run's world at {speed['factor']:.4g}x real time (one sample "
              f"+ update timed at {speed['measured_ms']:.1f} ms, plan.json)", flush=True)
    (out / PLAN).write_text(json.dumps({'scale': args.scale, 'setting': SCALES[args.scale].setting,
                                        'seeds': args.seeds, 'episodes': episodes,
                                        'set': args.set, 'world_speed': speed}, indent=2))
    runner = Runner()
    signal.signal(signal.SIGINT, runner.on_signal)
    signal.signal(signal.SIGTERM, runner.on_signal)
    rates: dict[str, list[tuple[float, int]]] = {}
    failed = []
    pending = [r for r in runs if states[r.name] != 'done']
    while pending and not runner.stopping:
        run = pending.pop(0)
        state = run.state(episodes)
        if state == 'restart':   # started but never saved: its logs would be appended to
            aside = out / '.abandoned' / f"{run.name}-{datetime.now():%Y%m%d-%H%M%S}"
            aside.parent.mkdir(parents=True, exist_ok=True)
            run.dir.rename(aside)
            print(f'[reproduce] {run.name}: nothing saved by its earlier start; moved to {aside}')
        before = len(read_episodes(run.dir))
        doing = f'resuming at episode {before}' if state == 'resume' else 'starting'
        print(f'[reproduce] {run.name}: {doing} ({run.profile}, seed {run.seed})', flush=True)
        t0 = time.monotonic()
        log = out / 'logs' / f'{run.name}.log'
        code = runner.run(run.command(episodes, sets, state == 'resume'), log)
        took = time.monotonic() - t0
        rows = read_episodes(run.dir)
        if len(rows) > before:
            rates.setdefault(run.mode, []).append((took, len(rows) - before))
        if runner.stopping:
            break
        if code == 2:   # a config error: every other run would fail the same way
            tail = log.read_text().strip().splitlines()[-1:] or ['']
            return usage_error(f'{run.name}: the bringup refused its config: {tail[0]} (log: {log})')
        if not finished(run.dir, episodes):
            failed.append(run.name)
            print(f'[reproduce] {run.name}: ended with code {code} after {len(rows)} episodes, '
                  f'unfinished (log: {log}); rerun to resume it', flush=True)
            continue
        done = sum(r.state(episodes) == 'done' for r in runs)
        last = final_return(np.array([float(r['return']) for r in rows]), args.last)
        print(f"[reproduce] {run.name} finished: {len(rows)} episodes, {rows[-1]['updates']} "
              f'updates, last-{args.last} return {last:.1f}, {took / 60:.1f} min; {done}/{len(runs)} '
              f'runs done; ETA {eta(pending, rates, episodes, args.set)}', flush=True)
    if runner.stopping:
        print('[reproduce] stopped; the same command resumes where this one ended', flush=True)
    write_report(out, runs, args.scale, args.seeds, args.last, command)
    if runner.stopping:
        return 130
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
