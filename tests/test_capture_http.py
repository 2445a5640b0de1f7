"""Capture middleware behind real HTTP servers on loopback, driven by a real client (httpx)."""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

httpx = pytest.importorskip("httpx")
fastapi = pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse

import captureq
from captureq.capture import CaptureConfig, CaptureMiddleware, WSGICaptureMiddleware
from captureq.serve_demo import LoopbackServer, predict, run_demo

ROW = "100,8,180,100,200,100,200,100,10,4.5,1.6,60"  # an average customer
SCORE = "0.214165\n"  # sigmoid(-1.3): the model's intercept alone


def model_app(capture_config: dict) -> FastAPI:
    app = FastAPI()
    app.add_middleware(CaptureMiddleware, config=capture_config)  # the two lines of the README

    @app.get("/ping")
    def ping() -> dict:
        return {"ok": True}

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        rows = (await request.body()).decode().split()
        return Response(
            "".join(f"{predict([float(v) for v in r.split(',')]):.6f}\n" for r in rows),
            media_type="text/csv",
        )

    @app.post("/stream")
    async def stream(request: Request) -> StreamingResponse:
        body = await request.json()

        async def parts():
            yield b'{"predictions": ['
            yield ",".join(str(x * 2) for x in body["instances"]).encode()
            yield b"]}"

        return StreamingResponse(parts(), media_type="application/json")

    @app.post("/broken")
    async def broken() -> Response:
        return Response("no", status_code=400, media_type="text/plain")

    return app


def test_fastapi_app_captures_with_two_lines(tmp_path) -> None:
    app = model_app(
        {
            "DestinationS3Uri": str(tmp_path),
            "InitialSamplingPercentage": 100,
            "CaptureContentTypeHeader": {
                "CsvContentTypes": ["text/csv"],
                "JsonContentTypes": ["application/json"],
            },
        }
    )
    with LoopbackServer(app) as server, httpx.Client(base_url=server.url) as client:
        assert client.get("/ping").json() == {"ok": True}  # GET: not captured
        r = client.post(
            "/invocations",
            content=ROW + "\n",
            headers={"Content-Type": "text/csv", "X-Amzn-SageMaker-Inference-Id": "hdr-1"},
        )
        assert r.status_code == 200 and r.text == SCORE
        client.post(
            "/invocations?inference_id=qs-2",
            content=f"{ROW}\n{ROW}\n",
            headers={"Content-Type": "text/csv"},
        )
        client.post("/invocations", content=ROW + "\n", headers={"Content-Type": "text/csv"})
        s = client.post("/stream", json={"instances": [1, 2, 3]})
        assert s.json() == {"predictions": [2, 4, 6]}
        assert client.post("/broken", content="x").status_code == 400  # errors: not captured
    # Leaving the block shut uvicorn down; its lifespan shutdown flushed and closed the writer.
    tree = captureq.open(str(tmp_path))
    caps = tree.captures().sort_by("line_number").to_pylist()
    assert [c["inference_id"] for c in caps] == ["hdr-1", "qs-2", None, None]
    assert [c["endpoint"] for c in caps] == ["local-endpoint"] * 4
    assert caps[0]["input_data"] == ROW + "\n" and caps[0]["output_data"] == SCORE
    assert caps[0]["output_observed_content_type"] == "text/csv; charset=utf-8"
    assert caps[3]["input_data"] == '{"instances":[1,2,3]}'
    assert caps[3]["output_data"] == '{"predictions": [2,4,6]}'  # all three streamed chunks
    assert {c["input_encoding"] for c in caps} == {"CSV", "JSON"}
    assert tree.quarantine().num_rows == 0
    assert tree.outputs().num_rows == 7  # 1 + 2 + 1 CSV records, 3 JSON predictions


