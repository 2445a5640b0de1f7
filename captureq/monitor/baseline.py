"""Model Monitor–compatible ``statistics.json`` and ``constraints.json`` from a dataset.

The files follow the schema SageMaker Model Monitor's data-quality baselining job writes
(``version``, ``dataset.item_count``, ``features[]`` with ``inferred_type`` and
``numerical_statistics``/``string_statistics``; constraints with ``completeness``,
``num_constraints.is_non_negative``, ``string_constraints.domains`` and ``monitoring_config``),
so existing tooling can read them. Statistics are computed column by column with numpy and
pyarrow compute, never record by record.

>>> import pyarrow as pa
>>> stats = statistics(pa.table({"_c0": ["1", "2", "3"], "_c1": ["1.0", "2", "3"], "_c2": ["a", "b", "a"]}))
>>> [(f["name"], f["inferred_type"]) for f in stats["features"]]
[('_c0', 'Integral'), ('_c1', 'Fractional'), ('_c2', 'String')]
>>> constraints(stats)["features"][0]["num_constraints"]
{'is_non_negative': True}
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import schema
from ..decode.unify import NON_FINITE
from ..errors import ConfigError, HeaderWarning  # HeaderWarning: also imported from here

INTEGRAL, FRACTIONAL, STRING, UNKNOWN = "Integral", "Fractional", "String", "Unknown"
KLL_C, KLL_K = 0.64, 2048  # the sketch parameters Model Monitor's files carry
HISTOGRAM_BUCKETS = 10  # "we materialize the distribution in 10 buckets"
TOP_VALUES = 100  # categorical buckets kept in string_statistics
DOMAIN_MAX_DISTINCT = 20  # string_constraints.domains only for small cardinality

DEFAULT_MONITORING_CONFIG: dict[str, Any] = {
    "evaluate_constraints": "Enabled",
    "emit_metrics": "Enabled",
    "datatype_check_threshold": 1.0,  # required share of values of the baseline's type
    "domain_content_threshold": 1.0,  # required share of values inside the baseline's domain
    "distribution_constraints": {
        "perform_comparison": "Enabled",
        "comparison_threshold": 0.1,
        "comparison_method": "Robust",
        "categorical_comparison_threshold": 0.1,
        "categorical_drift_method": "LInfinity",
    },
}

# Integral: digits only (no decimal point, no exponent); everything else that parses is Fractional.
_INT_RE = r"^\s*[+-]?\d+\s*$"
_NUM_RE = r"^\s*[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|inf|infinity|nan)\s*$"


# ---------------------------------------------------------------------------------------------
# Column typing
# ---------------------------------------------------------------------------------------------
@dataclass
class Column:
    """One feature column, split the way Model Monitor types values.

    ``values`` are the numeric values (float64, present ones only) when the column is numeric,
    ``strings`` the present values as text otherwise; ``kinds`` counts present values that are
    Integral / Fractional / String. NaN and ±Infinity (a double, or text such as ``NaN``,
    ``-Infinity``) are missing, not present: ``nan`` counts them, and ``count - present``
    includes them.
    """

    name: str
    count: int
    present: int
    kinds: dict[str, int]
    values: np.ndarray | None = None
    strings: pa.Array | None = None
    nan: int = 0

    @property
    def inferred_type(self) -> str:
        if self.present == 0:
            return UNKNOWN
        if self.kinds[STRING]:
            return STRING
        return FRACTIONAL if self.kinds[FRACTIONAL] else INTEGRAL

    def match_ratio(self, expected: str) -> float:
        """Share of present values that satisfy ``expected`` (Integral ⊂ Fractional ⊂ String)."""
        if self.present == 0:
            return 1.0
        ok = {
            INTEGRAL: self.kinds[INTEGRAL],
            FRACTIONAL: self.kinds[INTEGRAL] + self.kinds[FRACTIONAL],
            STRING: self.present,
            UNKNOWN: self.present,
        }[expected]
        return ok / self.present


def _one_chunk(arr: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        return arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr


def column(
    name: str, arr: pa.ChunkedArray | pa.Array, fractional_text: pa.Array | None = None
) -> Column:
    """Type one column the way Model Monitor types CSV text.

    Text: ``1``, ``-0``, ``  7 `` are Integral; ``1.0``, ``1e3`` Fractional; anything else
    String; empty is missing, and so are NaN and ±Infinity however written (counted in
    ``Column.nan``). Numeric columns are typed by ``fractional_text`` (True where
    the raw text had a decimal point or exponent, see :mod:`.texttypes`) when given: a BIGINT
    column may hold ``3.0`` written as such. Without raw text (Parquet, JSON payloads, Arrow
    tables) integers and whole floats count as Integral.
    """
    arr = _one_chunk(arr)
    n = len(arr)
    t = arr.type
    if pa.types.is_boolean(t):
        arr, t = pc.cast(arr, pa.int8()), pa.int8()
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        v = (
            arr.to_numpy(zero_copy_only=False).astype("float64")
            if arr.null_count == 0
            else pc.cast(arr.drop_null(), pa.float64()).to_numpy()
        )
        # null, NaN and ±Infinity are missing; NaN and ±Infinity are also counted on their own
        finite = np.isfinite(v)
        nan = len(v) - int(np.count_nonzero(finite))
        if nan:
            v = v[finite]
        if pa.types.is_integer(t) and fractional_text is None:
            whole = len(v)
        else:
            is_whole = v == np.trunc(v)
            if fractional_text is not None:
                frac = _one_chunk(fractional_text)
                if arr.null_count:
                    frac = frac.filter(arr.is_valid())
                frac = frac.to_numpy(zero_copy_only=False).astype(bool)
                is_whole &= ~(frac[finite] if nan else frac)
            whole = int(np.count_nonzero(is_whole))
        return Column(
            name, n, len(v), {INTEGRAL: whole, FRACTIONAL: len(v) - whole, STRING: 0}, values=v,
            nan=nan,
        )
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        s = pc.cast(arr, pa.string()).drop_null()
        s = s.filter(pc.not_equal(pc.utf8_trim_whitespace(s), ""))
        non_finite = pc.match_substring_regex(pc.utf8_trim_whitespace(s), NON_FINITE)
        nan = pc.sum(non_finite).as_py() or 0
        if nan:
            s = s.filter(pc.invert(non_finite))
        is_int = pc.match_substring_regex(s, _INT_RE)
        is_num = pc.match_substring_regex(pc.utf8_lower(s), _NUM_RE)
        n_int = pc.sum(is_int).as_py() or 0
        n_num = pc.sum(is_num).as_py() or 0
        kinds = {INTEGRAL: n_int, FRACTIONAL: n_num - n_int, STRING: len(s) - n_num}
        col = Column(name, n, len(s), kinds, strings=s, nan=nan)
        if kinds[STRING] == 0 and len(s):
            col.values = pc.cast(pc.utf8_trim_whitespace(s), pa.float64()).to_numpy()
        return col
    # anything else (lists, structs, timestamps): present values are opaque strings
    present = n - arr.null_count
    s = pc.cast(arr.drop_null(), pa.string()) if pa.types.is_timestamp(t) else None
    return Column(name, n, present, {INTEGRAL: 0, FRACTIONAL: 0, STRING: present}, strings=s)


def feature_columns(table: pa.Table) -> list[str]:
    """The feature columns of a table: everything except captureq's record keys."""
    return [
        c for c in table.column_names if c not in schema.RECORD_KEY_NAMES and not c.startswith("__")
    ]


