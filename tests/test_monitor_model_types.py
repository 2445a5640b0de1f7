"""Every model type, inferred from the outputs and the labels, and metrics equal scikit-learn's.

Trees are written with captureq's own writer (``tests/trees.py``): JSON outputs with a
``predicted_label`` and a ``score``, CSV probability vectors, CSV scores; text and numeric labels.
"""

from __future__ import annotations

import json
import random
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trees import T0, capture, label, write_captures, write_labels
from typer.testing import CliRunner

import captureq
from captureq.cli import app
from captureq.monitor.quality_files import multiclass_scalars, quality_statistics

skm = pytest.importorskip("sklearn.metrics")
runner = CliRunner()
ANIMALS = ["bird", "cat", "dog"]
N = 300


def _tree(root, output_of, truths, *, output_type="application/json", every=50):
    """N captures over three hours; record i answers ``output_of(i)`` and is labelled
    ``truths[i]`` unless ``i % every == 0`` (those stay unlabelled)."""
    caps = [
        capture("1,2", output_of(i), output_type=output_type, event_id=f"e{i}",
                inference_id=f"i{i}", when=T0 + timedelta(seconds=36 * i))
        for i in range(N)
    ]  # fmt: skip
    write_captures(root / "capture", caps)
    write_labels(root / "labels", [label(f"i{i}", str(truths[i])) for i in range(N) if i % every])
    return captureq.open(str(root / "capture"), labels=str(root / "labels"))


def _guess(truths, classes, seed=0, right=0.7):
    rng = random.Random(seed)
    return [t if rng.random() < right else rng.choice(classes) for t in truths]


def _truths(classes, seed=1):
    rng = random.Random(seed)
    return [rng.choice(classes) for _ in range(N)]


def _labelled(values):
    return [v for i, v in enumerate(values) if i % 50]


@pytest.fixture(scope="module")
def animals(tmp_path_factory):
    """Clarify-style JSON outputs: a text predicted_label and a score; labels cat/dog/bird."""
    root = tmp_path_factory.mktemp("animals")
    truths = _truths(ANIMALS)
    preds = _guess(truths, ANIMALS)
    rng = random.Random(2)
    out = lambda i: json.dumps(  # noqa: E731
        {"predictions": [{"predicted_label": preds[i], "score": round(rng.random(), 3)}]}
    )
    return _tree(root, out, truths), truths, preds


def _assert_multiclass(overall, y, p):
    assert overall["labelled"] == len(y)
    assert overall["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    assert overall["weighted_f1"] == pytest.approx(skm.f1_score(y, p, average="weighted"))


def test_text_labels_with_a_predicted_label_are_multiclass(animals):
    tree, truths, preds = animals
    result = tree.model_quality()
    assert result.problem_type == "MulticlassClassification"
    assert result.prediction == "output_predicted_label"
    _assert_multiclass(result.overall(), _labelled(truths), _labelled(preds))
    window = [r for r in result.confusion.to_pylist() if r["granularity"] == "window"]
    cm = skm.confusion_matrix(_labelled(truths), _labelled(preds), labels=ANIMALS)
    for r in window:
        assert r["count"] == cm[ANIMALS.index(r["actual"]), ANIMALS.index(r["predicted"])]
    assert sum(r["count"] for r in window) == cm.sum()


def test_model_monitor_statistics_of_text_labels_match_sklearn(animals):
    tree, truths, preds = animals
    stats = tree.model_quality().statistics
    m = stats["multiclass_classification_metrics"]
    y, p = _labelled(truths), _labelled(preds)
    assert stats["dataset"]["item_count"] == len(y)
    assert m["accuracy"]["value"] == pytest.approx(skm.accuracy_score(y, p))
    for name, fn in (("weighted_recall", skm.recall_score), ("weighted_precision", skm.precision_score),
                     ("weighted_f1", skm.f1_score)):  # fmt: skip
        assert m[name]["value"] == pytest.approx(fn(y, p, average="weighted", zero_division=0))
    for beta, name in ((0.5, "weighted_f0_5"), (2.0, "weighted_f2")):
        assert m[name]["value"] == pytest.approx(skm.fbeta_score(y, p, beta=beta, average="weighted"))
    cm = skm.confusion_matrix(y, p, labels=ANIMALS)
    assert m["confusion_matrix"] == {
        a: {b: int(cm[i, j]) for j, b in enumerate(ANIMALS)} for i, a in enumerate(ANIMALS)
    }


def test_cli_quality_with_text_labels(animals):
    tree, *_ = animals
    base = ["quality", tree.uri, "--labels", tree.labels_uri]
    r = runner.invoke(app, [*base, "--problem-type", "MulticlassClassification",
                            "--prediction", "output_predicted_label"])  # fmt: skip
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, base)
    assert r.exit_code == 0, r.output
    assert "MulticlassClassification on output_predicted_label" in r.stderr
    assert "--problem-type" in r.stderr  # the choice says how to override it


