"""learner: SAC updates as fast as batches come, shipping versioned weights to the policy.

Where its batches come from is the only difference between the async modes:
- async1: this process owns the replay (transitions arrive over a topic) and samples;
- async2: a replay_sampler process fills a shared-memory ring and this one only updates.
ROS callbacks run in a background thread and only queue messages; the main thread is
the update loop, so an update never delays a callback and vice versa.
"""
from __future__ import annotations

import json
import os
import time
from collections import deque
from pathlib import Path

import numpy as np
import rclpy
import torch
from rclpy.node import Node

from asyncrl_ros.robot.arms import get_arm
from asyncrl_ros.learning.batch_sources import OwnReplayBatches, RingBatches, ShmWeightsSink, replay_owner
from asyncrl_ros.learning.checkpoint import load_checkpoint, save_checkpoint
from asyncrl_ros.learning.modes import MODES
from asyncrl_ros.nodes.common import (run_node, METRICS_QOS, TOPIC_LEARNER_STATUS,
                                      TOPIC_TRANSITIONS, TOPIC_WEIGHTS, TRANSITION_QOS,
                                      WEIGHTS_QOS, Diagnostics, declare, declare_config,
                                      msg_to_transition)
from asyncrl_ros.learning.remote import make_agent, policy_tensors, shm_names, weights_to_bytes
from asyncrl_ros.transport.transfer import DeviceBatchLoader, HostSnapshot
from asyncrl_ros.run.tensorboard_log import TensorBoardLog
from asyncrl_ros_interfaces.msg import LearnerStatus, Transition, Weights

CHECKPOINT = 'learner_checkpoint.pt'


class TopicWeightsSink:
    """Weights for a policy on another host (ReLoD's remote mode): serialised over DDS."""

    def __init__(self, node: Node):
        self.node = node
        self.pub = node.create_publisher(Weights, TOPIC_WEIGHTS, WEIGHTS_QOS)
        self.version = 0

    def publish(self, tensors: dict) -> int:
        self.version += 1
        msg = Weights(version=self.version, data=weights_to_bytes(tensors))
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.pub.publish(msg)
        return self.version

    def close(self) -> None:
        pass


