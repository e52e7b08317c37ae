#!/usr/bin/env node
// Reference outputs for the wild-model corpus (tests/wild/manifest.json),
// made by onnxruntime-node (npm) on fixed seeded inputs.
//
//   node tools/wild_refs.mjs OUT_DIR [NAME...]
//     For each model (all, or the NAMEs): checks that its npm package is
//     installed at the manifest's version and that the file's sha256 matches,
//     then writes OUT_DIR/NAME/ in the ONNX backend-test layout that
//     `aisbx onnx-check` reads: model.onnx (a symlink into node_modules),
//     test_data_set_0/input_<i>.pb (graph input order) and output_<i>.pb
//     (onnxruntime's outputs), as serialized TensorProtos.
//   node tools/wild_refs.mjs --bench NAME REPEAT
//     Prints "ort_forward_ms MEAN MIN" over REPEAT runs of onnxruntime on
//     the model's inputs (2 intra-op threads, as our engine in the bench).
//
// Exit 1 (with the reason) when a package is missing or differs: the corpus
// never silently shrinks.
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { tensorProto as pbTensor } from "./onnx_pb.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const MANIFEST = path.join(ROOT, "tests/wild/manifest.json");
const require = createRequire(path.join(ROOT, "package.json"));

function die(msg) {
  console.error("wild_refs: " + msg);
  process.exit(1);
}

let ort;
try {
  ort = require("onnxruntime-node");
} catch (e) {
  die("onnxruntime-node is not installed (run tools/install-deps.sh): " + e.message);
}

// mulberry32: a small seeded PRNG so the inputs are the same on every run.
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// The model file of manifest entry m, after checking package version and hash.
function modelFile(m) {
  const pj = path.join(ROOT, "node_modules", m.package, "package.json");
  if (!fs.existsSync(pj))
    die(`${m.name}: npm package ${m.package} is not installed (run tools/install-deps.sh)`);
  const ver = JSON.parse(fs.readFileSync(pj, "utf8")).version;
  if (ver !== m.version) die(`${m.name}: ${m.package} is ${ver}, the manifest wants ${m.version}`);
  const file = path.join(path.dirname(pj), m.path);
  if (!fs.existsSync(file)) die(`${m.name}: ${file} not found in ${m.package}@${ver}`);
  const sha = createHash("sha256").update(fs.readFileSync(file)).digest("hex");
  if (sha !== m.sha256) die(`${m.name}: ${file} has sha256 ${sha}, the manifest says ${m.sha256}`);
  return file;
}

// A synthetic page for text detectors (noise gives an all-zero map): N x C
// x H x W at value hi (paper) with seeded dark "glyphs" (value lo) of 2-6
// pixels wide on text lines 8 pixels high every 20 rows, the same in every
// channel.
function textBars(data, spec) {
  const [, C, H, W] = spec.shape;
  const [lo, hi] = spec.text_bars;
  const r = mulberry32(spec.seed);
  const plane = new Float32Array(H * W).fill(hi);
  for (let y0 = 6; y0 + 8 <= H; y0 += 20)
    for (let x = 4 + Math.floor(r() * 8); x < W - 8; ) {
      const w = 2 + Math.floor(r() * 5);
      if (r() < 0.8)
        for (let y = y0; y < y0 + 8; y++) plane.fill(lo, y * W + x, y * W + x + w);
      x += w + 1 + Math.floor(r() * 4);
    }
  for (let i = 0; i < data.length; i += H * W) data.set(plane, i);
  if (data.length % (H * W) || data.length / (H * W) !== spec.shape[0] * C)
    die(`text_bars: shape [${spec.shape}] is not N x C x H x W`);
}

// The onnxruntime feeds of entry m (seeded uniform or constant fill).
function makeFeeds(m) {
  const feeds = {};
  for (const spec of m.inputs) {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    let data;
    if (spec.dtype === "float32") {
      data = new Float32Array(n);
      if (spec.uniform) {
        const r = mulberry32(spec.seed);
        const [lo, hi] = spec.uniform;
        for (let i = 0; i < n; i++) data[i] = lo + (hi - lo) * r();
      } else if (spec.text_bars) textBars(data, spec);
      else data.fill(spec.fill);
    } else if (spec.dtype === "int64") {
      data = new BigInt64Array(n).fill(BigInt(spec.fill));
    } else die(`${m.name}: input dtype ${spec.dtype} not handled`);
    feeds[spec.name] = new ort.Tensor(spec.dtype, data, spec.shape);
  }
  return feeds;
}

// TensorProto writer shared with tests/ml/check.mjs; a type it does not
// handle is fatal
function tensorProto(name, t) {
  try {
    return pbTensor(name, t);
  } catch (e) {
    die(e.message);
  }
}

function sessionOptions() {
  return { intraOpNumThreads: 2, interOpNumThreads: 1, graphOptimizationLevel: "all" };
}

async function writeCase(m, outRoot) {
  const file = modelFile(m);
  const dir = path.join(outRoot, m.name);
  const set = path.join(dir, "test_data_set_0");
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(set, { recursive: true });
  fs.symlinkSync(file, path.join(dir, "model.onnx"));
  const sess = await ort.InferenceSession.create(file, sessionOptions());
  const specs = new Map(m.inputs.map((s) => [s.name, s]));
  if (sess.inputNames.length !== m.inputs.length || sess.inputNames.some((n) => !specs.has(n)))
    die(`${m.name}: model inputs [${sess.inputNames}] differ from the manifest's`);
  const feeds = makeFeeds(m);
  sess.inputNames.forEach((n, i) =>
    fs.writeFileSync(path.join(set, `input_${i}.pb`), tensorProto(n, feeds[n])));
  const res = await sess.run(feeds);
  sess.outputNames.forEach((n, i) =>
    fs.writeFileSync(path.join(set, `output_${i}.pb`), tensorProto(n, res[n])));
  const shapes = sess.outputNames.map((n) => `${n}[${res[n].dims}]`).join(" ");
  console.log(`${m.name}: ${path.relative(ROOT, file)} -> ${shapes}`);
}

async function bench(m, repeat) {
  const sess = await ort.InferenceSession.create(modelFile(m), sessionOptions());
  const feeds = makeFeeds(m);
  await sess.run(feeds); // warm-up
  let sum = 0, best = Infinity;
  for (let r = 0; r < repeat; r++) {
    const t0 = process.hrtime.bigint();
    await sess.run(feeds);
    const dt = Number(process.hrtime.bigint() - t0) / 1e6;
    sum += dt;
    best = Math.min(best, dt);
  }
  console.log(`ort_forward_ms ${(sum / repeat).toFixed(4)} ${best.toFixed(4)}`);
}

const manifest = JSON.parse(fs.readFileSync(MANIFEST, "utf8"));
const byName = new Map(manifest.models.map((m) => [m.name, m]));
const args = process.argv.slice(2);
if (args[0] === "--bench") {
  const m = byName.get(args[1]);
  if (!m || !(Number(args[2]) > 0)) die("usage: wild_refs.mjs --bench NAME REPEAT");
  await bench(m, Number(args[2]));
} else {
  if (args.length < 1) die("usage: wild_refs.mjs OUT_DIR [NAME...] | --bench NAME REPEAT");
  const names = args.slice(1);
  for (const n of names) if (!byName.has(n)) die(`no model ${n} in ${MANIFEST}`);
  for (const m of manifest.models)
    if (!names.length || names.includes(m.name)) await writeCase(m, path.resolve(args[0]));
}
