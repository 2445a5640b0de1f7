"""Binary payloads: ``application/x-npy`` (the SageMaker SDK's ``NumpySerializer``), ``x-npz``,
``application/x-recordio-protobuf``, opaque bytes (images, audio), and empty payloads.

Capture trees are written with the project's own writer (``tests/trees.py``) and read back with
``captureq.open``, as a user would; numpy's own ``np.save`` is the oracle for npy.
"""

from __future__ import annotations

import base64
import io
import struct

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from trees import capture, write_captures

import captureq
from captureq import schema

NPY = "application/x-npy"
NPZ = "application/x-npz"
RECORDIO = "application/x-recordio-protobuf"
KEYS = set(schema.RECORD_KEY_NAMES)


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def load(tmp_path, records, name="ep"):
    write_captures(tmp_path / name, records, endpoint="ep", name="f.jsonl")
    return captureq.open(str(tmp_path / name)).load()


def rows(table) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in KEYS} for r in table.to_pylist()]


def expected_rows(arr: np.ndarray) -> list[dict]:
    """The oracle: 1-D (and 0-D) → one record, 2-D → one record per row, ``_c<j>`` per column."""
    matrix = np.atleast_2d(arr) if arr.ndim < 2 else arr
    return [{f"_c{j}": v for j, v in enumerate(row)} for row in matrix.tolist()]


def lattice_type(col: np.ndarray) -> pa.DataType:
    """The type "Types" gives a column of these numbers: BIGINT when every one is whole (within
    ±2**53, and not -0.0), else DOUBLE."""
    if col.dtype.kind in "iu":
        return pa.int64()
    whole = (col == np.trunc(col)) & (np.abs(col) <= 2**53) & ~((col == 0) & np.signbit(col))
    return pa.int64() if whole.all() else pa.float64()


# -- npy ---------------------------------------------------------------------------------------


def test_npy_1d_is_one_record_2d_is_rows(tmp_path):
    t = load(tmp_path, [
        capture(npy(np.array([1.5, 2.0, -3.25])), "0.5", input_type=NPY),
        capture(npy(np.array([[1, 2], [3, 4], [5, 6]], dtype=np.int32)), "0.1\n0.2\n0.3", input_type=NPY),
    ])
    assert t.quarantine.num_rows == 0, t.quarantine.to_pylist()
    assert rows(t.inputs) == [
        {"_c0": 1.5, "_c1": 2.0, "_c2": -3.25},
        {"_c0": 1.0, "_c1": 2.0, "_c2": None},
        {"_c0": 3.0, "_c1": 4.0, "_c2": None},
        {"_c0": 5.0, "_c1": 6.0, "_c2": None},
    ]
    assert t.inputs["record_index"].to_pylist() == [0, 0, 1, 2]
    assert "payload" not in t.inputs.column_names
    assert t.counts.reconciles


@pytest.mark.parametrize(
    "dtype, arrow",
    [("<i4", pa.int64()), (">i8", pa.int64()), ("<u2", pa.int64()), ("<f4", pa.float64()),
     (">f8", pa.float64()), ("|b1", pa.bool_())],
)
def test_npy_dtype_is_kept_ints_bigint_floats_double(tmp_path, dtype, arrow):
    """Integers are BIGINT, floats DOUBLE (whole floats join the endpoint's type by the one
    rule of "Types", as JSON numbers do: a column of 1.0s is BIGINT)."""
    arr = np.array([[1, 0], [0, 1]]).astype(dtype)
    if arr.dtype.kind == "f":
        arr[0, :] += np.array(0.5, dtype)
    t = load(tmp_path, [capture(npy(arr), "0\n1", input_type=NPY)])
    assert t.quarantine.num_rows == 0, t.quarantine.to_pylist()
    assert t.inputs.schema.field("_c0").type == arrow
    assert rows(t.inputs) == expected_rows(arr)


def test_npy_text_arrays_are_varchar(tmp_path):
    arr = np.array([["cat", "dog"], ["émeu", "b"]])
    t = load(tmp_path, [capture(npy(arr), "0\n1", input_type=NPY),
                        capture(npy(arr.astype(">U4")), "0\n1", input_type=NPY)])
    assert t.quarantine.num_rows == 0, t.quarantine.to_pylist()
    assert t.inputs.schema.field("_c0").type == pa.string()
    assert rows(t.inputs) == expected_rows(arr) * 2


