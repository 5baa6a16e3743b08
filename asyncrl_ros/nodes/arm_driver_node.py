"""arm_driver: the safety layer between the policy and the robot's velocity controller.

Every command that reaches the robot passes the core SafetyFilter (clamp, joint
limits, ramping, workspace box, each with the ramp's stopping distance reserved) on a
fixed-rate timer, and a watchdog zeroes the output when the policy or the joint states go
quiet. It also owns homing: a bounded joint-space move to the home pose in about `reset_s`.

Real arms: commands go to `/<velocity_controller>/commands` (a ros2_control forward
velocity controller: ForwardCommandController or JointGroupVelocityController). For a UR the
driver's speed-scaling slider is honoured (the velocity controller itself ignores it)
and nothing is sent while the robot program is not running. For a Franka,
`~/recover` calls franka_msgs' ErrorRecovery action where franka_msgs is installed.
"""
from __future__ import annotations

import time

import numpy as np
from rclpy.duration import Duration
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64, Float64MultiArray
from std_srvs.srv import Trigger

from visualization_msgs.msg import Marker, MarkerArray

from asyncrl_ros.robot.arms import configured_arm
from asyncrl_ros_interfaces.msg import HomingStatus

from asyncrl_ros.nodes.common import (enter_realtime, run_node, COMMAND_QOS, LATCHED_QOS, SENSOR_QOS, SERVICE_HOME,
                                      Diagnostics,
                                      TOPIC_EE_MARKERS, TOPIC_HOMING, TOPIC_JOINT_STATES,
                                      TOPIC_POLICY_COMMAND,
                                      TOPIC_ROBOT_COMMAND, declare, declare_config)
from asyncrl_ros.robot.safety import SafetyFilter, Watchdog

# ur_robot_driver's topics (see its documentation).
UR_SPEED_SCALING = '/speed_scaling_state_broadcaster/speed_scaling'
UR_PROGRAM_RUNNING = '/io_and_status_controller/robot_program_running'
# franka_ros2's error recovery action (franka_msgs >= 1.0) and robot state.
FRANKA_ERROR_RECOVERY = '/action_server/error_recovery'
FRANKA_ROBOT_STATE = '/franka_robot_state_broadcaster/robot_state'


