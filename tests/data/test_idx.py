"""IDX reader and writer: round trips; every corruption is a DataError naming the file."""

import gzip
import os
import re
import struct

import numpy as np
import pytest

from cnnkit.data import DataError, read_idx, read_idx_images, read_idx_labels, write_idx

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]
SHAPES = [(7,), (3, 5), (2, 3, 4), (2, 1, 3, 2)]


def _random(rng, dtype, shape):
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    return rng.standard_normal(shape).astype(dtype)


def _idx_bytes(code, dims, payload):
    """An IDX file built by hand, independently of write_idx."""
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload


def _raises_naming(path, *problem):
    """pytest.raises(DataError) whose message names the file and each word of the problem."""
    pattern = "".join(f"(?=.*{re.escape(w)})" for w in (str(path), *problem))
    return pytest.raises(DataError, match=re.compile(pattern, re.S | re.I))


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_round_trip(tmp_path, rng, dtype, shape, gz):
    x = _random(rng, dtype, shape)
    path = write_idx(tmp_path / ("a.idx.gz" if gz else "a.idx"), x)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == gz
    out = read_idx(path, expect_ndim=len(shape))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert out.flags.writeable
    np.testing.assert_array_equal(out, x)


def test_writer_layout_is_big_endian_idx(tmp_path):
    path = write_idx(tmp_path / "a.idx", np.array([[0x01020304], [-2]], dtype=np.int32))
    assert path.read_bytes() == _idx_bytes(0x0C, (2, 1), bytes([1, 2, 3, 4, 255, 255, 255, 254]))


def test_reader_parses_hand_built_files(tmp_path):
    path = tmp_path / "f.idx"
    path.write_bytes(_idx_bytes(0x0D, (3,), struct.pack(">3f", 1.5, -2.0, 0.25)))
    np.testing.assert_array_equal(read_idx(path), np.array([1.5, -2.0, 0.25], np.float32))
    path.write_bytes(_idx_bytes(0x0B, (1, 2), struct.pack(">2h", -300, 7)))
    np.testing.assert_array_equal(read_idx(path), np.array([[-300, 7]], np.int16))


def test_gzip_detected_from_content_not_name(tmp_path, rng):
    x = _random(rng, np.uint8, (4, 3, 3))
    gz = write_idx(tmp_path / "a.gz", x)
    misnamed_gz = tmp_path / "looks-raw.idx"
    misnamed_gz.write_bytes(gz.read_bytes())
    raw = write_idx(tmp_path / "b.idx", x)
    misnamed_raw = tmp_path / "looks-compressed.gz"
    misnamed_raw.write_bytes(raw.read_bytes())
    np.testing.assert_array_equal(read_idx(misnamed_gz), x)
    np.testing.assert_array_equal(read_idx(misnamed_raw), x)


def test_images_and_labels_readers(tmp_path, rng):
    images, labels = _random(rng, np.uint8, (5, 28, 28)), _random(rng, np.uint8, (5,))
    np.testing.assert_array_equal(read_idx_images(write_idx(tmp_path / "i.gz", images)), images)
    np.testing.assert_array_equal(read_idx_labels(write_idx(tmp_path / "l.gz", labels)), labels)


def test_gzip_output_is_deterministic(tmp_path, rng):
    x = _random(rng, np.float32, (3, 4))
    first = write_idx(tmp_path / "a.gz", x).read_bytes()
    assert write_idx(tmp_path / "b.gz", x).read_bytes() == first


def test_write_is_atomic_and_replaces(tmp_path, rng):
    path = write_idx(tmp_path / "a.idx", np.zeros(3, np.uint8))
    write_idx(path, np.arange(4, dtype=np.uint8))
    np.testing.assert_array_equal(read_idx(path), np.arange(4))
    assert os.listdir(tmp_path) == ["a.idx"]  # no temporary file left beside it


def test_write_rejects_unstorable_arrays(tmp_path):
    with pytest.raises(TypeError, match="int64"):
        write_idx(tmp_path / "a.idx", np.arange(3))
    with pytest.raises(TypeError, match="bool"):
        write_idx(tmp_path / "a.idx", np.zeros(3, bool))
    with pytest.raises(ValueError, match="dimensions"):
        write_idx(tmp_path / "a.idx", np.uint8(3))
    assert os.listdir(tmp_path) == []


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


