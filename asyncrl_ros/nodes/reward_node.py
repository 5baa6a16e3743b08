"""reward: the seeds' colour-threshold rewards from each camera image.

Franka (paper, Eq. 3): R = 0.25 * dt[ms] * mean(mask). UR5 (thesis, Eq. 3.1):
R = 800 * mean(mask * W) - joint posture penalty, with the joint positions latest at the
image's arrival. Each reward carries the stamp of the image it came from, so the policy
pairs them by stamp. The mask is published as an image for rqt_image_view.
"""
from __future__ import annotations

from rclpy.node import Node
from sensor_msgs.msg import Image

from sensor_msgs.msg import JointState

from asyncrl_ros.robot.arms import get_arm
from asyncrl_ros.nodes.common import (enter_realtime, run_node, REWARD_QOS, SENSOR_QOS, TOPIC_IMAGE, TOPIC_JOINT_STATES,
                                      TOPIC_REWARD, TOPIC_REWARD_MASK, declare, declare_config,
                                      image_to_numpy, numpy_to_image)
from asyncrl_ros.robot.reward import franka_reward, red_mask, ur5_reward
from asyncrl_ros_interfaces.msg import Reward


class RewardNode(Node):
    def __init__(self):
        super().__init__('reward')
        cfg = declare_config(self)
        enter_realtime(self, cfg)   # before its own threads start: they inherit it
        # The reward is a rate: scaled by the action cycle time (paper, Eq. 3).
        self.dt_ms = declare(self, 'action_cycle_ms', cfg.task.action_cycle_ms,
                             'Action cycle time the reward is scaled by, ms')
        self.scale = declare(self, 'reward_scale', cfg.task.reward_scale,
                             'alpha in R = alpha * dt[ms] * mean(mask)')
        self.publish_mask = declare(self, 'publish_mask', True, 'Publish the mask image',
                                    read_only=False)
        self.arm = get_arm(cfg.arm)
        self.q = None
        if self.arm.reward == 'thesis':
            self.create_subscription(JointState, TOPIC_JOINT_STATES, self.on_joint_state,
                                     SENSOR_QOS)
        self.reward_pub = self.create_publisher(Reward, TOPIC_REWARD, REWARD_QOS)
        self.mask_pub = self.create_publisher(Image, TOPIC_REWARD_MASK, SENSOR_QOS)
        self.create_subscription(Image, TOPIC_IMAGE, self.on_image, SENSOR_QOS)

    def on_joint_state(self, msg: JointState):
        try:
            self.q = self.arm.order_joints(msg.name, msg.position)
        except ValueError as err:
            self.get_logger().error(str(err), throttle_duration_sec=5.0)

    def compute(self, mask) -> float:
        if self.arm.reward == 'paper':
            return franka_reward(mask, self.dt_ms, alpha=self.scale)
        return ur5_reward(mask, self.q)

    def on_image(self, msg: Image):
        # A threshold over at most 320x180 px costs well under a millisecond: fine in a callback.
        try:
            mask = red_mask(image_to_numpy(msg))
        except ValueError as err:
            self.get_logger().error(f'bad image: {err}', throttle_duration_sec=5.0)
            return
        if self.arm.reward == 'thesis' and self.q is None:
            self.get_logger().warning('no joint state yet: the UR5 reward needs one',
                                      throttle_duration_sec=5.0)
            return
        out = Reward()
        out.header = msg.header
        out.mask_fraction = float(mask.mean())
        out.reward = float(self.compute(mask))
        self.reward_pub.publish(out)
        if self.get_parameter('publish_mask').value:
            self.mask_pub.publish(numpy_to_image(msg.header.stamp, mask.astype('uint8') * 255,
                                                 'mono8', msg.header.frame_id))


def main(args=None):
    run_node(RewardNode, args)


if __name__ == '__main__':
    main()