def test_npy_fortran_order_and_scalar(tmp_path):
    arr = np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3))
    t = load(tmp_path, [capture(npy(arr), "0\n1", input_type=NPY),
                        capture(npy(np.float64(7.5)), "0", input_type=NPY)])
    assert t.quarantine.num_rows == 0, t.quarantine.to_pylist()
    assert rows(t.inputs) == [{"_c0": 0, "_c1": 1, "_c2": 2}, {"_c0": 3, "_c1": 4, "_c2": 5},
                              {"_c0": 7.5, "_c1": None, "_c2": None}]


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"not an npy file at all", "npy payload does not parse: no \\x93NUMPY magic"),
        (npy(np.zeros((2, 2, 2))), "npy payload holds a 3-D array (2, 2, 2)"),
        (npy(np.array([1.0, 2.0]))[:-3], "npy payload does not parse: 13 bytes of data, "
                                          "but the header's shape (2,) of <f8 needs 16"),
        (npy(np.array([1 + 2j])), "npy payload of dtype <c16"),
    ],
    ids=["no-magic", "3d", "truncated", "complex"],
)
def test_bad_npy_is_quarantined_with_a_reason(tmp_path, data, reason):
    good = npy(np.array([1.0, 2.0]))
    t = load(tmp_path, [capture(good, "0", input_type=NPY), capture(data, "0", input_type=NPY),
                        capture(good, "0", input_type=NPY)])
    [row] = t.quarantine.to_pylist()
    assert (row["stage"], row["line_number"]) == ("input", 2)
    assert row["reason"].startswith(reason), row["reason"]
    assert rows(t.inputs) == [{"_c0": 1.0, "_c1": 2.0}] * 2
    assert t.counts.reconciles


def test_npy_wider_than_the_column_limit_is_refused(tmp_path):
    write_captures(tmp_path / "ep", [capture(npy(np.zeros(5)), "0", input_type=NPY),
                                     capture(npy(np.zeros(4)), "0", input_type=NPY)],
                   endpoint="ep", name="f.jsonl")
    t = captureq.open(str(tmp_path / "ep"), options=captureq.DecodeOptions(max_columns=4)).load()
    [row] = t.quarantine.to_pylist()
    assert row["line_number"] == 1 and row["reason"].startswith("record has 5 columns")
    assert rows(t.inputs) == [{f"_c{j}": 0.0 for j in range(4)}]


def test_npy_names_from_decode_options(tmp_path):
    write_captures(tmp_path / "ep", [capture(npy(np.array([[1.0, 2.0]])), "0", input_type=NPY)],
                   endpoint="ep", name="f.jsonl")
    t = captureq.open(str(tmp_path / "ep"), options=captureq.DecodeOptions(input_names=["a", "b"])).load()
    assert rows(t.inputs) == [{"a": 1.0, "b": 2.0}]


def _arrays(dtype: np.dtype):
    # integers within ±2**53, so a column meeting floats stays numeric (beyond, "Types" makes
    # the join of a big integer and a double VARCHAR)
    elements = ({"allow_nan": False, "allow_infinity": False} if dtype.kind == "f"
                else st.integers(max(np.iinfo(dtype).min, -(2**53)), min(np.iinfo(dtype).max, 2**53)))
    return hnp.arrays(dtype, hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=5),
                      elements=elements)


ARRAYS = st.sampled_from([np.dtype(d) for d in ("<i8", "<i4", ">i2", "<u1", "<f8", "<f4", ">f8")]).flatmap(_arrays)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arrays=st.lists(ARRAYS, min_size=1, max_size=4))
def test_npy_round_trip(tmp_path_factory, arrays):
    """numpy arrays → np.save → captured base64 → decoded records equal the arrays."""
    tmp = tmp_path_factory.mktemp("npy")
    t = load(tmp, [capture(npy(a), "0", input_type=NPY, event_id=f"e{i}") for i, a in enumerate(arrays)])
    assert t.quarantine.filter(pa.compute.equal(t.quarantine["stage"], "input")).num_rows == 0
    width = max(np.atleast_2d(a).shape[1] for a in arrays)
    want = [
        {**{f"_c{j}": None for j in range(width)}, **r}
        for a in arrays for r in expected_rows(a)
    ]
    assert rows(t.inputs) == want
    assert set(t.captures["input_encoding"].to_pylist()) == {"BASE64"}
    got_types = {t.inputs.schema.field(f"_c{j}").type for j in range(width)}
    if all(a.dtype.kind in "iu" for a in arrays):
        assert got_types == {pa.int64()}
    fractions = [j for a in arrays for j, col in enumerate(np.atleast_2d(a).T) if (col != np.trunc(col)).any()]
    for j in fractions:
        assert t.inputs.schema.field(f"_c{j}").type == pa.float64()


# -- npz ---------------------------------------------------------------------------------------


