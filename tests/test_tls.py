"""TLS and mutual TLS, with certificates generated per test run (no key is checked in)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sssn_client import AsyncSSSNClient, PermissionDeniedError, UnauthenticatedError
from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc
from sssn_server.app import SSSNServer

from .client_fixtures import BIN
from .conftest import ServerFactory
from .helpers import DEADLINE


@dataclass
class Pem:
    cert: bytes
    key: bytes
    cert_path: Path
    key_path: Path


def _issue(
    directory: Path,
    name: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    server: bool = False,
) -> tuple[Pem, x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    signer_cert, signer_key = issuer if issuer else (None, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer_cert.subject if signer_cert else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(signer_key, hashes.SHA256())
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert_pem)
    key_path.write_bytes(key_pem)
    return Pem(cert_pem, key_pem, cert_path, key_path), cert, key


@dataclass
class Pki:
    ca: Pem
    server: Pem
    client: Pem
    rogue_ca: Pem
    rogue_client: Pem


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    directory = tmp_path / "pki"
    directory.mkdir()
    ca, ca_cert, ca_key = _issue(directory, "ca", None)
    server, _, _ = _issue(directory, "server", (ca_cert, ca_key), server=True)
    client, _, _ = _issue(directory, "client", (ca_cert, ca_key))
    rogue_ca, rogue_cert, rogue_key = _issue(directory, "rogue-ca", None)
    rogue_client, _, _ = _issue(directory, "rogue-client", (rogue_cert, rogue_key))
    return Pki(ca, server, client, rogue_ca, rogue_client)


async def _list_channels(address: str, credentials: grpc.ChannelCredentials | None) -> None:
    channel = (
        grpc.aio.insecure_channel(address)
        if credentials is None
        else grpc.aio.secure_channel(address, credentials)
    )
    async with channel:
        await pb_grpc.StoreServiceStub(channel).ListChannels(
            pb.ListChannelsRequest(), timeout=DEADLINE, wait_for_ready=False
        )


async def _tls_server(start_server: ServerFactory, pki: Pki, *, mutual: bool) -> SSSNServer:
    return await start_server(  # type: ignore[no-any-return]
        tls_cert=pki.server.cert_path,
        tls_key=pki.server.key_path,
        tls_client_ca=pki.ca.cert_path if mutual else None,
    )


async def test_tls_handshake_succeeds_with_the_right_ca(
    start_server: ServerFactory, pki: Pki
) -> None:
    server = await _tls_server(start_server, pki, mutual=False)
    await _list_channels(server.address, grpc.ssl_channel_credentials(pki.ca.cert))


@pytest.mark.parametrize("client", ["plaintext", "untrusted-ca"])
async def test_tls_refuses_plaintext_and_untrusted_servers(
    start_server: ServerFactory, pki: Pki, client: str
) -> None:
    server = await _tls_server(start_server, pki, mutual=False)
    credentials = None if client == "plaintext" else grpc.ssl_channel_credentials(pki.rogue_ca.cert)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _list_channels(server.address, credentials)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mtls_accepts_a_client_certificate_from_the_ca(
    start_server: ServerFactory, pki: Pki
) -> None:
    server = await _tls_server(start_server, pki, mutual=True)
    credentials = grpc.ssl_channel_credentials(
        pki.ca.cert, private_key=pki.client.key, certificate_chain=pki.client.cert
    )
    await _list_channels(server.address, credentials)


@pytest.mark.parametrize("client", ["no-certificate", "foreign-certificate"])
async def test_mtls_refuses_clients_without_a_trusted_certificate(
    start_server: ServerFactory, pki: Pki, client: str
) -> None:
    server = await _tls_server(start_server, pki, mutual=True)
    if client == "no-certificate":
        credentials = grpc.ssl_channel_credentials(pki.ca.cert)
    else:
        credentials = grpc.ssl_channel_credentials(
            pki.ca.cert,
            private_key=pki.rogue_client.key,
            certificate_chain=pki.rogue_client.cert,
        )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _list_channels(server.address, credentials)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    "settings",
    [{"tls_cert": "server.crt"}, {"tls_key": "server.key"}, {"tls_client_ca": "ca.crt"}],
)
async def test_incomplete_tls_settings_fail_the_start(
    start_server: ServerFactory, pki: Pki, settings: dict[str, str]
) -> None:
    paths = {name: pki.ca.cert_path.parent / file for name, file in settings.items()}
    with pytest.raises(ValueError, match="--tls-"):
        await start_server(**paths)


async def test_python_client_over_mtls_with_a_bearer_token(
    start_server: ServerFactory, pki: Pki, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text('[[tokens]]\nprincipal = "p"\ntoken = "t0k"\nread = ["*"]\nadmin = ["*"]\n')
    server = await start_server(
        tls_cert=pki.server.cert_path,
        tls_key=pki.server.key_path,
        tls_client_ca=pki.ca.cert_path,
        auth_tokens=tokens,
    )
    credentials = grpc.ssl_channel_credentials(
        pki.ca.cert, private_key=pki.client.key, certificate_chain=pki.client.cert
    )
    async with AsyncSSSNClient(
        server.address, credentials=credentials, metadata={"authorization": "Bearer t0k"}
    ) as client:
        await client.create_channel({"name": "secure"})
        assert [c.name for c in await client.list_channels()] == ["secure"]
        with pytest.raises(PermissionDeniedError) as denied:  # no write grant
            await client.append_event({"channel": "secure", "payload": 1})
        assert denied.value.resource == {"channel": "secure", "permission": "write"}
    async with AsyncSSSNClient(server.address, credentials=credentials) as anonymous:
        with pytest.raises(UnauthenticatedError):
            await anonymous.list_channels()


async def _sssn(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(BIN / "sssn"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), DEADLINE * 2)
    return process.returncode or 0, out.decode(), err.decode()


async def test_cli_connects_over_mtls_with_a_token(
    start_server: ServerFactory, pki: Pki, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text('[[tokens]]\nprincipal = "p"\ntoken = "t0k"\nadmin = ["*"]\n')
    server = await start_server(
        tls_cert=pki.server.cert_path,
        tls_key=pki.server.key_path,
        tls_client_ca=pki.ca.cert_path,
        auth_tokens=tokens,
    )
    tls = [
        "--tls-ca",
        str(pki.ca.cert_path),
        "--tls-client-cert",
        str(pki.client.cert_path),
        "--tls-client-key",
        str(pki.client.key_path),
    ]
    env = {**os.environ, "SSSN_TOKEN": "t0k"}
    code, out, err = await _sssn("--target", server.address, *tls, "create-channel", "c", env=env)
    assert code == 0, err
    assert json.loads(out)["name"] == "c"
    # Without the token the same connection is refused by the server.
    env.pop("SSSN_TOKEN")
    code, _, err = await _sssn("--target", server.address, *tls, "get-channel", "c", env=env)
    assert code == 11, err
    assert "UNAUTHENTICATED" in err
    # Without a client certificate the handshake fails.
    code, _, err = await _sssn(
        "--target", server.address, "--tls-ca", str(pki.ca.cert_path), "channels", env=env
    )
    assert code == 8, err  # UNAVAILABLE
