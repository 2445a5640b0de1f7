"""Data capture for self-hosted endpoints: write the capture trees a SageMaker endpoint writes.

Two lines give a FastAPI/Starlette app capture::

    from captureq.capture import CaptureMiddleware
    app.add_middleware(CaptureMiddleware, config={"DestinationS3Uri": "s3://bucket/capture",
                                                  "InitialSamplingPercentage": 20})

:class:`CaptureConfig` mirrors SageMaker's ``DataCaptureConfig``; :class:`CaptureWriter` does the
writing off the request path, through a local spool (:mod:`captureq.capture.spool`) that keeps
what it accepted across crashes and outages; :class:`DiskGuard` pauses capture on a full disk;
:class:`WSGICaptureMiddleware` serves WSGI apps; :class:`GroundTruthWriter` writes labels.
"""

from __future__ import annotations

from .asgi import CaptureMiddleware
from .config import CaptureConfig
from .diskguard import DiskGuard, disk_usage_percent
from .groundtruth import GroundTruthWriter, write_ground_truth
from .writer import CaptureStats, CaptureWriter
from .wsgi import WSGICaptureMiddleware

__all__ = [
    "CaptureConfig",
    "CaptureMiddleware",
    "CaptureStats",
    "CaptureWriter",
    "DiskGuard",
    "GroundTruthWriter",
    "WSGICaptureMiddleware",
    "disk_usage_percent",
    "write_ground_truth",
]
