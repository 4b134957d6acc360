#!/usr/bin/env python3
"""An independent reader of safetensors files (checkpoints written by dppf), using only json,
struct and numpy: no code shared with dppf's C++ reader, so a bug in one shows against the other.

  read_checkpoint.py FILE                 print metadata and every tensor (dtype, shape, values)
  read_checkpoint.py --json FILE          the same as JSON
  read_checkpoint.py --compare A B        exit 1 unless A and B hold the same tensors, bit for bit
  read_checkpoint.py --verify-sample FILE check the file written by dppf_checkpoint_sample
                                          against values computed here with numpy
  read_checkpoint.py --corpus DIR          every good-* file in DIR must read, every bad-* file
                                          must be rejected (a second opinion on the fuzz corpus)
  read_checkpoint.py --verify-trainer-sample FILE
                                          check its trainer checkpoint: layout, counters, and
                                          the trajectory re-simulated here in float64

Exits 77 (CTest's skip code) when numpy is missing, 2 on a malformed file, 1 on a mismatch.
"""

import json
import struct
import sys

try:
    import numpy as np
except ImportError:  # pragma: no cover
    print("numpy is not available; skipping", file=sys.stderr)
    sys.exit(77)

# dtype -> numpy dtype (little-endian). Half-precision brain floats and fp8 are kept as raw bits.
DTYPES = {
    "BOOL": np.dtype("u1"), "U8": np.dtype("u1"), "I8": np.dtype("i1"),
    "F8_E5M2": np.dtype("u1"), "F8_E4M3": np.dtype("u1"),
    "U16": np.dtype("<u2"), "I16": np.dtype("<i2"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
    "U32": np.dtype("<u4"), "I32": np.dtype("<i4"), "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"), "I64": np.dtype("<i8"), "F64": np.dtype("<f8"),
}


class Malformed(Exception):
    pass


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise Malformed("duplicate key in the header")
    return dict(pairs)


