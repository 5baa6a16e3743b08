"""FrameReplay: exact stacks at episode boundaries and after wrap-around, crops, state round trip.

Every frame encodes its absolute step index t in its pixels (channel 0: t % 256, channel 1: t // 256),
the proprioception holds t, and the action and reward of the transition ending at t hold t too, so a
sampled batch can be decoded and checked against an independent model of the episodes.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncrl_ros.agent.augment import center_crop, random_crop
from asyncrl_ros.agent.replay import FrameReplay

H, W = 6, 8


def frame(t: int) -> np.ndarray:
    f = np.empty((3, H, W), np.uint8)
    f[0], f[1] = t % 256, t // 256
    f[2] = (np.arange(H)[:, None] * 16 + np.arange(W)[None, :]).astype(np.uint8)  # position code
    return f


class Model:
    """Plain-Python record of what was written: episode start and terminal flag of every frame."""

    def __init__(self):
        self.start, self.first, self.terminal = [], [], []

    def begin(self):
        self.start.append(len(self.start))
        self.first.append(True)
        self.terminal.append(False)

    def step(self, terminal):
        self.start.append(self.start[-1])
        self.first.append(False)
        self.terminal.append(terminal)

    def stack(self, t, fs):
        return [max(t - k, self.start[t]) for k in range(fs - 1, -1, -1)]

    def valid(self, capacity, fs):
        oldest = max(0, len(self.start) - capacity)
        return {t for t in range(oldest, len(self.start))
                if not self.first[t] and min(self.stack(t - 1, fs)) >= oldest}


def fill(replay: FrameReplay, lengths, terminals=None, model=None):
    """Write episodes with the given numbers of transitions; returns the model."""
    model = model or Model()
    for i, n in enumerate(lengths):
        t = len(model.start)
        replay.start_episode(frame(t), np.full(replay.proprio_dim, t, np.float32))
        model.begin()
        for k in range(n):
            t = len(model.start)
            term = bool(terminals[i]) and k == n - 1 if terminals is not None else False
            replay.add(np.full(replay.action_dim, t, np.float32), float(t), frame(t),
                       np.full(replay.proprio_dim, t, np.float32), term)
            model.step(term)
    return model


def decode(images: np.ndarray) -> np.ndarray:
    """(B, 3*fs, h, w) stacks -> (B, fs) absolute frame indices, checking each frame is uniform."""
    b, c = images.shape[:2]
    frames = images.reshape(b, c // 3, 3, -1)
    assert np.all(frames[..., :2, :] == frames[..., :2, :1]), "a frame mixes two steps"
    return frames[..., 0, 0].astype(int) + 256 * frames[..., 1, 0].astype(int)


def check_batch(batch, model, capacity, fs):
    valid = model.valid(capacity, fs)
    obs, nxt = decode(batch["obs_image"]), decode(batch["next_obs_image"])
    for i in range(len(obs)):
        t = int(batch["reward"][i])
        assert t in valid, f"sampled transition ending at {t} is not valid"
        assert obs[i].tolist() == model.stack(t - 1, fs)
        assert nxt[i].tolist() == model.stack(t, fs)
        assert batch["obs_proprio"][i, 0] == t - 1 and batch["next_obs_proprio"][i, 0] == t
        assert batch["action"][i, 0] == t
        assert batch["not_done"][i] == (0.0 if model.terminal[t] else 1.0)


def test_stacks_repeat_the_first_frame_and_never_cross_episodes():
    replay = FrameReplay(100, (3, H, W), 2, 1, frame_stack=3)
    model = fill(replay, [1, 4, 2], terminals=[True, False, True])
    # frames: ep0 = 0,1 ; ep1 = 2..6 ; ep2 = 7..9
    assert len(replay) == 7
    np.testing.assert_array_equal(decode(replay.stacked_obs(2)[None])[0], [2, 2, 2])
    np.testing.assert_array_equal(decode(replay.stacked_obs(3)[None])[0], [2, 2, 3])
    np.testing.assert_array_equal(decode(replay.stacked_obs(6)[None])[0], [4, 5, 6])
    np.testing.assert_array_equal(decode(replay.stacked_obs(8)[None])[0], [7, 7, 8])
    batch = replay.sample(500)
    check_batch(batch, model, 100, 3)
    sampled = set(batch["reward"].astype(int).tolist())
    assert sampled == {1, 3, 4, 5, 6, 8, 9}, "every transition, and no episode-first frame, is sampled"


def test_wrap_around_never_uses_overwritten_frames():
    capacity, fs = 20, 3
    replay = FrameReplay(capacity, (3, H, W), 1, 2, frame_stack=fs)
    model = fill(replay, [7, 3, 12, 5, 9, 4])  # 46 frames into 20 slots
    assert len(replay) == len(model.valid(capacity, fs))
    batch = replay.sample(2000)
    check_batch(batch, model, capacity, fs)
    assert set(batch["reward"].astype(int).tolist()) == model.valid(capacity, fs)
    assert decode(batch["obs_image"]).min() >= len(model.start) - capacity


def test_long_episode_whose_start_was_overwritten_still_samples_correctly():
    capacity, fs = 10, 4
    replay = FrameReplay(capacity, (3, H, W), 1, 1, frame_stack=fs)
    model = fill(replay, [30])
    # Stored frames 21..30; transitions need fs+1 consecutive frames: t in 25..30.
    assert model.valid(capacity, fs) == set(range(25, 31)) and len(replay) == 6
    check_batch(replay.sample(300), model, capacity, fs)
    with pytest.raises(ValueError, match="overwritten"):
        replay.stacked_obs(22)


@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.integers(0, 12), min_size=1, max_size=12),
       terminals=st.lists(st.booleans(), min_size=12, max_size=12),
       capacity=st.integers(6, 40), fs=st.integers(1, 4))
def test_random_episodes_match_the_model(lengths, terminals, capacity, fs):
    replay = FrameReplay(capacity, (3, H, W), 1, 1, frame_stack=fs, seed=1)
    model = fill(replay, lengths, terminals)
    valid = model.valid(capacity, fs)
    assert len(replay) == len(valid)
    if valid:
        check_batch(replay.sample(64), model, capacity, fs)
    else:
        with pytest.raises(ValueError, match="no complete transition"):
            replay.sample(4)


def test_random_crop_cuts_whole_stacks_at_one_offset_and_obs_next_independently():
    replay = FrameReplay(50, (3, H, W), 1, 1, frame_stack=3)
    model = fill(replay, [20])
    batch = replay.sample(64, crop_hw=(4, 5))
    assert batch["obs_image"].shape == batch["next_obs_image"].shape == (64, 9, 4, 5)
    position = frame(0)[2]
    offsets = {}
    for key in ("obs_image", "next_obs_image"):
        codes = batch[key][:, 2::3]  # position channel of each frame in the stacks
        assert np.all(codes == codes[:, :1]), "frames of one stack were cropped differently"
        y, x = codes[:, 0, 0, 0] // 16, codes[:, 0, 0, 0] % 16
        for i in range(64):
            np.testing.assert_array_equal(codes[i, 0], position[y[i]:y[i] + 4, x[i]:x[i] + 5])
        offsets[key] = (y, x)
        assert len(set(zip(y.tolist(), x.tolist()))) > 1, "offsets must vary across the batch"
    assert np.any(offsets["obs_image"][0] != offsets["next_obs_image"][0]) or \
        np.any(offsets["obs_image"][1] != offsets["next_obs_image"][1])
    check_batch(batch, model, 50, 3)


def test_augment_crops():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (32, 9, 12, 15), dtype=np.uint8)
    crops = random_crop(images, 10, 11, rng)
    assert crops.shape == (32, 9, 10, 11)
    found = []
    for img, crop in zip(images, crops):
        hits = [(y, x) for y in range(3) for x in range(5)
                if np.array_equal(img[:, y:y + 10, x:x + 11], crop)]
        assert hits
        found.append(hits[0])
    assert len(set(found)) > 3
    np.testing.assert_array_equal(center_crop(images[0], 10, 11), images[0][:, 1:11, 2:13])
    np.testing.assert_array_equal(center_crop(images, 10, 11), images[:, :, 1:11, 2:13])
    with pytest.raises(ValueError, match="crop size"):
        random_crop(images, 13, 11, rng)


def test_state_dict_round_trip_continues_identically():
    replay = FrameReplay(30, (3, H, W), 2, 2, frame_stack=3, seed=4)
    fill(replay, [10, 15, 9])  # wrapped, and the last episode is still open
    state = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in replay.state_dict().items()}
    clone = FrameReplay(30, (3, H, W), 2, 2, frame_stack=3, seed=123)
    clone.load_state_dict(state)
    assert len(clone) == len(replay)
    for r in (replay, clone):  # continue the open episode in both
        r.add(np.zeros(2), 99.0, frame(37), np.zeros(2), True)
    a, b = replay.sample(32, (4, 5)), clone.sample(32, (4, 5))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    with pytest.raises(ValueError, match="capacity"):
        FrameReplay(31, (3, H, W), 2, 2).load_state_dict(state)


def test_bad_input_is_rejected():
    replay = FrameReplay(10, (3, H, W), 2, 1)
    with pytest.raises(ValueError, match="start_episode"):
        replay.add(np.zeros(1), 0.0, frame(0), np.zeros(2), False)
    with pytest.raises(ValueError, match="uint8"):
        replay.start_episode(frame(0).astype(np.float32), np.zeros(2))
    with pytest.raises(ValueError, match="proprio"):
        replay.start_episode(frame(0), np.zeros(3))
    replay.start_episode(frame(0), np.zeros(2))
    replay.add(np.zeros(1), 0.0, frame(1), np.zeros(2), True)
    with pytest.raises(ValueError, match="start_episode"):
        replay.add(np.zeros(1), 0.0, frame(2), np.zeros(2), False)
    with pytest.raises(ValueError, match="crop_hw"):
        replay.sample(4, crop_hw=(H + 1, W))
    with pytest.raises(ValueError, match="batch_size"):
        replay.sample(0)
    assert replay.nbytes >= 10 * 3 * H * W
