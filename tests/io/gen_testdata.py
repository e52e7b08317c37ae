#!/usr/bin/env python3
"""Generates the reference inputs for the io tests with real numpy.

Usage:
  gen_testdata.py OUTDIR [MNIST_DIR FASHION_DIR]   write test files + manifest
  gen_testdata.py --check DIR                      verify files our writer made

Every array holds values from value(dtype, i) (flat C-order index i); the C
test recomputes the same formula, so no expected data needs storing.
manifest.txt lines:  <file>[:<member>] <ADV status name> [<dtype> <ndim> <dims...>]
"""
import gzip
import io
import os
import struct
import sys

import numpy as np
import zipfile


def value(code, n):
    i = np.arange(n, dtype=np.int64)
    if code in ("f4", "f8"):
        return (i % 97) * 0.25 - 7.0
    if code == "i8":
        return ((i * 37) % 251 - 125) * 4000000000
    if code == "i4":
        return ((i * 37) % 251 - 125) * 1000000
    if code == "i1":
        return (i * 37) % 251 - 125
    if code == "u1":
        return (i * 37) % 251
    if code == "b1":
        return i % 3 == 0
    raise ValueError(code)


NP = {"f4": "<f4", "f8": "<f8", "i8": "<i8", "i4": "<i4", "u1": "|u1",
      "i1": "|i1", "b1": "|b1"}


def make(code, shape):
    n = int(np.prod(shape)) if len(shape) else 1
    return value(code, n).astype(NP[code]).reshape(shape)


def shape_str(shape):
    return " ".join([str(len(shape))] + [str(d) for d in shape])


def idx_bytes(typecode, shape, arr_be):
    hdr = bytes([0, 0, typecode, len(shape)]) + b"".join(
        struct.pack(">I", d) for d in shape)
    return hdr + arr_be.tobytes()