def read(path):
    """Returns (metadata, {name: numpy array}, info) where info has the header length and,
    per tensor, dtype, shape and data_offsets as written."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise Malformed(f"{path}: {len(raw)} bytes, fewer than 8")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise Malformed(f"{path}: header length {n} past the end of the file")
    header = json.loads(raw[8:8 + n].decode("utf-8"), object_pairs_hook=_no_duplicates)
    if not isinstance(header, dict):
        raise Malformed(f"{path}: header is not an object")
    data = raw[8 + n:]
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise Malformed(f"{path}: __metadata__ must map strings to strings")
    tensors, spans = {}, []
    for name, t in header.items():
        if not isinstance(t, dict) or set(t) != {"dtype", "shape", "data_offsets"}:
            raise Malformed(f"{path}: tensor {name!r}: fields {sorted(t)}")
        dt = DTYPES.get(t["dtype"]) if isinstance(t["dtype"], str) else None
        if dt is None:
            raise Malformed(f"{path}: tensor {name!r}: unknown dtype {t['dtype']!r}")
        shape = t["shape"]
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise Malformed(f"{path}: tensor {name!r}: bad shape {shape}")
        offsets = t["data_offsets"]
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets):
            raise Malformed(f"{path}: tensor {name!r}: bad data_offsets {offsets}")
        begin, end = offsets
        count = int(np.prod(shape, dtype=object)) if shape else 1
        if not (0 <= begin <= end <= len(data)) or end - begin != count * dt.itemsize:
            raise Malformed(f"{path}: tensor {name!r}: data_offsets {[begin, end]} do not fit")
        array = np.frombuffer(data[begin:end], dtype=dt).reshape(shape)
        if t["dtype"] == "BOOL":
            if not np.all(array <= 1):
                raise Malformed(f"{path}: tensor {name!r}: BOOL values other than 0 and 1")
            array = array.astype(bool)
        tensors[name] = array
        spans.append((begin, end, name))
    covered = 0
    for begin, end, name in sorted(spans):
        if begin != covered:
            raise Malformed(f"{path}: tensor {name!r} starts at {begin}, expected {covered} (gap or overlap)")
        covered = end
    if covered != len(data):
        raise Malformed(f"{path}: tensors cover {covered} of {len(data)} data bytes")
    info = {"header_length": n, "header": {k: v for k, v in header.items()}}
    return metadata, tensors, info


def describe(path, as_json):
    metadata, tensors, info = read(path)
    if as_json:
        out = {"metadata": metadata, "tensors": {}}
        for name, a in tensors.items():
            t = info["header"][name]
            out["tensors"][name] = {"dtype": t["dtype"], "shape": t["shape"], "data_offsets": t["data_offsets"],
                                    "values": a.reshape(-1)[:16].tolist()}
        print(json.dumps(out, indent=1, sort_keys=True))
        return 0
    for k, v in sorted(metadata.items()):
        print(f"metadata {k} = {v!r}")
    for name in sorted(tensors):
        a, t = tensors[name], info["header"][name]
        flat = a.reshape(-1)
        summary = f"{flat[:6].tolist()}{' ...' if flat.size > 6 else ''}"
        print(f"{name}: {t['dtype']} {t['shape']} {summary}")
    return 0


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def compare(path_a, path_b):
    meta_a, ta, _ = read(path_a)
    meta_b, tb, _ = read(path_b)
    problems = []
    if meta_a != meta_b:
        problems.append(f"metadata differs: {meta_a} vs {meta_b}")
    for name in sorted(set(ta) | set(tb)):
        if name not in ta or name not in tb:
            problems.append(f"{name}: only in {path_a if name in ta else path_b}")
        elif not same_bits(ta[name], tb[name]):
            problems.append(f"{name}: differs")
    for p in problems:
        print(p)
    return 1 if problems else 0


def verify_sample(path):
    """The values dppf_checkpoint_sample writes, computed independently here."""
    metadata, tensors, info = read(path)
    i10, i7 = np.arange(10), np.arange(7)
    expected = {
        "f32": (np.arange(10, dtype=np.float32) * np.float32(0.25) - np.float32(3)).reshape(2, 5),
        "f64": np.float64(1.0) / (np.arange(7, dtype=np.float64) + 1.0),
        "i64": (np.arange(4, dtype=np.int64) ** 2) * np.int64(1000003) - np.int64(5),
        "u8": ((np.arange(9) * 37) % 256).astype(np.uint8).reshape(3, 3),
        "i32": (-7 * i7).astype(np.int32),
        "bool": (i10 % 3 == 0),
        "scalar": np.array(7, dtype=np.int64),
        "f16": np.array([0.5, -1.0, 65504.0], dtype=np.float16),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    expected_meta = {"writer": "dppf_checkpoint_sample", "note": "quote \" backslash \\ newline \n e-acute \u00e9"}
    problems = []
    if metadata != expected_meta:
        problems.append(f"metadata {metadata!r} != {expected_meta!r}")
    if set(tensors) != set(expected):
        problems.append(f"tensor names {sorted(tensors)}")
    for name, want in expected.items():
        got = tensors.get(name)
        if got is None or not same_bits(got, want):
            problems.append(f"{name}: got {got!r}, expected {want!r}")
    # Layout rules of the writer: header padded with spaces to 8 bytes, tensors aligned.
    n = info["header_length"]
    if (8 + n) % 8 != 0:
        problems.append(f"header length {n} not padded to 8")
    for name, t in info["header"].items():
        size = DTYPES[t["dtype"]].itemsize
        if (8 + n + t["data_offsets"][0]) % size != 0:
            problems.append(f"{name}: not aligned to {size} bytes")
    for p in problems:
        print(p)
    if not problems:
        print(f"{path}: {len(tensors)} tensors match numpy's values bit for bit")
    return 1 if problems else 0


def verify_trainer_sample(path):
    """dppf_checkpoint_sample's trainer: one worker, torch.optim.SGD(lr=0.1, momentum=0.9) on
    |x|^2/2, EASGD (alpha = beta = 0.25) every 2 steps, 5 steps, losses 0.5 t."""
    metadata, tensors, _ = read(path)
    problems = []
    want_meta = {"dppf.checkpoint": "trainer 1", "dppf.rank": "0", "dppf.world_size": "1",
                 "dppf.element_type": "F32", "dppf.workspace": "1"}
    if metadata != want_meta:
        problems.append(f"metadata {metadata} != {want_meta}")
    layout = {"params": ("<f4", (4,)), "optimizer.momentum_buffer": ("<f4", (4,)), "optimizer.step": ("<i8", ()),
              "consensus.center": ("<f4", (4,)), "trainer.steps": ("<i8", ()), "trainer.syncs": ("<i8", ()),
              "trainer.loss_sum": ("<f8", ()), "trainer.loss_count": ("<i8", ())}
    if set(tensors) != set(layout):
        problems.append(f"tensors {sorted(tensors)} != {sorted(layout)}")
    for name, (dt, shape) in layout.items():
        a = tensors.get(name)
        if a is not None and (a.dtype != np.dtype(dt) or a.shape != shape):
            problems.append(f"{name}: {a.dtype} {a.shape}, expected {dt} {shape}")
    x = np.array([1.0, -2.0, 3.0, 0.5])
    center, buf, syncs = x.copy(), None, 0
    for t in range(5):
        g = x.copy()
        buf = g if buf is None else 0.9 * buf + g
        x = x - 0.1 * buf
        if (t + 1) % 2 == 0:
            x, center = x - 0.25 * (x - center), center + 0.25 * (x - center)
            syncs += 1
    counters = {"optimizer.step": 5, "trainer.steps": 5, "trainer.syncs": syncs, "trainer.loss_count": 1,
                "trainer.loss_sum": 2.0}
    for name, want in counters.items():
        if name in tensors and tensors[name].item() != want:
            problems.append(f"{name} = {tensors[name].item()}, expected {want}")
    for name, want in (("params", x), ("optimizer.momentum_buffer", buf), ("consensus.center", center)):
        if name in tensors and not np.allclose(tensors[name].astype(np.float64), want, rtol=1e-6, atol=1e-7):
            problems.append(f"{name} = {tensors[name]}, expected {want}")
    for p in problems:
        print(p)
    if not problems:
        print(f"{path}: trainer checkpoint layout, counters and trajectory match")
    return 1 if problems else 0


# Files dppf rejects by its own limits, not by the format: fine for a plain reader.
DPPF_LIMITS_ONLY = {"bad-shape-rank-65.safetensors"}


def check_corpus(directory):
    import os
    problems, count = [], 0
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        count += 1
        try:
            read(path)
            ok = True
        except (Malformed, ValueError, KeyError, TypeError, RecursionError) as e:
            ok, why = False, e
        if name.startswith("good-") and not ok:
            problems.append(f"{name}: rejected: {why}")
        elif name.startswith("bad-") and ok and name not in DPPF_LIMITS_ONLY:
            problems.append(f"{name}: accepted")
    for p in problems:
        print(p)
    if not problems:
        print(f"{directory}: {count} files classified as their names say")
    return 1 if problems else 0


def main(argv):
    try:
        if len(argv) == 2 and argv[0] == "--json":
            return describe(argv[1], True)
        if len(argv) == 3 and argv[0] == "--compare":
            return compare(argv[1], argv[2])
        if len(argv) == 2 and argv[0] == "--verify-sample":
            return verify_sample(argv[1])
        if len(argv) == 2 and argv[0] == "--corpus":
            return check_corpus(argv[1])
        if len(argv) == 2 and argv[0] == "--verify-trainer-sample":
            return verify_trainer_sample(argv[1])
        if len(argv) == 1 and not argv[0].startswith("-"):
            return describe(argv[0], False)
    except (Malformed, ValueError, KeyError, TypeError, RecursionError) as e:
        print(f"malformed: {e}", file=sys.stderr)
        return 2
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
