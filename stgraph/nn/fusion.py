"""Gated fusion of covariate sources into a model's hidden stream.

Each source ``s`` (a group of ``C_s`` covariate channels: rain, incident flags, lanes) has its own
small encoder ``Linear -> GELU -> Linear -> LayerNorm`` (no affine: every source's embedding has
unit scale) and a sigmoid gate. The fused embedding added to the model's stream is::

    fuse(exo)[b, t, n] = sum_s  g_s(t) * LN(MLP_s(exo[b, t, n, channels of s]))

with one gate per source for the encoder (observed steps) and one per source and horizon step for
the decoder (forecast steps). Because the embeddings are normalised, a gate alone decides how much a
source contributes: the model can switch a useless source off (gate -> 0), and the gates say after
training which source mattered at which horizon (:meth:`GatedFusion.gates`).

Text reports are a source like the others, with its own encoder and gates: a layout entry
``[name, channels, 'text', vector width]`` gets a :class:`~stgraph.nn.text.ReportEncoder` whose per-token
features (:meth:`GatedFusion.with_text`) are appended to the numeric channels before the gated sum.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn


class GatedFusion(nn.Module):
    r"""Per-source encoders and sigmoid gates.

    Args:
        sources: ``[[name, channels], ...]``: the covariate channels' layout, in channel order; text sources
            last, as ``[name, channels, 'text', vector width]`` (:attr:`stgraph.data.Exogenous.layout`).
        dim: the model width ``D``.
        horizon: forecast steps ``T_out`` (one decoder gate per source and step).
        gate_init: initial gate logit (``-2``: gates start at ``sigmoid(-2) = 0.12``, mostly shut;
            a source must earn its influence). The logits are stored divided by :attr:`GATE_SCALE`, so
            the optimiser moves them that many times faster than a weight (a gate must be able to open
            or shut within a short training).

    Shapes:
        - :meth:`encode`: ``exo`` ``[B, T_in, N, C]`` -> ``[B, T_in, N, D]``
        - :meth:`decode`: ``exo`` ``[B, T_out, N, C]`` -> ``[B, T_out, N, D]``
    """

    GATE_SCALE = 10.0

    def __init__(self, sources: Sequence[Sequence], dim: int, horizon: int, gate_init: float = -2.0):
        super().__init__()
        self.names = [str(e[0]) for e in sources]
        self.sizes = [int(e[1]) for e in sources]
        text = {str(e[0]): (int(e[1]), int(e[3]) if len(e) > 3 else 0) for e in sources if len(e) > 2 and e[2] == "text"}
        if not self.names or min(self.sizes) < 1 or len(set(self.names)) != len(self.names):
            raise ValueError(f"exogenous sources {list(sources)}: expected distinct [name, channels >= 1] pairs")
        self.gate_init = float(gate_init)
        self.encoders = nn.ModuleList(
            nn.Sequential(nn.Linear(c - (n in text), dim), nn.GELU(), nn.Linear(dim, dim),  # text: relevance apart
                          nn.LayerNorm(dim, elementwise_affine=False)) for n, c in zip(self.names, self.sizes))
        self.gate_in = nn.Parameter(torch.empty(len(self.sizes)))
        self.gate_out = nn.Parameter(torch.empty(horizon, len(self.sizes)))
        self.reset_parameters()
        self.readers = None  # built after the others: runs without text draw the same weights as before
        if text:
            from .text import ReportEncoder
            from ..data.reports import TEXT_FEATURES
            self.readers = nn.ModuleDict({n: ReportEncoder(c - TEXT_FEATURES, v) for n, (c, v) in text.items()})

    def reset_parameters(self) -> None:
        for enc in self.encoders:
            for layer in enc:
                if isinstance(layer, nn.Linear):
                    nn.init.xavier_uniform_(layer.weight)
                    nn.init.zeros_(layer.bias)
        nn.init.constant_(self.gate_in, self.gate_init / self.GATE_SCALE)
        nn.init.constant_(self.gate_out, self.gate_init / self.GATE_SCALE)

    @property
    def num_channels(self) -> int:
        return sum(self.sizes)

    def _embed(self, exo: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        """``exo [B, T, N, C]``, ``gates [T or 1, S]`` in (0, 1) -> ``[B, T, N, D]``."""
        if exo.size(-1) != self.num_channels:
            raise ValueError(f"covariates have {exo.size(-1)} channels; the model was built for {self.num_channels} "
                             f"({dict(zip(self.names, self.sizes))})")
        out = 0
        for s, (enc, part) in enumerate(zip(self.encoders, exo.split(self.sizes, dim=-1))):
            if self.readers is not None and self.names[s] in self.readers:  # text: scaled by the token's relevance
                emb = enc(part[..., :-1]) * part[..., -1:]
            else:
                emb = enc(part)
            out = out + gates[:, s, None, None] * emb  # [T, 1, 1] broadcasts over B, N, D
        return out

    def with_text(self, exo_in: torch.Tensor, exo_out: torch.Tensor, text: dict | None):
        """``exo_in [B, T_in, N, C]``, ``exo_out [B, T_out, N, C]`` with each text source's per-token features
        appended (each distinct report embedded once for both); unchanged without text sources."""
        if self.readers is None:
            return exo_in, exo_out
        if not text or any(n not in text for n in self.readers):
            raise ValueError(f"this model was built for text reports {list(self.readers)} but the batch has "
                             f"{sorted(text or {})}; pass the run's reports file (data.covariates)")
        ins, outs = [exo_in], [exo_out]
        for name, reader in self.readers.items():
            emb = reader.reports(text[name])
            ins.append(reader(text[name], "in", emb).to(exo_in.dtype))
            outs.append(reader(text[name], "out", emb).to(exo_out.dtype))
        return torch.cat(ins, -1), torch.cat(outs, -1)

    def encode(self, exo: torch.Tensor) -> torch.Tensor:
        return self._embed(exo, torch.sigmoid(self.GATE_SCALE * self.gate_in)[None, :])

    def decode(self, exo: torch.Tensor) -> torch.Tensor:
        return self._embed(exo, torch.sigmoid(self.GATE_SCALE * self.gate_out))

    @torch.no_grad()
    def gates(self) -> dict:
        """``{source: {"input": g, "horizon": [g_1 .. g_T_out]}}`` gate values in (0, 1)."""
        gi = torch.sigmoid(self.GATE_SCALE * self.gate_in).tolist()
        go = torch.sigmoid(self.GATE_SCALE * self.gate_out).T.tolist()
        return {n: {"input": round(a, 4), "horizon": [round(v, 4) for v in b]}
                for n, a, b in zip(self.names, gi, go)}


def gate_table(gates: dict, steps: Sequence[int]) -> str:
    """A plain-text table of :meth:`GatedFusion.gates` at horizon ``steps`` (1-based)."""
    head = f"{'source':<16} {'input':>6} " + " ".join(f"{'h' + str(h):>6}" for h in steps)
    rows = [head] + [f"{n:<16} {g['input']:>6.3f} " + " ".join(f"{g['horizon'][h - 1]:>6.3f}" for h in steps)
                     for n, g in gates.items()]
    return "\n".join(rows)


__all__ = ["GatedFusion", "gate_table"]
