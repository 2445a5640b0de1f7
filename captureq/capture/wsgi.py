"""WSGI middleware (Flask, Django, any WSGI app) that captures the inference route.

    app.wsgi_app = WSGICaptureMiddleware(app.wsgi_app, config={"DestinationS3Uri": "capture"})

Same behaviour as the ASGI :class:`~captureq.capture.CaptureMiddleware`: bodies pass through,
copies go to the writer once the response has been sent, the inference id comes from the
``X-Amzn-SageMaker-Inference-Id`` header or an ``inference_id`` query parameter. The writer is
closed at exit (what it cannot write stays in its spool for the next start); call
``middleware.writer.close()`` for an earlier, orderly shutdown.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

from ._http import INFERENCE_ID_HEADER, INFERENCE_ID_PARAM, TARGET_MODEL_HEADER, Route, make_writer
from .config import CaptureConfig
from .writer import CaptureWriter, log

__all__ = ["WSGICaptureMiddleware"]


class WSGICaptureMiddleware:
    """Capture ``methods`` requests to ``paths`` (default: every POST) of a WSGI app."""

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
        self.model_name = model_name
        self._model_key = ("HTTP_" + target_model_header.upper().replace("-", "_")
                           if target_model_header else None)
        self._environ_key = (
            "HTTP_" + self.route.header.upper().replace("-", "_") if self.route.header else None
        )

    def __call__(self, environ, start_response):
        if not self.route.wants(environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "")):
            return self.app(environ, start_response)
        stream = environ["wsgi.input"]
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            length = -1
        if length >= 0:
            body = stream.read(length) if length else b""
        elif environ.get("wsgi.input_terminated"):  # chunked upload: the server marks the end
            body = stream.read()
        else:  # no length and no end marker: reading could block, so leave the body alone
            return self.app(environ, start_response)
        environ["wsgi.input"] = io.BytesIO(body)
        state: dict = {}

        def start_and_keep(status, headers, exc_info=None):
            state["status"] = int(str(status).split(" ", 1)[0])
            state["type"] = next((v for k, v in headers if k.lower() == "content-type"), None)
            return start_response(status, headers, exc_info)

        result = self.app(environ, start_and_keep)
        return _Body(result, lambda chunks: self._capture(environ, body, chunks, state))

    def _capture(self, environ, body: bytes, chunks: list[bytes], state: dict) -> None:
        try:
            if not self.route.wants_status(state.get("status", 0)):
                return
            inference_id = self.route.inference_id(
                environ.get(self._environ_key) if self._environ_key else None,
                environ.get("QUERY_STRING", ""),
            )
            self.writer.capture(
                body,
                environ.get("CONTENT_TYPE"),
                b"".join(chunks),
                state.get("type"),
                inference_id=inference_id,
                metadata=self.route.metadata(
                    environ.get(self._model_key) if self._model_key else None, self.model_name),
            )
        except Exception:  # noqa: BLE001 - capture never fails a request
            log.warning("captureq: could not capture a request", exc_info=True)


class _Body:
    """The app's response iterable, keeping a copy; captures when the server closes it."""

    def __init__(self, result, done):
        self.result = result
        self.done = done
        self.chunks: list[bytes] = []
        self.complete = False

    def __iter__(self):
        for chunk in self.result:
            self.chunks.append(chunk)
            yield chunk
        self.complete = True

    def close(self) -> None:
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        finally:
            if self.complete:
                self.done(self.chunks)
