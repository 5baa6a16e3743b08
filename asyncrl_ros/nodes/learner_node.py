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

from asyncrl_ros.arms import get_arm
from asyncrl_ros.checkpoint import load_checkpoint, save_checkpoint
from asyncrl_ros.nodes.common import (run_node, METRICS_QOS, TOPIC_TRANSITIONS, TOPIC_WEIGHTS,
                                      TRANSITION_QOS, WEIGHTS_QOS, Diagnostics, declare,
                                      declare_config, msg_to_transition)
from asyncrl_ros.remote import (ReplayOwner, batch_spec, make_agent, policy_tensors, shm_names,
                                weights_to_bytes)
from asyncrl_ros.shm_ring import BatchRing, unlink_stale
from asyncrl_ros.transfer import DeviceBatchLoader, HostSnapshot
from asyncrl_ros.shm_weights import WeightStore
from asyncrl_ros.tensorboard_log import TensorBoardLog
from asyncrl_ros_interfaces.msg import LearnerStatus, Transition, Weights

TOPIC_LEARNER_STATUS = '/learner/status'
CHECKPOINT = 'learner_checkpoint.pt'
REPLAY_CHECKPOINT = 'replay_checkpoint.pt'


class OwnReplayBatches:
    """async1: transitions arrive here; sample from our own replay."""

    def __init__(self, node: Node, cfg, proprio_dim: int, action_dim: int, device):
        self.cfg = cfg
        # On a GPU the replay lives there: sampling is a gather, no per-batch host copy.
        self.owner = ReplayOwner(cfg, proprio_dim, action_dim, device=device)
        self.saved_at_episode = 0
        self.inbox: deque = deque()
        node.create_subscription(Transition, TOPIC_TRANSITIONS, lambda m: self.inbox.append(m),
                                 TRANSITION_QOS)

    def drain(self) -> None:
        while self.inbox:
            self.owner.ingest(msg_to_transition(self.inbox.popleft()))

    def next_batch(self, updates: int, timeout: float):
        self.drain()
        cfg = self.cfg
        allowed = cfg.run.max_updates_per_step * self.owner.learning_steps(cfg.learning_starts)
        if updates + 1 > allowed or len(self.owner.replay) < cfg.sac.batch_size:
            time.sleep(timeout)
            return None
        return self.owner.replay.sample(cfg.sac.batch_size, (cfg.sac.crop_height, cfg.sac.crop_width))

    def release(self) -> None:
        pass

    def stored_missing(self) -> tuple[int, int]:
        return self.owner.stored, self.owner.missing

    def save(self, run_dir: Path) -> None:
        self.drain()
        save_checkpoint(run_dir / REPLAY_CHECKPOINT, None, self.owner.replay,
                        {'owner': self.owner.state_dict()})
        self.saved_at_episode = self.owner.episodes

    def save_due(self) -> bool:
        every = self.cfg.run.checkpoint_every_episodes
        return every > 0 and self.owner.episodes - self.saved_at_episode >= every

    def restore(self, run_dir: Path) -> str:
        path = run_dir / REPLAY_CHECKPOINT
        if not path.is_file():
            return 'no replay checkpoint: an empty replay'
        state = load_checkpoint(path)
        self.owner.replay.load_state_dict(state['replay'])
        self.owner.load_state_dict(state['extra']['owner'])
        self.saved_at_episode = self.owner.episodes
        return f'replay of {len(self.owner.replay)} transitions'

    def close(self) -> None:
        pass


