"""Many copies of one small network trained at once: parameters stacked on a leading model axis.

The real-data tier trains every (learning rate, seed) pair of a rule as one ensemble of M
independent models. All parameters of a model live in one row of a ``(M, P)`` tensor ``theta``;
a :class:`Layout` names the slices (views, no copies) that the task's forward pass reads as
``(M, *shape)`` tensors. Models never mix: the forward pass uses batched products (``bmm``,
grouped convolutions) and an update rule is elementwise, so training the ensemble is exactly
training each model alone, at the cost of one set of kernel launches instead of M. On these
network sizes that is 5-10x faster than looping over models on a CPU.

The batched layers here are the only building blocks the built-in tasks need; a user's own
``nn.Module`` goes through :func:`torch.func.vmap` instead (:mod:`fitness.training.real_tasks`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F


@dataclass(frozen=True)
class Layout:
    """Names and shapes of one model's parameters, in the order they sit in a row of theta."""

    shapes: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def size(self) -> int:
        return sum(math.prod(shape) for _, shape in self.shapes)

    def views(self, theta: Tensor) -> dict[str, Tensor]:
        """``theta`` (M, P) -> {name: (M, *shape) view}."""
        out, start = {}, 0
        m = theta.shape[0]
        for name, shape in self.shapes:
            n = math.prod(shape)
            out[name] = theta[:, start:start + n].view(m, *shape)
            start += n
        return out

    def flatten(self, parts: dict[str, Tensor]) -> Tensor:
        """One model's parameters {name: tensor of its shape} -> a (P,) row."""
        return torch.cat([parts[name].reshape(-1) for name, _ in self.shapes])


def he_init(layout: Layout, seed: int, std: dict[str, float] | None = None) -> Tensor:
    """A (P,) row drawn from ``seed``: He-normal matrices (fan-in: the first dimension of a 2-D
    weight (in, out), the trailing ones of a conv weight (out, in, k, k)), zeros for vectors
    (biases, LayerNorm shifts), ones for names ending in ``gain`` (LayerNorm gains); ``std``
    overrides the standard deviation of a named matrix (embeddings)."""
    gen = torch.Generator().manual_seed(int(seed))
    parts = {}
    for name, shape in layout.shapes:
        if name.endswith("gain"):
            parts[name] = torch.ones(shape)
        elif len(shape) == 1:
            parts[name] = torch.zeros(shape)
        else:
            fan = shape[0] if len(shape) == 2 else math.prod(shape[1:])
            scale = (std or {}).get(name, math.sqrt(2.0 / fan))
            parts[name] = torch.randn(shape, generator=gen) * scale
    return layout.flatten(parts)


def linear(h: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Per-model ``h @ W + b``: h (M, ..., i), W (M, i, o), b (M, o) -> (M, ..., o)."""
    m, i = h.shape[0], h.shape[-1]
    flat = h.reshape(m, -1, i)
    out = torch.bmm(flat, weight) if bias is None else torch.baddbmm(bias.unsqueeze(1), flat,
                                                                        weight)
    return out.reshape(*h.shape[:-1], weight.shape[-1])


def layer_norm(h: Tensor, gain: Tensor, shift: Tensor, eps: float = 1e-5) -> Tensor:
    """LayerNorm over the last dimension with per-model gain and shift (M, d)."""
    shape = (h.shape[0],) + (1,) * (h.dim() - 2) + (h.shape[-1],)
    return F.layer_norm(h, h.shape[-1:], eps=eps) * gain.view(shape) + shift.view(shape)


def conv2d(x: Tensor, weight: Tensor, bias: Tensor, padding: int = 1) -> Tensor:
    """Per-model 2-D convolution as one grouped convolution.

    x (M, B, C, H, W), weight (M, O, C, k, k), bias (M, O) -> (M, B, O, H', W').
    """
    m, b, c, h, w = x.shape
    o = weight.shape[1]
    folded = x.permute(1, 0, 2, 3, 4).reshape(b, m * c, h, w)
    out = F.conv2d(folded, weight.reshape(m * o, c, *weight.shape[-2:]), bias.reshape(m * o),
                   padding=padding, groups=m)
    return out.reshape(b, m, o, *out.shape[-2:]).permute(1, 0, 2, 3, 4)


def losses(kind: str, output: Tensor, target: Tensor) -> Tensor:
    """Mean loss per model: output (M, B, ...) against target (M, B, ...) -> (M,), each model's
    loss exactly :func:`fitness.training.torch_tasks.task_loss` of its own batch."""
    from torch.func import vmap

    from fitness.training.torch_tasks import task_loss

    return vmap(lambda o, t: task_loss(kind, o, t))(output, target)


def module_ensemble(build: Callable[[int], nn.Module]) -> tuple[Layout, Callable[[int], Tensor],
                                                               Callable]:
    """Batch any ``nn.Module`` over models: (layout, seeded init, forward) for an ensemble.

    ``build(seed)`` returns a fresh module whose initial weights come from that seed. The forward
    pass runs the module functionally on each model's parameters with ``torch.func.vmap``; a
    module that vmap cannot batch (``nn.GRU`` has no batching rule) runs model by model instead,
    which gives the same numbers more slowly. Modules with running statistics (BatchNorm) are
    refused: their buffers would be shared between the models.
    """
    from torch.func import functional_call, vmap

    template = build(0)
    named = [(n, p) for n, p in template.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the model has no trainable parameters")
    if any(b.dtype.is_floating_point for _, b in template.named_buffers()):
        raise ValueError("models with running statistics (BatchNorm) cannot be trained as a "
                         "batch of copies; use LayerNorm or GroupNorm")
    layout = Layout(tuple((n, tuple(p.shape)) for n, p in named))
    buffers = dict(template.named_buffers())

    def init(seed: int) -> Tensor:
        params = dict(build(seed).named_parameters())
        return layout.flatten({n: params[n].detach().float() for n, _ in layout.shapes})

    def one(params: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(template, {**params, **buffers}, (x,))

    batched = vmap(one)
    mode = {"vmap": True}

    def forward(p: dict[str, Tensor], x: Tensor) -> Tensor:
        if mode["vmap"]:
            try:
                return batched(p, x)
            except RuntimeError as err:  # no batching rule for an op of this module
                if "atching rule" not in str(err) and "vmap" not in str(err):
                    raise
                mode["vmap"] = False
        return torch.stack([one({n: v[i] for n, v in p.items()}, x[i])
                            for i in range(x.shape[0])])

    return layout, init, forward


__all__ = ["Layout", "conv2d", "he_init", "layer_norm", "linear", "losses", "module_ensemble"]
