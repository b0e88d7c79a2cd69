"""Linear vector autoregression fitted by ridge regression in closed form.

The linear baseline of the traffic literature (VAR in DCRNN, Li et al.,
ICLR 2018, Table 2; Lütkepohl, *New Introduction to Multiple Time Series
Analysis*, 2005). Every future step of every sensor is a linear function of
the whole input window of all sensors (``mode='full'``) or, for networks too
large for that, of the sensor's own window (``mode='local'``, one model per
sensor). The regression predicts the change from the last observed value, so
strong regularisation shrinks it towards persistence; the ridge strength is
chosen on the validation split from a grid. Missing targets contribute a zero
change. Fitted by :meth:`fit_closed_form` with one eigendecomposition, nothing to
train by gradient.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from ..metrics import valid_mask
from .registry import ClosedForm, ClosedFormData, register

FULL_MAX_FEATURES = 6144
RIDGE_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)  # times mean(diag(X^T X))


@register("var")
class VectorAutoregression(ClosedForm, nn.Module):
    r"""Ridge VAR on the z-scored input window.

    Args:
        num_nodes, in_channels, out_channels, input_len, horizon: data sizes.
        target_channels: index in ``x``'s channels of each target (the
            persistence term the regression corrects).
        mode: ``'full'`` (all sensors' lags), ``'local'`` (own lags only) or
            ``'auto'`` (full when ``N * T_in * C_in <= 6144``).
        ridge: fixed ridge strength relative to the mean diagonal of
            ``X^T X``; ``None`` picks the best of a grid on the validation split.

    Shapes:
        - input: ``x`` ``[B, T_in, N, C_in]``
        - output: ``[B, T_out, N, C_out]`` (z-score units of the targets)
        - buffers: ``weight`` ``[F, T_out*N*C_out]`` (full, ``F = T_in*N*C_in``)
          or ``[N, T_in*C_in, T_out*C_out]`` (local), ``bias`` likewise without ``F``.
    """

    def __init__(self, num_nodes: int, in_channels: int, out_channels: int, input_len: int, horizon: int,
                 target_channels: Optional[Sequence[int]] = (0,), mode: str = "auto",
                 ridge: Optional[float] = None):
        super().__init__()
        if target_channels is None:
            raise ValueError("var needs the targets among the input channels")
        if mode not in ("auto", "full", "local"):
            raise ValueError(f"mode = {mode!r}; expected 'auto', 'full' or 'local'")
        if mode == "auto":
            mode = "full" if num_nodes * input_len * in_channels <= FULL_MAX_FEATURES else "local"
        self.mode, self.ridge = mode, ridge
        self.sizes = (num_nodes, in_channels, out_channels, input_len, horizon)
        self.register_buffer("channels", torch.tensor(list(target_channels), dtype=torch.long), persistent=False)
        N, C, O, T, H = self.sizes
        if mode == "full":
            self.register_buffer("weight", torch.zeros(T * N * C, H * N * O))
            self.register_buffer("bias", torch.zeros(H * N * O))
        else:
            self.register_buffer("weight", torch.zeros(N, T * C, H * O))
            self.register_buffer("bias", torch.zeros(N, H * O))
        self.register_buffer("chosen_ridge", torch.zeros(()))

    def reset_parameters(self) -> None:
        self.weight.zero_()
        self.bias.zero_()

    # ------------------------------------------------------------------ design
    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, N, C]`` -> full ``[B, T*N*C]`` or local ``[N, B, T*C]``."""
        B, T, N, C = x.shape
        if self.mode == "full":
            return x.reshape(B, T * N * C)
        return x.permute(2, 0, 1, 3).reshape(N, B, T * C)

    def _targets(self, x: torch.Tensor, y: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Change from the last value ``[B, H, N, O]`` (0 where missing) in the regression's layout."""
        B, H, N, O = y.shape
        r = torch.where(valid, y - x[:, -1:].index_select(-1, self.channels), torch.zeros_like(y))
        if self.mode == "full":
            return r.reshape(B, H * N * O)
        return r.permute(2, 0, 1, 3).reshape(N, B, H * O)

    def _unflatten(self, out: torch.Tensor, B: int) -> torch.Tensor:
        N, C, O, T, H = self.sizes
        if self.mode == "full":
            return out.reshape(B, H, N, O)
        return out.reshape(N, B, H, O).permute(1, 2, 0, 3)

    # --------------------------------------------------------------------- fit
    @torch.no_grad()
    def fit_closed_form(self, fit: ClosedFormData, batch_size: int = 512) -> None:
        """Closed-form ridge fit on the training windows (``fit.batches``); the ridge chosen on the validation ones."""
        mean, std = (torch.tensor(v, dtype=torch.float64, device=fit.device) for v in (fit.target_mean, fit.target_std))
        null = fit.null_value

        def z_batches(split):
            for b in fit.batches(split, batch_size):
                y = b.y.double()
                valid = valid_mask(y, null)
                yield b.x.double(), (y - mean) / std, valid, y

        xtx = xty = sx = sy = None
        n = 0
        for x, yz, valid, _ in z_batches("train"):
            f, r = self._features(x), self._targets(x, yz, valid)
            part = (f.transpose(-1, -2) @ f, f.transpose(-1, -2) @ r, f.sum(-2), r.sum(-2))
            if xtx is None:
                xtx, xty, sx, sy = part
            else:
                xtx, xty, sx, sy = xtx + part[0], xty + part[1], sx + part[2], sy + part[3]
            n += x.shape[0]
        mx, my = sx / n, sy / n  # centre so the intercept is not penalised
        xtx = xtx - n * mx.unsqueeze(-1) * mx.unsqueeze(-2)
        xty = xty - n * mx.unsqueeze(-1) * my.unsqueeze(-2)
        evals, evecs = torch.linalg.eigh(xtx)
        evals = evals.clamp(min=0)
        proj = evecs.transpose(-1, -2) @ xty
        scale = torch.diagonal(xtx, dim1=-2, dim2=-1).mean(-1, keepdim=True).clamp(min=1e-12)  # [..., 1]
        grid = (self.ridge,) if self.ridge is not None else RIDGE_GRID

        def solve(lam):
            w = evecs @ (proj / (evals + lam * scale).unsqueeze(-1))
            return w, my - (mx.unsqueeze(-2) @ w).squeeze(-2)

        solutions = [solve(lam) for lam in grid]
        best = 0
        if len(grid) > 1:
            err = torch.zeros(len(grid), dtype=torch.float64)
            for x, yz, valid, y in z_batches("val"):
                f = self._features(x)
                last = x[:, -1:].index_select(-1, self.channels)
                for i, (w, b) in enumerate(solutions):
                    out = self._unflatten(f @ w + b.unsqueeze(-2), x.shape[0]) + last
                    err[i] += ((out * std + mean - y).abs() * valid).sum().cpu()
            best = int(err.argmin())
        w, b = solutions[best]
        self.weight.copy_(w.float())
        self.bias.copy_(b.float())
        self.chosen_ridge.fill_(grid[best])

    def forward(self, x: torch.Tensor, graph=None, covariates: dict | None = None) -> torch.Tensor:
        f = self._features(x)
        out = f @ self.weight + self.bias.unsqueeze(-2)
        return self._unflatten(out, x.shape[0]) + x[:, -1:].index_select(-1, self.channels)
