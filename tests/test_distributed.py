"""Data-parallel training (``FacRNN(devices=N)``): N processes on the CPU (gloo) give the
one-process fit within float tolerance; failures propagate and leave no process behind.

Every ``devices=2`` fit spawns two Python processes (a few seconds each on a loaded 2-core
machine), so the fits are few, small and short.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import psutil
import pytest
import torch
import torch.distributed as dist

from nwb_facrnn import FacRNN
from nwb_facrnn.errors import OptionError
from nwb_facrnn.model import distributed
from nwb_facrnn.model.data import make_transitions
from nwb_facrnn.model.losses import partial_correlation
from nwb_facrnn.model.training import Objective, Problem, TrainOptions, train
from nwb_facrnn.synthetic import make_lowrank_rnn_dataset, make_poisson_dataset

RTOL = 1e-4
BASE = {"n_groups": 2, "group_rank": 3, "progress": False, "device": "cpu", "seed": 0}


@pytest.fixture(scope="module")
def trials():
    """Two trials of a Gaussian recording with inputs and a mask (a padded trial end, a gap)."""
    d = make_lowrank_rnn_dataset(n_steps=400, seed=0)
    x, u = d.x.reshape(2, 200, -1), d.u.reshape(2, 200, -1)
    mask = np.ones(x.shape, dtype=bool)
    mask[1, 150:] = False
    mask[0, 50:60, 3] = False
    x = np.where(mask, x, np.nan)
    return x, u, mask


@pytest.fixture
def no_new_process():
    """Checks that a test left no process of its own behind (pytest-xvfb's X server and Python's
    multiprocessing resource tracker may run before and after)."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}

    def check() -> None:
        new = [
            p
            for p in psutil.Process().children(recursive=True)
            if p.pid not in before and "resource_tracker" not in " ".join(p.cmdline())
        ]
        assert not new, f"processes left running: {new}"

    return check


def assert_same_fit(one: FacRNN, two: FacRNN, X, mask=None) -> None:
    assert set(one.history_) == set(two.history_)
    for key, value in one.history_.items():
        np.testing.assert_allclose(two.history_[key], value, rtol=RTOL, atol=1e-6, err_msg=key)
    for name in ("output_loadings_", "input_loadings_", "output_bias_", "latent_bias_"):
        np.testing.assert_allclose(
            getattr(two, name), getattr(one, name), rtol=RTOL, atol=1e-6, err_msg=name
        )
    np.testing.assert_allclose(two.init_objectives_, one.init_objectives_, rtol=RTOL)
    assert (two.best_init_, two.n_epochs_, two.stopped_early_) == (
        one.best_init_,
        one.n_epochs_,
        one.stopped_early_,
    )
    np.testing.assert_allclose(
        two.transform(X, mask=mask), one.transform(X, mask=mask), rtol=RTOL, atol=1e-5
    )


# ------------------------------------------------------------------ the pieces, in-process
def test_partial_correlation_of_query_parts_equals_the_whole_batch():
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(3, 11, 6, generator=gen)
    z = mu + 0.4 * torch.randn(mu.shape, generator=gen)
    whole = partial_correlation(z, mu, 0.4, 2, 500)
    per_sample = partial_correlation(z, mu, 0.4, 2, 500, offset=0, reduction="none")
    assert per_sample.shape == (3, 11)
    # the one-process call is unchanged, bit for bit
    assert torch.equal(whole, per_sample.mean(-1))
    assert torch.equal(partial_correlation(z, mu, 0.4, 2, 500, reduction="sum"), per_sample.sum(-1))
    # three processes' parts (uneven, as tensor_split makes them) against all the means
    sizes = distributed.split_sizes(11, 3)
    assert sizes == (4, 4, 3)
    parts, start = [], 0
    for s in sizes:
        parts.append(
            partial_correlation(
                z[:, start : start + s], mu, 0.4, 2, 500, offset=start, reduction="none"
            )
        )
        start += s
    torch.testing.assert_close(torch.cat(parts, dim=1), per_sample, rtol=1e-6, atol=1e-6)
    assert distributed.split_sizes(2, 3) == (1, 1, 0)  # more processes than samples
    with pytest.raises(ValueError, match="outside the 11 means"):
        partial_correlation(z[:, :4], mu, 0.4, 2, 500, offset=8)


