"""Data-parallel training of FacRNN over several processes (``FacRNN(devices=N)``).

Every process holds all the training data and an identical copy of the model
(all ``n_init`` restarts).  Each epoch, every process draws the same global
permutation and, for every minibatch of ``M`` samples, the same encoder noise
of shape (R, M, K) as a one-process fit does; process ``r`` then computes the
loss terms of its contiguous part of the minibatch (``torch.tensor_split`` of
the minibatch into ``N`` parts):

* per-sample terms (reconstruction, KL) summed over its samples and divided by
  the global ``M``;
* the partial-correlation penalty of its samples, each evaluated against the
  encoder means of the *whole* minibatch, gathered from all processes by a
  differentiable all-gather (:class:`_GatherSamples`: its backward pass sums
  the gradients of all processes' losses with respect to each process's
  means), with the sample's own mixture component at its global index;
* parameter-only terms (the block-diagonal penalty) divided by ``N``.

The processes' losses sum to the one-process loss, so the gradients, summed
across processes with one ``all_reduce`` of a flat buffer per step, are the
one-process gradients up to floating-point summation order.  Every process
then takes the same fused-Adam step, and the processes stay in lockstep (this
is checked at the end: :attr:`~nwb_facrnn.model.training.TrainResult.rank_divergence`).
The epoch history, the held-out objective of early stopping and the final terms
are reduced across processes, so every process records the same values and
takes the same early-stopping decisions.  The result equals a one-process fit
within float tolerance, not bit for bit.

``torch.nn.parallel.DistributedDataParallel`` is not used: it averages
gradients of a loss that is a per-sample mean, whereas the partial-correlation
penalty couples all samples of a minibatch, and the objective calls the
module's ``encode`` and ``decode`` rather than one ``forward``.

Two ways to run:

* :func:`train_spawned` (what ``FacRNN(devices=N).fit`` does in a plain
  process): spawns ``N`` worker processes (start method ``"spawn"``), rank ``r``
  on ``cuda:(i + r)`` with the ``nccl`` backend when the fit's device is
  ``cuda:i``, or ``N`` processes on the CPU with ``gloo``.  The rendezvous is
  a ``file://`` store in a temporary folder (no port to pick); the data and the
  initial model go to the workers in a ``torch.save`` file there, which every
  worker memory-maps (``weights_only=True``); the trained model state comes
  back in a file written with ``torch.save`` and read with
  ``weights_only=True``, per-epoch terms as raw float64 bytes over a pipe, and
  a worker's error as a text file: the parent unpickles nothing.  A worker's
  exception becomes a :class:`WorkerError` naming its rank, after every worker
  has been stopped.  Scripts that fit with ``devices > 1`` must guard their
  entry point with ``if __name__ == "__main__":``, as every use of the spawn
  start method must.
* :func:`train_in_group` (what ``fit`` does when launched by ``torchrun``, or
  in any process group already initialised, and ``devices`` equals the world
  size): every launched process runs the same ``fit`` and trains in the
  existing group (initialised from the ``env://`` variables if needed, and
  then destroyed again); every process returns the same fitted model.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..atomic import write_file
from ..errors import OptionError
from .data import Transitions
from .modules import LowRankRNNVAE
from .training import BatchPart, Callback, Problem, TrainOptions, TrainResult, train

#: Seconds the other workers get to exit on their own after one failed, before SIGTERM.
GRACE_PERIOD_S = 2.0


class WorkerError(RuntimeError):
    """A data-parallel training worker failed.

    Attributes
    ----------
    rank : int
        The rank of the worker whose failure came first.
    world_size : int
    details : str
        The worker's traceback (or how it ended, when it was killed).
    status : str
        The exit status of every worker (a negative one is a signal, e.g. -9 from the
        out-of-memory killer).

    The message's first line names the rank and the worker's exception.
    """

    def __init__(self, rank: int, world_size: int, details: str, status: str = ""):
        details = details.strip()
        last = details.splitlines()[-1] if details else "no details"
        super().__init__(
            f"FacRNN training failed in worker process rank {rank} of {world_size}: {last}\n"
            f"{details}" + (f"\n(worker exit status: {status})" if status else "")
        )
        self.rank, self.world_size, self.details, self.status = rank, world_size, details, status


# ----------------------------------------------------------------- the process group side
class _GatherSamples(torch.autograd.Function):
    """Differentiable all-gather along the sample axis with uneven parts.

    Forward: every process's (R, m_r, K) tensor is padded to the largest part,
    all-gathered and unpadded into (R, M, K) in rank order.  Backward: the
    gradient with respect to the gathered tensor is summed over processes (one
    ``all_reduce``) and each process keeps the rows of its own part, so it gets
    the gradient of every process's loss with respect to its samples.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, sizes: tuple[int, ...], rank: int, group: Any):
        ctx.sizes, ctx.rank, ctx.group = sizes, rank, group
        width = max(sizes)
        padded = x.new_zeros((x.shape[0], width, *x.shape[2:]))
        padded[:, : x.shape[1]] = x
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded, group=group)
        return torch.cat([p[:, :s] for p, s in zip(parts, sizes, strict=True)], dim=1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[:, start : start + ctx.sizes[ctx.rank]], None, None, None


def split_sizes(batch_size: int, world_size: int) -> tuple[int, ...]:
    """Sizes of the ``torch.tensor_split`` of ``batch_size`` samples into ``world_size`` parts."""
    q, rem = divmod(batch_size, world_size)
    return tuple(q + 1 if r < rem else q for r in range(world_size))


@dataclass
class ProcessShard:
    """This process's place in a process group; implements the trainer's ``Shard``.

    Attributes
    ----------
    rank : int
        Rank in ``group`` (0 .. world_size - 1).
    world_size : int
    group : torch.distributed.ProcessGroup or None
        None: the default group.
    """

    rank: int
    world_size: int
    group: Any = None

    @classmethod
    def current(cls, group: Any = None) -> ProcessShard:
        """The calling process in ``group`` (default: the initialised default group)."""
        return cls(dist.get_rank(group), dist.get_world_size(group), group)

    def _src(self) -> int:
        return 0 if self.group is None else dist.get_global_rank(self.group, 0)

    def part(self, batch_size: int) -> BatchPart:
        """Samples ``start .. stop - 1`` of a global minibatch of ``batch_size`` samples."""
        sizes = split_sizes(batch_size, self.world_size)
        start = sum(sizes[: self.rank])
        return BatchPart(
            start=start,
            stop=start + sizes[self.rank],
            sizes=sizes,
            world_size=self.world_size,
            gather=lambda mu: _GatherSamples.apply(mu, sizes, self.rank, self.group),
        )

    def sum_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Sum every parameter's gradient over the processes (one flat ``all_reduce``)."""
        params = list(params)
        for p in params:
            if p.grad is None:  # a parameter this process's loss did not reach
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat, group=self.group)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p))
            offset += n

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the processes in place; rank 0's result is sent to all.

        The broadcast makes the result bit-identical on every process whatever the
        backend's reduction order, so decisions taken from it (early stopping, a
        callback) are the same everywhere.
        """
        dist.all_reduce(tensor, group=self.group)
        dist.broadcast(tensor, src=self._src(), group=self.group)
        return tensor

    @torch.no_grad()
    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Give every process rank 0's parameters."""
        for v in module.state_dict().values():
            dist.broadcast(v, src=self._src(), group=self.group)

    @torch.no_grad()
    def divergence(self, module: torch.nn.Module) -> float:
        """Largest absolute difference between the processes' parameters (0.0 in lockstep)."""
        flat = torch.cat([v.reshape(-1).double() for v in module.state_dict().values()])
        hi, lo = flat.clone(), flat.clone()
        dist.all_reduce(hi, op=dist.ReduceOp.MAX, group=self.group)
        dist.all_reduce(lo, op=dist.ReduceOp.MIN, group=self.group)
        return float((hi - lo).max())

    @torch.no_grad()
    def check_same_data(self, data: Transitions) -> None:
        """Raise OptionError on every process unless all hold the same number and sums
        of samples."""
        tensors = [t for t in (data.prev, data.curr, data.inputs, data.weight) if t is not None]
        stats = torch.tensor(
            [float(len(data)), float(len(tensors))] + [float(t.double().sum()) for t in tensors],
            dtype=torch.float64,
            device=data.prev.device,
        )
        stats = torch.nn.functional.pad(stats, (0, 6 - len(stats)))
        hi, lo = stats.clone(), stats.clone()
        dist.all_reduce(hi, op=dist.ReduceOp.MAX, group=self.group)
        dist.all_reduce(lo, op=dist.ReduceOp.MIN, group=self.group)
        if not torch.allclose(hi, lo, rtol=1e-6, atol=1e-6):
            raise OptionError(
                "data-parallel fit: the processes were given different data "
                f"({int(lo[0])} to {int(hi[0])} training transitions, or different values); "
                "every process must fit the same recording"
            )


