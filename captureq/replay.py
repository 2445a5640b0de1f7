"""Replay captured traffic against a candidate model.

A capture tree holds the exact requests a model answered in production. :func:`replay` sends the
requests of a window (all of them, or a deterministic sample) to a candidate — an HTTP
``/invocations`` URL or a SageMaker endpoint — and writes the candidate's answers with the
capture writer (:mod:`captureq.capture`) as a capture tree of their own::

    {out}/{endpoint}/{name}/yyyy/mm/dd/hh/{mm}-{ss}-{mmm}-{uuid}.jsonl

An answer keeps the original request's ``eventId``, ``inferenceId`` and ``inferenceTime`` (so
ground truth joins it as it joins the original), the captured request as ``endpointInput`` and
the candidate's answer as ``endpointOutput``; ``eventMetadata`` also holds ``replayKey`` (the
request key, below), ``replaySourceVariant`` (the variant that answered in production),
``replayTime`` (when the answer came, UTC), ``replayLatencyMs`` (of the
attempt that answered) and ``replayAttempts``. Readers keep these in ``captures.event_metadata``.

**Request key.** A capture's position in its tree — endpoint, variant, the object's path from its
hour folder on, line number — with its event id and inference id, hashed (md5, hex). Event ids
alone repeat in real capture data. ``sample`` keeps the keys whose hash falls below the fraction
(a float) or the ``n`` smallest keys (an int), so a sample is the same on every run.

**State beside the output** (``state``, default ``{out}.replay``)::

    {state}/ledger/{endpoint}/{name}/yyyy/mm/dd/hh/{file}.keys   keys of each object written
    {state}/failures/{name}/{time}-{uuid}.jsonl                  requests that failed for good

A ledger file is written right after its capture object (the writer's ``on_written`` hook). A
rerun first lets the writer upload what an interrupted run left in its spool, writes the ledger
files an interruption missed (from the objects themselves), then sends only the keys that have
neither an answer nor a recorded failure — so an answer is never written twice, and
``selected == already_done + answers + failures``. Delete a ``failures`` file to try its
requests again. One replay at a time per output and name.

>>> r = replay("capture", "http://127.0.0.1:8080/invocations", "replay")   # doctest: +SKIP
>>> r.summary()                                                             # doctest: +SKIP
'120 requests: 120 sent, 118 answers, 2 failures (3 retries); latency p50 4.1 ms, p95 9.8 ms'
"""

from __future__ import annotations

import base64
import http.client
import json
import random
import re
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .errors import ConfigError

__all__ = [
    "ReplayResult",
    "RetryPolicy",
    "Target",
    "parse_sample",
    "parse_target",
    "read_failures",
    "replay",
    "select_requests",
]

UTC = timezone.utc
_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")  # SageMaker's endpoint/variant names
_KEY = re.compile(rb'"replayKey":"([0-9a-f]{32})"')
_HEX_DIGITS = 13  # of the key read as the sampling draw: 52 bits, exact in a double
_THROTTLING = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "ServiceUnavailable",
    "InternalFailure",
}
_ERROR_CHARS = 500  # of an error answer's body kept in the failure record

# One row per captured request of the window, with its key. The capture's position is its path
# from the hour folder on (so a tree copied elsewhere, say to S3, keeps its keys).
_KEYS_SQL = """
select *, md5(concat_ws(chr(31), endpoint, variant,
                        regexp_extract(source_file, '[0-9]{4}/[0-9]{2}/[0-9]{2}/[0-9]{2}/[^/]+$'),
                        line_number::varchar, coalesce(event_id, ''),
                        coalesce(inference_id, ''))) as replay_key
from captures
"""


