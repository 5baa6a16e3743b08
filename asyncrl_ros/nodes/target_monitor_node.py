"""target_monitor: places (and for the tracker, moves) the target, and shows it and the
workspace box in rviz.

A new target spot is drawn whenever the arm starts homing, so each episode starts with
the target somewhere new: on the table inside the workspace footprint (Franka), or on
the monitor (UR5), where the tracker's disc then moves at constant speed. Markers are
in the fixed `world` frame (no /tf needed).
"""
from __future__ import annotations

import numpy as np
from geometry_msgs.msg import Point, PoseStamped
from rclpy.node import Node
from visualization_msgs.msg import Marker, MarkerArray

from asyncrl_ros.robot.arms import get_arm
from asyncrl_ros.nodes.common import (run_node, LATCHED_QOS, TOPIC_HOMING, TOPIC_MARKERS,
                                      TOPIC_TARGET_POSE, declare, declare_config)
from asyncrl_ros.robot.targets import make_target
from asyncrl_ros_interfaces.msg import HomingStatus

FRAME = 'world'


class TargetMonitorNode(Node):
    def __init__(self):
        super().__init__('target_monitor')
        cfg = declare_config(self)
        self.arm = get_arm(cfg.arm)
        seed = declare(self, 'seed', cfg.run.seed, 'Random seed of target placement')
        task = declare(self, 'task', cfg.task.name, "'reacher' (still) or 'tracker' (moving)")
        self.source = make_target(self.arm.target, np.random.default_rng(seed + 1), task)
        self.period = declare(self, 'period_ms', cfg.sim.image_period_ms,
                              'How often a moving target advances, ms') / 1000.0
        self.pose_pub = self.create_publisher(PoseStamped, TOPIC_TARGET_POSE, LATCHED_QOS)
        self.marker_pub = self.create_publisher(MarkerArray, TOPIC_MARKERS, LATCHED_QOS)
        self.create_subscription(HomingStatus, TOPIC_HOMING, self.on_homing, LATCHED_QOS)
        self.homings_seen: int | None = None
        self.target = self.source.reset()
        self.placements = 0
        if self.source.moving:
            self.create_timer(self.period, self.advance)
        self.publish()

    def advance(self):
        self.target = self.source.step(self.period)
        self.publish(markers=False)

    def on_homing(self, msg: HomingStatus):
        # A new target for each homing started after we joined (by count: edges can merge).
        if self.homings_seen is not None and msg.started > self.homings_seen:
            self.target = self.source.reset()
            self.placements += 1
            self.publish()
        if self.homings_seen is None:
            self.get_logger().info(
                f'following {TOPIC_HOMING} ({msg.started} homings so far): '
                'a new target at each homing from now on')
        self.homings_seen = msg.started

    def publish(self, markers: bool = True):
        stamp = self.get_clock().now().to_msg()
        pose = PoseStamped()
        pose.header.stamp, pose.header.frame_id = stamp, FRAME
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = map(float, self.target)
        pose.pose.orientation.w = 1.0
        self.pose_pub.publish(pose)
        target = Marker(ns='target', id=0, type=Marker.SPHERE, action=Marker.ADD)
        target.header = pose.header
        target.pose = pose.pose
        target.scale.x = target.scale.y = target.scale.z = 0.06
        target.color.r, target.color.a = 1.0, 1.0
        if not markers:
            self.marker_pub.publish(MarkerArray(markers=[target]))
            return

        box = Marker(ns='workspace', id=1, type=Marker.LINE_LIST, action=Marker.ADD)
        box.header = pose.header
        box.pose.orientation.w = 1.0
        box.scale.x = 0.005
        box.color.g, box.color.b, box.color.a = 0.8, 1.0, 1.0
        lo, hi = self.arm.workspace_min, self.arm.workspace_max
        corners = [np.array([x, y, z]) for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                   for z in (lo[2], hi[2])]
        for i, a in enumerate(corners):
            for b in corners[i + 1:]:
                if np.count_nonzero(a != b) == 1:   # edges differ in exactly one axis
                    box.points += [Point(x=float(a[0]), y=float(a[1]), z=float(a[2])),
                                   Point(x=float(b[0]), y=float(b[1]), z=float(b[2]))]
        self.marker_pub.publish(MarkerArray(markers=[target, box]))


def main(args=None):
    run_node(TargetMonitorNode, args)


if __name__ == '__main__':
    main()
