"""A real-arm profile end to end against a node that speaks franka_ros2's interface.

No Franka, franka_ros2 or webcam exist here. The profile's own nodes run for real (camera
on a real OpenCV capture of a video file, reward, target_monitor, arm_driver, policy);
this test plays the robot's side of the documented interface: it publishes
sensor_msgs/JointState on /joint_states and takes std_msgs/Float64MultiArray on
/forward_velocity_controller/commands, integrating the velocities it receives.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time

import cv2
import numpy as np
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from asyncrl_ros.robot.arms import get_arm
from asyncrl_ros.nodes.common import COMMAND_QOS, SENSOR_QOS, TOPIC_JOINT_STATES
from conftest import ROOT
from test_bringup import ASYNCRL, read_csv

ARM = get_arm('franka')


def write_video(path, n=200, size=(160, 90)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 25, size)
    rng = np.random.default_rng(0)
    for i in range(n):
        frame = np.full((size[1], size[0], 3), 200, np.uint8)
        x, y = rng.integers(10, size[0] - 40), rng.integers(5, size[1] - 30)
        frame[y:y + 25, x:x + 30] = (20, 20, 200)   # BGR red: the reward sees it
        writer.write(frame)
    writer.release()


class FrankaRos2Side:
    """The robot side of franka_ros2 + forward_velocity_controller, at 100 Hz."""

    def __init__(self, node):
        self.node = node
        self.q = ARM.home_qpos.copy() + 0.2   # start away from home: the first reset homes it
        self.qd = np.zeros(ARM.n_joints)
        self.commands: list[np.ndarray] = []
        self.pub = node.create_publisher(JointState, TOPIC_JOINT_STATES, SENSOR_QOS)
        node.create_subscription(Float64MultiArray, '/forward_velocity_controller/commands',
                                 self.on_command, COMMAND_QOS)
        node.create_timer(0.01, self.step)
        self.last = time.monotonic()
        self.home_error = np.inf

    def on_command(self, msg):
        cmd = np.array(msg.data)
        if cmd.shape == (ARM.n_joints,):   # the controller drops wrong-length commands
            self.qd = cmd
            self.commands.append(cmd)

    def step(self):
        now = time.monotonic()
        self.q = self.q + self.qd * (now - self.last)
        self.last = now
        self.home_error = min(self.home_error, float(np.max(np.abs(self.q - ARM.home_qpos))))
        msg = JointState(name=list(ARM.joint_names), position=self.q.tolist(),
                         velocity=self.qd.tolist())
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.pub.publish(msg)


def test_franka_sync_profile_runs_against_the_driver_interface(tmp_path, ros_node):
    video = tmp_path / 'wrist.avi'
    write_video(video)
    robot = FrankaRos2Side(ros_node)
    run_dir = tmp_path / 'run'
    args = ['franka_sync', '--episodes', '2', '--run-dir', str(run_dir),
            '--set', f'camera.device={video}', '--set', 'task.action_cycle_ms=40',
            '--set', 'task.episode_s=1.6', '--set', 'task.reset_s=1.0',
            '--set', 'run.init_random_steps=20', '--set', 'sac.batch_size=16',
            '--set', 'sac.hidden_dim=256', '--set', 'sac.torch_threads=1']
    proc = subprocess.Popen(ASYNCRL + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=ROOT, env=dict(os.environ), start_new_session=True)
    try:
        ros_node.spin_until(lambda: proc.poll() is not None, 240, 'the run to finish')
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out[-3000:]
    episodes = read_csv(run_dir / 'episodes.csv')
    assert [int(e['steps']) for e in episodes] == [40, 40]
    assert float(episodes[0]['return']) > 0          # the red patch in the video pays
    assert int(episodes[-1]['updates']) > 0
    sent = np.array(robot.commands)
    assert len(sent) > 100
    assert np.all(np.abs(sent) <= ARM.velocity_limits + 1e-9)
    # Homing brought the arm from 0.2 rad away back to the home pose.
    assert robot.home_error < 0.02
    log = (run_dir / 'logs' / 'policy.log').read_text()
    assert 'Traceback' not in log
    # The real-arm overlay puts the action path under SCHED_FIFO (or says why it could not).
    for name, priority in (('policy', 50), ('camera', 50), ('reward', 50), ('arm_driver', 60)):
        text = (run_dir / 'logs' / f'{name}.log').read_text()
        assert (f'SCHED_FIFO priority {priority} for all' in text
                or f'SCHED_FIFO {priority} not permitted' in text), (name, text[-1500:])
    assert 'SCHED_FIFO' not in (run_dir / 'logs' / 'target_monitor.log').read_text()
