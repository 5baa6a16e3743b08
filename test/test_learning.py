"""Learning backends without a ROS graph: the update cap, the frame stacker, weights
picked up by a remote policy through shared memory, and the replay owner's counts."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from asyncrl_ros.run.config import load_config
from asyncrl_ros.learning.backends import FrameStacker, InProcessLearner
from asyncrl_ros.learning.remote import (RemoteLearner, ReplayOwner, ShmWeightsSource, TopicWeightsSource,
                                make_agent, policy_tensors, weights_to_bytes)
from asyncrl_ros.transport.shm_weights import WeightStore

P, A = 21, 7


def tiny(**run) -> object:
    return load_config({'image': {'width': 40, 'height': 36},
                        'sac': {'crop_height': 32, 'crop_width': 32, 'batch_size': 4,
                                'hidden_dim': 32, 'num_filters': 8},
                        'run': {'init_random_steps': 5, **run}})


def frame(i: int) -> np.ndarray:
    return np.full((3, 36, 40), i % 256, dtype=np.uint8)


def feed(learner, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        learner.add(np.zeros(A, np.float32), 0.1, frame(i + 1), np.zeros(P, np.float32), False)


@pytest.mark.parametrize('cap, expected', [(1.0, 15), (0.5, 7), (2.0, 30)])
def test_sync_update_cap_counts_steps_after_random_phase(cap, expected, tmp_path):
    learner = InProcessLearner(tiny(max_updates_per_step=cap), P, A, tmp_path)
    learner.start_episode(frame(0), np.zeros(P, np.float32))
    for i in range(20):
        feed(learner, 1, i)
        learner.learn()
    # 20 steps, 5 random: learning over 15 steps, never a burst to catch up.
    assert learner.updates == expected


def test_sync_update_cap_has_no_burst_when_a_batch_fills_after_the_random_phase(tmp_path):
    learner = InProcessLearner(tiny(init_random_steps=2), P, A, tmp_path)   # batch 4
    learner.start_episode(frame(0), np.zeros(P, np.float32))
    per_step = []
    for i in range(20):
        feed(learner, 1, i)
        before = learner.updates
        learner.learn()
        per_step.append(learner.updates - before)
    # Learning starts once 4 transitions are stored, then one update per step, no catch-up.
    assert per_step == [0] * 4 + [1] * 16


def test_frame_stacker_orders_oldest_first_and_restarts_per_episode():
    stacker = FrameStacker(3)
    stacker.reset(frame(1))
    stacker.push(frame(2))
    stacker.push(frame(3))
    assert [int(stacker.stacked()[3 * k, 0, 0]) for k in range(3)] == [1, 2, 3]
    stacker.push(frame(4))
    assert [int(stacker.stacked()[3 * k, 0, 0]) for k in range(3)] == [2, 3, 4]
    stacker.reset(frame(9))
    assert [int(stacker.stacked()[3 * k, 0, 0]) for k in range(3)] == [9, 9, 9]


def test_remote_policy_picks_up_new_weights_from_shared_memory():
    cfg = tiny()
    learner_agent = make_agent(cfg, P, A)
    store = WeightStore.create('asyncrl_test_pickup', policy_tensors(learner_agent))
    sent = []
    try:
        remote = RemoteLearner(cfg, P, A, sent.append, ShmWeightsSource('asyncrl_test_pickup'))
        obs = np.random.default_rng(0).integers(0, 255, (9, 36, 40), dtype=np.uint8)
        prop = np.zeros(P, np.float32)
        remote.poll_weights(step=0)
        assert remote.weights_version == 0
        # The learner changes its weights and publishes them twice.
        with torch.no_grad():
            for p in learner_agent.actor.parameters():
                p.add_(0.5)
        store.publish(policy_tensors(learner_agent))
        store.publish(policy_tensors(learner_agent))
        remote.poll_weights(step=10)
        assert remote.weights_version == 2
        assert np.allclose(remote.agent.act(obs, prop, deterministic=True),
                           learner_agent.act(obs, prop, deterministic=True), atol=1e-6)
        assert remote.age(step=13)[0] == 3
        remote.close()
    finally:
        store.close()
        store.unlink()


def two_different_agents():
    cfg = tiny()
    a, b = make_agent(cfg, P, A), make_agent(cfg, P, A)
    with torch.no_grad():
        for p in b.actor.parameters():
            p.mul_(-1)
    return cfg, a, b


def same_actor(x, y) -> bool:
    return all(torch.equal(m, t) for m, t in zip(x.parameters(), y.parameters()))


def test_topic_weights_take_only_newer_versions():
    cfg, a, b = two_different_agents()
    source = TopicWeightsSource()
    remote = RemoteLearner(cfg, P, A, lambda t: None, source)
    source.offer(2, weights_to_bytes(policy_tensors(b)))
    remote.poll_weights(0)
    source.offer(1, weights_to_bytes(policy_tensors(a)))   # stale: ignored
    remote.poll_weights(1)
    assert remote.weights_version == 2
    assert same_actor(remote.agent.actor, b.actor)


def test_topic_weights_from_a_restarted_learner_count_on():
    cfg, a, b = two_different_agents()
    source = TopicWeightsSource()
    remote = RemoteLearner(cfg, P, A, lambda t: None, source)
    source.offer(5, weights_to_bytes(policy_tensors(a)), stamp_ns=100)
    remote.poll_weights(0)
    source.offer(1, weights_to_bytes(policy_tensors(b)), stamp_ns=200)   # a new learner
    remote.poll_weights(1)
    assert remote.weights_version == 6
    assert same_actor(remote.agent.actor, b.actor)


def test_shm_weights_source_reattaches_to_a_restarted_learner(monkeypatch):
    from asyncrl_ros.learning.remote import PolicyNet, ShmWeightsSource
    from asyncrl_ros.transport.shm_weights import WeightStore
    monkeypatch.setattr(ShmWeightsSource, 'CHECK_EVERY_S', 0.0)
    cfg, a, b = two_different_agents()
    name = f'asyncrl_test_{os.getpid()}_reattach'
    first = WeightStore.create(name, policy_tensors(a))
    source = ShmWeightsSource(name)
    net = PolicyNet(make_agent(cfg, P, A))
    try:
        first.publish(policy_tensors(a))
        first.publish(policy_tensors(a))
        assert source.load_into(net) == 2
        first.close()
        first.unlink()   # the learner died; its segment is gone
        assert source.load_into(net) == 2   # acting on the last weights meanwhile
        second = WeightStore.create(name, policy_tensors(b))
        try:
            assert source.load_into(net) == 2   # restarted, nothing published yet
            second.publish(policy_tensors(b))
            assert source.load_into(net) == 3
            assert same_actor(net.actor, b.actor)
        finally:
            source.close()
            second.close()
            second.unlink()
    finally:
        if not first._unlinked:
            first.close()
            first.unlink()


def test_replay_owner_counts_stored_and_missing_transitions():
    cfg = tiny()
    owner = ReplayOwner(cfg, P, A)
    sent = []
    remote = RemoteLearner(cfg, P, A, sent.append, TopicWeightsSource())
    remote.start_episode(frame(0), np.zeros(P, np.float32))
    feed(remote, 10)
    for t in sent[:4] + sent[6:]:   # two lost on the way
        owner.ingest(t)
    assert owner.stored == 8 and owner.missing == 2 and owner.episodes == 1
    assert remote.sent == 10


def test_late_replay_owner_counts_what_it_never_saw_and_policy_waits_for_one():
    cfg = tiny()
    sent = []
    receivers = [0]
    remote = RemoteLearner(cfg, P, A, sent.append, TopicWeightsSource(),
                           receivers=lambda: receivers[0])
    assert remote.waiting_for() is not None   # nobody subscribed: the first episode waits
    receivers[0] = 1
    assert remote.waiting_for() is None
    remote.start_episode(frame(0), np.zeros(P, np.float32))
    feed(remote, 5)
    remote.start_episode(frame(1), np.zeros(P, np.float32))
    feed(remote, 5)
    owner = ReplayOwner(cfg, P, A)
    for t in sent[3:]:   # subscribed during the first episode
        owner.ingest(t)
    # The first episode's start never arrived: its 2 later steps cannot be stacked.
    assert owner.stored == 5 and owner.missing == 5 and owner.stored + owner.missing == len(sent)
    receivers[0] = 0
    assert remote.waiting_for() is None   # a learner lost mid-run never stops the arm
