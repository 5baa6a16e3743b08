"""What every node shares: config loading from the `config_file` parameter, QoS, stamps."""
from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)

from asyncrl_ros.run.config import ExperimentConfig, load_config
from asyncrl_ros.nodes import take_over_signals

# Camera frames and joint states: the newest value matters, a late one is useless.
SENSOR_QOS = qos_profile_sensor_data
# Velocity commands: ros2_control's forward controllers subscribe reliable.
COMMAND_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Rewards must all arrive: the policy pairs each with its image by stamp.
REWARD_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
# State that a late joiner must still get (target pose, homing counts, markers).
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         history=HistoryPolicy.KEEP_LAST)
METRICS_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)

# Topic names shared by the graph (real drivers fix the command topic).
TOPIC_JOINT_STATES = '/joint_states'
TOPIC_IMAGE = '/camera/image_raw'
TOPIC_ROBOT_COMMAND = '/forward_velocity_controller/commands'
TOPIC_POLICY_COMMAND = '/arm_driver/command'
TOPIC_HOMING = '/arm_driver/homing'
SERVICE_HOME = '/arm_driver/home'
TOPIC_REWARD = '/reward'
TOPIC_REWARD_MASK = '/reward/mask'
TOPIC_TARGET_POSE = '/target_monitor/target_pose'
TOPIC_MARKERS = '/target_monitor/markers'
TOPIC_EE_MARKERS = '/arm_driver/markers'
TOPIC_STEP_METRICS = '/policy/step_metrics'
TOPIC_EPISODE_METRICS = '/policy/episode_metrics'
TOPIC_LEARNER_STATUS = '/learner/status'


# The config sections each node reads (mode, arm and world: every node). A node not named
# here (a renamed one) shows them all.
CONFIG_SECTIONS = {
    'sim_world': ('image', 'task', 'sim', 'run'),
    'reward': ('image', 'task'),
    'target_monitor': ('task', 'sim'),
    'arm_driver': ('task', 'safety'),
    'camera': ('image', 'camera'),
    'learner': ('image', 'run', 'sac', 'asynchronous'),
    'replay_sampler': ('image', 'run', 'sac', 'asynchronous'),
}


def config_parameters(config: dict, sections=None) -> dict:
    """The resolved config as flat ROS parameters: {'task.action_cycle_ms': 40.0, ...}.

    ROS parameters hold scalars and flat arrays of one type; anything else (an empty list,
    joint ranges as [[lo, hi], ...], None) is shown as its JSON text."""
    import json
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            if sections is None or key in sections:
                flat.update({f'{key}.{k}': v for k, v in config_parameters(value).items()})
            continue
        if isinstance(value, (list, tuple)):
            kinds = {type(v) for v in value}
            if value and kinds <= {int, float} and bool not in kinds:
                value = [float(v) for v in value] if float in kinds else list(value)
            elif not (value and len(kinds) == 1 and kinds <= {str, bool}):
                value = json.dumps(value)
        elif value is None:
            value = json.dumps(value)
        flat[key] = value
    return flat


def declare_config(node: Node) -> ExperimentConfig:
    """Declare `config_file`, load the experiment config it names (defaults if empty), and show
    the values this node reads as read-only parameters (`ros2 param get /policy
    task.action_cycle_ms`): the resolved config stays their one source."""
    node.declare_parameter('config_file', '', ParameterDescriptor(
        description='Resolved experiment YAML (written by the bringup into the run folder)',
        read_only=True))
    path = node.get_parameter('config_file').value
    cfg = load_config(path) if path else load_config()
    sections = CONFIG_SECTIONS.get(node.get_name())
    for name, value in config_parameters(cfg.to_dict(), sections).items():
        if not node.has_parameter(name):
            node.declare_parameter(name, value, ParameterDescriptor(
                description=f'from {path or "the defaults"} (read-only: set it in the config)',
                read_only=True))
    return cfg


