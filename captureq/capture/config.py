"""Capture configuration mirroring SageMaker's ``DataCaptureConfig``.

Build it from Python keywords or from the boto-style dict you would pass to
``CreateEndpointConfig`` — the same settings produce the same capture tree:

>>> cfg = CaptureConfig.from_dict({
...     "EnableCapture": True,
...     "InitialSamplingPercentage": 50,
...     "DestinationS3Uri": "s3://bucket/capture",
...     "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
...     "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"]},
... }, endpoint="churn", variant="AllTraffic")
>>> cfg.sampling_percentage, cfg.capture_input, cfg.capture_output, cfg.csv_content_types
(50.0, True, True, ('text/csv',))
>>> CaptureConfig("out", sampling_percentage=101)
Traceback (most recent call last):
...
captureq.errors.ConfigError: sampling_percentage must be a number from 0 to 100, got 101
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import records as rec
from ..errors import ConfigError

__all__ = ["DEFAULT_SAMPLING_PERCENTAGE", "CaptureConfig"]

DEFAULT_SAMPLING_PERCENTAGE = 20.0  # the SageMaker Python SDK's default
DEFAULT_DISK_THRESHOLD = 75.0  # SageMaker advises keeping the instance disk under 75 % used
DEFAULT_SPOOL_FLUSH_INTERVAL = 1.0  # seconds of accepted captures a kill -9 can lose
DEFAULT_SPOOL_MAX_BYTES = 512 * 1024 * 1024
DEFAULT_CLOSE_TIMEOUT = 10.0  # seconds close() spends writing before leaving the rest spooled

# SageMaker endpoint and variant names: alphanumerics and hyphens, no leading hyphen.
_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
_MODES = {"input": "input", "request": "input", "output": "output", "response": "output"}
_BOTO_KEYS = {
    "EnableCapture",
    "InitialSamplingPercentage",
    "DestinationS3Uri",
    "CaptureOptions",
    "CaptureContentTypeHeader",
    "KmsKeyId",
}


def _types(name: str, values: Any) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise ConfigError(
            f"{name} must be a list of content types like ['text/csv'], got {values!r}"
        )
    out = tuple(values)
    for t in out:
        if not isinstance(t, str) or "/" not in rec.media_type(t):
            raise ConfigError(f"{name}: {t!r} is not a content type (expected e.g. 'text/csv')")
    return out


@dataclass(frozen=True)
class CaptureConfig:
    """What to capture, how much of it, and where the tree goes.

    ``destination`` is the capture prefix (local path, ``s3://…`` or any fsspec URL; objects go
    to ``{destination}/{endpoint}/{variant}/yyyy/mm/dd/hh/``). ``capture_options`` takes
    SageMaker's modes (``"Input"``/``"Output"``, or the SDK's ``"REQUEST"``/``"RESPONSE"``).
    ``sampling_seed`` makes the sampling draw reproducible. ``max_file_bytes``/``max_file_age``
    roll objects over by size and by age (seconds), on top of the hourly roll-over;
    ``disk_threshold`` is the usage percentage above which capture pauses (of the disk holding
    ``buffer_path``, by default the spool's).

    Accepted records go to a local spool first (see :mod:`captureq.capture.spool`):
    ``spool_dir`` (default: ``captureq/spool/{name}-{hash of destination}`` under
    ``$XDG_CACHE_HOME`` or ``~/.cache``, else the temp folder), appended every
    ``spool_flush_interval`` seconds (what a ``kill -9`` can lose), holding at most
    ``spool_max_bytes`` (captures are skipped, counted and logged while it is full).
    ``close_timeout`` bounds the writing done at close (and at exit); what is not written by
    then stays in the spool for the next writer.
    """

    destination: str
    enabled: bool = True
    sampling_percentage: float = DEFAULT_SAMPLING_PERCENTAGE
    capture_options: tuple[str, ...] = ("Input", "Output")
    csv_content_types: tuple[str, ...] = rec.DEFAULT_CSV_TYPES
    json_content_types: tuple[str, ...] = rec.DEFAULT_JSON_TYPES
    endpoint: str = "local-endpoint"
    variant: str = "AllTraffic"
    storage_options: dict | None = field(default=None, compare=False)
    kms_key_id: str | None = None  # accepted for parity; encryption at rest is the store's job
    max_file_bytes: int = 4 * 1024 * 1024
    max_file_age: float = 60.0
    disk_threshold: float = DEFAULT_DISK_THRESHOLD
    buffer_path: str | None = None  # the disk the disk guard watches (default: the spool's)
    spool_dir: str | None = None
    spool_flush_interval: float = DEFAULT_SPOOL_FLUSH_INTERVAL
    spool_max_bytes: int = DEFAULT_SPOOL_MAX_BYTES
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT
    sampling_seed: int | None = None  # seed of the sampling draw, for reproducible demos and tests

    def __post_init__(self) -> None:
        if not isinstance(self.destination, str) or not self.destination.strip():
            raise ConfigError(
                "destination must be a non-empty URI, e.g. 's3://bucket/capture' or a local folder"
            )
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"enabled must be True or False, got {self.enabled!r}")
        pct = self.sampling_percentage
        if isinstance(pct, bool) or not isinstance(pct, (int, float)) or not 0 <= pct <= 100:
            raise ConfigError(f"sampling_percentage must be a number from 0 to 100, got {pct!r}")
        object.__setattr__(self, "sampling_percentage", float(pct))
        opts = self.capture_options
        if isinstance(opts, str):
            opts = (opts,)
        modes = []
        for mode in opts:
            key = _MODES.get(str(mode).lower()) if isinstance(mode, str) else None
            if key is None:
                raise ConfigError(
                    f"capture mode {mode!r} is not one of 'Input', 'Output' (or 'REQUEST', 'RESPONSE')"
                )
            modes.append("Input" if key == "input" else "Output")
        if not modes:
            raise ConfigError("capture_options must name at least one of 'Input' and 'Output'")
        object.__setattr__(self, "capture_options", tuple(dict.fromkeys(modes)))
        object.__setattr__(
            self, "csv_content_types", _types("csv_content_types", self.csv_content_types)
        )
        object.__setattr__(
            self, "json_content_types", _types("json_content_types", self.json_content_types)
        )
        for name in ("endpoint", "variant"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _NAME.match(value):
                raise ConfigError(
                    f"{name} {value!r} is not a SageMaker name (letters, digits and inner hyphens)"
                )
        if not isinstance(self.max_file_bytes, int) or self.max_file_bytes < 1:
            raise ConfigError(f"max_file_bytes must be a positive int, got {self.max_file_bytes!r}")
        if not isinstance(self.max_file_age, (int, float)) or self.max_file_age <= 0:
            raise ConfigError(f"max_file_age must be positive seconds, got {self.max_file_age!r}")
        flush = self.spool_flush_interval
        if isinstance(flush, bool) or not isinstance(flush, (int, float)) or not 0 < flush <= 60:
            raise ConfigError(
                f"spool_flush_interval must be seconds in (0, 60], got {flush!r}"
            )
        if not isinstance(self.spool_max_bytes, int) or self.spool_max_bytes < self.max_file_bytes:
            raise ConfigError(
                f"spool_max_bytes must be an int of at least max_file_bytes "
                f"({self.max_file_bytes}), got {self.spool_max_bytes!r}"
            )
        ct = self.close_timeout
        if isinstance(ct, bool) or not isinstance(ct, (int, float)) or ct < 0:
            raise ConfigError(f"close_timeout must be seconds >= 0, got {ct!r}")
        if self.spool_dir is not None and (
            not isinstance(self.spool_dir, str) or "://" in self.spool_dir
        ):
            raise ConfigError(
                f"spool_dir must be a local folder path (not a URL), got {self.spool_dir!r}"
            )
        thr = self.disk_threshold
        if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not 0 < thr <= 100:
            raise ConfigError(f"disk_threshold must be a percentage in (0, 100], got {thr!r}")

    @property
    def capture_input(self) -> bool:
        return "Input" in self.capture_options

    @property
    def capture_output(self) -> bool:
        return "Output" in self.capture_options

    @classmethod
    def from_dict(cls, config: Mapping[str, Any], **overrides: Any) -> CaptureConfig:
        """Build from the boto-style ``DataCaptureConfig`` dict; keywords fill the rest.

        ``DestinationS3Uri`` may be any fsspec URL. Unknown keys are an error (a typo would
        otherwise silently change what is captured).
        """
        if not isinstance(config, Mapping):
            raise ConfigError(f"DataCaptureConfig must be a dict, got {type(config).__name__}")
        unknown = sorted(set(config) - _BOTO_KEYS)
        if unknown:
            raise ConfigError(
                f"unknown DataCaptureConfig keys {unknown}; expected some of {sorted(_BOTO_KEYS)}"
            )
        kw: dict[str, Any] = {}
        if "DestinationS3Uri" in config:
            kw["destination"] = config["DestinationS3Uri"]
        if "EnableCapture" in config:
            kw["enabled"] = config["EnableCapture"]
        if "InitialSamplingPercentage" in config:
            kw["sampling_percentage"] = config["InitialSamplingPercentage"]
        if "KmsKeyId" in config:
            kw["kms_key_id"] = config["KmsKeyId"]
        if "CaptureOptions" in config:
            opts = config["CaptureOptions"]
            if not isinstance(opts, list) or not all(
                isinstance(o, Mapping) and set(o) == {"CaptureMode"} for o in opts
            ):
                raise ConfigError(
                    "CaptureOptions must look like [{'CaptureMode': 'Input'}, {'CaptureMode': 'Output'}]"
                    f", got {opts!r}"
                )
            kw["capture_options"] = tuple(o["CaptureMode"] for o in opts)
        header = config.get("CaptureContentTypeHeader")
        if header is not None:
            if not isinstance(header, Mapping) or set(header) - {
                "CsvContentTypes",
                "JsonContentTypes",
            }:
                raise ConfigError(
                    "CaptureContentTypeHeader must be {'CsvContentTypes': [...], 'JsonContentTypes': [...]}"
                    f", got {header!r}"
                )
            # The header lists exactly the types stored as text: a kind it leaves out gets none.
            kw["csv_content_types"] = header.get("CsvContentTypes", ())
            kw["json_content_types"] = header.get("JsonContentTypes", ())
        kw.update(overrides)
        if "destination" not in kw:
            raise ConfigError("DataCaptureConfig needs DestinationS3Uri (or destination=...)")
        return cls(**kw)

    @classmethod
    def coerce(
        cls, config: CaptureConfig | Mapping[str, Any] | str, **overrides: Any
    ) -> CaptureConfig:
        """A config from a :class:`CaptureConfig`, a boto-style dict or a destination URI."""
        if isinstance(config, CaptureConfig):
            if overrides:
                from dataclasses import replace

                return replace(config, **overrides)
            return config
        if isinstance(config, str):
            return cls(config, **overrides)
        return cls.from_dict(config, **overrides)