def test_capture_never_fails_the_request(tmp_path) -> None:
    """A destination that cannot be written: requests still succeed, the spool keeps them."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    app = model_app(
        CaptureConfig(str(blocker / "capture"), sampling_percentage=100,
                      spool_dir=str(tmp_path / "spool"), close_timeout=1)
    )
    mw = None
    with LoopbackServer(app) as server, httpx.Client(base_url=server.url) as client:
        for _ in range(3):
            assert (
                client.post(
                    "/invocations", content=ROW, headers={"Content-Type": "text/csv"}
                ).status_code
                == 200
            )
        mw = app.middleware_stack
        while not isinstance(mw, CaptureMiddleware):
            mw = mw.app
    stats = mw.writer.stats
    assert mw.writer.closed and (stats.kept, stats.lost) == (3, 0) and stats.write_errors >= 1
    assert sum(1 for p in (tmp_path / "spool").rglob("*.jsonl") for _ in p.open()) == 3


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_wsgi_middleware_behind_wsgiref(tmp_path) -> None:
    def app(environ, start_response):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)).decode()
        if environ["REQUEST_METHOD"] != "POST":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"pong"]
        score = predict([float(v) for v in body.split(",")])
        start_response("200 OK", [("Content-Type", "text/csv; charset=utf-8")])
        return [f"{score:.6f}".encode(), b"\n"]

    wrapped = WSGICaptureMiddleware(
        app,
        config={"DestinationS3Uri": str(tmp_path), "InitialSamplingPercentage": 100},
        paths=["/invocations"],
    )
    server = make_server("127.0.0.1", 0, wrapped, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        with httpx.Client(base_url=url) as client:
            assert client.get("/ping").text == "pong"
            r = client.post(
                "/invocations",
                content=ROW,
                headers={"Content-Type": "text/csv", "X-Amzn-SageMaker-Inference-Id": "w-1"},
            )
            assert r.text == SCORE  # the app still read the body the middleware had read
            client.post(
                "/other", content=ROW, headers={"Content-Type": "text/csv"}
            )  # not the route
            client.post(
                "/invocations?inference_id=w-2", content=ROW, headers={"Content-Type": "text/csv"}
            )
    finally:
        server.shutdown()
        thread.join()
    wrapped.writer.close()
    caps = captureq.open(str(tmp_path)).captures().sort_by("line_number").to_pylist()
    assert [(c["inference_id"], c["input_data"], c["output_data"]) for c in caps] == [
        ("w-1", ROW, SCORE),
        ("w-2", ROW, SCORE),
    ]


def test_serve_demo_runs_the_whole_loop(tmp_path) -> None:
    r = run_demo(tmp_path, requests=60, sampling=50, label_fraction=0.6, seed=3)
    q = r.quality
    assert 0 < r.captured_requests < r.requests  # sampled
    assert 0 < q["labelled"] < q["captured_records"]  # labels for part of it
    assert {k: q[k] for k in r.expected} == r.expected  # the tree agrees with what the client saw


def test_the_served_model_is_kept_for_multi_model_endpoints(tmp_path) -> None:
    """The target model of a multi-model endpoint (SageMaker's X-Amzn-SageMaker-Target-Model
    header, or a name the app gives) lands in eventMetadata.targetModel, so `--by targetModel`
    splits the tree per model."""
    app = FastAPI()
    app.add_middleware(CaptureMiddleware, config={"DestinationS3Uri": str(tmp_path / "a"),
                                                  "InitialSamplingPercentage": 100})

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        return Response("0.5\n", media_type="text/csv")

    with LoopbackServer(app) as server, httpx.Client(base_url=server.url) as client:
        for model in ("small.tar.gz", "large.tar.gz", None):
            headers = {"Content-Type": "text/csv"}
            if model:
                headers["X-Amzn-SageMaker-Target-Model"] = model
            client.post("/invocations", content=ROW + "\n", headers=headers)
    caps = captureq.open(str(tmp_path / "a")).sql(
        "select event_metadata->>'targetModel' as m from captures order by line_number").to_pylist()
    assert [c["m"] for c in caps] == ["small.tar.gz", "large.tar.gz", None]

    def wsgi_app(environ, start_response):
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [("Content-Type", "text/csv")])
        return [b"0.5\n"]

    wrapped = WSGICaptureMiddleware(wsgi_app, config={"DestinationS3Uri": str(tmp_path / "w"),
                                                      "InitialSamplingPercentage": 100},
                                    model_name="churn-v7")
    server = make_server("127.0.0.1", 0, wrapped, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}") as client:
            client.post("/invocations", content=ROW, headers={"Content-Type": "text/csv"})
            client.post("/invocations", content=ROW, headers={"Content-Type": "text/csv",
                                                              "X-Amzn-SageMaker-Target-Model": "b.tar.gz"})
    finally:
        server.shutdown()
        thread.join()
    wrapped.writer.close()
    caps = captureq.open(str(tmp_path / "w")).sql(
        "select event_metadata->>'targetModel' as m from captures order by line_number").to_pylist()
    assert [c["m"] for c in caps] == ["churn-v7", "b.tar.gz"]
