"""Shared test set-up: DDS on loopback, a ROS domain of our own, node processes."""
from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

# Before anything imports rclpy: stay on loopback.
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.setdefault('MUJOCO_GL', 'egl')

# Every process a test starts carries this variable (children inherit the environment,
# also those in sessions of their own, also orphans): the fixture below finds and ends
# them all after the test, however it ended.
TEST_TAG_ENV = 'ASYNCRL_TEST_TAG'
# Fast DDS maps domain ids 0..232 to ports; leave 0 (the default) to people.
_DOMAINS = range(1, 230)
_domain_counter = itertools.count()


def _tagged_processes(tag: str) -> list[int]:
    """PIDs (not ours) whose environment holds TEST_TAG_ENV=tag."""
    from asyncrl_ros.run.process_tags import tagged_processes
    # This pytest process's own workers (the shared-memory resource tracker, the process
    # pools of module-scoped fixtures) serve many tests; their owners end them.
    return [pid for pid, ppid, cmdline in tagged_processes(TEST_TAG_ENV, tag)
            if not (ppid == os.getpid() and b'multiprocessing' in cmdline)]


def end_tagged_processes(tag: str, grace: float = 10.0) -> list[int]:
    """SIGTERM every process of a test, then SIGKILL what is left after `grace` s."""
    pids = _tagged_processes(tag)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _tagged_processes(tag) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in _tagged_processes(tag):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


@pytest.fixture(autouse=True)
def own_ros_domain_and_processes(request):
    """Each test: a ROS domain of its own (a user's graph or an earlier test's leftovers
    are never heard), and every process it started ended afterwards, even when it
    failed or timed out. ASYNCRL_TEST_DOMAIN_ID pins the domain by hand."""
    domain = os.environ.get('ASYNCRL_TEST_DOMAIN_ID') or str(
        _DOMAINS[(os.getpid() * 7 + next(_domain_counter)) % len(_DOMAINS)])
    tag = f'{os.getpid()}-{request.node.nodeid}'.replace(' ', '_')
    saved = {k: os.environ.get(k) for k in ('ROS_DOMAIN_ID', TEST_TAG_ENV)}
    os.environ['ROS_DOMAIN_ID'] = domain
    os.environ[TEST_TAG_ENV] = tag
    try:
        yield domain
    finally:
        left = end_tagged_processes(tag)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if left:
            print(f'\n[conftest] ended {len(left)} process(es) left by {request.node.nodeid}')


ROOT = Path(__file__).resolve().parents[1]


def write_config(tmp_path: Path, data: dict | None = None) -> Path:
    from asyncrl_ros.run.config import load_config
    cfg = load_config(data or {})
    path = tmp_path / 'config.yaml'
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return path


class NodeProcess:
    """One package node in its own OS process, as the bringup starts it."""

    def __init__(self, node: str, config_file: Path, params: dict | None = None):
        cmd = [sys.executable, '-m', 'asyncrl_ros.nodes', node, '--ros-args',
               '-p', f'config_file:={config_file}']
        for key, value in (params or {}).items():
            value = str(value).lower() if isinstance(value, bool) else value
            cmd += ['-p', f'{key}:={value}']
        self.log = config_file.parent / f'{node}.log'
        self.proc = subprocess.Popen(cmd, env=dict(os.environ), stdout=self.log.open('w'),
                                     stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def start_node():
    started: list[NodeProcess] = []

    def start(node: str, config_file: Path, params: dict | None = None) -> NodeProcess:
        proc = NodeProcess(node, config_file, params)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def ros_node():
    """A test node in this process, with a spin helper that waits on a condition."""
    import rclpy
    from rclpy.context import Context
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node(f'test_{os.getpid()}', context=context)
    from rclpy.executors import SingleThreadedExecutor
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)

    def spin_until(predicate, timeout: float, what: str = 'condition'):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.02)
            if predicate():
                return
        raise AssertionError(f'timed out after {timeout:.0f} s waiting for {what}')

    def spin_for(seconds: float):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.01)

    node.spin_until = spin_until
    node.spin_for = spin_for
    yield node
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)
