"""STGT: a spatio-temporal graph transformer (encoder-decoder) for traffic forecasting.

Encoder: the observed window is cut into patches of ``patch_len`` steps per
sensor (the first patch padded with zeros in front when ``patch_len`` does not
divide ``T_in``), each patch embedded as one token (a linear map of its
``patch_len * C_in`` values + time of day and day of week of its last step +
sensor + patch position), and the ``P = ceil(T_in / patch_len)`` tokens of every
sensor pass through ``encoder_layers`` blocks, each a graph attention across
sensors (on each of the ``P`` patch slices) followed by a transformer block
along the patches.

Two shapes of the same model are shipped (``stgraph/configs``):

* ``stgt`` (the default): patches of 3 steps, one feed-forward per block (the
  temporal one), no decoder blocks, and a window skip (STID's identity-embedding
  idea: a linear map of each sensor's whole input window added to its decoder
  queries). A training step 5.7x faster than the classic shape's at the same
  width and batch, and more accurate at every CPU budget tried
  (``benchmarks/results/stgt_cost.md``, ``benchmarks/results/metr-la-week/budget.md``).
* ``stgt-classic``: one token per step (``patch_len=1``), two feed-forwards per
  block, one decoder block: the constructor's defaults, the architecture every
  run trained before the efficient shape has.

Decoder: one query per horizon patch of ``patch_len`` future steps (per step
when it is 1) and sensor, built from the patch's mean future calendar (time of
day, day of week), the sensor embedding, the patch position and, with
``window_skip``, a linear map of the sensor's whole input window. The queries
cross-attend along time to the encoder tokens of the same sensor (like GMAN's
transform attention), then pass through ``decoder_layers`` blocks of their own
(none in the default shape). All horizon steps come out at once (no
autoregression).

Head: ``LayerNorm -> Linear -> GELU -> Linear`` to ``patch_len * C_out`` (or
twice that: mean and softplus scale), unfolded into the patch's steps. The last
linear layer starts at zero and the mean
adds a persistence term, ``g_t * x[:, -1, :, target_channels]`` with a learned
per-step, per-channel gate ``g_t`` that starts at 1: the untrained model
forecasts "the last reading" exactly, and training moves each horizon step
away from persistence as far as the data asks (typically towards the mean,
i.e. ``g_t < 1``, at long horizons).

The trainer calls ``model(x, graph, covariates)``; see :meth:`STGT.forward`.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Normal
from torch.utils.checkpoint import checkpoint

from ..mixture import NormalMixture
from ..nn.embedding import InputEmbedding
from ..nn.fusion import GatedFusion
from ..nn.lean import Dropout
from ..nn.spatial import SpatialGraphAttention, with_self_loops
from ..nn.temporal import CrossAttention, TemporalTransformerBlock
from ..nn.window_graphs import fold, per_window, unfold
from .registry import check_input, register


class STBlock(nn.Module):
    r"""One spatial graph attention layer then one temporal transformer block.

    Args:
        dim, heads, ff_mult, dropout, attn_dropout: as in the two layers.
        backend, dense_max_nodes: passed to :class:`SpatialGraphAttention`.
        spatial_ff: give the spatial layer a feed-forward of its own (two per
            block); ``False``: the temporal block's is the block's only one.

    Shapes:
        - input: ``x`` ``[B, T, N, D]``, ``edge_index`` ``[2, E]``,
          ``edge_weight`` ``[E]`` or None
        - output: ``[B, T, N, D]``; with ``return_attention=True`` also a dict
          ``{'spatial': [E', H], 'spatial_edge_index': [2, E'],
          'temporal': [B, N, H, T, T]}``.
    """

    def __init__(self, dim: int, heads: int, ff_mult: int, dropout: float, backend: str = "auto",
                 dense_max_nodes: int = 1024, attn_dropout: float = 0.0, spatial_ff: bool = True):
        super().__init__()
        self.spatial = SpatialGraphAttention(dim, heads, dropout, ff_mult if spatial_ff else 0, backend,
                                             dense_max_nodes, attn_dropout=attn_dropout)
        self.temporal = TemporalTransformerBlock(dim, heads, ff_mult, dropout,
                                                 attn_dropout=attn_dropout)

    def reset_parameters(self) -> None:
        self.spatial.reset_parameters()
        self.temporal.reset_parameters()

    def forward(self, x, edge_index, edge_weight=None, return_attention: bool = False):
        if not return_attention:
            return self.temporal(self.spatial(x, edge_index, edge_weight))
        x, (ei, a_s) = self.spatial(x, edge_index, edge_weight, return_attention=True)
        x, a_t = self.temporal(x, return_attention=True)
        return x, {"spatial": a_s, "spatial_edge_index": ei, "temporal": a_t}


@register("stgt", exogenous=True)
class STGT(nn.Module):
    r"""Spatio-temporal graph transformer, encoder-decoder.

    Args:
        num_nodes: number of sensors ``N``.
        in_channels: input channels ``C_in`` of ``x``.
        out_channels: forecast channels ``C_out``.
        input_len: observed steps ``T_in``.
        horizon: forecast steps ``T_out``.
        steps_per_day: time-of-day slots (288 for 5-minute data).
        target_channels: indices in ``x``'s channels of the ``C_out`` targets,
            used by the persistence term; ``None`` switches persistence off.
        hidden: model width ``D``.
        heads: attention heads ``H`` (``D % H == 0``).
        encoder_layers, decoder_layers: number of spatial+temporal blocks.
        ff_mult: feed-forward hidden size is ``ff_mult * D``.
        dropout: dropout on the input embedding and on every sublayer output.
        spatial_backend: ``'auto'``, ``'sparse'``, ``'gather'``, ``'dense'`` or
            ``'flex'`` (see :mod:`stgraph.nn.spatial`).
        probabilistic: return a :class:`torch.distributions.Normal`.
        node_emb_dim: stored size of the sensor embeddings (``None``: ``D``).
        dense_max_nodes: ``'auto'`` never goes dense above this many sensors.
        min_scale: added to the softplus scale of the probabilistic output.
        components: ``K >= 1`` makes the probabilistic head a mixture of ``K`` Normals
            (:class:`~stgraph.mixture.NormalMixture`, parameters ``[B, T_out, N, C_out, K]``; every
            location adds the persistence term, the locations start spread over ``[-1, 1]`` z-units);
            0 (default): one Normal. ``model.distribution = mixture`` sets 2 unless given.
        exogenous: ``[[source, channels], ...]``: covariates from files
            (:mod:`stgraph.data.covariates`) taken through a gated fusion embedding
            (:class:`stgraph.nn.fusion.GatedFusion`) added to the encoder's input and the
            decoder's queries; ``None`` (default): calendar only.
        scale_prior: a probabilistic head's scale (a mixture's: every component's scale and its offset from
            the base forecast) is multiplied by a per-step,
            per-sensor factor fitted on the training windows (:class:`~stgraph.models.scale_prior.ScalePrior`:
            last value's RMS error there), so the band depends on sensor and horizon from the start;
            ``False`` (the constructor's default, what older runs were trained with): it does not.
        attn_dropout: dropout on attention weights (default 0: on CPU it is
            slower than the rest of the attention and bars the fused kernels).
        patch_len: input steps per encoder token (1: one token per step).
        spatial_ff: each block's spatial layer has a feed-forward of its own
            (``False``: one feed-forward per block, the temporal one).
        window_skip: add a linear map of each sensor's whole input window
            ``[T_in * C_in] -> D`` to its decoder queries.
        recompute: in training, keep only each block's input and recompute the
            block in backward (activation checkpointing): about a third more time
            a step. Live activation memory falls about 2.5x (see
            :meth:`memory_terms`), but with the default retaining
            allocator the peak resident memory falls only ~20%; `stgraph train`
            turns it on together with the lean allocator when a run fits no
            other way.

    Shapes:
        - input: ``x`` ``[B, T_in, N, C_in]``; ``graph`` with ``edge_index``
          ``[2, E]``, ``edge_weight`` ``[E]`` (optional); ``covariates`` with
          ``tod_in``/``dow_in`` ``[B, T_in]`` and ``tod_out``/``dow_out``
          ``[B, T_out]``; with ``exogenous`` also ``exo_in`` ``[B, T_in, N, C_x]`` and
          ``exo_out`` ``[B, T_out, N, C_x]``
        - output: ``[B, T_out, N, C_out]``, or ``Normal`` with ``loc`` and
          ``scale`` ``[B, T_out, N, C_out]``.

    The constructor's defaults are the classic shape (saved runs record only the
    parameters they were given); ``stgraph/configs/stgt.yaml`` holds the efficient one.
    """

    may_be_zero = ("decoder_layers",)  #: 0 decoder blocks: the cross-attention feeds the head directly

    def __init__(self, num_nodes: int, in_channels: int, out_channels: int, input_len: int,
                 horizon: int, steps_per_day: int = 288,
                 target_channels: Optional[Sequence[int]] = (0,), hidden: int = 64, heads: int = 4,
                 encoder_layers: int = 2, decoder_layers: int = 1, ff_mult: int = 4,
                 dropout: float = 0.1, spatial_backend: str = "auto", probabilistic: bool = False,
                 node_emb_dim: Optional[int] = None, dense_max_nodes: int = 1024,
                 min_scale: float = 1e-3, attn_dropout: float = 0.0, recompute: bool = False,
                 residual: str = "last", exogenous: Optional[Sequence[Sequence]] = None,
                 patch_len: int = 1, spatial_ff: bool = True, window_skip: bool = False, components: int = 0,
                 scale_prior: bool = False):
        super().__init__()
        if not isinstance(patch_len, int) or isinstance(patch_len, bool) or patch_len < 1:
            raise ValueError(f"patch_len is {patch_len!r}; expected an integer >= 1 (input steps per token)")
        if target_channels is not None:
            target_channels = tuple(int(c) for c in target_channels)
            if len(target_channels) != out_channels:
                raise ValueError(f"target_channels {target_channels} must name out_channels="
                                 f"{out_channels} channels of x")
            if any(c < 0 or c >= in_channels for c in target_channels):
                raise ValueError(f"target_channels {target_channels} outside [0, {in_channels})")
        self.num_nodes, self.in_channels, self.out_channels = num_nodes, in_channels, out_channels
        self.input_len, self.horizon, self.hidden, self.heads = input_len, horizon, hidden, heads
        self.target_channels = target_channels
        self.probabilistic, self.min_scale = probabilistic, min_scale
        if not isinstance(components, int) or isinstance(components, bool) or components < 0:
            raise ValueError(f"components is {components!r}; expected an integer >= 0 (0: one Normal)")
        self.components = components if probabilistic else 0
        self.recompute = recompute
        self.patch_len = patch_len
        self.num_patches = -(-input_len // patch_len)  # P = ceil(T_in / patch_len)

        self.embed = InputEmbedding(in_channels * patch_len, hidden, num_nodes, steps_per_day, node_emb_dim)
        self.pos_in = nn.Parameter(torch.empty(self.num_patches, hidden))
        self.num_out_patches = -(-horizon // patch_len)
        self.pos_out = nn.Parameter(torch.empty(self.num_out_patches, hidden))
        self.drop = Dropout(dropout)
        block = lambda: STBlock(hidden, heads, ff_mult, dropout, spatial_backend, dense_max_nodes,
                                attn_dropout, spatial_ff)
        self.encoder = nn.ModuleList([block() for _ in range(encoder_layers)])
        self.cross = CrossAttention(hidden, heads, dropout, attn_dropout)
        self.window = nn.Linear(input_len * in_channels, hidden) if window_skip else None
        self.decoder = nn.ModuleList([block() for _ in range(decoder_layers)])
        self.norm_out = nn.LayerNorm(hidden)
        self.head_fc = nn.Linear(hidden, hidden)
        width = 3 * self.components if self.components else (2 if probabilistic else 1)  # mixture: loc, scale, logit
        self.head_out = nn.Linear(hidden, patch_len * out_channels * width)
        self.persistence_gate = nn.Parameter(torch.empty(horizon, out_channels))
        if target_channels is not None:
            self.register_buffer("target_index", torch.tensor(target_channels), persistent=False)
        else:
            self.target_index = None
        # residual='last': persistence, gate_h * last value (the default, and what runs without the
        # argument were trained with); residual='blend': a learned blend of last value and the seasonal
        # average, started at the least-squares blend of the two (SeasonalResidual.fit_closed_form).
        if residual not in ("last", "blend"):
            raise ValueError(f"residual is {residual!r}; expected 'last' or 'blend'")
        self.residual = residual
        self.seasonal = None
        if residual == "blend" and target_channels is not None:
            from .seasonal import SeasonalResidual
            self.seasonal = SeasonalResidual(num_nodes, out_channels, horizon, steps_per_day, target_channels)
            self.persistence_gate.requires_grad_(False)  # the blend's gate_last takes its place
        # covariates from files: built last and only when given, so a model without them draws the same
        # initial weights (same seed, same numbers) as before they existed
        self.fusion = GatedFusion(exogenous, hidden, horizon) if exogenous else None
        self.scale_prior = None  # a buffer only: the same initial weights with or without it
        if scale_prior and probabilistic and target_channels is not None:
            from .scale_prior import ScalePrior
            self.scale_prior = ScalePrior(num_nodes, out_channels, horizon, target_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier for projections, N(0, 0.02) for embeddings, zero output layer
        (so the initial mean is exactly persistence), persistence gate 1,
        initial probabilistic scale ~1 (z-score units)."""
        self.embed.reset_parameters()
        nn.init.normal_(self.pos_in, std=0.02)
        nn.init.normal_(self.pos_out, std=0.02)
        for blk in (*self.encoder, *self.decoder):
            blk.reset_parameters()
        self.cross.reset_parameters()
        if getattr(self, "window", None) is not None:
            nn.init.xavier_uniform_(self.window.weight)
            nn.init.zeros_(self.window.bias)
        self.norm_out.reset_parameters()
        nn.init.xavier_uniform_(self.head_fc.weight)
        nn.init.zeros_(self.head_fc.bias)
        nn.init.zeros_(self.head_out.weight)
        nn.init.zeros_(self.head_out.bias)
        if self.probabilistic:
            with torch.no_grad():  # softplus(log(e - 1)) = 1
                self.head_out.bias.view(self.patch_len, -1)[:, self.out_channels:] = math.log(math.e - 1.0)
                if getattr(self, "components", 0):  # mixture: locations spread over [-1, 1] (symmetry broken),
                    K = self.components            # equal weights (logits 0)
                    bias = self.head_out.bias.view(self.patch_len, 3, self.out_channels, K)
                    bias[:, 0] = torch.linspace(-1.0, 1.0, K) if K > 1 else 0.0
                    bias[:, 2] = 0.0
        nn.init.ones_(self.persistence_gate)
        if getattr(self, "seasonal", None) is not None:
            self.seasonal.reset_parameters()
        if getattr(self, "fusion", None) is not None:
            self.fusion.reset_parameters()

    def spatial_backend(self, graph) -> str:
        """The spatial backend (one of :data:`stgraph.nn.spatial.BACKENDS` but
        ``'auto'``) a forward on ``graph`` uses on the model's device, in the
        model's current train/eval mode."""
        layer = (*self.encoder, *self.decoder)[0].spatial
        g = with_self_loops(graph.edge_index, getattr(graph, "edge_weight", None), self.num_nodes)
        return layer.resolve_backend(self.num_nodes, g.edge_index.size(1), self.pos_in.device,
                                     needs_grad=self.training)

    def memory_terms(self, batch_size: int, num_edges: int, device=None,
                     recompute: Optional[bool] = None) -> dict:
        """What a training step of this model keeps at its peak, in the terms of the allocator table
        :data:`stgraph.training.memory.MEMORY_NUMBERS` (read by
        :func:`stgraph.training.memory.estimate_train_memory`, which turns them into bytes):

        * ``shape``: ``'classic'`` (a feed-forward in the spatial layer) or ``'efficient'``;
        * ``A = B * T * N * D``, ``T`` the larger of the input and horizon token counts,
          ``ceil(T_in / patch_len)`` and ``ceil(T_out / patch_len)``;
        * ``units``: the blocks, plus the decoder's cross-attention + head for the efficient shape;
        * ``recompute``: whether each block is recomputed in backward;
        * ``extra``: float32 numbers the spatial backend keeps on top: ``'gather'`` ``8 * E' * B*T * D`` a
          layer, ``'dense'`` ``3 * B*T * H * N^2`` a layer when training on CPU (one layer with recompute).

        Args:
            batch_size: ``B``; num_edges: ``E`` of the graph (self loops are added here);
            device: where the step runs; recompute: override ``self.recompute``.
        """
        rc = self.recompute if recompute is None else recompute
        N, D = self.num_nodes, self.hidden
        T = max(self.num_patches, self.num_out_patches)
        blocks = len(self.encoder) + len(self.decoder)
        layer = (*self.encoder, *self.decoder)[0].spatial
        classic = layer.ffn is not None
        E = num_edges + N
        backend = layer.resolve_backend(N, E, device, needs_grad=True)
        S = batch_size * T
        kept = 1 if rc else blocks
        extra = 0
        if backend == "gather":
            extra = kept * 8 * E * S * D
        elif backend == "dense" and torch.device(device or "cpu").type == "cpu":
            extra = kept * 3 * S * self.heads * N * N
        return {"shape": "classic" if classic else "efficient", "A": batch_size * T * N * D,
                "units": blocks if classic else blocks + 1, "recompute": bool(rc), "extra": extra}

    def _exogenous(self, covariates: dict):
        """``(exo_in, exo_out)`` from ``covariates`` (``None, None`` for a model without covariates)."""
        if self.fusion is None:
            return None, None
        if "exo_in" not in covariates:
            raise ValueError(f"this stgt was built for covariate files {self.fusion.names} but the batch has none "
                             f"(covariates['exo_in'] / ['exo_out']); pass the run's covariates (data.covariates)")
        return self.fusion.with_text(covariates["exo_in"], covariates["exo_out"], covariates.get("text"))

    def gates(self) -> dict | None:
        """The fusion gates per covariate source (:meth:`stgraph.nn.fusion.GatedFusion.gates`), or ``None``."""
        return None if self.fusion is None else self.fusion.gates()

    def _fold(self, t: torch.Tensor, num: int, front: bool) -> torch.Tensor:
        """``t`` ``[B, T, ...]`` -> ``[B, num, patch_len, ...]``, padded to ``num * patch_len`` steps in front
        (the input window: zeros, the missing-reading value) or at the back (the horizon: the last step
        repeated)."""
        L = self.patch_len
        pad = num * L - t.size(1)
        if pad:
            fill = t.new_zeros(t.size(0), pad, *t.shape[2:]) if front else t[:, -1:].expand(-1, pad, *t.shape[2:])
            t = torch.cat([fill, t] if front else [t, fill], dim=1)
        return t.reshape(t.size(0), num, L, *t.shape[2:])

    def _patches(self, x: torch.Tensor, tod: torch.Tensor, dow: torch.Tensor):
        """``x`` ``[B, T_in, N, C]`` -> patches ``[B, P, N, patch_len * C]`` and the calendar of each patch's
        last step ``[B, P]``."""
        if self.patch_len == 1:
            return x, tod, dow
        B, _, N, C = x.shape
        P = self.num_patches
        xp = self._fold(x, P, front=True).permute(0, 1, 3, 2, 4).reshape(B, P, N, self.patch_len * C)
        last = slice(x.size(1) - 1 - (P - 1) * self.patch_len, None, self.patch_len)  # each patch's last step
        return xp, tod[:, last], dow[:, last]

    def _patch_mean(self, e: torch.Tensor, num: int, front: bool) -> torch.Tensor:
        """Per-step features ``[B, T, N, D]`` -> their mean over each of ``num`` patches ``[B, num, N, D]``."""
        return e if self.patch_len == 1 else self._fold(e, num, front).mean(2)

    def _block(self, blk, h, edge_index, edge_weight):
        if self.recompute and self.training and torch.is_grad_enabled():
            return checkpoint(blk, h, edge_index, edge_weight, use_reentrant=False)
        return blk(h, edge_index, edge_weight)

    def forward(self, x: torch.Tensor, graph, covariates: dict, return_attention: bool = False):
        r"""Forecast the next ``horizon`` steps.

        Args:
            x: ``[B, T_in, N, C_in]`` z-scored inputs (missing readings = 0).
            graph: has ``edge_index`` ``[2, E]`` (source -> target) and optionally ``edge_weight`` ``[E]`` in
                ``(0, 1]``; or one graph per window (:mod:`stgraph.nn.window_graphs`: attention over their union).
            covariates: ``tod_in`` ``[B, T_in]`` float, ``dow_in`` ``[B, T_in]``
                long, ``tod_out`` ``[B, T_out]``, ``dow_out`` ``[B, T_out]``.
            return_attention: also return a dict of attention weights.

        Returns:
            ``[B, T_out, N, C_out]`` point forecast in z-score units, or a
            ``Normal`` (``loc``/``scale`` ``[B, T_out, N, C_out]``) when
            ``probabilistic``. With ``return_attention=True`` the pair
            ``(output, attn)`` where ``attn`` holds, for the LAST encoder block
            and the decoder's cross-attention:

            - ``'temporal'``: ``[B, N, H, P, P]`` (query patch, key patch;
              ``P = T_in`` when ``patch_len`` is 1),
            - ``'spatial'``: ``[E', H]`` per-edge weights averaged over the
              ``B * P`` slices, aligned with
            - ``'spatial_edge_index'``: ``[2, E']`` = the graph's non-loop edges
              in input order followed by the ``N`` self loops,
            - ``'cross'``: ``[B, N, H, P_out, P]`` (``P_out = ceil(T_out / patch_len)`` horizon patches).
        """
        B, T, N, C = check_input(self, x)
        edge_index = graph.edge_index
        edge_weight = getattr(graph, "edge_weight", None)
        windows = per_window(graph)  # one graph per window: the B windows side by side as B * N nodes
        attn = {}

        exo_in, exo_out = self._exogenous(covariates)
        xp, tod_p, dow_p = self._patches(x, covariates["tod_in"], covariates["dow_in"])
        h = self.embed(xp, tod_p, dow_p) + self.pos_in[:, None, :]  # [B, P, N, D]
        if exo_in is not None:
            h = h + self._patch_mean(self.fusion.encode(exo_in), self.num_patches, front=True)
        h = fold(self.drop(h)) if windows else self.drop(h)  # [B, P, N, D] (per window: [1, P, B * N, D])
        for i, blk in enumerate(self.encoder):
            if return_attention and i == len(self.encoder) - 1:
                h, attn = blk(h, edge_index, edge_weight, return_attention=True)
            else:
                h = self._block(blk, h, edge_index, edge_weight)

        # one query per horizon patch (per step when patch_len is 1): its steps' mean calendar
        P_out = self.num_out_patches
        time_out = self._patch_mean(self.embed.time(covariates["tod_out"], covariates["dow_out"]), P_out, False)
        q = time_out + self.embed.node() + self.pos_out[:, None, :]  # [B, P_out, N, D]
        if self.window is not None:  # [B, N, T_in * C_in] -> [B, 1, N, D]
            q = q + self.window(x.transpose(1, 2).reshape(B, N, T * C)).unsqueeze(1)
        if exo_out is not None:
            q = q + self._patch_mean(self.fusion.decode(exo_out), P_out, front=False)
        q = fold(q) if windows else q
        if return_attention:
            q, attn["cross"] = self.cross(q, h, return_attention=True)
        else:
            q = self.cross(q, h)
        for blk in self.decoder:
            q = self._block(blk, q, edge_index, edge_weight)
        q = unfold(q, B) if windows else q

        out = self.head_out(F.gelu(self.head_fc(self.norm_out(q))))  # [B, P_out, N, patch_len * C_out(*2)]
        if self.patch_len > 1:  # each query's patch_len steps -> [B, T_out, N, C_out(*2)]
            out = out.view(B, P_out, N, self.patch_len, -1).transpose(2, 3).reshape(B, P_out * self.patch_len, N, -1)
            out = out[:, : self.horizon]
        C = self.out_channels
        mean = out[..., :C] if not self.components else out[..., : C * self.components].unflatten(-1, (C, -1))
        if self.target_index is not None:
            last = x[:, -1:, :, :].index_select(-1, self.target_index)  # [B, 1, N, C_out]
            if self.seasonal is not None:
                base = self.seasonal(last, covariates)
            else:
                base = self.persistence_gate[:, None, :] * last
            mean = mean + (base.unsqueeze(-1) if self.components else base)
        if self.components:  # [B, T_out, N, C_out, K] each
            rest = out[..., C * self.components:].unflatten(-1, (2, C, self.components))
            scales = F.softplus(rest[..., 0, :, :]) + self.min_scale
            if self.scale_prior is not None:  # offsets from the base and scales in units of the step's factor
                factor = self.scale_prior.factor.to(scales.dtype).unsqueeze(-1)  # [T_out, N, C_out, 1]
                scales = scales * factor
                mean = mean + (mean - base.unsqueeze(-1)) * (factor - 1)
            result = NormalMixture(mean, scales, rest[..., 1, :, :])
        elif self.probabilistic:
            scale = F.softplus(out[..., self.out_channels:]) + self.min_scale
            if self.scale_prior is not None:
                scale = self.scale_prior(scale)
            result = Normal(mean, scale)
        else:
            result = mean
        return (result, attn) if return_attention else result