class RingBatches:
    """async2: batches sampled and cropped by replay_sampler, read in place from shared memory."""

    def __init__(self, node: Node, cfg, proprio_dim: int, action_dim: int, name: str):
        self.spec = ring_spec(cfg, proprio_dim, action_dim)
        self.cfg, self.name = cfg, name
        self.ring: BatchRing | None = None
        self.retired: list[BatchRing] = []   # rings of a dead sampler (views may live on)
        self.stored = self.missing = 0
        self.next_check = 0.0

    def next_batch(self, updates: int, timeout: float):
        if self.ring is None:
            try:
                self.ring = BatchRing.attach(self.name, self.spec, self.cfg.asynchronous.ring_slots)
            except (FileNotFoundError, ValueError):   # not there, or its header not yet
                time.sleep(timeout)
                return None
        views = self.ring.acquire_read(timeout=timeout)
        if views is None:
            if time.monotonic() >= self.next_check:
                self.next_check = time.monotonic() + 0.5
                if self.ring.replaced():   # the sampler was restarted: its new ring
                    self.retired.append(self.ring)
                    self.ring = None
            return None
        self.stored, self.missing = int(views['counts'][0]), int(views['counts'][1])
        return views

    def release(self) -> None:
        self.ring.release_read()

    def stored_missing(self) -> tuple[int, int]:
        return self.stored, self.missing

    def save(self, run_dir: Path) -> None:
        pass   # the sampler saves the replay

    def save_due(self) -> bool:
        return False

    def restore(self, run_dir: Path) -> str:
        return 'batches from replay_sampler'

    def close(self) -> None:
        if self.ring is not None:
            self.ring.close()


def ring_spec(cfg, proprio_dim: int, action_dim: int) -> dict:
    # Plus the sampler's transition counts at sampling time, so the learner can report them.
    return {**batch_spec(cfg, proprio_dim, action_dim), 'counts': ((2,), np.int64)}


class ShmWeightsSink:
    def __init__(self, name: str, example: dict):
        unlink_stale(name)   # a killed learner's (policies still mapping it re-attach)
        self.store = WeightStore.create(name, example)

    def publish(self, tensors: dict) -> int:
        return self.store.publish(tensors)

    def close(self) -> None:
        self.store.close()
        self.store.unlink()


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
        own_replay = declare(self, 'own_replay', cfg.mode == 'async1',
                             'Own the replay (async1) or read batches from replay_sampler (async2)')
        if not run_dir:
            raise ValueError("parameter 'run_dir' is required")
        self.run_dir = Path(run_dir)
        os.nice(cfg.asynchronous.learner_niceness)
        torch.set_num_threads(cfg.sac.torch_threads)
        arm = get_arm(cfg.arm)
        n = arm.n_actuated
        self.agent = make_agent(cfg, 3 * n, n)
        names = shm_names(self.run_dir)
        self.source = (OwnReplayBatches(self, cfg, 3 * n, n, self.agent.device) if own_replay
                       else RingBatches(self, cfg, 3 * n, n, names['batches']))
        # async2's batches reach the device through pinned memory (on a CPU: views).
        self.loader = DeviceBatchLoader(self.agent.device)
        # The acting weights leave the device on a side stream, off the update loop's path.
        self.snapshot = HostSnapshot(policy_tensors(self.agent))
        self.updates = 0
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
            f"{'async1 (own replay)' if own_replay else 'async2 (batches from replay_sampler)'}: "
            f"batch {cfg.sac.batch_size}, {cfg.sac.torch_threads} torch thread(s), weights over "
            f"{cfg.asynchronous.weights_transport}, nice {cfg.asynchronous.learner_niceness}")

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
            self.updates += 1
            self.tb.update(self.metrics, self.updates, update_ms=self.update_ms,
                           transitions_stored=self.source.stored_missing()[0])
            if self.updates % every == 0:
                self.snapshot.start()   # skipped while the previous copy is in flight
            host = self.snapshot.ready()
            if host is not None:
                self.version = self.sink.publish(host)
            self.publish_status()
            last_status = time.monotonic()
            if (time.monotonic() - last_save > self.cfg.asynchronous.learner_checkpoint_s
                    or self.source.save_due()):
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
        save_checkpoint(self.run_dir / CHECKPOINT, self.agent, None, {'updates': self.updates})
        self.source.save(self.run_dir)
        stats = self.stats()
        (self.run_dir / 'learner_stats.json').write_text(json.dumps(stats, indent=2))
        self.get_logger().info(f"learner saved: {stats['updates']} updates, "
                               f"weights version {stats['weights_version']}")

    def restore(self):
        path = self.run_dir / CHECKPOINT
        replay = self.source.restore(self.run_dir)
        if path.is_file():
            state = load_checkpoint(path)
            self.agent.load_state_dict(state['agent'])
            self.updates = int(state['extra']['updates'])
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