# ---------------------------------------------------------------------------------------------
# statistics.json
# ---------------------------------------------------------------------------------------------
def _num(x: float) -> float:
    x = float(x)
    return x if math.isfinite(x) else 0.0


def kll_sketch(sorted_values: np.ndarray, k: int = KLL_K) -> list[list[float]]:
    """A deterministic quantile summary in KLL's layout: ``data[level]`` items weigh ``2**level``.

    Up to ``k`` values are kept exactly (level 0); more are compacted to every ``2**L``-th
    value at the single level ``L`` that leaves at most ``k`` items.
    """
    n = len(sorted_values)
    if n <= k:
        return [sorted_values.tolist()]
    level = math.ceil(math.log2(n / k))
    stride = 2**level
    items = sorted_values[stride // 2 :: stride]
    return [[] for _ in range(level)] + [items.tolist()]


def sketch_sample(feature_stats: dict) -> tuple[np.ndarray, np.ndarray]:
    """The (sorted values, weights) a statistics.json feature's KLL sketch stands for."""
    kll = feature_stats.get("numerical_statistics", {}).get("distribution", {}).get("kll", {})
    data = kll.get("sketch", {}).get("data") or []
    vals, weights = [], []
    for level, items in enumerate(data):
        if items:
            vals.append(np.asarray(items, dtype="float64"))
            weights.append(np.full(len(items), float(2**level)))
    if not vals:  # no sketch: fall back on the histogram's bucket midpoints
        buckets = kll.get("buckets") or []
        return (
            np.array([(b["lower_bound"] + b["upper_bound"]) / 2 for b in buckets], dtype="float64"),
            np.array([b["count"] for b in buckets], dtype="float64"),
        )
    v, w = np.concatenate(vals), np.concatenate(weights)
    order = np.argsort(v, kind="stable")
    return v[order], w[order]


def histogram(
    values: np.ndarray, lo: float, hi: float, buckets: int = HISTOGRAM_BUCKETS
) -> list[dict]:
    """Equal-width buckets between min and max with exact counts (the ``kll.buckets`` list)."""
    if len(values) == 0:
        return []
    if hi <= lo:
        return [{"lower_bound": _num(lo), "upper_bound": _num(hi), "count": float(len(values))}]
    edges = np.linspace(lo, hi, buckets + 1)
    idx = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, buckets - 1)
    counts = np.bincount(idx, minlength=buckets)
    return [
        {
            "lower_bound": _num(edges[i]),
            "upper_bound": _num(edges[i + 1]),
            "count": float(counts[i]),
        }
        for i in range(buckets)
    ]


