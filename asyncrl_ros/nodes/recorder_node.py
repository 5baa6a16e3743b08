"""recorder: chosen topics into a rosbag2 bag (MCAP), as `ros2 bag record` would.

Messages stay serialized (raw subscriptions, CDR bytes straight into the bag). Topics
are looked for every second; each is subscribed with QoS that matches all of its
publishers (best effort if any publisher is, transient-local only if all are), the way
rosbag2 adapts. Every message is counted received and written per topic; middleware
losses and publisher sequence gaps are counted as lost; /diagnostics says OK or WARN
with the counts. Ctrl-C or SIGTERM closes the bag: metadata.yaml plus a summary JSON.
"""
from __future__ import annotations

import importlib
import sys
import time
from functools import partial
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from asyncrl_ros.run.bag_writer import CHUNK_BYTES, BagError, BagWriter, free_bag_path
from asyncrl_ros.nodes.common import (TOPIC_EPISODE_METRICS, TOPIC_IMAGE, TOPIC_JOINT_STATES,
                                      TOPIC_MARKERS, TOPIC_POLICY_COMMAND, TOPIC_REWARD,
                                      TOPIC_REWARD_MASK, TOPIC_ROBOT_COMMAND, TOPIC_STEP_METRICS,
                                      TOPIC_TARGET_POSE, declare, init_with_own_signals)

TOPIC_DIAGNOSTICS = '/diagnostics'
# /clock is left out: at 200 Hz it would outweigh the rest, and every stamp carries sim time.
DEFAULT_TOPICS = [TOPIC_IMAGE, TOPIC_JOINT_STATES, TOPIC_ROBOT_COMMAND, TOPIC_POLICY_COMMAND,
                  TOPIC_REWARD, TOPIC_REWARD_MASK, TOPIC_STEP_METRICS, TOPIC_EPISODE_METRICS,
                  TOPIC_DIAGNOSTICS, TOPIC_TARGET_POSE, TOPIC_MARKERS]
DISCOVERY_PERIOD_S = 1.0
# A wanted topic with no publisher after this long is reported once (looked for still).
MISSING_WARN_S = 10.0
# 100 frames of 160x90 RGB is 4 MB: room for a slow disk without dropping.
DEPTH = 100
# rmw's "sequence numbers unsupported" marker.
SEQ_UNSUPPORTED = {0, 2**64 - 1}


def message_class(msgtype: str):
    pkg, kind, name = msgtype.split('/')
    return getattr(importlib.import_module(f'{pkg}.{kind}'), name)


def qos_dict(qos: QoSProfile) -> dict:
    """A publisher's offered QoS as the plain dict bag_writer stores in the bag."""
    return {'history': qos.history.name.lower(), 'depth': qos.depth,
            'reliability': qos.reliability.name.lower(), 'durability': qos.durability.name.lower(),
            'liveliness': qos.liveliness.name.lower(), 'deadline_ns': qos.deadline.nanoseconds,
            'lifespan_ns': qos.lifespan.nanoseconds,
            'liveliness_lease_ns': qos.liveliness_lease_duration.nanoseconds}