def test_labelled_counts_what_count_ground_truth_counts(animals):
    tree, *_ = animals
    n = tree.sql("select count(ground_truth) as n from predictions").to_arrow()["n"][0].as_py()
    assert n == N - N // 50
    for problem, prediction in ((None, None), ("Regression", "output_score")):
        overall = tree.model_quality(problem_type=problem, prediction=prediction).overall()
        assert overall["labelled"] == n


def test_report_with_text_labels(animals, tmp_path):
    pytest.importorskip("altair")
    tree, *_ = animals
    runner.invoke(app, ["baseline", tree.uri, str(tmp_path / "base")])
    r = runner.invoke(app, ["report", tree.uri, "--labels", tree.labels_uri, "--baseline",
                            str(tmp_path / "base"), "-o", str(tmp_path / "r.html")])  # fmt: skip
    assert r.exit_code == 0, r.output
    html = (tmp_path / "r.html").read_text()
    assert "MulticlassClassification metrics of output_predicted_label" in html
    assert f"{N - N // 50:,} of {N:,} records are labelled" in html


def test_numeric_class_labels_with_a_predicted_label_are_multiclass(tmp_path):
    classes = [0, 1, 2, 3]
    truths = _truths(classes)
    preds = _guess(truths, classes)
    rng = random.Random(3)
    out = lambda i: json.dumps(  # noqa: E731
        {"predictions": [{"predicted_label": preds[i], "score": round(rng.random(), 3)}]}
    )
    result = _tree(tmp_path, out, truths).model_quality()
    assert (result.problem_type, result.prediction) == ("MulticlassClassification",
                                                        "output_predicted_label")  # fmt: skip
    _assert_multiclass(result.overall(), _labelled(truths), _labelled(preds))
    assert "mape" not in result.overall()


