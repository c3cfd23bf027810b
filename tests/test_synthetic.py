"""Tests for nwb_facrnn.synthetic: chaotic ground truths and synthetic FacRNN datasets."""

import dataclasses
import re

import numpy as np
import pytest

from nwb_facrnn.errors import OptionError
from nwb_facrnn.synthetic import (
    CHAOTIC_SYSTEMS,
    SyntheticDataset,
    chaotic_trajectory,
    make_lowrank_rnn_dataset,
    make_poisson_dataset,
)
from nwb_facrnn.synthetic import dynamics as synthetic


@pytest.fixture(scope="module")
def gaussian() -> SyntheticDataset:
    return make_lowrank_rnn_dataset()


@pytest.fixture(scope="module")
def poisson() -> SyntheticDataset:
    return make_poisson_dataset()


def _recurrence_r2(ds: SyntheticDataset) -> np.ndarray:
    """Per-latent R^2 of z_t ~ B tanh(A z_{t-1} + a + u_{t-1}) + b."""
    z = ds.z.astype(np.float64)
    drive = z @ ds.A.T + ds.a + ds.u
    residual = z[1:] - (np.tanh(drive[:-1]) @ ds.B.T + ds.b)
    return 1.0 - residual.var(axis=0) / z[1:].var(axis=0)


def _n_maxima(v: np.ndarray) -> int:
    return int(np.sum((v[1:-1] > v[:-2]) & (v[1:-1] >= v[2:])))


# --------------------------------------------------------------------------- chaotic systems


def test_known_systems():
    assert CHAOTIC_SYSTEMS[:3] == ("lorenz", "thomas", "rossler")
    assert len(set(CHAOTIC_SYSTEMS)) == len(CHAOTIC_SYSTEMS) >= 3