# ------------------------------------------------------------------- devices and launchers
def launched_world_size() -> int:
    """Processes of the group this process belongs to: 1 unless launched as one of several.

    A default process group already initialised counts, and so do the variables
    ``torchrun`` sets (``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``, ``MASTER_PORT``).
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    env = os.environ
    if all(k in env for k in ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT")):
        try:
            return max(1, int(env["WORLD_SIZE"]))
        except ValueError:
            return 1
    return 1


def local_rank() -> int:
    """This process's index on its machine (``LOCAL_RANK``, set by ``torchrun``; else 0)."""
    try:
        return int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        return 0


def check_devices(devices: int, device: torch.device) -> None:
    """Refuse a data-parallel plan that cannot run, with an OptionError saying why.

    Parameters
    ----------
    devices : int
        ``N``, processes to train with (``N >= 2`` here).
    device : torch.device
        The fit's device: ``cpu`` (``N`` processes with the ``gloo`` backend) or
        ``cuda:i`` (rank ``r`` on ``cuda:(i + r)``, ``nccl`` backend).
    """
    if not dist.is_available():
        raise OptionError(f"devices={devices} needs torch.distributed, which this torch lacks")
    if device.type == "cuda":
        first = device.index or 0
        count = torch.cuda.device_count()
        if first + devices > count:
            raise OptionError(
                f"devices={devices} on cuda:{first} needs GPUs cuda:{first}..cuda:"
                f"{first + devices - 1}, but {count} GPU(s) are visible; use fewer devices "
                "(or device='cpu' for several CPU processes)"
            )
        if not (dist.is_nccl_available() or dist.is_gloo_available()):
            raise OptionError(f"devices={devices}: this torch has neither nccl nor gloo")
    elif device.type == "cpu":
        if not dist.is_gloo_available():
            raise OptionError(f"devices={devices} on the CPU needs the gloo backend")
    else:
        raise OptionError(f"devices={devices} runs on 'cpu' or 'cuda' devices, not {device.type!r}")


