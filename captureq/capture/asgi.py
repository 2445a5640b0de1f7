"""ASGI middleware (Starlette, FastAPI, any ASGI app) that captures the inference route.

>>> from fastapi import FastAPI                                     # doctest: +SKIP
>>> app = FastAPI()                                                 # doctest: +SKIP
>>> app.add_middleware(CaptureMiddleware, config={"DestinationS3Uri": "s3://b/capture"})  # doctest: +SKIP

Request and response bodies pass through untouched; a copy of each is handed to the
:class:`~captureq.capture.CaptureWriter` when the response is complete. The inference id comes
from the ``X-Amzn-SageMaker-Inference-Id`` header (name configurable) or an ``inference_id``
query parameter. The writer is closed at lifespan shutdown (and at exit): it writes what it can
within ``close_timeout`` and leaves the rest in its spool for the next start.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._http import INFERENCE_ID_HEADER, INFERENCE_ID_PARAM, TARGET_MODEL_HEADER, Route, make_writer
from .config import CaptureConfig
from .writer import CaptureWriter, log

__all__ = ["CaptureMiddleware"]


def _header(headers: list, name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class CaptureMiddleware:
    """Capture ``methods`` requests to ``paths`` (default: every POST) of an ASGI app.

    Pass ``config`` (a :class:`CaptureConfig`, a boto-style dict or a destination URI) or a
    ready ``writer``. Only 2xx responses are captured unless ``capture_errors=True``.
    """

    def __init__(
        self,
        app,
        config: CaptureConfig | dict | str | None = None,
        *,
        writer: CaptureWriter | None = None,
        paths: Iterable[str] | None = None,
        methods: Iterable[str] = ("POST",),
        inference_id_header: str | None = INFERENCE_ID_HEADER,
        inference_id_param: str | None = INFERENCE_ID_PARAM,
        capture_errors: bool = False,
        model_name: str | None = None,
        target_model_header: str | None = TARGET_MODEL_HEADER,
    ):
        self.app = app
        self.writer = make_writer(config, writer)
        self.route = Route(paths, methods, inference_id_header, inference_id_param, capture_errors)
        self._header = self.route.header.encode("latin-1") if self.route.header else None
        self.model_name = model_name
        self._model_header = target_model_header.lower().encode("latin-1") if target_model_header else None

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
            return
        if kind != "http" or not self.route.wants(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return

        request: list[bytes] = []
        response: list[bytes] = []
        state: dict = {}

        async def receive_and_keep():
            message = await receive()
            if message["type"] == "http.request":
                request.append(message.get("body", b""))
            return message

        async def send_and_keep(message):
            t = message["type"]
            if t == "http.response.start":
                state["status"] = message["status"]
                state["type"] = _header(message.get("headers", []), b"content-type")
            elif t == "http.response.body":
                response.append(message.get("body", b""))
            await send(message)
            if t == "http.response.body" and not message.get("more_body", False):
                self._capture(scope, request, response, state)

        await self.app(scope, receive_and_keep, send_and_keep)

    def _capture(self, scope, request, response, state) -> None:
        try:
            if not self.route.wants_status(state.get("status", 0)):
                return
            headers = scope.get("headers", [])
            inference_id = self.route.inference_id(
                _header(headers, self._header) if self._header else None,
                scope.get("query_string", b"").decode("latin-1"),
            )
            self.writer.capture(
                b"".join(request),
                _header(headers, b"content-type"),
                b"".join(response),
                state.get("type"),
                inference_id=inference_id,
                metadata=self.route.metadata(
                    _header(headers, self._model_header) if self._model_header else None,
                    self.model_name),
            )
        except Exception:  # noqa: BLE001 - capture never fails a request
            log.warning("captureq: could not capture a request", exc_info=True)

    def _lifespan_send(self, send):
        async def lifespan_send(message):
            if message["type"] == "lifespan.shutdown.complete":
                self.writer.close()  # a short join at shutdown; works under any event loop
            await send(message)

        return lifespan_send
