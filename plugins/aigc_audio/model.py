"""WaveNet and its fast incremental form.

WaveNet (van den Oord et al., 2016): a stack of causal dilated convolutions
(kernel 2) with gated activations ``tanh(.) * sigmoid(.)``, residual and skip
connections, and a 256-way softmax over 8-bit mu-law samples; optionally
conditioned on a global label (a class, or a MIDI note) added inside every gate.

``WaveNet.forward`` runs the whole causal stack over a sequence (training, and
the naive generator that recomputes the receptive field for every sample).
``ConvQueues`` is Fast WaveNet (Paine et al., 2016): each layer keeps a queue
of its last ``dilation`` inputs, so one new sample costs one matrix-vector
product per layer and never recomputes the receptive field.

Tensors are channels-last, ``[batch, time, channels]``: a kernel-2 dilated
convolution is then one matmul over the two taps ``[x(t - d), x(t)]``, which
on a CPU is several times faster than ``conv1d`` with dilation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

MU = 255  # 8-bit mu-law: 256 classes


def mu_law_encode(audio: torch.Tensor, mu: int = MU) -> torch.Tensor:
    """Waveform in [-1, 1] -> int64 classes in [0, mu] (silence is class 128)."""
    audio = audio.clamp(-1, 1)
    companded = torch.sign(audio) * torch.log1p(mu * audio.abs()) / math.log1p(mu)
    return ((companded + 1) / 2 * mu + 0.5).floor().long().clamp(0, mu)


def mu_law_decode(classes: torch.Tensor, mu: int = MU) -> torch.Tensor:
    """Classes in [0, mu] -> waveform in [-1, 1] (the inverse of ``mu_law_encode``)."""
    companded = 2 * classes.float() / mu - 1
    return torch.sign(companded) * torch.expm1(companded.abs() * math.log1p(mu)) / mu


SILENCE = int(mu_law_encode(torch.zeros(())))
# An input-only class meaning "before the clip": the context generation starts
# from, so the model learns that a clip begins right after it (after mere
# silence, a note may start at any moment, so sampling from silence rarely leaves it).
START = MU + 1


def default_dilations() -> list[int]:
    return [2**i for i in range(10)] * 2  # two stacks of 1..512: receptive field 2047


@dataclass
class WaveNetConfig:
    sample_rate: int = 16000
    classes: int = MU + 1
    residual: int = 64  # channels of the residual stream
    gate: int = 64  # channels of each gate half (tanh and sigmoid)
    skip: int = 128  # channels of the skip sum and the output head
    dilations: list[int] = field(default_factory=default_dilations)
    labels: list[str] = field(default_factory=list)  # global-conditioning label names; [] = none
    label_dim: int = 16

    @property
    def receptive_field(self) -> int:
        """How many input samples one output sample depends on."""
        return sum(self.dilations) + 1


class ResidualLayer(nn.Module):
    """Dilated causal conv (kernel 2) -> gate -> 1x1 to the residual and skip streams."""

    def __init__(self, cfg: WaveNetConfig, dilation: int) -> None:
        super().__init__()
        self.dilation = dilation
        self.gate_channels = cfg.gate
        self.residual_channels = cfg.residual
        # Taps [x(t - d), x(t)] concatenated: one matmul is the whole convolution.
        self.conv = nn.Linear(2 * cfg.residual, 2 * cfg.gate)
        self.cond = nn.Linear(cfg.label_dim, 2 * cfg.gate, bias=False) if cfg.labels else None
        # No bias: a residual bias would only shift later biases, and the skip
        # biases of all layers sum to WaveNet.skip_bias.
        self.out = nn.Linear(cfg.gate, cfg.residual + cfg.skip, bias=False)

    def forward(
        self, x: torch.Tensor, label: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        past = F.pad(x, (0, 0, self.dilation, 0))[:, : x.shape[1]]  # x(t - d), zeros before 0
        z = self.conv(torch.cat([past, x], dim=-1))
        if self.cond is not None:
            z = z + self.cond(label).unsqueeze(1)
        gated = torch.tanh(z[..., : self.gate_channels]) * torch.sigmoid(
            z[..., self.gate_channels :]
        )
        out = self.out(gated)
        return x + out[..., : self.residual_channels], out[..., self.residual_channels :]


class WaveNet(nn.Module):
    """Predicts, at every time t, the distribution of mu-law sample t + 1."""

    def __init__(self, cfg: WaveNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # A 1x1 conv of the one-hot input; one more input class than outputs: START.
        self.embed = nn.Embedding(cfg.classes + 1, cfg.residual)
        self.label_embed = nn.Embedding(len(cfg.labels), cfg.label_dim) if cfg.labels else None
        if cfg.labels:  # how often each label was trained on: drawn from when none is asked for
            self.register_buffer("label_counts", torch.zeros(len(cfg.labels)))
        self.layers = nn.ModuleList(ResidualLayer(cfg, d) for d in cfg.dilations)
        self.skip_bias = nn.Parameter(torch.zeros(cfg.skip))
        self.head1 = nn.Linear(cfg.skip, cfg.skip)
        self.head2 = nn.Linear(cfg.skip, cfg.classes)

    def label_vector(self, labels: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        if self.label_embed is None:
            if labels is not None:
                raise ValueError("this WaveNet is unconditional: pass labels=None")
            return None
        if labels is None:
            raise ValueError(f"this WaveNet is conditioned on one of {len(self.cfg.labels)} labels")
        return self.label_embed(labels.reshape(batch))

    def head(self, skip: torch.Tensor) -> torch.Tensor:
        return self.head2(F.relu(self.head1(F.relu(skip + self.skip_bias))))

    def forward(
        self,
        x: torch.Tensor,
        labels: torch.Tensor | None = None,
        layer_inputs: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Logits ``[B, T, classes]`` from classes ``x`` ``[B, T]`` (``START`` allowed).

        When ``layer_inputs`` is a list, each layer's input ``[B, T, residual]``
        is appended to it (how ``ConvQueues`` is primed from a prefix).
        """
        label = self.label_vector(labels, x.shape[0])
        h = self.embed(x)
        skip = 0
        for layer in self.layers:
            if layer_inputs is not None:
                layer_inputs.append(h)
            h, s = layer(h, label)
            skip = skip + s
        return self.head(skip)


