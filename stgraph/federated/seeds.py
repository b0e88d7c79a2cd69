"""The seeds of a federation's training runs, derived from the clients' ``train.seed``.

Every local training run of a client draws its own shuffles and dropout masks, still repeatable: its seed
is ``train.seed * SEED_STRIDE`` plus an offset that names the run. The values are fixed; changing one
changes every federated result.
"""
from __future__ import annotations

SEED_STRIDE = 1009
"""Multiplies ``train.seed`` before an offset is added (a prime above every offset a round adds, so two
``train.seed`` values never share a run's seed)."""

ROUND_STRIDE = 31
"""Multiplies the server round in a round's offset (a prime above the number of clients, so that round
``r`` of client ``c`` and round ``r'`` of client ``c'`` differ)."""

FINETUNE_OFFSET = 7919
"""The offset of the fine-tuning after the last round (a prime above ``ROUND_STRIDE`` x any number of rounds
run, so it meets no round's seed)."""


def round_seed(seed: int, server_round: int, partition_id: int) -> int:
    """The seed of client ``partition_id``'s local training in ``server_round``:
    ``seed * SEED_STRIDE + server_round * ROUND_STRIDE + partition_id``."""
    return seed * SEED_STRIDE + server_round * ROUND_STRIDE + partition_id


def finetune_seed(seed: int) -> int:
    """The seed of a client's fine-tuning after the last round: ``seed * SEED_STRIDE + FINETUNE_OFFSET``."""
    return seed * SEED_STRIDE + FINETUNE_OFFSET
