"""`psi://` refs to channels and snapshots, bound to servers by a `.psi/config.toml`."""

from __future__ import annotations

import copy
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ._async import AsyncSSSNClient
from ._config import DEFAULT_TIMEOUT
from ._errors import SSSNError
from ._sync import SSSNClient

# The sections of a ref that name SSSN resources; other tools keep their own
# sections (schemas, docs...) in the same config, which the resolver skips.
RESOURCE_KINDS = ("channels", "snapshots")
FOREIGN_KINDS = frozenset(
    {"assets", "configs", "docs", "examples", "runs", "schemas", "services", "tactics"}
)
_TARGETS = ("url", "store", "path")
_FORBIDDEN = "/:\\"


class SSSNRefError(SSSNError, ValueError):
    """A `psi://` ref, its binding or the config holding them is malformed or missing."""


def _plain(text: str) -> bool:
    return bool(text.strip()) and not any(char.isspace() for char in text)


def _segment(text: str) -> bool:
    return (
        _plain(text)
        and text not in (".", "..")
        and "%" not in text
        and not any(char in text for char in _FORBIDDEN)
    )


@dataclass(frozen=True)
class SSSNRef:
    """A parsed `psi://ORG/PACKAGE/channels/NAME` (or `.../snapshots/NAME`) ref.

    Raises:
        SSSNRefError: `value` is not such a ref (another scheme, a query, a
            missing or malformed segment, another section than the two).
    """

    value: str
    org: str = field(init=False)
    package: str = field(init=False)
    resource_kind: str = field(init=False)
    name: str = field(init=False)

    def __post_init__(self) -> None:
        org, package, kind, name = _split_ref(self.value)
        if kind not in RESOURCE_KINDS:
            raise SSSNRefError(
                f"an SSSN ref names /channels/ or /snapshots/, not /{kind}/: {self.value}"
            )
        for attribute, part in (
            ("org", org),
            ("package", package),
            ("resource_kind", kind),
            ("name", name),
        ):
            object.__setattr__(self, attribute, part)

    @classmethod
    def parse(cls, value: str | SSSNRef) -> SSSNRef:
        """The ref itself, or the ref parsed from its text."""
        return value if isinstance(value, cls) else cls(value)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return self.value


def _split_ref(value: object) -> tuple[str, str, str, str]:
    """The org, package, section and name of a `psi://` ref."""
    if not isinstance(value, str) or not value.strip():
        raise SSSNRefError("an SSSN ref must be a non-empty string")
    parts = urlsplit(value)
    if parts.scheme != "psi":
        raise SSSNRefError(f"an SSSN ref starts with psi://: {value}")
    if parts.query or parts.fragment or ";" in parts.path:
        raise SSSNRefError(f"an SSSN ref has no parameters, query or fragment: {value}")
    pieces = parts.path.split("/")
    if len(pieces) != 4 or pieces[0] or not all(pieces[1:]) or not parts.netloc:
        raise SSSNRefError(f"an SSSN ref reads psi://ORG/PACKAGE/channels|snapshots/NAME: {value}")
    org, (package, kind, name) = parts.netloc, pieces[1:]
    for piece in (org, package, kind, name):
        if not _plain(unquote(piece)):
            raise SSSNRefError(f"an SSSN ref has an empty or blank segment: {value}")
    for piece in (org, package, name):
        if not _segment(unquote(piece)) or "%" in piece:
            raise SSSNRefError(f"an SSSN ref has an invalid segment: {value}")
    return org, package, kind, name


@dataclass(frozen=True)
class ResolvedSSSNRef:
    """Where a ref points: exactly one of a server `url`, a `store` or a `path`."""

    ref: str
    resource_kind: str
    name: str
    url: str | None = None
    """Base URL of the server (`http://host:port` or `https://host:port`)."""
    store: str | None = None
    """Folder of a store, relative to the resolver's root unless absolute."""
    path: str | None = None
    """Same as `store` (the reference accepts both names)."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """The binding's other keys."""


