"""Text reports on the series' (time, sensor) tokens: where and when each report is seen, and its words hashed.

:func:`read_sources` reads the covariate files of a run (:func:`stgraph.io.covariates.read_covariates`) and
places each reports file (:mod:`stgraph.io.reports`) on the series as a :class:`ReportTokens`:

* **where**: the report's sensor; or the sensors within ``data.report_radius_km`` of its ``lat`` / ``lon``
  (the road graph's node ``lat`` / ``lon``, or ``data.locations``); or every sensor when it names no place.
  Then, along the road graph, the sensors *upstream* within ``data.report_hops`` hops (``u`` is upstream of
  ``v`` when the graph has an edge ``u -> v``: where the queue will grow), each with its hop count.
* **when**: from the first series step at or after its publication (never before: a report is observed,
  not known ahead) until its ``end`` (exclusive); a report with no ``end`` whose words state one (below) until
  ``data.report_after_hours`` past that stated end (the words' end is an estimate and traffic takes a while to
  recover); one that states none for ``data.report_hours``. Without an ``end`` the model also learns how fast
  such a report's weight decays with its age (:class:`stgraph.nn.text.ReportEncoder`).
* **at the forecast steps** (``exo_out``): only the reports published by the last input step, at the age
  they will have then; a report published later is not seen.

Stated times: the first clock time in a report's words (``ends 22:30``) or else its first duration (``expect 90
minutes``, ``2 h``) gives the time it says things will end (:func:`stated_end`, the next such clock time after
publication); each token then carries how many hours are left until it (negative once past), which a bag of
words cannot compare.

Words: each report's text becomes hashed word unigrams, word bigrams and character 3-grams of its words
(:func:`hash_ngrams`, CRC32 into :data:`NGRAM_BUCKETS` buckets: no vocabulary file, nothing downloaded),
computed once per report; the model embeds each distinct report of a batch once
(:class:`torch.nn.EmbeddingBag`) and gathers the embeddings to the tokens. With ``data.text_encoder`` (a
sentence-transformers folder on disk) each distinct text is embedded once by that model instead.

Storage: ``slots [T, N, M]`` int32 report indices (``-1``: none; ``M`` = the most reports at one token) and
``hops [T, N, M]``; batches gather them by row (:meth:`ReportTokens.gather`), never per token in Python.
"""
from __future__ import annotations

import logging
import re
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import BadRowError, ConfigError, DataFormatError, where
from ..io.series import iso

log = logging.getLogger(__name__)

__all__ = ["NGRAM_BUCKETS", "TEXT_DIM", "TEXT_FEATURES", "ReportOptions", "ReportTokens", "hash_ngrams",
           "read_sources", "stated_end", "join_text"]

#: hash buckets of the n-gram embedding bag
NGRAM_BUCKETS = 1 << 17
#: width of a report's embedding (the default encoder's)
TEXT_DIM = 16
#: pooled per token after the embedding: log(1 + reports), mean age (hours), mean hop, hours left until the stated
#: end, share of reports stating one, and the relevance (the share of the text embedding the token takes)
TEXT_FEATURES = 6
_CLOCK = re.compile(r"\b([01]?\d|2[0-3])[:.]([0-5]\d)\b")
_SPAN = re.compile(r"\b(\d+(?:\.\d+)?)[\s-]*([a-z]+)\b")
#: units of a stated duration, in minutes; a unit written with two letters swapped (``minuets``, ``huors``) is read
#: as the unit (:func:`_unit`), others with the same letters are not units
_UNITS = {"minutes": 1, "minute": 1, "mins": 1, "min": 1, "hours": 60, "hour": 60, "hrs": 60, "hr": 60, "h": 60}


