"""sim_world over real DDS: sim-time rates of /clock, joint states and images at two
real-time factors, and velocity commands on the ros2_control topic move the arm."""
from __future__ import annotations

import time

import numpy as np
import pytest
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray

from asyncrl_ros.nodes.common import (COMMAND_QOS, SENSOR_QOS, TOPIC_IMAGE, TOPIC_JOINT_STATES,
                                      TOPIC_ROBOT_COMMAND, stamp_ns)
from conftest import write_config


@pytest.mark.parametrize('rtf', [0.5, 1.0])
def test_publishes_at_sim_time_rates(rtf, tmp_path, start_node, ros_node):
    cfg = write_config(tmp_path)
    start_node('sim_world', cfg, {'real_time_factor': rtf})
    clocks, states, images = [], [], []
    ros_node.create_subscription(Clock, '/clock', lambda m: clocks.append(
        (time.monotonic(), stamp_ns(m.clock) * 1e-9)), 100)
    ros_node.create_subscription(JointState, TOPIC_JOINT_STATES,
                                 lambda m: states.append(stamp_ns(m.header.stamp) * 1e-9), SENSOR_QOS)
    ros_node.create_subscription(Image, TOPIC_IMAGE, lambda m: images.append(m), SENSOR_QOS)
    ros_node.spin_until(lambda: len(images) >= 3, 60, 'first images')
    clocks.clear(), states.clear(), images.clear()
    ros_node.spin_for(4.0)

    (w0, s0), (w1, s1) = clocks[0], clocks[-1]
    measured_rtf = (s1 - s0) / (w1 - w0)
    assert measured_rtf == pytest.approx(rtf, rel=0.2)

    js = np.array(states)
    span = js[-1] - js[0]
    # >= 100 Hz of sim time, stamped 10 ms apart (best-effort may drop a few).
    assert (len(js) - 1) / span >= 90
    assert np.median(np.diff(js)) == pytest.approx(0.010, abs=1e-4)

    stamps = np.array([stamp_ns(m.header.stamp) * 1e-9 for m in images])
    assert np.median(np.diff(stamps)) == pytest.approx(0.040, abs=1e-4)
    first = images[0]
    assert (first.width, first.height, first.encoding) == (160, 90, 'rgb8')
    assert len(first.data) == 160 * 90 * 3


def test_velocity_command_moves_joint(tmp_path, start_node, ros_node):
    cfg = write_config(tmp_path)
    start_node('sim_world', cfg, {'real_time_factor': 1.0})
    states = []
    ros_node.create_subscription(JointState, TOPIC_JOINT_STATES, states.append, SENSOR_QOS)
    pub = ros_node.create_publisher(Float64MultiArray, TOPIC_ROBOT_COMMAND, COMMAND_QOS)
    ros_node.spin_until(lambda: states and pub.get_subscription_count() > 0, 60, 'sim_world')
    q0 = np.array(states[-1].position)
    cmd = [0.4, 0, 0, 0, 0, 0, 0]
    pub.publish(Float64MultiArray(data=cmd))
    ros_node.spin_for(1.0)
    q1 = np.array(states[-1].position)
    assert states[-1].velocity[0] == pytest.approx(0.4, rel=0.1)
    assert q1[0] - q0[0] > 0.2
    assert np.all(np.abs(q1[1:] - q0[1:]) < 0.02)
    # A wrong-length command is ignored (like ros2_control), the last one holds.
    pub.publish(Float64MultiArray(data=[5.0, 5.0]))
    ros_node.spin_for(0.5)
    assert states[-1].velocity[0] == pytest.approx(0.4, rel=0.1)


