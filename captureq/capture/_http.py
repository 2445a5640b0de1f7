"""What the ASGI and WSGI middleware share: which requests to capture and their inference id."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qs

from .config import CaptureConfig
from .writer import CaptureWriter

INFERENCE_ID_HEADER = "X-Amzn-SageMaker-Inference-Id"
INFERENCE_ID_PARAM = "inference_id"
#: The header SageMaker's InvokeEndpoint sends with ``TargetModel`` (multi-model endpoints).
TARGET_MODEL_HEADER = "X-Amzn-SageMaker-Target-Model"


class Route:
    """The inference route(s) to capture and where a request's inference id comes from."""

    def __init__(
        self,
        paths: Iterable[str] | None,
        methods: Iterable[str],
        inference_id_header: str | None,
        inference_id_param: str | None,
        capture_errors: bool,
    ):
        self.paths = None if paths is None else frozenset(paths)
        self.methods = frozenset(m.upper() for m in methods)
        self.header = inference_id_header.lower() if inference_id_header else None
        self.param = inference_id_param
        self.capture_errors = capture_errors

    def wants(self, method: str, path: str) -> bool:
        return method.upper() in self.methods and (self.paths is None or path in self.paths)

    def wants_status(self, status: int) -> bool:
        return self.capture_errors or 200 <= status < 300

    def inference_id(self, header_value: str | None, query_string: str) -> str | None:
        if header_value:
            return header_value
        if self.param and query_string:
            values = parse_qs(query_string).get(self.param)
            if values and values[0]:
                return values[0]
        return None

    def metadata(self, target_model: str | None, model_name: str | None) -> dict | None:
        """``eventMetadata`` keys of one capture: ``targetModel``, the model that answered (the
        request's target-model header, else the name the app gave), so monitoring can split a
        multi-model endpoint with ``--by targetModel``."""
        model = target_model or model_name
        return {"targetModel": model} if model else None


def make_writer(
    config: CaptureConfig | dict | str | None, writer: CaptureWriter | None
) -> CaptureWriter:
    if (config is None) == (writer is None):
        raise TypeError(
            "pass exactly one of config=... (a CaptureConfig, dict or URI) or writer=..."
        )
    return writer if writer is not None else CaptureWriter(config)
