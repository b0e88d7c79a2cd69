"""The built wheel carries what an installed stgraph needs outside the checkout.

An editable install finds the dataset manifests in the checkout's top-level ``datasets/``;
a wheel (``pip install stgraph``) must carry them itself, with the model configs.
"""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    pytest.importorskip("setuptools")
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(out), str(ROOT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = out.glob("stgraph-*.whl")
    return path


def test_wheel_carries_manifests_and_configs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    manifests = sorted(p.name for p in (ROOT / "datasets").glob("*.yaml"))
    configs = sorted(p.name for p in (ROOT / "stgraph" / "configs").glob("*.yaml"))
    assert "metr-la.yaml" in manifests and "stgt.yaml" in configs
    missing = [m for m in manifests if f"stgraph/datasets/manifests/{m}" not in names]
    missing += [c for c in configs if f"stgraph/configs/{c}" not in names]
    assert not missing, f"wheel lacks {missing}"
    modules = {n for n in names if n.endswith(".py")}
    on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / "stgraph").rglob("*.py")
               if "__pycache__" not in p.parts}
    assert on_disk <= modules, f"wheel lacks modules {sorted(on_disk - modules)}"


def test_unpacked_wheel_lists_datasets_outside_the_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import stgraph.datasets as d, stgraph; "
            "print(stgraph.__file__); print(' '.join(d.list_datasets()))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    where, names = proc.stdout.splitlines()
    assert where.startswith(str(site))
    expected = sorted(p.stem for p in (ROOT / "datasets").glob("*.yaml"))
    assert names.split() == expected
