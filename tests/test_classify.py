"""Payload classification (encoding + content type → format) without polars on the query path.

The polars expression captureq used before is kept here as the oracle: the Arrow version must
give the same format and base64 flag for every pair, including odd spacing, case, parameters,
nulls and unicode.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from captureq.decode import CSV_TYPES, FORMATS, JSON_TYPES, JSONLINES_TYPES, classify


def classify_with_polars(encoding: pa.Array, content_type: pa.Array):
    import polars as pl

    df = pl.DataFrame({"enc": pl.from_arrow(encoding), "ct": pl.from_arrow(content_type)})
    enc = pl.col("enc").str.strip_chars().str.to_uppercase()
    media = pl.col("ct").fill_null("").str.split(";").list.first().str.strip_chars().str.to_lowercase()
    csv, json, jsonl, binary = (pl.lit(FORMATS.index(f), dtype=pl.Int8) for f in FORMATS)
    is_jsonl = media.is_in(list(JSONLINES_TYPES))
    from_media = (
        pl.when(media.is_in(list(CSV_TYPES))).then(csv).when(is_jsonl).then(jsonl)
        .when(media.is_in(list(JSON_TYPES)) | media.str.ends_with("+json")).then(json).otherwise(binary)
    )
    fmt = (
        pl.when(enc == "CSV").then(csv)
        .when(enc == "JSON").then(pl.when(is_jsonl).then(jsonl).otherwise(json))
        .when(enc == "BASE64").then(from_media)
        .otherwise(pl.lit(-1, dtype=pl.Int8))
    )
    out = df.select(fmt.alias("f"), (enc == "BASE64").fill_null(False).alias("b"))
    return out["f"].to_numpy(), out["b"].to_numpy()


ENCODINGS = ["CSV", "JSON", "BASE64", " base64 ", "csv", "Json\t", "", "XML", None, "ＣＳＶ"]
TYPES = [*CSV_TYPES, *JSON_TYPES, *JSONLINES_TYPES, "text/csv; charset=utf-8", " Application/JSON ;x=1",
         "application/vnd+json", "application/x-npy", "", ";", None, "TEXT/CSV", "a;b;c", "image/png"]


def same(enc, ct):
    e, c = pa.array(enc, pa.string()), pa.array(ct, pa.string())
    got, want = classify(e, c), classify_with_polars(e, c)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), (enc, ct, got, want)
    assert got[0].dtype == np.int8 and got[1].dtype == np.bool_


def test_every_known_pair():
    pairs = [(e, t) for e in ENCODINGS for t in TYPES]
    same([e for e, _ in pairs], [t for _, t in pairs])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), st.sampled_from(ENCODINGS), st.text(max_size=8)),
                          st.one_of(st.none(), st.sampled_from(TYPES), st.text(max_size=12))),
                min_size=1, max_size=20))
def test_property_equals_the_polars_expression(pairs):
    same([e for e, _ in pairs], [t for _, t in pairs])


def test_classify_does_not_import_polars():
    code = ("import sys, pyarrow as pa; from captureq.decode import classify; "
            "classify(pa.array(['CSV']), pa.array(['text/csv'])); print('polars' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
