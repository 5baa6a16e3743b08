"""DeviceFrameReplay (run with device='cpu'): the host FrameReplay's batches, bit for bit, as
device tensors; the same state_dict; a clear error when it does not fit in device memory."""
import numpy as np
import pytest
import torch

from asyncrl_ros.agent.augment import crop_at, crop_at_tensor
from asyncrl_ros.learning.checkpoint import load_checkpoint, save_checkpoint
from asyncrl_ros.run.config import load_config
from asyncrl_ros.agent.device_replay import DeviceFrameReplay, replay_nbytes
from asyncrl_ros.learning.remote import make_replay
from asyncrl_ros.agent.replay import FrameReplay
from asyncrl_ros.agent.sac import SACAgent, SACConfig
from test_replay import H, W, check_batch, fill

LENGTHS, TERMINALS = [10, 25, 12, 30], [1, 0, 1, 0]   # 81 frames in a ring of 60: wrapped


def pair(capacity=60, seed=3):
    host = FrameReplay(capacity, (3, H, W), 2, 2, frame_stack=3, seed=seed)
    device = DeviceFrameReplay(capacity, (3, H, W), 2, 2, frame_stack=3, seed=seed, device='cpu')
    model = fill(host, LENGTHS, TERMINALS)
    fill(device, LENGTHS, TERMINALS)
    return host, device, model


def assert_same(host_batch: dict, device_batch: dict) -> None:
    assert host_batch.keys() == device_batch.keys()
    for k, v in host_batch.items():
        assert isinstance(device_batch[k], torch.Tensor), k
        np.testing.assert_array_equal(device_batch[k].numpy(), v, err_msg=k)
        assert device_batch[k].dtype == torch.from_numpy(v).dtype, k


@pytest.mark.parametrize('crop_hw', [(4, 5), None])
def test_same_indices_and_crop_offsets_give_the_host_batch(crop_hw):
    host, device, model = pair()
    t, crops = host.draw(48, crop_hw)
    assert len(set(t.tolist())) > 10
    d = device.batch_at(t, crops)
    assert_same(host.batch_at(t, crops), d)
    check_batch({k: v.numpy() for k, v in d.items()}, model, 60, 3)   # and it is right


def test_sampling_draws_through_the_same_code_and_rng():
    host, device, _ = pair()
    for _ in range(3):
        assert_same(host.sample(32, (4, 5)), device.sample(32, (4, 5)))
    assert len(device) == len(host)
    np.testing.assert_array_equal(device.stacked_obs(75), host.stacked_obs(75))


def test_crop_at_tensor_equals_crop_at():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 3, 12, 15), dtype=np.uint8)
    index = rng.integers(0, 20, (7, 4))
    ys, xs = rng.integers(0, 3, 7), rng.integers(0, 5, 7)
    expected = crop_at(images, index, ys, xs, 10, 11)
    got = crop_at_tensor(torch.from_numpy(images), torch.from_numpy(index), torch.from_numpy(ys),
                         torch.from_numpy(xs), 10, 11)
    np.testing.assert_array_equal(got.numpy(), expected)


def test_state_dict_is_frame_replays_and_checkpoints_cross_over(tmp_path):
    host, device, _ = pair()
    hs, ds = host.state_dict(), device.state_dict()
    assert hs.keys() == ds.keys()
    for k in hs:
        if isinstance(hs[k], np.ndarray):
            assert isinstance(ds[k], np.ndarray) and np.array_equal(hs[k], ds[k]), k
        else:
            assert hs[k] == ds[k], k
    # A device replay's checkpoint resumes as a host replay and the other way round.
    save_checkpoint(tmp_path / 'd.pt', None, device)
    save_checkpoint(tmp_path / 'h.pt', None, host)
    host2 = FrameReplay(60, (3, H, W), 2, 2, frame_stack=3, seed=0)
    device2 = DeviceFrameReplay(60, (3, H, W), 2, 2, frame_stack=3, seed=0, device='cpu')
    host2.load_state_dict(load_checkpoint(tmp_path / 'd.pt')['replay'])
    device2.load_state_dict(load_checkpoint(tmp_path / 'h.pt')['replay'])
    for r in (host, device, host2, device2):   # continue the open episode everywhere
        r.add(np.zeros(2), 99.0, np.full((3, H, W), 7, np.uint8), np.zeros(2), True)
    reference = host.sample(32, (4, 5))
    for other in (device, host2, device2):
        batch = other.sample(32, (4, 5))
        for k, v in reference.items():
            np.testing.assert_array_equal(np.asarray(batch[k]), v, err_msg=k)


