"""The generated modules: never stale, importable under sssn_proto, shipped in the wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import gen_protos  # noqa: E402


def test_generated_modules_match_the_protos(tmp_path: Path) -> None:
    fresh = {path.name: path.read_text() for path in gen_protos.generate(tmp_path)}
    in_tree = {
        path.name: path.read_text()
        for path in (ROOT / gen_protos.PACKAGE_DIR).iterdir()
        if path.name.endswith(gen_protos.GENERATED_SUFFIXES)
    }
    assert fresh == in_tree, "run `make proto`: sssn_proto/v1 is stale"
    assert all("from sssn.v1" not in text for text in fresh.values())


def test_the_wheel_ships_the_generated_modules(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("sssn_grpc-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("store_service_pb2.py", "store_service_pb2_grpc.py", "error_reason_pb2.py"):
        assert f"sssn_proto/v1/{module}" in names
    assert "sssn_server/app.py" in names
    assert not any(name.startswith("sssn/") for name in names)