class QueuePlan:
    """What every ``ConvQueues`` of one model shares, computed once per model.

    The folded weights (see ``ConvQueues``), each layer's gate bias for every
    label, and the steady state: the queues after ``receptive_field - 1``
    inputs of one class (``START`` before a clip), for every label. Layer l
    reads its input at its last ``d`` times, and each of those depends on the
    inputs of the layers before it only as far back as the sum of their
    dilations: all inside that constant prefix, past any zero padding. So each
    queue holds a single row, found with the step's own arithmetic with both
    taps on the same input, layer by layer.

    With a plan, starting a generation is row gathers and copies: no matmul,
    where a forward over the prefix runs thousands of rows through every layer
    and each operator enters a parallel region. On a busy machine, waking
    threads for such small work costs far more than the work.
    """

    @torch.no_grad()
    def __init__(self, model: WaveNet) -> None:
        cfg = model.cfg
        R, G = cfg.residual, cfg.gate
        param = model.embed.weight
        halve_sigmoid = torch.cat([param.new_ones(G), param.new_full((G,), 0.5)])
        self.embed = param.detach()
        labels = model.label_embed.weight if model.label_embed is not None else None
        self.w_in, self.bias, self.w_res = [], [], []
        for layer in model.layers:
            w = layer.conv.weight.t() * halve_sigmoid  # [2R, 2G]: rows ..R tap t - d, R.. tap t
            self.w_in.append(torch.cat([w[R:], w[:R]], 1).contiguous())  # [R, 4G]: now | past
            bias = layer.conv.bias.unsqueeze(0)  # [1, 2G], or [labels, 2G] below
            if layer.cond is not None:
                bias = bias + layer.cond(labels)
            self.bias.append((bias * halve_sigmoid).contiguous())
            self.w_res.append((0.5 * layer.out.weight[:R].t()).contiguous())  # [G, R]
        self.w_skip = torch.cat([0.5 * layer.out.weight[R:].t() for layer in model.layers])
        self._steady = {START: self._steady_rows(START)}

    @staticmethod
    def rows(table: torch.Tensor, labels: torch.Tensor | None, batch: int) -> torch.Tensor:
        """A per-label table's row of each clip: [batch, 2G]."""
        if labels is None or table.shape[0] == 1:
            return table[:1].expand(batch, -1).contiguous()
        return table.index_select(0, labels)

    def steady_rows(self, x: int) -> list[torch.Tensor]:
        """Per layer, what each queue slot holds after input ``x`` throughout: [labels, 2G]."""
        return self._steady[x] if x in self._steady else self._steady_rows(x)

    @torch.no_grad()
    def _steady_rows(self, x: int) -> list[torch.Tensor]:
        G = self.w_res[0].shape[0]
        h = self.embed[x].unsqueeze(0)
        out = []
        for w_in, bias, w_res in zip(self.w_in, self.bias, self.w_res, strict=True):
            past = h @ w_in[:, 2 * G :] + bias  # this input's contribution, queued
            out.append(past)
            z = torch.tanh(h @ w_in[:, : 2 * G] + past)
            h = h + (z[:, :G] * (z[:, G:] + 1)) @ w_res  # 2 * tanh(.) * sigmoid(.)
        return out