@pytest.mark.parametrize("devices", [0, -1, 1.5, True, "2", None])
def test_devices_must_be_a_positive_integer(devices):
    x = np.random.default_rng(0).normal(size=(30, 4))
    with pytest.raises(OptionError, match=r"devices must be an integer >= 1"):
        FacRNN(**BASE, devices=devices).fit(x)


def test_cuda_devices_beyond_the_visible_gpus_are_refused(monkeypatch):
    """Refused before any data moves to a GPU, so this runs without one."""
    x = np.random.default_rng(0).normal(size=(30, 4))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for device in ("auto", "cuda", "cuda:0"):
        with pytest.raises(
            OptionError, match=r"devices=2 on cuda:0 needs .* 1 GPU\(s\) are visible"
        ):
            FacRNN(**{**BASE, "device": device}, devices=2).fit(x)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(OptionError, match=r"cuda:1\.\.cuda:2, but 2 GPU"):
        FacRNN(**{**BASE, "device": "cuda:1"}, devices=2).fit(x)
    distributed.check_devices(2, torch.device("cuda:0"))  # two GPUs for two processes: fine
    with pytest.raises(OptionError, match="runs on 'cpu' or 'cuda' devices, not 'meta'"):
        FacRNN(**{**BASE, "device": "meta"}, devices=2).fit(x)