def feature_statistics(col: Column) -> dict:
    """One ``features[]`` entry of statistics.json.

    ``common.num_missing`` counts null, empty and NaN/±Infinity values; ``common.num_nan`` (a
    captureq key, there when not 0) how many of them were NaN/±Infinity. ``num_present`` is the count ``mean``,
    ``sum``, ``std_dev`` and the distribution are over."""
    common = {"num_present": col.present, "num_missing": col.count - col.present}
    if col.nan:  # absent when there are none: the file keeps Model Monitor's shape
        common["num_nan"] = col.nan
    completeness = col.present / col.count if col.count else 0.0
    inferred = col.inferred_type
    out: dict[str, Any] = {"name": col.name, "inferred_type": inferred}
    if inferred in (INTEGRAL, FRACTIONAL):
        v = np.sort(col.values[np.isfinite(col.values)]) if col.values is not None else np.empty(0)
        lo, hi = (float(v[0]), float(v[-1])) if len(v) else (0.0, 0.0)
        out["numerical_statistics"] = {
            "common": common,
            "mean": _num(v.mean()) if len(v) else 0.0,
            "sum": _num(v.sum()),
            "std_dev": _num(v.std()) if len(v) else 0.0,
            "min": lo,
            "max": hi,
            "approximate_num_distinct_values": int(len(np.unique(v))),
            "completeness": completeness,
            "distribution": {
                "kll": {
                    "buckets": histogram(v, lo, hi),
                    "sketch": {
                        # Model Monitor writes k as a double: 2048.0
                        "parameters": {"c": KLL_C, "k": float(KLL_K)},
                        "data": kll_sketch(v),
                    },
                }
            },
        }
    elif inferred == STRING:
        s = col.strings if col.strings is not None else pa.array([], pa.string())
        vc = (
            pc.value_counts(s)
            if len(s)
            else pa.StructArray.from_arrays(
                [pa.array([], pa.string()), pa.array([], pa.int64())], ["values", "counts"]
            )
        )
        values = vc.field("values").to_pylist()
        counts = vc.field("counts").to_numpy(zero_copy_only=False)
        order = np.lexsort((np.arange(len(counts)), -counts))[:TOP_VALUES]
        out["string_statistics"] = {
            "common": common,
            "distinct_count": len(values),
            "completeness": completeness,
            "distribution": {
                "categorical": {
                    "buckets": [{"value": str(values[i]), "count": int(counts[i])} for i in order]
                }
            },
        }
    else:
        out["numerical_statistics"] = {"common": common, "completeness": completeness}
    return out


def statistics(table: pa.Table, columns: list[str] | None = None) -> dict:
    """statistics.json for ``table`` (features: ``columns``, default all but the record keys)."""
    names = columns if columns is not None else feature_columns(table)
    return {
        "version": 0.0,
        "dataset": {"item_count": table.num_rows},
        "features": [feature_statistics(column_of(table, n)) for n in names],
    }