def _probabilities(preds, classes, seed=4):
    """A probability vector per record whose argmax is ``preds[i]``."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in preds:
        v = rng.random(len(classes)) * 0.5
        v[classes.index(p)] = 0.6 + rng.random() * 0.4
        rows.append(np.round(v / v.sum(), 4))
    return rows


def test_argmax_of_a_probability_vector_with_a_label_list(tmp_path):
    truths = _truths(ANIMALS)
    preds = _guess(truths, ANIMALS)
    probs = _probabilities(preds, ANIMALS)
    tree = _tree(tmp_path, lambda i: ",".join(map(str, probs[i])), truths, output_type="text/csv")
    with pytest.raises(captureq.errors.ConfigError, match="class_labels"):
        tree.model_quality()  # text labels, numbered outputs: which output is which class?
    result = tree.model_quality(class_labels=ANIMALS)
    assert result.problem_type == "MulticlassClassification"
    _assert_multiclass(result.overall(), _labelled(truths), _labelled(preds))
    r = runner.invoke(app, ["quality", tree.uri, "--labels", tree.labels_uri,
                            "--class-labels", "bird,cat,dog", "--format", "json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "argmax" in r.stderr
    r = runner.invoke(app, ["quality", tree.uri, "--labels", tree.labels_uri])
    assert r.exit_code == 2 and "--class-labels" in r.stderr


def test_argmax_with_class_indexes(tmp_path):
    classes = [0, 1, 2]
    truths = _truths(classes)
    preds = _guess(truths, classes)
    probs = _probabilities(preds, classes)
    tree = _tree(tmp_path, lambda i: ",".join(map(str, probs[i])), truths, output_type="text/csv")
    result = tree.model_quality()
    assert result.problem_type == "MulticlassClassification"
    _assert_multiclass(result.overall(), _labelled(truths), _labelled(preds))


def test_binary_from_zero_one_predicted_labels(tmp_path):
    truths = _truths([0, 1])
    preds = _guess(truths, [0, 1])
    out = lambda i: json.dumps({"predicted_label": preds[i]})  # noqa: E731
    result = _tree(tmp_path, out, truths).model_quality()
    assert (result.problem_type, result.prediction) == ("BinaryClassification",
                                                        "output_predicted_label")  # fmt: skip
    y, p = _labelled(truths), _labelled(preds)
    o = result.overall()
    assert o["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    assert o["f1"] == pytest.approx(skm.f1_score(y, p))


def test_binary_from_a_score_and_a_threshold(tmp_path):
    truths = _truths([0, 1])
    rng = np.random.default_rng(5)
    scores = np.round(np.clip(np.array(truths) * 0.3 + rng.random(N) * 0.7, 0, 1), 3)
    out = lambda i: json.dumps({"predicted_label": int(scores[i] >= 0.5), "score": scores[i]})  # noqa: E731
    tree = _tree(tmp_path, out, truths)
    result = tree.model_quality(threshold=0.6)
    assert (result.problem_type, result.prediction) == ("BinaryClassification", "output_score")
    y, s = np.array(_labelled(truths)), np.array(_labelled(list(scores)))
    yp = (s >= 0.6).astype(int)
    o = result.overall()
    assert o["precision"] == pytest.approx(skm.precision_score(y, yp))
    assert o["recall"] == pytest.approx(skm.recall_score(y, yp))
    assert o["auc_roc"] == pytest.approx(skm.roc_auc_score(y, s))
    m = result.statistics["binary_classification_metrics"]
    assert m["auc"]["value"] == pytest.approx(skm.roc_auc_score(y, s))
    (tn, fp), (fn, tp) = skm.confusion_matrix(y, yp)
    assert m["confusion_matrix"] == {"0": {"0": tn, "1": fp}, "1": {"0": fn, "1": tp}}


def test_regression_is_still_regression(tmp_path):
    rng = np.random.default_rng(6)
    truths = np.round(rng.normal(100, 20, N), 2)
    preds = np.round(truths + rng.normal(0, 5, N), 2)
    tree = _tree(tmp_path, lambda i: str(preds[i]), list(truths), output_type="text/csv")
    result = tree.model_quality()
    assert result.problem_type == "Regression"
    y, p = np.array(_labelled(list(truths))), np.array(_labelled(list(preds)))
    m = result.statistics["regression_metrics"]
    assert m["mae"]["value"] == pytest.approx(skm.mean_absolute_error(y, p))
    assert m["mse"]["value"] == pytest.approx(skm.mean_squared_error(y, p))
    assert m["rmse"]["value"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, p)))
    assert m["r2"]["value"] == pytest.approx(skm.r2_score(y, p))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["a", "b", "c", "10", "9"]),
                       st.sampled_from(["a", "b", "c", "10", "9"])), min_size=1, max_size=60)  # fmt: skip
)
def test_multiclass_scalars_on_text_labels_match_sklearn(pairs):
    y = np.array([a for a, _ in pairs], dtype=object)
    p = np.array([b for _, b in pairs], dtype=object)
    m = multiclass_scalars(y, p)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    for name, fn in (("weighted_recall", skm.recall_score), ("weighted_precision", skm.precision_score),
                     ("weighted_f1", skm.f1_score)):  # fmt: skip
        assert m[name] == pytest.approx(fn(y, p, average="weighted", zero_division=0))
    stats = quality_statistics(y, p, "MulticlassClassification")
    labels = sorted(set(y) | set(p))
    cm = skm.confusion_matrix(y, p, labels=labels)
    assert stats["multiclass_classification_metrics"]["confusion_matrix"] == {
        a: {b: int(cm[i, j]) for j, b in enumerate(labels)} for i, a in enumerate(labels)
    }


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["0", "1", "2", "7", "cat", "dog"]),
                       st.sampled_from([0, 1, 2, 7, "cat", "dog"]), st.booleans()),
             min_size=1, max_size=40),  # fmt: skip
    st.booleans(),
)
def test_labels_meet_predictions_as_text_or_numbers(rows, text_column):
    """A label "2" meets a predicted 2 or 2.0; the metrics are sklearn's on the class names."""
    import pyarrow as pa

    from captureq.monitor import model_quality

    def value(t):
        try:
            return float(t)
        except ValueError:
            return None

    truth = [t if labelled else None for t, _, labelled in rows]
    preds = [f"{p}.0" if isinstance(p, int) and text_column else p for _, p, _ in rows]
    if not text_column and any(isinstance(p, str) for p in preds):
        preds = [str(p) for p in preds]  # a text column after all
    times = [T0 + timedelta(minutes=i) for i in range(len(rows))]
    table = pa.table({
        "inference_time": pa.array(times, pa.timestamp("us", tz="UTC")),
        "output_predicted_label": preds,
        "ground_truth": truth,
        "ground_truth_value": [None if t is None else value(t) for t in truth],
    })  # fmt: skip
    result = model_quality(table, problem_type="MulticlassClassification")
    name = lambda v: str(int(float(v))) if value(str(v)) is not None else str(v)  # noqa: E731
    y = [name(t) for t, _, lab in rows if lab]
    p = [name(q) for (_, _, lab), q in zip(rows, preds) if lab]
    overall = result.overall()
    assert overall["labelled"] == len(y)
    if y:
        assert overall["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
        assert overall["weighted_f1"] == pytest.approx(skm.f1_score(y, p, average="weighted"))
        labels = sorted(set(y) | set(p))
        cm = skm.confusion_matrix(y, p, labels=labels)
        got = result.statistics["multiclass_classification_metrics"]["confusion_matrix"]
        assert {(a, b): c for a, row in got.items() for b, c in row.items() if c} == {
            (a, b): int(cm[i, j]) for i, a in enumerate(labels) for j, b in enumerate(labels)
            if cm[i, j]
        }  # fmt: skip


def test_argmax_of_a_json_list_named_by_the_outputs_label_list(tmp_path):
    """``{"predictions": [{"probabilities": [...], "labels": [...]}]}``: the classes come from
    the output's own label list."""
    truths = _truths(ANIMALS)
    preds = _guess(truths, ANIMALS)
    probs = _probabilities(preds, ANIMALS)
    out = lambda i: json.dumps(  # noqa: E731
        {"predictions": [{"probabilities": probs[i].tolist(), "labels": ANIMALS}]}
    )
    tree = _tree(tmp_path, out, truths)
    result = tree.model_quality()
    assert result.problem_type == "MulticlassClassification"
    assert result.prediction == "argmax(output_probabilities)"
    assert result.model_type.class_labels == tuple(ANIMALS)
    _assert_multiclass(result.overall(), _labelled(truths), _labelled(preds))
    r = runner.invoke(app, ["quality", tree.uri, "--labels", tree.labels_uri, "--probability",
                            "output_probabilities", "--class-labels", "bird,cat,dog"])  # fmt: skip
    assert r.exit_code == 0, r.output


def test_argmax_of_json_text_lists():
    """Probabilities kept as JSON text (``"[0.1, 0.7, 0.2]"``), classes named by the caller."""
    import pyarrow as pa

    from captureq.monitor import model_quality

    truths = _truths(ANIMALS)[:60]
    preds = _guess(truths, ANIMALS)
    probs = _probabilities(preds, ANIMALS)
    table = pa.table({
        "inference_time": pa.array([T0 + timedelta(minutes=i) for i in range(60)],
                                   pa.timestamp("us", tz="UTC")),
        "output_probabilities": [json.dumps(p.tolist()) if i % 7 else "[0.5, 0.5]"
                                 for i, p in enumerate(probs)],
        "ground_truth": truths,
        "ground_truth_value": pa.nulls(60, pa.float64()),
    })  # fmt: skip
    result = model_quality(table, probability="output_probabilities", class_labels=ANIMALS)
    kept = [i for i in range(60) if i % 7]  # a list of another length is no prediction
    y, p = [truths[i] for i in kept], [preds[i] for i in kept]
    o = result.overall()
    assert o["labelled"] == 60 and result.statistics["dataset"]["item_count"] == len(kept)
    assert o["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    assert o["weighted_f1"] == pytest.approx(skm.f1_score(y, p, average="weighted"))


def test_a_few_odd_labels_do_not_make_a_regression_multiclass():
    import pyarrow as pa

    from captureq.monitor import model_quality

    rng = np.random.default_rng(7)
    y = np.round(rng.normal(50, 10, 100), 2)
    p = np.round(y + rng.normal(0, 2, 100), 2)
    text = [str(v) for v in y]
    text[3] = "n/a"
    table = pa.table({
        "inference_time": pa.array([T0 + timedelta(minutes=i) for i in range(100)],
                                   pa.timestamp("us", tz="UTC")),
        "output_c0": p,
        "ground_truth": text,
        "ground_truth_value": [None if t == "n/a" else float(t) for t in text],
    })  # fmt: skip
    result = model_quality(table)
    assert result.problem_type == "Regression"
    keep = np.arange(100) != 3
    assert result.overall()["labelled"] == 100
    assert result.overall()["r2"] == pytest.approx(skm.r2_score(y[keep], p[keep]))