@pytest.mark.parametrize("system", CHAOTIC_SYSTEMS)
def test_chaotic_trajectory_standardized_and_reproducible(system):
    traj = chaotic_trajectory(system, 1000, seed=3, burn_in=300)
    assert traj.shape == (1000, 3)
    assert np.all(np.isfinite(traj))
    np.testing.assert_allclose(traj.mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(traj.std(axis=0), 1.0, rtol=1e-10)
    np.testing.assert_array_equal(traj, chaotic_trajectory(system, 1000, seed=3, burn_in=300))
    other = chaotic_trajectory(system, 1000, seed=4, burn_in=300)
    assert np.abs(traj - other).mean() > 0.3


@pytest.mark.parametrize(("system", "dim"), [("lorenz", 2), ("rossler", 0), ("chen", 2)])
def test_default_dt_spans_many_loops(system, dim):
    # One local maximum of this coordinate per loop of the attractor.
    assert 25 <= _n_maxima(chaotic_trajectory(system, 2000)[:, dim]) <= 45


@pytest.mark.parametrize("system", CHAOTIC_SYSTEMS)
def test_chaotic_sensitivity_to_initial_conditions(system):
    on_attractor = synthetic._simulate(system, synthetic._SYSTEMS[system].center, 500)[-1]
    ref = synthetic._simulate(system, on_attractor, 4000)
    perturbed = synthetic._simulate(system, on_attractor + np.array([1e-8, 0.0, 0.0]), 4000)
    distance = np.linalg.norm((ref - perturbed) / ref.std(axis=0), axis=1)
    assert distance[0] < 1e-7
    assert distance.max() > 1.0  # attractor-sized, in units of its standard deviation


def test_chaotic_trajectory_custom_dt_and_burn_in():
    slow = chaotic_trajectory("lorenz", 2000, dt=0.005, burn_in=10)
    assert _n_maxima(slow[:, 2]) < _n_maxima(chaotic_trajectory("lorenz", 2000)[:, 2])


# --------------------------------------------------------------------------- Gaussian dataset


def test_gaussian_shapes_and_metadata(gaussian):
    T, N, K = 2000, 20, 6
    expected = {
        "x": (T, N),
        "z": (T, K),
        "u": (T, N),
        "A": (N, K),
        "B": (K, N),
        "a": (N,),
        "b": (K,),
    }
    for name, shape in expected.items():
        assert getattr(gaussian, name).shape == shape, name
    for name in ("x", "z", "u"):
        assert getattr(gaussian, name).dtype == np.float32, name
    assert (gaussian.n_steps, gaussian.n_neurons, gaussian.n_latents) == (T, N, K)
    assert (gaussian.n_groups, gaussian.group_rank) == (2, 3)
    assert gaussian.systems == ("lorenz", "thomas")
    assert gaussian.observation == "gaussian"
    assert gaussian.noise_std == 0.1
    assert gaussian.rates is None and gaussian.bin_size is None


def test_dataset_is_frozen(gaussian):
    with pytest.raises(dataclasses.FrozenInstanceError):
        gaussian.noise_std = 0.2  # type: ignore[misc]
    with pytest.raises(OptionError, match=re.escape("B must have shape (6, 20)")):
        dataclasses.replace(gaussian, B=gaussian.B.T)


def test_gaussian_determinism(gaussian):
    again = make_lowrank_rnn_dataset(seed=0)
    for name in ("x", "z", "u", "A", "B", "a", "b"):
        np.testing.assert_array_equal(getattr(again, name), getattr(gaussian, name), err_msg=name)
    other = make_lowrank_rnn_dataset(seed=1)
    for name in ("x", "z", "u", "A", "a"):
        assert not np.allclose(getattr(other, name), getattr(gaussian, name)), name


def test_latents_standardized(gaussian):
    np.testing.assert_allclose(gaussian.z.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(gaussian.z.std(axis=0), 1.0, atol=1e-5)


def test_groups_independent_within_group_dependent(gaussian):
    corr = np.corrcoef(gaussian.z.T)
    # Finite-sample cross-correlation of independent chaotic groups over 2000 bins is O(0.2).
    assert np.abs(corr[:3, 3:]).max() < 0.3
    lorenz = gaussian.z[:, :3].astype(np.float64)
    assert corr[0, 1] > 0.8  # Lorenz x and y move together
    assert np.corrcoef(lorenz[:, 0] ** 2, lorenz[:, 2])[0, 1] > 0.4  # z rises with x^2
    assert np.abs(corr[3:, 3:][np.triu_indices(3, 1)]).min() > 0.5  # Thomas dims coupled


def test_repeated_systems_are_independent_trajectories():
    ds = make_lowrank_rnn_dataset(n_steps=10_000, systems=("lorenz", "lorenz"), seed=5)
    assert np.abs(np.corrcoef(ds.z.T)[:3, 3:]).max() < 0.1  # shrinks like 1/sqrt(T)
    assert np.corrcoef(ds.z.T)[0, 1] > 0.8 and np.corrcoef(ds.z.T)[3, 4] > 0.8


def test_default_systems_cycle():
    ds = make_lowrank_rnn_dataset(n_groups=len(CHAOTIC_SYSTEMS) + 2, n_steps=50)
    assert ds.systems == (*CHAOTIC_SYSTEMS, *CHAOTIC_SYSTEMS[:2])
    assert ds.z.shape == (50, 3 * ds.n_groups)
    assert not np.allclose(ds.z[:, :3], ds.z[:, -6:-3])  # same system, different trajectory


def test_activity_matches_model_within_noise(gaussian):
    clean = gaussian.z.astype(np.float64) @ gaussian.A.T + gaussian.a + gaussian.u
    residual_std = (gaussian.x - clean).std()
    assert abs(residual_std - 0.1) < 0.01
    assert 0.5 < clean.var(axis=0).mean() < 2.0  # roughly unit variance: tanh not saturated
    assert gaussian.A.std() == pytest.approx(1 / np.sqrt(6), rel=0.15)
    assert np.abs(gaussian.a).max() < 0.5


def test_external_input_is_small_and_smooth(gaussian):
    u = gaussian.u.astype(np.float64)
    np.testing.assert_allclose(u.std(axis=0), 0.05, rtol=1e-4)
    np.testing.assert_allclose(u.mean(axis=0), 0.0, atol=1e-6)
    lag1 = np.mean([np.corrcoef(u[1:, i], u[:-1, i])[0, 1] for i in range(u.shape[1])])
    assert lag1 > 0.9
    quiet = make_lowrank_rnn_dataset(n_steps=100, noise_std=0.0, input_std=0.0)
    np.testing.assert_array_equal(quiet.u, 0.0)
    np.testing.assert_allclose(quiet.x, quiet.z @ quiet.A.T + quiet.a, atol=1e-5)


def test_true_b_explains_the_latents(gaussian):
    r2 = _recurrence_r2(gaussian)
    assert r2.mean() > 0.95
    assert r2.min() > 0.9


def test_connectivity(gaussian):
    W = gaussian.connectivity
    np.testing.assert_allclose(W, gaussian.A @ gaussian.B)
    groups = [gaussian.group_connectivity(g) for g in range(gaussian.n_groups)]
    np.testing.assert_allclose(sum(groups), W, atol=1e-12)
    assert [np.linalg.matrix_rank(Wg) for Wg in groups] == [3, 3]
    assert np.linalg.matrix_rank(W) == 6
    with pytest.raises(OptionError, match=re.escape("g must be an int in [0, 2)")):
        gaussian.group_connectivity(2)


# --------------------------------------------------------------------------- Poisson dataset


def test_poisson_counts_and_rates(poisson):
    assert poisson.x.shape == (2000, 100) and poisson.x.dtype == np.float32
    assert poisson.rates is not None and poisson.rates.shape == (2000, 100)
    assert poisson.observation == "poisson"
    assert poisson.noise_std == 0.0 and poisson.bin_size == 0.02
    np.testing.assert_array_equal(poisson.u, 0.0)
    assert poisson.x.min() >= 0
    np.testing.assert_array_equal(poisson.x, np.round(poisson.x))
    assert poisson.x.mean() == pytest.approx(1.0, rel=0.15)
    np.testing.assert_allclose(poisson.rates.mean(axis=0), 1.0, rtol=1e-4)
    drive = poisson.z.astype(np.float64) @ poisson.A.T + poisson.a
    np.testing.assert_allclose(poisson.rates, np.logaddexp(0.0, drive), rtol=1e-4, atol=1e-6)
    assert poisson.x.var() > poisson.x.mean()  # rate modulation adds to Poisson variance


def test_poisson_mean_rate_and_recurrence():
    ds = make_poisson_dataset(n_neurons=50, n_steps=1000, mean_rate=0.3, seed=2)
    assert ds.x.mean() == pytest.approx(0.3, rel=0.15)
    assert _recurrence_r2(ds).min() > 0.95


def test_poisson_shares_latents_with_gaussian(poisson, gaussian):
    np.testing.assert_array_equal(poisson.z, gaussian.z)
    same_n = make_poisson_dataset(n_neurons=20, n_steps=2000)
    np.testing.assert_array_equal(same_n.A, gaussian.A)
    np.testing.assert_array_equal(
        make_poisson_dataset(n_steps=50, seed=7).x, make_poisson_dataset(n_steps=50, seed=7).x
    )


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("builder", "kwargs", "message"),
    [
        (make_lowrank_rnn_dataset, {"n_groups": 0}, "n_groups must be an int >= 1, got 0"),
        (make_lowrank_rnn_dataset, {"n_groups": 1.5}, "n_groups must be an int >= 1, got 1.5"),
        (make_lowrank_rnn_dataset, {"n_neurons": 0}, "n_neurons must be an int >= 1"),
        (make_lowrank_rnn_dataset, {"n_steps": 2}, "n_steps must be an int >= 3, got 2"),
        (make_lowrank_rnn_dataset, {"group_rank": 2}, "group_rank must be 3"),
        (make_lowrank_rnn_dataset, {"noise_std": -0.1}, "noise_std must be a finite number >= 0"),
        (make_lowrank_rnn_dataset, {"input_std": np.nan}, "input_std must be a finite number"),
        (make_lowrank_rnn_dataset, {"systems": ["lorenz"]}, "systems must have n_groups=2"),
        (make_lowrank_rnn_dataset, {"systems": "lorenz"}, "not the string 'lorenz'"),
        (
            make_lowrank_rnn_dataset,
            {"systems": ["lorenz", "duffing"]},
            "unknown chaotic system 'duffing'; known systems: ('lorenz', 'thomas', 'rossler'",
        ),
        (make_poisson_dataset, {"mean_rate": 0.0}, "mean_rate must be a finite number > 0"),
        (make_poisson_dataset, {"bin_size": -0.02}, "bin_size must be a finite number > 0"),
        (make_poisson_dataset, {"n_neurons": True}, "n_neurons must be an int >= 1, got True"),
    ],
)
def test_dataset_argument_validation(builder, kwargs, message):
    with pytest.raises(OptionError, match=re.escape(message)):
        builder(**kwargs)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("lorenz", 1), {}, "n_steps must be an int >= 2, got 1"),
        (("lorenz", 10), {"dt": 0.0}, "dt must be a finite number > 0, got 0.0"),
        (("lorenz", 10), {"burn_in": -1}, "burn_in must be an int >= 0, got -1"),
        (("Lorenz", 10), {}, "unknown chaotic system 'Lorenz'; known systems: ('lorenz'"),
    ],
)
def test_trajectory_argument_validation(args, kwargs, message):
    with pytest.raises(OptionError, match=re.escape(message)):
        chaotic_trajectory(*args, **kwargs)
