"""policy: acts on a fixed timer at the action cycle time and runs the episodes.

The episodes (homing, frame/reward pairing, acting, storing, counters) are EpisodeRunner's
(asyncrl_ros/learning/episode_runner.py, no ROS); this node wires topics, timer and services to it."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from asyncrl_ros.robot.arms import configured_arm
from asyncrl_ros.learning.checkpoint import load_checkpoint, save_checkpoint
from asyncrl_ros.learning.episode_runner import EpisodeRunner, Homing, Outputs
from asyncrl_ros.learning.evaluate import EvalBackend
from asyncrl_ros.nodes.common import (enter_realtime, COMMAND_QOS, LATCHED_QOS, METRICS_QOS, REWARD_QOS,
                                      SENSOR_QOS, SERVICE_HOME, TOPIC_EPISODE_METRICS,
                                      TOPIC_HOMING, TOPIC_IMAGE, TOPIC_JOINT_STATES,
                                      TOPIC_LEARNER_STATUS, TOPIC_POLICY_COMMAND, TOPIC_REWARD,
                                      TOPIC_STEP_METRICS, Diagnostics, declare, declare_config,
                                      image_to_numpy, run_node, stamp_ns)
from asyncrl_ros.nodes.policy_backends import make_backend
from asyncrl_ros_interfaces.msg import (EpisodeMetrics, HomingStatus, LearnerStatus, Reward,
                                        StepMetrics)

CHECKPOINT = 'checkpoint.pt'


def filled(msg, row: dict):
    """`msg` with each of its fields that `row` has set (a non-finite float as 0)."""
    for name, kind in msg.get_fields_and_field_types().items():
        if name in row:
            v = row[name]
            setattr(msg, name, float(np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0))
                    if kind == 'double' else bool(v) if kind == 'boolean' else int(v))
    return msg


class PolicyNode(Node):
    def __init__(self):
        super().__init__('policy')
        cfg = declare_config(self)
        enter_realtime(self, cfg)   # before its own threads start: they inherit it
        run_dir = declare(self, 'run_dir', '', 'Run folder for logs and checkpoints')
        self.resume = declare(self, 'resume', False, 'Continue from run_dir/checkpoint.pt')
        declare(self, 'explore', True, 'Sample actions (False: act on the mean)', read_only=False)
        # --eval N: the run's saved policy on the mean for N episodes; nothing learned or saved.
        evaluate = declare(self, 'evaluate', 0,
                           "Evaluate run_dir's checkpoint for this many episodes (0: train)")
        if not run_dir:
            raise ValueError("parameter 'run_dir' is required")
        self.run_dir = Path(run_dir)
        # The configured bounds (the paper's 0.2 rad/s on the Franka) set the action scale.
        self.arm = arm = configured_arm(cfg)
        self.action_scale = arm.velocity_limits[arm.actuated] * cfg.safety.velocity_fraction
        n = arm.n_actuated
        path, resume_state = self.run_dir / CHECKPOINT, None
        if evaluate:
            learner = EvalBackend(cfg, 3 * n, n, run_dir)
        else:
            learner = make_backend(self, cfg, 3 * n, n)
            if self.resume and not path.is_file():
                raise FileNotFoundError(f'--resume: no checkpoint at {path}')
            resume_state = load_checkpoint(path) if self.resume else None
        cmd_pub = self.create_publisher(Float64MultiArray, TOPIC_POLICY_COMMAND, COMMAND_QOS)
        publish = lambda v: cmd_pub.publish(Float64MultiArray(data=[float(x) for x in v]))  # noqa: E731
        step_pub = self.create_publisher(StepMetrics, TOPIC_STEP_METRICS, METRICS_QOS)
        episode_pub = self.create_publisher(EpisodeMetrics, TOPIC_EPISODE_METRICS, METRICS_QOS)
        self.home_client = self.create_client(Trigger, SERVICE_HOME)
        out = Outputs(
            command=lambda a: publish(arm.full_command(a * self.action_scale)),
            stop=lambda: publish(np.zeros(arm.n_joints)),
            home_service_ready=self.home_client.service_is_ready,
            request_home=lambda: self.home_client.call_async(Trigger.Request()).add_done_callback(
                self.on_home_response),
            step_metrics=lambda row: step_pub.publish(filled(StepMetrics(), row)),
            episode_metrics=lambda row: episode_pub.publish(filled(EpisodeMetrics(), row)),
            diagnostics=Diagnostics(self).publish, save_checkpoint=partial(save_checkpoint, path))
        self.runner = EpisodeRunner(cfg, learner, run_dir, n, out, self.get_logger(),
                                    explore=lambda: self.get_parameter('explore').value,
                                    evaluate=evaluate, resume_state=resume_state)
        runner, clock = self.runner, self.get_clock()
        # Messages to arrays and numbers; all the work happens in the runner's tick.
        for msg_type, topic, callback, qos in (
                (Image, TOPIC_IMAGE, lambda m: runner.on_frame(
                    stamp_ns(m.header.stamp), image_to_numpy(m).transpose(2, 0, 1)), SENSOR_QOS),
                (Reward, TOPIC_REWARD,
                 lambda m: runner.on_reward(stamp_ns(m.header.stamp), m.reward), REWARD_QOS),
                (JointState, TOPIC_JOINT_STATES, self.on_joint_state, SENSOR_QOS),
                (HomingStatus, TOPIC_HOMING, lambda m: runner.on_homing(
                    Homing(m.active, m.started, m.finished), clock.now().nanoseconds), LATCHED_QOS),
                (LearnerStatus, TOPIC_LEARNER_STATUS, lambda m: runner.on_learner_status(
                    m.updates, m.transitions_stored, m.transitions_missing, m.batches_waited),
                 METRICS_QOS)):
            self.create_subscription(msg_type, topic, callback, qos)
        self.create_timer(cfg.task.action_cycle_ms / 1000.0,
                          lambda: runner.tick(clock.now().nanoseconds))

    @property
    def done(self) -> bool:   # the run (or evaluation) is over: run_node ends the process
        return self.runner.done

    def on_joint_state(self, msg: JointState):
        try:
            q = self.arm.order_joints(msg.name, msg.position)
            qd = self.arm.order_joints(msg.name, msg.velocity)
        except ValueError as err:
            self.get_logger().error(str(err), throttle_duration_sec=5.0)
            return
        self.runner.on_joints(q[self.arm.actuated], qd[self.arm.actuated])

    def on_home_response(self, future):
        response = future.result()
        self.runner.on_home_response(response is not None and response.success,
                                     response.message if response else 'no response')


def main(args=None):
    # Ctrl-C / SIGTERM: save everything learned so far.
    run_node(PolicyNode, args, on_exit=lambda node: node.runner.shutdown())


if __name__ == '__main__':
    main()
