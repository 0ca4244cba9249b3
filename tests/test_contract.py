"""The contract as other languages see it: buf lint, buf breaking, typed stubs, generated docs."""

from __future__ import annotations

import json
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2

from sssn_proto.v1 import error_reason_pb2

ROOT = Path(__file__).resolve().parent.parent
BUF = ROOT / ".tools" / "node_modules" / ".bin" / "buf"
BASELINE = ROOT / "protos" / "baseline" / "sssn-v1.binpb"
GENERATED = ROOT / "sssn_proto" / "v1"
DOCS = ROOT / "docs" / "polyglot.md"
TEMPLATES = ROOT / "docs" / "generate"


def buf(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Runs the pinned buf that `make test` installs into .tools/ (fails, never skips)."""
    if not BUF.exists():
        pytest.fail(f"{BUF.relative_to(ROOT)} is missing; `make test` installs it first")
    return subprocess.run(
        [str(BUF), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def contract_copy(tmp_path: Path) -> Path:
    """A scratch copy of buf.yaml and protos/ to break on purpose."""
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(ROOT / "protos" / "sssn", tmp_path / "protos" / "sssn")
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def append_to(path: Path, block: str, line: str) -> None:
    """Adds `line` at the end of the top-level `block` (such as "enum ErrorReason");
    `{number}` in it becomes the next number the block does not use yet."""
    text = path.read_text()
    start = text.index(f"\n{block} {{") + 1
    end = text.index("\n}", start)
    used = [int(number) for number in re.findall(r"\b(\d+)\b", text[start:end])]
    path.write_text(f"{text[:end]}\n{line.format(number=max(used) + 1)}{text[end:]}")


# buf lint


def test_buf_lint_passes() -> None:
    result = buf("lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_lint_rejects_what_the_style_guide_forbids(contract_copy: Path) -> None:
    service = contract_copy / "protos" / "sssn" / "v1" / "store_service.proto"
    edit(
        service,
        "  rpc GetSnapshot(GetSnapshotRequest) returns (GetSnapshotResponse);\n",
        "  rpc GetSnapshot(GetSnapshotRequest) returns (GetSnapshotResponse);\n"
        "  rpc DeleteSnapshot(GetSnapshotRequest) returns (Snapshot);\n",
    )
    result = buf("lint", "--error-format=json", cwd=contract_copy)
    assert result.returncode != 0
    rules = {json.loads(line)["type"] for line in result.stdout.splitlines()}
    for rule in ("RPC_REQUEST_STANDARD_NAME", "RPC_RESPONSE_STANDARD_NAME", "COMMENT_RPC"):
        assert rule in rules, result.stdout + result.stderr


# buf breaking


def test_contract_has_no_breaking_change_against_the_baseline() -> None:
    result = buf("breaking", "--against", str(BASELINE.relative_to(ROOT)))
    assert result.returncode == 0, (
        "protos/ breaks the released contract (protos/baseline/sssn-v1.binpb):\n"
        f"{result.stdout}{result.stderr}\nSee 'Versioning' in docs/polyglot.md."
    )


def test_buf_breaking_catches_removed_retyped_and_renamed_elements(contract_copy: Path) -> None:
    v1 = contract_copy / "protos" / "sssn" / "v1"
    edit(v1 / "event.proto", "  string source = 5;\n", "  reserved 5;\n")
    edit(v1 / "store_service.proto", "int64 after_cursor = 2;", "int32 after_cursor = 2;")
    edit(v1 / "store_service.proto", "string subscription_id = 1;", "string subscription = 1;")
    edit(v1 / "error_reason.proto", "ERROR_REASON_INTERNAL =", "ERROR_REASON_UNEXPECTED =")
    result = buf("breaking", "--against", str(BASELINE), cwd=contract_copy)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for symptom in (
        'field "5" with name "source" on message "Event" was deleted',
        'name "after_cursor" on message "QueryEventsRequest" changed type',
        'changed name from "subscription_id" to "subscription"',
        "ERROR_REASON_INTERNAL",
    ):
        assert symptom.lower() in output.lower(), output


def test_additive_changes_are_not_breaking(contract_copy: Path) -> None:
    v1 = contract_copy / "protos" / "sssn" / "v1"
    append_to(
        v1 / "error_reason.proto",
        "enum ErrorReason",
        "  // CANCELLED: a new reason.\n  ERROR_REASON_NEW = {number};",
    )
    append_to(
        v1 / "event.proto", "message Event", "  // A new field.\n  string trace_id = {number};"
    )
    result = buf("breaking", "--against", str(BASELINE), cwd=contract_copy)
    assert result.returncode == 0, result.stdout + result.stderr


def test_baseline_is_an_image_of_the_v1_contract() -> None:
    # A buf image is wire-compatible with a FileDescriptorSet.
    image = descriptor_pb2.FileDescriptorSet.FromString(BASELINE.read_bytes())
    files = {file.name: file for file in image.file}
    expected = {
        f"sssn/v1/{path.name}" for path in (ROOT / "protos" / "sssn" / "v1").glob("*.proto")
    }
    assert expected <= set(files), sorted(files)
    services = [service.name for service in files["sssn/v1/store_service.proto"].service]
    assert services == ["StoreService"]
    assert all(files[name].package == "sssn.v1" for name in expected)


# Typed Python stubs


def test_generated_modules_have_mypy_protobuf_stubs_importing_sssn_proto() -> None:
    modules = sorted(GENERATED.glob("*_pb2.py"))
    assert modules, "run `make proto`"
    for module in modules:
        stub = module.with_suffix(".pyi")
        text = stub.read_text()
        assert "@generated by mypy-protobuf" in text, stub
        assert not re.search(r"\bsssn\.v1\.\w+_pb2\b|^from sssn\.v1 import", text, re.MULTILINE), (
            f"{stub} imports the proto package path instead of sssn_proto.v1"
        )


def test_stubs_let_mypy_catch_wrong_field_types(tmp_path: Path) -> None:
    good = tmp_path / "good.py"
    good.write_text(
        "from sssn_proto.v1 import store_service_pb2 as pb\n"
        "request = pb.QueryEventsRequest(channel='c', after_cursor=3, limit=5)\n"
        "cursor: int = request.after_cursor\n"
    )
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from sssn_proto.v1 import store_service_pb2 as pb\n"
        "request = pb.QueryEventsRequest(channel=3)\n"
        "request.HasField('no_such_field')\n"
    )

    def mypy(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert mypy(good).returncode == 0, mypy(good).stdout
    result = mypy(bad)
    assert 'Argument "channel" to "QueryEventsRequest" has incompatible type "int"' in result.stdout
    assert "no_such_field" in result.stdout


# docs/polyglot.md


@pytest.fixture(scope="module")
def gen_error_docs() -> dict[str, Any]:
    return runpy.run_path(str(ROOT / "tools" / "gen_error_docs.py"))


def test_error_reason_table_matches_the_enum(gen_error_docs: dict[str, Any]) -> None:
    committed = DOCS.read_text(encoding="utf-8")
    wanted = gen_error_docs["render"](committed, gen_error_docs["read_reasons"]())
    assert committed == wanted, "docs/polyglot.md's error table is stale: run `make docs`"


def test_error_reason_table_names_every_reason(gen_error_docs: dict[str, Any]) -> None:
    reasons = [item.reason for item in gen_error_docs["read_reasons"]()]
    enum = error_reason_pb2.ErrorReason
    assert reasons == [name.removeprefix("ERROR_REASON_") for name in enum.keys()[1:]]
    table = DOCS.read_text(encoding="utf-8")
    for reason in reasons:
        assert f"| `{reason}` |" in table


def test_error_docs_generator_refuses_an_undocumented_reason(
    gen_error_docs: dict[str, Any], contract_copy: Path
) -> None:
    enum_file = contract_copy / "protos" / "sssn" / "v1" / "error_reason.proto"
    append_to(enum_file, "enum ErrorReason", "  ERROR_REASON_NEW = {number};")
    with pytest.raises(SystemExit, match="ERROR_REASON_NEW"):
        gen_error_docs["read_reasons"](contract_copy / "protos")


def test_buf_generate_templates_in_the_docs_are_the_shipped_files() -> None:
    templates = sorted(TEMPLATES.glob("buf.gen.*.yaml"))
    assert templates
    text = DOCS.read_text(encoding="utf-8")
    for template in templates:
        assert template.read_text() in text, f"{template.name} differs from its copy in {DOCS.name}"
