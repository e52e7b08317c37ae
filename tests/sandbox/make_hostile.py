#!/usr/bin/env python3
"""Writes the hostile inputs the sandbox job tests feed to real runners.

Usage: make_hostile.py OUT_DIR REAL_MODEL.onnx

Models are hand-encoded protobuf (no onnx module needed); the dataset is a
zip bomb NPZ: a valid NPY header declaring 300 MiB of float32 whose deflate
stream of zeros is ~300 KiB.
"""
import os
import struct
import sys
import zipfile
import zlib


def varint(v):
    out = bytearray()
    while True:
        c = v & 0x7F
        v >>= 7
        out.append(c | (0x80 if v else 0))
        if not v:
            return bytes(out)


def key(f, wt):
    return varint(f << 3 | wt)


def fint(f, v):
    return key(f, 0) + varint(v & 0xFFFFFFFFFFFFFFFF)


def fbytes(f, b):
    if isinstance(b, str):
        b = b.encode()
    return key(f, 2) + varint(len(b)) + b


def value_info(name, dims):
    shape = b"".join(fbytes(1, fbytes(2, d) if isinstance(d, str) else fint(1, d))
                     for d in dims)
    tensor_type = fint(1, 1) + fbytes(2, shape)  # float
    return fbytes(1, name) + fbytes(2, fbytes(1, tensor_type))


def node(op, inputs, output):
    return b"".join(fbytes(1, i) for i in inputs) + fbytes(2, output) + fbytes(4, op)


def tensor(name, dims, raw=b"", external=None):
    t = b"".join(fint(1, d) for d in dims) + fint(2, 1) + fbytes(8, name)
    if raw:
        t += fbytes(9, raw)
    if external:
        t += fbytes(13, fbytes(1, "location") + fbytes(2, external)) + fint(14, 1)
    return t


def model(nodes, inputs, outputs, inits=()):
    g = b"".join(fbytes(1, n) for n in nodes) + fbytes(2, "g")
    g += b"".join(fbytes(5, t) for t in inits)
    g += b"".join(fbytes(11, value_info(n, d)) for n, d in inputs)
    g += b"".join(fbytes(12, value_info(n, d)) for n, d in outputs)
    return fint(1, 8) + fbytes(8, fbytes(1, "") + fint(2, 13)) + fbytes(7, g)


X = ("x", ["N", 1, 28, 28])
Y = ("y", ["N", 10])


def main():
    out, real = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)

    def w(name, data):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)

    blob = open(real, "rb").read()
    w("truncated.onnx", blob[: len(blob) // 2])
    shape = tensor("shape", [2], raw=struct.pack("<2q", -1, 784))
    shape = shape.replace(fint(2, 1), fint(2, 7), 1)  # int64 data type
    nan_w = tensor("w", [784, 10], raw=struct.pack("<f", float("nan")) * 7840)
    w("nan_weights.onnx",
      model([node("Reshape", ["x", "shape"], "f"), node("MatMul", ["f", "w"], "y")],
            [X], [Y], [shape, nan_w]))
    w("absurd_dims.onnx",
      model([node("Relu", ["x"], "y")], [("x", ["N", 1 << 40, 1 << 40, 28])],
            [("y", ["N", 1 << 40, 1 << 40, 28])]))
    w("huge_initializer.onnx",
      model([node("Add", ["x", "w"], "y")], [X], [("y", ["N", 1, 28, 28])],
            [tensor("w", [1000000000], raw=b"\0" * 16)]))
    w("unsupported_op.onnx",
      model([node("NonMaxSuppression", ["x"], "y")], [X], [("y", ["N", 1, 28, 28])]))
    w("cyclic.onnx",
      model([node("Add", ["x", "b"], "a"), node("Relu", ["a"], "b"),
             node("Relu", ["a"], "y")], [X], [("y", ["N", 1, 28, 28])]))
    w("external_data.onnx",
      model([node("Add", ["x", "w"], "y")], [X], [("y", ["N", 1, 28, 28])],
            [tensor("w", [1, 1, 28, 28], external="../../etc/passwd")]))
    # one node more than the loader's cap (adv_load_params.max_nodes = 100000)
    chain = [node("Relu", ["x" if i == 0 else "v%d" % (i - 1)],
                  "y" if i == 100000 else "v%d" % i) for i in range(100001)]
    w("nodes_100k.onnx", model(chain, [X], [("y", ["N", 1, 28, 28])]))

    # zip bomb: 300 MiB of float32 zeros behind a valid NPY header
    n = 300 * 1024 * 1024 // (28 * 28 * 4)
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, 1, 28, 28), }" % n
    hdr += " " * ((64 - (10 + len(hdr) + 1) % 64) % 64) + "\n"
    npy_head = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode()
    total = n * 28 * 28 * 4
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    crc = zlib.crc32(npy_head)
    body = [comp.compress(npy_head)]
    chunk = b"\0" * (1 << 22)
    left = total
    while left:
        k = min(left, len(chunk))
        crc = zlib.crc32(chunk[:k], crc)
        body.append(comp.compress(chunk[:k]))
        left -= k
    body.append(comp.flush())
    data = b"".join(body)
    size = len(npy_head) + total
    name = b"x.npy"
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc & 0xFFFFFFFF,
                        len(data), size, len(name), 0) + name
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0,
                          crc & 0xFFFFFFFF, len(data), size, len(name), 0, 0, 0, 0, 0,
                          0) + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central),
                      len(local) + len(data), 0)
    w("zipbomb.npz", local + data + central + end)


if __name__ == "__main__":
    main()