class ConvQueues:
    """Incremental WaveNet: one sample per ``step``, O(layers) work, no recomputation.

    Layer ``l`` (dilation ``d``) needs its input from ``d`` steps ago. Rather
    than that input, its queue keeps what the input contributes to the gate:
    ``x(s) @ W_past + bias`` ``[B, 2 * gate]``, computed at time ``s`` in the
    same matmul as ``x(s) @ W_now``, so each layer costs one matmul for the
    convolution and one for the residual. Slot ``t % d`` holds time ``t - d``
    until step ``t`` reads it and writes time ``t`` in its place; the bias
    alone is the contribution of the zero padding before time 0. The label's
    contribution is folded into each bias once per generation.

    Two exact rewrites save operations: ``sigmoid(b) = (1 + tanh(b / 2)) / 2``
    (the sigmoid half of the weights is halved, so one ``tanh`` covers the
    gate), and the resulting factor 2 is folded into the residual and skip
    weights. Every view is made once, so a step issues six tensor operations
    per layer.

    ``prefix`` [B, P] primes the queues with a full forward over it. ``steady``
    (a class, e.g. ``START``) primes them as if that class had been every input
    for ``receptive_field - 1`` steps: the same state, read from ``plan`` (a
    ``QueuePlan`` of the model, made here when not given).
    """

    @torch.no_grad()
    def __init__(
        self,
        model: WaveNet,
        batch: int,
        labels: torch.Tensor | None = None,
        prefix: torch.Tensor | None = None,
        steady: int | None = None,
        plan: QueuePlan | None = None,
    ) -> None:
        if prefix is not None and steady is not None:
            raise ValueError("give prefix or steady, not both")
        plan = plan if plan is not None else QueuePlan(model)
        G = model.cfg.gate
        self.model, self.batch, self.t = model, batch, 0
        self.dilations = list(model.cfg.dilations)
        model.label_vector(labels, batch)  # checks labels against the model
        rows = labels.reshape(batch) if labels is not None else None
        self.embed, self.w_in, self.w_res, self.w_skip = (
            plan.embed,
            plan.w_in,
            plan.w_res,
            plan.w_skip,
        )
        self.bias = [plan.rows(table, rows, batch) for table in plan.bias]
        if steady is None:
            fill = self.bias  # the zero padding before time 0 contributes the bias alone
        else:
            fill = [plan.rows(table, rows, batch) for table in plan.steady_rows(steady)]
            self.t = model.cfg.receptive_field - 1
        self.queues = [
            f.unsqueeze(1).repeat(1, d, 1) for f, d in zip(fill, self.dilations, strict=True)
        ]
        # Buffers and their views, made once.
        param = self.embed
        self.both = param.new_empty(batch, 4 * G)
        self.z, self.future = self.both[:, : 2 * G], self.both[:, 2 * G :]
        self.tanh_a, self.tanh_b = self.both[:, :G], self.both[:, G : 2 * G]
        self.gates = param.new_zeros(batch, len(self.dilations), G)
        self.gate_views = [self.gates.select(1, i) for i in range(len(self.dilations))]
        self.slots = [[q.select(1, s) for s in range(q.shape[1])] for q in self.queues]
        if prefix is not None and prefix.shape[1] > 0:
            self._prime(prefix, labels)

    @torch.no_grad()
    def _prime(self, prefix: torch.Tensor, labels: torch.Tensor | None) -> None:
        """Fills the queues by a full forward over ``prefix`` [B, P]: times 0..P-1 consumed."""
        inputs: list[torch.Tensor] = []
        self.model(prefix, labels, layer_inputs=inputs)
        P, G = prefix.shape[1], self.model.cfg.gate
        for queue, d, h, w, b in zip(
            self.queues, self.dilations, inputs, self.w_in, self.bias, strict=True
        ):
            recent = F.pad(h, (0, 0, max(0, d - P), 0))[:, -d:]  # times P-d .. P-1 (0 before 0)
            future = recent @ w[:, 2 * G :] + b.unsqueeze(1)  # past-tap contributions
            queue.copy_(future.roll((P - d) % d, dims=1))  # time s lives in slot s % d
        self.t = P

    @torch.no_grad()
    def step(self, x: torch.Tensor) -> torch.Tensor:
        """Consumes classes ``x`` ``[B]`` at time t; returns logits ``[B, classes]`` for t + 1."""
        h = self.embed.index_select(0, x)
        both, z, future, a, b = self.both, self.z, self.future, self.tanh_a, self.tanh_b
        t = self.t
        for i, d in enumerate(self.dilations):
            slot = self.slots[i][t % d]
            torch.mm(h, self.w_in[i], out=both)
            z.add_(slot)  # + the past tap's contribution, queued d steps ago
            torch.add(future, self.bias[i], out=slot)  # this input's, for step t + d
            z.tanh_()
            torch.addcmul(a, a, b, out=self.gate_views[i])  # 2 * tanh(.) * sigmoid(.)
            h = torch.addmm(h, self.gate_views[i], self.w_res[i])
        self.t = t + 1
        return self.model.head(self.gates.view(self.batch, -1) @ self.w_skip)


