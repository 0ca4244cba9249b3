"""Generates the Python modules of the contract from protos/ into sssn_proto/v1/."""

from __future__ import annotations

import os
import re
import shutil
import sys
import sysconfig
import tempfile
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE_DIR = Path("sssn_proto") / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")

# protoc writes imports that mirror the proto package (`from sssn.v1 import`);
# the top-level name `sssn` belongs to the reference package, so rewrite them.
_IMPORT = re.compile(r"^from sssn\.v1 import ", re.MULTILINE)
# mypy-protobuf's .pyi files use the same form, but releases before 3.7 import
# and name modules by their full path (`import sssn.v1.event_pb2`, then
# `sssn.v1.event_pb2.Event`); only module paths end in `_pb2`, so proto names
# such as `sssn.v1.Event` in docstrings are left alone.
_MODULE_PATH = re.compile(r"\bsssn\.v1\.(?=\w+_pb2\b)")


def _rewrite_imports(text: str) -> str:
    """Points the generated imports at `sssn_proto.v1` instead of `sssn.v1`."""
    text = _IMPORT.sub("from sssn_proto.v1 import ", text)
    return _MODULE_PATH.sub("sssn_proto.v1.", text)


def _mypy_plugin() -> str:
    """Path of mypy-protobuf's protoc plugin, found next to this interpreter first.

    `make` runs `.venv/bin/python` without activating the venv, and a package
    build runs in an isolated environment, so the plugin is often not on PATH.
    """
    scripts = [Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))]
    search = os.pathsep.join([*(str(folder) for folder in scripts), os.environ.get("PATH", "")])
    plugin = shutil.which("protoc-gen-mypy", path=search)
    if plugin is None:
        raise SystemExit("protoc-gen-mypy not found; install mypy-protobuf (the test extra)")
    return plugin


def generate(out_root: Path = ROOT) -> list[Path]:
    """Runs protoc on every file under protos/ and returns the written modules."""
    from grpc_tools import protoc

    protos = sorted(PROTO_ROOT.rglob("*.proto"))
    well_known = resources.files("grpc_tools") / "_proto"
    target = out_root / PACKAGE_DIR
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{PROTO_ROOT}",
                f"-I{well_known}",
                f"--plugin=protoc-gen-mypy={_mypy_plugin()}",
                f"--python_out={tmp}",
                # Typed stubs (.pyi) from mypy-protobuf: docstrings from the proto
                # comments, precise enum types and HasField/ClearField literals.
                "--mypy_opt=quiet",
                f"--mypy_out={tmp}",
                f"--grpc_python_out={tmp}",
                *(str(path) for path in protos),
            ]
        )
        if status != 0:
            raise SystemExit(f"protoc failed with status {status}")
        for stale in target.iterdir():
            if stale.name.endswith(GENERATED_SUFFIXES):
                stale.unlink()
        written = []
        for source in sorted((Path(tmp) / "sssn" / "v1").iterdir()):
            text = _rewrite_imports(source.read_text())
            destination = target / source.name
            destination.write_text(text)
            written.append(destination)
    return written


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT
    for path in generate(out):
        print(f"generated {path.relative_to(out)}")