def test_its_batches_go_into_an_update_as_they_are():
    replay = DeviceFrameReplay(200, (9 // 3, 40, 40), 6, 2, frame_stack=3, device='cpu')
    rng = np.random.default_rng(1)
    replay.start_episode(rng.integers(0, 256, (3, 40, 40), dtype=np.uint8), np.zeros(6))
    for _ in range(20):
        replay.add(rng.uniform(-1, 1, 2), 1.0, rng.integers(0, 256, (3, 40, 40), dtype=np.uint8),
                   np.zeros(6), False)
    batch = replay.sample(8, (36, 36))
    agent = SACAgent(SACConfig(hidden_dim=64, num_filters=8, crop_height=36, crop_width=36,
                               device='cpu', precision='fp32'), (9, 40, 40), 6, 2)
    tensors = agent._to_tensors(batch)
    assert all(tensors[k] is batch[k] for k in batch), 'no conversion, no copy'
    assert agent.update(batch)['num_updates'] == 1


def test_a_replay_too_large_for_the_device_is_one_clear_line():
    need = replay_nbytes(100_000, (3, 180, 320), 21, 7)
    assert need == 100_000 * (3 * 180 * 320 + 4 * 30)
    free = lambda device: (8 * 2 ** 30, 16 * 2 ** 30)  # noqa: E731   8 of 16 GiB free
    with pytest.raises(ValueError) as err:
        DeviceFrameReplay(100_000, (3, 180, 320), 21, 7, device='cuda:0', mem_get_info=free)
    text = str(err.value)
    assert '\n' not in text and '100000 frames of 180x320' in text and 'needs 16.1 GiB on cuda:0' in text
    assert '8.0 GiB free' in text and 'sac.replay_capacity' in text
    # It fits when the free memory covers it and the reserve.
    DeviceFrameReplay(100, (3, 9, 9), 2, 2, device='cpu', mem_get_info=free)


def test_the_bringup_can_check_the_replay_before_any_node_starts(monkeypatch):
    from asyncrl_ros.agent import device_replay
    free = lambda device: (8 * 2 ** 30, 16 * 2 ** 30)  # noqa: E731
    hires = {'image': {'width': 320, 'height': 180},
             'sac': {'crop_height': 176, 'crop_width': 314, 'device': 'cpu'}}
    device_replay.check_replay_fits(load_config(hires, {'mode': 'async1'}), 21, 7, free)  # CPU: fine
    monkeypatch.setattr(device_replay, 'resolve_device', lambda spec: (torch.device('cuda', 0), ''))
    with pytest.raises(ValueError, match='needs 16.1 GiB on cuda:0'):
        device_replay.check_replay_fits(load_config(hires, {'mode': 'async1'}), 21, 7, free)
    # async2: the replay_sampler keeps a host replay.
    device_replay.check_replay_fits(load_config(hires, {'mode': 'async2'}), 21, 7, free)


def test_make_replay_keeps_the_host_replay_off_cuda():
    cfg = load_config({'sac': {'replay_capacity': 100}})
    assert type(make_replay(cfg, 21, 7)) is FrameReplay                 # a replay_sampler
    assert type(make_replay(cfg, 21, 7, torch.device('cpu'))) is FrameReplay
