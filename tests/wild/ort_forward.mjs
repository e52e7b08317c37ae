#!/usr/bin/env node
// onnxruntime-node's forward pass for tests/wild/test_objective.py (an
// independent reference for the output-distance objective):
//
//   node tests/wild/ort_forward.mjs MODEL INPUT_NAME D0,D1,... IN.f32 OUT.f32
//
// IN.f32: raw little-endian float32 of the input (shape D0 x D1 x ...);
// writes output 0 as raw float32 to OUT.f32 and prints its dims.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const require = createRequire(path.join(ROOT, "package.json"));
const ort = require("onnxruntime-node");
const [model, name, dimsText, inFile, outFile] = process.argv.slice(2);
if (!outFile) {
  console.error("usage: ort_forward.mjs MODEL INPUT_NAME D0,D1,... IN.f32 OUT.f32");
  process.exit(2);
}
const dims = dimsText.split(",").map(Number);
const buf = fs.readFileSync(inFile);
const data = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
const sess = await ort.InferenceSession.create(model, {
  intraOpNumThreads: 2, interOpNumThreads: 1, graphOptimizationLevel: "all",
});
const out = await sess.run({ [name]: new ort.Tensor("float32", data, dims) });
const t = out[sess.outputNames[0]];
fs.writeFileSync(outFile, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
console.log(t.dims.join(","));