def generate(out, mnist_dir, fashion_dir):
    os.makedirs(out, exist_ok=True)
    man = []

    def p(name):
        return os.path.join(out, name)

    # --- NPY: every dtype, several shapes, header versions ---
    for code in NP:
        a = make(code, (2, 3, 4))
        np.save(p(f"npy_{code}.npy"), a)
        man.append(f"npy_{code}.npy OK {code} {shape_str(a.shape)}")
    for tag, shape in [("scalar", ()), ("vec", (5,)), ("empty", (0,)),
                       ("empty3", (3, 0, 2)), ("ones8", (1,) * 8),
                       ("mat", (7, 11))]:
        a = make("f4", shape)
        np.save(p(f"npy_f4_{tag}.npy"), a)
        man.append(f"npy_f4_{tag}.npy OK f4 {shape_str(shape)}")
    a = make("f8", (3, 5))
    for ver in [(1, 0), (2, 0), (3, 0)]:
        name = f"npy_v{ver[0]}.npy"
        with open(p(name), "wb") as f:
            np.lib.format.write_array(f, a, version=ver)
        man.append(f"{name} OK f8 {shape_str(a.shape)}")
    # fortran order: 2-D unsupported; 1-D fortran flag is harmless
    np.save(p("npy_fortran.npy"), np.asfortranarray(make("f4", (3, 4))))
    man.append("npy_fortran.npy ADV_EUNSUPPORTED")
    np.save(p("npy_bigendian.npy"), make("f4", (4,)).astype(">f4"))
    man.append("npy_bigendian.npy ADV_EUNSUPPORTED")
    np.save(p("npy_bigendian_u1.npy"), make("u1", (4,)).astype(">u1"))
    man.append(f"npy_bigendian_u1.npy OK u1 1 4")
    np.save(p("npy_object.npy"), np.array([1, "a", None], dtype=object),
            allow_pickle=True)
    man.append("npy_object.npy ADV_EUNSUPPORTED")
    np.save(p("npy_f2.npy"), np.zeros(3, dtype=np.float16))
    man.append("npy_f2.npy ADV_EUNSUPPORTED")
    np.save(p("npy_struct.npy"), np.zeros(3, dtype=[("a", "<f4"), ("b", "<i4")]))
    man.append("npy_struct.npy ADV_EUNSUPPORTED")
    # truncated and trailing bytes
    raw = open(p("npy_f4_mat.npy"), "rb").read()
    open(p("npy_trunc.npy"), "wb").write(raw[:-1])
    man.append("npy_trunc.npy ADV_EFORMAT")
    open(p("npy_trailing.npy"), "wb").write(raw + b"\0")
    man.append("npy_trailing.npy ADV_EFORMAT")

    # --- NPZ: savez (stored, zip64 extras) and savez_compressed (deflate) ---
    x = make("f4", (6, 1, 4, 4))
    y = make("u1", (6,)) % 10
    np.savez(p("savez.npz"), x=x, y=y.astype(np.int64))
    np.savez_compressed(p("savez_c.npz"), x=x, y=y.astype(np.int64))
    for f in ["savez.npz", "savez_c.npz"]:
        man.append(f"{f}:x OK f4 {shape_str(x.shape)}")
        man.append(f"{f}:z ADV_ENOTFOUND")
    big = make("f8", (64, 33))
    many = {f"m{k}": make(c, (k + 1, 3)) for k, c in enumerate(NP)}
    many["big"] = big
    np.savez(p("many.npz"), **many)
    np.savez_compressed(p("many_c.npz"), **many)
    for f in ["many.npz", "many_c.npz"]:
        for k, c in enumerate(NP):
            man.append(f"{f}:m{k} OK {c} 2 {k + 1} 3")
        man.append(f"{f}:big OK f8 2 64 33")
    np.savez(p("empty_member.npz"), e=make("f4", (0, 3)), s=make("i8", ()))
    man.append("empty_member.npz:e OK f4 2 0 3")
    man.append("empty_member.npz:s OK i8 0")
    np.savez(p("fortran.npz"), x=np.asfortranarray(make("f4", (3, 4))))
    man.append("fortran.npz:x ADV_EUNSUPPORTED")
    # written to a non-seekable stream: data descriptors (flag 8), zip64
    class Unseekable(io.RawIOBase):
        def __init__(self, f):
            self.f = f

        def writable(self):
            return True

        def write(self, b):
            return self.f.write(b)

    for method, tag in [(zipfile.ZIP_STORED, "stream"),
                        (zipfile.ZIP_DEFLATED, "stream_c")]:
        with open(p(f"{tag}.npz"), "wb") as f:
            with zipfile.ZipFile(Unseekable(f), "w", compression=method) as z:
                for k, arr in [("x", x), ("y", make("u1", (6,)))]:
                    with z.open(f"{k}.npy", "w", force_zip64=True) as w:
                        np.lib.format.write_array(w, arr)
        man.append(f"{tag}.npz:x OK f4 {shape_str(x.shape)}")
        man.append(f"{tag}.npz:y OK u1 1 6")
    # dataset-style npz: uint8 images (N,H,W) and int labels
    xd = make("u1", (5, 3, 2))
    np.savez_compressed(p("ds_u8.npz"), x=xd, y=(make("i1", (5,)) % 10 + 10) % 10)
    np.savez(p("ds_f64_nolabel.npz"), x=make("f8", (4, 3)))
    np.save(p("ds_labels_i4.npy"), (np.arange(5) % 3).astype("<i4"))
    np.save(p("ds_labels_bad.npy"), np.array([0, -1, 2, 3, 4], dtype="<i8"))
    np.save(p("ds_labels_f4.npy"), np.zeros(5, dtype="<f4"))
    np.save(p("ds_labels_short.npy"), np.zeros(4, dtype="<i8"))
    xn = make("f4", (5, 2)).copy()
    xn[3, 1] = np.nan
    np.save(p("ds_nan.npy"), xn)
    np.save(p("ds_x_npy3.npy"), make("f4", (5, 3, 2)))
    np.save(p("ds_x_i8.npy"), make("i8", (5, 2)))

    # --- IDX: every type, plain and gzip ---
    idx_types = [("u1", 0x08, ">u1"), ("i1", 0x09, ">i1"), ("i2", 0x0B, ">i2"),
                 ("i4", 0x0C, ">i4"), ("f4", 0x0D, ">f4"), ("f8", 0x0E, ">f8")]
    for code, tc, be in idx_types:
        shape = (3, 2, 5)
        src = "i1" if code == "i2" else code
        a = make(src, shape)
        if code == "i2":
            a = a.astype(np.int64) * 200  # exercise the 16-bit range
        data = idx_bytes(tc, shape, a.astype(be))
        open(p(f"idx_{code}.idx"), "wb").write(data)
        with gzip.open(p(f"idx_{code}.idx.gz"), "wb") as g:
            g.write(data)
        out_code = {"i2": "i4"}.get(code, code)
        tag = "i2" if code == "i2" else out_code
        for f in [f"idx_{code}.idx", f"idx_{code}.idx.gz"]:
            man.append(f"{f} OK {tag} {shape_str(shape)}")
    # multi-member gzip (cat a.gz b.gz) of one idx stream split in two
    data = open(p("idx_u1.idx"), "rb").read()
    open(p("idx_multi.idx.gz"), "wb").write(
        gzip.compress(data[:7]) + gzip.compress(data[7:]))
    man.append(f"idx_multi.idx.gz OK u1 3 3 2 5")
    open(p("idx_trailing.idx.gz"), "wb").write(gzip.compress(data) + b"x")
    man.append("idx_trailing.idx.gz ADV_EFORMAT")
    open(p("idx_gz_extra.idx.gz"), "wb").write(gzip.compress(data + b"\0"))
    man.append("idx_gz_extra.idx.gz ADV_EFORMAT")
    open(p("idx_gz_short.idx.gz"), "wb").write(gzip.compress(data[:-1]))
    man.append("idx_gz_short.idx.gz ADV_EFORMAT")
    open(p("idx_empty.idx"), "wb").write(bytes([0, 0, 8, 2, 0, 0, 0, 0, 0, 0, 0, 9]))
    man.append("idx_empty.idx OK u1 2 0 9")
    # zero-size but with a trailing byte
    open(p("idx_empty_trailing.idx"), "wb").write(
        bytes([0, 0, 8, 2, 0, 0, 0, 0, 0, 0, 0, 9, 1]))
    man.append("idx_empty_trailing.idx ADV_EFORMAT")

    with open(p("manifest.txt"), "w") as f:
        f.write("\n".join(man) + "\n")

    # --- reference values from the real MNIST / Fashion-MNIST files ---
    refs = []
    if mnist_dir and os.path.isdir(mnist_dir):
        for base, opener in [(mnist_dir, open)]:
            lab = opener(os.path.join(base, "t10k-labels-idx1-ubyte"), "rb").read()
            img = opener(os.path.join(base, "t10k-images-idx3-ubyte"), "rb").read()
            refs.append(ref_lines("mnist", lab, img))
    if fashion_dir and os.path.isdir(fashion_dir):
        lab = gzip.open(os.path.join(fashion_dir, "t10k-labels-idx1-ubyte.gz")).read()
        img = gzip.open(os.path.join(fashion_dir, "t10k-images-idx3-ubyte.gz")).read()
        refs.append(ref_lines("fashion", lab, img))
    with open(p("mnist_ref.txt"), "w") as f:
        f.write("".join(refs))


