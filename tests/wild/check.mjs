#!/usr/bin/env node
// CTest wild.models: the real-model corpus (manifest.json) against
// onnxruntime-node.
//
//   node tests/wild/check.mjs AISBX WILD_RUN WORK_DIR
//
// 1. tools/wild_refs.mjs writes WORK_DIR/cases/<name>/ (model, seeded
//    inputs, onnxruntime's outputs); a missing or changed npm package fails.
// 2. Per model, `aisbx onnx-check` runs the case. "ok" models must pass it
//    and then wild_run dumps our outputs, compared element-wise with
//    onnxruntime's: |ours - ort| <= RTOL * |ort| + ATOL; the max errors are
//    printed per model. "unsupported: <text>" models must be refused (exit 2)
//    with <text> in the message; if one loads, the test fails and says to
//    flip it to "ok" in the manifest.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const RTOL = 1e-4, ATOL = 1e-6;
const HERE = path.dirname(fileURLToPath(import.meta.url));
const [aisbx, wildRun, work] = process.argv.slice(2);
if (!work) {
  console.error("usage: check.mjs AISBX WILD_RUN WORK_DIR");
  process.exit(2);
}
const cases = path.join(work, "cases");

function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 120000 });
  const err = r.error ? `${cmd}: ${r.error.message}\n` : "";
  return { rc: r.status, out: err + (r.stdout || "") + (r.stderr || "") };
}

// varint at b[o]: [value (BigInt), next offset]
function varint(b, o) {
  let v = 0n, s = 0n;
  for (;;) {
    const x = b[o++];
    v |= BigInt(x & 0x7f) << s;
    s += 7n;
    if (!(x & 0x80)) return [v, o];
  }
}

// The TensorProtos tools/wild_refs.mjs writes: dims (1), data_type (2),
// name (8), raw_data (9). Returns {dims, data: Float64Array}.
function readPb(file) {
  const b = fs.readFileSync(file);
  const dims = [];
  let type = 0, raw = null, o = 0;
  while (o < b.length) {
    let key, v;
    [key, o] = varint(b, o);
    const num = Number(key >> 3n), wt = Number(key & 7n);
    if (wt === 0) {
      [v, o] = varint(b, o);
      if (num === 1) dims.push(Number(v));
      if (num === 2) type = Number(v);
    } else if (wt === 2) {
      [v, o] = varint(b, o);
      if (num === 9) raw = b.subarray(o, o + Number(v));
      o += Number(v);
    } else throw new Error(`${file}: wire type ${wt}`);
  }
  return { dims, data: toF64(raw, type === 1 ? "<f4" : "<i8") };
}

function toF64(buf, descr) {
  const copy = Uint8Array.from(buf).buffer;
  if (descr === "<f4") return Float64Array.from(new Float32Array(copy));
  if (descr === "<i8") return Float64Array.from(new BigInt64Array(copy), Number);
  throw new Error(`dtype ${descr}`);
}

// NPY v1/v2 as written by adv_npy_write_file: {dims, data: Float64Array}.
function readNpy(file) {
  const b = fs.readFileSync(file);
  const v2 = b[6] >= 2;
  const hlen = v2 ? b.readUInt32LE(8) : b.readUInt16LE(8);
  const off = (v2 ? 12 : 10) + hlen;
  const hdr = b.subarray(v2 ? 12 : 10, off).toString("latin1");
  const descr = /'descr':\s*'([^']+)'/.exec(hdr)[1];
  const dims = /'shape':\s*\(([^)]*)\)/.exec(hdr)[1].split(",").filter((s) => s.trim()).map(Number);
  return { dims, data: toF64(b.subarray(off), descr) };
}

// Compares our output file with onnxruntime's; returns [ok, description].
function compare(oursFile, refFile) {
  if (!fs.existsSync(oursFile)) return [false, `${path.basename(oursFile)} missing`];
  const a = readNpy(oursFile), r = readPb(refFile);
  if (a.dims.join(",") !== r.dims.join(","))
    return [false, `shape [${a.dims}] vs onnxruntime [${r.dims}]`];
  let maxAbs = 0, maxRel = 0, bad = -1;
  for (let i = 0; i < r.data.length; i++) {
    const d = Math.abs(a.data[i] - r.data[i]);
    if (!(d <= RTOL * Math.abs(r.data[i]) + ATOL) && bad < 0) bad = i;
    if (!(d <= maxAbs)) maxAbs = d;
    const rel = d / Math.max(Math.abs(r.data[i]), 1e-3);
    if (!(rel <= maxRel)) maxRel = rel;
  }
  const desc = `[${r.dims}] max abs err ${maxAbs.toExponential(2)}, max rel err ${maxRel.toExponential(2)}`;
  if (bad >= 0)
    return [false, `${desc}; element ${bad}: ours ${a.data[bad]} vs onnxruntime ${r.data[bad]} (rtol ${RTOL}, atol ${ATOL})`];
  return [true, desc];
}

const manifest = JSON.parse(fs.readFileSync(path.join(HERE, "manifest.json"), "utf8"));
fs.rmSync(work, { recursive: true, force: true });
fs.mkdirSync(work, { recursive: true });
const refs = run(process.execPath, [path.join(HERE, "../../tools/wild_refs.mjs"), cases]);
process.stdout.write(refs.out);
if (refs.rc !== 0) {
  console.log("FAIL: tools/wild_refs.mjs could not make the references");
  process.exit(1);
}

let failures = 0;
for (const m of manifest.models) {
  const dir = path.join(cases, m.name);
  const chk = run(aisbx, ["onnx-check", dir]);
  const msg = chk.out.trim().replace(/\s+/g, " ");
  if (m.expect.startsWith("unsupported: ")) {
    const want = m.expect.slice("unsupported: ".length);
    if (chk.rc === 0) {
      console.log(`FAIL ${m.name}: now loads and matches onnxruntime: set "expect": "ok" in tests/wild/manifest.json`);
      failures++;
    } else if (chk.rc !== 2 || !msg.includes(want)) {
      console.log(`FAIL ${m.name}: expected exit 2 with "${want}", got exit ${chk.rc}: ${msg} (update the manifest if the engine moved on)`);
      failures++;
    } else console.log(`ok   ${m.name}: refused as expected: ${msg}`);
    continue;
  }
  if (chk.rc !== 0) {
    console.log(`FAIL ${m.name}: aisbx onnx-check exit ${chk.rc}: ${msg}`);
    failures++;
    continue;
  }
  const out = path.join(work, "ours", m.name);
  fs.mkdirSync(out, { recursive: true });
  const wr = run(wildRun, [dir, out]);
  if (wr.rc !== 0) {
    console.log(`FAIL ${m.name}: wild_run exit ${wr.rc}: ${wr.out.trim()}`);
    failures++;
    continue;
  }
  const set = path.join(dir, "test_data_set_0");
  for (let i = 0; fs.existsSync(path.join(set, `output_${i}.pb`)); i++) {
    const [ok, desc] = compare(path.join(out, `output_${i}.npy`), path.join(set, `output_${i}.pb`));
    console.log(`${ok ? "ok  " : "FAIL"} ${m.name} output ${i}: ${desc}`);
    if (!ok) failures++;
  }
}
console.log(failures ? `${failures} failure(s)` : `all ${manifest.models.length} models as expected`);
process.exit(failures ? 1 : 0);
