"""Binary payloads (stored ``BASE64``) → records, chosen by the media type.

- ``application/x-npy`` (the SageMaker SDK's ``NumpySerializer``): numpy's ``.npy`` format. A 0-D
  or 1-D array is one record, a 2-D array one record per row; columns are ``_c0``, ``_c1``, …
  (or ``DecodeOptions(names=…)``) as for CSV, integers as BIGINT, floats as DOUBLE, booleans
  as BOOLEAN, text as VARCHAR. Payloads that share a header (the usual case: one endpoint, one
  shape) are cut out of the batch's buffer together, never one by one.
- ``application/x-npz``: an ``.npz`` holding one array reads as that array's ``.npy``.
- ``application/x-recordio-protobuf``: SageMaker's RecordIO framing (magic ``0xced7230a``, a
  length, the data padded to 4 bytes) around ``aialgs.data.Record`` protobuf messages; each
  record's dense ``features["values"]`` tensor (float32, float64 or int32) is one record's
  ``_c0…``. The wire format is read with array kernels over every record of the batch at
  once, one protobuf field at a time. Other records (sparse tensors, other feature names, bytes
  values) are quarantined with a reason that says how to read them.
- Anything else (images, audio, …): one record with no value column, so outputs still line up.
  Its bytes are not copied into the record: they are ``captures.input_data`` (base64, as stored).

>>> import io, numpy as np, pyarrow as pa
>>> buf = io.BytesIO(); np.save(buf, np.array([[1, 2], [3, 4]]))
>>> d = decode_binary(pa.array([buf.getvalue()], pa.binary()), np.array(["application/x-npy"]))
>>> d.table.to_pylist()
[{'_row': 0, 'record_index': 0, '_c0': 1, '_c1': 2}, {'_row': 0, 'record_index': 1, '_c0': 3, '_c1': 4}]
"""

from __future__ import annotations

import ast
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from .common import RECORD_INDEX, ROW, Decoded, concat, too_wide_reason, unique_names

NPY_TYPES = ("application/x-npy", "application/npy")
NPZ_TYPES = ("application/x-npz", "application/npz")
RECORDIO_TYPES = ("application/x-recordio-protobuf", "application/recordio-protobuf")

_NPY_MAGIC = b"\x93NUMPY"
_RECORDIO_MAGIC = 0xCED7230A
_HOW_TO_READ = ("read it with sagemaker.amazon.common.read_records(io.BytesIO(base64.b64decode("
                "input_data))) from the SageMaker Python SDK")


def decode_binary(values: pa.Array, media: np.ndarray, names: Sequence[str] | None = None, *,
                  max_columns: int | None = None) -> Decoded:
    """Decode binary payloads ``values`` whose media types (lower case, no parameters) are
    ``media``; ``_row`` is the payload's position in ``values``."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    media = np.asarray(media, dtype=object)
    kinds = (
        (np.isin(media, NPY_TYPES), _npy),
        (np.isin(media, NPZ_TYPES), _npz),
        (np.isin(media, RECORDIO_TYPES), _recordio),
    )
    parts = []
    known = np.zeros(len(values), dtype=bool)
    for mask, decode in kinds:
        if mask.any():
            parts.append(_subset(values, np.flatnonzero(mask), decode, names, max_columns))
            known |= mask
    opaque = np.flatnonzero(~known)
    if len(opaque):
        parts.append(Decoded(pa.table({ROW: pa.array(opaque, pa.int64()),
                                       RECORD_INDEX: pa.array(np.zeros(len(opaque), np.int32))})))
    return concat(parts)


def _subset(values: pa.Array, rows: np.ndarray, decode, names, limit) -> Decoded:
    sub = values if len(rows) == len(values) else values.take(pa.array(rows))
    d = decode(sub, names, limit)
    d.table = d.table.set_column(0, ROW, pa.array(rows, pa.int64()).take(d.table.column(ROW)))
    d.failures = [(int(rows[i]), m) for i, m in d.failures]
    return d


# ---------------------------------------------------------------------------------------------
# The bytes of a binary array
# ---------------------------------------------------------------------------------------------
def _layout(values: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data buffer as uint8, start of each value in it, length of each value)."""
    wide = pa.types.is_large_binary(values.type)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64 if wide else np.int32)
    offsets = offsets[values.offset: values.offset + len(values) + 1].astype(np.int64)
    data = values.buffers()[2]
    buf = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    return buf, offsets[:-1], np.diff(offsets)


