"""SAC agent: learning signal, encoder gradient routing, schedules, state round trips."""
import io

import numpy as np
import pytest
import torch

from asyncrl_ros.agent.networks import SpatialSoftmax, squashed_gaussian_sample
from asyncrl_ros.agent.sac import SACAgent, SACConfig

IMAGE, CROP, PROPRIO, ACTION, BATCH = (9, 44, 48), (40, 42), 5, 3, 16


def small_config(**overrides) -> SACConfig:
    # CPU fp32 unless a test asks otherwise: 'auto' would follow the machine (CUDA, bf16 CPUs).
    return SACConfig(**{"hidden_dim": 32, "num_filters": 8, "crop_height": CROP[0], "crop_width": CROP[1],
                        "device": "cpu", "precision": "fp32", **overrides})


def make_agent(seed=0, **overrides) -> SACAgent:
    return SACAgent(small_config(**overrides), IMAGE, PROPRIO, ACTION, seed=seed)


def make_batch(seed=0, not_done=None) -> dict:
    rng = np.random.default_rng(seed)
    images = lambda: rng.integers(0, 256, (BATCH, IMAGE[0], *CROP), dtype=np.uint8)
    return {
        "obs_image": images(), "obs_proprio": rng.normal(size=(BATCH, PROPRIO)).astype(np.float32),
        "action": rng.uniform(-1, 1, (BATCH, ACTION)).astype(np.float32),
        "reward": rng.normal(size=BATCH).astype(np.float32),
        "next_obs_image": images(), "next_obs_proprio": rng.normal(size=(BATCH, PROPRIO)).astype(np.float32),
        "not_done": np.ones(BATCH, np.float32) if not_done is None else not_done,
    }


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_config_defaults_are_thesis_values_and_bad_values_are_named():
    cfg = SACConfig()
    assert (cfg.actor_lr, cfg.critic_lr, cfg.encoder_lr, cfg.alpha_lr) == (3e-4, 3e-4, 1e-3, 1e-4)
    assert (cfg.critic_tau, cfg.encoder_tau, cfg.init_temperature, cfg.gamma) == (0.01, 0.05, 0.1, 0.99)
    assert (cfg.actor_update_freq, cfg.critic_target_update_freq, cfg.hidden_dim) == (2, 2, 1024)
    with pytest.raises(ValueError, match="critic_lr"):
        SACConfig(critic_lr=-1.0)
    with pytest.raises(ValueError, match="gamma"):
        SACConfig(gamma=1.5)
    with pytest.raises(ValueError, match="hidden_dim"):
        SACConfig(hidden_dim=3.5)
    with pytest.raises(ValueError, match="learning_rate"):
        SACConfig.from_dict({"learning_rate": 1e-3})
    assert SACConfig.from_dict({"batch_size": 80}).batch_size == 80


def test_spatial_softmax_returns_the_hot_pixel_coordinates():
    x = torch.zeros(1, 2, 5, 9)
    x[0, 0, 1, 6] = 100.0  # channel 0: row 1, column 6
    x[0, 1, 4, 0] = 100.0  # channel 1: row 4, column 0
    out = SpatialSoftmax()(x)[0]
    xs, ys = torch.linspace(-1, 1, 9), torch.linspace(-1, 1, 5)
    torch.testing.assert_close(out, torch.stack([xs[6], xs[0], ys[1], ys[4]]))


def test_squashed_gaussian_log_prob_matches_change_of_variables():
    mu, log_std, noise = torch.randn(64, 4), torch.rand(64, 4) - 2, torch.randn(64, 4)
    action, log_prob = squashed_gaussian_sample(mu, log_std, noise)
    u = mu + log_std.exp() * noise
    reference = (torch.distributions.Normal(mu, log_std.exp()).log_prob(u)
                 - torch.log(1 - torch.tanh(u) ** 2)).sum(-1)
    torch.testing.assert_close(action, torch.tanh(u))
    torch.testing.assert_close(log_prob, reference, rtol=1e-4, atol=1e-4)


def test_act_is_bounded_and_deterministic_mode_repeats():
    agent = make_agent()
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, IMAGE, dtype=np.uint8)
    proprio = rng.normal(size=PROPRIO).astype(np.float32)
    a1, a2 = agent.act(image, proprio, deterministic=True), agent.act(image, proprio, deterministic=True)
    assert a1.shape == (ACTION,) and a1.dtype == np.float32
    np.testing.assert_array_equal(a1, a2)
    # Push the policy towards saturation: samples must still stay inside [-1, 1].
    with torch.no_grad():
        agent.actor.trunk[-1].bias[:ACTION] = 50.0
    samples = np.stack([agent.act(image, proprio, deterministic=False) for _ in range(20)])
    assert np.all(np.abs(samples) <= 1.0)
    with pytest.raises(ValueError, match="image shape"):
        agent.act(image[:, :40, :42], proprio)


def test_stochastic_actions_vary():
    agent = make_agent()
    image = np.zeros(IMAGE, np.uint8)
    samples = np.stack([agent.act(image, np.zeros(PROPRIO), deterministic=False) for _ in range(5)])
    assert np.unique(samples[:, 0]).size == 5


