"""reward: the paper's colour-threshold reward from each camera image.

Each reward carries the stamp of the image it came from, so the policy pairs them
by stamp. The mask is published as an image for rqt_image_view.
"""
from __future__ import annotations

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import Image

from asyncrl_ros.nodes.common import (REWARD_QOS, SENSOR_QOS, TOPIC_IMAGE, TOPIC_REWARD,
                                      TOPIC_REWARD_MASK, declare, declare_config,
                                      image_to_numpy, numpy_to_image)
from asyncrl_ros.reward import franka_reward, red_mask
from asyncrl_ros_interfaces.msg import Reward


class RewardNode(Node):
    def __init__(self):
        super().__init__('reward')
        cfg = declare_config(self)
        # The reward is a rate: scaled by the action cycle time (paper, Eq. 3).
        self.dt_ms = declare(self, 'action_cycle_ms', cfg.task.action_cycle_ms,
                             'Action cycle time the reward is scaled by, ms')
        self.scale = declare(self, 'reward_scale', cfg.task.reward_scale,
                             'alpha in R = alpha * dt[ms] * mean(mask)')
        self.publish_mask = declare(self, 'publish_mask', True, 'Publish the mask image',
                                    read_only=False)
        self.reward_pub = self.create_publisher(Reward, TOPIC_REWARD, REWARD_QOS)
        self.mask_pub = self.create_publisher(Image, TOPIC_REWARD_MASK, SENSOR_QOS)
        self.create_subscription(Image, TOPIC_IMAGE, self.on_image, SENSOR_QOS)

    def on_image(self, msg: Image):
        # A threshold over at most 320x180 px costs well under a millisecond: fine in a callback.
        try:
            mask = red_mask(image_to_numpy(msg))
        except ValueError as err:
            self.get_logger().error(f'bad image: {err}', throttle_duration_sec=5.0)
            return
        out = Reward()
        out.header = msg.header
        out.mask_fraction = float(mask.mean())
        out.reward = float(franka_reward(mask, self.dt_ms, alpha=self.scale))
        self.reward_pub.publish(out)
        if self.get_parameter('publish_mask').value:
            self.mask_pub.publish(numpy_to_image(msg.header.stamp, mask.astype('uint8') * 255,
                                                 'mono8', msg.header.frame_id))


def main(args=None):
    rclpy.init(args=args)
    node = RewardNode()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