def enter_realtime(node: Node, cfg: ExperimentConfig) -> None:
    """The action path's nodes (scheduling.REALTIME_NODES) call this once built: SCHED_FIFO
    at their priority (scheduling.node_priority) for all their threads, or one line saying
    why not."""
    from asyncrl_ros.run.scheduling import REALTIME_NODES, make_process_realtime, node_priority
    assert node.get_name() in REALTIME_NODES, node.get_name()
    priority = node_priority(node.get_name(), cfg.run.realtime_priority)
    if priority == 0:
        return
    note = make_process_realtime(priority)
    log = node.get_logger()
    (log.warning if 'not permitted' in note else log.info)(note)


def declare(node: Node, name: str, default, description: str, read_only: bool = True):
    """Declare one parameter whose default comes from the config (its single source)."""
    node.declare_parameter(name, default, ParameterDescriptor(description=description,
                                                              read_only=read_only))
    return node.get_parameter(name).value


def to_time_msg(seconds: float) -> Time:
    ns = int(round(seconds * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def stamp_ns(stamp: Time) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def image_to_numpy(msg) -> np.ndarray:
    """sensor_msgs/Image rgb8 -> (H, W, 3) uint8 (no cv_bridge on PyPI, and none needed)."""
    if msg.encoding not in ('rgb8', 'bgr8'):
        raise ValueError(f'unsupported image encoding {msg.encoding!r} (need rgb8)')
    arr = np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)[:, :msg.width * 3]
    arr = arr.reshape(msg.height, msg.width, 3)
    return arr[..., ::-1] if msg.encoding == 'bgr8' else arr


def numpy_to_image(node_clock_stamp: Time, array: np.ndarray, encoding: str, frame_id: str = ''):
    from sensor_msgs.msg import Image
    msg = Image()
    msg.header.stamp = node_clock_stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    channels = 1 if array.ndim == 2 else array.shape[2]
    msg.step = msg.width * channels
    msg.data = np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    return msg


# ---- transitions between the policy and the replay owner (async modes) ----
TOPIC_TRANSITIONS = '/policy/transitions'
TOPIC_WEIGHTS = '/learner/weights'
# Every transition must arrive: reliable, and a history deep enough (80 s at 25 Hz) that
# a learner busy in an update never loses one; the policy's publish never blocks on it.
TRANSITION_QOS = QoSProfile(depth=2000, reliability=ReliabilityPolicy.RELIABLE,
                            history=HistoryPolicy.KEEP_LAST)
# Only the newest weights matter; a late policy still gets the last version.
WEIGHTS_QOS = LATCHED_QOS


def transition_to_msg(t: dict, stamp: Time):
    from asyncrl_ros_interfaces.msg import Transition
    msg = Transition()
    msg.header.stamp = stamp
    msg.step = int(t['step'])
    msg.height, msg.width = int(t['next_frame'].shape[1]), int(t['next_frame'].shape[2])
    msg.episode_start = 'first_frame' in t
    if msg.episode_start:
        msg.first_frame = np.ascontiguousarray(t['first_frame']).tobytes()
        msg.first_proprio = np.asarray(t['first_proprio'], dtype=np.float32)
    msg.action = np.asarray(t['action'], dtype=np.float32)
    msg.reward = float(t['reward'])
    msg.next_frame = np.ascontiguousarray(t['next_frame']).tobytes()
    msg.next_proprio = np.asarray(t['next_proprio'], dtype=np.float32)
    msg.terminal = bool(t['terminal'])
    msg.weights_version = int(t['weights_version'])
    return msg


def msg_to_transition(msg) -> dict:
    shape = (3, msg.height, msg.width)
    t = {'step': msg.step, 'action': np.frombuffer(msg.action, dtype=np.float32),
         'reward': msg.reward, 'terminal': msg.terminal,
         'next_frame': np.frombuffer(msg.next_frame, dtype=np.uint8).reshape(shape),
         'next_proprio': np.frombuffer(msg.next_proprio, dtype=np.float32),
         'weights_version': msg.weights_version}
    if msg.episode_start:
        t['first_frame'] = np.frombuffer(msg.first_frame, dtype=np.uint8).reshape(shape)
        t['first_proprio'] = np.frombuffer(msg.first_proprio, dtype=np.float32)
    return t


def spin_in_background(node):
    """Run the node's callbacks in a thread, leaving the main thread to a compute loop."""
    import threading
    from rclpy.executors import SingleThreadedExecutor
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)

    def run():
        try:
            executor.spin()
        except Exception:  # noqa: BLE001 - shutdown races end the thread quietly
            pass

    thread = threading.Thread(target=run, name='ros-executor', daemon=True)
    thread.start()
    return executor, thread


