"""Text reports as a covariate: embed each distinct report of a batch once, pool the reports at each token.

:class:`ReportEncoder` takes what :meth:`stgraph.data.reports.ReportTokens.gather` gives a batch and returns
``[B, T, N, D + 6]``: the mean of the embeddings of the reports at each (time, sensor) token, weighted by
``exp(-rate * age)`` for reports that give no end (``rate`` learned: how fast a report without an end stops
mattering) and 1 for those within their end, followed by ``log(1 + reports)``, their mean age in hours, mean
hop count upstream, mean hours left until the end their words state (:func:`stgraph.data.reports.stated_end`),
the share that state one, and last the token's relevance: the weighted mean over its reports of
``sigmoid(a . e + c . [age, left, stated] + b)``, learned from the report's embedding ``e`` and where the
token stands in the report's time (its age in hours, the hours left until the end its words state), by which
the gated fusion scales the text source's embedding at that token (:class:`~stgraph.nn.fusion.GatedFusion`):
an irrelevant report, or one whose stated end is long past, can weigh nothing (the fused embedding is
layer-normalised, so without this scale every token a report reaches would get a full-size contribution). A
token no report reaches is all zeros (no text contribution at all, exactly).

The default embedding is a bag of hashed word and character n-grams (:class:`torch.nn.EmbeddingBag`, mean
mode, :data:`stgraph.data.reports.NGRAM_BUCKETS` rows), trained end to end with the forecaster; with
precomputed sentence embeddings (``vectors``) a linear map takes their place. Training regularises the words
(a few hundred reports teach a from-scratch embedding): each n-gram of a report is dropped with probability
``ngram_dropout`` (the report must be read from its several cues, not from the typo or number that makes it
unique) and the report's embedding goes through dropout ``dropout``; neither acts in evaluation.
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
        dim: embedding width ``D``; the output has ``D + 6`` channels.
        vectors: width of precomputed sentence embeddings (``0``: the hashed n-gram bag).
        buckets: rows of the n-gram bag.
        dropout: dropout on each report's embedding (training only).
        ngram_dropout: probability of dropping each n-gram of a report (training only).

    Shapes:
        ``text``: ``ngrams [K]`` + ``offsets [U]`` (or ``vectors [U, D_v]``), ``open [U]``, and for ``part``
        ``slot_{part} [B, T, N, M]`` long (``-1``: none), ``age_{part}`` / ``hop_{part}`` / ``left_{part}``
        ``[B, T, N, M]``, ``stated [U]`` -> ``[B, T, N, D + 6]`` (:attr:`out_channels`).
    """

    def __init__(self, dim: int, vectors: int = 0, buckets: int = NGRAM_BUCKETS, dropout: float = 0.1,
                 ngram_dropout: float = 0.2):
        super().__init__()
        self.dim = int(dim)
        self.drop = nn.Dropout(float(dropout))
        self.ngram_dropout = float(ngram_dropout)
        self.bag = nn.EmbeddingBag(buckets, self.dim, mode="mean") if not vectors else None
        self.proj = nn.Linear(int(vectors), self.dim) if vectors else None
        if self.bag is not None:
            nn.init.normal_(self.bag.weight, std=0.1)
        self.rate = nn.Parameter(torch.tensor(0.0))  # softplus(0) = 0.69 per hour to start
        self.relevance = nn.Linear(self.dim, 1)
        nn.init.zeros_(self.relevance.weight), nn.init.zeros_(self.relevance.bias)  # 0.5 for every report to start
        self.timing = nn.Parameter(torch.zeros(3))  # relevance per hour of age, hour left, stated end

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # runs saved before ``timing`` existed load with it at its start (zeros: relevance from the words alone)
        state_dict.setdefault(prefix + "timing", torch.zeros(3))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def out_channels(self) -> int:
        return self.dim + TEXT_FEATURES

    def reports(self, text: dict) -> torch.Tensor:
        """``[U + 1, D]``: row 0 zeros (no report), then each distinct report's embedding, computed once."""
        if self.proj is not None:
            emb = self.proj(text["vectors"])
        else:
            emb = self.bag(*self._drop_ngrams(text["ngrams"], text["offsets"]))
        return torch.cat([emb.new_zeros(1, self.dim), self.drop(emb)], 0)

    def _drop_ngrams(self, ngrams: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``ngrams [K]``, ``offsets [U]`` with each n-gram kept with probability ``1 - ngram_dropout`` in
        training (a report left with none embeds as zeros); unchanged in evaluation."""
        if not self.training or self.ngram_dropout <= 0 or ngrams.numel() == 0:
            return ngrams, offsets
        keep = torch.rand(ngrams.shape, device=ngrams.device) >= self.ngram_dropout     # [K]
        kept = torch.cat([keep.new_zeros(1, dtype=torch.long), keep.long().cumsum(0)])  # [K + 1]
        return ngrams[keep], kept[offsets]

    def forward(self, text: dict, part: str, emb: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.reports(text) if emb is None else emb
        slot = text[f"slot_{part}"]                                     # [B, T, N, M]
        valid = (slot >= 0).to(emb.dtype)
        is_open = torch.cat([text["open"].new_zeros(1), text["open"]])[slot + 1]
        age = text[f"age_{part}"]
        w = valid * torch.where(is_open > 0, torch.exp(-F.softplus(self.rate) * age), torch.ones_like(age))
        total = w.sum(-1, keepdim=True).clamp(min=1e-6)
        pooled = (w.unsqueeze(-1) * emb[slot + 1]).sum(-2) / total
        stated = valid * torch.cat([text["stated"].new_zeros(1), text["stated"]])[slot + 1]
        left = text[f"left_{part}"]
        logit = torch.cat([emb.new_zeros(1), self.relevance(emb[1:])[:, 0]])[slot + 1]  # [B, T, N, M]
        logit = logit + self.timing[0] * age + self.timing[1] * left + self.timing[2] * stated
        relevance = (w * torch.sigmoid(logit)).sum(-1, keepdim=True) / total        # 0 where no report
        n = valid.sum(-1, keepdim=True)
        mean = n.clamp(min=1.0)
        k = stated.sum(-1, keepdim=True)
        feats = torch.cat([torch.log1p(n), (age * valid).sum(-1, keepdim=True) / mean,
                           (text[f"hop_{part}"] * valid).sum(-1, keepdim=True) / mean,
                           (left * stated).sum(-1, keepdim=True) / k.clamp(min=1.0), k / mean,
                           relevance], -1)
        return torch.cat([pooled, feats], -1)
