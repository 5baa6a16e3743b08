"""Checkpoints: exact restore of agent, replay and counters; clear errors for damaged files."""
from dataclasses import asdict

import numpy as np
import pytest
import torch

from asyncrl_ros.learning.checkpoint import load_checkpoint, restore_checkpoint, save_checkpoint
from asyncrl_ros.agent.replay import FrameReplay
from asyncrl_ros.agent.sac import SACAgent, SACConfig

CFG = SACConfig(hidden_dim=32, num_filters=8, crop_height=40, crop_width=42, batch_size=8)
IMAGE, PROPRIO, ACTION = (9, 44, 48), 4, 2


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def make(seed: int):
    agent = SACAgent(CFG, IMAGE, PROPRIO, ACTION, seed=seed)
    replay = FrameReplay(40, (3, *IMAGE[1:]), PROPRIO, ACTION, frame_stack=3, seed=seed)
    return agent, replay


def train(agent, replay, rng, steps):
    for step in range(steps):
        if step % 15 == 0:
            replay.start_episode(rng.integers(0, 256, (3, *IMAGE[1:]), dtype=np.uint8), rng.normal(size=PROPRIO))
        replay.add(rng.uniform(-1, 1, ACTION), rng.normal(), rng.integers(0, 256, (3, *IMAGE[1:]), dtype=np.uint8),
                   rng.normal(size=PROPRIO), terminal=step % 15 == 14)
        if len(replay) >= CFG.batch_size:
            agent.update(replay.sample(CFG.batch_size, (CFG.crop_height, CFG.crop_width)))


def flat(state: dict, prefix="") -> dict:
    out = {}
    for k, v in state.items():
        if isinstance(v, dict):
            out |= flat(v, f"{prefix}{k}/")
        else:
            out[prefix + str(k)] = v
    return out


def test_round_trip_restores_everything_and_training_continues_identically(tmp_path):
    agent, replay = make(seed=0)
    rng = np.random.default_rng(0)
    train(agent, replay, rng, 50)  # 50 steps into 40 slots: the ring has wrapped
    extra = {"step": 50, "episode": 4, "env_rng": rng.bit_generator.state, "config": asdict(CFG)}
    path = tmp_path / "run" / "ckpt.pt"
    save_checkpoint(path, agent, replay, extra)
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pt"], "no temporary file may remain"

    agent2, replay2 = make(seed=7)
    restored = restore_checkpoint(path, agent2, replay2)
    assert restored == extra
    a, b = flat(agent.state_dict()), flat(agent2.state_dict())
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k
    ra, rb = replay.state_dict(), replay2.state_dict()
    for k in ra:
        np.testing.assert_equal(ra[k], rb[k], err_msg=k)
    assert len(replay2) == len(replay) and replay2.total == replay.total

    rng2 = np.random.default_rng()
    rng2.bit_generator.state = restored["env_rng"]
    train(agent, replay, rng, 10)
    train(agent2, replay2, rng2, 10)
    for x, y in zip(agent.critic.parameters(), agent2.critic.parameters()):
        assert torch.equal(x, y)
    image = np.full(IMAGE, 128, np.uint8)
    np.testing.assert_array_equal(agent.act(image, np.zeros(PROPRIO)), agent2.act(image, np.zeros(PROPRIO)))


def test_overwrite_keeps_one_file_and_agent_only_checkpoints_work(tmp_path):
    agent, replay = make(seed=0)
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, agent, replay, {"step": 1})
    save_checkpoint(path, agent, None, {"step": 2})
    assert load_checkpoint(path)["extra"] == {"step": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]
    with pytest.raises(ValueError, match="no replay"):
        restore_checkpoint(path, agent, replay)


def test_damaged_or_foreign_files_give_clear_errors(tmp_path):
    agent, replay = make(seed=0)
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, agent, replay, {})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_checkpoint(path)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_checkpoint(path)
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="not an asyncrl_ros checkpoint"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_restoring_into_a_differently_shaped_replay_is_refused(tmp_path):
    agent, replay = make(seed=0)
    train(agent, replay, np.random.default_rng(1), 5)
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, agent, replay, {})
    other = FrameReplay(40, (3, 44, 48), PROPRIO, ACTION, frame_stack=4)
    with pytest.raises(ValueError, match="frame_stack"):
        restore_checkpoint(path, agent, other)
