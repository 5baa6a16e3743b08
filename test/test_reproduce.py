"""asyncrl-reproduce: its plan (3 modes x S seeds, profiles, settings, seeds), what it skips
and resumes, its report; and, on one real reproduction of 2 short episodes per run, the
TensorBoard event files of the policy and the learner and `asyncrl --eval`."""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from asyncrl_ros.run.config import load_config
from asyncrl_ros.run.reproduce import SCALES, diff_ci, main, plan_runs, shared_world_speed
from conftest import ROOT

T95_DF2 = 4.303
# test_bringup's short run, shorter: 13 steps (sync) or 25 (async) per episode, the world at
# 0.5x, updates from the 17th step on (a batch of 16).
TINY = ['--set', 'task.episode_s=1.0', '--set', 'task.reset_s=1.0',
        '--set', 'sim.real_time_factor=0.5', '--set', 'run.init_random_steps=10',
        '--set', 'sac.batch_size=16', '--set', 'sac.hidden_dim=256', '--set', 'sac.torch_threads=1',
        '--set', 'run.tensorboard_every_updates=5', '--set', 'run.tensorboard_images_every=1']


def fake_run(run_dir, profile, seed, returns, *, summary=True, checkpoint=True, max_episodes=2,
             training_minutes=72.0):
    """A run folder in the bringup's and the policy's formats."""
    run_dir.mkdir(parents=True)
    cfg = load_config({'mode': profile.split('_')[-1], 'run': {
        'seed': seed, 'max_episodes': max_episodes, 'training_minutes': training_minutes}})
    (run_dir / 'config.yaml').write_text(yaml.safe_dump(cfg.to_dict()))
    (run_dir / 'run.yaml').write_text(yaml.safe_dump({'profile': profile}))
    with (run_dir / 'episodes.csv').open('w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=['episode', 'return', 'sim_time_s', 'wall_time_s',
                                          'updates', 'total_steps'])
        w.writeheader()
        for i, r in enumerate(returns, 1):
            w.writerow({'episode': i, 'return': r, 'sim_time_s': 6.0, 'wall_time_s': 60.0 * i,
                        'updates': 100 * i, 'total_steps': 150 * i})
    if summary:
        (run_dir / 'summary.json').write_text('{}')
    if checkpoint:
        (run_dir / 'checkpoint.pt').write_bytes(b'')


def test_bad_input_is_one_line(capsys):
    for args, message in ((['--scale', 'huge'], "unknown scale 'huge' (choose one of quick, paper)"),
                          (['--seeds', '0'], '--seeds must be at least 1, got 0')):
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f'asyncrl-reproduce: error: {message}']


def test_plan_modes_seeds_profiles_and_settings(tmp_path, capsys):
    runs = plan_runs('quick', 2, tmp_path)
    assert [(r.mode, r.seed, r.profile, r.setting, r.dir.name) for r in runs] == [
        ('sync', 0, 'franka_sim_sync', 'quick', 'sync-seed0'),
        ('async1', 0, 'franka_sim_async1', 'quick', 'async1-seed0'),
        ('async2', 0, 'franka_sim_async2', 'quick', 'async2-seed0'),
        ('sync', 1, 'franka_sim_sync', 'quick', 'sync-seed1'),
        ('async1', 1, 'franka_sim_async1', 'quick', 'async1-seed1'),
        ('async2', 1, 'franka_sim_async2', 'quick', 'async2-seed1')]
    assert SCALES['paper'].setting == 'baseline'
    cmd = runs[4].command(30, ['sac.batch_size=32'], resume=False)
    assert cmd[1:] == ['-m', 'asyncrl_ros.run.bringup', 'franka_sim_async1', '--setting', 'quick',
                       '--run-dir', str(tmp_path / 'async1-seed1'), '--set', 'run.seed=1',
                       '--set', 'sac.batch_size=32', '--episodes', '30']
    assert runs[0].command(None, [], resume=True)[1:] == [
        '-m', 'asyncrl_ros.run.bringup', '--resume', str(tmp_path / 'sync-seed0')]
    # --dry-run prints the plan and starts nothing (it needs no `quick` setting yet).
    assert main(['--seeds', '2', '--out', str(tmp_path), '--dry-run']) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 7 and all(' new ' in line for line in out[1:])
    assert '--setting quick' in out[1] and '--episodes 30' in out[1]
    assert not (tmp_path / 'plan.json').exists()


