"""JSON payloads of one numeric-vector shape take a CSV-speed path; it must equal the general one.

``{"features": [...]}``, a bare ``[...]`` and ``{"instances": [[...], ...]}`` (any container key,
or a bare list of lists) are checked against a strict JSON-number grammar and then read by
pyarrow's CSV reader as float64 — about 2.5× cheaper than pyarrow's JSON reader. Anything the
grammar or the float64 read cannot vouch for goes the general way, so both paths give the same
table and the same failures for every input.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from captureq.decode import json as dj
from captureq.decode.unify import conform, decide, profile


def general(texts, **kw):
    """decode_json with the vector path switched off."""
    saved = dj.FLAT_VECTORS
    dj.FLAT_VECTORS = False
    try:
        return dj.decode_json(pa.array(texts, pa.string()), **kw)
    finally:
        dj.FLAT_VECTORS = saved


def both(texts, **kw):
    fast = dj.decode_json(pa.array(texts, pa.string()), **kw)
    slow = general(texts, **kw)
    return fast, slow


def typed(decoded):
    """The decoded table with the types a read decides for it (the paths may read a whole
    number as int64 or as float64; the decided type is the same)."""
    table = decoded.table
    decision = decide([profile(table, None)])
    return conform(table, table, decision, "input")[0]


def assert_same(fast, slow):
    fast_t, slow_t = typed(fast), typed(slow)
    assert fast_t.schema == slow_t.schema
    # repr: NaN (which pyarrow's JSON reader accepts) equals itself, -0.0 differs from 0.0
    assert repr(fast_t.to_pylist()) == repr(slow_t.to_pylist())
    assert fast.failures == slow.failures


def test_features_vectors_take_the_flat_path():
    texts = [json.dumps({"features": [i, 2.5, -3e2, 0.125]}) for i in range(5)]
    assert dj.flat_vectors(pa.array(texts)) is not None
    fast, slow = both(texts)
    assert_same(fast, slow)
    assert fast.table.column_names == ["_row", "record_index", "_c0", "_c1", "_c2", "_c3"]
    assert fast.table.column("_c2").to_pylist() == [-300.0] * 5


@pytest.mark.parametrize(
    "texts, records",
    [
        (['{"features":[1,2,3]}', '{"features":[4,5,6]}'], 2),
        (['[1, 2, 3]', '[4.5, 5, 6]'], 2),
        (['{"instances": [[1, 2], [3, 4]]}', '{"instances": [[5, 6]]}'], 3),
        (['{"inputs":[[1,2],[3,4],[7,8]]}'], 3),
        (['[[1, 2], [3, 4]]', '[[5, 6]]'], 3),
        ([' {\n "features" : [ 1 ,\t2 ] } ', '{"features": [3, 4]}'], 2),
    ],
)
def test_shapes_equal_the_general_path(texts, records):
    assert dj.flat_vectors(pa.array(texts)) is not None
    fast, slow = both(texts)
    assert_same(fast, slow)
    assert fast.table.num_rows == records


@pytest.mark.parametrize(
    "texts",
    [
        ['{"features":[1,2,3]}', '{"features":[4,5]}'],  # ragged: nulls past the end
        ['{"features":[1,null,3]}'],
        ['{"features":[1,"2",3]}'],
        ['{"features":[+1,2]}'],  # not JSON numbers: the general path's failure
        ['{"features":[.5,2]}'],
        ['{"features":[5.,2]}'],
        ['{"features":[01,2]}'],
        ['{"features":[NaN,2]}'],
        ['{"features":[1,2],"id":3}'],
        ['{"features":[]}'],
        ['{"features":[-0,1]}'],  # an integer -0 is 0 on the JSON path
        ['{"features":[9007199254740993,1]}'],  # beyond 2**53: JSON reads an int64
        ['{"features":[1e400,1]}'],
        ['{"instances":[[1,2],[3]]}'],
        ['{"features":[1,2]}', '[1,2]'],  # two shapes in one batch
        ['{"feat\\u0075res":[1,2]}'],
    ],
)
def test_what_the_flat_path_cannot_vouch_for_goes_the_general_way(texts):
    fast, slow = both(texts)
    assert_same(fast, slow)


def test_outputs_keep_their_own_rules():
    # a bare list answering several input records is one prediction per record: not a vector
    texts = ['[0.1, 0.9]', '[0.2, 0.8]']
    counts = np.array([2, 2])
    fast, slow = both(texts, side="output", input_counts=counts)
    assert_same(fast, slow)
    assert fast.table.num_rows == 4
    # {"features": [...]} is one record's vector on either side
    texts = ['{"features":[0.1,0.9]}', '{"features":[0.2,0.8]}']
    assert dj.flat_vectors(pa.array(texts), side="output", input_counts=counts) is not None
    assert_same(*both(texts, side="output", input_counts=counts))


def test_names_and_width_limit():
    texts = ['{"features":[1,2,3]}', '{"features":[4,5,6]}']
    assert_same(*both(texts, names=["a", "_row", "a"]))
    fast, slow = both(texts, max_columns=2)
    assert_same(fast, slow)
    assert len(fast.failures) == 2


number = st.one_of(
    st.integers(-(2**60), 2**60),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.sampled_from([0, -0.0, 1e-300, 5e-324, 1.7976931348623157e308, 2**53, 2**53 + 1, -(2**53)]),
)


@st.composite
def payloads(draw):
    width = draw(st.integers(1, 6))
    shape = draw(st.sampled_from(["features", "bare", "instances", "nested"]))
    n = draw(st.integers(1, 6))
    seps = draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,  ", " :\n")]))
    ragged = draw(st.booleans()) and draw(st.booleans())
    out = []
    for _ in range(n):
        def vec():
            w = width - (1 if ragged and draw(st.booleans()) and width > 1 else 0)
            return [draw(number) for _ in range(w)]

        if shape == "features":
            doc = {"features": vec()}
        elif shape == "bare":
            doc = vec()
        elif shape == "instances":
            doc = {"instances": [vec() for _ in range(draw(st.integers(1, 3)))]}
        else:
            doc = [vec() for _ in range(draw(st.integers(1, 3)))]
        out.append(json.dumps(doc, separators=seps))
    return out


@settings(max_examples=300, deadline=None)
@given(payloads())
def test_property_flat_path_equals_general_path(texts):
    assert_same(*both(texts))
