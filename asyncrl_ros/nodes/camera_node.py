"""camera: a USB camera (the papers' Logitech webcam) on /camera/image_raw for the real arms.

A timer at the image period publishes the newest captured frame, stamped with the node
clock at capture, so the reward and the policy pair by the time the scene was seen.
A frame is published once at most: a camera slower than the timer skips a tick.
"""
from __future__ import annotations

import cv2
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import Image

from asyncrl_ros.robot.camera import Camera
from asyncrl_ros.nodes.common import (enter_realtime, run_node, SENSOR_QOS, TOPIC_IMAGE, declare, declare_config,
                                      numpy_to_image)


class CameraNode(Node):
    NAME = 'camera'   # run_node's error prefix

    def __init__(self):
        super().__init__('camera')
        self.camera: Camera | None = None  # rclpy may destroy a node whose __init__ raised
        cfg = declare_config(self)
        enter_realtime(self, cfg)   # before its own threads start: they inherit it
        # Dynamic type: `-p device:=0` arrives as an integer, `-p device:=/dev/video2` as a string.
        self.declare_parameter('device', cfg.camera.device, ParameterDescriptor(
            description="Camera index ('0'), device path (/dev/video2), video file or URL",
            read_only=True, dynamic_typing=True))
        device = str(self.get_parameter('device').value)
        width = declare(self, 'width', cfg.image.width, 'Published image width, px')
        height = declare(self, 'height', cfg.image.height, 'Published image height, px')
        period_ms = declare(self, 'period_ms', cfg.camera.period_ms,
                            'Publishing period, ms (the papers: 40)')
        if period_ms <= 0:
            raise ValueError(f'period_ms must be > 0, got {period_ms}')
        self.frame_id = declare(self, 'frame_id', 'camera', 'frame_id of the images')
        self.camera = Camera(device, width, height, fps=1000.0 / period_ms,
                             clock=lambda: self.get_clock().now().nanoseconds,
                             log=self.get_logger().warning).start()
        self.last_seq = -1
        self.pub = self.create_publisher(Image, TOPIC_IMAGE, SENSOR_QOS)
        self.create_timer(period_ms / 1000.0, self.tick)
        self.get_logger().info(f"camera '{device}' -> {TOPIC_IMAGE} {width}x{height} "
                               f'every {period_ms:g} ms')

    def tick(self):
        frame = self.camera.latest()
        if frame is None or frame.seq == self.last_seq:
            return
        self.last_seq = frame.seq
        stamp = Time(nanoseconds=frame.stamp, clock_type=self.get_clock().clock_type).to_msg()
        self.pub.publish(numpy_to_image(stamp, frame.image, 'rgb8', self.frame_id))

    def destroy_node(self):
        if self.camera is not None:
            self.camera.close()
        super().destroy_node()


def main(args=None):
    # Our own error names the device; OpenCV's backend warnings would only bury it.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    run_node(CameraNode, args)   # CameraError is a ValueError: one line, exit code 2


if __name__ == '__main__':
    main()
