#!/usr/bin/python3
"""Generate tests/fixtures/store/: streams in the blob format of sbx/crypto.h,
written by an implementation independent of src/crypto/stream.c.

Version 1 is the format the store wrote before issue 10 item 9 (AD = header |
be64(i) | final); version 2 is the current one (AD = header | be64(i) | final |
be64(final ? total : 0)). test_crypto decrypts every file with the C code and
compares with plain.bin, so old blobs stay readable and the C code and this
reference agree on the version 2 associated data (a GCM tag only verifies
when both sides authenticated the same bytes).

Needs python3-cryptography (AES-GCM):
    /usr/bin/python3 tools/make_stream_fixtures.py [--out tests/fixtures/store]

Files: key.hex (the data key), plain.bin (3000 bytes), plain.sha256 (its
SHA-256, hex, from hashlib), stream_v1_3000.bin, stream_v2_3000.bin,
stream_v2_2048.bin (the first 2048 bytes: a full final chunk),
stream_v2_0.bin (empty), all with chunk_shift 10 (1 KiB chunks).
"""
import argparse
import hashlib
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = bytes(range(0x40, 0x60))  # 32 bytes, fixed: a test fixture, not a secret
NONCE_PREFIX = bytes.fromhex("a1b2c3d4")
STREAM_ID = bytes.fromhex("00112233445566778899aabbccddeeff")
SHIFT = 10


def plaintext(n):
    # Knuth multiplicative pattern, like the C tests' fill()
    return bytes(((i * 2654435761) >> 13) & 0xFF for i in range(n))


def header(version):
    return (b"SBXS" + bytes([version, 1, SHIFT, 0]) + NONCE_PREFIX + STREAM_ID +
            bytes(4))


def encrypt(pt, version):
    chunk = 1 << SHIFT
    hdr = header(version)
    # split: full non-final chunks, then a final chunk of 1..chunk bytes (or
    # an empty one for an empty stream)
    pieces = [pt[i:i + chunk] for i in range(0, len(pt), chunk)] or [b""]
    out = bytearray(hdr)
    aead = AESGCM(KEY)
    total = 0
    for i, p in enumerate(pieces):
        final = i == len(pieces) - 1
        total += len(p)
        nonce = NONCE_PREFIX + i.to_bytes(8, "big")
        ad = hdr + i.to_bytes(8, "big") + bytes([1 if final else 0])
        if version == 2:
            ad += (total if final else 0).to_bytes(8, "big")
        out += aead.encrypt(nonce, p, ad)  # ciphertext | tag
    return bytes(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO, "tests/fixtures/store"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    pt = plaintext(3000)
    files = {
        "key.hex": (KEY.hex() + "\n").encode(),
        "plain.bin": pt,
        "plain.sha256": (hashlib.sha256(pt).hexdigest() + "\n").encode(),
        "stream_v1_3000.bin": encrypt(pt, 1),
        "stream_v2_3000.bin": encrypt(pt, 2),
        "stream_v2_2048.bin": encrypt(pt[:2048], 2),
        "stream_v2_0.bin": encrypt(b"", 2),
    }
    for name, data in files.items():
        with open(os.path.join(a.out, name), "wb") as f:
            f.write(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