# ---------------------------------------------------------------------------- corruptions

@pytest.mark.parametrize("start", [b"PK\x03\x04", b"\x00\x01\x08\x01"], ids=["zip", "nonzero"])
def test_not_idx_start(tmp_path, start):
    path = tmp_path / "x.idx"
    path.write_bytes(start + bytes(8))
    with _raises_naming(path, "not an IDX file"):
        read_idx(path)


def test_unknown_type_code(tmp_path):
    path = tmp_path / "x.idx"
    path.write_bytes(_idx_bytes(0x07, (2,), bytes(2)))
    with _raises_naming(path, "type code 0x07"):
        read_idx(path)


def test_too_short_for_header(tmp_path):
    path = tmp_path / "x.idx"
    path.write_bytes(b"\x00\x00")
    with _raises_naming(path, "too short"):
        read_idx(path)
    path.write_bytes(b"")
    with _raises_naming(path, "too short"):
        read_idx(path)


def test_wrong_dimension_count(tmp_path, rng):
    path = write_idx(tmp_path / "x.idx.gz", _random(rng, np.uint8, (2, 3, 4)))
    with _raises_naming(path, "expected 2 dimensions", "says 3"):
        read_idx(path, expect_ndim=2)
    flat = write_idx(tmp_path / "y.idx", _random(rng, np.uint8, (2, 12)))  # magic 0x0802
    with _raises_naming(flat, "2051", "2050"):
        read_idx_images(flat)


def test_zero_dimensions(tmp_path):
    path = tmp_path / "x.idx"
    path.write_bytes(_idx_bytes(0x08, (), b"\x05"))
    with _raises_naming(path, "0 dimensions"):
        read_idx(path)


def test_truncated_header(tmp_path):
    path = tmp_path / "x.idx"
    path.write_bytes(_idx_bytes(0x08, (60000, 28, 28), b"")[:10])
    with _raises_naming(path, "truncated header", "16"):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_truncated_payload(tmp_path, rng, gz):
    content = _idx_bytes(0x0C, (3, 2), _random(rng, np.int32, 6).astype(">i4").tobytes())
    path = tmp_path / "x.idx"
    path.write_bytes(gzip.compress(content[:-1]) if gz else content[:-1])
    with _raises_naming(path, "truncated", "24 bytes", "found 23", "1 missing"):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_trailing_bytes(tmp_path, gz):
    content = _idx_bytes(0x08, (4,), bytes(4)) + b"\x00\x00\x00"
    path = tmp_path / "x.idx"
    path.write_bytes(gzip.compress(content) if gz else content)
    with _raises_naming(path, "3 trailing bytes"):
        read_idx(path)


def test_truncated_gzip_stream(tmp_path, rng):
    full = write_idx(tmp_path / "full.gz", _random(rng, np.uint8, (50, 28, 28))).read_bytes()
    path = tmp_path / "cut.gz"
    for keep in (len(full) // 2, len(full) - 4, 12):
        path.write_bytes(full[:keep])
        with _raises_naming(path, "truncated gzip"):
            read_idx(path)


def test_corrupt_gzip_stream(tmp_path, rng):
    data = bytearray(write_idx(tmp_path / "a.gz", _random(rng, np.uint8, (20, 8))).read_bytes())
    data[-5] ^= 0xFF  # inside the CRC-32 trailer: decompresses, then fails the check
    path = tmp_path / "bad.gz"
    path.write_bytes(bytes(data))
    with _raises_naming(path, "corrupt gzip"):
        read_idx(path)


def test_labels_given_as_images_and_images_as_labels(tmp_path, rng):
    labels = write_idx(tmp_path / "labels.gz", _random(rng, np.uint8, (10,)))
    images = write_idx(tmp_path / "images.gz", _random(rng, np.uint8, (10, 28, 28)))
    with _raises_naming(labels, "expected magic 2051", "found 2049", "labels file"):
        read_idx_images(labels)
    with _raises_naming(images, "expected magic 2049", "found 2051", "images file"):
        read_idx_labels(images)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope.idx")
