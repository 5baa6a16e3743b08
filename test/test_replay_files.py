"""The replay kept in the run folder: commits cost what is new, a resume maps it back at ~1x
memory, and a crash loses at most the episode in progress."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from asyncrl_ros.agent.replay import FrameReplay
from asyncrl_ros.agent.replay_files import ReplayFolderError

SHAPE = (3, 90, 160)   # the paper's baseline frames: 43 200 bytes each
P, A = 4, 2
EPISODE = 50
ROOT = Path(__file__).resolve().parents[1]

# Frame t carries its own index, so any row can be checked against what was written there.
GENERATOR = textwrap.dedent('''
    import numpy as np

    def frame(t, shape):
        f = np.full(shape, t % 251, np.uint8)
        f.reshape(-1)[:8] = np.frombuffer(np.int64(t).tobytes(), np.uint8)
        return f

    def write_episode(replay, shape, p, a, steps):
        t = replay.total
        replay.start_episode(frame(t, shape), np.full(p, t, np.float32))
        for i in range(1, steps + 1):
            t = replay.total
            replay.add(np.full(a, t % 7, np.float32), t * 0.01, frame(t, shape),
                       np.full(p, t, np.float32), terminal=False)
''')
namespace: dict = {}
exec(GENERATOR, namespace)
frame, write_episode = namespace['frame'], namespace['write_episode']


def index_of(images: np.ndarray) -> np.ndarray:
    """Absolute frame index carried by each uncropped (B, 3, H, W) frame."""
    return images.reshape(len(images), -1)[:, :8].copy().view(np.int64)[:, 0]


def run_child(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, 'OPENBLAS_NUM_THREADS': '1', 'OMP_NUM_THREADS': '1'}
    return subprocess.run([sys.executable, '-c', GENERATOR + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def test_resume_under_a_memory_limit_smaller_than_the_replay_samples_what_an_uninterrupted_run_does(tmp_path):
    """A replay of ~320 MB, the writer SIGKILLed mid-episode; the resuming process may use
    less private memory than the replay's size (RLIMIT_DATA), so loading it into memory (the
    old checkpoint's way: 2x) cannot work. Its batches, before and after one more episode,
    equal those of a run that was never interrupted and never saw the lost episode."""
    folder = tmp_path / 'replay'
    episodes, capacity = 148, 8000    # 148 x 51 = 7548 frames of 43 200 bytes: 326 MB
    writer = run_child(f'''
        import os, signal
        from asyncrl_ros.agent.replay import FrameReplay
        replay = FrameReplay({capacity}, {SHAPE}, {P}, {A}, frame_stack=3, seed=7, folder={str(folder)!r})
        for k in range({episodes}):
            if k:
                replay.commit({{'episodes': k}})
            write_episode(replay, {SHAPE}, {P}, {A}, {EPISODE})
        replay.commit({{'episodes': {episodes}}})
        write_episode(replay, {SHAPE}, {P}, {A}, 20)     # the episode in progress
        os.kill(os.getpid(), signal.SIGKILL)
    ''')
    assert writer.returncode == -signal.SIGKILL, writer.stderr
    row_bytes = int(np.prod(SHAPE)) + 4 * (P + A + 1) + 2 + 8   # frame, floats, flags, episode start
    replay_bytes = episodes * (EPISODE + 1) * row_bytes
    assert replay_bytes > 300e6

    out = tmp_path / 'batches.npz'
    child = run_child(f'''
        import json, re, resource
        from asyncrl_ros.agent.replay import FrameReplay
        vm_data = int(re.search(r'VmData:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) * 1024
        limit = vm_data + {replay_bytes} // 2     # what this process may allocate: < the replay
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
        replay = FrameReplay({capacity}, {SHAPE}, {P}, {A}, frame_stack=3, seed=0,
                             folder={str(folder)!r}, resume=True)
        try:
            copy = np.array(replay.frames[:replay.total])   # what a load into memory needs
            fits = True
        except MemoryError:
            fits = False
        batches = {{}}
        for i in range(3):
            for k, v in replay.sample(32, (76, 140)).items():
                batches[f'before{{i}}_{{k}}'] = v
        write_episode(replay, {SHAPE}, {P}, {A}, {EPISODE})   # the run goes on
        for i in range(3):
            for k, v in replay.sample(32, (76, 140)).items():
                batches[f'after{{i}}_{{k}}'] = v
        np.savez({str(out)!r}, **batches)
        print(json.dumps({{'limit': limit, 'total': replay.total, 'len': len(replay),
                           'extra': replay.committed_extra, 'copy_fits': fits}}))
    ''')
    assert child.returncode == 0, child.stderr[-3000:]
    report = json.loads(child.stdout.strip().splitlines()[-1])
    assert report['limit'] < replay_bytes           # the replay is larger than what it may allocate
    assert not report['copy_fits']                  # so a copy in memory was impossible
    assert report['total'] == episodes * (EPISODE + 1) + EPISODE + 1   # the lost episode, redone
    assert report['extra'] == {'episodes': episodes}

    uninterrupted = FrameReplay(capacity, SHAPE, P, A, frame_stack=3, seed=7)
    for _ in range(episodes):
        write_episode(uninterrupted, SHAPE, P, A, EPISODE)
    got = np.load(out)
    for phase in ('before', 'after'):
        if phase == 'after':
            write_episode(uninterrupted, SHAPE, P, A, EPISODE)
        for i in range(3):
            want = uninterrupted.sample(32, (76, 140))
            for k, v in want.items():
                np.testing.assert_array_equal(got[f'{phase}{i}_{k}'], v, err_msg=f'{phase} {i} {k}')


def test_crash_after_the_ring_wrapped_loses_the_open_episode_and_at_most_a_reserve_of_the_oldest(tmp_path):
    folder = tmp_path / 'replay'
    capacity = 300
    replay = FrameReplay(capacity, (3, 12, 12), P, A, frame_stack=3, seed=1, folder=folder)
    shape = (3, 12, 12)
    for k in range(9):   # 9 x 51 = 459 frames: wrapped
        if k:
            replay.commit({'k': k})
        write_episode(replay, shape, P, A, EPISODE)
    replay.commit({'k': 9})
    committed_total, committed_len = replay.total, len(replay)
    write_episode(replay, shape, P, A, 40)   # overwrites committed rows, never committed
    # A process that dies here leaves the mapping's pages as they are: a second mapping sees
    # exactly what a restarted process would.
    resumed = FrameReplay(capacity, shape, P, A, frame_stack=3, seed=1, folder=folder, resume=True)
    assert resumed.total == committed_total and resumed.committed_extra == {'k': 9}
    # The 41 frames of the lost episode overwrote as many of the oldest committed ones; a
    # reserve beyond them and stacks reaching into them are the most that goes with them.
    assert committed_len - 41 - resumed._reserve_frames - 3 <= len(resumed) <= committed_len - 41
    batch = resumed.sample(256)                       # uncropped: indices readable
    t_next = index_of(batch['next_obs_image'][:, -3:])
    assert t_next.max() < committed_total               # nothing written after the commit
    assert t_next.min() >= resumed._oldest
    np.testing.assert_array_equal(batch['next_obs_proprio'][:, 0], t_next)
    np.testing.assert_array_equal(batch['action'][:, 0], t_next % 7)
    np.testing.assert_allclose(batch['reward'], t_next * 0.01, rtol=1e-6)
    np.testing.assert_array_equal(index_of(batch['obs_image'][:, -3:]), t_next - 1)
    # Writing on overwrites the lost rows first: once past the reserve, as if nothing was lost.
    fresh = FrameReplay(capacity, shape, P, A, frame_stack=3, seed=1)
    for _ in range(9):
        write_episode(fresh, shape, P, A, EPISODE)
    for _ in range(2):
        write_episode(resumed, shape, P, A, EPISODE)
        write_episode(fresh, shape, P, A, EPISODE)
    assert len(resumed) == len(fresh)
    resumed.rng, fresh.rng = np.random.default_rng(3), np.random.default_rng(3)
    got, want = resumed.sample(64, (8, 8)), fresh.sample(64, (8, 8))
    for k, v in want.items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)


def test_a_commit_writes_only_what_is_new_and_the_files_are_sparse(tmp_path):
    replay = FrameReplay(20_000, SHAPE, P, A, folder=tmp_path / 'replay')
    write_episode(replay, SHAPE, P, A, 19)
    replay.commit()
    full = 20_000 * int(np.prod(SHAPE))
    assert replay.files.nbytes_on_disk < 0.01 * full    # 20 frames of 20 000 on disk


def test_a_replay_folder_from_a_run_with_other_settings_is_one_clear_error(tmp_path):
    replay = FrameReplay(100, (3, 12, 12), P, A, folder=tmp_path / 'replay')
    write_episode(replay, (3, 12, 12), P, A, 5)
    replay.commit()
    with pytest.raises(ReplayFolderError, match=r'capacity=100 \(this run: 200\)'):
        FrameReplay(200, (3, 12, 12), P, A, folder=tmp_path / 'replay', resume=True)
    (tmp_path / 'replay' / 'meta.json').write_text('{"format": "something else"}')
    with pytest.raises(ReplayFolderError, match='not an asyncrl_ros replay'):
        FrameReplay(100, (3, 12, 12), P, A, folder=tmp_path / 'replay', resume=True)


def test_a_new_run_in_an_old_replay_folder_starts_empty(tmp_path):
    replay = FrameReplay(100, (3, 12, 12), P, A, folder=tmp_path / 'replay')
    write_episode(replay, (3, 12, 12), P, A, 5)
    replay.commit()
    again = FrameReplay(100, (3, 12, 12), P, A, folder=tmp_path / 'replay')   # not resume
    assert again.total == 0 and len(again) == 0
    assert FrameReplay(100, (3, 12, 12), P, A, folder=tmp_path / 'replay', resume=True).total == 0


def test_resuming_a_run_whose_replay_folder_does_not_fit_is_one_config_error(tmp_path):
    """Before any node starts: a replay folder written with other settings (here a copy from a
    run with a smaller capacity) stops the bringup with one line."""
    import yaml
    from asyncrl_ros.run.config import ConfigError
    from asyncrl_ros.run.profiles import resolve
    from asyncrl_ros.run.runs import prepare_run
    _, cfg = resolve('franka_sim_async2', 'quick')
    run = tmp_path / 'run'
    run.mkdir()
    (run / 'config.yaml').write_text(yaml.safe_dump(cfg.to_dict()))
    (run / 'run.yaml').write_text(yaml.safe_dump({'profile': 'franka_sim_async2'}))
    prepare_run(None, resume=str(run))                       # no replay yet: fine
    other = FrameReplay(100, (3, 90, 160), 21, 7, frame_stack=cfg.sac.frame_stack, folder=run / 'replay')
    write_episode(other, (3, 90, 160), 21, 7, 5)
    other.commit()
    with pytest.raises(ConfigError, match=rf'capacity=100 \(this run: {cfg.sac.replay_capacity}\)'):
        prepare_run(None, resume=str(run))
    with pytest.raises(ConfigError, match='already holds a run'):
        prepare_run('franka_sim_async2', run_dir=str(run))     # a new run into it
