"""What kind of model a ``predictions`` table holds, and its predictions and labels as arrays.

:func:`choose` looks at the outputs **and** the labels (the rows where ``ground_truth`` is not
null, as ``count(ground_truth)`` counts them):

* labels that are text (``cat``, ``dog``) → MulticlassClassification (a few odd texts among
  many non-integer numbers, such as ``n/a`` in a regression target, do not count);
* numeric labels, all 0 or 1, and a prediction in [0, 1] → BinaryClassification (a score and a
  threshold, or 0/1 predicted labels);
* few distinct integer labels (≤ 50) with a predicted label, a probability vector or
  whole-number predictions → MulticlassClassification;
* otherwise Regression.

The prediction of a multiclass model is a predicted-label column (``output_predicted_label``,
``output_label``, ``output_prediction``), or the argmax of a probability vector (the numbered
outputs ``output_c0, output_c1, …``, or a column of JSON lists such as ``output_probabilities``)
named by ``class_labels`` (its classes in order; else the list an output gives beside it, such as
``output_labels``; else the class is the position). Every choice can be given instead: ``problem_type``,
``prediction``, ``probability`` (a binary score column, or a multiclass model's probability
columns), ``class_labels``, ``threshold``.

:func:`encode` turns the table into arrays for the metrics: floats for binary and regression;
for multiclass the class numbers when every label and prediction is a number, else positions in
a sorted list of class names (numbers written as their shortest text, so a label ``"2"`` meets a
predicted ``2.0``).

>>> import pyarrow as pa
>>> t = pa.table({"output_predicted_label": ["cat", "dog"], "output_score": [0.8, 0.6],
...               "ground_truth": ["cat", "cat"], "ground_truth_value": [None, None]})
>>> choose(t).describe()
'MulticlassClassification on output_predicted_label (labels are text: cat)'
>>> e = encode(t, choose(t))
>>> e.classes, e.truth.tolist(), e.pred.tolist()
(['cat', 'dog'], [0.0, 0.0], [0.0, 1.0])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError

BINARY, MULTICLASS, REGRESSION = "BinaryClassification", "MulticlassClassification", "Regression"
PROBLEM_TYPES = (BINARY, MULTICLASS, REGRESSION)
LABEL_COLUMNS = ("output_predicted_label", "output_label", "output_prediction")
SCORE_COLUMNS = ("output_score", "output_probability", "output_c0")
REGRESSION_COLUMNS = ("output_c0", "output_score", "output_prediction", "output_label",
                      "output_predicted_label")  # fmt: skip
LIST_COLUMNS = ("output_probabilities", "output_scores")  # a list per record
CLASS_LIST_COLUMNS = ("output_labels", "output_classes")  # the classes of such a list
MAX_CLASSES = 50  # more distinct integer labels than this reads as a regression target


@dataclass(frozen=True)
class ModelType:
    """The problem type and the columns that hold the model's prediction.

    ``prediction`` is the predicted label or score column; ``probabilities`` (multiclass) the
    probability columns whose argmax is the prediction, their classes ``class_labels``.
    ``reason`` says what the choice was made from."""

    problem_type: str
    prediction: str
    probabilities: tuple[str, ...] = ()
    class_labels: tuple[str, ...] = ()
    threshold: float = 0.5
    reason: str = ""

    @property
    def column(self) -> str:
        """What the predictions are, as one name: a column, or ``argmax(c0, c1, …)``."""
        if self.probabilities:
            return f"argmax({', '.join(self.probabilities)})"
        return self.prediction

    def describe(self) -> str:
        text = f"{self.problem_type} on {self.column}"
        if self.probabilities:
            names = self.class_labels or tuple(map(str, range(len(self.probabilities))))
            text += f" → {', '.join(names)}"
        if self.problem_type == BINARY:
            text += f", threshold {self.threshold}"
        return text + (f" ({self.reason})" if self.reason else "")


@dataclass
class Encoded:
    """Labels and predictions of every row, ready for the metrics.

    ``labelled``: the row has a label (``ground_truth`` not null); ``usable``: it has a label and
    a prediction of the problem's kind. ``truth``/``pred`` are float64, NaN where missing: values
    (binary, regression, numeric classes) or, when ``classes`` is set (text classes), positions
    in ``classes``, the class names sorted."""

    truth: np.ndarray
    pred: np.ndarray
    labelled: np.ndarray
    usable: np.ndarray
    classes: list[str] | None = None


# ---------------------------------------------------------------------------------------------
# columns as arrays
# ---------------------------------------------------------------------------------------------
def _is_text(arr: pa.ChunkedArray) -> bool:
    return pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)


def _is_list(arr: pa.ChunkedArray) -> bool:
    """A list per record: a list column, or text holding JSON lists."""
    return _is_text(arr) or pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)


def to_float(arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A column as float64; text that is not a number is NaN."""
    if _is_text(arr):
        import polars as pl  # imported on first use: not at start-up

        arr = pl.from_arrow(pc.utf8_trim_whitespace(arr)).cast(pl.Float64, strict=False).to_arrow()
    return pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)