def column_of(table: pa.Table, name: str) -> Column:
    """:func:`column` for ``table[name]``, with its raw-text evidence when the table has it."""
    from .texttypes import evidence_name

    ev = evidence_name(name)
    # a schema lookup, not ``in table.column_names``: listing every name per column would make
    # typing a wide table's columns quadratic in its width
    has_ev = table.schema.get_field_index(ev) >= 0
    return column(name, table[name], table[ev] if has_ev else None)


# ---------------------------------------------------------------------------------------------
# constraints.json
# ---------------------------------------------------------------------------------------------
def constraints(stats: dict, monitoring_config: dict | None = None) -> dict:
    """Suggested constraints.json for a statistics.json (what the baselining job suggests)."""
    features = []
    for f in stats["features"]:
        common = (f.get("numerical_statistics") or f.get("string_statistics") or {}).get(
            "common", {}
        )
        total = common.get("num_present", 0) + common.get("num_missing", 0)
        entry: dict[str, Any] = {
            "name": f["name"],
            "inferred_type": f["inferred_type"],
            "completeness": round(common.get("num_present", 0) / total, 6) if total else 0.0,
        }
        if f["inferred_type"] in (INTEGRAL, FRACTIONAL):
            entry["num_constraints"] = {
                "is_non_negative": bool(f["numerical_statistics"]["min"] >= 0)
            }
        elif f["inferred_type"] == STRING:
            ss = f["string_statistics"]
            if ss["distinct_count"] <= DOMAIN_MAX_DISTINCT:
                domains = sorted(b["value"] for b in ss["distribution"]["categorical"]["buckets"])
                entry["string_constraints"] = {"domains": domains}
        features.append(entry)
    config = json.loads(json.dumps(DEFAULT_MONITORING_CONFIG))
    if monitoring_config:
        dist = monitoring_config.get("distribution_constraints", {})
        config.update(
            {k: v for k, v in monitoring_config.items() if k != "distribution_constraints"}
        )
        config["distribution_constraints"].update(dist)
    return {"version": 0.0, "features": features, "monitoring_config": config}


# ---------------------------------------------------------------------------------------------
# Reading training data
# ---------------------------------------------------------------------------------------------
def _looks_like_header(first_line: str) -> bool:
    fields = [f.strip().strip('"') for f in first_line.rstrip("\r\n").split(",")]
    return any(f and re.match(_NUM_RE, f.lower()) is None for f in fields)


def _is_number(texts: pa.Array) -> pa.Array:
    return pc.match_substring_regex(pc.utf8_lower(texts), _NUM_RE)


def csv_header(rows: pa.Table) -> bool | None:
    """Whether the first of ``rows`` (a CSV read as text, without names) is a header.

    The first row is typed like the rest: under a column whose later values are all numbers,
    a first value that is text means a header and a number means data. None when no column
    tells (no numeric column, or a single row) and the first row holds text.

    >>> csv_header(pa.table({"a": ["59", "60"], "b": ["US", "DE"]}))
    False
    >>> csv_header(pa.table({"a": ["age", "60"], "b": ["country", "DE"]}))
    True
    >>> csv_header(pa.table({"a": ["country", "US"]})) is None
    True
    """
    if rows.num_rows == 0:
        return None
    says_header = says_data = False
    for name in rows.column_names:
        first, rest = rows[name].slice(0, 1), rows[name].slice(1).drop_null()
        rest = rest.filter(pc.not_equal(pc.utf8_trim_whitespace(rest), ""))
        if first.null_count or not len(rest) or not pc.all(_is_number(rest)).as_py():
            continue
        if _is_number(first)[0].as_py():
            says_data = True
        elif pc.utf8_trim_whitespace(first)[0].as_py():
            says_header = True
    if says_header:
        return True
    if says_data:
        return False
    first_row = ",".join(str(rows[n][0].as_py() or "") for n in rows.column_names)
    return False if not _looks_like_header(first_row) else None


def _check_training_path(path: str, storage_options: dict | None) -> None:
    """A training file that is a pattern or does not exist is a ConfigError naming it."""
    import fsspec

    fs, local = fsspec.core.url_to_fs(path, **(storage_options or {}))
    if fs.exists(local):
        return
    if set("*?[") & set(path):
        raise ConfigError(
            f"TRAINING_DATA {path} is a pattern: a baseline reads one file (CSV, JSON Lines, "
            "JSON, Parquet), a folder of Parquet files, an export or a capture tree; name one"
        )
    remote = "://" in path and not path.startswith("file://")
    raise ConfigError(
        f"TRAINING_DATA {path} does not exist; check the path"
        + (" (and --storage-option, e.g. anon=true for a public bucket)" if remote else "")
    )


