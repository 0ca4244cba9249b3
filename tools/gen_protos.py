"""Generates the Python modules of the contract from protos/ into sssn_proto/v1/."""

from __future__ import annotations

import re
import sys
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
                f"--python_out={tmp}",
                f"--pyi_out={tmp}",
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
            text = _IMPORT.sub("from sssn_proto.v1 import ", source.read_text())
            destination = target / source.name
            destination.write_text(text)
            written.append(destination)
    return written


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT
    for path in generate(out):
        print(f"generated {path.relative_to(out)}")