def ref_lines(tag, lab, img):
    """Parses IDX with numpy and records what the C test must find."""
    n = struct.unpack(">I", lab[4:8])[0]
    labels = np.frombuffer(lab, dtype=np.uint8, offset=8)
    ni, h, w = struct.unpack(">III", img[4:16])
    pix = np.frombuffer(img, dtype=np.uint8, offset=16).reshape(ni, h, w)
    assert len(labels) == n
    out = f"{tag} labels {n} " + " ".join(str(v) for v in labels[:32]) + "\n"
    out += f"{tag} images {ni} {h} {w} sum0 {int(pix[0].sum())} " \
           f"sumall {int(pix.astype(np.int64).sum())}\n"
    # a few individual pixels of image 0 (row 14) and of the last image
    out += f"{tag} row14 " + " ".join(str(v) for v in pix[0, 14]) + "\n"
    out += f"{tag} lastrow14 " + " ".join(str(v) for v in pix[-1, 14]) + "\n"
    return out


def check(d):
    """Checks the files written by our writers (see test_io_roundtrip.c)."""
    ok = True
    man = open(os.path.join(d, "written.txt")).read().split("\n")
    for line in man:
        if not line.strip():
            continue
        parts = line.split()
        fname, code = parts[0], parts[1]
        shape = tuple(int(v) for v in parts[3:3 + int(parts[2])])
        name, _, member = fname.partition(":")
        path = os.path.join(d, name)
        if member:
            with np.load(path) as z:
                a = z[member]
        else:
            raw = open(path, "rb").read()
            hlen = struct.unpack("<H", raw[8:10])[0] + 10
            if raw[6:8] != b"\x01\x00" or hlen % 64 != 0:
                print(f"{fname}: bad version/padding", file=sys.stderr)
                ok = False
            a = np.load(path)
        exp = make(code, shape)
        if a.dtype != exp.dtype or a.shape != exp.shape or \
                not np.array_equal(a, exp):
            print(f"{fname}: got {a.dtype}{a.shape} want {exp.dtype}{exp.shape}",
                  file=sys.stderr)
            ok = False
    return ok


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--check":
        sys.exit(0 if check(sys.argv[2]) else 1)
    generate(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None,
             sys.argv[3] if len(sys.argv) > 3 else None)
