"""Write serialized (CDR) ROS 2 messages into a rosbag2 bag in MCAP storage.

No ROS imports: the recorder node hands over bytes, topic types and offered QoS as
plain values. `rosbags` writes the MCAP file and a metadata.yaml that `ros2 bag info`
and `ros2 bag play` accept; standard types come from its Kilted typestore, ours (and
any other type it lacks) from the installed or source-tree .msg files.

MCAP is chunked: a chunk is closed (and the file flushed) every `chunk_bytes` and on
every `flush()`, so a recorder killed with SIGKILL leaves a file readable up to its
last complete chunk. metadata.yaml and the summary JSON are written at `close()`.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness, QosReliability,
                                QosTime)
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore, get_types_from_msg

# Closing a chunk every 256 KiB loses at most ~6 camera frames to a SIGKILL (rosbags: 1 MiB).
CHUNK_BYTES = 256 * 1024
SUMMARY_NAME = 'recorder_summary.json'
# rosbags' newest store that our ROS distribution (Kilted) has.
STORE = Stores.ROS2_KILTED
# rosbag2 writes an infinite QoS duration as the largest int64 of nanoseconds.
INFINITE_NS = 2**63 - 1
SOURCE_ROOT = Path(__file__).resolve().parents[2]


class BagError(ValueError):
    """A bag cannot be created, or a topic cannot be recorded (message names it)."""


@dataclass
class TopicStats:
    msgtype: str
    received: int = 0    # handed to write()
    written: int = 0     # in the bag
    failed: int = 0      # write raised
    lost: int = 0        # reported lost by the middleware or seen as sequence gaps
    qos: str = ''


def msg_search_dirs() -> list[Path]:
    """Where .msg files may live: ament prefixes' share/, this venv's share/, the source tree."""
    prefixes = [Path(p) for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    dirs = [p / 'share' for p in prefixes] + [Path(sys.prefix) / 'share', SOURCE_ROOT]
    return [d for i, d in enumerate(dirs) if d.is_dir() and d not in dirs[:i]]


def find_msg_file(msgtype: str, dirs: list[Path]) -> Path | None:
    pkg, _, name = msgtype.split('/')
    for d in dirs:
        path = d / pkg / 'msg' / f'{name}.msg'
        if path.is_file():
            return path
    return None


def qos_from_dict(d: dict) -> Qos:
    """Plain {'reliability': 'reliable', 'durability': ..., 'depth': ..., '*_ns': ...} -> Qos."""
    def span(key: str) -> QosTime:
        ns = int(d.get(key, INFINITE_NS))
        ns = INFINITE_NS if ns <= 0 or ns >= INFINITE_NS else ns
        return QosTime(ns // 1_000_000_000, ns % 1_000_000_000)

    return Qos(history=QosHistory[d.get('history', 'keep_last').upper()],
               depth=int(d.get('depth', 0)),
               reliability=QosReliability[d.get('reliability', 'reliable').upper()],
               durability=QosDurability[d.get('durability', 'volatile').upper()],
               deadline=span('deadline_ns'), lifespan=span('lifespan_ns'),
               liveliness=QosLiveliness[d.get('liveliness', 'automatic').upper()],
               liveliness_lease_duration=span('liveliness_lease_ns'),
               avoid_ros_namespace_conventions=False)


class BagWriter:
    """One rosbag2 (MCAP) bag; topics may be added while recording."""

    def __init__(self, path: str | Path, chunk_bytes: int = CHUNK_BYTES,
                 search_dirs: list[Path] | None = None):
        path = Path(path)
        if path.exists():
            raise BagError(f'bag path {path} exists already; rosbag2 bags are never appended to')
        if chunk_bytes <= 0:
            raise BagError(f'chunk_bytes must be positive, got {chunk_bytes}')
        self.path = path
        self.chunk_bytes = int(chunk_bytes)
        self.search_dirs = msg_search_dirs() if search_dirs is None else search_dirs
        self.typestore = get_typestore(STORE)
        self.writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self.connections: dict = {}
        self.stats: dict[str, TopicStats] = {}
        self.last_ns = 0
        self.started = time.time()
        self.closed = False

    # Types ---------------------------------------------------------------------------
    def ensure_type(self, msgtype: str) -> None:
        """Make `msgtype` (and what it nests) known to the typestore, from .msg files if needed."""
        if msgtype in self.typestore.fielddefs:
            return
        if not re.fullmatch(r'[\w]+/msg/[\w]+', msgtype):
            raise BagError(f"cannot record type '{msgtype}': only pkg/msg/Name messages")
        path = find_msg_file(msgtype, self.search_dirs)
        if path is None:
            raise BagError(f"no definition of '{msgtype}' in the typestore nor as a .msg file "
                           f"under {', '.join(map(str, self.search_dirs))}")
        types = get_types_from_msg(path.read_text(), msgtype)
        for nested in sorted(set(_nested_names(types[msgtype])) - {msgtype}):
            self.ensure_type(nested)
        self.typestore.register(types)

    def type_hash(self, msgtype: str) -> str:
        self.ensure_type(msgtype)
        return self.typestore.hash_rihs01(msgtype)

    # Topics and messages ---------------------------------------------------------------
    def add_topic(self, topic: str, msgtype: str, offered_qos: list[dict] | None = None) -> None:
        """Register a topic; raises BagError when its type cannot be described."""
        if topic in self.connections:
            raise BagError(f'topic {topic} is already recorded')
        self.ensure_type(msgtype)
        qos = [qos_from_dict(q) for q in (offered_qos or [])]
        self.connections[topic] = self.writer.add_connection(
            topic, msgtype, typestore=self.typestore, offered_qos_profiles=qos)
        self.stats[topic] = TopicStats(msgtype)

    def write(self, topic: str, stamp_ns: int, data: bytes) -> bool:
        """Append one serialized message; False (and counted) when the write failed."""
        stats = self.stats[topic]
        stats.received += 1
        # Bag time never runs backwards (a wall-clock step or a sim restart would make it).
        self.last_ns = max(self.last_ns, int(stamp_ns))
        try:
            self.writer.write(self.connections[topic], self.last_ns, data)
        except Exception:   # disk full, I/O error: counted, reported by the caller
            stats.failed += 1
            return False
        stats.written += 1
        if self._pending_bytes() >= self.chunk_bytes:
            self.flush()
        return True

    def note_lost(self, topic: str, count: int) -> None:
        self.stats[topic].lost += int(count)

    # Chunks and closing -----------------------------------------------------------------
    def _pending_bytes(self) -> int:
        storage = self.writer.storage
        # rosbags closes MCAP chunks at 1 MiB on its own; we close them earlier through its
        # pending chunk (rosbags 0.11.9 internals, pinned in requirements.txt).
        return storage.chunk.bio.tell() if storage is not None else 0

    def flush(self) -> None:
        """Close the pending chunk and push it to disk."""
        storage = self.writer.storage
        if storage is not None and storage.chunk.msgs:
            storage.close_chunk()
            storage.bio.flush()

    def summary(self) -> dict:
        return {'bag': str(self.path), 'started_unix': self.started,
                'topics': {t: asdict(s) for t, s in self.stats.items()},
                'received': sum(s.received for s in self.stats.values()),
                'written': sum(s.written for s in self.stats.values()),
                'failed': sum(s.failed for s in self.stats.values()),
                'lost': sum(s.lost for s in self.stats.values())}

    def close(self, extra: dict | None = None) -> dict:
        """Finish the MCAP file, write metadata.yaml and the summary JSON next to them."""
        if self.closed:
            return self.summary()
        self.writer.close()
        self.closed = True
        summary = {**self.summary(), **(extra or {})}
        tmp = self.path / (SUMMARY_NAME + '.tmp')
        tmp.write_text(json.dumps(summary, indent=2))
        tmp.replace(self.path / SUMMARY_NAME)
        return summary


def _nested_names(node) -> list[str]:
    """Type names referenced anywhere in a rosbags field-definition tree."""
    if isinstance(node, str):
        return [node] if '/msg/' in node else []
    if isinstance(node, (tuple, list)):
        return [name for item in node for name in _nested_names(item)]
    return []


def free_bag_path(path: str | Path) -> Path:
    """`path`, or `path_2`, `path_3`, ... when it exists (a resumed run records a new bag)."""
    path = Path(path)
    n = 2
    candidate = path
    while candidate.exists():
        candidate = path.with_name(f'{path.name}_{n}')
        n += 1
    return candidate