def _byte_at(buf: np.ndarray, pos: np.ndarray, end: np.ndarray, fill: int = 0) -> np.ndarray:
    """``buf[pos]`` where ``pos < end``, else ``fill`` (never reads past the buffer)."""
    inside = pos < end
    if not len(buf):
        return np.full(len(pos), fill, dtype=np.int64)
    return np.where(inside, buf[np.clip(pos, 0, len(buf) - 1)], fill).astype(np.int64)


def _uint_le(buf: np.ndarray, pos: np.ndarray, end: np.ndarray, width: int) -> np.ndarray:
    out = np.zeros(len(pos), dtype=np.int64)
    for k in range(width):
        out |= _byte_at(buf, pos + k, end) << (8 * k)
    return out


def _gather(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The bytes of the ranges ``[start, start + length)`` (ordered, not overlapping), joined,
    with one mask over the buffer instead of a copy per range."""
    nonempty = lengths > 0
    starts, lengths = starts[nonempty], lengths[nonempty]
    if not len(starts):
        return buf[:0]
    width = int(lengths[0])
    if (lengths == width).all():
        steps = np.diff(starts)
        if len(steps) and (steps == steps[0]).all() and steps[0] >= width:
            # evenly spaced (payloads of one size, one header): a strided view, one copy
            view = np.lib.stride_tricks.as_strided(buf[starts[0]:], shape=(len(starts), width),
                                                   strides=(int(steps[0]), 1), writeable=False)
            return view.reshape(-1)
        if len(starts) * width <= 1 << 22:
            return buf[(starts[:, None] + np.arange(width)).reshape(-1)]
    delta = np.zeros(len(buf) + 1, dtype=np.int8)
    delta[starts] += 1
    delta[starts + lengths] -= 1
    return buf[np.cumsum(delta[:-1], dtype=np.int8) > 0]


# ---------------------------------------------------------------------------------------------
# Matrices → columns
# ---------------------------------------------------------------------------------------------
def _as_arrow(col: np.ndarray) -> pa.Array:
    kind = col.dtype.kind
    if kind == "f":
        return pa.array(col.astype(np.float64, copy=False))
    if kind == "u" and col.dtype.itemsize == 8 and len(col) and col.max() >= 2**63:
        return pa.array(col.astype(np.float64))
    if kind in "iu":
        return pa.array(col.astype(np.int64, copy=False))
    if kind == "b":
        return pa.array(col)
    return pa.array(col.astype(str))


def _matrix_table(row: np.ndarray, index: np.ndarray, matrix: np.ndarray,
                  names: Sequence[str] | None) -> pa.Table:
    """Records (``row``, ``index``) whose values are the rows of a 2-D ``matrix``."""
    from .csv import column_names

    width = matrix.shape[1]
    cols = np.ascontiguousarray(matrix.T) if width > 1 else matrix.reshape(1, -1)
    out = {ROW: pa.array(row, pa.int64()), RECORD_INDEX: pa.array(index, pa.int32())}
    for name, col in zip(unique_names(column_names(width, names)), cols):
        out[name] = _as_arrow(col)
    return pa.table(out)


# ---------------------------------------------------------------------------------------------
# npy
# ---------------------------------------------------------------------------------------------
def _npy_header(text: str) -> tuple[np.dtype, bool, tuple[int, ...]]:
    """The dtype, Fortran order and shape of an npy header's dict literal."""
    try:
        header = ast.literal_eval(text)
        descr, fortran, shape = header["descr"], bool(header["fortran_order"]), tuple(header["shape"])
        if not isinstance(descr, str) or not all(isinstance(s, int) and s >= 0 for s in shape):
            raise ValueError
        return np.dtype(descr), fortran, shape
    except (ValueError, SyntaxError, KeyError, TypeError):
        raise ValueError(f"npy payload does not parse: header {text.strip()[:80]!r} is not "
                         "numpy's {'descr', 'fortran_order', 'shape'}") from None


def _npy(values: pa.Array, names, limit) -> Decoded:
    buf, starts, lengths = _layout(values)
    ends = starts + lengths
    failures: list[tuple[int, str]] = []
    ok = lengths >= 10
    for k, b in enumerate(_NPY_MAGIC):
        ok &= _byte_at(buf, starts + k, ends) == b
    for r in np.flatnonzero(~ok):
        failures.append((int(r), "npy payload does not parse: no \\x93NUMPY magic at its start "
                                 "(is it really application/x-npy?)"))
    major = _byte_at(buf, starts + 6, ends)
    v1 = major == 1
    prefix = np.where(v1, 10, 12)
    hlen = np.where(v1, _uint_le(buf, starts + 8, ends, 2), _uint_le(buf, starts + 8, ends, 4))
    data_off = prefix + hlen
    bad = ok & (~np.isin(major, (1, 2, 3)) | (data_off > lengths))
    for r in np.flatnonzero(bad):
        failures.append((int(r), f"npy payload does not parse: version {int(major[r])} header of "
                                 f"{int(hlen[r])} bytes in a payload of {int(lengths[r])}"))
    ok &= ~bad
    tables = []
    for off in np.unique(data_off[ok]):
        rows = np.flatnonzero(ok & (data_off == off))
        heads = _gather(buf, starts[rows], np.full(len(rows), off, dtype=np.int64)).reshape(len(rows), off)
        if (heads == heads[0]).all():  # the usual batch: one shape, one header
            uniq, inverse = heads[:1], np.zeros(len(rows), dtype=np.int64)
        else:
            uniq, inverse = np.unique(heads.view(np.dtype((np.void, int(off)))).ravel(), return_inverse=True)
        for h, head in enumerate(uniq):
            group = rows[inverse.ravel() == h]
            pre = 10 if head.tobytes()[6] == 1 else 12
            text = head.tobytes()[pre:].decode("latin-1")
            try:
                dtype, fortran, shape = _npy_header(text)
            except ValueError as exc:
                failures += [(int(r), str(exc)) for r in group]
                continue
            reason = _npy_refusal(dtype, shape, limit)
            if reason:
                failures += [(int(r), reason) for r in group]
                continue
            size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            fits = lengths[group] - off == size
            for r in group[~fits]:
                failures.append((int(r), f"npy payload does not parse: {int(lengths[r] - off)} bytes "
                                          f"of data, but the header's shape {shape} of {dtype.str} "
                                          f"needs {size}"))
            group = group[fits]
            if len(group):
                tables.append(_npy_records(buf, starts[group] + off, size, group, dtype, fortran,
                                           shape, names))
    table = concat([Decoded(t) for t in tables]).table if tables else Decoded.empty().table
    return Decoded(table, sorted(failures))


def _npy_refusal(dtype: np.dtype, shape: tuple[int, ...], limit: int | None) -> str | None:
    if dtype.kind not in "biufU" or dtype.fields is not None or dtype.subdtype is not None:
        return (f"npy payload of dtype {dtype.str} cannot be a column: captureq reads arrays of "
                "integers, floats, booleans or text")
    if len(shape) > 2:
        return (f"npy payload holds a {len(shape)}-D array {shape}; captureq reads 1-D (one "
                "record) and 2-D (one record per row) arrays: reshape it to 2-D before sending")
    width = shape[-1] if shape else 1
    if limit is not None and width > limit:
        return too_wide_reason(width, limit)
    return None


def _npy_records(buf, data_starts, size, rows, dtype, fortran, shape, names) -> pa.Table:
    k = len(rows)
    flat = _gather(buf, data_starts, np.full(k, size, dtype=np.int64))
    arr = flat.view(dtype)
    if fortran and len(shape) == 2:
        arr = arr.reshape(k, shape[1], shape[0]).transpose(0, 2, 1)
    per = shape[0] if len(shape) == 2 else 1
    width = shape[-1] if shape else 1
    matrix = arr.reshape(k * per, width)
    row = np.repeat(rows, per)
    index = np.tile(np.arange(per, dtype=np.int32), k)
    return _matrix_table(row, index, matrix, names)


# ---------------------------------------------------------------------------------------------
# npz
# ---------------------------------------------------------------------------------------------
def _npz(values: pa.Array, names, limit) -> Decoded:
    """An npz is a zip archive: each is opened on its own (zip has no batch reader); one that
    holds one array is read as that array's npy."""
    import io
    import zipfile

    arrays, rows, failures = [], [], []
    for r, data in enumerate(values.to_pylist()):
        if not data.startswith(b"PK"):
            failures.append((r, "npz payload does not parse: it is not a zip archive (an .npy "
                                "array is sent as application/x-npy)"))
            continue
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                keys = list(npz.files)
                if len(keys) != 1:
                    failures.append((r, f"npz payload holds {len(keys)} arrays ({', '.join(keys)}); "
                                        "captureq reads an npz holding one array (np.savez(f, x))"))
                    continue
                buf = io.BytesIO()
                np.save(buf, npz[keys[0]], allow_pickle=False)
        except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError, RuntimeError,
                NotImplementedError) as exc:  # numpy's and zipfile's ways of refusing bytes
            failures.append((r, f"npz payload does not parse: {type(exc).__name__}: {exc}"))
            continue
        arrays.append(buf.getvalue())
        rows.append(r)
    if not arrays:
        return Decoded(Decoded.empty().table, failures)
    d = _subset(pa.array(arrays, pa.binary()), np.arange(len(arrays)), _npy, names, limit)
    mapped = np.asarray(rows, dtype=np.int64)
    d.table = d.table.set_column(0, ROW, pa.array(mapped).take(d.table.column(ROW)))
    d.failures = sorted([(int(mapped[i]), m.replace("npy payload", "npz payload's array"))
                         for i, m in d.failures] + failures)
    return d