def read_table(
    path: str, *, header: bool | None = None, storage_options: dict | None = None
) -> pa.Table:
    """A CSV (header detected unless ``header`` says, see :func:`csv_header`) or Parquet file
    as Arrow.

    A CSV without a header gets Model Monitor's names ``_c0``, ``_c1``, ... A first row that
    could be either is read as a header, with a :class:`~captureq.errors.HeaderWarning`.
    """
    import fsspec
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    _check_training_path(path, storage_options)
    lower = path.lower()
    if lower.endswith((".parquet", ".pq")):
        with fsspec.open(path, "rb", **(storage_options or {})) as fh:
            return pq.read_table(fh)
    with fsspec.open(path, "rb", compression="infer", **(storage_options or {})) as fh:
        data = fh.read()
    if not data.strip():
        return pa.table({})
    opts = pcsv.ReadOptions(autogenerate_column_names=True)
    # every column as text, so each value is typed by how it is written (3 vs 3.0), as Model
    # Monitor types CSV; statistics cast the numeric ones
    names = pcsv.open_csv(pa.BufferReader(data), read_options=opts).schema.names
    convert = pcsv.ConvertOptions(
        column_types={n: pa.string() for n in names},
        null_values=[""],  # only empty is missing: "nan", "NULL" are values, as text
        strings_can_be_null=True,
    )
    table = pcsv.read_csv(pa.BufferReader(data), read_options=opts, convert_options=convert)
    if header is None:
        header = _header_or_warn(table, path)
    if header:
        first = table.slice(0, 1).to_pylist()[0]
        return table.slice(1).rename_columns(
            [first[n] if first[n] else f"_c{i}" for i, n in enumerate(names)]
        )
    return table.rename_columns([f"_c{i}" for i in range(table.num_columns)])


def _header_or_warn(rows: pa.Table, path: str) -> bool:
    import warnings


    found = csv_header(rows)
    if found is not None:
        return found
    first = ",".join(str(v or "") for v in rows.slice(0, 1).to_pylist()[0].values())
    warnings.warn(
        f"{path}: cannot tell whether the first row ({first[:80]}) is a header, as no column "
        "has numbers below it; it is read as the header: pass --header or --no-header "
        "(header= in Python) to say",
        HeaderWarning,
        stacklevel=3,
    )
    return True


def is_table_file(source: str) -> bool:
    """Whether ``source`` is named as a training file (CSV, JSON Lines, JSON, Parquet)."""
    from .training import format_by_name

    return format_by_name(source) is not None


