"""Whole async runs over DDS and shared memory: async1 and async2 learn while the policy
keeps its cycle, and every transition sent is stored (a learner killed mid-run: see
test_process_lifecycle)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT
from test_bringup import ASYNCRL, read_csv

# 40-step episodes (1.6 s at 40 ms), a world at 0.25x real time, learning from step 40.
SHORT = ['--set', 'task.episode_s=1.6', '--set', 'task.reset_s=1.0',
         '--set', 'sim.real_time_factor=0.25', '--set', 'run.init_random_steps=40',
         '--set', 'sac.batch_size=16', '--set', 'sac.hidden_dim=256']


# async2 learns in bf16 (autocast on the CPU, emulated where it is not native): the update
# path a bf16 CPU or GPU takes, end to end.
@pytest.mark.parametrize('profile, precision', [('franka_sim_async1', 'fp32'),
                                                ('franka_sim_async2', 'bf16')])
def test_async_run_learns_and_stores_every_transition(profile, precision, tmp_path):
    run_dir = tmp_path / 'run'
    result = subprocess.run(ASYNCRL + [profile, '--episodes', '3', '--run-dir', str(run_dir),
                                       *SHORT, '--set', f'sac.precision={precision}'],
                            capture_output=True, text=True, timeout=300,
                            cwd=ROOT, env=dict(os.environ))
    assert result.returncode == 0, result.stdout[-4000:]
    assert f'learning on cpu in {precision}' in (run_dir / 'logs' / 'learner.log').read_text()
    summary = json.loads((run_dir / 'summary.json').read_text())
    assert summary['steps'] == 120
    assert summary['transitions_sent'] == 120
    assert summary['transitions_stored'] == summary['transitions_sent']
    assert summary['transitions_missing'] == 0
    assert summary['updates'] > 0
    # The cap (1 update per step after the random phase) holds.
    assert summary['updates'] <= summary['transitions_stored'] - 40

    steps = read_csv(run_dir / 'steps.csv')
    versions = [int(s['weights_version']) for s in steps]
    assert versions == sorted(versions), 'weight versions went backwards'
    assert versions[-1] > 0, 'the policy never picked up learned weights'
    # The policy never waited for learning: no sampling or update time in its cycle.
    assert all(float(s['update_ms']) == 0.0 and float(s['sampling_ms']) == 0.0 for s in steps)
    assert max(float(s['swap_ms']) for s in steps) < 50.0   # sanity; the bench measures it
    # A fixed cycle of 40 ms of sim time (a world at 0.25x leaves the policy 160 ms of wall
    # time per cycle): a tick that comes before its frame's reward acts on the previous
    # frame, if younger than 1.5 cycles, instead of losing the cycle.
    # Sim time, not wall time: a machine under load may delay a tick by one 5 ms step of
    # the world's clock, never more than rarely.
    cycles = [float(s['cycle_ms']) for s in steps if float(s['cycle_ms']) > 0]
    assert sorted(cycles)[len(cycles) // 2] == pytest.approx(40.0, abs=1e-6), cycles
    assert sum(abs(c - 40.0) < 1e-6 for c in cycles) >= 0.8 * len(cycles), cycles
    reused = [s for s in steps if s['frame_reused'] == '1']
    assert all(float(s['frame_age_ms']) <= 60.0 for s in reused)
    episodes = read_csv(run_dir / 'episodes.csv')
    assert sum(int(e['frames_reused']) for e in episodes) == len(reused)
    # Shared memory released.
    assert not [p for p in Path('/dev/shm').glob('asyncrl_*') if run_dir.name in p.name]
