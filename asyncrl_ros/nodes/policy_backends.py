"""How the policy node reaches its learner, per the mode registry's `policy_backend`
(asyncrl_ros/learning/modes.py): the policy's own code is the same in every mode."""
from __future__ import annotations

from asyncrl_ros.learning.backends import InProcessLearner
from asyncrl_ros.learning.modes import MODES
from asyncrl_ros.nodes.common import (TOPIC_TRANSITIONS, TOPIC_WEIGHTS, TRANSITION_QOS,
                                      WEIGHTS_QOS, stamp_ns, transition_to_msg)
from asyncrl_ros.learning.remote import RemoteLearner, ShmWeightsSource, TopicWeightsSource, shm_names
from asyncrl_ros_interfaces.msg import Transition, Weights


def in_process_backend(node, cfg, proprio_dim: int, action_dim: int):
    """sync (Seq-SAC): replay and updates inside the policy's own timer turn."""
    return InProcessLearner(cfg, proprio_dim, action_dim, node.run_dir, node.resume)


def remote_backend(node, cfg, proprio_dim: int, action_dim: int):
    """async1/async2: transitions out over a topic, weights in from the learner."""
    pub = node.create_publisher(Transition, TOPIC_TRANSITIONS, TRANSITION_QOS)
    send = lambda t: pub.publish(transition_to_msg(t, node.get_clock().now().to_msg()))  # noqa: E731
    if cfg.asynchronous.weights_transport == 'shm':
        weights = ShmWeightsSource(shm_names(node.run_dir)['weights'])
    else:
        weights = TopicWeightsSource()
        node.create_subscription(Weights, TOPIC_WEIGHTS,
                                 lambda m: weights.offer(m.version, bytes(m.data),
                                                   stamp_ns(m.header.stamp)), WEIGHTS_QOS)
    return RemoteLearner(cfg, proprio_dim, action_dim, send, weights,
                         receivers=pub.get_subscription_count)


BACKENDS = {'in_process': in_process_backend, 'remote': remote_backend}


def make_backend(node, cfg, proprio_dim: int, action_dim: int):
    return BACKENDS[MODES[cfg.mode].policy_backend](node, cfg, proprio_dim, action_dim)
