"""The generated modules: never stale, importable under sssn_proto, shipped in the wheel."""

from __future__ import annotations

import os
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


def build_distributions(directory: Path) -> subprocess.CompletedProcess[str]:
    """`python -m build` of the project into `directory`, as a release is
    built (the venv's setuptools, without fetching an isolated one)."""
    return subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(directory), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
        # Elsewhere than the clone: a `build/` folder there would stand in for the package.
        cwd=directory.parent,
        # As a release is built: with byte-compiling, which the test runner may turn off
        # (setuptools warns that it skips it).
        env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    )


def build_wheel(directory: Path) -> Path:
    """The project's wheel, built into `directory` as a release would be."""
    directory.mkdir(parents=True, exist_ok=True)
    build_distributions(directory)
    (wheel,) = directory.glob("sssn_grpc-*.whl")
    return wheel


def test_the_sdist_and_the_wheel_build_without_warnings(tmp_path: Path) -> None:
    built = build_distributions(tmp_path / "dist")
    names = sorted(path.name for path in (tmp_path / "dist").iterdir())
    assert all(name.startswith("sssn_grpc-") for name in names), names
    assert any(name.endswith(".tar.gz") for name in names), names
    assert any(name.endswith(".whl") for name in names), names
    output = built.stdout + built.stderr
    assert "warning" not in output.lower(), output


def test_the_wheel_ships_the_generated_modules(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("store_service_pb2.py", "store_service_pb2_grpc.py", "error_reason_pb2.py"):
        assert f"sssn_proto/v1/{module}" in names
    assert "sssn_server/app.py" in names
    assert not any(name.startswith("sssn/") for name in names)


def test_the_client_installs_and_runs_without_the_server_dependencies(tmp_path: Path) -> None:
    """`pip install sssn-grpc` gives the client and the `sssn` command; the
    server's dependencies come only with the `server` extra."""
    wheel = build_wheel(tmp_path / "dist")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util, sssn_client;"
            " print(sssn_client.SSSNClient.__name__,"
            " [m for m in ('aiosqlite', 'asyncpg', 'prometheus_client', 'grpc_health')"
            " if importlib.util.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.strip() == "SSSNClient []", probe.stderr
    for command in ("sssn", "sssn-grpc"):
        version = subprocess.run(
            [str(venv / "bin" / command), "--version"], capture_output=True, text=True, timeout=60
        )
        assert version.stdout.strip() == "sssn 0.1.0", version.stderr
    server = subprocess.run(
        [str(venv / "bin" / "sssn-server"), "--version"], capture_output=True, text=True, timeout=60
    )
    assert server.returncode == 2
    assert server.stderr.strip().endswith("pip install 'sssn-grpc[server]'")
    assert "Traceback" not in server.stderr
    # A store in-process needs the server too: one line says what to install.
    embedded = subprocess.run(
        [str(venv / "bin" / "sssn"), "--store", str(tmp_path / "store"), "channels"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert embedded.returncode == 2
    assert "pip install 'sssn-grpc[server]'" in embedded.stderr
    assert "Traceback" not in embedded.stderr and not (tmp_path / "store").exists()
