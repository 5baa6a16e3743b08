"""The standalone bringup: config errors before any node starts, and whole runs of the
franka_sim_sync graph (five node processes over DDS) with checkpoint, resume and Ctrl-C."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

ASYNCRL = [sys.executable, '-m', 'asyncrl_ros.run.bringup']

# A short but complete run: 20-step episodes (1.5 s at 75 ms), quick resets, a
# world at 0.25x real time, updates from step 20 on batches of 16.
SHORT = ['--set', 'task.episode_s=1.5', '--set', 'task.reset_s=1.0',
         '--set', 'sim.real_time_factor=0.25', '--set', 'run.init_random_steps=20',
         '--set', 'sac.batch_size=16', '--set', 'sac.hidden_dim=256',
         '--set', 'sac.torch_threads=1', '--set', 'run.checkpoint_every_episodes=2']


def run_bringup(args, timeout=60, cwd=None):
    return subprocess.run(ASYNCRL + args, capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or ROOT, env=dict(os.environ))


@pytest.mark.parametrize('args, message', [
    (['franka_sim_sync', '--set', 'sac.bogus=1'], "unknown key 'sac.bogus'"),
    (['franka_sim_sync', '--set', 'sac.batch_size=many'], "'sac.batch_size' must be int"),
    (['franka_sim_sync', '--set', 'mode=async9'], "unknown mode 'async9'"),
    (['no_such_profile'], "unknown profile 'no_such_profile'"),
    (['franka_sim_sync', '--setting', 'ultra'], "has no setting 'ultra'"),
    (['franka_sim_sync', '--set', 'sim.real_time_factor=0'], "'sim.real_time_factor' must be > 0"),
])
def test_config_errors_are_one_clear_line(args, message, tmp_path):
    result = run_bringup(args + ['--run-dir', str(tmp_path / 'run')])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / 'run').exists()   # nothing started, nothing written


def test_malformed_yaml_names_the_file(tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('sac: {batch_size: 128\nimage: [')
    result = run_bringup(['franka_sim_sync', '--config', str(bad)])
    assert result.returncode == 2
    assert 'bad.yaml' in result.stderr and 'malformed YAML' in result.stderr


def test_shipped_settings_are_the_papers():
    from asyncrl_ros.run.profiles import resolve
    _, base = resolve('franka_sim_sync', 'baseline')
    _, hires = resolve('franka_sim_sync', 'hires')
    assert (base.image.width, base.image.height, base.sac.batch_size,
            base.task.action_cycle_ms, base.run.init_random_steps) == (160, 90, 128, 75.0, 2666)
    assert (hires.image.width, hires.image.height, hires.sac.batch_size,
            hires.task.action_cycle_ms, hires.run.init_random_steps) == (320, 180, 80, 80.0, 2500)
    assert (base.sac.crop_height, base.sac.crop_width) == (88, 156)


def read_csv(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_end_to_end_sync_run_then_resume_and_ctrl_c(tmp_path):
    run_dir = tmp_path / 'run'
    result = run_bringup(['franka_sim_sync', '--episodes', '3', '--run-dir', str(run_dir), *SHORT],
                         timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]
    episodes = read_csv(run_dir / 'episodes.csv')
    assert [int(e['episode']) for e in episodes] == [1, 2, 3]
    assert all(int(e['steps']) == 20 for e in episodes)
    assert int(episodes[-1]['total_steps']) == 60
    updates = int(episodes[-1]['updates'])
    assert updates >= 1
    assert 'return' in result.stdout and '[episode    3]' in result.stdout
    for name in ('config.yaml', 'checkpoint.pt', 'learning_curve.png', 'timing_summary.txt',
                 'steps.csv'):
        assert (run_dir / name).is_file(), name
    resolved = yaml.safe_load((run_dir / 'config.yaml').read_text())
    assert resolved['sac']['batch_size'] == 16 and resolved['mode'] == 'sync'

    from asyncrl_ros.learning.checkpoint import load_checkpoint
    from asyncrl_ros.agent.replay import FrameReplay
    state = load_checkpoint(run_dir / 'checkpoint.pt')
    assert state['extra']['total_steps'] == 60
    replay = FrameReplay(100_000, (3, 90, 160), 21, 7, folder=run_dir / 'replay', resume=True)
    assert len(replay) == 60    # every transition of the run, nothing lost
    steps = read_csv(run_dir / 'steps.csv')
    assert len(steps) == 60
    # Sync: the measured cycle is the paper's 75 ms of sim time when the update fits.
    cycles = sorted(float(s['cycle_ms']) for s in steps if s['cycle_ms'] not in ('', 'nan'))
    assert cycles[len(cycles) // 2] == pytest.approx(75.0, abs=5.0)

    # Resume: continues from the checkpoint (episode 4 on, same update count onward),
    # and Ctrl-C during episode 5 stops every node and saves.
    proc = subprocess.Popen(ASYNCRL + ['--resume', str(run_dir), '--episodes', '8'],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT, env=dict(os.environ), start_new_session=True)
    lines = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if '[episode    4]' in line:
            break
    assert any('[episode    4]' in x for x in lines), ''.join(lines[-40:])
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    lines.append(out)
    assert proc.returncode == 0, ''.join(lines)[-3000:]
    episodes = read_csv(run_dir / 'episodes.csv')
    assert int(episodes[3]['episode']) == 4 and int(episodes[3]['total_steps']) == 80
    assert int(episodes[3]['updates']) > updates
    state = load_checkpoint(run_dir / 'checkpoint.pt')
    assert state['extra']['total_steps'] >= 80
    replay = FrameReplay(100_000, (3, 90, 160), 21, 7, folder=run_dir / 'replay', resume=True)
    assert len(replay) == state['extra']['total_steps']   # the resumed run's, appended
    assert state['agent']['num_updates'] >= int(episodes[3]['updates'])
    assert 'resumed at episode 3' in ''.join(lines)
    # Stopping leaves the nodes' contexts up until they have saved and said so.
    assert 'checkpoint saved' in ''.join(lines)
    assert 'context is invalid' not in ''.join(lines)


def test_ur5_tracker_sync_run_acts_on_five_joints(tmp_path):
    run_dir = tmp_path / 'run'
    args = ['ur5_sim_sync', '--episodes', '2', '--run-dir', str(run_dir),
            '--set', 'task.name=tracker', '--set', 'task.episode_s=1.6', '--set', 'task.reset_s=1.0',
            '--set', 'sim.real_time_factor=0.25', '--set', 'run.init_random_steps=10',
            '--set', 'sac.batch_size=8', '--set', 'sac.hidden_dim=128', '--set', 'sac.torch_threads=1']
    result = run_bringup(args, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]
    episodes = read_csv(run_dir / 'episodes.csv')
    assert [int(e['steps']) for e in episodes] == [20, 20]     # 1.6 s at the thesis' 80 ms
    assert int(episodes[-1]['updates']) > 0
    # The replay keeps itself in the run folder (replay/<array>.npy), not in checkpoint.pt.
    import numpy as np
    proprio, action = (np.load(run_dir / 'replay' / f'{name}.npy', mmap_mode='r')
                       for name in ('proprio', 'action'))
    # Thesis observation: 5 joint angles, 5 velocities, 5 previous actions; 5 actions.
    assert proprio.shape[1] == 15 and action.shape[1] == 5
    # The thesis reward: 800 * mean(mask * W) - posture penalty, so a step earns at most 800.
    rewards = [float(s['reward']) for s in read_csv(run_dir / 'steps.csv')]
    assert all(-20 < r < 800 for r in rewards) and any(r != 0 for r in rewards)


def test_summary_says_where_stored_exceeds_sent(tmp_path, capsys):
    """episodes.csv counts whole episodes; the replay owner also holds the transitions of the
    episode the stop interrupted: the summary says so instead of showing an unexplained gap."""
    import json
    from asyncrl_ros.run.bringup import print_summary
    fields = ['episode', 'total_steps', 'updates', 'transitions_sent']
    with (tmp_path / 'episodes.csv').open('w', newline='') as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerow({'episode': 2, 'total_steps': 300, 'updates': 10, 'transitions_sent': 300})
    stats = tmp_path / 'replay_stats.json'
    stats.write_text(json.dumps({'transitions_stored': 325, 'transitions_missing': 0}))
    print_summary(tmp_path)
    out = capsys.readouterr().out
    assert 'sent 300, stored 325, missing 0' in out
    assert '25 stored from the episode in progress at the stop' in out
    assert json.loads((tmp_path / 'summary.json').read_text())['transitions_stored'] == 325
    stats.write_text(json.dumps({'transitions_stored': 300, 'transitions_missing': 0}))
    print_summary(tmp_path)
    assert 'in progress' not in capsys.readouterr().out