def test_npz_with_one_array_reads_as_npy(tmp_path):
    buf = io.BytesIO()
    np.savez(buf, x=np.array([[1.0, 2.0], [3.0, 4.0]]))
    many = io.BytesIO()
    np.savez(many, a=np.zeros(2), b=np.ones(2))
    t = load(tmp_path, [capture(buf.getvalue(), "0\n1", input_type=NPZ),
                        capture(many.getvalue(), "0", input_type=NPZ)])
    assert rows(t.inputs) == [{"_c0": 1.0, "_c1": 2.0}, {"_c0": 3.0, "_c1": 4.0}]
    [row] = t.quarantine.to_pylist()
    assert row["line_number"] == 2 and row["reason"].startswith("npz payload holds 2 arrays (a, b)")


# -- opaque bytes ------------------------------------------------------------------------------


def test_opaque_bytes_are_stored_once_in_captures(tmp_path):
    """An image keeps its record row (outputs align with it) but no copy of its bytes: the
    bytes are ``captures.input_data`` as stored (base64)."""
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe"
    t = load(tmp_path, [capture(png, '{"label": "cat"}', input_type="image/png",
                                output_type="application/json")])
    assert t.quarantine.num_rows == 0
    assert rows(t.inputs) == [{}]
    assert base64.b64decode(t.captures["input_data"][0].as_py()) == png


def test_export_holds_binary_bytes_once(tmp_path):
    import pyarrow.parquet as pq

    audio = bytes(range(256)) * 64
    write_captures(tmp_path / "cap", [capture(audio, "0.5", input_type="audio/wav"),
                                      capture(npy(np.arange(3.0)), "0.5", input_type=NPY)],
                   endpoint="ep", name="f.jsonl")
    captureq.open(str(tmp_path / "cap")).export(str(tmp_path / "out"))
    inputs = pq.read_table(tmp_path / "out" / "inputs")
    assert "payload" not in inputs.column_names
    assert sorted(inputs["_c2"].to_pylist(), key=lambda v: v is None) == [2.0, None]
    captures = pq.read_table(tmp_path / "out" / "captures")
    assert base64.b64encode(audio).decode() in captures["input_data"].to_pylist()


# -- empty payloads ----------------------------------------------------------------------------


def raw_payload(data, encoding, content_type):
    return {"observedContentType": content_type, "mode": "INPUT", "data": data, "encoding": encoding}


@pytest.mark.parametrize(
    "payload",
    [
        raw_payload("", "CSV", "text/csv"),
        raw_payload("\n", "CSV", "text/csv"),
        raw_payload("", "JSON", "application/json"),
        raw_payload("  \n", "JSON", "application/jsonlines"),
        raw_payload("", "BASE64", "text/csv"),
        raw_payload("", "BASE64", NPY),
        raw_payload("", "BASE64", "image/png"),
        raw_payload("", "BASE64", RECORDIO),
    ],
    ids=["csv", "csv-newline", "json", "jsonl-blank", "base64-csv", "base64-npy", "base64-png",
         "base64-recordio"],
)
def test_empty_payloads_are_quarantined_alike(tmp_path, payload):
    t = load(tmp_path, [capture("1,2", "0.5"), capture(payload, "0.5")])
    [row] = t.quarantine.to_pylist()
    assert (row["stage"], row["line_number"], row["reason"]) == (
        "input", 2, "empty payload: no data to decode")
    assert t.captures.num_rows == 2 and t.inputs.num_rows == 1
    assert t.counts.reconciles


# -- recordio-protobuf -------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, body: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(body)) + body


def record_protobuf(features: dict[str, np.ndarray], label: float | None = None) -> bytes:
    """One SageMaker ``Record`` (aialgs.data, record.proto) written from its documented fields:
    features (1) is a map<string, Value>; Value's float32_tensor (2), float64_tensor (3),
    int32_tensor (7) each hold packed ``values`` (1)."""
    def value(arr: np.ndarray) -> bytes:
        if arr.dtype == np.float32:
            number, packed = 2, arr.astype("<f4").tobytes()
        elif arr.dtype == np.float64:
            number, packed = 3, arr.astype("<f8").tobytes()
        else:
            number, packed = 7, b"".join(_varint(int(v) & 0xFFFFFFFFFFFFFFFF) for v in arr)
        return _field(number, _field(1, packed))

    out = b""
    for key, arr in features.items():
        out += _field(1, _field(1, key.encode()) + _field(2, value(arr)))
    if label is not None:
        out += _field(2, _field(1, b"values") + _field(2, value(np.array([label], np.float32))))
    return out


def recordio(records: list[bytes]) -> bytes:
    """RecordIO framing as the SageMaker SDK writes it: magic, length, data padded to 4 bytes."""
    out = b""
    for r in records:
        out += struct.pack("<II", 0xCED7230A, len(r)) + r + b"\x00" * ((-len(r)) % 4)
    return out


