"""What the service tells Prometheus, and the ASGI guard that measures every request and
bounds its body."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from fastapi import HTTPException
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Sub-millisecond resolution where a one-entity request lands.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
UNMATCHED = "unmatched"


class ServiceMetrics:
    """The service's Prometheus metrics, in a registry of its own."""

    def __init__(self, registry: CollectorRegistry, model_name: str) -> None:
        self.registry = registry
        self.model_name = model_name
        self.requests = Counter(
            "serving_requests", "HTTP requests by route and status code",
            ["route", "code"], registry=registry,
        )  # fmt: skip
        self.latency = Histogram(
            "serving_request_duration_seconds", "Time to answer a request, by route",
            ["route"], buckets=LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.scored = Counter(
            "serving_entities", "Entities answered, by status (scored, stale, not_found)",
            ["status"], registry=registry,
        )  # fmt: skip
        self.version = Gauge(
            "serving_model_version", "Registered version of the model scoring requests",
            ["model"], registry=registry,
        )  # fmt: skip

    def serving(self, version: str) -> None:
        """Record the version a request is scored with."""
        self.version.labels(self.model_name).set(float(version))

    def entities(self, rows: Iterable[dict[str, Any]]) -> None:
        """Count a response's rows by status."""
        for row in rows:
            self.scored.labels(row["status"]).inc()

    def observe(self, route: str, code: int, seconds: float) -> None:
        """Count a finished request and its time."""
        self.requests.labels(route, str(code)).inc()
        self.latency.labels(route).observe(seconds)


class BodyTooLarge(HTTPException):
    """413: a request body went past the service's bound (raised while it is read, FastAPI
    answers it as any HTTP error)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over {limit} bytes")


class RequestGuard:
    """ASGI middleware: refuse a body over `max_body_bytes` (413) before it is parsed, and
    record every request's route, status and time."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            if self._declared_length(scope) > self.max_body_bytes:
                await self._too_large(sending)
            else:
                await self.app(scope, self._bounded(receive), sending)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", UNMATCHED)
            self.metrics.observe(path, status["code"], time.perf_counter() - started)

    @staticmethod
    def _declared_length(scope: Scope) -> int:
        for name, value in scope["headers"]:
            if name == b"content-length":
                return int(value) if value.isdigit() else 0
        return 0

    def _bounded(self, receive: Receive) -> Receive:
        """`receive`, counting the body's bytes as they come (a chunked body declares none)."""
        received = 0

        async def receiving() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        return receiving

    async def _too_large(self, send: Send) -> None:
        body = json.dumps({"detail": BodyTooLarge(self.max_body_bytes).detail}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
