// Serialized onnx.TensorProto messages for onnxruntime-node tensors, in the
// ONNX backend-test layout `aisbx onnx-check` reads (tools/wild_refs.mjs,
// tests/ml/check.mjs).

// protobuf helpers: varint, and a length-delimited field.
export function varint(v) {
  const out = [];
  let x = BigInt.asUintN(64, BigInt(v));
  do {
    let b = Number(x & 0x7fn);
    x >>= 7n;
    if (x) b |= 0x80;
    out.push(b);
  } while (x);
  return Buffer.from(out);
}
export function field(num, bytes) {
  return Buffer.concat([varint((num << 3) | 2), varint(bytes.length), bytes]);
}

// A serialized onnx.TensorProto: dims (1), data_type (2), name (8), raw_data (9).
// Throws on a tensor type other than float32, int64, bool.
const DTYPE = { float32: 1, int64: 7, bool: 9 };
export function tensorProto(name, t) {
  if (!(t.type in DTYPE)) throw new Error(`${name}: output type ${t.type} not handled`);
  const parts = t.dims.map((d) => Buffer.concat([varint(1 << 3), varint(d)]));
  parts.push(Buffer.concat([varint(2 << 3), varint(DTYPE[t.type])]));
  parts.push(field(8, Buffer.from(name)));
  const d = t.data;
  parts.push(field(9, Buffer.from(d.buffer, d.byteOffset, d.byteLength)));
  return Buffer.concat(parts);
}