def test_random_phase_runs_faster_until_the_first_learned_action(tmp_path, start_node, ros_node):
    """The world runs at random_phase_real_time_factor until the policy's step metrics show a
    learned action, then at real_time_factor (a random action keeps the fast pace)."""
    from asyncrl_ros.nodes.common import METRICS_QOS, TOPIC_STEP_METRICS
    from asyncrl_ros_interfaces.msg import StepMetrics
    cfg = write_config(tmp_path)
    start_node('sim_world', cfg, {'real_time_factor': 0.25, 'random_phase_real_time_factor': 1.0})
    clocks = []
    ros_node.create_subscription(Clock, '/clock', lambda m: clocks.append(
        (time.monotonic(), stamp_ns(m.clock) * 1e-9)), 100)
    pub = ros_node.create_publisher(StepMetrics, TOPIC_STEP_METRICS, METRICS_QOS)
    ros_node.spin_until(lambda: len(clocks) >= 10 and pub.get_subscription_count() > 0, 60,
                        'sim_world clock and its step-metrics subscription')

    def rate(seconds: float) -> float:
        clocks.clear()
        ros_node.spin_for(seconds)
        (w0, s0), (w1, s1) = clocks[0], clocks[-1]
        return (s1 - s0) / (w1 - w0)

    pub.publish(StepMetrics(step=5, random_action=True))
    ros_node.spin_for(0.5)
    assert rate(3.0) == pytest.approx(1.0, rel=0.2)
    pub.publish(StepMetrics(step=6, random_action=False))
    ros_node.spin_for(0.5)
    assert rate(3.0) == pytest.approx(0.25, rel=0.2)
    pub.publish(StepMetrics(step=7, random_action=True))   # latched: learning does not end
    ros_node.spin_for(0.5)
    assert rate(3.0) == pytest.approx(0.25, rel=0.2)


def test_following_world_slows_to_the_learners_pace_in_the_run(tmp_path, start_node, ros_node):
    """With follow_update_cost (auto), the world re-times the update from the learner's own
    status as the run goes: a learner doing one update per 225 ms of wall time, 75 of them
    waiting for a batch, is busy 150 ms per update, the thesis' 45 ms of world time at x0.3,
    so a world started at x0.5 slows towards x0.3 (not x0.2: waiting is not cost); a learner
    that goes quiet leaves the speed where it was."""
    from asyncrl_ros.nodes.common import METRICS_QOS, TOPIC_LEARNER_STATUS, TOPIC_STEP_METRICS
    from asyncrl_ros_interfaces.msg import LearnerStatus, StepMetrics
    cfg = write_config(tmp_path)
    node = start_node('sim_world', cfg, {'real_time_factor': 0.5, 'follow_update_cost': True,
                                         'follow_every_s': 2.0})
    clocks = []
    ros_node.create_subscription(Clock, '/clock', lambda m: clocks.append(
        (time.monotonic(), stamp_ns(m.clock) * 1e-9)), 100)
    steps = ros_node.create_publisher(StepMetrics, TOPIC_STEP_METRICS, METRICS_QOS)
    status = ros_node.create_publisher(LearnerStatus, TOPIC_LEARNER_STATUS, METRICS_QOS)
    ros_node.spin_until(lambda: len(clocks) >= 10 and steps.get_subscription_count() > 0
                        and status.get_subscription_count() > 0, 60, 'sim_world and its subscriptions')

    def rate(seconds: float) -> float:
        clocks.clear()
        ros_node.spin_for(seconds)
        (w0, s0), (w1, s1) = clocks[0], clocks[-1]
        return (s1 - s0) / (w1 - w0)

    assert rate(2.0) == pytest.approx(0.5, rel=0.2)
    learner = {'updates': 1000, 'wait_ms': 5000.0}

    def one_update():
        learner['updates'] += 1
        learner['wait_ms'] += 75.0
        status.publish(LearnerStatus(updates=learner['updates'], wait_ms=learner['wait_ms']))

    timer = ros_node.create_timer(0.225, one_update)
    steps.publish(StepMetrics(step=1, random_action=False))   # learning has begun
    ros_node.spin_for(12.0)
    slowed = rate(3.0)
    assert slowed == pytest.approx(0.3, rel=0.2)
    assert 'auto: one update keeps the learner busy' in node.output()
    timer.cancel()   # the learner goes quiet: no figure, no change
    ros_node.spin_for(4.0)
    assert rate(3.0) == pytest.approx(slowed, rel=0.2)
