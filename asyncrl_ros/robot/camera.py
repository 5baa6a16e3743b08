"""USB camera capture for the real arms: always the newest frame, never a stale backlog.

A background thread grabs frames as the device delivers them and keeps only the newest
(with its capture time), so a slow read never blocks the publisher and the policy never
acts on an old image. A device that stops delivering is reopened with backoff. Video
files play at their own frame rate, like a live camera (how the tests drive it).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np


class CameraError(ValueError):
    """The camera source cannot be opened (names the device)."""


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # (H, W, 3) uint8 RGB at the configured size
    stamp: int         # clock() right after the grab returned
    seq: int           # frames grabbed since start(), across reopens: never repeats


def parse_device(device: str | int) -> int | str:
    """'0' or 0 -> camera index 0; anything else is a path (/dev/video2, a file) or a URL."""
    if isinstance(device, (int, np.integer)):
        if device < 0:
            raise CameraError(f'camera index must be >= 0, got {device}')
        return int(device)
    text = str(device).strip()
    if not text:
        raise CameraError("camera device is empty (give an index like '0' or a path)")
    return int(text) if text.isdigit() else text


def _is_file(source: int | str) -> bool:
    return isinstance(source, str) and '://' not in source and not source.startswith('/dev/')


def open_capture(source: int | str, width: int, height: int, fps: float | None) -> cv2.VideoCapture:
    """Open a VideoCapture and request size/fps (devices may ignore the request)."""
    if isinstance(source, str) and '://' not in source and not os.path.exists(source):
        raise CameraError(f"camera device '{source}' does not exist")
    # V4L2 by name: the FFMPEG backend of the wheels cannot open /dev/video* itself.
    api = cv2.CAP_V4L2 if isinstance(source, str) and source.startswith('/dev/') else cv2.CAP_ANY
    cap = cv2.VideoCapture(source, api)
    if not cap.isOpened():
        cap.release()
        what = f'camera index {source}' if isinstance(source, int) else f"camera device '{source}'"
        raise CameraError(f'cannot open {what} (busy, unplugged, or not a video source)')
    if not _is_file(source):
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps:
            cap.set(cv2.CAP_PROP_FPS, fps)
        # One buffered frame at most: a driver queue would hand us old frames first.
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    return cap


class Camera:
    """Newest-frame camera reader; `start()` opens (or raises CameraError) and starts the thread."""

    def __init__(self, device: str | int, width: int, height: int, fps: float | None = None,
                 clock: Callable[[], int] = time.monotonic_ns, max_failures: int = 10,
                 backoff_s: tuple[float, float] = (0.5, 5.0), realtime: bool | None = None,
                 log: Callable[[str], None] | None = None):
        if width <= 0 or height <= 0:
            raise ValueError(f'camera size must be positive, got {width}x{height}')
        if max_failures < 1:
            raise ValueError(f'max_failures must be >= 1, got {max_failures}')
        self.source = parse_device(device)
        self.width, self.height, self.fps = int(width), int(height), fps
        self.clock, self.max_failures, self.backoff_s = clock, max_failures, backoff_s
        # Files would otherwise be read in milliseconds; live sources pace themselves.
        self.realtime = _is_file(self.source) if realtime is None else realtime
        self.log = log or logging.getLogger(__name__).warning
        self.reopens = 0
        self.last_error = ''
        self._cap: cv2.VideoCapture | None = None
        self._frame: Frame | None = None
        self._seq = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def connected(self) -> bool:
        return self._cap is not None

    def start(self) -> 'Camera':
        self._cap = open_capture(self.source, self.width, self.height, self.fps)
        self._thread = threading.Thread(target=self._run, name='camera', daemon=True)
        self._thread.start()
        return self

    def latest(self) -> Frame | None:
        with self._cond:
            return self._frame

    def wait_newer(self, seq: int, timeout: float) -> Frame | None:
        """The newest frame with a seq above `seq`, or None after `timeout` seconds."""
        with self._cond:
            self._cond.wait_for(lambda: self._frame is not None and self._frame.seq > seq, timeout)
            frame = self._frame
        return frame if frame is not None and frame.seq > seq else None

    def close(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> 'Camera':
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def _period(self) -> float:
        fps = self._cap.get(cv2.CAP_PROP_FPS) or self.fps or 25.0
        return 1.0 / fps if self.realtime else 0.0

    def _run(self):
        failures, backoff, period = 0, self.backoff_s[0], self._period()
        next_t = time.monotonic()
        while not self._stop.is_set():
            if self._cap is None:
                if self._stop.wait(backoff):
                    break
                try:
                    self._cap = open_capture(self.source, self.width, self.height, self.fps)
                except CameraError as err:
                    self.last_error = str(err)
                    backoff = min(2.0 * backoff, self.backoff_s[1])
                    self.log(f'{err}; retrying in {backoff:.1f} s')
                    continue
                self.reopens += 1
                self.log(f'camera {self.source!r} reopened')
                failures, backoff, period = 0, self.backoff_s[0], self._period()
                next_t = time.monotonic()
            if period:
                delay = next_t - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                # Behind by a frame or more (a stall): resume from now, no burst of reads.
                now = time.monotonic()
                next_t = next_t + period if now - next_t < period else now + period
            if self._cap.grab():
                stamp = self.clock()
                ok, bgr = self._cap.retrieve()
            else:
                ok = False
            if not ok:
                failures += 1
                if failures >= self.max_failures:
                    self.last_error = (f'camera {self.source!r} delivered no frame in '
                                       f'{failures} reads (unplugged or end of stream)')
                    self.log(f'{self.last_error}; reopening in {backoff:.1f} s')
                    self._cap.release()
                    self._cap = None
                continue
            failures = 0
            self._publish(bgr, stamp)

    def _publish(self, bgr: np.ndarray, stamp: int):
        rgb = cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB if bgr.ndim == 2 else cv2.COLOR_BGR2RGB)
        if rgb.shape[:2] != (self.height, self.width):
            # Devices round the requested size to a mode they support (and files ignore it).
            rgb = cv2.resize(rgb, (self.width, self.height), interpolation=cv2.INTER_AREA)
        with self._cond:
            self._frame = Frame(rgb, stamp, self._seq)
            self._seq += 1
            self._cond.notify_all()