def _backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" and dist.is_nccl_available() else "gloo"


def _cpu(data: Transitions | None) -> dict[str, torch.Tensor | None] | None:
    if data is None:
        return None
    return {f.name: None if (t := getattr(data, f.name)) is None else t.cpu() for f in fields(data)}


def _transitions(
    arrays: dict[str, torch.Tensor | None] | None, device: torch.device
) -> Transitions | None:
    if arrays is None:
        return None
    return Transitions(**{k: None if v is None else v.to(device) for k, v in arrays.items()})


@dataclass(frozen=True)
class _Plan:
    """How the spawned workers run (pickled to every worker by the spawn start method)."""

    world_size: int
    backend: str
    init_method: str  # file:// rendezvous in the parent's temporary folder
    device_type: str  # "cpu" or "cuda"
    first_index: int  # rank r runs on cuda:(first_index + r)
    threads: int  # torch intra-op threads per worker (CPU)
    folder: str  # the payload, rank 0's result, a failing worker's traceback


def train_spawned(
    problem: Problem,
    options: TrainOptions,
    module_kwargs: dict[str, Any],
    devices: int,
    callback: Callback | None = None,
) -> TrainResult:
    """:func:`~nwb_facrnn.model.training.train`, data-parallel over ``devices`` new processes.

    Parameters
    ----------
    problem, options
        As for ``train``.  ``problem.module`` (all restarts, initialised) is trained in
        the workers and its parameters are replaced by the trained ones, as ``train``
        does in place.  ``problem.data.prev.device`` is the fit's device: CPU, or
        ``cuda:i`` (rank ``r`` then trains on ``cuda:(i + r)``).  Rank 0 shows the
        progress bar (``options.progress``).
    module_kwargs : dict
        ``LowRankRNNVAE(**module_kwargs)`` rebuilds the module's architecture in a worker.
    devices : int
        ``N >= 2`` worker processes.
    callback : callable, optional
        Called in this process as ``callback(epoch, terms)`` with every epoch's (5, R)
        float32 terms while the workers train; an exception it raises stops and
        reaps the workers and propagates.

    Returns
    -------
    TrainResult
        Rank 0's result (every rank's is the same); ``rank_divergence`` tells how far
        the ranks' final parameters drifted apart (0.0 expected).

    Raises
    ------
    OptionError
        A plan :func:`check_devices` refuses.
    WorkerError
        A worker raised or died; the message names the rank whose failure came
        first and carries its traceback.  No worker process is left running.
    """
    module, data = problem.module, problem.data
    device = data.prev.device
    check_devices(devices, device)
    n_copies = module.n_copies
    settings = {  # small and plain: pickled to the workers by the spawn start method
        "module_kwargs": dict(module_kwargs),
        "objective": problem.objective,
        "options": options,
    }
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="facrnn-ddp-") as folder:
        # the tensors go through a file that every worker memory-maps (weights_only): no
        # copy per worker on the CPU, and no /dev/shm (small in containers) as tensors
        # pickled to a child would use
        torch.save(
            {
                "state": {k: v.detach().cpu() for k, v in module.state_dict().items()},
                "data": _cpu(data),
                "validation": _cpu(problem.validation),
            },
            Path(folder, "payload.pt"),
        )
        plan = _Plan(
            world_size=devices,
            backend=_backend(device),
            init_method=Path(folder, "rendezvous").as_uri(),
            device_type=device.type,
            first_index=device.index or 0,
            threads=max(1, torch.get_num_threads() // devices),
            folder=folder,
        )
        reader, writer = ctx.Pipe(duplex=False) if callback is not None else (None, None)
        procs = mp.start_processes(
            _worker,
            args=(plan, settings, writer),
            nprocs=devices,
            join=False,
            start_method="spawn",
        )
        try:
            done = False
            while not done:
                done = procs.join(timeout=0.05, grace_period=GRACE_PERIOD_S)
                _relay(reader, n_copies, callback)
            _relay(reader, n_copies, callback)
        except (mp.ProcessRaisedException, mp.ProcessExitedException) as err:
            raise _worker_error(err, plan, procs.processes) from None
        finally:
            _reap(procs.processes)
            for end in (reader, writer):
                if end is not None:
                    end.close()
        out = Path(folder, "result.pt")
        if not out.exists():
            raise WorkerError(0, devices, "the worker ended without writing its result")
        result = torch.load(out, map_location="cpu", weights_only=True)
    with torch.no_grad():
        for k, v in module.state_dict().items():
            v.copy_(result["state"][k].to(v.device))
    val = result["val_history"]
    return TrainResult(
        history=result["history"].numpy(),
        val_history=None if val is None else val.numpy(),
        final=result["final"].numpy(),
        n_epochs=int(result["n_epochs"]),
        stopped_early=bool(result["stopped_early"]),
        rank_divergence=float(result["rank_divergence"]),
        n_steps=int(result["n_steps"]),
        samples_seen=int(result["samples_seen"]),
        train_time=float(result["train_time"]),
        steps_per_row=int(result["steps_per_row"]),
    )


def _relay(reader: Connection | None, n_copies: int, callback: Callback | None) -> None:
    """Pass the epochs rank 0 reported so far to ``callback`` (raw float64, no pickle)."""
    if reader is None or callback is None:
        return
    while reader.poll():
        try:
            msg = np.frombuffer(reader.recv_bytes(), dtype=np.float64)
        except EOFError:
            return
        callback(int(msg[0]), msg[1:].reshape(5, n_copies).astype(np.float32))


def _reap(processes: Sequence[Any]) -> None:
    """Stop every worker still alive (SIGTERM, then SIGKILL) and wait for it."""
    for p in processes:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + 10.0
    for p in processes:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()


def _worker_error(
    err: mp.ProcessRaisedException | mp.ProcessExitedException,
    plan: _Plan,
    processes: Sequence[Any],
) -> WorkerError:
    """The first failure among the workers' error files (a peer's failure makes the others
    fail in their next collective, later), else how the reported worker ended."""
    reports = []
    for rank in range(plan.world_size):
        path = Path(plan.folder, f"error-rank{rank}.txt")
        if path.exists():
            stamp, _, details = path.read_text().partition("\n")
            reports.append((float(stamp), rank, details))
    codes = ", ".join(f"rank {r}: {p.exitcode}" for r, p in enumerate(processes))
    if reports:
        _, rank, details = min(reports)
    else:
        rank, details = err.error_index, str(err).strip()
    return WorkerError(rank, plan.world_size, details, codes)


def _worker(rank: int, plan: _Plan, settings: dict[str, Any], writer: Connection | None) -> None:
    """One spawned training process (entry point of ``torch.multiprocessing``).

    Any exception is written, as text with a time stamp, to ``error-rank{rank}.txt`` in
    ``plan.folder`` and the process exits with status 1; the process group is destroyed
    in every case.
    """
    try:
        if plan.device_type == "cuda":
            device = torch.device("cuda", plan.first_index + rank)
            torch.cuda.set_device(device)
        else:
            device = torch.device("cpu")
        torch.set_num_threads(plan.threads)
        dist.init_process_group(
            plan.backend, init_method=plan.init_method, rank=rank, world_size=plan.world_size
        )
        payload = torch.load(
            Path(plan.folder, "payload.pt"), map_location="cpu", weights_only=True, mmap=True
        )
        module = LowRankRNNVAE(**settings["module_kwargs"]).to(device)
        module.load_state_dict(payload["state"])
        shard = ProcessShard.current()

        def report(epoch: int, terms: np.ndarray) -> None:
            msg = np.concatenate([[float(epoch)], np.asarray(terms, np.float64).ravel()])
            writer.send_bytes(msg.tobytes())

        problem = Problem(
            module,
            settings["objective"],
            _transitions(payload["data"], device),
            _transitions(payload["validation"], device),
        )
        result = train(
            problem,
            _on_rank(settings["options"], rank),
            callback=report if writer is not None and rank == 0 else None,
            shard=shard,
        )
        divergence = shard.divergence(module)
        if rank == 0:
            _save_result(module, result, divergence, Path(plan.folder))
    except Exception:
        # the traceback as text, time-stamped so that the parent reports the first failure
        # (no pickle: the parent reads this file as text)
        text = f"{time.time()!r}\n{traceback.format_exc()}"
        write_file(Path(plan.folder, f"error-rank{rank}.txt"), text)
        sys.exit(1)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    # Done, and the result is on disk. End the process here: the interpreter's own teardown
    # sometimes aborts in the CPU collective backend's threads ("terminate called without an
    # active exception", SIGABRT), which would turn a finished fit into a failed one.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _save_result(module: torch.nn.Module, result: TrainResult, divergence: float, folder: Path):
    """Rank 0's result as a plain dict of tensors and numbers (read with ``weights_only``)."""
    out = {
        "state": {k: v.detach().cpu() for k, v in module.state_dict().items()},
        "history": torch.from_numpy(np.ascontiguousarray(result.history)),
        "val_history": (
            None
            if result.val_history is None
            else torch.from_numpy(np.ascontiguousarray(result.val_history))
        ),
        "final": torch.from_numpy(np.ascontiguousarray(result.final)),
        "n_epochs": int(result.n_epochs),
        "stopped_early": bool(result.stopped_early),
        "rank_divergence": float(divergence),
        "n_steps": int(result.n_steps),
        "samples_seen": int(result.samples_seen),
        "train_time": float(result.train_time),
        "steps_per_row": int(result.steps_per_row),
    }
    write_file(folder / "result.pt", lambda tmp: torch.save(out, tmp))


def _on_rank(options: TrainOptions, rank: int) -> TrainOptions:
    """``options`` as rank ``rank`` trains with them: only rank 0 shows a progress bar."""
    return dataclasses.replace(options, progress=options.progress and rank == 0)


def train_in_group(
    problem: Problem, options: TrainOptions, callback: Callback | None = None
) -> TrainResult:
    """:func:`~nwb_facrnn.model.training.train`, data-parallel over the launched processes.

    For processes started by ``torchrun`` (or any launcher that initialises the
    default process group or sets its ``env://`` variables): every process calls
    this with the same ``problem`` (data and initialised module).  The default
    group is used if initialised; else it is initialised from the environment
    (``nccl`` for a CUDA ``data``, ``gloo`` on the CPU) and destroyed on return.
    Rank 0's starting parameters are broadcast to all, the data are checked to
    be the same on every process, and every process returns the same result
    (its module trained in place).  ``callback`` is called on every process
    with the same terms; rank 0 shows the progress bar.

    Raises
    ------
    OptionError
        The processes hold different data (on every process), or a CPU fit in a
        group whose backend cannot reduce CPU tensors.
    """
    device = problem.data.prev.device
    created = False
    if not dist.is_initialized():
        dist.init_process_group(_backend(device), init_method="env://")
        created = True
    try:
        if device.type == "cpu" and "gloo" not in str(dist.get_backend()):
            raise OptionError(
                f"a CPU fit in a {dist.get_backend()!r} process group: the processes cannot "
                "reduce CPU tensors; initialise the group with backend 'gloo' (or "
                "'cpu:gloo,cuda:nccl'), or fit on CUDA"
            )
        shard = ProcessShard.current()
        shard.check_same_data(problem.data)
        shard.broadcast_module(problem.module)
        result = train(problem, _on_rank(options, shard.rank), callback=callback, shard=shard)
        result.rank_divergence = shard.divergence(problem.module)
        return result
    finally:
        if created:
            dist.destroy_process_group()


__all__ = [
    "ProcessShard",
    "WorkerError",
    "check_devices",
    "launched_world_size",
    "local_rank",
    "split_sizes",
    "train_in_group",
    "train_spawned",
]
