"""Text reports as a covariate: embed each distinct report of a batch once, pool the reports at each token.

:class:`ReportEncoder` takes what :meth:`stgraph.data.reports.ReportTokens.gather` gives a batch and returns
``[B, T, N, D + 6]``: the mean of the embeddings of the reports at each (time, sensor) token, weighted by
``exp(-rate * age)`` for reports that give no end (``rate`` learned: how fast a report without an end stops
mattering) and 1 for those within their end, followed by ``log(1 + reports)``, their mean age in hours, mean
hop count upstream, mean hours left until the end their words state (:func:`stgraph.data.reports.stated_end`),
the share that state one, and last the token's relevance: the weighted mean of ``sigmoid(a . e + b)`` over its
reports' embeddings ``e``, learned, by which the gated fusion scales the text source's embedding at that
token (:class:`~stgraph.nn.fusion.GatedFusion`), so that an irrelevant report can weigh nothing. A token no
report reaches is all zeros (no text contribution at all).

The default embedding is a bag of hashed word and character n-grams (:class:`torch.nn.EmbeddingBag`, mean
mode, :data:`stgraph.data.reports.NGRAM_BUCKETS` rows), trained end to end with the forecaster; with
precomputed sentence embeddings (``vectors``) a linear map takes their place.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.reports import NGRAM_BUCKETS, TEXT_FEATURES

__all__ = ["ReportEncoder"]


class ReportEncoder(nn.Module):
    """Reports -> per-token text features.

    Args:
        dim: embedding width ``D``; the output has ``D + 3`` channels.
        vectors: width of precomputed sentence embeddings (``0``: the hashed n-gram bag).
        buckets: rows of the n-gram bag.

    Shapes:
        ``text``: ``ngrams [K]`` + ``offsets [U]`` (or ``vectors [U, D_v]``), ``open [U]``, and for ``part``
        ``slot_{part} [B, T, N, M]`` long (``-1``: none), ``age_{part}`` / ``hop_{part}`` ``[B, T, N, M]``
        -> ``[B, T, N, D + 3]``.
    """

    def __init__(self, dim: int, vectors: int = 0, buckets: int = NGRAM_BUCKETS):
        super().__init__()
        self.dim = int(dim)
        self.bag = nn.EmbeddingBag(buckets, self.dim, mode="mean") if not vectors else None
        self.proj = nn.Linear(int(vectors), self.dim) if vectors else None
        if self.bag is not None:
            nn.init.normal_(self.bag.weight, std=0.1)
        self.rate = nn.Parameter(torch.tensor(0.0))  # softplus(0) = 0.69 per hour to start
        self.relevance = nn.Linear(self.dim, 1)
        nn.init.zeros_(self.relevance.weight), nn.init.zeros_(self.relevance.bias)  # 0.5 for every report to start

    @property
    def out_channels(self) -> int:
        return self.dim + TEXT_FEATURES

    def reports(self, text: dict) -> torch.Tensor:
        """``[U + 1, D]``: row 0 zeros (no report), then each distinct report's embedding, computed once."""
        if self.proj is not None:
            emb = self.proj(text["vectors"])
        else:
            emb = self.bag(text["ngrams"], text["offsets"])
        return torch.cat([emb.new_zeros(1, self.dim), emb], 0)

    def forward(self, text: dict, part: str, emb: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.reports(text) if emb is None else emb
        slot = text[f"slot_{part}"]                                     # [B, T, N, M]
        valid = (slot >= 0).to(emb.dtype)
        is_open = torch.cat([text["open"].new_zeros(1), text["open"]])[slot + 1]
        age = text[f"age_{part}"]
        w = valid * torch.where(is_open > 0, torch.exp(-F.softplus(self.rate) * age), torch.ones_like(age))
        total = w.sum(-1, keepdim=True).clamp(min=1e-6)
        pooled = (w.unsqueeze(-1) * emb[slot + 1]).sum(-2) / total
        rel = torch.sigmoid(self.relevance(emb[1:]))[:, 0]                         # [U]
        relevance = (w * torch.cat([rel.new_zeros(1), rel])[slot + 1]).sum(-1, keepdim=True) / total
        n = valid.sum(-1, keepdim=True)
        mean = n.clamp(min=1.0)
        stated = valid * torch.cat([text["stated"].new_zeros(1), text["stated"]])[slot + 1]
        k = stated.sum(-1, keepdim=True)
        feats = torch.cat([torch.log1p(n), (age * valid).sum(-1, keepdim=True) / mean,
                           (text[f"hop_{part}"] * valid).sum(-1, keepdim=True) / mean,
                           (text[f"left_{part}"] * stated).sum(-1, keepdim=True) / k.clamp(min=1.0), k / mean,
                           relevance], -1)
        return torch.cat([pooled, feats], -1)
