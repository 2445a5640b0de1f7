"""Serve → capture → label → query, all on this machine: captureq's whole story in one run.

    python -m captureq.serve_demo [DIR] [--requests N]

1. serves a small churn model (logistic regression, fixed weights shipped below, for the 12
   CSV features of :func:`captureq.generate.default_endpoints`' ``churn-xgb``) with FastAPI +
   uvicorn on a loopback port, with capture switched on in two lines (50 % sampling);
2. invokes it with httpx for a validation set (one CSV row per request, some with several),
   each request carrying an ``X-Amzn-SageMaker-Inference-Id``;
3. writes ground truth for part of the requests, as a labelling job would, hours later;
4. opens the capture tree with captureq, joins predictions with ground truth and prints the
   model's quality at the 0.8 probability cut-off — and checks it against the client's view.
"""

from __future__ import annotations

import math
import random
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request, Response  # the `serve` extra

import captureq

from .capture import CaptureConfig, CaptureMiddleware, write_ground_truth
from .records import csv_line

__all__ = [
    "CUTOFF",
    "LoopbackServer",
    "create_app",
    "main",
    "predict",
    "run_demo",
    "validation_set",
]

CUTOFF = 0.8
# The model: standardise the 12 features, weighted sum, logistic. Same weights as the
# generator's churn-xgb endpoint, so generated and served trees describe the same model.
MEANS = (100, 8, 180, 100, 200, 100, 200, 100, 10, 4.5, 1.6, 60)
STDS = (40, 13, 54, 20, 50, 20, 50, 20, 2.8, 2.5, 1.3, 10)
WEIGHTS = (
    0.09836989433894623,
    -0.0506466571419962,
    -0.11692318553927998,
    -0.48760025835412046,
    -0.059280713442142,
    0.382154266919706,
    0.2514810974952764,
    0.39412645435461596,
    0.4421029503205705,
    -0.09943743904800446,
    -0.08329953074299547,
    0.39486340780721724,
)
INTERCEPT, SCALE = -1.3, 1.5
INTEGER_FEATURES = frozenset({0, 1, 3, 5, 7, 9, 10})

QUALITY = """
select count(*)                                         as captured_records,
       count(ground_truth)                              as labelled,
       sum(((output_c0 >= ?) and ground_truth_value = 1)::int) as true_pos,
       sum(((output_c0 >= ?) and ground_truth_value = 0)::int) as false_pos,
       sum(((output_c0 <  ?) and ground_truth_value = 1)::int) as false_neg,
       sum(((output_c0 <  ?) and ground_truth_value = 0)::int) as true_neg,
       round(avg(output_c0), 4)                        as mean_probability
from predictions
"""


# A retrained candidate, for ``captureq replay``: _c3 (day calls, the feature that drifts in the
# demo tree) weighs half as much, and the intercept is lower.
RETRAINED_WEIGHTS = tuple(w / 2 if j == 3 else w for j, w in enumerate(WEIGHTS))
RETRAINED_INTERCEPT = -1.6


def predict(row: list[float], weights=WEIGHTS, intercept: float = INTERCEPT) -> float:
    """Churn probability of one 12-feature row.

    >>> round(predict(list(MEANS)), 4)  # an average customer
    0.2142
    >>> round(predict(list(MEANS), RETRAINED_WEIGHTS, RETRAINED_INTERCEPT), 4)
    0.168
    """
    if len(row) != len(weights):
        raise ValueError(f"expected {len(weights)} features, got {len(row)}")
    z = intercept + SCALE * sum(w * (x - m) / s for w, x, m, s in zip(weights, row, MEANS, STDS))
    return 1.0 / (1.0 + math.exp(-z))


def create_app(capture: CaptureConfig | dict | str | None = None, *, weights=WEIGHTS,
               intercept: float = INTERCEPT):
    """The model behind SageMaker's container contract: ``GET /ping``, ``POST /invocations``
    (``weights``/``intercept``: another model, such as the retrained candidate)."""
    app = FastAPI(title="churn model")
    if capture is not None:
        app.add_middleware(CaptureMiddleware, config=capture)

    @app.get("/ping")
    def ping() -> dict:
        return {"status": "ok"}

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        text = (await request.body()).decode("utf-8")
        try:
            rows = [
                [float(v) for v in line.split(",")] for line in text.splitlines() if line.strip()
            ]
            scores = [predict(r, weights, intercept) for r in rows]
        except ValueError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from exc
        return Response("".join(f"{p:.6f}\n" for p in scores), media_type="text/csv")

    return app