# ---- what a person watches: /diagnostics (rqt_runtime_monitor) ----
TOPIC_DIAGNOSTICS = '/diagnostics'


class Diagnostics:
    """Publishes one DiagnosticStatus per check of a node on /diagnostics."""

    def __init__(self, node, hardware_id: str = 'asyncrl_ros'):
        from diagnostic_msgs.msg import DiagnosticArray
        self.node = node
        self.hardware_id = hardware_id
        self.pub = node.create_publisher(DiagnosticArray, TOPIC_DIAGNOSTICS, 10)

    def publish(self, checks: list[tuple[str, str, str, dict]]) -> None:
        """checks: (name, level 'OK'|'WARN'|'ERROR', message, key-values)."""
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
        levels = {'OK': DiagnosticStatus.OK, 'WARN': DiagnosticStatus.WARN,
                  'ERROR': DiagnosticStatus.ERROR}
        array = DiagnosticArray()
        array.header.stamp = self.node.get_clock().now().to_msg()
        for name, level, message, values in checks:
            array.status.append(DiagnosticStatus(
                level=levels[level], name=f'{self.node.get_name()}: {name}', message=message,
                hardware_id=self.hardware_id,
                values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()]))
        self.pub.publish(array)


def init_with_own_signals(args=None):
    """rclpy.init, with SIGINT/SIGTERM setting the returned Event instead of shutting the
    context down (rclpy's own handler does that at once, and an exception it raises inside
    a callback can leave work half done): the caller's spin loop, with bounded waits, ends
    and its clean-up can still publish and log to /rosout. The Event is also set when the
    node's supervisor dies, and it is the one `python -m asyncrl_ros.nodes` set up before
    the imports, so a signal that came during them is not lost."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    return take_over_signals()


def exit_process(code: int) -> None:
    """End the process now, once its state is saved and the arm is safe.

    A normal interpreter exit can hang in finalizers while a daemon thread still spins
    an executor whose context is gone (seen: replay_sampler at 80 % CPU, never exiting),
    or abort in C++ destructors ('terminate called without an active exception').
    Nothing is left to run at that point, so skip the interpreter's teardown."""
    import os
    import sys
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _guarded(node, what: str, fn, *args) -> bool:
    """Run one clean-up step; a failure (disk full, read-only folder) is one line, and the
    remaining steps (the arm's zero command) still run."""
    import sys
    try:
        fn(*args)
        return True
    except Exception as err:  # noqa: BLE001 - any failure here must not skip the rest
        line = f'could not {what}: {type(err).__name__}: {err}'
        try:
            node.get_logger().error(line)
        except Exception:  # noqa: BLE001 - context already gone: stderr still works
            print(f'[{node.get_name()}] {line}', file=sys.stderr, flush=True)
        return False


# A node asked to stop must reach its clean-up within this time; saving may then take as
# long as it needs (a replay can be GBs).
STUCK_EXIT_S = 15.0
# Once saved and safe, leaving ROS (destroy_node, rclpy shutdown) takes milliseconds; seen
# once in CI to hang in DDS teardown past the bringup's 20 s, so it gets a bound too.
TEARDOWN_EXIT_S = 5.0


