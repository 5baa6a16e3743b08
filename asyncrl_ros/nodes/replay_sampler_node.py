"""replay_sampler (async2): owns the replay, samples and crops mini-batches into a
shared-memory ring that the learner reads in place.

Sampling batch k+1 overlaps the learner's update on batch k. The update cap is applied
here: no more batches than max_updates_per_step x (steps stored since learning began).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from collections import deque
from pathlib import Path

import rclpy
from rclpy.node import Node

from asyncrl_ros.robot.arms import get_arm
from asyncrl_ros.learning.batch_sources import replay_owner, ring_spec
from asyncrl_ros.nodes.common import (run_node, TOPIC_TRANSITIONS, TRANSITION_QOS, declare, declare_config,
                                      msg_to_transition)
from asyncrl_ros.learning.remote import shm_names
from asyncrl_ros.transport.shm_ring import BatchRing, unlink_stale
from asyncrl_ros_interfaces.msg import Transition


class ReplaySamplerNode(Node):
    def __init__(self):
        super().__init__('replay_sampler')
        self.cfg = cfg = declare_config(self)
        run_dir = declare(self, 'run_dir', '', 'Run folder (replay folder, shared-memory names)')
        resume = declare(self, 'resume', False, 'Continue from the run folder')
        if not run_dir:
            raise ValueError("parameter 'run_dir' is required")
        self.run_dir = Path(run_dir)
        os.nice(cfg.asynchronous.learner_niceness)
        n = get_arm(cfg.arm).n_actuated
        # Kept in the run folder as it grows: each episode's start commits the one before.
        self.owner = replay_owner(cfg, self.run_dir, 3 * n, n, resume)
        if self.owner.resumed:
            self.get_logger().info(f'resumed with a replay of {len(self.owner.replay)} '
                                   f'transitions, {self.owner.sampled} batches sampled')
        name = shm_names(self.run_dir)['batches']
        unlink_stale(name)   # a killed sampler's (the learner re-attaches to the new one)
        self.ring = BatchRing.create(name, ring_spec(cfg, 3 * n, n), cfg.asynchronous.ring_slots)
        self.inbox: deque = deque()
        self.create_subscription(Transition, TOPIC_TRANSITIONS,
                                 lambda m: self.inbox.append(msg_to_transition(m)), TRANSITION_QOS)
        self.get_logger().info(
            f'replay {cfg.sac.replay_capacity} transitions, batches of {cfg.sac.batch_size} '
            f'cropped to {cfg.sac.crop_height}x{cfg.sac.crop_width}, ring of '
            f'{cfg.asynchronous.ring_slots} slots')

    def run(self, stop):
        while not stop.is_set() and rclpy.ok():
            self.owner.drain(self.inbox)
            if not self.owner.sample_due():
                time.sleep(0.005)
                continue
            slot = self.ring.acquire_write(timeout=0.02)
            if slot is None:
                continue   # the learner is busy with the batches already waiting
            batch = self.owner.sample(self.owner.sampled)
            for key, value in batch.items():
                slot[key][...] = value
            slot['counts'][:] = (self.owner.stored, self.owner.missing)
            self.ring.commit_write()
            self.owner.sampled += 1

    def save(self):
        self.owner.drain(self.inbox)
        self.owner.commit()
        stats = {**self.owner.stats(), 'ring': dataclasses.asdict(self.ring.stats())}
        (self.run_dir / 'replay_stats.json').write_text(json.dumps(stats, indent=2, default=str))
        self.get_logger().info(f'replay saved: {len(self.owner.replay)} transitions, '
                               f'{self.owner.sampled} batches sampled')

    def close(self):
        self.ring.close()
        self.ring.unlink()


def main(args=None):
    run_node(ReplaySamplerNode, args, compute=True)


if __name__ == '__main__':
    main()
