"""A digest of every result file under a folder, for the refactor check (benchmarks/same_numbers.sh).

    python benchmarks/digest.py OUT > digest.txt

One line per file: its path under OUT and a hash of its canonical content, so that two runs of the same
numbers give the same lines whatever the clock or the folder said:

* JSON / YAML: parsed, with every key that names a time, a duration, a host or a path dropped;
* checkpoints (``.pt``): every tensor, by name, with its dtype, shape and bytes (other entries as JSON);
* CSV: columns that name a time or a duration dropped; other text files: the text;
* pictures and logs are left out (their bytes carry dates and wall-clock times).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import sys
from pathlib import Path

import torch
import yaml

#: keys and columns that hold a time, a duration, a path or a machine, not a number of the model
VOLATILE = re.compile(r"time|date|second|minute|wall|cpu|clock|created|started|finished|elapsed|host|path|"
                      r"dir|folder|cwd|pid|command|argv|version|fingerprint|mtime|size_bytes|duration|_at$|"
                      r"ms$|_s$| s$|MB$|peak|rss|memory|throughput|per_s", re.I)
#: the folder being digested, spelled as "<OUT>" wherever a string names it
ROOTS: list[str] = []
SKIP_NAMES = {".stgraph-files.json"}  # the manifest of written files holds fingerprints of files with paths in them
SKIP = {".png", ".log", ".svg", ".pdf", ".lock"}


def _clean(obj):
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items() if not VOLATILE.search(str(k))}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        return f"tensor:{t.dtype}:{tuple(t.shape)}:{hashlib.sha256(t.view(torch.uint8).numpy().tobytes() if t.numel() else b'').hexdigest()[:16]}"
    if isinstance(obj, float):
        return repr(obj)
    if isinstance(obj, str):
        for root in ROOTS:
            obj = obj.replace(root, "<OUT>")
        return obj
    if isinstance(obj, (int, bool)) or obj is None:
        return obj
    return repr(type(obj))


def _markdown(text: str) -> str:
    """Markdown tables without their volatile columns (``train s``, ``peak MB``)."""
    out, keep = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            out.append(line)
            keep = None
            continue
        cells = line.strip().strip("|").split("|")
        if keep is None:
            keep = [i for i, h in enumerate(cells) if not VOLATILE.search(h.strip())]
        out.append("|".join(cells[i] for i in keep if i < len(cells)))
    return "\n".join(out)


def canonical(path: Path, root: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in SKIP or path.name in SKIP_NAMES or path.name.endswith(".tmp"):
        return None
    if suffix in {".json", ".yaml", ".yml", ".csv", ".md", ".txt"}:
        text = path.read_text().replace(str(root.resolve()), "<OUT>").replace(str(root), "<OUT>")
        if suffix == ".json":
            return json.dumps(_clean(json.loads(text)), sort_keys=True)
        if suffix in {".yaml", ".yml"}:
            return json.dumps(_clean(yaml.safe_load(text)), sort_keys=True)
        if suffix == ".md":
            return _markdown(text)
    if suffix in {".pt", ".pth"}:
        return json.dumps(_clean(torch.load(path, map_location="cpu", weights_only=False)), sort_keys=True)
    if suffix == ".csv":
        rows = list(csv.reader(io.StringIO(text)))
        if not rows:
            return ""
        keep = [i for i, h in enumerate(rows[0]) if not VOLATILE.search(h)]
        return "\n".join(",".join(r[i] for i in keep if i < len(r)) for r in rows)
    if suffix == ".txt":
        return text
    try:
        return path.read_text()
    except UnicodeDecodeError:
        return hashlib.sha256(path.read_bytes()).hexdigest()


def main(root: str) -> None:
    base = Path(root)
    ROOTS[:] = [str(base.resolve()), str(base)]
    for path in sorted(p for p in base.rglob("*") if p.is_file()):
        text = canonical(path, base)
        if text is not None:
            print(path.relative_to(base), hashlib.sha256(text.encode()).hexdigest()[:16])


if __name__ == "__main__":
    main(sys.argv[1])