class RecorderNode(Node):
    def __init__(self):
        super().__init__('recorder')
        bag_path = declare(self, 'bag_path', '', 'Bag folder to create (required), e.g. <run_dir>/bag')
        topics = declare(self, 'topics', DEFAULT_TOPICS, 'Topics to record')
        chunk_bytes = declare(self, 'chunk_bytes', CHUNK_BYTES,
                              'MCAP chunk size: at most this much is lost to a SIGKILL')
        declare(self, 'recording', True,
                'Write what arrives (false: pause; skipped messages are counted, not lost)',
                read_only=False)
        self.skipped = 0
        self.add_post_set_parameters_callback(self.on_parameters)
        if not bag_path:
            raise BagError('parameter bag_path is required (the bag folder to create)')
        self.wanted = [self.resolve_topic_name(t) for t in topics]
        path = free_bag_path(bag_path)
        if path != Path(bag_path):
            self.get_logger().warning(f'{bag_path} exists; recording into {path}')
        self.bag = BagWriter(path, chunk_bytes)
        self.use_sim_time = self.get_parameter('use_sim_time').value
        self.subscribed: set[str] = set()
        self.unrecordable: dict[str, str] = {}
        self.reported_missing: set[str] = set()
        self.incompatible: dict[str, int] = {}
        self.last_seq: dict[tuple, int] = {}
        self.t0 = time.monotonic()
        self.diag_pub = self.create_publisher(DiagnosticArray, TOPIC_DIAGNOSTICS, 10)
        # Steady timer: with use_sim_time a node-clock timer would not run before /clock.
        self.create_timer(DISCOVERY_PERIOD_S, self.tick, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(f'recording {len(self.wanted)} topics into {path}')
        self.discover()

    def tick(self):
        self.discover()
        self.bag.flush()   # a chunk a second at least: little lost to a SIGKILL
        self.publish_diagnostics()

    def discover(self):
        for topic in self.wanted:
            if topic in self.subscribed or topic in self.unrecordable:
                continue
            pubs = self.get_publishers_info_by_topic(topic)
            if not pubs:
                if topic not in self.reported_missing and time.monotonic() - self.t0 > MISSING_WARN_S:
                    self.reported_missing.add(topic)
                    self.get_logger().warning(f'{topic}: no publisher after {MISSING_WARN_S:g} s '
                                              '(still looking)')
                continue
            types = sorted({p.topic_type for p in pubs})
            if len(types) > 1:
                self.get_logger().warning(f'{topic} has publishers of several types {types}; '
                                          f'recording {types[0]}')
            try:
                self.subscribe(topic, types[0], pubs)
            except (BagError, ImportError, AttributeError, ValueError) as err:
                self.unrecordable[topic] = str(err)
                self.get_logger().warning(f'{topic} ({types[0]}) is not recorded: {err}')

    def subscribe(self, topic: str, msgtype: str, pubs) -> None:
        cls = message_class(msgtype)
        offered = [p.qos_profile for p in pubs]
        reliable = all(q.reliability == ReliabilityPolicy.RELIABLE for q in offered)
        latched = all(q.durability == DurabilityPolicy.TRANSIENT_LOCAL for q in offered)
        qos = QoSProfile(
            depth=DEPTH,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
        self.bag.add_topic(topic, msgtype, [qos_dict(q) for q in offered])
        self.bag.stats[topic].qos = f'{qos.reliability.name.lower()}/{qos.durability.name.lower()}'
        events = SubscriptionEventCallbacks(
            message_lost=lambda status, t=topic: self.bag.note_lost(t, status.total_count_change),
            incompatible_qos=lambda status, t=topic: self.on_incompatible(t, status))
        self.create_subscription(cls, topic, partial(self.on_message, topic), qos, raw=True,
                                 event_callbacks=events)
        self.subscribed.add(topic)
        self.get_logger().info(f'recording {topic} ({msgtype}, {self.bag.stats[topic].qos})')

    def on_parameters(self, params) -> None:
        for param in params:
            if param.name == 'recording':
                self.get_logger().info('recording resumed' if param.value else
                                       'recording paused (ros2 param set /recorder recording true)')

    def on_message(self, topic: str, data: bytes, info) -> None:
        # Bag time = receive time on the node clock: sim time under use_sim_time (what the
        # rest of the graph runs on), else system time. The bag keeps it non-decreasing.
        if self.get_parameter('recording').value:
            self.bag.write(topic, self.get_clock().now().nanoseconds, data)
        else:
            self.skipped += 1
        seq, gid = info.get('publication_sequence_number'), info.get('publisher_gid')
        if seq is not None and seq not in SEQ_UNSUPPORTED and gid is not None:
            key = (topic, bytes(gid['data']) if isinstance(gid, dict) else str(gid))
            last = self.last_seq.get(key)
            if last is not None and seq > last + 1:
                self.bag.note_lost(topic, seq - last - 1)
            self.last_seq[key] = max(seq, last or 0)

    def on_incompatible(self, topic: str, status) -> None:
        self.incompatible[topic] = status.total_count
        self.get_logger().warning(f'{topic}: a publisher offers QoS incompatible with the '
                                  f'recording subscription; its messages are not recorded')

    def publish_diagnostics(self) -> None:
        s = self.bag.summary()
        problems = []
        if s['failed']:
            problems.append(f"{s['failed']} writes failed")
        if s['lost']:
            problems.append(f"{s['lost']} messages lost before reaching the recorder")
        if self.incompatible:
            problems.append(f'incompatible publishers on {", ".join(sorted(self.incompatible))}')
        if problems:
            self.get_logger().warning('; '.join(problems), throttle_duration_sec=10.0)
        status = DiagnosticStatus(name='recorder: bag', hardware_id=str(self.bag.path))
        status.level = DiagnosticStatus.WARN if problems else DiagnosticStatus.OK
        status.message = '; '.join(problems) or (
            f"recording {len(self.subscribed)}/{len(self.wanted)} topics, {s['written']} messages")
        counts = ('received', 'written', 'failed', 'lost')
        status.values = [KeyValue(key=k, value=str(s[k])) for k in counts]
        status.values.append(KeyValue(key='skipped while paused', value=str(self.skipped)))
        if not self.get_parameter('recording').value:
            status.message = 'paused; ' + status.message
        for topic, st in s['topics'].items():
            status.values.append(KeyValue(key=f'{topic} {"/".join(counts)}',
                                          value='/'.join(str(st[k]) for k in counts)))
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(msg)

    def close(self) -> dict:
        missing = sorted(set(self.wanted) - self.subscribed)
        return self.bag.close({'timestamps': 'sim time (receive)' if self.use_sim_time
                               else 'system time (receive)',
                               'not_recorded': {t: self.unrecordable.get(t, 'no publisher seen')
                                                for t in missing},
                               'incompatible_qos_events': self.incompatible,
                               'skipped_while_paused': self.skipped})


def main(args=None):
    # Ctrl-C and SIGTERM only set a flag that the spin loop checks between callbacks: an
    # exception raised inside a write could leave a half-written record in the chunk.
    stop = init_with_own_signals(args)
    node = None
    try:
        try:
            node = RecorderNode()
        except BagError as err:
            print(f'[recorder] error: {err}', file=sys.stderr, flush=True)
            sys.exit(2)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.2)
    except ExternalShutdownException:
        pass
    finally:
        if node is not None:
            s = node.close()
            print(f"[recorder] closed {s['bag']}: {s['written']} of {s['received']} messages "
                  f"written, {s['failed']} failed, {s['lost']} lost", flush=True)
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
