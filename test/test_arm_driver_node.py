"""arm_driver over real DDS: a test node speaks the robot's side (joint states in,
velocity commands out on the ros2_control topic) and the policy's side."""
from __future__ import annotations

import time

import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from asyncrl_ros.robot.arms import get_arm
from asyncrl_ros.robot.kinematics import position_jacobian
from asyncrl_ros.nodes.common import (COMMAND_QOS, SENSOR_QOS, TOPIC_JOINT_STATES,
                                      TOPIC_POLICY_COMMAND, TOPIC_ROBOT_COMMAND)
from conftest import write_config

ARM = get_arm('franka')
CYCLE_MS = 40.0
# The test observes every output the driver sends: a keep-last-10 reader that the test process
# does not take from for 100 ms (a loaded CI machine) loses samples, and a lost ramp step looks
# like a velocity step.
OBSERVER_QOS = QoSProfile(depth=100000, reliability=ReliabilityPolicy.RELIABLE)


class FakeRobotSide:
    """The robot's topics, spoken by a test node: publishes joint states, records commands."""

    def __init__(self, node, q):
        self.node = node
        self.q = np.asarray(q, dtype=float)
        self.outputs: list[tuple[float, np.ndarray]] = []
        self.js_pub = node.create_publisher(JointState, TOPIC_JOINT_STATES, SENSOR_QOS)
        self.cmd_pub = node.create_publisher(Float64MultiArray, TOPIC_POLICY_COMMAND, COMMAND_QOS)
        node.create_subscription(Float64MultiArray, TOPIC_ROBOT_COMMAND, self.on_output, OBSERVER_QOS)
        node.create_timer(0.01, self.publish_state)

    def on_output(self, msg):
        self.outputs.append((time.monotonic(), np.array(msg.data)))

    def publish_state(self):
        msg = JointState(name=list(ARM.joint_names), position=self.q.tolist(),
                         velocity=[0.0] * ARM.n_joints)
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.js_pub.publish(msg)

    def command(self, values):
        self.cmd_pub.publish(Float64MultiArray(data=[float(v) for v in values]))

    def drive(self, values, seconds):
        """Send `values` every action cycle for `seconds`, like a policy."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.command(values)
            self.node.spin_for(CYCLE_MS / 1000)

    def latest(self):
        return self.outputs[-1][1]


@pytest.fixture
def driver(tmp_path, start_node, ros_node):
    cfg = write_config(tmp_path, {'task': {'action_cycle_ms': CYCLE_MS}})
    proc = start_node('arm_driver', cfg)
    side = FakeRobotSide(ros_node, ARM.home_qpos)
    ros_node.spin_until(lambda: len(side.outputs) > 5 and side.cmd_pub.get_subscription_count() > 0,
                        30, 'arm_driver to come up')
    yield side
    proc.stop()


def test_clamps_to_velocity_limits_and_zeroes_nan(driver):
    big = np.full(ARM.n_joints, 50.0)
    big[1::2] *= -1
    driver.drive(big, 1.0)
    out = driver.latest()
    assert out.shape == (ARM.n_joints,)
    assert np.all(np.abs(out) <= ARM.velocity_limits + 1e-9)
    # Ramped up to the limit (or held back by the workspace), never beyond.
    assert np.all(np.isfinite(out))

    driver.drive([float('nan')] + [0.1] * (ARM.n_joints - 1), 0.6)
    assert np.allclose(driver.latest(), 0.0)
    driver.drive([0.1] * 3, 0.6)   # wrong length
    assert np.allclose(driver.latest(), 0.0)


def test_watchdog_zeroes_after_two_silent_cycles(driver):
    cmd = np.zeros(ARM.n_joints)
    cmd[0] = 0.3
    driver.drive(cmd, 0.8)
    assert driver.latest()[0] == pytest.approx(0.3, abs=1e-6)
    last_command = time.monotonic()
    driver.node.spin_until(lambda: np.allclose(driver.latest(), 0.0), 5, 'zero output')
    stopped_after = time.monotonic() - last_command
    # Two cycles of silence, then the ramp down (0.3 rad/s at 15 rad/s^2 = 20 ms), plus
    # DDS latency and output period on a loaded 2-core machine. The exact two cycles are
    # test_safety's; here the bound only has to tell a firing watchdog from a late one.
    assert stopped_after < 2 * CYCLE_MS / 1000 + 0.4, stopped_after
    # And it really was the policy's silence: with commands the output stayed up.
    moving = [t for t, v in driver.outputs if abs(v[0]) > 0.29]
    assert moving and moving[-1] >= last_command - 0.05


def test_command_pushing_out_of_workspace_is_held_back(driver):
    # Find a direction in joint space that moves the flange straight up (+z).
    q = ARM.home_qpos
    jac = position_jacobian(ARM.fk_position, q)
    up = np.linalg.pinv(jac) @ np.array([0.0, 0.0, 1.0])
    up = up / np.max(np.abs(up) / (0.5 * ARM.velocity_limits))   # within the clamp
    # Place the arm just under the top of the box and push upward for a while.
    z_gap = ARM.workspace_max[2] - ARM.fk_position(q)[2]
    assert z_gap > 0
    driver.drive(up, 1.0)
    out = driver.latest()
    predicted = ARM.fk_position(q + out * (CYCLE_MS / 1000))
    assert np.all(predicted <= ARM.workspace_max + 1e-6)
    assert np.all(predicted >= ARM.workspace_min - 1e-6)


def test_arm_outside_box_is_driven_back_inside(driver):
    q = ARM.home_qpos.copy()
    jac = position_jacobian(ARM.fk_position, q)
    # Move the arm's state 10 cm above the box (teleport via the joint states we publish).
    dz = ARM.workspace_max[2] + 0.10 - ARM.fk_position(q)[2]
    for _ in range(20):
        q = q + np.linalg.pinv(position_jacobian(ARM.fk_position, q)) @ np.array([0, 0, dz / 20])
    assert ARM.fk_position(q)[2] > ARM.workspace_max[2] + 0.05
    driver.q = q
    driver.drive(np.zeros(ARM.n_joints), 1.0)
    out = driver.latest()
    jac = position_jacobian(ARM.fk_position, q)
    ee_velocity = jac @ out
    assert ee_velocity[2] < -1e-3, ee_velocity   # heading down, back into the box


# ---- UR5 over ur_robot_driver's topics ----
UR5 = get_arm('ur5')


@pytest.fixture
def ur_driver(tmp_path, start_node, ros_node):
    from std_msgs.msg import Bool, Float64
    from asyncrl_ros.nodes.common import LATCHED_QOS
    cfg = write_config(tmp_path, {'arm': 'ur5', 'world': 'real',
                                  'task': {'action_cycle_ms': CYCLE_MS},
                                  'safety': {'velocity_fraction': 1.0}})
    proc = start_node('arm_driver', cfg)
    outputs = []
    # The driver's joint_state_broadcaster need not use our joint order.
    order = [5, 0, 1, 2, 3, 4]
    names = [UR5.joint_names[i] for i in order]
    q = UR5.home_qpos

    def publish_state():
        msg = JointState(name=names, position=[float(q[i]) for i in order], velocity=[0.0] * 6)
        msg.header.stamp = ros_node.get_clock().now().to_msg()
        js_pub.publish(msg)

    js_pub = ros_node.create_publisher(JointState, TOPIC_JOINT_STATES, SENSOR_QOS)
    cmd_pub = ros_node.create_publisher(Float64MultiArray, TOPIC_POLICY_COMMAND, COMMAND_QOS)
    scaling = ros_node.create_publisher(Float64, '/speed_scaling_state_broadcaster/speed_scaling',
                                        LATCHED_QOS)
    running = ros_node.create_publisher(Bool, '/io_and_status_controller/robot_program_running',
                                        LATCHED_QOS)
    ros_node.create_subscription(Float64MultiArray, '/forward_velocity_controller/commands',
                                 lambda m: outputs.append(np.array(m.data)), OBSERVER_QOS)
    ros_node.create_timer(0.01, publish_state)
    ros_node.spin_until(lambda: len(outputs) > 5 and cmd_pub.get_subscription_count() > 0,
                        30, 'arm_driver to come up')

    def drive(values, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            cmd_pub.publish(Float64MultiArray(data=[float(v) for v in values]))
            ros_node.spin_for(CYCLE_MS / 1000)
        return outputs[-1]

    yield drive, scaling, running
    proc.stop()


def test_ur5_six_joint_commands_hold_the_wrist_and_honour_speed_scaling(ur_driver):
    from std_msgs.msg import Bool, Float64
    drive, scaling, running = ur_driver
    # Small motion of the base and the last wrist joint (which the task keeps fixed).
    cmd = [0.2, 0.0, 0.0, 0.0, 0.0, 0.5]
    out = drive(cmd, 0.8)
    assert out.shape == (6,)
    assert out[0] == pytest.approx(0.2, abs=1e-6)
    assert out[5] == 0.0
    out = drive([5.0, 0, 0, 0, 0, 0], 0.8)
    assert abs(out[0]) <= 0.7 + 1e-9                      # the thesis' |v| <= 0.7 rad/s
    scaling.publish(Float64(data=0.5))
    out = drive(cmd, 0.8)
    assert out[0] == pytest.approx(0.1, abs=1e-6)         # the speed slider is honoured
    running.publish(Bool(data=False))
    out = drive(cmd, 0.5)
    assert np.allclose(out, 0.0)                          # no program, no motion


def test_diagnostics_report_silent_driver_then_silent_policy(tmp_path, start_node, ros_node):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    cfg = write_config(tmp_path, {'task': {'action_cycle_ms': CYCLE_MS}})
    start_node('arm_driver', cfg)
    seen: dict[str, DiagnosticStatus] = {}
    ros_node.create_subscription(DiagnosticArray, '/diagnostics',
                                 lambda m: seen.update({s.name: s for s in m.status}), 10)
    ros_node.spin_until(lambda: 'arm_driver: joint states' in seen, 30, 'diagnostics')
    assert seen['arm_driver: joint states'].level == DiagnosticStatus.ERROR
    assert 'silent' in seen['arm_driver: joint states'].message
    side = FakeRobotSide(ros_node, ARM.home_qpos)
    ros_node.spin_until(lambda: seen['arm_driver: joint states'].level == DiagnosticStatus.OK,
                        10, 'joint states to be seen')
    # Joint states but no policy: the watchdog holds the arm and says so.
    assert seen['arm_driver: policy'].level == DiagnosticStatus.WARN
    assert 'watchdog' in seen['arm_driver: policy'].message
    side.drive(np.zeros(ARM.n_joints), 2.5)
    assert seen['arm_driver: policy'].level == DiagnosticStatus.OK


def test_homing_status_counts_each_homing_even_when_start_and_end_merge(tmp_path, start_node,
                                                                         ros_node):
    """Policy and target monitor end a reset on `finished`, not on seeing both edges of
    `active`: a homing from the home pose starts and ends within one driver tick."""
    from std_srvs.srv import Trigger
    from asyncrl_ros.nodes.common import LATCHED_QOS, SERVICE_HOME, TOPIC_HOMING
    from asyncrl_ros_interfaces.msg import HomingStatus
    # reset_s leaves the second request of homing #2 seconds before its 3 x reset_s time-out,
    # even on a loaded machine.
    cfg = write_config(tmp_path, {'task': {'action_cycle_ms': CYCLE_MS, 'reset_s': 1.5}})
    proc = start_node('arm_driver', cfg)
    side = FakeRobotSide(ros_node, ARM.home_qpos)
    statuses: list[HomingStatus] = []
    ros_node.create_subscription(HomingStatus, TOPIC_HOMING, statuses.append, LATCHED_QOS)
    home = ros_node.create_client(Trigger, SERVICE_HOME)
    ros_node.spin_until(lambda: home.service_is_ready() and statuses and len(side.outputs) > 5,
                        30, 'arm_driver to come up')
    assert (statuses[-1].active, statuses[-1].started, statuses[-1].finished) == (False, 0, 0)

    def request():
        future = home.call_async(Trigger.Request())
        ros_node.spin_until(future.done, 10, 'the home service to answer')
        assert future.result().success

    request()   # already at home: over at the next tick
    ros_node.spin_until(lambda: statuses[-1].finished == 1, 5, 'homing #1 to finish')
    assert statuses[-1].started == 1 and not statuses[-1].active

    side.q = ARM.home_qpos + 0.3   # the fake arm never moves: homing runs to its 3 x reset_s limit
    # Ask only once the driver has seen the moved arm (its 10 Hz end-effector marker shows
    # it): on a loaded machine a request before that finds the arm still at home.
    from visualization_msgs.msg import MarkerArray
    from asyncrl_ros.nodes.common import TOPIC_EE_MARKERS
    moved = ARM.fk_position(side.q)
    seen: list[np.ndarray] = []
    ros_node.create_subscription(MarkerArray, TOPIC_EE_MARKERS, lambda m: seen.append(np.array(
        [m.markers[0].pose.position.x, m.markers[0].pose.position.y,
         m.markers[0].pose.position.z])), 10)
    ros_node.spin_until(lambda: seen and np.allclose(seen[-1], moved, atol=1e-6), 30,
                        'the driver to see the moved arm')
    request()
    ros_node.spin_until(lambda: statuses[-1].active, 5, 'homing #2 to start')
    request()   # a second request restarts the same move, it is not a third homing
    ros_node.spin_until(lambda: statuses[-1].finished == 2, 15, 'homing #2 to time out')
    assert (statuses[-1].active, statuses[-1].started) == (False, 2)
    # Homing moves the arm with the safety filter in charge: never beyond the clamp.
    assert all(np.all(np.abs(v) <= ARM.velocity_limits + 1e-9) for _, v in side.outputs)
    proc.stop()
    assert 'homing timed out' in proc.output()


def test_target_monitor_places_a_new_target_at_each_homing(tmp_path, start_node, ros_node):
    """Counted homings reach target_monitor too: one new target per homing, inside the box,
    even for homings that start and end within one driver tick."""
    from geometry_msgs.msg import PoseStamped
    from std_srvs.srv import Trigger
    from asyncrl_ros.nodes.common import LATCHED_QOS, SERVICE_HOME, TOPIC_TARGET_POSE
    cfg = write_config(tmp_path, {'task': {'action_cycle_ms': CYCLE_MS}})
    start_node('arm_driver', cfg)
    monitor = start_node('target_monitor', cfg)
    side = FakeRobotSide(ros_node, ARM.home_qpos)
    poses: list[np.ndarray] = []
    ros_node.create_subscription(
        PoseStamped, TOPIC_TARGET_POSE,
        lambda m: poses.append(np.array([m.pose.position.x, m.pose.position.y, m.pose.position.z])),
        LATCHED_QOS)
    home = ros_node.create_client(Trigger, SERVICE_HOME)
    ros_node.spin_until(lambda: home.service_is_ready() and poses and len(side.outputs) > 5,
                        30, 'arm_driver and target_monitor to come up')
    # Homings before target_monitor hears the driver are not its to count (the start-up
    # target serves them): wait until it has joined, which discovery may delay.
    ros_node.spin_until(lambda: 'following' in monitor.output(), 30,
                        'target_monitor to hear the homing status')
    for n in (2, 3):
        future = home.call_async(Trigger.Request())
        ros_node.spin_until(future.done, 10, 'the home service to answer')
        ros_node.spin_until(lambda: len(poses) >= n, 10, f'target #{n}')
        ros_node.spin_for(0.5)   # homing from home ends at once; a request during one restarts it
    assert len(poses) == 3   # the first at start-up, then exactly one per homing
    assert not np.allclose(poses[0], poses[1]) and not np.allclose(poses[1], poses[2])
    for p in poses:   # on the table, inside the workspace footprint
        assert np.all(p[:2] >= ARM.workspace_min[:2]) and np.all(p[:2] <= ARM.workspace_max[:2])


@pytest.mark.parametrize('sig', ['SIGINT', 'SIGTERM'])
def test_stopping_the_driver_leaves_the_arm_commanded_to_zero(sig, tmp_path, start_node, ros_node):
    """ros2_control's forward controller holds its last command forever: a driver stopped
    while the policy still sends (as `ros2 launch` stops all nodes at once) must say zero last."""
    import signal
    cfg = write_config(tmp_path, {'task': {'action_cycle_ms': CYCLE_MS}})
    proc = start_node('arm_driver', cfg)
    side = FakeRobotSide(ros_node, ARM.home_qpos)
    ros_node.spin_until(lambda: len(side.outputs) > 5 and side.cmd_pub.get_subscription_count() > 0,
                        30, 'arm_driver to come up')
    cmd = np.zeros(ARM.n_joints)
    cmd[0] = 0.3
    side.drive(cmd, 0.8)
    assert side.latest()[0] == pytest.approx(0.3, abs=1e-6)
    proc.proc.send_signal(getattr(signal, sig))
    while proc.proc.poll() is None:   # the policy keeps talking until the end
        side.drive(cmd, CYCLE_MS / 1000)
    side.node.spin_for(0.5)
    assert proc.proc.returncode == 0, proc.output()
    assert np.allclose(side.latest(), 0.0), side.latest()
    # Down by a ramp, not a step (a Franka's reflexes trip on one): 15 rad/s^2 x 10 ms.
    outputs = np.array([v for _, v in side.outputs])
    assert np.max(np.abs(np.diff(outputs, axis=0))) <= 15.0 * 0.010 + 1e-9
    assert 'zero velocity commanded and acknowledged' in proc.output()