# -- the target --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """Where the requests go: ``http://host:port/invocations`` or ``sagemaker:ENDPOINT[:VARIANT]``.

    >>> parse_target("sagemaker:churn-v2:Canary")
    Target(kind='sagemaker', url=None, endpoint='churn-v2', variant='Canary')
    >>> parse_target("http://127.0.0.1:8080/invocations").default_name
    '127-0-0-1-8080'
    """

    kind: str
    url: str | None = None
    endpoint: str | None = None
    variant: str | None = None

    @property
    def default_name(self) -> str:
        """The output's variant name when none is given: the candidate's variant or endpoint,
        or the URL's host and port."""
        if self.kind == "sagemaker":
            return self.variant or self.endpoint  # type: ignore[return-value]
        u = urllib.parse.urlsplit(self.url)
        host = f"{u.hostname}-{u.port}" if u.port else str(u.hostname)
        return re.sub(r"[^A-Za-z0-9]+", "-", host).strip("-") or "candidate"


def parse_target(text: str) -> Target:
    """Read ``--to``: an ``http(s)://`` URL or ``sagemaker:ENDPOINT[:VARIANT]``."""
    if text.startswith("sagemaker:"):
        parts = text[len("sagemaker:"):].split(":")
        if not 1 <= len(parts) <= 2 or not all(_NAME.match(p) for p in parts):
            raise ConfigError(
                f"--to {text!r}: expected sagemaker:ENDPOINT or sagemaker:ENDPOINT:VARIANT "
                "(letters, digits and inner hyphens)"
            )
        return Target("sagemaker", endpoint=parts[0], variant=parts[1] if len(parts) > 1 else None)
    u = urllib.parse.urlsplit(text)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ConfigError(
            f"--to {text!r}: expected a URL such as http://127.0.0.1:8080/invocations "
            "or sagemaker:ENDPOINT[:VARIANT]"
        )
    return Target("http", url=text)


def parse_sample(text: str | float | int | None) -> float | int | None:
    """``--sample``: a fraction (``0.1``, ``10%``) or a count (``500``).

    >>> parse_sample("10%"), parse_sample("0.25"), parse_sample("500"), parse_sample(None)
    (0.1, 0.25, 500, None)
    """
    if text is None or isinstance(text, (int, float)):
        value = text
    else:
        s = str(text).strip()
        try:
            if s.endswith("%"):
                value = float(s[:-1]) / 100
            elif "." in s or "e" in s.lower():
                value = float(s)
            else:
                value = int(s)
        except ValueError:
            value = None
            s = None  # type: ignore[assignment]
        if s is None:
            raise ConfigError(f"--sample {text!r}: expected a fraction (0.1, 10%) or a count (500)")
    if isinstance(value, float) and not 0 < value <= 1:
        raise ConfigError(f"--sample {text!r}: a fraction must be in (0, 1] (or 0–100 %)")
    if isinstance(value, int) and not isinstance(value, bool) and value < 1:
        raise ConfigError(f"--sample {text!r}: a count must be at least 1")
    return value


# -- which requests ----------------------------------------------------------------------------
def select_requests(captures, sample: float | int | None = None):
    """The captured requests to replay, with their ``replay_key``, in ``inference_time`` order.

    ``captures`` is a ``captures`` table (``CaptureTree.captures()``); ``sample`` a fraction
    (float) or a count (int) drawn by the request key, the same on every run.
    """
    import duckdb

    con = duckdb.connect()
    con.register("captures", captures)
    sql = f"select * from ({_KEYS_SQL})"
    params: list = []
    if isinstance(sample, float):
        sql += f" where ('0x' || left(replay_key, {_HEX_DIGITS}))::ubigint < ?"
        params.append(int(sample * 16**_HEX_DIGITS))
    elif isinstance(sample, int):
        sql += " order by replay_key limit ?"
        params.append(sample)
    table = con.sql(
        f"select * from ({sql}) order by inference_time, replay_key", params=params
    ).to_arrow_table()
    con.close()
    return table


# -- sending -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RetryPolicy:
    """Retries of a request that failed with 5xx, 429, throttling or a broken connection:
    at most ``retries`` more attempts, none started later than ``max_seconds`` after the first;
    waits double from ``backoff`` up to ``max_backoff`` seconds (with jitter), or follow a
    ``Retry-After`` answer up to ``max_backoff``."""

    retries: int = 3
    max_seconds: float = 60.0
    backoff: float = 0.2
    max_backoff: float = 5.0


