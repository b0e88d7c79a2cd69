"""Lean autograd pieces for CPU training: same functions as PyTorch's, less memory and time.

* :class:`Dropout`: draws the mask with ``torch.rand`` (about twice as fast as
  the ``bernoulli_`` that ``nn.Dropout`` uses on CPU) and keeps it for backward
  as one byte per element instead of a float mask.
* :func:`mlp`: ``fc2(gelu(fc1(x)))`` that saves only its input and recomputes
  the hidden activation in backward (one extra ``fc1`` matmul), instead of
  keeping two ``ff_mult * D``-wide activations alive until backward: in a
  Transformer block these are the largest tensors of the step.

Both fall back to the plain PyTorch ops under autocast (mixed precision on
CUDA), where the standard kernels are the fast ones.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class _MaskDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, p):
        keep = torch.rand(x.shape, device=x.device) >= p
        ctx.save_for_backward(keep)
        ctx.scale = 1.0 / (1.0 - p)
        return x * keep * ctx.scale

    @staticmethod
    def backward(ctx, grad):
        (keep,) = ctx.saved_tensors
        return grad * keep * ctx.scale, None


class Dropout(nn.Module):
    """Inverted dropout, like ``nn.Dropout``, with a bool mask drawn by ``torch.rand``.

    Args:
        p: probability of zeroing an element.

    Shapes:
        - input: any; output: same.
    """

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if torch.is_autocast_enabled(x.device.type) or not x.requires_grad:
            return F.dropout(x, self.p, True)
        return _MaskDropout.apply(x, self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class _RecomputedMLP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2):
        hidden = F.gelu(F.linear(x, w1, b1))
        ctx.save_for_backward(x, w1, b1, w2)
        return F.linear(hidden, w2, b2)

    @staticmethod
    def backward(ctx, grad):
        x, w1, b1, w2 = ctx.saved_tensors
        pre = F.linear(x, w1, b1)  # recomputed: [..., F]
        hidden = F.gelu(pre)
        g2 = grad.reshape(-1, grad.size(-1))
        dw2 = g2.t() @ hidden.reshape(-1, hidden.size(-1))
        db2 = g2.sum(0)
        dpre = torch.ops.aten.gelu_backward(grad @ w2, pre)
        del hidden, pre
        d2 = dpre.reshape(-1, dpre.size(-1))
        dw1 = d2.t() @ x.reshape(-1, x.size(-1))
        db1 = d2.sum(0)
        dx = dpre @ w1
        return dx, dw1, db1, dw2, db2


def mlp(x: torch.Tensor, fc1: nn.Linear, fc2: nn.Linear) -> torch.Tensor:
    """``fc2(gelu(fc1(x)))``, recomputing the hidden layer in backward.

    Args:
        x: ``[..., D_in]``; fc1: ``D_in -> F``; fc2: ``F -> D_out`` (both with bias).

    Returns:
        ``[..., D_out]``.
    """
    if (torch.is_autocast_enabled(x.device.type) or not torch.is_grad_enabled()
            or not (x.requires_grad or fc1.weight.requires_grad)):
        return fc2(F.gelu(fc1(x)))
    return _RecomputedMLP.apply(x, fc1.weight, fc1.bias, fc2.weight, fc2.bias)
