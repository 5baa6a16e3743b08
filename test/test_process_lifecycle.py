"""Processes that end: every node of a graph exits after a stop, at any moment of its
life; nodes whose bringup is SIGKILLed end themselves and leave the arm at zero; a node
that cannot save says so and still exits; a learning process that dies comes back."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, write_config
from test_async_runs import SHORT
from test_bringup import ASYNCRL, read_csv


def run_processes(run_dir: Path) -> list[str]:
    """Command lines of live processes that belong to the run in run_dir."""
    out = subprocess.run(['pgrep', '-af', str(run_dir)], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if 'pgrep' not in line]


def wait_gone(run_dir: Path, bound: float) -> list[str]:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        left = run_processes(run_dir)
        if not left:
            return []
        time.sleep(0.2)
    return run_processes(run_dir)


def start_bringup(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(ASYNCRL + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=ROOT, env=dict(os.environ), start_new_session=True)


# Stopped at different moments: during start-up (imports, rclpy.init), while waiting for
# the replay owner, acting at random, and learning.
STOP_AFTER_S = [0.5, 1.5, 3.0, 5.0, 8.0]


@pytest.mark.parametrize('profile', ['franka_sim_async1', 'franka_sim_async2'])
def test_graph_started_and_stopped_again_and_again_leaves_no_process(profile, tmp_path):
    for i, delay in enumerate(STOP_AFTER_S):
        run_dir = tmp_path / f'run{i}'
        proc = start_bringup([profile, '--run-dir', str(run_dir), *SHORT])
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        try:
            out = proc.communicate(timeout=120)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate()[0]
            pytest.fail(f'cycle {i} ({delay} s): the bringup did not end in 120 s\n{out[-3000:]}')
        left = wait_gone(run_dir, 10.0)
        assert not left, f'cycle {i} ({delay} s): processes left behind: {left}\n{out[-3000:]}'
        # 130: stopped before it started any node (Ctrl-C during its imports).
        assert proc.returncode in (0, 130), out[-3000:]
        assert 'did not stop in time' not in out, out[-3000:]
        assert 'terminate called' not in out, out[-3000:]
        # Shared memory released, whatever moment the stop came at.
        from asyncrl_ros.learning.remote import shm_names
        assert not [n for n in shm_names(run_dir).values() if (Path('/dev/shm') / n).exists()]


# A node whose leaving ROS never returns (seen once in CI: a DDS teardown past the
# bringup's 20 s, so the bringup killed it). Everything was saved by then: it must end by
# itself, with the code it would have had and a line saying why.
HANGS_ON_LEAVING = """
import time
from asyncrl_ros.nodes import take_over_signals
take_over_signals()
from rclpy.node import Node
from asyncrl_ros.nodes.common import run_node

class HangsOnLeaving(Node):
    def __init__(self):
        super().__init__('hangs_on_leaving')
        print('up', flush=True)

    def destroy_node(self):
        time.sleep(120)