class NumpyConvQueues(ConvQueues):
    """``ConvQueues`` stepping through NumPy on the CPU: the same arithmetic, same buffers.

    A step is ~130 tiny operations, so its cost is per-call overhead, which is
    a few times smaller for a NumPy ufunc than for a torch operator. The
    arrays are views of the parent's tensors (shared memory), so priming and
    state are the parent's.
    """

    def __init__(self, model: WaveNet, *args, **kwargs) -> None:
        if model.embed.weight.device.type != "cpu":
            raise ValueError("NumpyConvQueues needs a model on the CPU; use ConvQueues")
        super().__init__(model, *args, **kwargs)
        numpy = lambda tensors: [t.detach().numpy() for t in tensors]  # noqa: E731
        self.np_embed, self.np_w_skip = numpy([self.embed, self.w_skip])
        self.np_w_in, self.np_bias, self.np_w_res = map(numpy, (self.w_in, self.bias, self.w_res))
        self.np_both, self.np_z, self.np_future, self.np_a, self.np_b = numpy(
            [self.both, self.z, self.future, self.tanh_a, self.tanh_b]
        )
        self.np_gates, *self.np_gate_views = numpy([self.gates, *self.gate_views])
        self.np_slots = [numpy(layer) for layer in self.slots]
        head = model.head1, model.head2
        self.np_head = numpy([model.skip_bias, head[0].weight.t(), head[0].bias])
        self.np_head += numpy([head[1].weight.t(), head[1].bias])

    def step(self, x: torch.Tensor) -> torch.Tensor:
        import numpy as np

        h = self.np_embed[x.numpy()]
        both, z, future, a, b = self.np_both, self.np_z, self.np_future, self.np_a, self.np_b
        t = self.t
        for i, d in enumerate(self.dilations):
            slot = self.np_slots[i][t % d]
            np.dot(h, self.np_w_in[i], out=both)
            np.add(z, slot, out=z)
            np.add(future, self.np_bias[i], out=slot)
            np.tanh(z, out=z)
            np.add(b, 1, out=b)
            np.multiply(a, b, out=self.np_gate_views[i])
            h = h + self.np_gate_views[i] @ self.np_w_res[i]
        self.t = t + 1
        skip_bias, w1, b1, w2, b2 = self.np_head
        skip = self.np_gates.reshape(self.batch, -1) @ self.np_w_skip + skip_bias
        hidden = np.maximum(np.maximum(skip, 0) @ w1 + b1, 0)
        return torch.from_numpy(hidden @ w2 + b2)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
