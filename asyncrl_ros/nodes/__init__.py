"""The package's ROS nodes, one class per module, and what a node process does first.

A node process spends seconds importing rclpy and torch. A Ctrl-C or SIGTERM in that time
would raise inside an import (a traceback, or a C++ abort from inside pybind11), and a
bringup that dies then would leave the node running. `python -m asyncrl_ros.nodes NAME`
therefore takes over both signals and asks to die with its supervisor before importing
anything heavy; run_node later reuses the same STOP event.
"""
from __future__ import annotations

import os
import signal
import threading

# The bringup names itself in this variable, so that a node it started can tell whether it
# is already an orphan (its supervisor died before the node asked to be told).
SUPERVISOR_PID_ENV = 'ASYNCRL_SUPERVISOR_PID'

# Set by SIGINT/SIGTERM, and by the supervisor's death, once take_over_signals ran.
STOP = threading.Event()


# The bringup names the file its pump thread copies this node's output into. Once the
# bringup is dead nobody reads the pipe: the node then writes to that file itself, so what it
# says while saving and stopping is kept, and no write fails on a broken pipe.
NODE_LOG_ENV = 'ASYNCRL_NODE_LOG'


def supervisor_gone() -> bool:
    expected = os.environ.get(SUPERVISOR_PID_ENV)
    return bool(expected) and os.getppid() != int(expected)


def write_own_log() -> None:
    """Point stdout and stderr (file descriptors 1 and 2) at this node's log file."""
    path = os.environ.get(NODE_LOG_ENV)
    if not path:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError:
        fd = os.open(os.devnull, os.O_WRONLY)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.environ.pop(NODE_LOG_ENV)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_taken = threading.Lock()


def _on_stop_signal(*_) -> None:
    STOP.set()


def _watch_wakeups(fd: int) -> None:
    while True:
        try:
            data = os.read(fd, 64)
        except InterruptedError:
            continue
        if any(sig in data for sig in STOP_SIGNALS):
            if supervisor_gone():
                write_own_log()
            STOP.set()


def take_over_signals() -> threading.Event:
    """SIGINT/SIGTERM only set STOP: the node's loop ends, and its clean-up still runs.

    A Python signal handler runs only when the main thread returns to Python, so a main
    thread blocked in a C call would never see the stop (a node would outlive its SIGKILLed
    supervisor). The C-level handler also writes the signal's number to a wakeup fd at once
    (signal.set_wakeup_fd), and a thread of its own reading it sets STOP, whatever the main
    thread does; then the stuck-watchdog (nodes.common) can end the process. Main thread only."""
    if _taken.acquire(blocking=False):
        for sig in STOP_SIGNALS:
            signal.signal(sig, _on_stop_signal)
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        threading.Thread(target=_watch_wakeups, args=(read_fd,), name='stop-signals',
                         daemon=True).start()
        end_with_supervisor(STOP)
    return STOP


def end_with_supervisor(stop: threading.Event) -> None:
    """Set `stop` (via SIGTERM) when the process that started this node dies.

    A node whose bringup was SIGKILLed, OOM-killed or lost its terminal must not go on
    driving a robot nobody watches: the kernel sends SIGTERM at the parent's death
    (PR_SET_PDEATHSIG), and the usual stop path runs (the arm_driver ramps to zero).
    """
    import ctypes
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)   # 1 = PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass   # not Linux: ros2 launch and the bringup still signal every node
    if supervisor_gone():   # orphaned before the prctl took effect
        write_own_log()
        stop.set()
