"""Action-cycle timing at 40 ms with the learner at full load: sync, async1 and async2 side by side.

Each mode runs the real graph through the bringup (one node per process, DDS on loopback,
a ROS domain of its own), one mode after the other, with the same nominal cycle (40 ms,
also for sync), the world at real time (sim.real_time_factor=1), 50 random steps and, in
the async modes, an update cap so high that the learner never idles. Sync does exactly one
update per step (its cap of 1: the sync cap counts updates per step inside the timer turn,
so a high cap would mean hundreds of updates in one turn, not a busier learner).

From each run's steps.csv it keeps the steps after learning began (first step with an
update) less each episode's first step (its 'cycle' starts at the reset, not at a tick),
and reports p50/p99/max of |wall_cycle_ms - 40| (wall clock) and |cycle_ms - 40| (sim
time, which moves in the world's 5 ms clock steps), the share of wall cycles over 41 ms,
and updates per learning step. Goal (issue): p99 wall deviation <= 1 ms for the async
modes on this 2-core machine; PASS/MISS is printed per async mode.

Usage: python bench/bench_cycle_timing.py [--quick] [--episodes N] [--batch B] [--hidden H]
       [--modes sync async1 async2] [--keep]
The very last line printed is one JSON object of the figures.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CYCLE_MS = 40.0
GOAL_P99_MS = 1.0
OVER_MS = 41.0
INIT_RANDOM_STEPS = 50
PROFILES = {'sync': 'franka_sim_sync', 'async1': 'franka_sim_async1', 'async2': 'franka_sim_async2'}
ASYNC_CAP = 1000   # updates per step: never reached, so the learner never waits on the cap


def overrides(mode: str, batch: int, hidden: int) -> list[str]:
    sets = {'task.action_cycle_ms': CYCLE_MS, 'sim.real_time_factor': 1.0,
            'run.init_random_steps': INIT_RANDOM_STEPS, 'task.episode_s': 4.0, 'task.reset_s': 1.0,
            'run.max_updates_per_step': 1 if mode == 'sync' else ASYNC_CAP,
            'sac.batch_size': batch, 'sac.hidden_dim': hidden}
    return [arg for key, value in sets.items() for arg in ('--set', f'{key}={value}')]


def busy_domains() -> set[int]:
    """ROS domains with a DDS participant on this host (Fast DDS binds UDP 7400 + 250 d + ...)."""
    busy = set()
    for table in ('/proc/net/udp', '/proc/net/udp6'):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            port = int(line.split()[1].rsplit(':', 1)[1], 16)
            if 7400 <= port < 7400 + 250 * 101:
                busy.add((port - 7400) // 250)
    return busy


def free_domain(start: int) -> int:
    """The first domain from `start` (1..100, wrapping) that nobody here uses right now."""
    busy = busy_domains()
    for i in range(100):
        domain = 1 + (start - 1 + i) % 100
        if domain not in busy:
            return domain
    raise RuntimeError('every ROS domain 1..100 is in use on this host')


def run_mode(mode: str, run_dir: Path, episodes: int, batch: int, hidden: int, domain: int,
             timeout: float) -> tuple[int, float]:
    env = dict(os.environ)
    env.update(ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST', ROS_DOMAIN_ID=str(domain))
    env.setdefault('MUJOCO_GL', 'egl')
    env.setdefault('HOME', str(Path.home()))
    cmd = [sys.executable, '-m', 'asyncrl_ros.bringup', PROFILES[mode], '--episodes', str(episodes),
           '--run-dir', str(run_dir), '--quiet', *overrides(mode, batch, hidden)]
    t0 = time.monotonic()
    with (run_dir.parent / f'{mode}.log').open('w') as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # SIGINT: the bringup stops its nodes (they live in sessions of their own).
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            code = -1
    return code, time.monotonic() - t0


def finite(obj):
    """NaN/inf -> None, so the JSON line stays strict JSON."""
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return None if isinstance(obj, float) and not math.isfinite(obj) else obj


def percentiles(values: np.ndarray) -> dict:
    if values.size == 0:
        return {'p50': math.nan, 'p99': math.nan, 'max': math.nan}
    return {'p50': float(np.percentile(values, 50)), 'p99': float(np.percentile(values, 99)),
            'max': float(values.max())}


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def analyse(run_dir: Path) -> dict:
    rows = read_rows(run_dir / 'steps.csv')
    summary = json.loads((run_dir / 'summary.json').read_text())
    learning_from = next((int(r['step']) for r in rows
                          if int(r['step']) > INIT_RANDOM_STEPS and int(r['updates']) > 0), None)
    kept, prev_episode = [], None
    for r in rows:
        first_of_episode = r['episode'] != prev_episode
        prev_episode = r['episode']
        if learning_from is not None and int(r['step']) >= learning_from and not first_of_episode:
            kept.append(r)
    wall = np.array([float(r['wall_cycle_ms']) for r in kept])
    sim = np.array([float(r['cycle_ms']) for r in kept])
    wall, sim = wall[np.isfinite(wall)], sim[np.isfinite(sim)]
    update_ms = [float(r['update_ms']) for r in kept if float(r['update_ms']) > 0]
    learning_steps = summary['steps'] - (learning_from or summary['steps']) + 1
    return {'steps': summary['steps'], 'learning_from_step': learning_from, 'n': int(wall.size),
            'wall_dev_ms': percentiles(np.abs(wall - CYCLE_MS)),
            'sim_dev_ms': percentiles(np.abs(sim - CYCLE_MS)),
            'wall_over_41ms': float(np.mean(wall > OVER_MS)) if wall.size else math.nan,
            'sim_over_41ms': float(np.mean(sim > OVER_MS)) if sim.size else math.nan,
            'updates': summary['updates'],
            'updates_per_learning_step': summary['updates'] / max(learning_steps, 1),
            'updates_per_step': summary['updates'] / max(summary['steps'], 1),
            'in_cycle_update_ms_p50': float(np.median(update_ms)) if update_ms else 0.0,
            'transitions_missing': summary.get('transitions_missing')}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='batch 32 (unless --batch is given)')
    ap.add_argument('--episodes', type=int, default=5, help='episodes per mode (100 steps each)')
    ap.add_argument('--batch', type=int, help='SAC batch size (default 128, the paper; 32 with --quick)')
    ap.add_argument('--hidden', type=int, default=1024, help='SAC hidden size (paper: 1024)')
    ap.add_argument('--modes', nargs='+', default=list(PROFILES), choices=list(PROFILES))
    ap.add_argument('--domain-id', type=int,
                    help='ROS domain for every mode (default: a free one per mode, 1..100)')
    ap.add_argument('--timeout', type=float, default=1800.0,
                    help='seconds for the sync run; an async run gets 180 + 40 per episode')
    ap.add_argument('--retries', type=int, default=1, help='runs again after a failed run')
    ap.add_argument('--out-dir', help='where the run folders go (default: a temporary folder)')
    ap.add_argument('--keep', action='store_true', help='keep the run folders')
    args = ap.parse_args()
    batch = args.batch or (32 if args.quick else 128)
    if args.episodes < 1 or batch < 1 or args.hidden < 1 or args.retries < 0:
        raise SystemExit('--episodes, --batch and --hidden must be >= 1, --retries >= 0')
    if args.domain_id is not None and not 0 <= args.domain_id <= 232:
        raise SystemExit(f'--domain-id must be in 0..232, got {args.domain_id}')
    out = Path(args.out_dir or tempfile.mkdtemp(prefix='bench_cycle_')).resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(f'{os.cpu_count()} CPUs; 160x90 images, batch {batch}, hidden {args.hidden}; cycle '
          f'{CYCLE_MS:g} ms, real-time world, {args.episodes} x 100-step episodes per mode; '
          f'runs in {out}', flush=True)
    results: dict = {}
    for i, mode in enumerate(args.modes):
        run_dir = out / mode
        # An async episode takes ~5-10 s of wall time: more means the run is stuck.
        timeout = args.timeout if mode == 'sync' else min(args.timeout, 180 + 40 * args.episodes)
        failures: list[str] = []
        for attempt in range(1 + args.retries):
            if run_dir.exists():
                shutil.rmtree(run_dir)
            load0 = os.getloadavg()[0]
            domain = args.domain_id if args.domain_id is not None else free_domain(
                1 + (os.getpid() + 3 * i + attempt) % 100)
            code, seconds = run_mode(mode, run_dir, args.episodes, batch, args.hidden, domain,
                                     timeout)
            if code == 0 and (run_dir / 'summary.json').is_file():
                results[mode] = {**analyse(run_dir), 'wall_s': seconds, 'ros_domain': domain,
                                 'failed_attempts': failures,
                                 'loadavg_1min': [load0, os.getloadavg()[0]]}
                print(f'  {mode}: {seconds:.0f} s, load average {load0:.2f} -> '
                      f'{os.getloadavg()[0]:.2f}', flush=True)
                break
            what = f'timed out after {timeout:.0f} s' if code == -1 else f'exited with {code}'
            episodes = len(read_rows(run_dir / 'episodes.csv'))
            failures.append(f'bringup {what} after {episodes} episode(s) (ROS domain {domain})')
            results[mode] = {'error': f'{failures[-1]}; see {out / (mode + ".log")}',
                             'failed_attempts': failures, 'wall_s': seconds}
            print(f'  {mode}: FAILED ({failures[-1]})', flush=True)

    ok = {m: r for m, r in results.items() if 'error' not in r}
    sync_p99 = ok['sync']['wall_dev_ms']['p99'] if 'sync' in ok else math.nan
    for mode, r in ok.items():
        if mode != 'sync':
            p99 = r['wall_dev_ms']['p99']
            r['pass'] = bool(p99 <= GOAL_P99_MS)
            r['sync_p99_over_this_p99'] = sync_p99 / p99 if p99 > 0 else math.inf

    print(f'\nGoal (issue): async p99 |wall cycle - {CYCLE_MS:g} ms| <= {GOAL_P99_MS:g} ms on this '
          f'{os.cpu_count()}-core machine, learner at full load. |deviation| in ms over the '
          'steps after learning began.')
    print(f"{'mode':<7} {'n':>4} {'wall p50':>8} {'p99':>7} {'max':>7} {'sim p50':>8} {'p99':>7} "
          f"{'max':>7} {'>41ms':>6} {'upd/step':>8} {'sync/this p99':>13}  goal")
    for mode, r in results.items():
        if 'error' in r:
            print(f'{mode:<7} FAILED: {r["error"]}')
            continue
        w, s = r['wall_dev_ms'], r['sim_dev_ms']
        ratio = r.get('sync_p99_over_this_p99', math.nan)
        ratio = f'{ratio:.1f}x' if math.isfinite(ratio) else '-'
        verdict = ('PASS' if r['pass'] else 'MISS') if mode != 'sync' else '-'
        print(f"{mode:<7} {r['n']:>4} {w['p50']:>8.2f} {w['p99']:>7.2f} {w['max']:>7.1f} "
              f"{s['p50']:>8.2f} {s['p99']:>7.2f} {s['max']:>7.1f} {100 * r['wall_over_41ms']:>5.1f}% "
              f"{r['updates_per_learning_step']:>8.2f} {ratio:>13}  {verdict}")
    for mode, r in ok.items():
        extra = (f", median in-cycle update {r['in_cycle_update_ms_p50']:.0f} ms"
                 if mode == 'sync' else '')
        print(f"  {mode}: learning from step {r['learning_from_step']} of {r['steps']}, "
              f"{r['updates']} updates, {r['transitions_missing']} transitions missing, "
              f"{r['wall_s']:.0f} s wall{extra}")
        if r['failed_attempts']:
            print(f"  {mode}: failed before: {'; '.join(r['failed_attempts'])}")
    print(json.dumps(finite({
        'bench': 'cycle_timing', 'cpus': os.cpu_count(), 'cycle_ms': CYCLE_MS,
        'goal_p99_ms': GOAL_P99_MS, 'batch': batch, 'hidden': args.hidden, 'image': [160, 90],
        'episodes': args.episodes, 'quick': args.quick, 'init_random_steps': INIT_RANDOM_STEPS,
        'async_cap': ASYNC_CAP, 'modes': results})))
    if not args.keep and not args.out_dir:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == '__main__':
    main()
