"""asyncrl-compare on synthetic run folders written in run_log's and the bringup's formats;
the CSV numbers are checked against values computed by hand."""
from __future__ import annotations

import csv
import math

import pytest
import yaml

from asyncrl_ros.run.compare import main, smooth
from asyncrl_ros.run.config import load_config
from asyncrl_ros.run.run_log import RunLog

T95_2, T95_3 = 12.706, 4.303   # Student t, 95% two-sided, df = 1 and 2


def make_run(root, name, mode, profile, episodes, steps=None, files=('run.yaml', 'config.yaml')):
    """episodes: [(wall_min, return, updates)], steps: {component: [ms, ...]}."""
    run_dir = root / name
    log = RunLog(run_dir)
    if steps:
        n = len(next(iter(steps.values())))
        for i in range(n):
            log.step({'step': i, 'episode': 1, **{c: v[i] for c, v in steps.items()}})
    for i, (wall_min, ret, updates) in enumerate(episodes, 1):
        log.episode({'episode': i, 'return': ret, 'steps': 10, 'wall_time_s': wall_min * 60,
                     'updates': updates})
    if 'config.yaml' in files:
        (run_dir / 'config.yaml').write_text(yaml.safe_dump(load_config({'mode': mode}).to_dict(),
                                                            sort_keys=False))
    if 'run.yaml' in files:
        (run_dir / 'run.yaml').write_text(yaml.safe_dump(
            {'profile': profile, 'nodes': ['policy'], 'started': '2026-01-01T00:00:00'}))
    return run_dir