class ArmDriverNode(Node):
    def __init__(self):
        super().__init__('arm_driver')
        cfg = declare_config(self)
        enter_realtime(self, cfg)   # before its own threads start: they inherit it
        self.arm = configured_arm(cfg)   # the config's velocity bound, joint ranges and box
        cycle = declare(self, 'action_cycle_ms', cfg.task.action_cycle_ms,
                        'Policy action cycle, ms (sets the watchdog)') / 1000.0
        self.period = declare(self, 'output_period_ms', 10.0,
                              'Period of commands sent to the robot, ms') / 1000.0
        self.reset_s = declare(self, 'reset_s', cfg.task.reset_s, 'Duration of homing, s')
        controller = declare(self, 'velocity_controller', 'forward_velocity_controller',
                             'ros2_control velocity controller whose ~/commands we publish')
        self.max_acceleration = cfg.safety.max_acceleration
        self.filter = SafetyFilter(self.arm.safety_limits(cfg.safety, period=self.period),
                                   self.arm.fk_position)
        watchdog_s = cfg.safety.watchdog_cycles * cycle
        self.policy_watchdog = Watchdog(watchdog_s)
        self.state_watchdog = Watchdog(watchdog_s)

        self.q: np.ndarray | None = None
        self.command = np.zeros(self.arm.n_joints)
        self.last_output = np.zeros(self.arm.n_joints)
        self.homing_since: float | None = None
        self.home_start_q: np.ndarray | None = None
        self.homings_started = self.homings_finished = 0
        self.events: dict[str, int] = {}

        topic = f'/{controller}/commands' if controller else TOPIC_ROBOT_COMMAND
        self.out_pub = self.create_publisher(Float64MultiArray, topic, COMMAND_QOS)
        self.speed_scaling = 1.0
        self.program_running = True
        self.robot_mode = None   # Franka: from its robot state broadcaster, where available
        if cfg.arm.startswith('ur'):
            self.create_subscription(Float64, UR_SPEED_SCALING, self.on_speed_scaling, LATCHED_QOS)
            self.create_subscription(Bool, UR_PROGRAM_RUNNING, self.on_program_running,
                                     LATCHED_QOS)
        if cfg.arm == 'franka' and cfg.world == 'real':
            self.create_service(Trigger, '~/recover', self.on_recover)
            self.recovery_client = self.make_recovery_client()
            self.subscribe_franka_state()
        self.homing_pub = self.create_publisher(HomingStatus, TOPIC_HOMING, LATCHED_QOS)
        self.create_subscription(Float64MultiArray, TOPIC_POLICY_COMMAND, self.on_command,
                                 COMMAND_QOS)
        self.create_subscription(JointState, TOPIC_JOINT_STATES, self.on_joint_state, SENSOR_QOS)
        self.create_service(Trigger, SERVICE_HOME, self.on_home)
        self.create_timer(self.period, self.tick)
        self.diagnostics = Diagnostics(self, self.arm.name)
        self.marker_pub = self.create_publisher(MarkerArray, TOPIC_EE_MARKERS, 10)
        self.create_timer(1.0, self.report)
        self.create_timer(0.1, self.publish_ee_marker)
        self.publish_homing()
        self.get_logger().info(
            f'{self.arm.name}: watchdog {watchdog_s * 1e3:.0f} ms, ramp '
            f'{cfg.safety.max_acceleration:g} rad/s^2, velocity bound '
            f'{np.round(self.arm.velocity_limits, 3).tolist()} rad/s, joint ranges '
            f'{np.round(np.stack([self.arm.joint_lower, self.arm.joint_upper], 1), 3).tolist()}, '
            f'workspace {self.arm.workspace_min} .. {self.arm.workspace_max}')

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def on_command(self, msg: Float64MultiArray):
        # Validation happens in the filter at output time; keep the raw values here.
        self.command = np.asarray(msg.data, dtype=float)
        self.policy_watchdog.feed(self.now())

    def on_joint_state(self, msg: JointState):
        try:
            self.q = self.arm.order_joints(msg.name, msg.position)
        except ValueError as err:
            self.get_logger().error(str(err), throttle_duration_sec=5.0)
            return
        self.state_watchdog.feed(self.now())

    def on_speed_scaling(self, msg: Float64):
        # The driver reports 0..1 (its docs) or a percentage (older versions): accept both.
        value = msg.data / 100.0 if msg.data > 1.0 else msg.data
        self.speed_scaling = min(max(value, 0.0), 1.0)

    def on_program_running(self, msg: Bool):
        if not msg.data and self.program_running:
            self.get_logger().warning('UR program not running: sending zero until it is')
        self.program_running = msg.data

    def subscribe_franka_state(self):
        try:
            from franka_msgs.msg import FrankaRobotState
        except ImportError:
            self.get_logger().warning(f'franka_msgs is not installed: not watching {FRANKA_ROBOT_STATE} '
                                      '(reflex and error states show only on Franka Desk)')
            return
        self.create_subscription(FrankaRobotState, FRANKA_ROBOT_STATE,
                                 lambda m: setattr(self, 'robot_mode', int(m.robot_mode)), SENSOR_QOS)

    def make_recovery_client(self):
        try:
            from franka_msgs.action import ErrorRecovery
            from rclpy.action import ActionClient
        except ImportError:
            self.get_logger().warning('franka_msgs is not installed: ~/recover cannot call '
                                      f'{FRANKA_ERROR_RECOVERY}; recover from Franka Desk')
            return None
        return ActionClient(self, ErrorRecovery, FRANKA_ERROR_RECOVERY)

    def on_recover(self, request, response):
        if self.recovery_client is None:
            response.success = False
            response.message = ('franka_msgs is not installed here, so the error recovery '
                                f'action {FRANKA_ERROR_RECOVERY} cannot be called')
            return response
        if not self.recovery_client.server_is_ready():
            response.success, response.message = False, f'{FRANKA_ERROR_RECOVERY} is not available'
            return response
        from franka_msgs.action import ErrorRecovery
        self.recovery_client.send_goal_async(ErrorRecovery.Goal())
        self.filter.reset()
        response.success, response.message = True, 'error recovery requested'
        return response

    def on_home(self, request, response):
        if self.q is None:
            response.success, response.message = False, 'no joint states yet'
            return response
        if self.homing_since is None:   # a request during a homing restarts that same move
            self.homings_started += 1
        self.homing_since, self.home_start_q = self.now(), self.q.copy()
        self.publish_homing()
        response.success, response.message = True, f'homing over {self.reset_s:g} s'
        return response

    def count(self, events):
        for event in events:
            self.events[event] = self.events.get(event, 0) + 1

    def tick(self):
        now = self.now()
        if self.q is None or self.state_watchdog.expired(now):
            # No fresh joint state: we cannot check anything, so stop.
            self.publish(np.zeros(self.arm.n_joints), ['state_silent'])
            return
        if self.homing_since is not None:
            # Homing follows a joint-space path home that may graze the box's edge, at the
            # arm's own speed limits (the policy's bound may be far lower, e.g. the paper's).
            safe, events = self.filter.filter(
                self.homing_command(now), self.q, self.period, bound_workspace=False,
                velocity_limits=self.arm.homing_velocity_limits)
            self.publish(safe, events)
            return
        if self.policy_watchdog.expired(now):
            desired = np.zeros(self.arm.n_joints)
            self.count(['watchdog'])
        else:
            desired = np.array(self.command, dtype=float)
            if desired.shape == (self.arm.n_joints,):
                desired[~self.arm.actuated] = 0.0   # e.g. the UR5's last wrist joint stays put
        safe, events = self.filter.filter(desired, self.q, self.period)
        self.publish(safe, events)

    def report(self):
        now = self.now()
        checks = []
        if self.q is None or self.state_watchdog.expired(now):
            checks.append(('joint states', 'ERROR', 'driver silent: no joint states, output zero', {}))
        else:
            checks.append(('joint states', 'OK', 'receiving', {}))
        if self.homing_since is not None:
            checks.append(('policy', 'OK', 'homing', {}))
        elif self.policy_watchdog.expired(now):
            checks.append(('policy', 'WARN', 'watchdog fired: policy silent, output zero', {}))
        else:
            checks.append(('policy', 'OK', 'commands arriving', {}))
        if self.robot_mode is not None:
            # franka_msgs/FrankaRobotState: 4 = reflex, 5 = user stopped (needs recovery).
            stopped = self.robot_mode in (4, 5)
            checks.append(('franka robot mode', 'ERROR' if stopped else 'OK',
                           'stopped: call /arm_driver/recover' if stopped else 'ready',
                           {'robot_mode': self.robot_mode}))
        events = dict(self.events)
        level = 'WARN' if events.get('nan') or events.get('wrong_length') else 'OK'
        checks.append(('safety filter', level, 'events since start', events))
        self.diagnostics.publish(checks)

    def publish_ee_marker(self):
        if self.q is None:
            return
        p = self.arm.fk_position(self.q)
        marker = Marker(ns='end_effector', id=2, type=Marker.SPHERE, action=Marker.ADD)
        marker.header.frame_id = 'world'
        marker.header.stamp = self.get_clock().now().to_msg()
        marker.pose.position.x, marker.pose.position.y, marker.pose.position.z = map(float, p)
        marker.pose.orientation.w = 1.0
        marker.scale.x = marker.scale.y = marker.scale.z = 0.04
        inside = np.all(p >= self.arm.workspace_min) and np.all(p <= self.arm.workspace_max)
        marker.color.g, marker.color.r, marker.color.a = (1.0, 0.0, 1.0) if inside else (0.0, 1.0, 1.0)
        self.marker_pub.publish(MarkerArray(markers=[marker]))

    def publish_homing(self):
        msg = HomingStatus(active=self.homing_since is not None, started=self.homings_started,
                           finished=self.homings_finished)
        msg.header.stamp = self.get_clock().now().to_msg()
        self.homing_pub.publish(msg)

    def homing_command(self, now: float) -> np.ndarray:
        elapsed = now - self.homing_since
        error = self.arm.home_qpos - self.q
        if np.max(np.abs(error)) < 0.01 or elapsed > 3 * self.reset_s:
            if np.max(np.abs(error)) >= 0.01:
                self.get_logger().warning(f'homing timed out, error {np.max(np.abs(error)):.3f} rad')
            self.homing_since = None
            self.homings_finished += 1
            self.publish_homing()
            return np.zeros(self.arm.n_joints)   # ramped down from the last homing output
        # Arrive together at reset_s; the filter bounds speed and acceleration.
        remaining = max(self.reset_s - elapsed, 0.25)
        return error / remaining

    def stop_arm(self):
        """Leave the robot commanded to zero, however the driver ends.

        ros2_control's forward controller holds its last command forever, so the last word
        must be zero, and it must arrive: ramp down at the filter's deceleration (a velocity
        step trips a Franka's reflexes), in wall time (a stopped sim no longer ticks /clock),
        then wait until the controller has acknowledged it.
        """
        if not self.context.ok():
            return
        v = np.array(self.last_output, dtype=float)
        step = self.max_acceleration * self.period
        for _ in range(int(np.ceil(np.max(np.abs(v), initial=0.0) / step))):
            v = np.sign(v) * np.maximum(np.abs(v) - step, 0.0)
            self.out_pub.publish(Float64MultiArray(data=[float(x) for x in v]))
            time.sleep(self.period)
        self.out_pub.publish(Float64MultiArray(data=[0.0] * self.arm.n_joints))
        self.last_output = np.zeros(self.arm.n_joints)
        t0 = time.monotonic()
        if self.out_pub.wait_for_all_acked(Duration(seconds=4.0)):
            self.get_logger().info('stopped: zero velocity commanded and acknowledged '
                                   f'({time.monotonic() - t0:.2f} s)')
        else:
            self.get_logger().warning(
                f'stopped: zero velocity sent on {self.out_pub.topic_name}, but the '
                'controller did not acknowledge it; check that the arm is at rest')

    def publish(self, command: np.ndarray, events):
        if not self.program_running:
            command = np.zeros(self.arm.n_joints)
            self.filter.reset()
        command = command * self.speed_scaling
        self.count(events)
        self.last_output = command
        self.out_pub.publish(Float64MultiArray(data=[float(v) for v in command]))


def stop_arm(node: ArmDriverNode) -> None:
    node.stop_arm()


def main(args=None):
    run_node(ArmDriverNode, args, on_exit=stop_arm)


if __name__ == '__main__':
    main()
