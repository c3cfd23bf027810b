"""The FacRNN network: a low-rank RNN written as a one-step VAE.

``z_t = B phi(x_{t-1}) + b`` (encoder mean, also the RNN's latent update) and
``x_t = f(A z_t + a + u_t)`` (decoder), ``W = A B``.  The encoder and decoder
may each be a one-hidden-layer MLP instead (FacRNN-MLP).

The network works on standardized activity ``(x - offset) / scale`` (per unit; the
buffers ``offset`` and ``scale``, 0 and 1 when the fit does not standardize), and its
``encode`` and ``decode`` take and return activity in the data's own units:
``phi`` reads the standardized previous activity, and a Gaussian mean is
``offset + scale * (A z_t + a) + u_t`` (with an output activation ``f``,
``scale * f(A z_t + a + u_t / scale)``, which keeps it non-negative).  Poisson
rates are counts per bin, so only the encoder's input is standardized.

Every parameter has a leading axis of ``R`` independent copies so that the
restarts of one fit train together in a single batched pass.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

NONLINEARITIES = {"tanh": torch.tanh, "identity": lambda x: x}
OUTPUT_ACTIVATIONS = {None: lambda x: x, "relu": F.relu, "softplus": F.softplus}


def batched_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x @ weight^T + bias`` for R copies.

    Parameters
    ----------
    x : torch.Tensor, shape (M, in) or (R, M, in)
    weight : torch.Tensor, shape (R, out, in)
    bias : torch.Tensor, shape (R, out)

    Returns
    -------
    torch.Tensor, shape (R, M, out)
        (Leading axes broadcast: with R = 1, ``x`` of shape (S, M, in) gives (S, M, out).)
    """
    r, n_out, n_in = weight.shape
    if x.dim() == 2:  # one (M, in) x (in, R * out) matmul for all copies, bias included
        y = torch.addmm(bias.reshape(r * n_out), x, weight.reshape(r * n_out, n_in).T)
        return y.view(x.shape[0], r, n_out).transpose(0, 1)
    if x.dim() == 3 and x.shape[0] == r:
        return torch.baddbmm(bias.unsqueeze(-2), x, weight.mT)
    return x @ weight.mT + bias.unsqueeze(-2)


def _uniform(shape: tuple[int, ...], fan_in: int, gen: torch.Generator) -> torch.Tensor:
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    return (torch.rand(shape, generator=gen) * 2.0 - 1.0) * bound


class BatchedMLP(nn.Module):
    """R copies of a one-hidden-layer MLP (ReLU hidden units)."""

    def __init__(self, n_copies: int, n_in: int, n_hidden: int, n_out: int, gen: torch.Generator):
        super().__init__()
        r = n_copies
        self.w1 = nn.Parameter(_uniform((r, n_hidden, n_in), n_in, gen))
        self.b1 = nn.Parameter(_uniform((r, n_hidden), n_in, gen))
        self.w2 = nn.Parameter(_uniform((r, n_out, n_hidden), n_hidden, gen))
        self.b2 = nn.Parameter(_uniform((r, n_out), n_hidden, gen))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return batched_linear(F.relu(batched_linear(x, self.w1, self.b1)), self.w2, self.b2)