def read(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def components(steps_ms):
    zeros = [0.0] * len(steps_ms)
    return {'cycle_ms': steps_ms, 'action_ms': zeros, 'sampling_ms': zeros, 'update_ms': steps_ms,
            'environment_ms': zeros}


@pytest.fixture
def runs(tmp_path):
    # sync: 3 runs with returns a*t at t = 1..4 min; one logs its episodes at other times.
    a = [1.0, 2.0, 4.5]
    dirs = [make_run(tmp_path, f's{k}', 'sync', 'franka_sim_sync',
                     [(t, a[k] * t, 100 * (k + 1) * t) for t in (1, 2, 3, 4)],
                     components([float(v) for v in range(1, 101)]) if k == 0 else None)
            for k in range(3)]
    # async1: 2 runs; the second reaches 1 at 3 min from 0 at 1 min (interpolated at 2: 0.5).
    dirs.append(make_run(tmp_path, 'a0', 'async1', 'franka_sim_async1',
                         [(1, 0.0, 50), (2, 1.0, 80), (4, 3.0, 100)], components([5.0] * 10)))
    dirs.append(make_run(tmp_path, 'a1', 'async1', 'franka_sim_async1',
                         [(0.5, 7.0, 100), (1, 0.0, 150), (3, 1.0, 250), (5, 9.0, 300)],
                         components([7.0] * 30)))
    (dirs[1] / 'steps.csv').unlink()
    return dirs


def test_curves_updates_and_components(runs, tmp_path, capsys):
    missing = make_run(tmp_path, 'broken', 'sync', 'x', [])    # no episodes.csv
    out = tmp_path / 'out'
    code = main([*map(str, runs), str(missing), str(tmp_path / 'nowhere'), '--out', str(out),
                 '--smooth', '1', '--points', '4'])
    assert code == 0
    err = capsys.readouterr()
    assert f'skipping {missing}: ' in err.err and 'no episodes.csv' in err.err
    assert f"skipping {tmp_path / 'nowhere'}" in err.err
    assert f'{runs[1]}: no steps.csv' in err.err
    assert 'update_ms' in err.out and 'sync median' in err.out

    curves = read(out / 'learning_curves.csv')
    sync = [r for r in curves if r['label'] == 'sync']
    assert [float(r['time_min']) for r in sync] == [1, 2, 3, 4]
    at2 = sync[1]   # returns 2, 4, 9
    assert float(at2['mean_return']) == pytest.approx(5.0)
    assert float(at2['ci95_half']) == pytest.approx(T95_3 * math.sqrt(13) / math.sqrt(3))
    assert float(at2['low']) == pytest.approx(5.0 - float(at2['ci95_half']))
    assert int(at2['n_runs']) == 3
    # async1's grid covers 1..4 min (latest first episode, earliest last one).
    asy = [r for r in curves if r['label'] == 'async1']
    assert [float(r['time_min']) for r in asy] == [1, 2, 3, 4]
    assert float(asy[1]['mean_return']) == pytest.approx((1.0 + 0.5) / 2)   # 0.5: interpolated
    assert float(asy[1]['ci95_half']) == pytest.approx(T95_2 * 0.5 / math.sqrt(2) / math.sqrt(2))
    assert float(asy[3]['mean_return']) == pytest.approx((3.0 + 5.0) / 2)

    per_run = {r['run']: int(r['total_updates']) for r in read(out / 'updates.csv')}
    assert per_run[str(runs[2])] == 1200 and per_run[str(runs[4])] == 300
    summary = {r['label']: r for r in read(out / 'updates_summary.csv')}
    assert float(summary['sync']['mean_updates']) == pytest.approx(800)   # 400, 800, 1200
    assert float(summary['sync']['ci95_half']) == pytest.approx(T95_3 * 400 / math.sqrt(3))
    assert float(summary['async1']['mean_updates']) == pytest.approx(200)   # 100, 300
    std = math.sqrt(2) * 100
    assert float(summary['async1']['ci95_half']) == pytest.approx(T95_2 * std / math.sqrt(2))

    comp = {(r['label'], r['run'], r['component']): r for r in read(out / 'components.csv')}
    upd = comp[('sync', 'all', 'update_ms')]        # 1..100 ms: only run s0 has steps.csv
    assert float(upd['median_ms']) == 50.5 and int(upd['n']) == 100
    assert float(upd['p99_ms']) == pytest.approx(99.01)
    pooled = comp[('async1', 'all', 'cycle_ms')]    # 10 steps at 5 ms, 30 at 7 ms
    assert (float(pooled['median_ms']), int(pooled['n'])) == (7.0, 40)
    assert float(comp[('async1', str(runs[3]), 'cycle_ms')]['median_ms']) == 5.0

    for png in ('learning_curves.png', 'updates.png'):
        assert (out / png).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_labels_smoothing_and_errors(runs, tmp_path, capsys):
    out = tmp_path / 'out'
    assert main([*map(str, runs[3:]), str(runs[0]), '--out', str(out), '--label-by', 'profile',
                 '--smooth', '2', '--points', '3']) == 0
    labels = {r['label'] for r in read(out / 'updates_summary.csv')}
    assert labels == {'franka_sim_sync', 'franka_sim_async1'}
    # A single run has no confidence band; smoothing: trailing mean of 2 episodes.
    sync = [r for r in read(out / 'learning_curves.csv') if r['label'] == 'franka_sim_sync']
    # Smoothed 1, 1.5, 2.5, 3.5 at 1..4 min, read at 1, 2.5 and 4 min.
    assert [float(r['mean_return']) for r in sync] == pytest.approx([1.0, 2.0, 3.5])
    assert all(r['ci95_half'] == 'nan' for r in sync)
    assert list(smooth([1.0, 2.0, 3.0, 10.0], 3)) == pytest.approx([1.0, 1.5, 2.0, 5.0])

    assert main([str(runs[0]), '--out', str(out), '--label-by', 'dir']) == 0
    assert {r['label'] for r in read(out / 'updates_summary.csv')} == {'s0'}

    no_config = make_run(tmp_path, 'nocfg', 'sync', 'p', [(1, 1.0, 1)], files=('run.yaml',))
    assert main([str(no_config), '--out', str(out)]) == 1
    err = capsys.readouterr().err
    assert f'skipping {no_config}: ' in err and 'no config.yaml' in err
    assert 'no usable run folder' in err
    with pytest.raises(SystemExit):
        main([str(runs[0]), '--label-by', 'colour'])
