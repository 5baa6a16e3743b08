"""Saving and resuming a large replay: the one-file checkpoint (torch.save of the whole
replay) against the replay kept in its folder (memory-mapped, committed per episode).

For each: the time to save once the replay holds --frames frames, the time of one episode's
checkpoint afterwards (250 frames more), and a resuming process's time and memory peak above
its own baseline (its ru_maxrss after imports), measured in fresh processes side by side.

    .venv/bin/python bench/bench_replay_resume.py [--frames 3000] [--height 180 --width 320]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asyncrl_ros.learning.checkpoint import save_checkpoint  # noqa: E402
from asyncrl_ros.agent.replay import FrameReplay  # noqa: E402

P, A, EPISODE = 21, 7, 250

RESUME = textwrap.dedent('''
    import json, resource, sys, time
    import numpy as np, torch
    from asyncrl_ros.agent.replay import FrameReplay
    from asyncrl_ros.learning.checkpoint import load_checkpoint
    kind, path, capacity, h, w = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if kind == 'file':
        replay = FrameReplay(capacity, (3, h, w), 21, 7)
        replay.load_state_dict(load_checkpoint(path)['replay'])
    else:
        replay = FrameReplay(capacity, (3, h, w), 21, 7, folder=path, resume=True)
    batch = replay.sample(128, (h * 88 // 90, w * 156 // 160))   # a first batch: the resume is usable
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({'resume_s': dt, 'peak_above_baseline_mb': (peak - base) / 1024, 'len': len(replay)}))
''')


def fill(replay: FrameReplay, frames: int, rng) -> None:
    shape = replay.frame_shape
    noise = rng.integers(0, 256, size=(64, *shape), dtype=np.uint8)   # incompressible-ish
    while replay.total < frames:
        replay.start_episode(noise[replay.total % 64], np.zeros(P, np.float32))
        for _ in range(min(EPISODE, frames - replay.total)):
            replay.add(np.zeros(A, np.float32), 0.0, noise[replay.total % 64], np.zeros(P, np.float32), False)


def resume_child(kind: str, path: Path, capacity: int, h: int, w: int) -> dict:
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    out = subprocess.run([sys.executable, '-c', RESUME, kind, str(path), str(capacity), str(h), str(w)],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=1200)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--frames', type=int, default=3000)
    ap.add_argument('--height', type=int, default=180)
    ap.add_argument('--width', type=int, default=320)
    args = ap.parse_args()
    h, w, capacity = args.height, args.width, 100_000
    frame_mb = 3 * h * w / 1e6
    rng = np.random.default_rng(0)
    rows = {}
    with tempfile.TemporaryDirectory(dir=ROOT / 'runs' if (ROOT / 'runs').is_dir() else None) as tmp:
        tmp = Path(tmp)
        print(f'replay of {args.frames} frames of {w}x{h} ({args.frames * frame_mb / 1e3:.2f} GB), '
              f'capacity {capacity}', flush=True)
        # One-file checkpoint: every save rewrites the whole replay.
        replay = FrameReplay(capacity, (3, h, w), P, A)
        fill(replay, args.frames, rng)
        t0 = time.perf_counter()
        save_checkpoint(tmp / 'replay_checkpoint.pt', None, replay)
        full_s = time.perf_counter() - t0
        fill(replay, args.frames + EPISODE, rng)
        t0 = time.perf_counter()
        save_checkpoint(tmp / 'replay_checkpoint.pt', None, replay)
        episode_s = time.perf_counter() - t0
        written = (tmp / 'replay_checkpoint.pt').stat().st_size
        del replay
        rows['one file (torch.save)'] = {'save_s': full_s, 'episode_checkpoint_s': episode_s,
                                         'episode_checkpoint_mb': written / 1e6,
                                         **resume_child('file', tmp / 'replay_checkpoint.pt', capacity, h, w)}
        (tmp / 'replay_checkpoint.pt').unlink()
        # Folder: rows go straight into the mapping; a commit flushes what is new.
        replay = FrameReplay(capacity, (3, h, w), P, A, folder=tmp / 'replay')
        fill(replay, args.frames, rng)
        t0 = time.perf_counter()
        replay.commit()
        full_s = time.perf_counter() - t0
        fill(replay, args.frames + EPISODE, rng)
        t0 = time.perf_counter()
        replay.commit()
        episode_s = time.perf_counter() - t0
        del replay
        rows['folder (memory-mapped)'] = {'save_s': full_s, 'episode_checkpoint_s': episode_s,
                                          'episode_checkpoint_mb': EPISODE * frame_mb,
                                          **resume_child('folder', tmp / 'replay', capacity, h, w)}
    replay_mb = (args.frames + EPISODE) * frame_mb
    print(f'\n{"storage":26s} {"first save s":>12s} {"+1 episode s":>12s} {"written MB":>10s} '
          f'{"resume s":>9s} {"resume peak MB":>14s} {"peak/replay":>11s}')
    for name, r in rows.items():
        print(f'{name:26s} {r["save_s"]:12.2f} {r["episode_checkpoint_s"]:12.3f} '
              f'{r["episode_checkpoint_mb"]:10.0f} {r["resume_s"]:9.2f} '
              f'{r["peak_above_baseline_mb"]:14.0f} {r["peak_above_baseline_mb"] / replay_mb:11.2f}')
    print('(resume peak: the resuming process\'s max RSS above its baseline after imports; a '
          'mapped replay\'s pages are page cache that the kernel can drop)')
    file_row, folder_row = rows['one file (torch.save)'], rows['folder (memory-mapped)']
    print(json.dumps({'frames': args.frames + EPISODE, 'replay_mb': replay_mb,
                      **{f'{k}_{key}': v for key, r in (('file', file_row), ('folder', folder_row))
                         for k, v in r.items()},
                      'episode_checkpoint_speedup': file_row['episode_checkpoint_s']
                      / max(folder_row['episode_checkpoint_s'], 1e-9)}))


if __name__ == '__main__':
    main()