# ---------------------------------------------------------------------------------------------
# The baseline
# ---------------------------------------------------------------------------------------------
@dataclass
class Baseline:
    """A baseline: statistics.json and constraints.json as dicts (``write`` saves them)."""

    statistics: dict
    constraints: dict

    def features(self) -> pa.Table:
        """One row per feature: type, completeness, count, mean, std_dev, min, max, distinct."""
        cons = {c["name"]: c for c in self.constraints["features"]}
        rows = []
        for f in self.statistics["features"]:
            ns, ss = f.get("numerical_statistics", {}), f.get("string_statistics", {})
            common = (ns or ss).get("common", {})
            rows.append(
                {
                    "feature": f["name"],
                    "inferred_type": f["inferred_type"],
                    "completeness": cons.get(f["name"], {}).get("completeness"),
                    "num_present": common.get("num_present"),
                    "num_missing": common.get("num_missing"),
                    "mean": ns.get("mean"),
                    "std_dev": ns.get("std_dev"),
                    "min": ns.get("min"),
                    "max": ns.get("max"),
                    "distinct_count": ss.get(
                        "distinct_count", ns.get("approximate_num_distinct_values")
                    ),
                }
            )
        return pa.Table.from_pylist(
            rows,
            schema=pa.schema(
                [
                    ("feature", pa.string()),
                    ("inferred_type", pa.string()),
                    ("completeness", pa.float64()),
                    ("num_present", pa.int64()),
                    ("num_missing", pa.int64()),
                    ("mean", pa.float64()),
                    ("std_dev", pa.float64()),
                    ("min", pa.float64()),
                    ("max", pa.float64()),
                    ("distinct_count", pa.int64()),
                ]
            ),
        )

    def write(self, out: str | Path) -> Path:
        return write_baseline_files(out, self.statistics, self.constraints)

    @classmethod
    def load(cls, path: str | Path) -> Baseline:
        """Read ``statistics.json`` + ``constraints.json`` from a folder (ours or Model Monitor's).

        A folder that is not a data-quality baseline (a model-quality one, a file, missing or
        malformed JSON) raises :class:`~captureq.errors.ConfigError` saying what it is.
        """
        path = Path(path)
        if path.is_file():
            path = path.parent if path.name in ("statistics.json", "constraints.json") else path
        if not path.is_dir():
            raise ConfigError(
                f"baseline folder {path} does not exist: run `captureq baseline DATA {path}` first"
            )
        missing = [n for n in ("statistics.json", "constraints.json") if not (path / n).exists()]
        if missing:
            raise ConfigError(
                f"{path} has no {' or '.join(missing)}: run `captureq baseline DATA {path}` first"
            )
        stats = read_json(path / "statistics.json", f"captureq baseline DATA {path}")
        cons = read_json(path / "constraints.json", f"captureq baseline DATA {path}")
        if any(k.endswith("_constraints") for k in cons) or any(
            k.endswith("_metrics") for k in stats
        ):
            raise ConfigError(
                f"{path} is a model-quality baseline (it has "
                f"{', '.join(k for k in (*cons, *stats) if k.endswith(('_constraints', '_metrics')))}), "
                "not a data-quality one: check it with `captureq quality --constraints "
                f"{path}`; `captureq monitor` needs `captureq baseline` output"
            )
        for name, doc, key in (
            ("constraints.json", cons, "features"),
            ("statistics.json", stats, "features"),
        ):
            if not isinstance(doc.get(key), list) or not all(
                isinstance(f, dict) and "name" in f for f in doc[key]
            ):
                raise ConfigError(
                    f"{path / name} has no {key!r} list of named features: it is not a "
                    f"Model Monitor data-quality baseline; make one with `captureq baseline DATA {path}`"
                )
        result = cls(stats, cons)
        result.require_features(str(path))
        return result

    def require_features(self, where: str = "the baseline") -> None:
        """A ConfigError unless statistics.json and constraints.json both describe features."""
        counts = {
            name: len(doc.get("features") or [])
            for name, doc in (("statistics.json", self.statistics), ("constraints.json", self.constraints))
        }
        if not all(counts.values()):
            raise ConfigError(
                f"{where} has no features ({', '.join(f'{n}: {c}' for n, c in counts.items())}): "
                "it was made from data without feature columns and can check nothing; make it "
                f"again with `captureq baseline TRAINING_DATA {where}` from a CSV or Parquet "
                "file or a capture tree with records"
            )


def write_baseline_files(out: str | Path, statistics: dict, constraints: dict) -> Path:
    """A baseline folder as Model Monitor writes one: ``statistics.json`` and
    ``constraints.json`` (indented JSON) under ``out``, which is created if needed.

    >>> import tempfile
    >>> d = write_baseline_files(tempfile.mkdtemp(), {"version": 0.0}, {"version": 0.0})
    >>> sorted(p.name for p in d.iterdir())
    ['constraints.json', 'statistics.json']
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "statistics.json").write_text(json.dumps(statistics, indent=2) + "\n")
    (out / "constraints.json").write_text(json.dumps(constraints, indent=2) + "\n")
    return out


def read_json(path: Path, remedy: str) -> dict:
    """A JSON object from ``path``, or a :class:`ConfigError` naming the file and the problem."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist" + (f": run `{remedy}`" if remedy else "")) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path} holds a JSON {type(doc).__name__}, expected an object")
    return doc