def _end_now(name: str, why: str, code: int) -> None:
    """One line and every thread's stack on stderr (the node's log), then the exit."""
    import faulthandler
    import sys
    try:
        print(f'[{name}] {why}; ending the process. Where each thread was:',
              file=sys.stderr, flush=True)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    except (OSError, ValueError):
        pass
    exit_process(code)


def _exit_if_stuck(stop, node_class):
    """Watch for a stop that never reaches the clean-up (a callback that does not return):
    after STUCK_EXIT_S the process ends itself with one line, rather than outliving its
    supervisor. Returns the event the clean-up sets."""
    import threading
    cleaning = threading.Event()
    name = getattr(node_class, 'NAME', node_class.__name__)

    def watch():
        stop.wait()
        if not cleaning.wait(STUCK_EXIT_S):
            _end_now(name, f'stopped but stuck for {STUCK_EXIT_S:g} s before its clean-up', 1)

    threading.Thread(target=watch, name='stop-watchdog', daemon=True).start()
    return cleaning


def _bound_teardown(name: str, code: int) -> None:
    """Everything is saved and the arm is safe: if leaving ROS hangs, end without it."""
    import threading
    import time

    def watch():
        time.sleep(TEARDOWN_EXIT_S)
        _end_now(name, f'saved and stopped, but leaving ROS took over {TEARDOWN_EXIT_S:g} s', code)

    threading.Thread(target=watch, name='teardown-watchdog', daemon=True).start()


def run_node(node_class, args=None, on_exit=None, compute: bool = False) -> None:
    """The life of one node process: init, build, spin, clean up, exit.

    A bad parameter or config ends the process with one line and exit code 2. With
    `compute`, ROS callbacks run in a background thread and the main thread runs the
    node's `run(stop)` loop (learner, replay_sampler) until `stop` is set, and the
    node's `save()` and `close()` run on the way out, however it ends; `on_exit(node)`
    always runs last, even when saving failed.

    SIGINT/SIGTERM (and the supervisor's death) only set `stop` (see
    init_with_own_signals), so saving and `on_exit` still publish and log (arm_driver's
    last zero command). A node whose `done` becomes true (the policy after its last
    episode) ends the process too. The process always ends through exit_process: no
    thread can keep it alive.
    """
    import sys

    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    stop = init_with_own_signals(args)
    if stop.is_set():   # stopped while importing: nothing was done, nothing to undo
        rclpy.try_shutdown()
        exit_process(0)
    try:
        node = node_class()
    except ValueError as err:   # ConfigError is one
        print(f'[{getattr(node_class, "NAME", node_class.__name__)}] error: {err}',
              file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        exit_process(2)
    executor = thread = None
    code = 0
    cleaning = _exit_if_stuck(stop, node_class)
    try:
        if compute:
            executor, thread = spin_in_background(node)
            node.run(stop)
        else:
            # A bounded wait, so the loop sees the flag even when no callback is due.
            spinner = SingleThreadedExecutor(context=node.context)
            spinner.add_node(node)
            while not stop.is_set() and node.context.ok() and not getattr(node, 'done', False):
                spinner.spin_once(timeout_sec=0.05)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as err:  # noqa: BLE001 - still save what was learned, still stop the arm
        node.get_logger().error(f'{type(err).__name__}: {err}')
        import traceback
        traceback.print_exc()
        code = 1
    finally:
        cleaning.set()
        if compute:
            _guarded(node, 'save', node.save)
            _guarded(node, 'close', node.close)
        if on_exit is not None:
            _guarded(node, 'finish', on_exit, node)
        if executor is not None:
            executor.shutdown(timeout_sec=1.0)
            thread.join(timeout=2.0)
        _bound_teardown(node.get_name(), code)
        try:
            node.destroy_node()
        finally:
            rclpy.try_shutdown()
            exit_process(code)
