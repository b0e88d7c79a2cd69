"""Pool the per-seed rows of several ``bench_cross_modal.py`` tables into one mean over all their seeds.

Each table written by ``bench_cross_modal.py`` holds a "Seed S alone" table per seed; this reads them back (the
MAE cells as printed, three decimals) and writes the mean over every seed of the variants that all the seeds
ran, the change of each against ``flags``, and the same change seed by seed.

Usage: ``python benchmarks/pool_cross_modal.py benchmarks/results/cross_modal.md
benchmarks/results/cross_modal_seeds45.md [--out benchmarks/results/cross_modal_pooled.md]``
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_cross_modal import GROUPS  # noqa: E402

COLS = [f"{g} {m}" for g in GROUPS for m in ("15m", "30m", "60m")]


def seed_rows(text: str, origin: str) -> dict:
    """``{seed: {variant: [MAE per column of COLS]}}`` from the "Seed S alone" tables of a bench table."""
    out: dict = {}
    parts = re.split(r"\nSeed (\d+) alone:\n", text)
    for seed, body in zip(parts[1::2], parts[2::2]):
        rows = {}
        for line in body.split("\n\nChange against")[0].splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == len(COLS) + 3 and re.fullmatch(r"-?\d+\.\d+", cells[1]):
                rows[cells[0]] = [float(c) for c in cells[1:1 + len(COLS)]]
        if not rows:
            raise ValueError(f"{origin}: seed {seed}'s table has no rows of {len(COLS)} MAE columns")
        out[int(seed)] = rows
    if not out:
        raise ValueError(f"{origin}: no 'Seed S alone' table (expected a table written by bench_cross_modal.py)")
    return out


def change(rows: dict, base: str = "flags") -> dict:
    """``{variant: [% change against base per column of COLS after 'all']}``."""
    b = np.array(rows[base])
    return {v: (100 * (np.array(r) / b - 1))[3:].tolist() for v, r in rows.items() if v != base}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tables", nargs="+")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cross_modal_pooled.md"))
    args = ap.parse_args()
    from stgraph.files import atomic_write

    by_seed: dict = {}
    for path in args.tables:
        for seed, rows in seed_rows(Path(path).read_text(), path).items():
            if seed in by_seed:
                raise ValueError(f"{path}: seed {seed} is also in an earlier table; pool each seed once")
            by_seed[seed] = rows
    variants = [v for v in next(iter(by_seed.values())) if all(v in r for r in by_seed.values())]
    mean = {v: np.mean([by_seed[s][v] for s in by_seed], 0).tolist() for v in variants}
    seeds = ",".join(str(s) for s in sorted(by_seed))
    head = "| covariates | " + " | ".join(COLS[3:]) + " |"
    rule = "|---|" + "---|" * (len(COLS) - 3)
    lines = ["# Text reports beside the series: pooled over seeds " + seeds, "",
             f"Command: `python benchmarks/pool_cross_modal.py {' '.join(args.tables)}` (the per-seed rows of those "
             f"tables, MAE as printed there; the variants every seed ran).", "",
             "Mean MAE over the seeds:", "", "| covariates | " + " | ".join(COLS) + " |", "|---|" + "---|" * len(COLS)]
    lines += [f"| {v} | " + " | ".join(f"{x:.3f}" for x in mean[v]) + " |" for v in variants]
    lines += ["", "Change of the mean against `flags` (negative: lower error):", "", head, rule]
    lines += [f"| {v} | " + " | ".join(f"{x:+.1f} %" for x in c) + " |" for v, c in change(mean).items()]
    summary = len(lines)  # printed: the mean and its change; the seed-by-seed tables only go to the file
    for v in variants:
        if v == "flags":
            continue
        lines += ["", f"`{v}` against `flags`, seed by seed:", "", head.replace("covariates", "seed"), rule]
        lines += [f"| {s} | " + " | ".join(f"{x:+.1f} %" for x in change(by_seed[s])[v]) + " |" for s in sorted(by_seed)]
    atomic_write(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines[:summary]))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