def load_data(
    source: Any,
    *,
    endpoint: str | None = None,
    header: bool | None = None,
    storage_options: dict | None = None,
    start: Any = None,
    end: Any = None,
    data_format: str | None = None,
) -> pa.Table:
    """Training data as Arrow: a table/DataFrame, a capture tree, or a path read in
    ``data_format`` (``csv``, ``jsonl``, ``json``, ``parquet``, ``capture``, ``export``;
    detected when None, see :mod:`.training`)."""
    from ..plan import ScanPlan as CaptureTree
    from ..plan import open_plan as open_tree
    from .training import flatten_structs

    if isinstance(source, pa.Table):
        return flatten_structs(source)
    if hasattr(source, "to_arrow") and not isinstance(source, CaptureTree):
        return flatten_structs(source.to_arrow())
    if (
        hasattr(source, "__dataframe__")
        and hasattr(source, "columns")
        and not isinstance(source, (str, Path))
    ):
        return flatten_structs(pa.Table.from_pandas(source, preserve_index=False))
    if isinstance(source, (str, Path)):
        from . import training  # the format dispatch: CSV, JSON Lines, JSON, Parquet, export, tree

        return training.load(source, data_format, endpoint=endpoint, header=header,
                             storage_options=storage_options, start=start, end=end)
    from .training import require_records

    tree = source if isinstance(source, CaptureTree) else open_tree(str(source), storage_options=storage_options)
    tree = tree._narrow({"start": start, "end": end, "endpoint": endpoint})
    return require_records(single_endpoint(tree_inputs(tree)), tree.uri, "capture", len(tree.scan().files))


def tree_inputs(tree: Any) -> pa.Table:
    """A capture tree's ``inputs`` with the raw-text evidence of CSV numbers (:mod:`.texttypes`)."""
    from .texttypes import with_text_evidence

    return with_text_evidence(tree.inputs(), tree.captures())


def single_endpoint(inputs: pa.Table) -> pa.Table:
    """The inputs of one endpoint, with columns no row of it uses dropped."""
    if "endpoint" in inputs.column_names and inputs.num_rows:
        endpoints = pc.unique(inputs["endpoint"]).to_pylist()
        if len(endpoints) > 1:
            raise ConfigError(
                f"the window holds {len(endpoints)} endpoints ({', '.join(sorted(endpoints))}); "
                "a baseline describes one: pass endpoint=... (--endpoint)"
            )
    from .texttypes import PREFIX

    used = {
        c
        for c in inputs.column_names
        if c in schema.RECORD_KEY_NAMES or inputs[c].null_count < inputs.num_rows
    }
    keep = [
        c
        for c in inputs.column_names
        if c in used or (c.startswith(PREFIX) and c[len(PREFIX) :] in used)
    ]
    return inputs.select(keep)


def require_features(table: pa.Table, source: Any) -> None:
    """A ConfigError, saying what was read, when ``table`` has no rows or no feature columns."""
    from ..plan import ScanPlan as CaptureTree

    features = feature_columns(table)
    if table.num_rows and features:
        return
    if isinstance(source, CaptureTree):
        n = len(source.scan().files)
        files = f"{n} file{'s' if n != 1 else ''} of JSON Lines captures"
        name, fix = source.uri, (
            "point TRAINING_DATA at a capture tree ({prefix}/{endpoint}/{variant}/yyyy/mm/dd/hh/"
            "*.jsonl) with records in the window (--start/--end, --endpoint), or at a CSV or "
            "Parquet file"
        )
    elif isinstance(source, (str, Path)):
        files, name = "1 file", str(source)
        fix = "give TRAINING_DATA a file with a row per record and a column per feature"
    else:
        files, name = "a table", type(source).__name__
        fix = "pass a table with a row per record and a column per feature"
    what = "no rows" if not table.num_rows else "no feature columns"
    raise ConfigError(
        f"TRAINING_DATA {name} has {what} to baseline: read {files}, {table.num_rows} rows, "
        f"{table.num_columns} columns ({len(features)} features); {fix}"
    )


def baseline(
    source: Any,
    out: str | Path | None = None,
    *,
    endpoint: str | None = None,
    header: bool | None = None,
    storage_options: dict | None = None,
    start: Any = None,
    end: Any = None,
    monitoring_config: dict | None = None,
    data_format: str | None = None,
) -> Baseline:
    """Baseline ``source`` (see :func:`load_data`); write statistics.json/constraints.json to ``out``.

    Input without rows or feature columns is a :class:`~captureq.errors.ConfigError` saying
    what was read; nothing is written then.
    """
    table = load_data(
        source,
        endpoint=endpoint,
        header=header,
        storage_options=storage_options,
        start=start,
        end=end,
        data_format=data_format,
    )
    require_features(table, source)
    stats = statistics(table)
    result = Baseline(stats, constraints(stats, monitoring_config))
    if out is not None:
        result.write(out)
    return result
