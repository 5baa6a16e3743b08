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

from asyncrl_ros.arms import get_arm
from asyncrl_ros.checkpoint import load_checkpoint, save_checkpoint
from asyncrl_ros.nodes.common import (run_node, TOPIC_TRANSITIONS, TRANSITION_QOS, declare, declare_config,
                                      msg_to_transition)
from asyncrl_ros.nodes.learner_node import REPLAY_CHECKPOINT, ring_spec
from asyncrl_ros.remote import ReplayOwner, shm_names
from asyncrl_ros.shm_ring import BatchRing, unlink_stale
from asyncrl_ros_interfaces.msg import Transition


class ReplaySamplerNode(Node):
    def __init__(self):
        super().__init__('replay_sampler')
        self.cfg = cfg = declare_config(self)
        run_dir = declare(self, 'run_dir', '', 'Run folder (checkpoints, shared-memory names)')
        resume = declare(self, 'resume', False, 'Continue from the run folder')
        if not run_dir:
            raise ValueError("parameter 'run_dir' is required")
        self.run_dir = Path(run_dir)
        os.nice(cfg.asynchronous.learner_niceness)
        n = get_arm(cfg.arm).n_actuated
        self.owner = ReplayOwner(cfg, 3 * n, n)
        if resume and (self.run_dir / REPLAY_CHECKPOINT).is_file():
            state = load_checkpoint(self.run_dir / REPLAY_CHECKPOINT)
            self.owner.replay.load_state_dict(state['replay'])
            self.owner.load_state_dict(state['extra']['owner'])
            self.batches = int(state['extra']['batches'])
            self.get_logger().info(f'resumed with a replay of {len(self.owner.replay)} '
                                   f'transitions, {self.batches} batches sampled')
        else:
            self.batches = 0
        self.saved_at_episode = self.owner.episodes
        name = shm_names(self.run_dir)['batches']
        unlink_stale(name)   # a killed sampler's (the learner re-attaches to the new one)
        self.ring = BatchRing.create(name, ring_spec(cfg, 3 * n, n), cfg.asynchronous.ring_slots)
        self.inbox: deque = deque()
        self.create_subscription(Transition, TOPIC_TRANSITIONS, lambda m: self.inbox.append(m),
                                 TRANSITION_QOS)
        self.get_logger().info(
            f'replay {cfg.sac.replay_capacity} transitions, batches of {cfg.sac.batch_size} '
            f'cropped to {cfg.sac.crop_height}x{cfg.sac.crop_width}, ring of '
            f'{cfg.asynchronous.ring_slots} slots')

    def run(self, stop):
        cfg = self.cfg
        crop = (cfg.sac.crop_height, cfg.sac.crop_width)
        while not stop.is_set() and rclpy.ok():
            while self.inbox:
                self.owner.ingest(msg_to_transition(self.inbox.popleft()))
            every = cfg.run.checkpoint_every_episodes
            if every > 0 and self.owner.episodes - self.saved_at_episode >= every:
                self.save()   # what a restart after a crash continues from
            allowed = cfg.run.max_updates_per_step * self.owner.learning_steps(cfg.learning_starts)
            if self.batches + 1 > allowed or len(self.owner.replay) < cfg.sac.batch_size:
                time.sleep(0.005)
                continue
            slot = self.ring.acquire_write(timeout=0.02)
            if slot is None:
                continue   # the learner is busy with the batches already waiting
            batch = self.owner.replay.sample(cfg.sac.batch_size, crop)
            for key, value in batch.items():
                slot[key][...] = value
            slot['counts'][:] = (self.owner.stored, self.owner.missing)
            self.ring.commit_write()
            self.batches += 1

    def save(self):
        while self.inbox:
            self.owner.ingest(msg_to_transition(self.inbox.popleft()))
        save_checkpoint(self.run_dir / REPLAY_CHECKPOINT, None, self.owner.replay,
                        {'owner': self.owner.state_dict(), 'batches': self.batches})
        self.saved_at_episode = self.owner.episodes
        stats = {**self.owner.stats(), 'batches': self.batches,
                 'ring': dataclasses.asdict(self.ring.stats())}
        (self.run_dir / 'replay_stats.json').write_text(json.dumps(stats, indent=2, default=str))
        self.get_logger().info(f'replay saved: {len(self.owner.replay)} transitions, '
                               f'{self.batches} batches sampled')

    def close(self):
        self.ring.close()
        self.ring.unlink()


def main(args=None):
    run_node(ReplaySamplerNode, args, compute=True)


if __name__ == '__main__':
    main()
