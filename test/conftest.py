"""Shared test set-up: DDS on loopback, a ROS domain of our own, node processes."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

# Before anything imports rclpy: stay on loopback, and never hear another test run.
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
# A domain of our own even when the shell has one (a user's running graph must not
# leak into the tests, nor the tests into it); ASYNCRL_TEST_DOMAIN_ID picks one by hand.
os.environ['ROS_DOMAIN_ID'] = os.environ.get('ASYNCRL_TEST_DOMAIN_ID') or str(1 + os.getpid() % 100)
os.environ.setdefault('MUJOCO_GL', 'egl')

ROOT = Path(__file__).resolve().parents[1]


def write_config(tmp_path: Path, data: dict | None = None) -> Path:
    from asyncrl_ros.config import load_config
    cfg = load_config(data or {})
    path = tmp_path / 'config.yaml'
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return path


class NodeProcess:
    """One package node in its own OS process, as the bringup starts it."""

    def __init__(self, node: str, config_file: Path, params: dict | None = None):
        cmd = [sys.executable, '-m', f'asyncrl_ros.nodes.{node}_node', '--ros-args',
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
