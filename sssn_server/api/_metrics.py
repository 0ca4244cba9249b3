"""Prometheus metrics and the JSON-lines access log, as a grpc.aio interceptor."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from ._calls import STORE_SERVICE_PREFIX, Behavior, CallInfo, current_call, wrap_handler
from ._wire import Serialized

access_log = logging.getLogger("sssn_server.access")

# Buckets for calls from sub-millisecond reads to slow fsyncs; following
# streams land in +Inf, which is why they also have a gauge.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """The server's metrics, in a registry of their own so that several servers
    can run in one process (tests) without clashing series."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter(
            "sssn_rpc_calls",
            "Finished calls by method and gRPC status code name.",
            ["method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "sssn_rpc_duration_seconds",
            "Call duration by method, from the handler's start to its status.",
            ["method"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.open_streams = Gauge(
            "sssn_open_streams",
            "Streaming calls in flight (following subscriptions, artifact reads, append streams).",
            registry=self.registry,
        )
        self.events_appended = Counter(
            "sssn_events_appended",
            "Events accepted by AppendEvent, AppendEvents and AppendEventStream (including"
            " idempotent repeats).",
            registry=self.registry,
        )
        self.events_delivered = Counter(
            "sssn_events_delivered",
            "Events sent to consumers on subscription streams.",
            registry=self.registry,
        )
        self.subscription_lag = Gauge(
            "sssn_subscription_lag_cursors",
            "Cursor distance from the newest event a subscription's stream sent to the"
            " store's head, as of that message (an upper bound of the events it has yet"
            " to receive; GetSubscription's pending_count is exact).",
            ["subscription"],
            registry=self.registry,
        )

    def forget_subscription(self, subscription_id: str) -> None:
        """Drops a deleted subscription's series, so they neither linger nor
        grow in number with every subscription ever made."""
        with contextlib.suppress(KeyError):  # it never delivered anything here
            self.subscription_lag.remove(subscription_id)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged: one line per scrape would drown the server's log."""


def start_metrics_endpoint(
    registry: CollectorRegistry, host: str, port: int, token: str | None
) -> tuple[WSGIServer, threading.Thread]:
    """Serves `registry` in Prometheus' text format over HTTP from a daemon
    thread; with `token`, only to requests with `Authorization: Bearer <token>`
    (others get 401). Returns the server (stop with `shutdown`) and its thread."""
    app = make_wsgi_app(registry)
    if token is not None:
        app = _bearer_only(app, token)

    class Server(_ThreadingWSGIServer):
        address_family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]

    server = make_server(host, port, app, Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="sssn-metrics", daemon=True)
    thread.start()
    return server, thread


def _bearer_only(app: Any, token: str) -> Any:
    expected = hashlib.sha256(token.encode()).digest()

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        scheme, _, given = str(environ.get("HTTP_AUTHORIZATION", "")).partition(" ")
        # Digests of equal length, compared in constant time: timing tells
        # nothing about how much of the token a guess got right. WSGI gives
        # header values as latin-1 text, so that encoding gives the bytes sent.
        digest = hashlib.sha256(given.strip().encode("latin-1", "replace")).digest()
        if scheme.lower() == "bearer" and hmac.compare_digest(digest, expected):
            return app(environ, start_response)  # type: ignore[no-any-return]
        start_response(
            "401 Unauthorized",
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("WWW-Authenticate", 'Bearer realm="sssn-metrics"'),
            ],
        )
        return [b"This endpoint requires `Authorization: Bearer <token>`.\n"]

    return guarded


def _code_of(context: Any, error: BaseException | None) -> grpc.StatusCode:
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):  # some grpc versions report the raw integer
        for candidate in grpc.StatusCode:
            if candidate.value[0] == code:
                return candidate
    return grpc.StatusCode.OK if error is None else grpc.StatusCode.UNKNOWN


def _short(method: str) -> str:
    return method.lstrip("/")


class MetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Counts and times every call; with `log_calls`, logs one JSON line per call."""

    def __init__(self, metrics: Metrics | None, *, log_calls: bool) -> None:
        self._metrics = metrics
        self._log_calls = log_calls

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = _short(handler_call_details.method)
        store_call = handler_call_details.method.startswith(STORE_SERVICE_PREFIX)
        name = handler_call_details.method.removeprefix(STORE_SERVICE_PREFIX)
        streaming = bool(handler.response_streaming)

        def finish(
            call: CallInfo, context: Any, started: float, error: BaseException | None
        ) -> None:
            code = _code_of(context, error)
            duration = time.perf_counter() - started
            if self._metrics is not None:
                self._metrics.calls.labels(method, code.name).inc()
                self._metrics.latency.labels(method).observe(duration)
            if self._log_calls:
                access_log.info(
                    "%s",
                    json.dumps(
                        {
                            "method": method,
                            "status": code.name,
                            "duration_ms": round(duration * 1000, 3),
                            "peer": context.peer(),
                            "principal": call.principal,
                        },
                        separators=(",", ":"),
                    ),
                )

        # The StoreService returns every response that acknowledges appends
        # or delivers events already serialized, with the counts beside it
        # (`Serialized`), so nothing here parses a message.

        def counted(response: Any) -> Serialized | None:
            if self._metrics is not None and store_call and type(response) is Serialized:
                return response
            return None

        def count_appended(response: Any) -> None:
            if (serialized := counted(response)) is not None and serialized.appended:
                assert self._metrics is not None
                self._metrics.events_appended.inc(serialized.appended)

        def count_delivered(response: Any) -> None:
            if (serialized := counted(response)) is not None and serialized.delivered:
                assert self._metrics is not None
                self._metrics.events_delivered.inc(serialized.delivered)

        def record_lag(request: Any, response: Any) -> bool:
            """Whether the response set the subscription's lag."""
            # Heartbeats carry no events, so they say nothing of the position.
            if (
                self._metrics is not None
                and name == "PullSubscription"
                and type(response) is Serialized
                and response.delivered
            ):
                lag = max(0, response.head_cursor - response.last_cursor)
                self._metrics.subscription_lag.labels(request.subscription_id).set(lag)
                return True
            return False

        async def unary(inner: Behavior, request: Any, context: Any) -> Any:
            call = CallInfo(method)
            current_call.set(call)
            started = time.perf_counter()
            if streaming and self._metrics is not None:  # coroutine-style streams (health Watch)
                self._metrics.open_streams.inc()
            error: BaseException | None = None
            try:
                response = await inner(request, context)
                if response is not None:
                    count_appended(response)
                return response
            except BaseException as exc:
                error = exc
                raise
            finally:
                if streaming and self._metrics is not None:
                    self._metrics.open_streams.dec()
                finish(call, context, started, error)

        async def stream(inner: Behavior, request: Any, context: Any) -> AsyncIterator[Any]:
            call = CallInfo(method)
            current_call.set(call)
            started = time.perf_counter()
            if self._metrics is not None:
                self._metrics.open_streams.inc()
            error: BaseException | None = None
            delivered = False
            try:
                async for response in inner(request, context):
                    count_appended(response)
                    count_delivered(response)
                    delivered = record_lag(request, response) or delivered
                    yield response
            except BaseException as exc:
                error = exc
                raise
            finally:
                if self._metrics is not None:
                    self._metrics.open_streams.dec()
                    # A stream that delivered, then ended with NOT_FOUND: its
                    # subscription was deleted meanwhile, perhaps after the
                    # deletion dropped the series that a last message set again.
                    if delivered and _code_of(context, error) == grpc.StatusCode.NOT_FOUND:
                        self._metrics.forget_subscription(request.subscription_id)
                finish(call, context, started, error)

        return wrap_handler(handler, unary, stream)