def test_repeated_updates_on_one_batch_lower_the_critic_loss():
    agent = make_agent()
    batch = make_batch(not_done=np.zeros(BATCH, np.float32))  # targets = rewards: pure regression
    losses = [agent.update(batch)["critic_loss"] for _ in range(150)]
    assert np.mean(losses[-10:]) < 0.1 * np.mean(losses[:3])


def test_channels_last_encoder_learns_what_an_nchw_one_learns():
    """The encoder's memory layout is a speed choice: the same updates either way, up to rounding."""
    nchw, channels_last = make_agent(), make_agent()
    assert channels_last.encoder.memory_format == torch.channels_last   # the default
    for encoder in (nchw.encoder, nchw.encoder_target):
        encoder.memory_format = torch.contiguous_format
    for seed in range(4):
        batch = make_batch(seed)
        a, b = nchw.update(batch), channels_last.update(batch)
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    # Not parameter by parameter: Adam turns rounding in a near-zero gradient into a whole
    # step. What the heads see of an image must agree (keypoints in [-1, 1]).
    images = torch.as_tensor(make_batch(seed=9)["obs_image"])
    with torch.no_grad():
        torch.testing.assert_close(nchw.encoder(images), channels_last.encoder(images), rtol=0, atol=2e-3)


def test_encoder_leaves_a_float_input_alone():
    """It scales a copy in place, never the caller's tensor."""
    encoder = make_agent().encoder
    # Already in the encoder's dtype and layout, where a conversion without a copy is a no-op.
    images = torch.full((2, IMAGE[0], *CROP), 200.0).contiguous(memory_format=encoder.memory_format)
    encoder(images)
    assert torch.all(images == 200.0)


def test_actor_step_leaves_encoder_alone_and_critic_step_trains_it():
    agent = make_agent()
    b = agent._to_tensors(make_batch())
    encoder, actor, critic = params(agent.encoder), params(agent.actor), params(agent.critic)
    agent.update_actor_and_alpha(b["obs_image"], b["obs_proprio"])
    assert same(encoder, params(agent.encoder)), "actor loss must not reach the encoder"
    assert all(p.grad is None for p in agent.encoder.parameters()), "no gradient may flow to the encoder"
    assert same(critic, params(agent.critic)), "actor step must not move the critic"
    assert not same(actor, params(agent.actor))

    actor = params(agent.actor)
    agent.update_critic(b)
    assert not same(encoder, params(agent.encoder)), "critic loss must train the encoder"
    assert not same(critic, params(agent.critic))
    assert same(actor, params(agent.actor))


def test_actor_and_targets_update_every_second_update_with_the_right_tau():
    agent = make_agent()
    batch = make_batch()
    cfg = agent.cfg
    for i in range(4):
        actor, alpha = params(agent.actor), agent.log_alpha.item()
        enc_t, crit_t = params(agent.encoder_target), params(agent.critic_target)
        metrics = agent.update(batch)
        scheduled = i % 2 == 0
        assert ("actor_loss" in metrics) == scheduled
        assert (not same(actor, params(agent.actor))) == scheduled
        assert (agent.log_alpha.item() != alpha) == scheduled
        if scheduled:  # target <- (1 - tau) target + tau online, with the post-update online weights
            for old, new, online in zip(enc_t, agent.encoder_target.parameters(), agent.encoder.parameters()):
                torch.testing.assert_close(new, torch.lerp(old, online.detach(), cfg.encoder_tau))
            for old, new, online in zip(crit_t, agent.critic_target.parameters(), agent.critic.parameters()):
                torch.testing.assert_close(new, torch.lerp(old, online.detach(), cfg.critic_tau))
        else:
            assert same(enc_t, params(agent.encoder_target)) and same(crit_t, params(agent.critic_target))
    assert agent.num_updates == 4


def test_state_dict_round_trip_reproduces_actions_and_updates():
    agent = make_agent(seed=3)
    for i in range(3):
        agent.update(make_batch(seed=i))
    buffer = io.BytesIO()
    torch.save(agent.state_dict(), buffer)
    buffer.seek(0)
    clone = make_agent(seed=99)
    clone.load_state_dict(torch.load(buffer, weights_only=False))
    assert clone.num_updates == agent.num_updates == 3

    image = np.random.default_rng(5).integers(0, 256, IMAGE, dtype=np.uint8)
    for deterministic in (True, False):
        np.testing.assert_array_equal(agent.act(image, np.ones(PROPRIO), deterministic),
                                      clone.act(image, np.ones(PROPRIO), deterministic))
    for i in range(2):  # covers an actor step (update 4) and a critic-only step (update 5)
        assert agent.update(make_batch(seed=10 + i)) == clone.update(make_batch(seed=10 + i))
    assert same(params(agent.encoder_target), params(clone.encoder_target))
    assert same(params(agent.actor), params(clone.actor))


