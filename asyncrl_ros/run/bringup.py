"""Standalone bringup: `asyncrl <profile>` starts the profile's nodes, each its own process.

Where `ros2 launch` exists, the launch files in launch/ start the same nodes from the
same profile definition. This does what they would, plus the run folder: it resolves
and validates the config before any node starts, writes it into
runs/<time>-<profile>/, prefixes each node's output, and on Ctrl-C (or when the
policy finishes) stops every node cleanly so the policy saves its checkpoint.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from asyncrl_ros.nodes import NODE_LOG_ENV, SUPERVISOR_PID_ENV

# The package's modules import torch (seconds): main() imports them only after it has
# taken over SIGINT/SIGTERM, so a Ctrl-C during start-up stops the run instead of vanishing.


def ros_environment(run_dir: Path) -> dict:
    env = dict(os.environ)   # whole: the ROS wheels' bootstrapper needs LD_LIBRARY_PATH
    # A node that outlives this process ends itself (see nodes.common.end_with_supervisor).
    env[SUPERVISOR_PID_ENV] = str(os.getpid())
    # DDS never leaves this machine.
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env.setdefault('MUJOCO_GL', 'egl')
    env.setdefault('HOME', str(Path.home()))
    env.setdefault('ROS_LOG_DIR', str(run_dir / 'ros_logs'))
    env['PYTHONUNBUFFERED'] = '1'
    return env


def node_command(node: str, config_file: Path, run_dir: Path, resume: bool,
                 sim_time: bool, extra: dict | None = None) -> list[str]:
    from asyncrl_ros.run.runs import node_parameters
    cmd = [sys.executable, '-m', 'asyncrl_ros.nodes', node, '--ros-args']
    params = node_parameters(node, config_file, run_dir, resume, sim_time)
    for key, value in {**params, **(extra or {})}.items():
        value = str(value).lower() if isinstance(value, bool) else value
        cmd += ['-p', f'{key}:={value}']
    return cmd


def pump(name: str, stream, log_path: Path, quiet: bool):
    from asyncrl_ros.run.runs import MAIN_NODE
    with log_path.open('a') as log:
        for line in iter(stream.readline, ''):
            log.write(line)
            log.flush()
            if not quiet or name == MAIN_NODE or 'ERROR' in line or 'WARN' in line:
                sys.stdout.write(f'[{name}] {line}')
                sys.stdout.flush()


def stop_all(procs: dict, timeout: float = 20.0) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + timeout
    for name, proc in procs.items():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            # Where it hangs goes into its log before it dies (faulthandler, nodes/__main__).
            proc.send_signal(signal.SIGUSR1)
            time.sleep(0.5)
            print(f'[bringup] {name} did not stop in time; killing it '
                  f'(its threads\' stacks: logs/{name}.log)', flush=True)
            proc.kill()


def stop_in_order(procs: dict) -> None:
    """The run's stop order (runs.stop_stages, the launch files' too): stage by stage, each
    once the one before has ended; stateful nodes get time to save (a large replay can take a
    while), the arm_driver stops before the world."""
    from asyncrl_ros.run.runs import (MAIN_NODE, SAVE_TIMEOUT_S, STATEFUL_NODES, STOP_SETTLE_S,
                                  STOP_TIMEOUT_S, stop_stages)
    for stage in stop_stages(list(procs)):
        running = [n for n in stage if procs[n].poll() is None]
        if running:
            print(f'[bringup] stopping {", ".join(running)}', flush=True)
        stop_all({n: procs[n] for n in stage},
                 timeout=max(SAVE_TIMEOUT_S if n in STATEFUL_NODES else STOP_TIMEOUT_S
                             for n in stage))
        if MAIN_NODE in stage:
            time.sleep(STOP_SETTLE_S)   # let the last transitions reach the replay owner


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog='asyncrl', description=__doc__.splitlines()[0])
    parser.add_argument('profile', nargs='?',
                        help='profile name (see --list); with --eval: the run folder')
    parser.add_argument('--setting', help="setting of the profile, e.g. 'baseline' or 'hires'")
    parser.add_argument('--config', help='explicit setting YAML instead of the profile default')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                        help="override one value, e.g. --set sac.batch_size=32 (repeatable)")
    parser.add_argument('--episodes', type=int, help='stop after this many episodes')
    parser.add_argument('--run-dir', help='run folder (default runs/<time>-<profile>)')
    parser.add_argument('--resume', metavar='RUN_DIR', help='continue the run in RUN_DIR')
    parser.add_argument('--eval', type=int, metavar='N',
                        help="evaluate a run's saved policy on the mean for N episodes, "
                             'nothing learned or saved: asyncrl --eval N RUN_DIR '
                             '(results in RUN_DIR/eval.json, eval.csv)')
    parser.add_argument('--list', action='store_true', help='list profiles and exit')
    parser.add_argument('--check', action='store_true', help='validate the config and exit')
    parser.add_argument('--quiet', action='store_true', help="only the policy's output")
    parser.add_argument('--record', action='store_true',
                        help='record the run into a rosbag2 (MCAP) in <run folder>/bag')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    interrupted = False

    def on_signal(signum, _frame):
        nonlocal interrupted
        interrupted = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    args = parse_args(argv)
    from asyncrl_ros.run.config import ConfigError, parse_override
    from asyncrl_ros.run.profiles import load_profiles
    from asyncrl_ros.run.runs import LEARNING_NODES, MAIN_NODE, prepare_run, run_nodes, write_run
    try:
        if args.list:
            for name, prof in load_profiles().items():
                print(f'{name:24s} {prof.description}\n{"":24s} nodes: {", ".join(prof.nodes)}; '
                      f'settings: {", ".join(prof.settings)}')
            return 0
        overrides = [parse_override(s) for s in args.set]
        if args.episodes:
            overrides.append({'run': {'max_episodes': args.episodes}})
        if args.eval is not None:   # the run folder's own config and saved policy
            from asyncrl_ros.learning.evaluate import prepare_eval
            if args.setting or args.config or args.episodes or args.run_dir or args.record:
                raise ConfigError('--eval runs a run folder as it was saved: drop --setting, '
                                  '--config, --episodes, --run-dir and --record')
            profile, cfg, run_dir = prepare_eval(args.resume or args.profile, args.eval,
                                                 args.profile if args.resume else None, overrides)
        else:
            profile, cfg, run_dir = prepare_run(None if args.resume else args.profile, args.setting,
                                                args.config, overrides, args.run_dir, args.resume)
    except (ConfigError, FileNotFoundError) as err:
        print(f'asyncrl: error: {err}', file=sys.stderr)
        return 2
    if interrupted:
        return 130
    for line in cfg.warnings():
        print(f'asyncrl: warning: {line}', file=sys.stderr)
    if not args.check:
        try:
            measured = preflight(cfg)
        except ConfigError as err:
            print(f'asyncrl: error: {err}', file=sys.stderr)
            return 2
    if args.check:
        print(f'{profile.name}: config OK ({cfg.mode}, {cfg.image.width}x{cfg.image.height}, '
              f'batch {cfg.sac.batch_size}, cycle {cfg.task.action_cycle_ms:g} ms)')
        return 0

    if args.eval is not None:
        from asyncrl_ros.learning.evaluate import eval_nodes, eval_stamp, write_eval_config
        config_file = write_eval_config(run_dir, cfg)   # config.yaml stays the run's
        earlier_eval = eval_stamp(run_dir)
        nodes = eval_nodes(profile.nodes)
        print(f'[bringup] evaluating {run_dir} for {args.eval} episode(s), explore off, '
              'no learning', flush=True)
    else:
        config_file = write_run(run_dir, profile, cfg, bool(args.resume))
        nodes = run_nodes(profile, cfg, args.record)
    if measured and args.eval is None:   # an evaluation leaves the run's record alone
        (run_dir / 'realtime.json').write_text(json.dumps(measured, indent=2))
    env = ros_environment(run_dir)
    print(f'[bringup] {profile.name} ({cfg.mode}): {", ".join(nodes)} -> {run_dir}',
          flush=True)

    procs: dict[str, subprocess.Popen] = {}
    threads = []

    def start(node: str, resume: bool, extra: dict | None = None) -> None:
        log_path = run_dir / 'logs' / f'{node}.log'
        proc = subprocess.Popen(node_command(node, config_file, run_dir, resume,
                                             cfg.world == 'sim', extra),
                                env={**env, NODE_LOG_ENV: str(log_path)},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        procs[node] = proc
        thread = threading.Thread(target=pump, args=(node, proc.stdout, log_path, args.quiet),
                                  daemon=True)
        thread.start()
        threads.append(thread)

    # Nodes run in their own sessions so that Ctrl-C reaches the bringup alone, which
    # then stops the policy first (it saves) and the world last.
    for node in nodes:
        start(node, bool(args.resume) and args.eval is None,
              {'evaluate': args.eval} if args.eval is not None and node == MAIN_NODE else None)
    code = 0
    restarts = {n: 0 for n in LEARNING_NODES if n in procs}
    given_up: set[str] = set()
    try:
        while not interrupted:
            if procs[MAIN_NODE].poll() is not None:
                code = procs[MAIN_NODE].returncode
                break
            for name in [n for n in restarts if n not in given_up]:
                rc = procs[name].poll()
                if rc is None:
                    continue
                # A config error (2) would only fail again.
                if rc != 2 and restarts[name] < cfg.asynchronous.max_restarts:
                    restarts[name] += 1
                    print(f'[bringup] {name} exited with code {rc}; restarting it from its last '
                          f'checkpoint ({restarts[name]} of {cfg.asynchronous.max_restarts}); '
                          'the policy acts on its last weights meanwhile', flush=True)
                    start(name, True, {'restarts': restarts[name]})
                else:
                    given_up.add(name)
                    print(f'[bringup] {name} exited with code {rc}; not restarting it '
                          f'({restarts[name]} restarts so far); the policy goes on acting on '
                          'its last weights', flush=True)
            dead = [n for n, p in procs.items()
                    if n != MAIN_NODE and n not in LEARNING_NODES and p.poll() is not None]
            if dead:
                print(f'[bringup] node {dead[0]} exited with code {procs[dead[0]].returncode}; '
                      'stopping the run (see its log in ' f'{run_dir / "logs"})', flush=True)
                code = 1
                break
            time.sleep(0.2)
    finally:
        if interrupted:
            print('[bringup] stopping: the policy saves its checkpoint first', flush=True)
        stop_in_order(procs)
        for thread in threads:
            thread.join(timeout=2.0)
        release_shared_memory(run_dir)
    if args.eval is None:
        print_summary(run_dir, restarts)   # the training run's summary.json
    elif code == 0 and eval_stamp(run_dir) in (None, earlier_eval):
        code = 1   # the policy ended without writing an evaluation (see its log)
    print(f'[bringup] done; run folder: {run_dir}', flush=True)
    return code


def preflight(cfg) -> dict | None:
    """Before any node starts: with `sim.real_time_factor: auto`, measure one sample +
    update of the configured learner and set the factor from it (see asyncrl_ros.learning.realtime);
    on a GPU, check that the replay fits. In a process of its own, so that this one holds no
    CUDA context all run. Returns what was measured, for realtime.json."""
    import tempfile

    import torch
    import yaml

    from asyncrl_ros.run.config import ConfigError
    auto = cfg.world == 'sim' and cfg.sim.real_time_factor == 'auto'
    gpu = cfg.sac.device != 'cpu' and torch.cuda.is_available()
    if not (auto or gpu):
        return None
    if auto:
        print(f'[bringup] real-time factor auto: timing the learner (batch {cfg.sac.batch_size}, '
              f'{cfg.image.width}x{cfg.image.height}, sac.device {cfg.sac.device}, precision '
              f'{cfg.sac.precision}) ...', flush=True)
    with tempfile.NamedTemporaryFile('w', suffix='.yaml', delete=False) as f:
        yaml.safe_dump(cfg.to_dict(), f)
    try:
        result = subprocess.run([sys.executable, '-m', 'asyncrl_ros.learning.realtime', f.name],
                                capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    lines = result.stdout.strip().splitlines()
    try:
        data = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise ConfigError(f'the learner preflight failed: {result.stderr.strip()[-500:]}') from None
    if 'error' in data:
        raise ConfigError(data['error'])
    if not auto:
        return None
    cfg.sim.real_time_factor = float(data['factor'])
    print(f"[bringup] {data['message']}", flush=True)
    return data


def release_shared_memory(run_dir: Path) -> None:
    """Owners unlink their segments; a killed owner cannot, so sweep up after it."""
    from asyncrl_ros.learning.remote import shm_names
    for name in shm_names(run_dir).values():
        path = Path('/dev/shm') / name
        if path.exists():
            path.unlink()
            print(f'[bringup] removed shared memory {name} left by a killed process', flush=True)


def print_summary(run_dir: Path, restarts: dict | None = None) -> None:
    """Transitions sent by the policy against those stored by the replay owner, and how
    often a learning process was restarted."""
    import csv
    import json
    episodes = run_dir / 'episodes.csv'
    if not episodes.exists():
        return
    with episodes.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    last = rows[-1]
    summary = {'episodes': int(last['episode']), 'steps': int(last['total_steps']),
               'updates': int(last['updates']), 'transitions_sent': int(last['transitions_sent'])}
    for name in ('replay_stats.json', 'learner_stats.json'):
        path = run_dir / name
        if path.exists():
            stats = json.loads(path.read_text())
            summary['transitions_stored'] = stats['transitions_stored']
            summary['transitions_missing'] = stats['transitions_missing']
            if 'updates' in stats:
                summary['updates'] = stats['updates']
            break
    else:
        summary['transitions_stored'] = summary['transitions_sent']   # sync: same process
        summary['transitions_missing'] = 0
    summary['restarts'] = dict(restarts or {})
    (run_dir / 'summary.json').write_text(json.dumps(summary, indent=2))
    print(f"[bringup] {summary['episodes']} episodes, {summary['steps']} steps, "
          f"{summary['updates']} updates; transitions sent {summary['transitions_sent']}, "
          f"stored {summary['transitions_stored']}, missing {summary['transitions_missing']}"
          + (f" (sent counts whole episodes; {extra} stored from the episode in progress at the stop)"
             if (extra := summary['transitions_stored'] - summary['transitions_sent']) > 0 else '')
          + ''.join(f'; {n} restarted {k}x' for n, k in summary['restarts'].items() if k),
          flush=True)


if __name__ == '__main__':
    sys.exit(main())