class LearnerNode(Node):
    def __init__(self):
        super().__init__('learner')
        self.cfg = cfg = declare_config(self)
        run_dir = declare(self, 'run_dir', '', 'Run folder (checkpoints, shared-memory names)')
        self.resume = declare(self, 'resume', False, 'Continue from the run folder')
        self.restarts = declare(self, 'restarts', 0,
                                'How often the bringup restarted this node in this run')
        # Own the replay (async1) or read batches from the replay_sampler's ring (async2).
        source = MODES[cfg.mode].batch_source
        if source not in ('own_replay', 'ring'):
            raise ValueError(f"mode '{cfg.mode}' runs no learner process")
        if not run_dir:
            raise ValueError("parameter 'run_dir' is required")
        self.run_dir = Path(run_dir)
        os.nice(cfg.asynchronous.learner_niceness)
        torch.set_num_threads(cfg.sac.torch_threads)
        arm = get_arm(cfg.arm)
        n = arm.n_actuated
        self.agent = make_agent(cfg, 3 * n, n)
        names = shm_names(self.run_dir)
        if source == 'own_replay':
            inbox: deque = deque()
            self.create_subscription(Transition, TOPIC_TRANSITIONS,
                                     lambda m: inbox.append(msg_to_transition(m)), TRANSITION_QOS)
            # On a GPU the replay lives there: sampling is a gather, no per-batch host copy.
            owner = replay_owner(cfg, self.run_dir, 3 * n, n, self.resume, self.agent.device)
            self.source = OwnReplayBatches(owner, inbox)
        else:
            self.source = RingBatches(cfg, 3 * n, n, names['batches'])
        # async2's batches reach the device through pinned memory (on a CPU: views).
        self.loader = DeviceBatchLoader(self.agent.device)
        # The acting weights leave the device on a side stream, off the update loop's path.
        self.snapshot = HostSnapshot(policy_tensors(self.agent))
        if self.resume:
            self.restore()
        self.sink = (ShmWeightsSink(names['weights'], self.snapshot.host)
                     if cfg.asynchronous.weights_transport == 'shm' else TopicWeightsSink(self))
        self.status_pub = self.create_publisher(LearnerStatus, TOPIC_LEARNER_STATUS, METRICS_QOS)
        self.version = 0
        if self.updates:
            # A resumed policy should act on what was learned, not wait for the next update.
            self.snapshot.start()
            self.version = self.sink.publish(self.snapshot.wait())
        self.waited = 0
        self.wait_ms = 0.0
        self.update_ms = 0.0
        self.metrics: dict = {}
        # Its own writer (tensorboard/learner); a restart drops what came after its checkpoint.
        self.tb = TensorBoardLog(self.run_dir, 'learner', cfg.run.tensorboard,
                                 cfg.run.tensorboard_every_updates,
                                 purge_step=self.updates + 1 if self.resume else None)
        self.diagnostics = Diagnostics(self)
        self.last_diagnostics = 0.0
        for note in self.agent.placement.notes:
            self.get_logger().info(note)
        self.get_logger().info(
            f"{self.agent.placement.describe()}; "
            f"{cfg.mode} ({'own replay' if source == 'own_replay' else 'batches from replay_sampler'}): "
            f"batch {cfg.sac.batch_size}, {cfg.sac.torch_threads} torch thread(s), weights over "
            f"{cfg.asynchronous.weights_transport}, nice {cfg.asynchronous.learner_niceness}")

    @property
    def updates(self) -> int:
        return self.agent.num_updates   # one count: the agent's, saved with its state

    def run(self, stop):
        every = self.cfg.asynchronous.publish_weights_every
        last_status = last_save = time.monotonic()
        while not stop.is_set() and rclpy.ok():
            t0 = time.perf_counter()
            batch = self.source.next_batch(self.updates, timeout=0.05)
            if batch is None:
                self.waited += 1
                self.wait_ms += (time.perf_counter() - t0) * 1e3
                if time.monotonic() - last_status > 1.0:
                    self.publish_status()
                    last_status = time.monotonic()
                continue
            t1 = time.perf_counter()
            if not isinstance(batch['reward'], torch.Tensor):   # a host batch, not a GPU replay's
                batch = self.loader(batch)
            self.metrics = self.agent.update(batch)
            self.source.release()
            self.update_ms = (time.perf_counter() - t1) * 1e3
            self.tb.update(self.metrics, self.updates, update_ms=self.update_ms,
                           transitions_stored=self.source.stored_missing()[0])
            if self.updates % every == 0:
                self.snapshot.start()   # skipped while the previous copy is in flight
            host = self.snapshot.ready()
            if host is not None:
                self.version = self.sink.publish(host)
            self.publish_status()
            last_status = time.monotonic()
            if time.monotonic() - last_save > self.cfg.asynchronous.learner_checkpoint_s:
                self.save()   # what a restart after a crash continues from
                last_save = time.monotonic()

    def publish_status(self):
        stored, missing = self.source.stored_missing()
        msg = LearnerStatus(updates=self.updates, weights_version=self.version,
                            transitions_stored=stored, transitions_missing=missing,
                            batches_waited=self.waited, wait_ms=self.wait_ms,
                            update_ms=self.update_ms,
                            critic_loss=float(self.metrics.get('critic_loss', 0.0)),
                            alpha=float(self.metrics.get('alpha', 0.0)))
        msg.header.stamp = self.get_clock().now().to_msg()
        self.status_pub.publish(msg)
        now = time.monotonic()
        if now - self.last_diagnostics > 1.0:
            self.last_diagnostics = now
            level = 'WARN' if self.restarts else 'OK'
            self.diagnostics.publish([('restarts', level,
                                       f'restarted {self.restarts} time(s) after dying'
                                       if self.restarts else 'running since the run began',
                                       {'restarts': self.restarts, 'updates': self.updates})])

    def stats(self) -> dict:
        stored, missing = self.source.stored_missing()
        return {'updates': self.updates, 'weights_version': self.version,
                'transitions_stored': stored, 'transitions_missing': missing,
                'batches_waited': self.waited, 'wait_ms': self.wait_ms}

    def save(self):
        save_checkpoint(self.run_dir / CHECKPOINT, self.agent, None)
        self.source.save()
        stats = self.stats()
        (self.run_dir / 'learner_stats.json').write_text(json.dumps(stats, indent=2))
        self.get_logger().info(f"learner saved: {stats['updates']} updates, "
                               f"weights version {stats['weights_version']}")

    def restore(self):
        path = self.run_dir / CHECKPOINT
        replay = self.source.describe()
        if path.is_file():
            state = load_checkpoint(path)
            self.agent.load_state_dict(state['agent'])
            self.get_logger().info(f'resumed at {self.updates} updates; {replay}')
        else:
            self.get_logger().warning(f'no {path}; starting the networks afresh; {replay}')

    def close(self):
        self.tb.close()
        self.source.close()
        self.sink.close()


def main(args=None):
    run_node(LearnerNode, args, compute=True)


if __name__ == '__main__':
    main()