def test_policy_state_dict_carries_exactly_what_acting_needs():
    agent = make_agent(seed=1)
    agent.update(make_batch())
    policy = make_agent(seed=2)
    weights = agent.policy_state_dict()
    assert {k.split(".")[0] for k in weights} == {"encoder", "actor"}
    policy.load_policy_state_dict(weights)
    image = np.random.default_rng(2).integers(0, 256, IMAGE, dtype=np.uint8)
    np.testing.assert_array_equal(agent.act(image, np.zeros(PROPRIO), True),
                                  policy.act(image, np.zeros(PROPRIO), True))
    # The snapshot is a copy: later learning must not change weights already shipped.
    before = {k: v.clone() for k, v in weights.items()}
    agent.update(make_batch(seed=1))
    assert all(torch.equal(before[k], weights[k]) for k in weights)


def test_bad_batches_and_shapes_are_rejected_clearly():
    agent = make_agent()
    batch = make_batch()
    with pytest.raises(ValueError, match="not_done"):
        agent.update({k: v for k, v in batch.items() if k != "not_done"})
    uncropped = dict(batch, obs_image=np.zeros((BATCH, *IMAGE), np.uint8))
    with pytest.raises(ValueError, match="obs_image"):
        agent.update(uncropped)
    with pytest.raises(ValueError, match="channels"):
        SACAgent(small_config(), (6, 44, 48), PROPRIO, ACTION)
    with pytest.raises(ValueError, match="too small"):
        SACAgent(SACConfig(hidden_dim=32, crop_height=20, crop_width=28), (9, 24, 32), PROPRIO, ACTION)


# ------------------------------------------------------------------ device and precision
def test_device_and_precision_settings_are_checked():
    with pytest.raises(ValueError, match="unknown SACConfig.device 'gpu'"):
        SACConfig(device="gpu")
    with pytest.raises(ValueError, match="unknown SACConfig.precision 'fp16'"):
        SACConfig(precision="fp16")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            SACConfig(device="cuda:0")
    assert SACConfig().device == "auto" and SACConfig().act_device == "cpu"


def test_bf16_updates_lower_the_critic_loss_as_fp32_updates_do():
    batch = make_batch(not_done=np.zeros(BATCH, np.float32))  # targets = rewards: pure regression
    curves = {}
    for precision in ("fp32", "bf16"):
        agent = make_agent(precision=precision, hidden_dim=64)
        assert agent.bf16 == (precision == "bf16")
        curves[precision] = [agent.update(batch)["critic_loss"] for _ in range(80)]
    fp32, bf16 = np.array(curves["fp32"]), np.array(curves["bf16"])
    assert not np.array_equal(fp32, bf16), "bf16 must change the arithmetic (autocast active)"
    assert fp32[-5:].mean() < 0.15 * fp32[:3].mean()
    assert bf16[-5:].mean() < 0.15 * bf16[:3].mean()
    assert abs(bf16[-5:].mean() - fp32[-5:].mean()) < 0.5 * fp32[-5:].mean() + 0.01, (fp32[-5:], bf16[-5:])


def test_bf16_keeps_parameters_optimizer_state_and_temperature_fp32():
    agent = make_agent(precision="bf16")
    for i in range(3):  # includes actor and temperature steps
        agent.update(make_batch(seed=i))
    modules = (agent.encoder, agent.actor, agent.critic, agent.encoder_target, agent.critic_target)
    assert all(p.dtype == torch.float32 for m in modules for p in m.parameters())
    assert agent.log_alpha.dtype == torch.float32
    for opt in (agent.actor_optimizer, agent.critic_optimizer, agent.alpha_optimizer):
        moments = [v for state in opt.state.values() for k, v in state.items() if k != "step"]
        assert moments and all(v.dtype == torch.float32 for v in moments)
    image = np.zeros(IMAGE, np.uint8)
    assert agent.act(image, np.zeros(PROPRIO), True).dtype == np.float32


def test_acting_on_another_device_uses_a_copy_that_follows_learning(monkeypatch):
    # No second device here: 'cpu:0' is another torch.device than 'cpu' for the agent's logic.
    from asyncrl_ros.agent import sac
    from asyncrl_ros.agent.device import Placement
    monkeypatch.setattr(sac, "resolve", lambda cfg, device=None: Placement(
        torch.device("cpu"), torch.device("cpu", 0), False))
    agent = make_agent(seed=4)
    reference = make_agent(seed=4)
    monkeypatch.undo()
    assert agent._act_copy is not None and reference._act_copy is not None
    image = np.random.default_rng(3).integers(0, 256, IMAGE, dtype=np.uint8)
    act = lambda a: a.act(image, np.ones(PROPRIO), deterministic=True)  # noqa: E731
    before = act(agent)
    agent.update(make_batch())
    after = act(agent)
    assert not np.array_equal(before, after), "the acting copy must pick up learned weights"
    own = make_agent(seed=4)  # acts with its learning modules
    own.update(make_batch())
    np.testing.assert_array_equal(after, act(own))
    reference.load_policy_state_dict(agent.policy_state_dict())
    np.testing.assert_array_equal(act(reference), after)
