"""Compare two output folders of benchmarks/same_numbers.sh number by number.

    python benchmarks/compare_outputs.py BEFORE AFTER [--tol 1e-6]

For each result file present in either folder (pictures and logs aside; times, durations and paths dropped
as in benchmarks/digest.py): JSON/YAML values, CSV cells and checkpoint tensors are compared; the report says
which files are bit-identical, which agree within ``--tol`` (relative) and which differ, with the largest
difference. The federated simulation is not bit-reproducible run to run even on one tree (Flower's FedAvg
sums the client updates in the order they arrive), so its files are judged within the tolerance.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from digest import ROOTS, SKIP, SKIP_NAMES, VOLATILE, _markdown  # noqa: E402


def _load(path: Path, root: Path):
    ROOTS[:] = [str(root.resolve()), str(root)]
    suffix = path.suffix.lower()
    if suffix in {".pt", ".pth"}:
        return _strip(torch.load(path, map_location="cpu", weights_only=False))
    text = path.read_text(errors="replace")
    for r in ROOTS:
        text = text.replace(r, "<OUT>")
    if suffix == ".json":
        return _strip(json.loads(text))
    if suffix in {".yaml", ".yml"}:
        return _strip(yaml.safe_load(text))
    if suffix == ".csv":
        rows = list(csv.reader(io.StringIO(text)))
        keep = [i for i, h in enumerate(rows[0]) if not VOLATILE.search(h)] if rows else []
        return [[_num(r[i]) for i in keep if i < len(r)] for r in rows]
    if suffix == ".md":
        return [[_num(c.strip()) for c in line.split("|")] for line in _markdown(text).splitlines()]
    return text


def _num(s: str):
    try:
        return float(s.replace(",", "")) if s and s[0] in "-0123456789." else s
    except ValueError:
        return s


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if not VOLATILE.search(str(k))}
    if isinstance(obj, (list, tuple)):
        return [_strip(v) for v in obj]
    if isinstance(obj, str):
        for r in ROOTS:
            obj = obj.replace(r, "<OUT>")
    return obj


def diff(a, b, where: str = "") -> tuple[float, str]:
    """The largest relative difference between ``a`` and ``b`` (``inf`` for a structural one) and where."""
    if isinstance(a, dict) and isinstance(b, dict):
        worst = (0.0, "")
        for k in set(a) | set(b):
            d = (math.inf, f"{where}/{k} missing") if k not in a or k not in b else diff(a[k], b[k], f"{where}/{k}")
            worst = max(worst, d, key=lambda t: t[0])
        return worst
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return math.inf, f"{where} length {len(a)} vs {len(b)}"
        worst = (0.0, "")
        for i, (x, y) in enumerate(zip(a, b)):
            worst = max(worst, diff(x, y, f"{where}[{i}]"), key=lambda t: t[0])
        return worst
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or a.dtype != b.dtype:
            return math.inf, f"{where} {a.dtype}{tuple(a.shape)} vs {b.dtype}{tuple(b.shape)}"
        if torch.equal(a, b) or a.numel() == 0:
            return 0.0, where
        if not a.is_floating_point():
            return math.inf, f"{where} integers differ"
        x, y = a.double(), b.double()
        return float(((x - y).abs() / (y.abs().max().clamp_min(1e-12))).nan_to_num(math.inf).max()), where
    if isinstance(a, float) and isinstance(b, (int, float)) or isinstance(b, float) and isinstance(a, (int, float)):
        if a == b or (math.isnan(a) and math.isnan(b)):
            return 0.0, where
        return abs(a - b) / max(abs(a), abs(b), 1e-12), where
    return (0.0, where) if a == b else (math.inf, f"{where}: {str(a)[:60]!r} vs {str(b)[:60]!r}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--tol", type=float, default=1e-6)
    args = p.parse_args(argv)
    files = lambda root: {q.relative_to(root) for q in root.rglob("*") if q.is_file()  # noqa: E731
                          and q.suffix.lower() not in SKIP and q.name not in SKIP_NAMES and q.name != "digest.txt" and q.suffix != ".npz"}
    names = sorted(files(args.before) | files(args.after))
    same = close = 0
    bad = []
    for name in names:
        a, b = args.before / name, args.after / name
        if not a.exists() or not b.exists():
            bad.append(f"{name}: only in {'after' if b.exists() else 'before'}")
            continue
        d, where = diff(_load(a, args.before), _load(b, args.after))
        if d == 0:
            same += 1
        elif d <= args.tol:
            close += 1
        else:
            bad.append(f"{name}: {where} (relative difference {d:.3g})")
    print(f"{len(names)} files: {same} identical, {close} within {args.tol:g}, {len(bad)} different")
    for line in bad:
        print("  " + line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