def test_recordio_protobuf_dense_values(tmp_path):
    data = recordio([record_protobuf({"values": np.array([1.5, 2.0, 3.0], np.float32)}, label=1.0),
                     record_protobuf({"values": np.array([4.0, 5.0, 6.0], np.float32)}, label=0.0)])
    t = load(tmp_path, [capture(data, "0.1\n0.2", input_type=RECORDIO)])
    assert t.quarantine.num_rows == 0, t.quarantine.to_pylist()
    assert rows(t.inputs) == [{"_c0": 1.5, "_c1": 2.0, "_c2": 3.0}, {"_c0": 4.0, "_c1": 5.0, "_c2": 6.0}]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    dtype=st.sampled_from([np.float32, np.float64, np.int32]),
    width=st.integers(1, 6),
    per_payload=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    data=st.data(),
)
def test_recordio_round_trip(tmp_path_factory, dtype, width, per_payload, data):
    """Matrices → one Record per row → RecordIO payloads (several records each) → captured
    base64 → decoded records equal the rows, in order."""
    elements = (st.integers(-(2**31), 2**31 - 1) if dtype is np.int32
                else st.floats(allow_nan=False, allow_infinity=False, width=32 if dtype is np.float32 else 64))
    matrix = data.draw(hnp.arrays(dtype, (sum(per_payload), width), elements=elements))
    bounds = np.cumsum([0, *per_payload])
    records = [capture(recordio([record_protobuf({"values": row}) for row in matrix[a:b]]),
                       "\n".join(["0"] * (b - a)), input_type=RECORDIO, event_id=f"e{i}")
               for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]
    t = load(tmp_path_factory.mktemp("rio"), records)
    assert t.quarantine.num_rows == 0, t.quarantine.to_pylist()
    assert rows(t.inputs) == expected_rows(matrix)
    assert t.inputs["record_index"].to_pylist() == [k for n in per_payload for k in range(n)]
    assert t.inputs.schema.field("_c0").type == lattice_type(matrix[:, 0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_recordio_wider_than_the_column_limit_is_refused(tmp_path, dtype):
    wide = recordio([record_protobuf({"values": np.ones(3, dtype)}),
                     record_protobuf({"values": np.ones(5, dtype)})])
    narrow = recordio([record_protobuf({"values": np.arange(2, dtype=dtype)})])
    write_captures(tmp_path / "ep", [capture(wide, "0\n1", input_type=RECORDIO),
                                     capture(narrow, "0", input_type=RECORDIO)], endpoint="ep", name="f.jsonl")
    t = captureq.open(str(tmp_path / "ep"), options=captureq.DecodeOptions(max_columns=4)).load()
    [row] = t.quarantine.to_pylist()
    assert row["line_number"] == 1
    assert row["reason"].startswith("record has 5 columns, more than the limit of 4"), row["reason"]
    assert rows(t.inputs) == [{"_c0": 0, "_c1": 1}]


def test_recordio_it_cannot_read_is_quarantined_saying_how_to_read_it(tmp_path):
    sparse = _field(1, _field(1, b"values") + _field(2, _field(2, _field(1, b"\x00\x00\x80?") + _field(2, b"\x05"))))
    t = load(tmp_path, [capture(recordio([sparse]), "0", input_type=RECORDIO),
                        capture(b"\x01\x02\x03\x04garbage!", "0", input_type=RECORDIO)])
    reasons = [r["reason"] for r in t.quarantine.to_pylist()]
    assert len(reasons) == 2
    assert all("sagemaker.amazon.common.read_records" in r for r in reasons), reasons
    assert "sparse" in reasons[0] and "RecordIO" in reasons[1]


# -- never raises ------------------------------------------------------------------------------

def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


_GOOD = [npy(np.arange(4.0)), npy(np.ones((2, 3), np.int16)), _npz(x=np.arange(3)),
         recordio([record_protobuf({"values": np.array([1.0, 2.0], np.float32)})])]


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(
        st.sampled_from(_GOOD).flatmap(lambda g: st.tuples(st.integers(0, len(g)), st.binary(max_size=8))
                                       .map(lambda cut: g[: cut[0]] + cut[1]))
        | st.binary(max_size=40),
        min_size=1, max_size=6),
    media=st.sampled_from([NPY, NPZ, RECORDIO, "image/png"]),
)
def test_binary_decoders_never_raise_and_account_for_every_payload(payloads, media):
    from captureq.decode import decode_binary

    d = decode_binary(pa.array(payloads, pa.binary()), np.array([media] * len(payloads)), max_columns=50)
    failed = {r for r, _ in d.failures}
    decoded = set(d.table["_row"].to_pylist())
    assert not failed & decoded
    assert failed | decoded <= set(range(len(payloads)))
    if media == "image/png":
        assert decoded == set(range(len(payloads)))