class LoopbackServer:
    """Run an ASGI app with uvicorn in a thread on a free 127.0.0.1 port.

    Leaving the ``with`` block shuts the server down, lifespan included (which closes the
    capture writer, flushing everything buffered).
    """

    def __init__(self, app):
        self.app = app
        self.url = ""

    def __enter__(self) -> LoopbackServer:
        import uvicorn

        # port 0: the OS picks a free port; read it back once uvicorn is listening. (Handing
        # uvicorn a pre-bound socket instead costs ~40 ms per request: Nagle meets delayed ACK.)
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def validation_set(n: int = 400, seed: int = 7) -> list[tuple[list[list[float]], list[int]]]:
    """``n`` requests of 1–3 customers each, with churn labels drawn from the model's odds."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        rows, labels = [], []
        for _ in range(rng.choice((2, 3)) if rng.random() < 0.1 else 1):
            row = [rng.gauss(m, s) for m, s in zip(MEANS, STDS)]
            row = [
                max(round(v), 0) if j in INTEGER_FEATURES else round(v, 1)
                for j, v in enumerate(row)
            ]
            rows.append(row)
            labels.append(int(rng.random() < predict(row)))
        out.append((rows, labels))
    return out


@dataclass
class DemoResult:
    requests: int
    records: int
    captured_requests: int
    files: int
    labelled_requests: int
    quality: dict
    expected: dict
    seconds: float


def _confusion(pairs: list[tuple[float, int]]) -> dict:
    return {
        "true_pos": sum(p >= CUTOFF and y == 1 for p, y in pairs),
        "false_pos": sum(p >= CUTOFF and y == 0 for p, y in pairs),
        "false_neg": sum(p < CUTOFF and y == 1 for p, y in pairs),
        "true_neg": sum(p < CUTOFF and y == 0 for p, y in pairs),
    }


def run_demo(
    base: str | Path,
    *,
    requests: int = 400,
    sampling: float = 50,
    label_fraction: float = 0.6,
    seed: int = 7,
) -> DemoResult:
    """Run the serve → capture → label → query loop under ``base``; returns the numbers."""
    import httpx

    base = Path(base)
    capture, labels = base / "capture", base / "groundtruth"
    t0 = time.perf_counter()
    config = {
        "EnableCapture": True,
        "InitialSamplingPercentage": sampling,
        "DestinationS3Uri": str(capture),
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"]},
    }
    app = create_app(CaptureConfig.from_dict(config, endpoint="churn-local", sampling_seed=seed))
    answers: dict[str, tuple[list[float], list[int]]] = {}
    data = validation_set(requests, seed)
    with LoopbackServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        client.get("/ping").raise_for_status()
        for i, (rows, truth) in enumerate(data):
            inference_id = f"val-{i:05d}"
            r = client.post(
                "/invocations",
                content="".join(csv_line(x) + "\n" for x in rows),
                headers={"Content-Type": "text/csv", "X-Amzn-SageMaker-Inference-Id": inference_id},
            )
            r.raise_for_status()
            answers[inference_id] = ([float(v) for v in r.text.split()], truth)
    # Labels come later (here: two hours on) and only for some requests.
    rng = random.Random(seed + 1)
    labelled = {
        k: "\n".join(map(str, t)) for k, (_, t) in answers.items() if rng.random() < label_fraction
    }
    write_ground_truth(str(labels), labelled, when=datetime.now(timezone.utc) + timedelta(hours=2))

    tree = captureq.open(str(capture), labels=str(labels))
    tables = tree.load()
    if tables.quarantine.num_rows:
        raise RuntimeError(f"captureq quarantined {tables.quarantine.num_rows} rows of the capture")
    rel = tree.connect().sql(QUALITY, params=[CUTOFF] * 4)
    quality = dict(zip(rel.columns, rel.fetchall()[0]))
    captured_ids = set(tables.captures.column("inference_id").to_pylist())
    pairs = [
        (p, y)
        for k, (ps, ys) in answers.items()
        if k in captured_ids and k in labelled
        for p, y in zip(ps, ys)
    ]
    return DemoResult(
        requests=len(data),
        records=sum(len(r) for r, _ in data),
        captured_requests=tables.captures.num_rows,
        files=len(tables.scan.files),
        labelled_requests=len(labelled),
        quality=quality,
        expected=_confusion(pairs),
        seconds=time.perf_counter() - t0,
    )


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    argv = sys.argv[1:] if argv is None else argv
    requests = 400
    if "--requests" in argv:
        i = argv.index("--requests")
        requests = int(argv[i + 1])
        argv = argv[:i] + argv[i + 2 :]
    base = Path(argv[0] if argv else "demo-data/serve")
    if base.exists():
        shutil.rmtree(base)
    console = Console()
    console.rule("[bold]serve → capture → label → query")
    r = run_demo(base, requests=requests)
    q = r.quality
    console.print(
        f"served {r.requests} requests ({r.records} records) on loopback; captured "
        f"{r.captured_requests} at 50 % sampling into {r.files} object(s) under {base / 'capture'}"
    )
    console.print(
        f"ground truth written for {r.labelled_requests} requests under {base / 'groundtruth'}"
    )
    console.print(
        f"captureq: {q['captured_records']} captured records, {q['labelled']} with ground truth, "
        f"mean probability {q['mean_probability']}, 0 quarantined"
    )
    tp, fp, fn, tn = (q[k] for k in ("true_pos", "false_pos", "false_neg", "true_neg"))
    total = tp + fp + fn + tn
    console.print(
        f"at the {CUTOFF} cut-off: TP={tp} FP={fp} FN={fn} TN={tn}; "
        f"accuracy {(tp + tn) / total:.4f}, precision {tp / max(tp + fp, 1):.4f}, "
        f"recall {tp / max(tp + fn, 1):.4f}"
    )
    same = {k: q[k] for k in r.expected} == r.expected
    console.print(
        f"client-side confusion matrix of the same requests: {r.expected} → "
        f"{'[green]matches' if same else '[red]DIFFERS'}"
    )
    console.print(f"done in {r.seconds:.1f}s")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