def test_devices_must_match_a_torchrun_launch(monkeypatch):
    x = np.random.default_rng(0).normal(size=(30, 4))
    env = {"WORLD_SIZE": "4", "RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert distributed.launched_world_size() == 4
    with pytest.raises(OptionError, match=r"devices=2, but this process is one of 4 launched"):
        FacRNN(**BASE, devices=2).fit(x)


def test_a_one_process_group_trains_as_the_plain_loop(trials, tmp_path):
    """The data-parallel code path in this process (world size 1): it must match ``train``."""
    x, u, mask = trials
    seqs = np.where(mask, x, 0).astype(np.float32)
    model = FacRNN(**BASE, beta=5.0, alpha=1.0, n_init=2)
    model.observed_mean_ = np.nanmean(np.where(mask, x, np.nan), axis=(0, 1)).astype(np.float32)
    data = make_transitions(seqs, u, None, torch.device("cpu"), None, mask, model.observed_mean_)
    model.n_features_in_, model.n_samples_ = x.shape[2], len(data) - 30
    model.latent_std_ = 0.5
    train_data, validation = data.subset(torch.arange(30, len(data))), data.subset(torch.arange(30))
    objective = model._objective()
    options = TrainOptions(max_epochs=3, batch_size=45, learning_rate=3e-3, seed=0, progress=False)

    def fresh():
        module = model._new_module(2)
        model._initialize(module, train_data)
        return module

    plain = fresh()
    want = train(Problem(plain, objective, train_data, validation), options)
    sharded = fresh()
    dist.init_process_group(
        "gloo", init_method=(tmp_path / "rendezvous").as_uri(), rank=0, world_size=1
    )
    try:
        assert distributed.launched_world_size() == 1
        got = distributed.train_in_group(
            Problem(sharded, objective, train_data, validation), options
        )
    finally:
        dist.destroy_process_group()
    assert got.rank_divergence == 0.0
    np.testing.assert_allclose(got.history, want.history, rtol=1e-5)
    np.testing.assert_allclose(got.val_history, want.val_history, rtol=1e-5)
    np.testing.assert_allclose(got.final, want.final, rtol=1e-5)
    for k, v in plain.state_dict().items():
        torch.testing.assert_close(sharded.state_dict()[k], v, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------- two processes on the CPU
def test_two_processes_match_one_gaussian_trials_mask_early_stopping(trials, no_new_process):
    x, u, mask = trials
    params = {
        **BASE,
        "beta": 5.0,
        "alpha": 1.0,
        "n_init": 2,
        "max_epochs": 4,
        "batch_size": 50,  # 7 minibatches of 43 or 44 samples: uneven parts of 22 and 21
        "early_stopping": True,
        "validation_fraction": 0.15,
    }
    seen: dict[int, list] = {1: [], 2: []}
    one = FacRNN(**params).fit(x, u, mask=mask, callback=lambda e, t: seen[1].append((e, t)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        two = FacRNN(**params, devices=2).fit(
            x, u, mask=mask, callback=lambda e, t: seen[2].append((e, t))
        )
    assert not [w for w in caught if "drifted apart" in str(w.message)]  # ranks in lockstep
    assert two.devices == 2 and two.get_params()["devices"] == 2
    assert_same_fit(one, two, x, mask)
    assert "validation" in two.history_
    # the callback ran in this process, once per epoch, with the one-process terms
    assert [e for e, _ in seen[2]] == list(range(two.n_epochs_))
    for (_, t1), (_, t2) in zip(seen[1], seen[2], strict=True):
        assert t1.keys() == t2.keys()
        np.testing.assert_allclose([t2[k] for k in t2], [t1[k] for k in t1], rtol=RTOL)
    no_new_process()


class _FailsOnRank1(Objective):
    """An objective that raises in worker rank 1 only (imported there by pickle)."""

    def terms(self, module, batch, gen, part=None):
        if dist.is_initialized() and dist.get_rank() == 1:
            raise ValueError("rank 1 fails on purpose")
        return super().terms(module, batch, gen, part)


def test_a_worker_failure_names_its_rank_and_leaves_no_process(trials, monkeypatch, no_new_process):
    x, u, mask = trials
    make = FacRNN._objective
    monkeypatch.setattr(FacRNN, "_objective", lambda self: _FailsOnRank1(**vars(make(self))))
    model = FacRNN(**BASE, beta=5.0, n_init=1, max_epochs=2, devices=2)
    with pytest.raises(
        distributed.WorkerError, match=r"rank 1 of 2: ValueError: rank 1 fails"
    ) as err:
        model.fit(x, u, mask=mask)
    assert err.value.rank == 1 and "Traceback" in err.value.details
    assert "rank 1: 1" in err.value.status
    assert isinstance(err.value, RuntimeError)
    assert not hasattr(model, "module_")
    no_new_process()


def test_a_callback_exception_stops_the_workers(trials, no_new_process):
    x, u, mask = trials

    class Stop(Exception):
        pass

    def stop(epoch, terms):
        if epoch == 1:
            raise Stop

    model = FacRNN(**BASE, beta=5.0, n_init=1, max_epochs=200, batch_size=64, devices=2)
    with pytest.raises(Stop):
        model.fit(x, u, mask=mask, callback=stop)
    no_new_process()


TORCHRUN_SCRIPT = """
import json, os, sys
import numpy as np
from nwb_facrnn import FacRNN
from nwb_facrnn.synthetic import make_poisson_dataset

if __name__ == "__main__":
    params, out = json.loads(sys.argv[1]), sys.argv[2]
    d = make_poisson_dataset(n_steps=400, n_neurons=30, seed=1)
    m = FacRNN(**params, devices=int(os.environ["WORLD_SIZE"])).fit(d.x)
    np.savez(
        os.path.join(out, f"rank{os.environ['RANK']}.npz"),
        A=m.output_loadings_, B=m.input_loadings_, z=m.transform(d.x),
        **{f"history_{k}": v for k, v in m.history_.items()},
    )
"""


def test_torchrun_launch_trains_poisson_across_the_launched_processes(tmp_path):
    """``torchrun --nproc_per_node=2`` running ``fit(devices=2)`` in both processes: both get
    the one-process Poisson fit (spike counts, smoothing, the total-correlation penalty)."""
    params = {
        **BASE,
        "observation": "poisson",
        "smoothing": 2.0,
        "beta": 5.0,
        "penalty": "total",
        "n_init": 1,
        "max_epochs": 5,
        "batch_size": 64,  # 7 minibatches of 57: parts of 29 and 28
    }
    script = tmp_path / "fit.py"
    script.write_text(TORCHRUN_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    proc = subprocess.run(
        [*cmd, str(script), json.dumps(params), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys()
    for key in ranks[0]:  # every launched process returns the same model
        np.testing.assert_array_equal(ranks[0][key], ranks[1][key], err_msg=key)
    d = make_poisson_dataset(n_steps=400, n_neurons=30, seed=1)
    one = FacRNN(**params).fit(d.x)
    got = ranks[0]
    np.testing.assert_allclose(got["A"], one.output_loadings_, rtol=RTOL, atol=1e-6)
    np.testing.assert_allclose(got["B"], one.input_loadings_, rtol=RTOL, atol=1e-6)
    np.testing.assert_allclose(got["z"], one.transform(d.x), rtol=RTOL, atol=1e-5)
    for key, value in one.history_.items():
        np.testing.assert_allclose(got[f"history_{key}"], value, rtol=RTOL, err_msg=key)
    assert one.history_["pc"][-1] != 0