@dataclass
class _Reply:
    status: int | None  # None: no HTTP answer (connection refused, reset, timed out)
    body: bytes = b""
    content_type: str | None = None
    retry_after: float | None = None
    error: str | None = None
    retryable: bool | None = None  # None: decided by the status

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def should_retry(self) -> bool:
        if self.retryable is not None:
            return self.retryable
        return self.status is None or self.status >= 500 or self.status == 429

    def describe(self) -> str:
        if self.error:
            return self.error
        return self.body[:_ERROR_CHARS].decode("utf-8", "replace")


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


class _HttpSender:
    """POST to an ``/invocations`` URL with one keep-alive connection per worker thread."""

    def __init__(self, url: str, timeout: float):
        u = urllib.parse.urlsplit(url)
        self.https = u.scheme == "https"
        self.host, self.port = u.hostname, u.port
        self.path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        self.timeout = timeout
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            conn = self._local.conn = cls(self.host, self.port, timeout=self.timeout)
        return conn

    def send(self, body: bytes, content_type: str, accept: str | None, inference_id: str | None
             ) -> _Reply:
        headers = {"Content-Type": content_type}
        if accept:
            headers["Accept"] = accept
        if inference_id:
            headers["X-Amzn-SageMaker-Inference-Id"] = inference_id
        conn = self._connection()
        try:
            conn.request("POST", self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            self._local.conn = None
            what = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            return _Reply(None, error=f"{what}: {exc}" if str(exc) else what)
        if resp.getheader("Connection", "").lower() == "close":
            conn.close()
            self._local.conn = None
        return _Reply(resp.status, data, resp.getheader("Content-Type"),
                      _retry_after(resp.getheader("Retry-After")))

    def close(self) -> None:
        pass


class _SageMakerSender:
    """``sagemaker-runtime`` ``InvokeEndpoint`` through botocore (retries are ours, not boto's)."""

    def __init__(self, target: Target, timeout: float, concurrency: int, region: str | None,
                 endpoint_url: str | None, profile: str | None):
        import botocore.session
        from botocore.config import Config

        session = botocore.session.Session(profile=profile)
        config = Config(connect_timeout=timeout, read_timeout=timeout,
                        retries={"total_max_attempts": 1}, max_pool_connections=concurrency)
        region = region or session.get_config_variable("region")
        if not region:
            raise ConfigError(
                f"--to sagemaker:{target.endpoint}: no AWS region; pass --region "
                "(or set AWS_DEFAULT_REGION)"
            )
        self.client = session.create_client("sagemaker-runtime", region_name=region,
                                            endpoint_url=endpoint_url, config=config)
        self.target = target

    def send(self, body: bytes, content_type: str, accept: str | None, inference_id: str | None
             ) -> _Reply:
        from botocore.exceptions import BotoCoreError, ClientError

        kw = {"EndpointName": self.target.endpoint, "Body": body, "ContentType": content_type}
        if accept:
            kw["Accept"] = accept
        if self.target.variant:
            kw["TargetVariant"] = self.target.variant
        if inference_id:
            kw["InferenceId"] = inference_id
        try:
            r = self.client.invoke_endpoint(**kw)
            data = r["Body"].read()
        except ClientError as exc:
            err = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = err.get("Code", "")
            original = exc.response.get("OriginalStatusCode")
            retry = (code in _THROTTLING or (status or 0) >= 500 or status == 429
                     or (code == "ModelError" and (original or 0) >= 500))
            return _Reply(status, error=f"{code}: {err.get('Message', '')}".strip(),
                          retryable=retry)
        except BotoCoreError as exc:  # no answer: connection refused, reset, timed out
            return _Reply(None, error=f"{type(exc).__name__}: {exc}")
        return _Reply(200, data, r.get("ContentType"))

    def close(self) -> None:
        self.client.close()


class _RateLimit:
    """At most ``rate`` attempts per second over all workers (evenly spaced)."""

    def __init__(self, rate: float | None):
        self.interval = 1.0 / rate if rate else 0.0
        self.next = time.monotonic()
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            at = max(self.next, now)
            self.next = at + self.interval
        if at > now:
            time.sleep(at - now)


@dataclass
class _Outcome:
    row: dict
    reply: _Reply
    attempts: int
    latency_ms: float
    answered_at: datetime


def _payload(row: dict) -> bytes | None:
    data = row.get("input_data")
    if data is None:
        return None
    if (row.get("input_encoding") or "").upper() == "BASE64":
        return base64.b64decode(data)
    return data.encode("utf-8")


def _send(sender, row: dict, body: bytes, policy: RetryPolicy, limit: _RateLimit,
          stopping: threading.Event) -> _Outcome:
    """One request with its retries: bounded by ``policy.retries`` and ``policy.max_seconds``."""
    first = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        limit.wait()
        t0 = time.monotonic()
        reply = sender.send(body, row.get("input_observed_content_type") or
                            "application/octet-stream",
                            row.get("output_observed_content_type"), row.get("inference_id"))
        latency = (time.monotonic() - t0) * 1000
        if reply.ok or not reply.should_retry() or stopping.is_set():
            break
        elapsed = time.monotonic() - first
        if attempts > policy.retries or elapsed >= policy.max_seconds:
            break
        delay = reply.retry_after
        if delay is None:
            delay = min(policy.max_backoff, policy.backoff * 2 ** (attempts - 1))
            delay *= random.uniform(0.5, 1.0)
        delay = min(delay, policy.max_backoff, policy.max_seconds - elapsed)
        if stopping.wait(max(delay, 0.0)):
            break
    return _Outcome(row, reply, attempts, latency, datetime.now(UTC))


# -- the result --------------------------------------------------------------------------------
@dataclass
class ReplayResult:
    """What a replay did. ``selected == already_done + answers + failures + not_sent``
    (``not_sent``: left for a rerun after an interruption)."""

    out: str
    name: str
    selected: int = 0  # requests of the window (after sampling)
    already_done: int = 0  # answered or failed for good in an earlier run
    sent: int = 0  # requests sent in this run (each once, retries aside)
    answers: int = 0
    failures: int = 0
    retries: int = 0  # extra attempts
    not_sent: int = 0
    kept_in_spool: int = 0  # answers the writer could not write yet: the next run writes them
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    seconds: float = 0.0

    def latency_ms(self, q: float) -> float | None:
        """The ``q`` quantile (0–1) of the answers' latencies, in milliseconds."""
        if not self.latencies_ms:
            return None
        import numpy as np

        return float(np.quantile(np.asarray(self.latencies_ms), q))

    def summary(self) -> str:
        """One line: requests, sent, answers, failures, p50/p95 latency."""
        p50, p95 = self.latency_ms(0.5), self.latency_ms(0.95)
        lat = (f"latency p50 {p50:.1f} ms, p95 {p95:.1f} ms" if p50 is not None
               else "no latencies")
        text = (f"{self.selected} requests: {self.sent} sent, {self.answers} answers, "
                f"{self.failures} failures ({self.retries} retries); {lat}")
        if self.already_done:
            text += f"; {self.already_done} done by an earlier run"
        if self.not_sent:
            text += f"; {self.not_sent} not sent (interrupted: run again to send them)"
        if self.kept_in_spool:
            text += f"; {self.kept_in_spool} answers kept in the spool for the next run to write"
        return text


# -- state beside the output -------------------------------------------------------------------
class _State:
    """The ledger and the failure records of one replay (``{state}/ledger``, ``/failures``)."""

    def __init__(self, out_fs, out_root: str, state_fs, state_root: str, name: str):
        self.out_fs, self.out_root = out_fs, out_root.rstrip("/")
        self.fs, self.root = state_fs, state_root.rstrip("/")
        self.name = name
        self.lock = threading.Lock()

    def ledger_path(self, rel: str) -> str:
        return f"{self.root}/ledger/{rel.rsplit('.', 1)[0]}.keys"

    def record_object(self, path: str, data: bytes) -> None:
        """The writer's ``on_written`` hook: the object's keys, in a ledger file of its own."""
        rel = path[len(self.out_root) + 1:] if path.startswith(self.out_root + "/") else path
        keys = b"".join(k + b"\n" for k in _KEY.findall(data))
        target = self.ledger_path(rel)
        self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        self.fs.pipe_file(target, keys)

    def done_keys(self, endpoints: list[str]) -> set[str]:
        """Keys answered (ledger, after writing the ledger files an interruption missed) or
        failed for good."""
        done: set[str] = set()
        for endpoint in endpoints:
            out_dir = f"{self.out_root}/{endpoint}/{self.name}"
            led_dir = f"{self.root}/ledger/{endpoint}/{self.name}"
            objects = _find(self.out_fs, out_dir, ".jsonl")
            ledgers = _find(self.fs, led_dir, ".keys")
            for obj in objects:
                rel = obj[len(self.out_root) + 1:]
                if self.ledger_path(rel) not in ledgers:
                    self.record_object(obj, self.out_fs.cat_file(obj))
                    ledgers.add(self.ledger_path(rel))
            if ledgers:
                for blob in self.fs.cat(sorted(ledgers)).values():
                    done.update(blob.decode().split())
        for record in self.failures():
            done.add(record["replayKey"])
        return done

    def failures(self) -> list[dict]:
        out = []
        files = sorted(_find(self.fs, f"{self.root}/failures/{self.name}", ".jsonl"))
        for blob in (self.fs.cat(files).values() if files else ()):
            for line in blob.splitlines():
                try:
                    out.append(json.loads(line))
                except ValueError:  # a line cut by an interruption: that request is sent again
                    continue
        return out

    def write_failures(self, records: list[dict]) -> None:
        if not records:
            return
        folder = f"{self.root}/failures/{self.name}"
        self.fs.makedirs(folder, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        body = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        self.fs.pipe_file(f"{folder}/{stamp}-{uuid.uuid4().hex[:8]}.jsonl", body.encode())


def _find(fs, folder: str, suffix: str) -> set[str]:
    try:
        return {p for p in fs.find(folder) if p.endswith(suffix)}
    except FileNotFoundError:
        return set()


def read_failures(out: str, name: str, *, state: str | None = None,
                  storage_options: dict | None = None) -> list[dict]:
    """The failure records of the replays into ``out`` named ``name`` (one dict per request:
    ``replayKey``, ``endpoint``, ``variant``, ``eventId``, ``inferenceId``, ``inferenceTime``,
    ``status``, ``error``, ``attempts``, ``replayTime``)."""
    from fsspec.core import url_to_fs

    out_fs, out_root = url_to_fs(out, **(storage_options or {}))
    state = state or _default_state(out)
    state_fs, state_root = url_to_fs(state, **(storage_options or {}))
    return _State(out_fs, out_root, state_fs, state_root, name).failures()


def _default_state(out: str) -> str:
    base = out.rstrip("/")
    if base.endswith(":/") or re.fullmatch(r"[a-z0-9]+://[^/]+", base):
        raise ConfigError(
            f"the replay's ledger goes beside the output ({base}.replay), which a bucket root "
            "cannot have: pass state= (--state) or an output under a prefix"
        )
    return base + ".replay"


# -- the replay --------------------------------------------------------------------------------
def replay(
    tree,
    to: str | Target,
    out: str,
    *,
    name: str | None = None,
    start=None,
    end=None,
    endpoint=None,
    variant=None,
    lateness=None,
    sample: float | int | None = None,
    concurrency: int = 4,
    rate: float | None = None,
    timeout: float = 30.0,
    retry: RetryPolicy | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    profile: str | None = None,
    storage_options: dict | None = None,
    out_storage_options: dict | None = None,
    state: str | None = None,
    progress: Callable[[ReplayResult], None] | None = None,
    close_timeout: float = 30.0,
    commit_interval: float = 30.0,
) -> ReplayResult:
    """Send the captured requests of a window to ``to`` and write the answers under ``out``.

    ``tree`` is a capture tree URI (or an open :class:`~captureq.api.CaptureTree`, narrowed
    already); ``start``/``end``/``endpoint``/``variant``/``lateness`` narrow it as
    :func:`captureq.open` does. ``to`` is ``http(s)://…/invocations`` (POST of the captured
    bytes, base64-decoded when stored so, with the captured ``Content-Type`` and the captured
    output's as ``Accept``) or ``sagemaker:ENDPOINT[:VARIANT]`` (``InvokeEndpoint``, with
    ``TargetVariant``; ``region``, ``endpoint_url``, ``profile``). ``name`` is the output's
    variant (default :attr:`Target.default_name`). At most ``concurrency`` requests are in
    flight and ``rate`` attempts start per second; each attempt times out after ``timeout``
    seconds; ``retry`` bounds the retries. ``progress(result)`` is called as answers come.
    Answers are written (and entered in the ledger) at least every ``commit_interval`` seconds.
    """
    from fsspec.core import url_to_fs

    from .capture import CaptureConfig, CaptureWriter
    from .plan import open_plan

    target = to if isinstance(to, Target) else parse_target(to)
    name = name or target.default_name
    if not _NAME.match(name):
        raise ConfigError(
            f"name {name!r} is not a SageMaker variant name (letters, digits and inner hyphens); "
            "pass --name"
        )
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"concurrency must be a positive int, got {concurrency!r}")
    if rate is not None and rate <= 0:
        raise ConfigError(f"rate must be a positive number of requests per second, got {rate!r}")
    sample = parse_sample(sample)
    retry = retry or RetryPolicy()
    if out_storage_options is None and storage_options and isinstance(tree, str) and (
        tree.split("://")[0] == out.split("://")[0] and "://" in out
    ):
        out_storage_options = storage_options
    if isinstance(tree, str):
        tree = open_plan(tree, start=start, end=end, endpoint=endpoint, variant=variant,
                         lateness=lateness, storage_options=storage_options)
    elif any(v is not None for v in (start, end, endpoint, variant, lateness)):
        tree = tree.where(start=start, end=end, endpoint=endpoint, variant=variant,
                          lateness=lateness)
    t0 = time.monotonic()
    result = ReplayResult(out=out, name=name)
    chosen = select_requests(tree.captures(), sample)
    result.selected = chosen.num_rows

    out_fs, out_root = url_to_fs(out, **(out_storage_options or {}))
    state_uri = state or _default_state(out)
    state_fs, state_root = url_to_fs(state_uri, **(out_storage_options or {}))
    ledger = _State(out_fs, out_root, state_fs, state_root, name)
    endpoints = sorted(set(chosen.column("endpoint").to_pylist()))

    def writer(ep: str) -> CaptureWriter:
        cfg = CaptureConfig(out, sampling_percentage=100, endpoint=ep, variant=name,
                            storage_options=out_storage_options, disk_threshold=100.0,
                            spool_flush_interval=0.2, close_timeout=close_timeout,
                            max_file_age=commit_interval)
        return CaptureWriter(cfg, on_written=ledger.record_object)

    writers = {ep: writer(ep) for ep in endpoints}
    try:
        # What an interrupted run left in the spool is written (and entered in the ledger)
        # before the ledger is read.
        for w in writers.values():
            w.flush(timeout=close_timeout)
        done = ledger.done_keys(endpoints)
        if done:
            import pyarrow as pa
            import pyarrow.compute as pc

            keep = pc.invert(pc.is_in(chosen.column("replay_key"), pa.array(sorted(done))))
            chosen = chosen.filter(keep)
        result.already_done = result.selected - chosen.num_rows
        _run(chosen, target, writers, ledger, result, concurrency=concurrency, rate=rate,
             timeout=timeout, retry=retry, region=region, endpoint_url=endpoint_url,
             profile=profile, progress=progress)
    finally:
        for w in writers.values():
            stats = w.close()
            result.kept_in_spool += stats.kept
        result.seconds = time.monotonic() - t0
    return result


def _run(chosen, target: Target, writers: dict, ledger: _State, result: ReplayResult, *,
         concurrency: int, rate: float | None, timeout: float, retry: RetryPolicy,
         region, endpoint_url, profile, progress) -> None:
    if target.kind == "sagemaker":
        sender = _SageMakerSender(target, timeout, concurrency, region, endpoint_url, profile)
    else:
        sender = _HttpSender(target.url, timeout)  # type: ignore[arg-type]
    limit = _RateLimit(rate)
    stopping = threading.Event()
    failed: list[dict] = []
    last_failures_write = time.monotonic()
    columns = ["replay_key", "endpoint", "variant", "event_id", "inference_id", "inference_time",
               "input_observed_content_type", "input_encoding", "input_data",
               "output_observed_content_type"]
    rows = iter(chosen.select(columns).to_pylist())
    result.not_sent = chosen.num_rows

    def fail(row: dict, status, error: str, attempts: int, when: datetime) -> None:
        failed.append({
            "replayKey": row["replay_key"], "endpoint": row["endpoint"],
            "variant": row["variant"], "eventId": row["event_id"],
            "inferenceId": row["inference_id"], "inferenceTime": _iso(row["inference_time"]),
            "status": status, "error": error, "attempts": attempts, "replayTime": _iso(when),
            "target": target.url or f"sagemaker:{target.endpoint}"
            + (f":{target.variant}" if target.variant else ""),
        })
        result.failures += 1

    def finish(o: _Outcome) -> None:
        result.retries += o.attempts - 1
        row = o.row
        if not o.reply.ok:
            fail(row, o.reply.status, o.reply.describe(), o.attempts, o.answered_at)
            return
        w = writers[row["endpoint"]]
        args = (_payload(row), row["input_observed_content_type"], o.reply.body,
                o.reply.content_type or "application/octet-stream")
        kw = dict(inference_id=row["inference_id"], event_id=row["event_id"],
                  when=row["inference_time"],
                  metadata={"replayKey": row["replay_key"], "replaySourceVariant": row["variant"],
                            "replayTime": _iso(o.answered_at),
                            "replayLatencyMs": round(o.latency_ms, 3),
                            "replayAttempts": o.attempts})
        if not w.capture(*args, **kw) and not (w.flush(timeout=30) and w.capture(*args, **kw)):
            fail(row, o.reply.status, "answered, but the capture writer refused the record "
                 f"(its spool is full or its disk: {w.spool.root})", o.attempts, o.answered_at)
            return
        result.answers += 1
        result.latencies_ms.append(o.latency_ms)

    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="captureq-replay")
    in_flight: set = set()
    try:
        while True:
            while len(in_flight) < 2 * concurrency:
                row = next(rows, None)
                if row is None:
                    break
                body = _payload(row)
                result.not_sent -= 1
                if body is None:
                    fail(row, None, "no captured request (the capture has no endpointInput)", 0,
                         datetime.now(UTC))
                    continue
                result.sent += 1
                in_flight.add(pool.submit(_send, sender, row, body, retry, limit, stopping))
            if not in_flight:
                break
            finished, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            for fut in finished:
                finish(fut.result())
            if failed and (len(failed) >= 500 or time.monotonic() - last_failures_write > 5):
                ledger.write_failures(failed)
                failed.clear()
                last_failures_write = time.monotonic()
            if progress is not None:
                progress(result)
    except BaseException:
        # Interrupted: the requests in flight are let go (their answers are not written, so a
        # rerun sends them again); what was answered is written by the writers' close.
        stopping.set()
        for fut in in_flight:
            fut.cancel()
        result.not_sent += len(in_flight)
        result.sent -= len(in_flight)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        ledger.write_failures(failed)
        sender.close()


def _iso(when) -> str | None:
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
