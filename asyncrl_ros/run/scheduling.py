"""Real-time scheduling for the processes on the action path. No ROS here.

On a robot the cycle must hold while the learner uses every core. CFS (even with the
learner at nice 10) wakes a timer late by milliseconds when the cores are busy; a
SCHED_FIFO thread preempts every normal one at once. `run.realtime_priority` > 0 puts the
processes that produce a frame, its reward, the action and the arm's command (camera,
reward, policy, arm_driver: REALTIME_NODES) under SCHED_FIFO at that priority, every thread
of theirs, including the DDS threads that deliver their messages. The learners stay normal.
The kernel's RT throttling (sched_rt_runtime_us, 95 % by default) keeps a runaway RT
thread from locking a machine.
"""
from __future__ import annotations

import os

# The action path: what delays any of these delays the command (README, "Real arms").
REALTIME_NODES = ('camera', 'reward', 'policy', 'arm_driver')
# Above run.realtime_priority by this much: the arm_driver's watchdog and ramp must preempt
# the policy, whose sync update (hundreds of ms) runs at the action path's priority.
PRIORITY_ABOVE = {'arm_driver': 10}
MAX_SETTING = 89   # so that every node's priority stays within SCHED_FIFO's 1..99


def node_priority(node: str, setting: int) -> int:
    """The SCHED_FIFO priority of one of REALTIME_NODES for run.realtime_priority `setting`."""
    return setting + PRIORITY_ABOVE.get(node, 0) if setting > 0 else 0

HOW_TO_ALLOW = ('allow it with `ulimit -r 99` (or "@realtime - rtprio 99" in '
                '/etc/security/limits.conf and the user in group realtime), or run as root')


def make_process_realtime(priority: int) -> str:
    """SCHED_FIFO at `priority` for every thread of this process (and those it starts
    later, which inherit it). Returns a one-line note to log; never raises for lack of
    permission (the process then keeps normal scheduling and says so)."""
    if priority <= 0:
        return 'normal scheduling (run.realtime_priority 0)'
    top = os.sched_get_priority_max(os.SCHED_FIFO)
    if priority > top:
        raise ValueError(f'run.realtime_priority {priority} is above SCHED_FIFO\'s maximum {top}')
    param = os.sched_param(priority)
    done = failed = 0
    for tid in os.listdir('/proc/self/task'):
        try:
            os.sched_setscheduler(int(tid), os.SCHED_FIFO, param)
            done += 1
        except PermissionError:
            failed += 1
        except ProcessLookupError:   # a thread that ended meanwhile
            pass
    if failed:
        return (f'SCHED_FIFO {priority} not permitted ({failed} of {done + failed} threads): '
                f'normal scheduling; {HOW_TO_ALLOW}')
    return f'SCHED_FIFO priority {priority} for all {done} threads'

