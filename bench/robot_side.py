"""The robot side of franka_ros2 + forward_velocity_controller, as a process of its own.

What a real Panda under franka_ros2 shows the package, and nothing more: sensor_msgs/JointState
on /joint_states at 100 Hz (the arm's joint names, stamped with the node clock, which is the
system clock here) and std_msgs/Float64MultiArray taken on
/forward_velocity_controller/commands, whose velocities it integrates (a wrong-length command
is dropped, as the controller drops it). The arm starts 0.2 rad from home on every joint, so
the first reset really homes it. The same idea as test/test_real_profiles.py's FrankaRos2Side,
standalone, so that a bench can run a real-arm profile against it (bench_cycle_timing.py
--world real).

Usage: python bench/robot_side.py [--arm franka] [--rate-hz 100] [--offset 0.2]
       [--summary FILE]
Prints one 'robot_side ready' line once its publisher and subscription exist. SIGINT/SIGTERM
(or the death of the process that started it) end it; on the way out it writes --summary:
commands received, the largest |velocity| commanded per joint against the arm's limits, the
last command, how close to home it came, and its own timer's period (p50/p99/max, a measure
of how loaded the cores are).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from bench_cycle_timing import finite   # bench/ is this script's sys.path[0]


def period_stats(stamps: list[float], nominal_s: float) -> dict:
    if len(stamps) < 2:
        return {'n': 0, 'p50_ms': math.nan, 'p99_ms': math.nan, 'max_ms': math.nan}
    periods = np.diff(np.asarray(stamps)) * 1e3
    dev = np.abs(periods - nominal_s * 1e3)
    return {'n': int(periods.size), 'p50_ms': float(np.median(periods)),
            'p99_ms': float(np.percentile(periods, 99)), 'max_ms': float(periods.max()),
            'dev_p99_ms': float(np.percentile(dev, 99)), 'dev_max_ms': float(dev.max())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--arm', default='franka', help='arm of asyncrl_ros.robot.arms (default franka)')
    ap.add_argument('--rate-hz', type=float, default=100.0, help='joint state rate (franka_ros2: 100)')
    ap.add_argument('--offset', type=float, default=0.2,
                    help='start this many rad from home on every joint (default 0.2)')
    ap.add_argument('--summary', help='write a JSON summary here on exit')
    ap.add_argument('--realtime-priority', type=int, default=0,
                    help='SCHED_FIFO priority, as franka_ros2 runs its controller (0: normal)')
    args = ap.parse_args(argv)
    if args.rate_hz <= 0:
        raise SystemExit('--rate-hz must be > 0')

    # SIGINT/SIGTERM and the starter's death (PR_SET_PDEATHSIG) only set `stop`: the loop
    # below ends and the summary is still written.
    from asyncrl_ros.nodes.common import (COMMAND_QOS, SENSOR_QOS, TOPIC_JOINT_STATES,
                                          TOPIC_ROBOT_COMMAND, init_with_own_signals)
    stop = init_with_own_signals()
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from asyncrl_ros.robot.arms import get_arm

    arm = get_arm(args.arm)
    node = Node('robot_side')
    from asyncrl_ros.run.scheduling import make_process_realtime
    if args.realtime_priority:
        print(f'robot_side: {make_process_realtime(args.realtime_priority)}', flush=True)
    period = 1.0 / args.rate_hz
    state = {'q': arm.home_qpos.astype(float) + args.offset, 'qd': np.zeros(arm.n_joints),
             'last': time.monotonic(), 'home_error': math.inf, 'commands': 0, 'dropped': 0,
             'max_abs': np.zeros(arm.n_joints)}
    stamps: list[float] = []
    pub = node.create_publisher(JointState, TOPIC_JOINT_STATES, SENSOR_QOS)

    def on_command(msg):
        cmd = np.array(msg.data, dtype=float)
        if cmd.shape != (arm.n_joints,):   # the controller drops wrong-length commands
            state['dropped'] += 1
            return
        state['qd'] = cmd
        state['commands'] += 1
        state['max_abs'] = np.maximum(state['max_abs'], np.abs(cmd))

    def step():
        now = time.monotonic()
        stamps.append(now)
        state['q'] = state['q'] + state['qd'] * (now - state['last'])
        state['last'] = now
        state['home_error'] = min(state['home_error'],
                                  float(np.max(np.abs(state['q'] - arm.home_qpos))))
        msg = JointState(name=list(arm.joint_names), position=state['q'].tolist(),
                         velocity=state['qd'].tolist())
        msg.header.stamp = node.get_clock().now().to_msg()
        pub.publish(msg)

    node.create_subscription(Float64MultiArray, TOPIC_ROBOT_COMMAND, on_command, COMMAND_QOS)
    node.create_timer(period, step)
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    print(f'robot_side ready: {args.arm} ({arm.n_joints} joints) on {TOPIC_JOINT_STATES} at '
          f'{args.rate_hz:g} Hz, integrating {TOPIC_ROBOT_COMMAND}', flush=True)
    t0 = time.monotonic()
    try:
        while not stop.is_set() and node.context.ok():
            executor.spin_once(timeout_sec=0.05)
    except KeyboardInterrupt:
        pass
    finally:
        limits = np.asarray(arm.velocity_limits, dtype=float)
        summary = {'arm': args.arm, 'seconds': time.monotonic() - t0,
                   'commands': state['commands'], 'dropped_wrong_length': state['dropped'],
                   'max_abs_velocity': state['max_abs'].tolist(),
                   'within_datasheet_limits': bool(np.all(state['max_abs'] <= limits + 1e-9)),
                   'last_command': state['qd'].tolist(),
                   'min_home_error_rad': state['home_error'],
                   'joint_state_period': period_stats(stamps, period)}
        if args.summary:
            Path(args.summary).write_text(json.dumps(finite(summary)))
        print(f"robot_side stopped: {state['commands']} commands, last "
              f"{np.round(state['qd'], 4).tolist()}", flush=True)
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