class SSSNResolver:
    """Binds `psi://` refs to servers (and store folders) and opens clients for them.

    Bindings come from `bind()` or from the `[refs]` table of a
    `.psi/config.toml`, for example::

        [refs."psi://acme/shop/channels/orders"]
        url = "http://127.0.0.1:7700"
        owner = "ops"

    Args:
        root: folder that relative store paths are resolved against.
    """

    def __init__(self, *, root: str | os.PathLike[str] = ".") -> None:
        self.root = _path(root, "root").expanduser().resolve()
        self._bindings: dict[str, ResolvedSSSNRef] = {}
        self._stores: dict[str, dict[str, Any]] = {}

    @classmethod
    def from_config(cls, path: str | os.PathLike[str]) -> SSSNResolver:
        """Reads a config: a `config.toml` file, or a folder holding `.psi/config.toml`
        (then the root). Raises `SSSNRefError` for a malformed config, OSError if
        it cannot be read."""
        target = _path(path, "config path").expanduser()
        if target.is_dir():
            root, target = target, target / ".psi" / "config.toml"
        else:
            root = target.parent.parent if target.parent.name == ".psi" else target.parent
        with target.open("rb") as handle:
            config = _toml(handle.read().decode("utf-8"), str(target))
        return cls._configured(config, root)

    @classmethod
    def from_text(cls, text: str, *, root: str | os.PathLike[str] | None = None) -> SSSNResolver:
        """Reads a config given as TOML text; relative store paths resolve under `root`
        (default: the working folder). Nothing is written to disk."""
        if not isinstance(text, str):
            raise SSSNRefError("the config text must be a string")
        return cls._configured(_toml(text, "config text"), _path(root or ".", "root"))

    @classmethod
    def _configured(cls, config: dict[str, Any], root: Path) -> SSSNResolver:
        resolver = cls(root=root)
        resolver._stores = _stores_table(config.get("stores", {}))
        refs = config.get("refs", {})
        if not isinstance(refs, dict):
            raise SSSNRefError("[refs] must be a table")
        for ref, binding in refs.items():
            if not _is_sssn_ref_key(ref):
                continue
            if not isinstance(binding, dict):
                raise SSSNRefError(f"the binding of {ref} must be a table")
            if not isinstance(binding.get("metadata", {}), dict):
                raise SSSNRefError(f"the metadata of {ref} must be a table")
            extra = {key: item for key, item in binding.items() if key not in _TARGETS}
            resolver.bind(
                ref,
                url=binding.get("url"),
                store=binding.get("store"),
                path=binding.get("path"),
                metadata=extra,
            )
        return resolver

    def bind(
        self,
        ref: str | SSSNRef,
        *,
        url: str | None = None,
        store: str | None = None,
        path: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Binds `ref` to exactly one target, replacing an earlier binding.

        Raises:
            SSSNRefError: a malformed ref, no target or several, a blank target,
                a `url` that is not an absolute http(s) URL, metadata that is not
                a mapping.
        """
        parsed = SSSNRef.parse(ref)
        if metadata is not None and not isinstance(metadata, Mapping):
            raise SSSNRefError(f"the metadata of {parsed} must be a mapping")
        given = {"url": url, "store": store, "path": path}
        chosen = [name for name, target in given.items() if target is not None]
        if len(chosen) != 1:
            which = ", ".join(chosen) or "none"
            raise SSSNRefError(f"{parsed} needs exactly one of url, store, path (got {which})")
        target = given[chosen[0]]
        if (
            not isinstance(target, str)
            or not target
            or not _plain(target)
            or target != target.strip()
        ):
            raise SSSNRefError(f"the {chosen[0]} of {parsed} must be a string without spaces")
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise SSSNRefError(f"the url of {parsed} must be an absolute http(s) URL")
        self._bindings[parsed.value] = ResolvedSSSNRef(
            ref=parsed.value,
            resource_kind=parsed.resource_kind,
            name=parsed.name,
            url=url,
            store=store,
            path=path,
            metadata=copy.deepcopy(dict(metadata or {})),
        )

    def resolve(self, ref: str | SSSNRef) -> ResolvedSSSNRef:
        """The binding of `ref` (a copy). Raises `SSSNRefError` if it is not bound."""
        parsed = SSSNRef.parse(ref)
        binding = self._bindings.get(parsed.value)
        if binding is None:
            raise SSSNRefError(f"{parsed} is not bound")
        return copy.deepcopy(binding)

    def refs(self) -> tuple[str, ...]:
        """Every bound ref, sorted."""
        return tuple(sorted(self._bindings))

    def client(
        self, ref: str | SSSNRef, *, timeout: float | None = DEFAULT_TIMEOUT, **options: Any
    ) -> SSSNClient:
        """A client of the server `ref` is bound to; `options` go to `SSSNClient`
        (`credentials`, `metadata`, ...). Raises `SSSNRefError` without a url."""
        return SSSNClient(self._url(ref), timeout=timeout, **options)

    def async_client(
        self, ref: str | SSSNRef, *, timeout: float | None = DEFAULT_TIMEOUT, **options: Any
    ) -> AsyncSSSNClient:
        """An asyncio client of the server `ref` is bound to (see `client`)."""
        return AsyncSSSNClient(self._url(ref), timeout=timeout, **options)

    def store_path(self, ref: str | SSSNRef) -> Path:
        """The absolute folder of the store `ref` is bound to (for `sssn-server
        --store`). Raises `SSSNRefError` if it is bound to a url."""
        binding = self.resolve(ref)
        folder = binding.store if binding.store is not None else binding.path
        if folder is None:
            raise SSSNRefError(f"{binding.ref} is bound to a server, not to a store folder")
        candidate = Path(folder).expanduser()
        return (candidate if candidate.is_absolute() else self.root / candidate).resolve()

    def stores(self) -> dict[str, dict[str, Any]]:
        """The `[stores]` tables of the config (a copy)."""
        return copy.deepcopy(self._stores)

    def store(self, name: str) -> dict[str, Any]:
        """One `[stores.NAME]` table (a copy). Raises KeyError if there is none."""
        if not isinstance(name, str) or not _segment(name):
            raise SSSNRefError(f"[stores.{name}] needs a path-segment name")
        if name not in self._stores:
            raise KeyError(f"no [stores.{name}] in the config")
        return copy.deepcopy(self._stores[name])

    def _url(self, ref: str | SSSNRef) -> str:
        binding = self.resolve(ref)
        if binding.url is None:
            raise SSSNRefError(f"{binding.ref} is bound to a store folder, not to a server url")
        return binding.url


def _path(value: object, label: str) -> Path:
    if not isinstance(value, (str, os.PathLike)):
        raise SSSNRefError(f"the {label} must be a path")
    text = os.fspath(value)
    if not isinstance(text, str) or not text or text != text.strip():
        raise SSSNRefError(f"the {label} must be a non-empty path")
    return Path(text)


def _toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SSSNRefError(f"{source} is not valid TOML: {exc}") from exc


def _is_sssn_ref_key(key: object) -> bool:
    """Whether a `[refs]` key names an SSSN resource (False: another tool's section)."""
    if not isinstance(key, str):
        raise SSSNRefError("a [refs] key must be a psi:// ref")
    org, package, kind, name = _split_ref(key)
    for piece in (org, package, kind, name):
        if unquote(piece) != piece or not _segment(piece):
            raise SSSNRefError(f"a [refs] key uses plain segments: {key}")
    return kind not in FOREIGN_KINDS


def _stores_table(value: object) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise SSSNRefError("[stores] must be a table")
    stores: dict[str, dict[str, Any]] = {}
    for name, table in value.items():
        if not isinstance(table, dict):
            raise SSSNRefError(f"[stores.{name}] must be a table")
        if not _segment(name):
            raise SSSNRefError(f"[stores.{name}] needs a path-segment name")
        if not isinstance(table.get("metadata", {}), dict):
            raise SSSNRefError(f"[stores.{name}.metadata] must be a table")
        folder = table.get("path", "-")
        if not isinstance(folder, str) or not _plain(folder) or folder != folder.strip():
            raise SSSNRefError(f"[stores.{name}] path must be a string without spaces")
        stores[name] = copy.deepcopy(table)
    return stores