def test_skips_finished_resumes_interrupted_and_restarts_unsaved(tmp_path, capsys):
    fake_run(tmp_path / 'sync-seed0', 'franka_sim_sync', 0, [1.0, 2.0])              # done
    fake_run(tmp_path / 'async1-seed0', 'franka_sim_async1', 0, [1.0], summary=False)  # stopped
    fake_run(tmp_path / 'async2-seed0', 'franka_sim_async2', 0, [1.0, 2.0], max_episodes=0,
             training_minutes=0.2)                                        # 12 s of episodes: done
    fake_run(tmp_path / 'sync-seed1', 'franka_sim_sync', 1, [1.0], checkpoint=False)  # unsaved
    runs = plan_runs('paper', 2, tmp_path)
    assert [r.state(2) for r in runs] == ['done', 'resume', 'done', 'restart', 'new', 'new']
    assert runs[1].state(1) == 'resume'   # summary.json missing: the bringup never ended it
    assert main(['--scale', 'paper', '--seeds', '2', '--episodes', '2', '--out', str(tmp_path),
                 '--dry-run']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert '2 finished, 1 to resume' in lines[0]
    assert lines[2].split()[6] == 'resume' and f"--resume {tmp_path / 'async1-seed0'} --episodes 2" in lines[2]
    assert lines[1].rstrip().endswith('done')
    # A folder of another seed, or of another scale: refused before anything runs.
    (tmp_path / 'plan.json').write_text(json.dumps({'scale': 'quick'}))
    assert main(['--scale', 'paper', '--seeds', '1', '--out', str(tmp_path)]) == 2
    assert "holds a 'quick' reproduction" in capsys.readouterr().err
    (tmp_path / 'plan.json').unlink()
    fake_run(tmp_path / 'other' / 'sync-seed0', 'franka_sim_sync', 5, [1.0])
    assert main(['--scale', 'paper', '--out', str(tmp_path / 'other'), '--dry-run']) == 2
    assert 'holds a franka_sim_sync seed 5 run' in capsys.readouterr().err


def test_async_minus_sync_ci_is_welch():
    d = diff_ci([4.0, 6.0, 8.0], [1.0, 2.0, 3.0])
    assert d['mean'] == pytest.approx(4.0)
    se = math.sqrt(4.0 / 3 + 1.0 / 3)
    df = (5 / 3) ** 2 / ((4 / 3) ** 2 / 2 + (1 / 3) ** 2 / 2)   # 2.94: rounded down to 2
    assert df == pytest.approx(d['df']) and d['ci95_half'] == pytest.approx(T95_DF2 * se)
    assert math.isnan(diff_ci([1.0], [2.0, 3.0])['ci95_half'])


def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def scalars(path) -> set[str]:
    acc = EventAccumulator(str(path))
    acc.Reload()
    return set(acc.Tags()['scalars']) | {f"image:{t}" for t in acc.Tags()['images']}


def test_reproduce_end_to_end_then_tensorboard_and_eval(tmp_path):
    """One seed x 3 modes, 2 short episodes each, stopped by Ctrl-C during async1 and run
    again: sync skipped, async1 resumed, async2 run; the runs' TensorBoard files hold the
    named scalars; --eval plays a run's policy without changing it."""
    out = tmp_path / 'repro'
    cmd = [sys.executable, '-m', 'asyncrl_ros.run.reproduce', '--scale', 'paper', '--seeds', '1',
           '--episodes', '2', '--out', str(out), *TINY]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             cwd=ROOT, env=dict(os.environ))
    lines = []
    for line in first.stdout:
        lines.append(line)
        if 'sync-seed0 finished' in line:
            break
    assert 'ETA' in lines[-1], ''.join(lines)
    deadline = time.monotonic() + 120   # async1 has logged an episode: stop it there
    while not (out / 'async1-seed0' / 'episodes.csv').exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    first.send_signal(signal.SIGINT)
    rest, _ = first.communicate(timeout=120)
    assert first.returncode == 130, ''.join(lines) + rest
    assert 'stopped; the same command resumes' in rest

    result = subprocess.run(cmd, capture_output=True, text=True, timeout=400, cwd=ROOT,
                            env=dict(os.environ))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert '1 finished, 1 to resume' in result.stdout
    assert 'async1-seed0: resuming at episode 1' in result.stdout
    assert 'sync-seed0: starting' not in result.stdout and 'async2-seed0: starting' in result.stdout
    finished = [line for line in result.stdout.splitlines() if ' finished: 2 episodes' in line]
    assert [line.split()[1] for line in finished] == ['async1-seed0', 'async2-seed0']
    assert '3/3 runs done' in finished[-1]
    for name in ('report.md', 'report.json', 'plan.json', 'comparison/learning_curves.png',
                 'comparison/updates.png', 'comparison/components.csv'):
        assert (out / name).is_file(), name
    report = json.loads((out / 'report.json').read_text())
    assert set(report['modes']) == {'sync', 'async1', 'async2'}
    assert set(report['differences']) == {'async1 - sync', 'async2 - sync'}
    assert all(r['finished'] and r['episodes'] == 2 and r['updates'] > 0 for r in report['runs'])
    assert [r['real_time_factor'] for r in report['runs']] == [0.5, 0.5, 0.5]
    text = (out / 'report.md').read_text()
    assert 'async2 − sync' in text and 'Table 5.2' in text and 'm·f / c' in text
    for mode in ('sync', 'async1', 'async2'):
        cfg = yaml.safe_load((out / f'{mode}-seed0' / 'config.yaml').read_text())
        assert (cfg['mode'], cfg['run']['seed'], cfg['sac']['batch_size']) == (mode, 0, 16)

    # TensorBoard: the policy per episode, the learner (sync: the policy's in-process one).
    episode_tags = {'episode/return', 'episode/length_steps', 'cycle/mean_ms', 'cycle/p99_ms',
                    'learning/updates', 'learning/updates_per_step', 'learning/weights_age_steps',
                    'replay/size', 'replay/transitions_stored', 'components/action_ms',
                    'components/environment_ms', 'image:observation/frames',
                    'image:observation/reward_mask'}
    learner_tags = {'loss/critic', 'loss/actor', 'loss/temperature', 'sac/temperature',
                    'sac/entropy', 'learner/update_ms'}
    sync_tags = scalars(out / 'sync-seed0' / 'tensorboard' / 'policy')
    assert episode_tags | {'components/update_ms', 'components/sampling_ms'} <= sync_tags
    assert learner_tags <= scalars(out / 'sync-seed0' / 'tensorboard' / 'learner')   # in-process
    assert episode_tags <= scalars(out / 'async2-seed0' / 'tensorboard' / 'policy')
    assert learner_tags <= scalars(out / 'async1-seed0' / 'tensorboard' / 'learner')
    resumed = EventAccumulator(str(out / 'async1-seed0' / 'tensorboard' / 'policy'))
    resumed.Reload()   # two sessions, each episode once
    assert [e.step for e in resumed.Scalars('episode/return')] == [1, 2]

    # --eval on an async2 run: the learner's weights, explore off, nothing saved or learned.
    run = out / 'async2-seed0'
    saved = {p.name: md5(p) for p in [*run.glob('*.pt'), *(run / 'replay').glob('*')]}
    assert {'checkpoint.pt', 'learner_checkpoint.pt', 'meta.json', 'frames.npy'} <= set(saved)
    episodes_before = (run / 'episodes.csv').read_text()
    result = subprocess.run([sys.executable, '-m', 'asyncrl_ros.run.bringup', '--eval', '2', str(run)],
                            capture_output=True, text=True, timeout=240, cwd=ROOT,
                            env=dict(os.environ))
    assert result.returncode == 0, result.stdout[-3000:]
    assert '[replay_sampler]' not in result.stdout and '[learner]' not in result.stdout
    assert {p.name: md5(p) for p in [*run.glob('*.pt'), *(run / 'replay').glob('*')]} == saved  # bit for bit
    assert (run / 'episodes.csv').read_text() == episodes_before
    ev = json.loads((run / 'eval.json').read_text())
    assert ev['episodes'] == 2 and ev['complete'] and ev['explore'] is False
    assert ev['checkpoint'] == 'learner_checkpoint.pt'
    assert ev['updates'] == json.loads((run / 'learner_stats.json').read_text())['updates']
    assert math.isfinite(ev['mean_return']) and math.isfinite(ev['ci95_half'])
    assert 'evaluation: mean return' in result.stdout


def test_one_world_speed_for_every_run(tmp_path):
    """quick's `auto` factor is timed once per reproduction and kept in plan.json: every run,
    whatever its mode, meets the same world speed; a rerun does not time it again; a factor
    given with --set is left alone."""
    timed = []

    def measure(cfg):
        timed.append(cfg.sim.real_time_factor)
        return {'factor': 0.3, 'measured_ms': 150.0, 'message': '...'}

    def must_not_time(cfg):
        raise AssertionError('timed again')

    speed = shared_world_speed(tmp_path, 'quick', [], measure=measure)
    assert speed == {'factor': 0.3, 'measured_ms': 150.0} and timed == ['auto']
    (tmp_path / 'plan.json').write_text(json.dumps({'scale': 'quick', 'world_speed': speed}))
    assert shared_world_speed(tmp_path, 'quick', [], measure=must_not_time) == speed
    assert shared_world_speed(tmp_path / 'other', 'quick', ['sim.real_time_factor=0.5'],
                              measure=must_not_time) is None
