"""Checks every simulated arm (an `ArmWorld`) must pass, whatever the robot.

A test module subclasses `ArmWorldChecks` as `Test...` and provides two fixtures: `world` (one
world for the module, e.g. `world = module_world(PandaWorld)`) and `home` (that world, resting
at its home pose).
"""
import mujoco
import numpy as np
import pytest

BAD_VECTORS = [lambda n: np.zeros(n - 1), lambda n: np.zeros(n + 1),
               lambda n: [0.0] * (n - 1) + [np.nan], lambda n: [np.inf] + [0.0] * (n - 1),
               lambda n: 'fast']


def module_world(cls):
    """A module-scoped `world` fixture: one `cls()` for the whole module, closed after it."""
    @pytest.fixture(scope='module')
    def world():
        with cls() as w:
            yield w
    return world


class ArmWorldChecks:
    def test_zero_command_holds_against_gravity(self, home):
        q0 = home.joint_state()[0]
        home.set_joint_velocity(np.zeros(home.n_joints))
        home.step(1.0)
        assert np.max(np.abs(home.joint_state()[0] - q0)) < 1e-3

    def test_time_advances_by_step_durations(self, world):
        t0 = world.time
        for _ in range(25):
            world.step(0.04)
        assert world.time - t0 == pytest.approx(1.0, abs=1e-12)
        world.step(0.0)
        assert world.time - t0 == pytest.approx(1.0, abs=1e-12)

    @pytest.mark.parametrize('bad', [0.003, -0.04, float('nan'), float('inf')])
    def test_step_rejects_bad_durations(self, world, bad):
        with pytest.raises(ValueError, match='duration'):
            world.step(bad)

    @pytest.mark.parametrize('make_bad', BAD_VECTORS)
    def test_bad_velocity_raises(self, world, make_bad):
        with pytest.raises(ValueError, match='qdot'):
            world.set_joint_velocity(make_bad(world.n_joints))

    @pytest.mark.parametrize('make_bad', BAD_VECTORS)
    def test_bad_joint_positions_raise(self, world, make_bad):
        with pytest.raises(ValueError, match='q must'):
            world.set_joint_positions(make_bad(world.n_joints))

    def test_teleport_rests_the_arm(self, world):
        world.set_joint_velocity(np.full(world.n_joints, 0.5))
        world.step(0.1)
        world.set_joint_positions(world.home_qpos)
        q, qdot = world.joint_state()
        np.testing.assert_allclose(q, world.home_qpos)
        assert np.all(qdot == 0)
        world.step(0.1)   # the velocity command was cleared too
        assert np.max(np.abs(world.joint_state()[0] - world.home_qpos)) < 1e-4

    def test_poses_after_step_belong_to_the_reported_state(self, home):
        home.set_joint_velocity(np.full(home.n_joints, 0.3))
        home.step(0.1)
        fresh = mujoco.MjData(home.model)
        fresh.qpos[:], fresh.mocap_pos[:] = home.data.qpos, home.data.mocap_pos
        mujoco.mj_kinematics(home.model, fresh)
        # Not one physics step stale: the flange is where the reported joints put it ...
        np.testing.assert_allclose(home.ee_position(), fresh.xpos[home._flange], atol=1e-12)
        # ... and the wrist camera (at the flange's origin) renders from there.
        np.testing.assert_allclose(home.data.cam_xpos[home._camera], home.ee_position(),
                                   atol=1e-12)

    def test_render_shape_and_dtype(self, home):
        img = home.render()
        assert img.shape == (90, 160, 3) and img.dtype == np.uint8

    @pytest.mark.parametrize('kw, what', [({'image_width': 0}, 'image size'),
                                          ({'image_height': -1}, 'image size'),
                                          ({'physics_dt': 0.02}, 'physics_dt'),
                                          ({'physics_dt': float('nan')}, 'physics_dt')])
    def test_bad_construction_raises(self, world, kw, what):
        with pytest.raises(ValueError, match=what):
            type(world)(**kw)

    def test_closed_world_refuses_to_render(self, world):
        w = type(world)(image_width=32, image_height=18)
        with w:
            assert w.render().shape == (18, 32, 3)
        w.close()   # closing twice is harmless
        with pytest.raises(RuntimeError, match='closed'):
            w.render()