class LowRankRNNVAE(nn.Module):
    """R independent copies of the FacRNN network.

    Parameters
    ----------
    n_copies : int
        ``R``, the number of restarts trained together.
    n_neurons : int
        ``N``.
    n_latents : int
        ``K = n_groups * group_rank``.
    observation : {"gaussian", "poisson"}
    encoder, decoder : {"linear", "mlp"}
    hidden_size : int
        Width of the MLP hidden layer.
    nonlinearity : {"tanh", "identity"}
        ``phi``.
    output_activation : {None, "relu", "softplus"}
        ``f`` applied to the Gaussian decoder's mean (Poisson rates always use softplus).
    seed : int
        Seeds the random initial weights of MLP layers.
    """

    def __init__(
        self,
        n_copies: int,
        n_neurons: int,
        n_latents: int,
        observation: str = "gaussian",
        encoder: str = "linear",
        decoder: str = "linear",
        hidden_size: int = 64,
        nonlinearity: str = "tanh",
        output_activation: str | None = None,
        seed: int = 0,
    ):
        super().__init__()
        r, n, k = n_copies, n_neurons, n_latents
        gen = torch.Generator().manual_seed(seed)
        self.observation = observation
        self.encoder_kind, self.decoder_kind = encoder, decoder
        self.phi = NONLINEARITIES[nonlinearity]
        self.out_act = OUTPUT_ACTIVATIONS[output_activation]
        if encoder == "linear":
            self.B = nn.Parameter(_uniform((r, k, n), n, gen))
            self.b = nn.Parameter(torch.zeros(r, k))
        else:
            self.enc = BatchedMLP(r, n, hidden_size, k, gen)
        if decoder == "linear":
            self.A = nn.Parameter(_uniform((r, n, k), k, gen))
            self.a = nn.Parameter(torch.zeros(r, n))
        else:
            self.dec = BatchedMLP(r, k, hidden_size, n, gen)
        self.log_std = nn.Parameter(torch.zeros(r, n)) if observation == "gaussian" else None
        self.identity_output = output_activation is None
        # per-unit standardization, the same in every copy (a leading axis like the weights)
        self.register_buffer("offset", torch.zeros(r, n))
        self.register_buffer("scale", torch.ones(r, n))

    @torch.no_grad()
    def set_standardization(self, offset: torch.Tensor, scale: torch.Tensor) -> None:
        """Standardize activity as ``(x - offset) / scale``; ``offset``, ``scale`` shape (N,)."""
        self.offset.copy_(torch.as_tensor(offset).to(self.offset).expand_as(self.offset))
        self.scale.copy_(torch.as_tensor(scale).to(self.scale).expand_as(self.scale))

    def encoder_input(self, prev: torch.Tensor) -> torch.Tensor:
        """``phi`` of the standardized previous activity: (M, N) -> (M, N)."""
        return self.phi(torch.sub(prev, self.offset[0]).div_(self.scale[0]))

    def output_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(offset, scale)``, shape (N,): a model-space Gaussian mean ``m`` is the data-unit
        mean ``offset + scale * m`` (offset 0 with an output activation; Poisson: 0, 1)."""
        if self.observation == "poisson":
            return torch.zeros_like(self.offset[0]), torch.ones_like(self.scale[0])
        offset = self.offset[0] if self.identity_output else torch.zeros_like(self.offset[0])
        return offset, self.scale[0]

    def obs_log_std(self) -> torch.Tensor:
        """Log of the Gaussian noise std in the data's units, shape (R, N)."""
        return self.log_std + torch.log(self.scale)

    @property
    def n_copies(self) -> int:
        return next(self.parameters()).shape[0]

    def encode(self, prev: torch.Tensor) -> torch.Tensor:
        """Encoder mean ``B phi(x_{t-1}) + b``: (M, N) -> (R, M, K)."""
        h = self.encoder_input(prev)
        if self.encoder_kind == "linear":
            return batched_linear(h, self.B, self.b)
        return self.enc(h)

    def decode(self, z: torch.Tensor, inputs: torch.Tensor | None) -> torch.Tensor:
        """Gaussian mean or Poisson rate of ``x_t``: (R, M, K), (M, N) -> (R, M, N).

        ``inputs`` and the result are in the data's units (see the module docstring);
        ``inputs=None`` means no external input.
        """
        drive = batched_linear(z, self.A, self.a) if self.decoder_kind == "linear" else self.dec(z)
        if self.observation == "poisson":
            return F.softplus(drive if inputs is None else drive + inputs)
        offset, scale = self.output_affine()
        if self.identity_output:
            mean = torch.addcmul(offset, scale, drive)
            return mean if inputs is None else mean + inputs
        return scale * self.out_act(drive if inputs is None else drive + inputs / scale)

    def select(self, index: int) -> dict[str, torch.Tensor]:
        """State dict of copy ``index`` only (leading axis kept, of length 1)."""
        return {k: v[index : index + 1].detach().clone() for k, v in self.state_dict().items()}