run_node(HangsOnLeaving)
"""


def test_node_whose_ros_teardown_hangs_still_ends_by_itself():
    from asyncrl_ros.nodes.common import TEARDOWN_EXIT_S
    proc = subprocess.Popen([sys.executable, '-c', HANGS_ON_LEAVING], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=dict(os.environ))
    try:
        assert proc.stdout.readline().strip() == 'up'
        proc.send_signal(signal.SIGINT)
        stopped = time.monotonic()
        out = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert f'leaving ROS took over {TEARDOWN_EXIT_S:g} s' in out, out
    assert 'destroy_node' in out   # where it hung, for whoever reads the log
    assert time.monotonic() - stopped < 60


def test_bringup_sigkilled_its_nodes_end_and_the_arm_is_left_at_zero(tmp_path, ros_node):
    from test_real_profiles import FrankaRos2Side, write_video
    video = tmp_path / 'wrist.avi'
    write_video(video)
    robot = FrankaRos2Side(ros_node)
    run_dir = tmp_path / 'run'
    proc = start_bringup(['franka_sync', '--run-dir', str(run_dir),
                          '--set', f'camera.device={video}', '--set', 'task.episode_s=30',
                          '--set', 'task.reset_s=1.0', '--set', 'sac.batch_size=16',
                          '--set', 'sac.hidden_dim=256', '--set', 'sac.torch_threads=1'])
    try:
        # Acting: the arm is moving when the bringup dies.
        ros_node.spin_until(
            lambda: sum(np.any(c != 0) for c in robot.commands[-20:]) >= 10 and
            (run_dir / 'steps.csv').exists(), 180, 'the policy to act')
        os.killpg(proc.pid, signal.SIGKILL)   # the bringup alone: it is its session's leader
        proc.wait(timeout=10)
        killed_at = time.monotonic()
        deadline = killed_at + 90   # the policy saves and plots on its way out
        alive = {line.split()[0]: line for line in run_processes(run_dir)}
        ended: dict[str, float] = {}
        while alive and time.monotonic() < deadline:
            ros_node.spin_for(0.2)
            now = {line.split()[0] for line in run_processes(run_dir)}
            for pid in set(alive) - now:
                ended[alive.pop(pid).split('asyncrl_ros.nodes ')[-1].split()[0]] = round(
                    time.monotonic() - killed_at, 1)
        left = run_processes(run_dir)
        ros_node.spin_for(1.0)   # anything still on its way
    finally:
        if proc.poll() is None:
            proc.kill()
    logs = {p.stem: p.read_text()[-1500:] for p in (run_dir / 'logs').glob('*.log')}
    assert not left, f'orphaned nodes: {left}; ended after (s): {ended}; logs: {logs}'
    print('seconds from the SIGKILL to each node\'s end:', ended)
    # The safety layer does not wait for anyone's saving: ramp, last zero, gone.
    assert ended.get('arm_driver', 0.0) <= 15.0, ended
    assert robot.commands, 'the robot side heard nothing'
    assert np.all(robot.commands[-1] == 0.0), f'last command {robot.commands[-1]}'
    # Ramped down, not stepped: the Franka's reflexes trip on velocity jumps.
    cmds = np.array(robot.commands[-50:])
    assert np.max(np.abs(np.diff(cmds, axis=0))) <= 15.0 * 0.01 + 1e-6
    log = (run_dir / 'logs' / 'arm_driver.log')
    # The driver said how it stopped (its output went to the dead bringup's pipe, so it may
    # be lost; the command stream above is the evidence that counts).
    assert not log.exists() or 'Traceback' not in log.read_text()


def test_learner_that_cannot_save_says_so_in_one_line_and_exits(tmp_path, start_node):
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    # A checkpoint path that cannot be replaced stands in for a full or read-only disk
    # (root ignores permissions).
    (run_dir / 'learner_checkpoint.pt').mkdir()
    (run_dir / 'learner_checkpoint.pt' / 'keep').write_text('x')
    config = write_config(tmp_path, {'mode': 'async1', 'sac': {'batch_size': 8, 'hidden_dim': 64}})
    learner = start_node('learner', config, {'run_dir': str(run_dir)})
    deadline = time.monotonic() + 120
    while 'async1 (own replay)' not in learner.output() and time.monotonic() < deadline:
        assert learner.proc.poll() is None, learner.output()
        time.sleep(0.2)
    learner.proc.send_signal(signal.SIGINT)
    learner.proc.wait(timeout=30)
    out = learner.output()
    failures = [line for line in out.splitlines() if 'could not save' in line]
    assert len(failures) == 1, out
    assert 'learner_checkpoint.pt' in failures[0]
    assert 'Traceback' not in out and 'terminate called' not in out
    assert learner.proc.returncode == 0


def test_learner_and_replay_sampler_killed_mid_run_come_back(tmp_path):
    """async2, the learner SIGKILLed once learning has begun, then the replay_sampler: each
    is restarted from its last checkpoint, the policy keeps acting, picks up the restarted
    learner's weights with versions counting on, and every transition is accounted for."""
    run_dir = tmp_path / 'run'
    proc = start_bringup(['franka_sim_async2', '--episodes', '6', '--run-dir', str(run_dir), *SHORT,
                          '--set', 'run.checkpoint_every_episodes=1',
                          '--set', 'asynchronous.learner_checkpoint_s=2'])
    lines: list[str] = []
    killed: dict[str, int] = {}

    def kill(victim: str, episode: int) -> None:
        pids = [int(p.split()[0]) for p in run_processes(run_dir)
                if f'asyncrl_ros.nodes {victim} ' in p]
        assert pids, f'{victim} process not found'
        os.kill(pids[0], signal.SIGKILL)
        killed[victim] = episode

    deadline = time.monotonic() + 400
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if '[episode' not in line:
                continue
            episode = int(line.split('[episode')[1].split(']')[0])
            if ('learner' not in killed and ' updates      0 ' not in line
                    and (run_dir / 'learner_checkpoint.pt').exists()):
                kill('learner', episode)
            elif 'learner' in killed and 'replay_sampler' not in killed and episode > killed['learner']:
                kill('replay_sampler', episode)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = ''.join(lines)
    assert set(killed) == {'learner', 'replay_sampler'} and killed['replay_sampler'] < 5, text[-3000:]
    assert proc.returncode == 0, text[-3000:]
    for victim in killed:
        assert f'{victim} exited with code -9; restarting it from its last checkpoint' in text
        log = (run_dir / 'logs' / f'{victim}.log').read_text()
        assert 'resumed' in log, log[-2000:]
    summary = json.loads((run_dir / 'summary.json').read_text())
    assert summary['restarts'] == {'learner': 1, 'replay_sampler': 1}
    # Nothing unaccounted for: every transition sent was stored or counted missing.
    assert summary['transitions_sent'] == 240
    assert summary['transitions_stored'] + summary['transitions_missing'] == 240
    steps = read_csv(run_dir / 'steps.csv')
    versions = [int(s['weights_version']) for s in steps]
    assert versions == sorted(versions), 'weight versions went backwards'
    episodes = read_csv(run_dir / 'episodes.csv')
    assert len(episodes) == 6 and all(int(e['steps']) == 40 for e in episodes)
    at_kill = int(episodes[killed['learner'] - 1]['weights_version'])
    # Updates resumed: the policy acts on weights the restarted learner made.
    assert versions[-1] > at_kill + 1, (at_kill, versions[-1])
    assert summary['updates'] > 0