def _number_text(values: np.ndarray) -> pa.Array:
    """Numbers as their shortest text (``2.0`` → ``"2"``, ``2.5`` → ``"2.5"``), NaN → null."""
    a = pa.array(values, mask=np.isnan(values))
    whole = pc.equal(pc.round(a), a)
    as_int = pc.cast(pc.if_else(whole, a, 0.0), pa.int64(), safe=False)
    return pc.if_else(whole, pc.cast(as_int, pa.string()), pc.cast(a, pa.string()))


def _class_text(arr: pa.ChunkedArray, values: np.ndarray) -> pa.Array:
    """Class names: the number's shortest text where ``values`` holds a number, else the
    trimmed text (null stays null)."""
    text = pc.utf8_trim_whitespace(arr.combine_chunks()) if _is_text(arr) else None
    numbers = _number_text(values)
    if text is None:
        return numbers
    return pc.if_else(pc.is_valid(numbers), numbers, text)


def _present(table: pa.Table, name: str) -> bool:
    return name in table.column_names and table[name].null_count < table.num_rows


def _labels(table: pa.Table) -> tuple[np.ndarray, np.ndarray, pa.ChunkedArray | None]:
    """(labelled mask, label values as float, label text or None)."""
    n = table.num_rows
    if "ground_truth" in table.column_names:
        text = table["ground_truth"]
        labelled = pc.is_valid(text).to_numpy(zero_copy_only=False)
    else:
        text = None
        labelled = np.zeros(n, bool)
    if "ground_truth_value" in table.column_names:
        values = to_float(table["ground_truth_value"])
        if text is None:
            labelled = ~np.isnan(values)
    elif text is not None:
        values = to_float(text)
    else:
        values = np.full(n, np.nan)
    return labelled, values, text


def numbered_outputs(table: pa.Table) -> tuple[str, ...]:
    """``output_c0, output_c1, …`` in order, while they are there and numeric."""
    found = []
    for i in range(len(table.column_names)):
        name = f"output_c{i}"
        if name not in table.column_names or _is_text(table[name]):
            break
        found.append(name)
    return tuple(found)