def hash_ngrams(text: str) -> np.ndarray:
    """``[K]`` int64 bucket ids in ``[1, NGRAM_BUCKETS)``: word unigrams and bigrams and the character
    3-grams of ``<word>`` (lower-case, letters and digits), CRC32-hashed (the same on every machine)."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    grams = [f"w:{w}" for w in words] + [f"b:{a} {b}" for a, b in zip(words, words[1:])]
    grams += [f"c:{p[i:i + 3]}" for w in words for p in (f"<{w}>",) for i in range(len(p) - 2)]
    return np.array([zlib.crc32(g.encode()) % (NGRAM_BUCKETS - 1) + 1 for g in grams] or [0], np.int64)


def stated_end(text: str, published: np.datetime64) -> np.datetime64:
    """The time a report says things end: its first clock time (the next one after ``published``), else
    ``published`` plus its first duration (a number then minutes or hours, the unit read through a swap of two
    letters: ``90 minuets``); ``NaT`` when it states neither."""
    low = text.lower()
    m = _CLOCK.search(low)
    if m:
        day = np.datetime64(published, "D").astype("datetime64[ns]")
        t = day + np.timedelta64(int(m.group(1)) * 60 + int(m.group(2)), "m")
        return t if t > published else t + np.timedelta64(1, "D")
    for m in _SPAN.finditer(low):
        per = _unit(m.group(2))
        if per:
            return published + np.timedelta64(int(round(float(m.group(1)) * per * 60)), "s")
    return np.datetime64("NaT", "ns")


def _unit(word: str) -> int:
    """Minutes per ``word`` as a unit of time (:data:`_UNITS`), also with two of its letters swapped; 0: none."""
    if word in _UNITS:
        return _UNITS[word]
    for unit, per in _UNITS.items():
        if len(unit) > 3 and len(word) == len(unit):
            diff = [i for i, (a, b) in enumerate(zip(word, unit)) if a != b]
            if len(diff) == 2 and word[diff[0]] == unit[diff[1]] and word[diff[1]] == unit[diff[0]]:
                return per
    return 0


@dataclass(frozen=True)
class ReportOptions:
    """How reports reach tokens (``data.report_*`` fields; :meth:`of` reads them from a ``DataConfig``)."""

    hops: int = 2
    hours: float = 3.0
    radius_km: float = 1.0
    locations: str | None = None
    encoder: str | None = None
    after_hours: float = 0.5

    @classmethod
    def of(cls, d) -> "ReportOptions":
        """The options of a ``DataConfig`` (checked: ``ConfigError`` naming the fields)."""
        hops, hours, km, after = (getattr(d, f"report_{k}", v) for k, v in (
            ("hops", 2), ("hours", 3.0), ("radius_km", 1.0), ("after_hours", 0.5)))
        num = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)  # noqa: E731
        if not (isinstance(hops, int) and not isinstance(hops, bool) and 0 <= hops <= 64 and num(hours) and hours > 0
                and num(km) and km > 0 and num(after) and after >= 0):
            raise ConfigError(f"data.report_hops = {hops!r}, data.report_hours = {hours!r}, data.report_radius_km = "
                              f"{km!r}, data.report_after_hours = {after!r}: expected 0 to 64 hops, a positive number "
                              f"of hours and of km and hours after a stated end >= 0")
        return cls(hops, float(hours), float(km), getattr(d, "locations", None), getattr(d, "text_encoder", None),
                   float(after))


def _coordinates(nx_graph, sensor_ids, opts: ReportOptions, origin) -> tuple[np.ndarray, np.ndarray]:
    if opts.locations:
        from ..graph.locations import read_locations
        ids, lat, lon = read_locations(opts.locations)
        pos = {s: i for i, s in enumerate(ids)}
        idx = [pos.get(s, -1) for s in sensor_ids]
        return (np.array([lat[i] if i >= 0 else np.nan for i in idx]),
                np.array([lon[i] if i >= 0 else np.nan for i in idx]))
    nodes = {} if nx_graph is None else {str(d.get("sensor_id", v)): d for v, d in nx_graph.nodes(data=True)}
    lat = np.array([float(nodes.get(s, {}).get("lat", np.nan)) for s in sensor_ids])
    lon = np.array([float(nodes.get(s, {}).get("lon", np.nan)) for s in sensor_ids])
    if np.isnan(lat).all():
        raise ConfigError(f"{where(origin)}: reports placed by lat/lon need the sensors' locations: set "
                          f"data.locations to a graph_sensor_locations.csv (or give a graph with node lat/lon)")
    return lat, lon


def _places(table, sensor_ids, nx_graph, opts: ReportOptions) -> tuple[np.ndarray, list]:
    """``[R, N]`` bool: the sensors each report names (all for a network-wide one); bad rows listed."""
    from ..graph.coords import haversine_km

    col = {s: i for i, s in enumerate(sensor_ids)}
    R, N = len(table), len(sensor_ids)
    at = np.zeros((R, N), bool)
    bad = []
    has_ll = ~np.isnan(table.lat)
    if has_ll.any():
        lat, lon = _coordinates(nx_graph, sensor_ids, opts, table.origin)
        d = haversine_km(table.lat[has_ll, None], table.lon[has_ll, None], lat[None], lon[None])  # [R', N]
        at[has_ll] = np.nan_to_num(d, nan=np.inf) <= opts.radius_km
    for r in range(R):  # one pass over the reports (not over tokens)
        s = table.sensors[r]
        if s:
            if s not in col:
                bad.append((r, f"sensor {s!r} is not a sensor of the series (e.g. {list(sensor_ids)[:3]})"))
            else:
                at[r, col[s]] = True
        elif has_ll[r] and not at[r].any():
            bad.append((r, f"lat/lon {table.lat[r]}, {table.lon[r]} is outside the network: no sensor within "
                           f"{opts.radius_km} km (data.report_radius_km)"))
        elif not has_ll[r]:
            at[r] = True  # network-wide
    return at, bad


def _upstream(at: np.ndarray, graph, hops: int) -> np.ndarray:
    """``[R, N]`` hop count (``255``: not reached) from each report's sensors against the edges' direction."""
    hop = np.where(at, 0, 255).astype(np.uint8)
    if graph is None or hops <= 0 or graph.edge_index.numel() == 0:
        return hop
    src, dst = graph.edge_index.cpu()
    front = torch.from_numpy(at).float()
    seen = torch.from_numpy(at)
    for h in range(1, hops + 1):
        reach = torch.zeros_like(front).index_add_(1, src, front[:, dst]) > 0  # u -> v: v reached gives u
        new = reach & ~seen
        hop[new.numpy()] = h
        seen, front = seen | new, new.float()
    return hop


class ReportTokens:
    """Reports placed on a series of ``T`` steps and ``N`` sensors (module docstring).

    Args:
        table: the :class:`~stgraph.io.reports.ReportTable` read.
        series: the series (its timestamps and sensor ids).
        nx_graph, graph: the road graph (networkx, for node locations; PyG, for the upstream hops), or ``None``.
        opts: :class:`ReportOptions`.
        skip_bad_rows: reports at an unknown sensor or outside the network are skipped and counted
            instead of refused.
        quiet: log the placement at debug level (a forecast request's reports), not info (a file's).

    Shapes: :attr:`slots` ``[T, N, M]`` int32, :attr:`hops` ``[T, N, M]`` uint8; per report ``[R]``
    publication time (s), first step, whether it gives an end, and its n-grams (:attr:`ngrams` flat,
    :attr:`starts` / :attr:`lengths`) or :attr:`vectors` ``[R, D]``.
    """

    def __init__(self, table, series, nx_graph=None, graph=None, opts: ReportOptions = ReportOptions(),
                 skip_bad_rows: bool = False, quiet: bool = False):
        at, bad = _places(table, list(series.sensor_ids), nx_graph, opts)
        if bad and not skip_bad_rows:
            r, why = bad[0]
            raise BadRowError(f"{where(table.origin)}: line {table.lines[r]}: {why}; fix the row or pass "
                              f"--skip-bad-rows (data.skip_bad_rows) to leave bad rows out", table.lines[r], why)
        if bad:
            log.warning("%s: %d report(s) skipped: unknown sensor or outside the network (first: line %d, %s)",
                        table.origin, len(bad), table.lines[bad[0][0]], bad[0][1])
            keep = np.ones(len(table), bool)
            keep[[r for r, _ in bad]] = False
            table, at = table.select(keep), at[keep]
        self.origin, self.texts = table.origin, list(table.texts)
        self.skipped = len(table.skipped) + len(bad)
        ts = np.asarray(series.timestamps).astype("datetime64[ns]")
        T, N = len(ts), at.shape[1]
        hop = _upstream(at, graph, opts.hops)
        first = np.searchsorted(ts, table.times, side="left")
        said = np.array([stated_end(t, p) for t, p in zip(self.texts, table.times)], "datetime64[ns]")
        stop = np.where(~np.isnat(table.ends), table.ends, np.where(
            np.isnat(said), table.times + np.timedelta64(int(opts.hours * 3600), "s"),
            said + np.timedelta64(int(opts.after_hours * 3600), "s")))
        last = np.searchsorted(ts, stop, side="left")  # steps < end
        self._place(first, np.maximum(last, first), hop, opts.hops, T, N)
        self.first = torch.from_numpy(first.astype(np.int64))
        self.published = torch.from_numpy(table.times.astype(np.int64) // 10**9)   # [R] seconds
        self.step_seconds = torch.from_numpy(ts.astype(np.int64) // 10**9)         # [T]
        self.open = torch.from_numpy(np.isnat(table.ends))
        self.stated = torch.from_numpy(~np.isnat(said))
        self.said_end = torch.from_numpy(np.where(np.isnat(said), table.times, said).astype(np.int64) // 10**9)
        grams = [hash_ngrams(t) for t in self.texts]
        self.lengths = torch.tensor([len(g) for g in grams], dtype=torch.long)
        self.starts = torch.cumsum(self.lengths, 0) - self.lengths
        self.ngrams = torch.from_numpy(np.concatenate(grams)) if grams else torch.zeros(0, dtype=torch.long)
        self.vectors = None if not opts.encoder else _encode_texts(self.texts, opts.encoder)
        span = f"{iso(table.times.min())} .. {iso(table.times.max())}" if len(table) else "(none)"
        log.log(logging.DEBUG if quiet else logging.INFO,
                "%s: %d report(s) published %s placed on %d token(s) (up to %d at one), %d hop(s) upstream; "
                "steps outside get no text signal", self.origin, len(self.texts), span,
                int((self.slots[..., 0] >= 0).sum()), self.slots.shape[-1], opts.hops)

    def _place(self, first, last, hop, hops: int, T: int, N: int) -> None:
        pr, pn = np.nonzero(hop <= hops)                          # (report, sensor) pairs
        dur = (last - first)[pr]
        e_pair = np.repeat(np.arange(pr.size), dur)
        within = np.arange(e_pair.size) - np.repeat(np.cumsum(dur) - dur, dur)
        row, node, rep = first[pr][e_pair] + within, pn[e_pair], pr[e_pair]
        key = row.astype(np.int64) * N + node
        order = np.lexsort((rep, key))
        key, rep, node, row = key[order], rep[order], node[order], row[order]
        start = np.r_[0, np.flatnonzero(np.diff(key)) + 1] if key.size else np.zeros(0, np.int64)
        slot = np.arange(key.size) - np.repeat(start, np.diff(np.r_[start, key.size]))
        M = int(slot.max()) + 1 if slot.size else 1
        slots = np.full((T, N, M), -1, np.int32)
        hops_ = np.zeros((T, N, M), np.uint8)
        slots[row, node, slot] = rep
        hops_[row, node, slot] = hop[rep, node]
        self.slots, self.hops = torch.from_numpy(slots), torch.from_numpy(hops_)

    def to(self, device) -> "ReportTokens":
        for k in ("slots", "hops", "first", "published", "step_seconds", "open", "lengths", "starts", "ngrams",
                  "stated", "said_end"):
            setattr(self, k, getattr(self, k).to(device))
        if self.vectors is not None:
            self.vectors = self.vectors.to(device)
        return self

    def gather(self, rows_in: torch.Tensor, rows_out: torch.Tensor) -> dict:
        """The reports of windows ``rows_in [B, T_in]`` / ``rows_out [B, T_out]``, each distinct one once.

        Returns:
            ``slot_in [B, T_in, N, M]`` / ``slot_out [B, T_out, N, M]`` long: index into this batch's
            distinct reports (``-1``: none; at the forecast steps only reports published by the last input
            step), ``age_in`` / ``age_out`` (hours since publication) and ``hop_in`` / ``hop_out`` float of the
            same shape, ``left_in`` / ``left_out`` (hours until the end the words state, 0 where they state
            none), ``open [U]`` float (1: no end given, the weight decays), ``stated [U]`` float (1: the words
            state an end), and the ``U`` distinct
            reports' ``ngrams [K]`` / ``offsets [U]`` (an embedding bag's input) or ``vectors [U, D]``.
        """
        s_in = self.slots[rows_in].long()
        s_out = self.slots[rows_out].long()
        origin = rows_in[:, -1].view(-1, 1, 1, 1)
        if self.first.numel():  # (no report at all: every slot is -1 already)
            s_out = torch.where((s_out >= 0) & (self.first[s_out.clamp(min=0)] <= origin), s_out, -1)
        both = torch.cat([s_in.flatten(), s_out.flatten()])
        uniq, inv = torch.unique(both[both >= 0], return_inverse=True)
        compact = torch.full_like(both, -1)
        compact[both >= 0] = inv
        c_in, c_out = compact[:s_in.numel()].view_as(s_in), compact[s_in.numel():].view_as(s_out)
        out = {"open": self.open[uniq].float(), "stated": self.stated[uniq].float()}
        for part, rows, slots in (("in", rows_in, c_in), ("out", rows_out, c_out)):
            pub = self.published[uniq][slots.clamp(min=0)] if uniq.numel() else torch.zeros_like(slots)
            said = self.said_end[uniq][slots.clamp(min=0)] if uniq.numel() else torch.zeros_like(slots)
            now = self.step_seconds[rows][:, :, None, None]
            age = (now - pub).float() / 3600.0
            has = (slots >= 0) & (self.stated[uniq][slots.clamp(min=0)] if uniq.numel() else slots >= 0)
            out[f"slot_{part}"] = slots
            out[f"age_{part}"] = torch.where(slots >= 0, age, 0.0)
            out[f"left_{part}"] = torch.where(has, (said - now).float() / 3600.0, 0.0)
            out[f"hop_{part}"] = self.hops[rows].float() * (slots >= 0)
        if self.vectors is not None:
            out["vectors"] = self.vectors[uniq]
        else:
            lengths = self.lengths[uniq]
            out["offsets"] = torch.cumsum(lengths, 0) - lengths
            pos = torch.repeat_interleave(self.starts[uniq] - out["offsets"], lengths) + torch.arange(
                int(lengths.sum()), device=lengths.device)
            out["ngrams"] = self.ngrams[pos]
        return out


def join_text(a: dict, b: dict) -> dict:
    """Two batches' text (``{source: ReportTokens.gather(...)}``) as one batch's, ``a``'s windows first (the
    replay of an update joins new and old windows): ``b``'s report indices are shifted past ``a``'s reports."""
    out = {}
    for name, x in a.items():
        y, u = b[name], len(x["open"])
        j = {k: torch.cat([x[k], y[k]]) for k in ("open", "stated")}
        if "vectors" in x:
            j["vectors"] = torch.cat([x["vectors"], y["vectors"]])
        else:
            j["ngrams"] = torch.cat([x["ngrams"], y["ngrams"]])
            j["offsets"] = torch.cat([x["offsets"], y["offsets"] + len(x["ngrams"])])
        for part in ("in", "out"):
            j[f"slot_{part}"] = torch.cat([x[f"slot_{part}"], torch.where(y[f"slot_{part}"] >= 0, y[f"slot_{part}"] + u,
                                                                        -1)])
            for k in ("age", "hop", "left"):
                j[f"{k}_{part}"] = torch.cat([x[f"{k}_{part}"], y[f"{k}_{part}"]])
        out[name] = j
    return out


def _encode_texts(texts: list, path: str) -> torch.Tensor:
    """``[R, D]`` sentence embeddings of ``texts`` by the sentence-transformers model in the folder ``path``
    (never downloaded), each distinct text embedded once."""
    from pathlib import Path

    if not Path(path).is_dir():
        raise ConfigError(f"data.text_encoder = {path!r}: not a folder; expected a sentence-transformers model "
                          f"saved on disk (nothing is downloaded)")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ConfigError("data.text_encoder needs the sentence-transformers package: pip install "
                          "'stgraph[text]'") from None
    distinct = sorted(set(texts))
    model = SentenceTransformer(path, local_files_only=True)
    vec = np.asarray(model.encode(distinct, convert_to_numpy=True), np.float32)
    pos = {t: i for i, t in enumerate(distinct)}
    return torch.from_numpy(vec[[pos[t] for t in texts]])


def read_sources(specs, series, nx_graph=None, graph=None, data_cfg=None) -> list:
    """The covariate sources of ``specs`` (:func:`stgraph.io.covariates.read_covariates`), reports files placed
    on ``series`` (their :attr:`~stgraph.io.covariates.Source.table` becomes a :class:`ReportTokens`).

    Args:
        specs: covariate specs (``data.covariates``).
        series: the series the sources are aligned to.
        nx_graph, graph: the road graph (networkx / PyG in the series' sensor order), or ``None``.
        data_cfg: the run's ``DataConfig`` (tolerance, time zone, ``report_*``, ``text_encoder``,
            ``skip_bad_rows``); ``None``: the defaults.
    """
    from ..io.covariates import read_covariates

    get = (lambda k, v=None: getattr(data_cfg, k, v)) if data_cfg is not None else (lambda k, v=None: v)
    skip = bool(get("skip_bad_rows", False))
    sources = read_covariates(specs, series, nx_graph, get("covariate_tolerance"), get("time_zone"), skip)
    opts = ReportOptions.of(data_cfg) if data_cfg is not None else ReportOptions()
    for s in sources:
        if s.kind == "text":
            s.table = ReportTokens(s.table, series, nx_graph, graph, opts, skip)
    return sources