# ---------------------------------------------------------------------------------------------
# RecordIO-protobuf
# ---------------------------------------------------------------------------------------------
def _varint(buf: np.ndarray, pos: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The protobuf varint at each ``pos`` (before ``end``): (value as uint64, its length in
    bytes; 0 where it runs past ``end`` or is longer than 10 bytes). One step per byte, over
    the varints still going (most are one or two bytes)."""
    value = np.zeros(len(pos), dtype=np.uint64)
    size = np.zeros(len(pos), dtype=np.int64)
    going = np.arange(len(pos))
    for i in range(10):
        if not len(going):
            break
        b = _byte_at(buf, pos[going] + i, end[going], fill=0x80)
        value[going] |= (b & 0x7F).astype(np.uint64) << np.uint64(7 * i)
        done = (b & 0x80) == 0
        size[going[done]] = i + 1
        going = going[~done]
    return value, size


def _fields(buf: np.ndarray, start: np.ndarray, end: np.ndarray):
    """Every field of the messages ``[start, end)``, all messages at once (one step per field):
    (message, field number, wire type, body start, body length) and a mask of messages whose
    bytes are not protobuf. Length-delimited fields' bodies are their bytes."""
    msg, number, wire, body, size = [], [], [], [], []
    broken = np.zeros(len(start), dtype=bool)
    pos, active = start.copy(), start < end
    while active.any():
        ids = np.flatnonzero(active)
        p, e = pos[ids], end[ids]
        tag, n1 = _varint(buf, p, e)
        w = (tag & np.uint64(7)).astype(np.int64)
        length, n2 = _varint(buf, p + n1, e)
        fixed = np.select([w == 0, w == 1, w == 5], [0, 8, 4], -1)
        b = np.where(w == 2, p + n1 + n2, p + n1)
        s = np.select([w == 2, w == 0], [length.astype(np.int64), n2], fixed)
        bad = (n1 == 0) | ((w == 2) & (n2 == 0)) | ((w == 0) & (n2 == 0)) | (s < 0) | (b + s > e)
        broken[ids[bad]] = True
        good = ~bad
        msg.append(ids[good])
        number.append((tag[good] >> np.uint64(3)).astype(np.int64))
        wire.append(w[good])
        body.append(b[good])
        size.append(s[good])
        pos[ids] = np.where(bad, e, b + s)
        active = pos < end
    cat = (lambda xs: np.concatenate(xs) if xs else np.zeros(0, np.int64))  # noqa: E731
    return cat(msg), cat(number), cat(wire), cat(body), cat(size), broken


def _frames(buf, starts, ends):
    """RecordIO records of each payload, in order: (payload, record start, record length), and
    the reason each broken payload has."""
    owner, rec_start, rec_len = [], [], []
    reasons: dict[int, str] = {}
    pos = starts.copy()
    active = pos < ends
    while active.any():
        ids = np.flatnonzero(active)
        p, e = pos[ids], ends[ids]
        magic = _uint_le(buf, p, e, 4)
        word = _uint_le(buf, p + 4, e, 4)
        length, cflag = word & 0x1FFFFFFF, word >> 29
        bad = (magic != _RECORDIO_MAGIC) | (p + 8 > e) | (p + 8 + length > e) | (cflag != 0)
        for i in np.flatnonzero(bad):
            r = int(ids[i])
            reasons[r] = ("it is not RecordIO: no 0xced7230a magic at byte "
                          f"{int(p[i] - starts[r])}" if magic[i] != _RECORDIO_MAGIC or p[i] + 8 > e[i]
                          else "a RecordIO record is split over several parts" if cflag[i]
                          else f"a RecordIO record of {int(length[i])} bytes runs past the payload's end")
        good = ~bad
        owner.append(ids[good])
        rec_start.append(p[good] + 8)
        rec_len.append(length[good])
        pos[ids] = np.where(bad, e, p + 8 + ((length + 3) & ~3))
        active = pos < ends
    cat = (lambda xs: np.concatenate(xs) if xs else np.zeros(0, np.int64))  # noqa: E731
    # found one step per record index: put them back in buffer (= payload, then record) order
    order = np.argsort(cat(rec_start), kind="stable")
    return cat(owner)[order], cat(rec_start)[order], cat(rec_len)[order], reasons


_TENSORS = {2: "<f4", 3: "<f8", 7: "int32"}  # Value's oneof: float32, float64, int32 tensors


def _one(msg, n, mask):
    """Per message, the position of its one field matching ``mask`` (-1: none, -2: several)."""
    pick = np.full(n, -1, dtype=np.int64)
    hits = np.flatnonzero(mask)
    counts = np.bincount(msg[hits], minlength=n)
    pick[msg[hits]] = hits
    pick[counts > 1] = -2
    return pick


def _recordio(values: pa.Array, names, limit) -> Decoded:
    buf, starts, lengths = _layout(values)
    owner, rstart, rlen, reasons = _frames(buf, starts, starts + lengths)
    n = len(owner)

    def fail(records: np.ndarray, why: str) -> None:
        for r in np.unique(owner[records]):
            reasons.setdefault(int(r), why)

    # Record: features (1) is a map<string, Value>, one entry per field 1
    m, num, wire, body, size, broken = _fields(buf, rstart, rstart + rlen)
    fail(np.flatnonzero(broken), "a record is not a protobuf message")
    entry = _one(m, n, (num == 1) & (wire == 2))
    fail(np.flatnonzero(entry == -1), "a record has no features")
    fail(np.flatnonzero(entry == -2), "a record has several features; captureq reads one named 'values'")
    rec = np.flatnonzero(entry >= 0)
    # MapEntry: key (1), value (2)
    em, enum_, ewire, ebody, esize, ebroken = _fields(buf, body[entry[rec]], body[entry[rec]] + size[entry[rec]])
    fail(rec[ebroken], "a feature entry is not a protobuf message")
    key = _one(em, len(rec), (enum_ == 1) & (ewire == 2))
    val = _one(em, len(rec), (enum_ == 2) & (ewire == 2))
    is_values = (key >= 0) & (esize[key] == 6)
    if is_values.any():
        kpos = ebody[key[is_values]][:, None] + np.arange(6)
        is_values[is_values] = (buf[kpos] == np.frombuffer(b"values", np.uint8)).all(axis=1)
    fail(rec[~is_values], "a record's feature is not named 'values'")
    fail(rec[is_values & (val < 0)], "a record's 'values' feature has no value")
    keep = is_values & (val >= 0)
    rec, val = rec[keep], val[keep]
    # Value: one of float32_tensor (2), float64_tensor (3), int32_tensor (7), bytes (9)
    vm, vnum, vwire, vbody, vsize, vbroken = _fields(buf, ebody[val], ebody[val] + esize[val])
    fail(rec[vbroken], "a feature value is not a protobuf message")
    tensor = _one(vm, len(rec), vwire == 2)
    kind = np.where(tensor >= 0, vnum[np.maximum(tensor, 0)], -1)
    fail(rec[kind == 9], "a record's 'values' feature holds bytes, not a tensor")
    fail(rec[(tensor >= 0) & ~np.isin(kind, list(_TENSORS)) & (kind != 9)], "a record's value is of an unknown type")
    fail(rec[tensor < 0], "a record's 'values' feature holds no tensor")
    keep = np.isin(kind, list(_TENSORS))
    rec, tensor, kind = rec[keep], tensor[keep], kind[keep]
    # Tensor: values (1, packed); keys (2) and shape (3) make it sparse
    tm, tnum, twire, tbody, tsize, tbroken = _fields(buf, vbody[tensor], vbody[tensor] + vsize[tensor])
    fail(rec[tbroken], "a tensor is not a protobuf message")
    sparse = np.zeros(len(rec), dtype=bool)
    sparse[tm[np.isin(tnum, (2, 3))]] = True
    fail(rec[sparse], "a record holds a sparse tensor (keys/shape); captureq reads dense ones")
    unpacked = np.zeros(len(rec), dtype=bool)
    unpacked[tm[(tnum == 1) & (twire != 2)]] = True
    fail(rec[unpacked], "a tensor's values are not packed")
    vals = _one(tm, len(rec), (tnum == 1) & (twire == 2))
    fail(rec[vals == -2], "a tensor has its values in several pieces")
    keep = (vals >= -1) & ~sparse & ~unpacked
    rec, vals, kind = rec[keep], vals[keep], kind[keep]
    vstart = np.where(vals >= 0, tbody[np.maximum(vals, 0)], 0)
    vlen = np.where(vals >= 0, tsize[np.maximum(vals, 0)], 0)
    bad_size = np.select([kind == 2, kind == 3], [vlen % 4, vlen % 8], 0) != 0
    fail(rec[bad_size], "a tensor's values do not fill whole numbers")
    # a payload with any unreadable record is quarantined whole
    good = ~np.isin(owner[rec], list(reasons)) & ~bad_size
    rec, kind, vstart, vlen = rec[good], kind[good], vstart[good], vlen[good]
    tables = []
    if limit is not None:  # a float tensor's width is known from its bytes: refuse before reading
        width = np.select([kind == 2, kind == 3], [vlen // 4, vlen // 8], 0)
        for i in np.flatnonzero(width > limit):
            reasons.setdefault(int(owner[rec[i]]), _Wide(too_wide_reason(int(width[i]), limit)))
        keep = ~np.isin(owner[rec], [r for r, why in reasons.items() if isinstance(why, _Wide)])
        rec, kind, vstart, vlen = rec[keep], kind[keep], vstart[keep], vlen[keep]
    for k, dtype in _TENSORS.items():
        sel = kind == k
        if not sel.any():
            continue
        flat_bytes = _gather(buf, vstart[sel], vlen[sel])
        if dtype == "int32":
            counts, flat = _packed_varints(flat_bytes, vlen[sel])
        else:
            flat = flat_bytes.view(dtype)
            counts = vlen[sel] // np.dtype(dtype).itemsize
        tables.append(_vectors(owner[rec[sel]], _index_within(owner, rec[sel]), counts, flat, names, limit, reasons))
    keep_tables = [t for t in tables if t.num_rows]
    table = concat([Decoded(t) for t in keep_tables]).table if keep_tables else Decoded.empty().table
    if reasons:  # a payload quarantined for one record keeps none of its others
        table = table.filter(~np.isin(table[ROW].to_numpy(), list(reasons)))
    failures = sorted((r, why if isinstance(why, _Wide) else
                       f"recordio-protobuf payload not read: {why}; {_HOW_TO_READ}")
                      for r, why in reasons.items())
    return Decoded(table, failures)


def _gather_items(flat: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The runs ``flat[start:start + count]``, joined (the records kept)."""
    if not len(starts):
        return flat[:0]
    ends = starts + counts
    mask = np.zeros(len(flat) + 1, dtype=np.int8)
    mask[starts[counts > 0]] += 1
    mask[ends[counts > 0]] -= 1
    return flat[np.cumsum(mask[:-1], dtype=np.int8) > 0]


class _Wide(str):
    """A too-wide reason: the column limit's own message, not a hint to read the payload elsewhere."""


def _index_within(owner: np.ndarray, rec: np.ndarray) -> np.ndarray:
    """Each record's position among its payload's records (records are in payload order)."""
    first = np.searchsorted(owner, owner[rec], side="left")
    return (rec - first).astype(np.int32)


def _packed_varints(data: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Packed int32 varints of consecutive ranges: (count per range, values as int64)."""
    last = (data & 0x80) == 0
    ends = np.flatnonzero(last)
    starts = np.concatenate([[0], ends[:-1] + 1])
    shift = (np.arange(len(data)) - np.repeat(starts, ends - starts + 1)) * 7 if len(ends) else np.zeros(0, np.int64)
    parts = (data[: len(shift)] & 0x7F).astype(np.uint64) << shift.astype(np.uint64)
    values = np.add.reduceat(parts, starts) if len(ends) else np.zeros(0, np.uint64)
    values = (values & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.int32).astype(np.int64)
    bounds = np.cumsum(lengths)
    counts = np.diff(np.concatenate([[0], np.searchsorted(ends, bounds - 1, side="right")]))
    return counts, values


def _vectors(rows, index, counts, flat, names, limit, reasons) -> pa.Table:
    """Records whose values are consecutive runs of ``flat`` (``counts`` values each)."""
    from .json import _vector_columns

    wide = counts > limit if limit is not None else np.zeros(len(counts), dtype=bool)
    for i in np.flatnonzero(wide):
        reasons.setdefault(int(rows[i]), _Wide(too_wide_reason(int(counts[i]), limit)))
    if wide.any():  # refused before any column is built; the payload's other records go too
        keep = ~np.isin(rows, rows[wide])
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        flat = _gather_items(flat, starts[keep], counts[keep])
        rows, index, counts = rows[keep], index[keep], counts[keep]
    if len(counts) and (counts == counts[0]).all():
        return _matrix_table(rows, index, flat.reshape(len(counts), int(counts[0])), names)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), _as_arrow(flat))
    cols = _vector_columns(lists)
    from .csv import column_names

    names_ = unique_names(column_names(len(cols), names))
    out = {ROW: pa.array(rows, pa.int64()), RECORD_INDEX: pa.array(index, pa.int32())}
    out.update(zip(names_, cols.values()))
    return pa.table(out)