def _columns(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(value)


def _check(table: pa.Table, names: Sequence[str], what: str) -> None:
    missing = [c for c in names if c not in table.column_names]
    if missing:
        have = [c for c in table.column_names if c.startswith("output_")]
        raise ConfigError(
            f"no {what} column {', '.join(map(repr, missing))}; the predictions view has {have}"
        )


# ---------------------------------------------------------------------------------------------
# the choice
# ---------------------------------------------------------------------------------------------
def choose(
    table: pa.Table,
    *,
    problem_type: str | None = None,
    prediction: str | None = None,
    probability: str | Sequence[str] | None = None,
    class_labels: Sequence[str] | None = None,
    threshold: float | None = None,
) -> ModelType:
    """The :class:`ModelType` of ``table`` (rows shaped like the ``predictions`` view): what is
    given, the rest inferred from the outputs and the labels."""
    if problem_type is not None and problem_type not in PROBLEM_TYPES:
        raise ConfigError(
            f"problem_type must be {BINARY}, {MULTICLASS} or {REGRESSION}, got {problem_type!r}"
        )
    probs = _columns(probability)
    classes = tuple(str(c).strip() for c in _columns(class_labels))
    if prediction:
        _check(table, [prediction], "prediction")
    _check(table, probs, "probability")
    cut = 0.5 if threshold is None else float(threshold)
    labelled, values, text = _labels(table)
    lab_values = values[labelled]
    distinct = np.unique(lab_values[~np.isnan(lab_values)])
    integral = bool(len(distinct)) and bool((distinct == np.round(distinct)).all())
    # text among the labels makes them classes, unless it is a few odd values among many
    # numbers that are not classes (a regression target with some "n/a")
    n_text = int(np.isnan(lab_values).sum())
    text_labels = n_text > 0 and (
        2 * n_text >= len(lab_values) or not len(distinct)
        or (integral and len(distinct) <= MAX_CLASSES)
    )  # fmt: skip
    label_col = prediction or next((c for c in LABEL_COLUMNS if _present(table, c)), None)
    vector = probs if len(probs) > 1 or (probs and _is_list(table[probs[0]])) else ()
    if not vector and not prediction and not probs:
        numbered = numbered_outputs(table)
        lists = tuple(c for c in LIST_COLUMNS if _present(table, c) and _is_list(table[c]))[:1]
        vector = numbered if len(numbered) > 1 else lists
    if vector and not classes:
        classes = _class_list(table)

    def score_column() -> str | None:
        first = (prediction,) if prediction else ()
        for c in first + probs[:1] + SCORE_COLUMNS + ((label_col,) if label_col else ()):
            if c and _present(table, c):
                p = to_float(table[c])
                p = p[~np.isnan(p)]
                if len(p) and (p >= 0).all() and (p <= 1).all():
                    return c
        return None

    def multiclass(reason: str) -> ModelType:
        if label_col is not None and (prediction or not vector):
            return ModelType(MULTICLASS, label_col, threshold=cut, reason=reason)
        if vector:
            if classes and len(vector) > 1 and len(classes) != len(vector):
                raise ConfigError(
                    f"{len(classes)} class labels ({', '.join(classes)}) for {len(vector)} "
                    f"probability columns ({', '.join(vector)}): give one label per column"
                )
            if text_labels and not classes:
                raise ConfigError(
                    f"the labels are text but the outputs are probabilities "
                    f"({', '.join(vector)}): name their classes in order with "
                    "class_labels=[...] (--class-labels a,b,c)"
                )
            return ModelType(MULTICLASS, vector[0], vector, classes, cut, reason)
        c = next((c for c in REGRESSION_COLUMNS if _present(table, c)), None)
        if c is None:
            raise ConfigError(
                "the predictions have no output column: pass prediction='output_...' (--prediction)"
            )
        return ModelType(MULTICLASS, c, threshold=cut, reason=reason)

    if problem_type == MULTICLASS:
        return multiclass("given")
    if problem_type == BINARY:
        c = score_column() or label_col or (probs[0] if probs else None)
        if c is None:
            raise ConfigError("no score column in [0, 1]: pass prediction='output_...' (--prediction)")
        return ModelType(BINARY, c, threshold=cut, reason="given")
    if problem_type == REGRESSION:
        c = prediction or next((c for c in REGRESSION_COLUMNS if _present(table, c)), None)
        if c is None:
            raise ConfigError(
                "the predictions have no output column: pass prediction='output_...' (--prediction)"
            )
        return ModelType(REGRESSION, c, threshold=cut, reason="given")

    # inferred
    if text_labels:
        shown = sorted(pc.unique(pc.utf8_trim_whitespace(pc.drop_null(text))).to_pylist())[:5]
        return multiclass(f"labels are text: {', '.join(shown)}")
    if integral and set(distinct.tolist()) <= {0.0, 1.0}:
        c = score_column()
        if c is not None:
            return ModelType(BINARY, c, threshold=cut, reason="labels are 0/1")
    if integral and len(distinct) <= MAX_CLASSES:
        if label_col is not None or vector:
            return multiclass(f"{len(distinct)} integer labels")
        c = next((c for c in REGRESSION_COLUMNS if _present(table, c)), None)
        if c is not None and not _is_text(table[c]):
            p = to_float(table[c])
            p = p[~np.isnan(p)]
            if len(p) and (p == np.round(p)).all():
                return multiclass(f"{len(distinct)} integer labels, whole-number predictions")
    if not labelled.any():  # nothing to learn from the labels: the outputs decide
        if label_col is not None and _is_text(table[label_col]):
            return multiclass("predicted labels are text; no labels yet")
        c = score_column()
        if c is not None:
            return ModelType(BINARY, c, threshold=cut, reason="scores in [0, 1]; no labels yet")
    c = prediction or next(
        (c for c in REGRESSION_COLUMNS if _present(table, c) and not _is_text(table[c])), None
    ) or next((c for c in table.column_names if c.startswith("output_") and _present(table, c)
               and (_is_text(table[c]) or not _is_list(table[c]))), None)  # fmt: skip
    if c is None:
        raise ConfigError(
            "the predictions have no output column: pass prediction='output_...' (--prediction)"
        )
    return ModelType(REGRESSION, c, threshold=cut,
                     reason="numeric labels" if labelled.any() else "no labels yet")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# the arrays
# ---------------------------------------------------------------------------------------------
def _class_list(table: pa.Table) -> tuple[str, ...]:
    """The classes a record lists beside its probabilities (``"labels": ["bird", "cat"]``), read
    from the first record that has them; () when no output lists them."""
    import json

    for c in CLASS_LIST_COLUMNS:
        if _present(table, c) and _is_list(table[c]):
            names = pc.drop_null(table[c])[0].as_py()
            if isinstance(names, str):
                try:
                    names = json.loads(names)
                except ValueError:
                    continue
            if isinstance(names, list):
                return tuple(str(n) for n in names)
    return ()


def _probability_matrix(table: pa.Table, columns: Sequence[str], width: int) -> np.ndarray:
    """Rows × classes: numbered columns side by side, or one list column (or text holding JSON
    lists, ``"[0.1, 0.7, 0.2]"``) flattened in one pass; a list of another length is NaN."""
    if len(columns) > 1 or not _is_list(table[columns[0]]):
        return np.column_stack([to_float(table[c]) for c in columns])
    parts = table[columns[0]]
    if _is_text(parts):
        parts = pc.split_pattern(pc.replace_substring_regex(parts, r"[\[\]\s]", ""), ",")
    lengths = pc.fill_null(pc.list_value_length(parts), 0).to_numpy(zero_copy_only=False)
    k = width or int(lengths.max(initial=0))
    m = np.full((table.num_rows, k), np.nan)
    rows = lengths == k
    if k and rows.any():
        kept = pc.filter(parts, pa.array(rows))
        m[rows] = to_float(pc.list_flatten(kept)).reshape(-1, k)
    return m


def _argmax(table: pa.Table, columns: Sequence[str], width: int = 0) -> np.ndarray:
    """The position of each row's largest probability (NaN where every one is missing)."""
    m = _probability_matrix(table, columns, width)
    if not m.shape[1]:
        return np.full(table.num_rows, np.nan)
    empty = np.isnan(m).all(axis=1)
    pos = np.argmax(np.where(np.isnan(m), -np.inf, m), axis=1).astype("float64")
    pos[empty] = np.nan
    return pos


def encode(table: pa.Table, model: ModelType) -> Encoded:
    """Labels and predictions of ``table`` as arrays for ``model``'s metrics."""
    labelled, values, text = _labels(table)
    if model.problem_type != MULTICLASS:
        pred = to_float(table[model.prediction])
        ok = labelled & ~np.isnan(values) & ~np.isnan(pred)
        if model.problem_type == BINARY:
            ok &= np.isin(values, (0.0, 1.0))
        return Encoded(values, pred, labelled, ok)

    if model.probabilities:
        pos = _argmax(table, model.probabilities, len(model.class_labels))
        if model.class_labels:
            names = pa.array(model.class_labels, pa.string())
            pred_text = pc.take(names, pa.array(pos, mask=np.isnan(pos)).cast(pa.int64()))
            pred_values = to_float(pred_text)
            pred_col: pa.ChunkedArray = pa.chunked_array([pred_text])
        else:
            pred_values, pred_col = pos, pa.chunked_array([pa.array(pos)])
    else:
        pred_col = table[model.prediction]
        pred_values = to_float(pred_col)
    pred_is_text = _is_text(pred_col) and bool(
        (np.isnan(pred_values) & pc.is_valid(pred_col).to_numpy(zero_copy_only=False)).any()
    )
    truth_is_text = bool((labelled & np.isnan(values)).any())
    if not pred_is_text and not truth_is_text:
        truth = np.where(labelled, np.rint(values), np.nan)
        pred = np.rint(pred_values)
        return Encoded(truth, pred, labelled, labelled & ~np.isnan(truth) & ~np.isnan(pred))
    truth_arr = _class_text(text, values) if text is not None else _number_text(values)
    truth_arr = pc.if_else(pa.array(labelled), truth_arr, pa.scalar(None, pa.string()))
    pred_arr = _class_text(pred_col, pred_values)
    classes = pc.unique(pa.chunked_array([truth_arr, pred_arr]).combine_chunks()).drop_null()
    classes = pc.take(classes, pc.sort_indices(classes))
    truth, pred = (_codes(a, classes) for a in (truth_arr, pred_arr))
    usable = labelled & ~np.isnan(truth) & ~np.isnan(pred)
    return Encoded(truth, pred, labelled, usable, classes.to_pylist())


def _codes(names: pa.Array, classes: pa.Array) -> np.ndarray:
    """Each name's position in ``classes`` as float64, NaN for null."""
    return pc.cast(pc.index_in(names, value_set=classes), pa.float64()).to_numpy(
        zero_copy_only=False
    )
