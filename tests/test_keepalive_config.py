"""Connection management reaches gRPC's server options; flags, env vars and --help agree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sssn_server.__main__ import build_parser
from sssn_server.app import server_options
from sssn_server.config import ServerConfig


def test_defaults_suit_long_lived_streams_behind_proxies() -> None:
    options = dict(server_options(ServerConfig()))
    assert options["grpc.keepalive_time_ms"] == 30_000
    assert options["grpc.keepalive_timeout_ms"] == 20_000
    # Clients pinging every 30 s must be welcome.
    assert options["grpc.http2.min_ping_interval_without_data_ms"] <= 30_000
    assert options["grpc.keepalive_permit_without_calls"] == 1
    # Following streams are never cut by connection age or idleness unless asked.
    assert "grpc.max_connection_age_ms" not in options
    assert "grpc.max_connection_idle_ms" not in options


def test_connection_limits_reach_grpc_options() -> None:
    config = ServerConfig(
        max_connection_idle=300,
        max_connection_age=1800,
        max_connection_age_grace=45,
        max_send_message_bytes=8 << 20,
        max_message_bytes=16 << 20,
    )
    options = dict(server_options(config))
    assert options["grpc.max_connection_idle_ms"] == 300_000
    assert options["grpc.max_connection_age_ms"] == 1_800_000
    assert options["grpc.max_connection_age_grace_ms"] == 45_000
    assert options["grpc.max_send_message_length"] == 8 << 20
    assert options["grpc.max_receive_message_length"] == 16 << 20


FLAGS = {
    "--keepalive-time": ("SSSN_KEEPALIVE_TIME", "keepalive_time", "12", 12.0),
    "--keepalive-timeout": ("SSSN_KEEPALIVE_TIMEOUT", "keepalive_timeout", "7", 7.0),
    "--min-ping-interval": ("SSSN_MIN_PING_INTERVAL", "min_ping_interval", "5", 5.0),
    "--max-connection-idle": ("SSSN_MAX_CONNECTION_IDLE", "max_connection_idle", "9", 9.0),
    "--max-connection-age": ("SSSN_MAX_CONNECTION_AGE", "max_connection_age", "99", 99.0),
    "--max-connection-age-grace": (
        "SSSN_MAX_CONNECTION_AGE_GRACE",
        "max_connection_age_grace",
        "3",
        3.0,
    ),
    "--max-send-message-bytes": (
        "SSSN_MAX_SEND_MESSAGE_BYTES",
        "max_send_message_bytes",
        "1024",
        1024,
    ),
    "--tls-cert": ("SSSN_TLS_CERT", "tls_cert", "/c.pem", Path("/c.pem")),
    "--tls-key": ("SSSN_TLS_KEY", "tls_key", "/k.pem", Path("/k.pem")),
    "--tls-client-ca": ("SSSN_TLS_CLIENT_CA", "tls_client_ca", "/ca.pem", Path("/ca.pem")),
    "--auth-tokens": ("SSSN_AUTH_TOKENS", "auth_tokens", "/t.toml", Path("/t.toml")),
    "--metrics-port": ("SSSN_METRICS_PORT", "metrics_port", "9100", 9100),
    "--metrics-host": ("SSSN_METRICS_HOST", "metrics_host", "0.0.0.0", "0.0.0.0"),
}


@pytest.mark.parametrize("flag", sorted(FLAGS))
def test_every_setting_is_a_flag_and_an_environment_variable(
    flag: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, attribute, text, parsed = FLAGS[flag]
    assert getattr(build_parser().parse_args([flag, text]), attribute) == parsed
    monkeypatch.setenv(env, text)
    assert getattr(build_parser().parse_args([]), attribute) == parsed


def test_switches_and_their_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = build_parser().parse_args([])
    assert (defaults.reflection, defaults.access_log, defaults.metrics_port) == (True, False, None)
    flags = build_parser().parse_args(["--no-reflection", "--access-log"])
    assert (flags.reflection, flags.access_log) == (False, True)
    monkeypatch.setenv("SSSN_NO_REFLECTION", "1")
    monkeypatch.setenv("SSSN_ACCESS_LOG", "true")
    from_env = build_parser().parse_args([])
    assert (from_env.reflection, from_env.access_log) == (False, True)


def test_help_documents_every_flag_and_variable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sssn_server", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    text = " ".join(result.stdout.split())
    for flag, (env, *_) in FLAGS.items():
        assert flag in text
        assert f"[{env}]" in text
    for flag, env in (
        ("--no-reflection", "SSSN_NO_REFLECTION"),
        ("--access-log", "SSSN_ACCESS_LOG"),
    ):
        assert flag in text and f"[{env}]" in text
