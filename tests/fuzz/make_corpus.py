#!/usr/bin/env python3
"""Writes tests/fuzz/corpus: hand-crafted safetensors files, good-* (must load) and bad-* (must be
rejected with dppf::checkpoint_error). They seed the fuzzer and are replayed by
test_checkpoint_corpus on every build. Run it again after editing; the files are committed."""

import json
import os
import struct
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def raw(header: bytes, data: bytes = b"", length=None) -> bytes:
    n = len(header) if length is None else length
    return struct.pack("<Q", n) + header + data


def js(obj, data=b"", pad=True) -> bytes:
    h = json.dumps(obj, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return raw(h, data)


def t(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


F = t("F32", [1], 0, 4)
ONE = b"\x00\x00\x80\x3f"

GOOD = {
    "empty-object": raw(b"{}"),
    "one-f32": js({"w": F}, ONE),
    "metadata": js({"__metadata__": {"k": "v", "\u00e9": "\ud83d\ude00"}, "w": F}, ONE),
    "all-dtypes": js({
        "a": t("F64", [2], 0, 16), "b": t("I64", [1], 16, 24), "c": t("U64", [], 24, 32),
        "d": t("F32", [1, 1], 32, 36), "e": t("I32", [1], 36, 40), "f": t("U32", [1], 40, 44),
        "g": t("F16", [1], 44, 46), "h": t("BF16", [1], 46, 48), "i": t("I16", [1], 48, 50),
        "j": t("U16", [1], 50, 52), "k": t("U8", [1], 52, 53), "l": t("I8", [1], 53, 54),
        "m": t("BOOL", [1], 54, 55), "n": t("F8_E4M3", [1], 55, 56), "o": t("F8_E5M2", [1], 56, 57),
    }, bytes(range(54)) + b"\x01\x7f\x80"),
    "zero-size-tensors": js({"z": t("F32", [0, 7], 0, 0), "w": t("F32", [1], 0, 4), "y": t("F64", [3, 0], 4, 4)}, ONE),
    "whitespace-and-escapes": raw(b' \n{ "w\\u0041\\"" : { "shape":[ 1 ], "data_offsets" : [0,4], "dtype":"F32" } }\t ', ONE),
    "scalar": js({"s": t("I64", [], 0, 8)}, struct.pack("<q", -3)),
}

BAD = {
    "too-short": b"\x05\x00\x00",
    "length-only": struct.pack("<Q", 0),
    "length-huge": raw(b"{}", length=2**63),
    "length-past-end": raw(b"{}", length=100),
    "length-over-cap": raw(b"{}", length=100_000_001),
    "not-object": raw(b"[]"),
    "bom": raw(b"\xef\xbb\xbf{}"),
    "truncated-json": raw(b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}', ONE),
    "trailing-garbage": raw(b"{}x"),
    "nested-arrays": raw(b'{"w":{"dtype":"F32","shape":' + b"[" * 5000 + b"]" * 5000 + b',"data_offsets":[0,0]}}'),
    "nested-objects": raw(b'{"w":' + b'{"a":' * 3000 + b"1" + b"}" * 3000 + b"}"),
    "deep-metadata": raw(b'{"__metadata__":{"k":{"k":{"k":"v"}}}}'),
    "unknown-dtype": js({"w": t("F33", [1], 0, 4)}, ONE),
    "dtype-number": raw(b'{"w":{"dtype":32,"shape":[1],"data_offsets":[0,4]}}', ONE),
    "shape-null": raw(b'{"w":{"dtype":"F32","shape":null,"data_offsets":[0,4]}}', ONE),
    "shape-true": raw(b'{"w":{"dtype":"F32","shape":[true],"data_offsets":[0,4]}}', ONE),
    "shape-negative": raw(b'{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', ONE),
    "shape-float": raw(b'{"w":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}', ONE),
    "shape-exponent": raw(b'{"w":{"dtype":"F32","shape":[1e0],"data_offsets":[0,4]}}', ONE),
    "shape-nan": raw(b'{"w":{"dtype":"F32","shape":[NaN],"data_offsets":[0,4]}}', ONE),
    "shape-big-int": raw(b'{"w":{"dtype":"F32","shape":[184467440737095516160],"data_offsets":[0,4]}}', ONE),
    "shape-overflow": js({"w": t("F32", [2**32, 2**32, 2], 0, 0)}),
    "shape-bytes-overflow": js({"w": t("F64", [2**62], 0, 0)}),
    "shape-rank-65": js({"w": t("F32", [1] * 65, 0, 4)}, ONE),
    "shape-huge-claims": js({"w": t("F32", [2**40], 0, 2**42)}, ONE),
    "offsets-reversed": js({"w": t("F32", [1], 4, 0)}, ONE),
    "offsets-past-end": js({"w": t("F32", [1], 0, 4)}, b"\x00"),
    "offsets-u64-max": js({"w": t("F32", [1], 2**64 - 4, 2**64 - 1)}, ONE),
    "offsets-three": raw(b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}', ONE),
    "offsets-one": raw(b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}}', ONE),
    "size-mismatch": js({"w": t("F32", [1], 0, 8)}, ONE * 2),
    "overlap": js({"a": t("F32", [2], 0, 8), "b": t("F32", [1], 4, 8)}, ONE * 2),
    "same-range": js({"a": t("F32", [1], 0, 4), "b": t("F32", [1], 0, 4)}, ONE),
    "gap": js({"w": t("F32", [1], 4, 8)}, ONE * 2),
    "tail": js({"w": F}, ONE + b"\x00"),
    "missing-field": raw(b'{"w":{"dtype":"F32","shape":[1]}}', ONE),
    "extra-field": raw(b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":[]}}', ONE),
    "duplicate-tensor": raw(b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', ONE),
    "duplicate-field": raw(b'{"w":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}', ONE),
    "duplicate-metadata": raw(b'{"__metadata__":{},"__metadata__":{}}'),
    "metadata-number": raw(b'{"__metadata__":{"k":1}}'),
    "metadata-array": raw(b'{"__metadata__":[]}'),
    "bad-escape": raw(b'{"w\\x":1}'),
    "short-unicode-escape": raw(b'{"\\u12'),
    "lone-high-surrogate": raw(b'{"\\ud800":1}'),
    "lone-low-surrogate": raw(b'{"\\udc00":1}'),
    "raw-control-char": raw(b'{"a\x01":1}'),
    "invalid-utf8": raw(b'{"a\xff":1}'),
    "overlong-utf8": raw(b'{"a\xc0\xaf":1}'),
    "surrogate-utf8": raw(b'{"a\xed\xa0\x80":1}'),
    "truncated-utf8": raw(b'{"a\xe2\x82'),
    "unterminated-string": raw(b'{"abc'),
    "leading-zero": raw(b'{"w":{"dtype":"F32","shape":[01],"data_offsets":[0,4]}}', ONE),
    "empty-key-colon": raw(b'{:1}'),
    "bool-not-0-1": js({"b": t("BOOL", [2], 0, 2)}, b"\x01\x02"),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name in os.listdir(OUT):
        os.remove(os.path.join(OUT, name))
    for prefix, cases in (("good", GOOD), ("bad", BAD)):
        for name, data in cases.items():
            with open(os.path.join(OUT, f"{prefix}-{name}.safetensors"), "wb") as f:
                f.write(data)
    print(f"{len(GOOD)} good and {len(BAD)} bad files in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
