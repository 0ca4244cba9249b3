"""Writes the error-reason table of docs/polyglot.md from the ErrorReason enum in protos/."""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import grpc
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
ENUM_FILE = "sssn/v1/error_reason.proto"
ENUM_NAME = "ErrorReason"
PREFIX = "ERROR_REASON_"
DOC = ROOT / "docs" / "polyglot.md"
BEGIN = "<!-- BEGIN GENERATED: error reasons (tools/gen_error_docs.py; do not edit) -->"
END = "<!-- END GENERATED: error reasons -->"

# Field numbers in descriptor.proto: FileDescriptorProto.enum_type = 5,
# EnumDescriptorProto.value = 2; SourceCodeInfo paths are built from them.
_ENUM_TYPE = 5
_ENUM_VALUE = 2


# Status code names and numbers, as every gRPC implementation spells them.
GRPC_CODES = {code.name: code.value[0] for code in grpc.StatusCode}

# Each value's comment starts with the gRPC code it is sent with: "NOT_FOUND: ...".
_DOCUMENTED = re.compile(r"^(?P<code>[A-Z_]+): (?P<meaning>.+)$", re.DOTALL)


@dataclass(frozen=True)
class Reason:
    """One ErrorReason value as the table shows it."""

    reason: str
    number: int
    code: str
    meaning: str


def read_reasons(proto_root: Path = PROTO_ROOT) -> list[Reason]:
    """Compiles error_reason.proto with its comments and returns every reason but UNSPECIFIED.

    Raises:
        SystemExit: if protoc fails, or a value's comment does not start with a
            gRPC status code name followed by ": ".
    """
    well_known = resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "error_reason.binpb"
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{proto_root}",
                f"-I{well_known}",
                "--include_source_info",
                f"--descriptor_set_out={out}",
                str(proto_root / ENUM_FILE),
            ]
        )
        if status != 0:
            raise SystemExit(f"protoc failed with status {status}")
        descriptors = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    (file,) = descriptors.file
    comments = {
        tuple(location.path): location.leading_comments
        for location in file.source_code_info.location
    }
    found = [(index, enum) for index, enum in enumerate(file.enum_type) if enum.name == ENUM_NAME]
    if not found:
        raise SystemExit(f"{ENUM_FILE} declares no enum {ENUM_NAME}")
    ((enum_index, enum),) = found
    reasons = []
    for value_index, value in enumerate(enum.value):
        if value.number == 0:
            continue
        comment = comments.get((_ENUM_TYPE, enum_index, _ENUM_VALUE, value_index), "")
        documented = _DOCUMENTED.match(" ".join(comment.split()))
        if documented is None or documented["code"] not in GRPC_CODES:
            raise SystemExit(
                f"{value.name}: its comment must start with the gRPC status code it is sent "
                f'with, as in "NOT_FOUND: the named channel does not exist." (got {comment!r})'
            )
        reasons.append(
            Reason(
                reason=value.name.removeprefix(PREFIX),
                number=value.number,
                code=documented["code"],
                meaning=documented["meaning"][:1].upper() + documented["meaning"][1:],
            )
        )
    return reasons


def render_table(reasons: list[Reason]) -> str:
    """The Markdown table, one row per reason, in enum order."""
    rows = [
        "| `ErrorInfo.reason` | enum value (number) | gRPC status (code) | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for item in reasons:
        meaning = item.meaning.replace("|", "\\|")
        rows.append(
            f"| `{item.reason}` | `{PREFIX}{item.reason}` ({item.number}) "
            f"| `{item.code}` ({GRPC_CODES[item.code]}) | {meaning} |"
        )
    return "\n".join(rows)


def render(document: str, reasons: list[Reason]) -> str:
    """`document` with the text between the markers replaced by the current table.

    Raises:
        SystemExit: if the markers are missing or out of order.
    """
    start, end = document.find(BEGIN), document.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"the markers {BEGIN!r} and {END!r} are missing from {DOC}")
    head = document[: start + len(BEGIN)]
    return f"{head}\n{render_table(reasons)}\n{document[end:]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the committed table differs from the enum",
    )
    args = parser.parse_args(argv)
    current = DOC.read_text(encoding="utf-8")
    wanted = render(current, read_reasons())
    if args.check:
        if wanted != current:
            print(f"{DOC.relative_to(ROOT)} is stale: run `make docs`", file=sys.stderr)
            return 1
        return 0
    if wanted != current:
        DOC.write_text(wanted, encoding="utf-8")
        print(f"updated {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
