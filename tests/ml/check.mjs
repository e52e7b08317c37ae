#!/usr/bin/env node
// Tabular ai.onnx.ml models (tests/fixtures/ml, tools/make_sklearn_models.py)
// against onnxruntime-node, which computes every reference here at test time:
//   node tests/ml/check.mjs AISBX FIXTURE_DIR WORK_DIR
// 1. classifiers: `aisbx predict --logits` probabilities within 1e-5 of
//    onnxruntime's, predicted labels equal to its label output;
// 2. regressors: `aisbx onnx-check` on a backend-test case whose outputs
//    onnxruntime wrote;
// 3. white-box attacks refuse the tree models naming the op; the linear
//    model's input gradient matches central differences of onnxruntime;
// 4. `aisbx attack --attack square|hsj` on the tree models: adversarials
//    within [0,1] and eps (every Square one; HSJ's successes), no backward
//    pass, robust accuracy <= clean accuracy, some success, and the reported
//    adversarial predictions equal onnxruntime's on the written adversarials.
// Exit 1 with the reasons on any failure.
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { tensorProto } from "../../tools/onnx_pb.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const require = createRequire(path.join(ROOT, "package.json"));
const ort = require("onnxruntime-node");
const [AISBX, FIX, WORK] = process.argv.slice(2);
if (!WORK) {
  console.error("usage: check.mjs AISBX FIXTURE_DIR WORK_DIR");
  process.exit(2);
}
fs.mkdirSync(WORK, { recursive: true });
let fails = 0;
function check(ok, what) {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) fails++;
}

// A .npy buffer: { shape, data } (float32 '<f4' or int64 '<i8', C order).
function parseNpy(buf) {
  // magic "\x93NUMPY", major, minor, header length (u16 in v1, else u32)
  const v1 = buf[6] === 1;
  const hlen = v1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const hoff = v1 ? 10 : 12;
  const hdr = buf.toString("latin1", hoff, hoff + hlen);
  const descr = /'descr':\s*'([^']+)'/.exec(hdr)[1];
  if (/'fortran_order':\s*True/.test(hdr)) throw new Error("fortran order npy");
  const shape = /'shape':\s*\(([^)]*)\)/.exec(hdr)[1].split(",").filter((s) => s.trim()).map(Number);
  const raw = buf.subarray(hoff + hlen);
  const ab = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength);
  if (descr === "<f4") return { shape, data: new Float32Array(ab) };
  if (descr === "<i8") return { shape, data: new BigInt64Array(ab) };
  throw new Error("npy dtype " + descr);
}

// The arrays of an .npz (zip of .npy; stored or deflated entries).
function readNpz(file) {
  const b = fs.readFileSync(file);
  const out = {};
  let p = 0;
  while (b.readUInt32LE(p) === 0x04034b50) {
    const method = b.readUInt16LE(p + 8), flags = b.readUInt16LE(p + 6);
    let csize = b.readUInt32LE(p + 18);
    const nlen = b.readUInt16LE(p + 26), xlen = b.readUInt16LE(p + 28);
    const name = b.toString("utf8", p + 30, p + 30 + nlen);
    const d0 = p + 30 + nlen + xlen;
    if (flags & 8 || csize === 0xffffffff) {
      // zip64 / data descriptor: numpy writes zip64 extras; take the size from the extra
      const x = b.subarray(p + 30 + nlen, d0);
      for (let q = 0; q + 4 <= x.length; ) {
        const id = x.readUInt16LE(q), sz = x.readUInt16LE(q + 2);
        if (id === 1) csize = Number(x.readBigUInt64LE(q + 4 + 8));
        q += 4 + sz;
      }
    }
    const comp = b.subarray(d0, d0 + csize);
    const raw = method === 8 ? zlib.inflateRawSync(comp) : comp;
    out[name.replace(/\.npy$/, "")] = parseNpy(Buffer.from(raw));
    p = d0 + csize;
  }
  return out;
}

function run(args) {
  const r = spawnSync(AISBX, args, { encoding: "utf8" });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

// onnxruntime's outputs (all, or the named ones) on n samples x.
async function ortRun(model, x, n, names) {
  const sess = await ort.InferenceSession.create(model);
  const fetch = names || sess.outputNames;
  const feeds = { [sess.inputNames[0]]: new ort.Tensor("float32", x, [n, x.length / n]) };
  const res = await sess.run(feeds, fetch);
  return fetch.map((k) => res[k]);
}

const ds = readNpz(path.join(FIX, "iris.npz"));
const N = ds.x.shape[0], F = ds.x.shape[1];

// 1. classifier probabilities. onnxruntime-node returns no seq(map)
// outputs: rf_zipmap's probabilities reference is rf.onnx's (the same graph
// without the ZipMap), its label onnxruntime's on rf_zipmap itself.
for (const name of ["rf", "rf_modes", "gb", "lr", "rf_zipmap"]) {
  const model = path.join(FIX, `${name}.onnx`);
  const zm = name === "rf_zipmap";
  const [prob] = await ortRun(zm ? path.join(FIX, "rf.onnx") : model, ds.x.data, N, ["probabilities"]);
  const [label] = await ortRun(model, ds.x.data, N, ["label"]);
  const lg = path.join(WORK, `${name}_logits.npy`), pr = path.join(WORK, `${name}_pred.npy`);
  const r = run(["predict", "--model", model, "--data", path.join(FIX, "iris.npz"), "--logits", lg, "--out", pr, "--threads", "1"]);
  check(r.code === 0, `${name}: aisbx predict ran ${r.err.trim()}`);
  if (r.code !== 0) continue;
  const z = parseNpy(fs.readFileSync(lg)), y = parseNpy(fs.readFileSync(pr));
  let maxd = 0;
  for (let i = 0; i < prob.data.length; i++) maxd = Math.max(maxd, Math.abs(prob.data[i] - z.data[i]));
  check(z.data.length === prob.data.length && maxd <= 1e-5,
        `${name}: probabilities [${z.shape}] vs onnxruntime [${prob.dims}], max |diff| ${maxd.toExponential(2)} <= 1e-5`);
  let same = y.data.length === N;
  for (let i = 0; i < N && same; i++) same = y.data[i] === label.data[i];
  check(same, `${name}: predicted labels equal onnxruntime's label output`);
}

// 2. regressors through onnx-check
for (const name of ["gbr", "linreg"]) {
  const model = path.join(FIX, `${name}.onnx`);
  const dir = path.join(WORK, name), set = path.join(dir, "test_data_set_0");
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(set, { recursive: true });
  fs.copyFileSync(model, path.join(dir, "model.onnx"));
  const sess = await ort.InferenceSession.create(model);
  const xt = new ort.Tensor("float32", ds.x.data, [N, F]);
  const res = await sess.run({ x: xt });
  fs.writeFileSync(path.join(set, "input_0.pb"), tensorProto("x", xt));
  sess.outputNames.forEach((k, i) => fs.writeFileSync(path.join(set, `output_${i}.pb`), tensorProto(k, res[k])));
  const r = run(["onnx-check", dir]);
  check(r.code === 0, `${name}: aisbx onnx-check vs onnxruntime ${(r.out + r.err).trim().split("\n").pop()}`);
}

// 2b. malformed trees are refused at planning, with the reason
for (const [name, why] of [["bad_child", /bad child/], ["bad_self", /bad child/],
                           ["bad_cycle", /do not form trees/],
                           ["bad_feature", /beyond input width/], ["bad_class", /bad node or class/],
                           ["bad_mode", /BRANCH_XX unsupported/]]) {
  const r = run(["predict", "--model", path.join(FIX, `${name}.onnx`), "--data", path.join(FIX, "iris.npz")]);
  check(r.code !== 0 && why.test(r.err), `${name} refused: ${r.err.trim()}`);
}

// 3. white-box attacks refuse trees, naming the op
for (const a of ["pgd", "fgsm", "apgd-ce"]) {
  const r = run(["attack", "--model", path.join(FIX, "rf.onnx"), "--data", path.join(FIX, "iris.npz"),
                 "--attack", a, "--eps", "0.1", "--out", path.join(WORK, "wb.json")]);
  check(r.code !== 0 && /TreeEnsembleClassifier/.test(r.err) && /no gradient/.test(r.err),
        `${a} on rf refused: ${r.err.trim()}`);
}

// 3b. the linear model has gradients (Scaler, LinearClassifier with
// SOFTMAX): `aisbx grad --loss logit --target 1` (d z_1 / d x) against
// central differences of onnxruntime's probabilities, h = 2e-3 (the error shrinks as h^2)
{
  const g = path.join(WORK, "lr_grad.npy");
  const r = run(["grad", "--model", path.join(FIX, "lr.onnx"), "--data", path.join(FIX, "iris.npz"),
                 "--loss", "logit", "--target", "1", "--out", g]);
  check(r.code === 0, `lr: aisbx grad ran ${r.err.trim()}`);
  if (r.code === 0) {
    const ga = parseNpy(fs.readFileSync(g)).data, h = 2e-3;
    let worst = 0;
    for (let k = 0; k < F; k++) {
      const xp = Float32Array.from(ds.x.data), xm = Float32Array.from(ds.x.data);
      for (let i = 0; i < N; i++) {
        xp[i * F + k] += h;
        xm[i * F + k] -= h;
      }
      const [zp] = await ortRun(path.join(FIX, "lr.onnx"), xp, N, ["probabilities"]);
      const [zm] = await ortRun(path.join(FIX, "lr.onnx"), xm, N, ["probabilities"]);
      for (let i = 0; i < N; i++) {
        const fd = (zp.data[i * 3 + 1] - zm.data[i * 3 + 1]) / (2 * h);
        worst = Math.max(worst, Math.abs(ga[i * F + k] - fd) / (1e-3 + 1e-2 * Math.abs(fd)));
      }
    }
    check(worst <= 1, `lr: d z_1/dx vs onnxruntime central differences, worst |diff| / (1e-3 + 1e-2 |fd|) = ${worst.toFixed(3)}`);
  }
}

// 4. black-box attacks (and PGD on the differentiable linear model)
const cases = [
  ["rf", "square", "inf", 0.15], ["gb", "square", "inf", 0.15],
  ["rf", "hsj", "2", 0.3], ["gb", "hsj", "inf", 0.15], ["lr", "square", "2", 0.3],
  ["lr", "pgd", "inf", 0.1],
];
for (const [name, atk, norm, eps] of cases) {
  const tag = `${atk}/${norm} eps ${eps} on ${name}`;
  const model = path.join(FIX, `${name}.onnx`);
  const js = path.join(WORK, `${name}_${atk}.json`), adv = path.join(WORK, `${name}_${atk}_adv.npy`);
  const r = run(["attack", "--model", model, "--data", path.join(FIX, "iris.npz"), "--attack", atk,
                 "--norm", norm, "--eps", String(eps), "--queries", "300", "--seed", "7",
                 "--out", js, "--adv", adv, "--threads", "1"]);
  check(r.code === 0, `${tag}: ran ${r.err.trim()}`);
  if (r.code !== 0) continue;
  const res = JSON.parse(fs.readFileSync(js, "utf8"));
  const xa = parseNpy(fs.readFileSync(adv));
  const ps = res.per_sample;
  check(res.robust_accuracy <= res.clean_accuracy && res.attack_success_rate > 0,
        `${tag}: robust ${res.robust_accuracy} <= clean ${res.clean_accuracy}, success ${res.attack_success_rate} > 0`);
  if (atk !== "pgd")
    check(res.queries.backward === 0 && res.queries.forward > 0, `${tag}: forward-only (${res.queries.forward} forwards)`);
  let inBox = true, inBall = true, succ = true;
  for (let i = 0; i < N; i++) {
    let li = 0, l2 = 0;
    for (let k = 0; k < F; k++) {
      const v = xa.data[i * F + k], d = v - ds.x.data[i * F + k];
      inBox &&= v >= 0 && v <= 1;
      li = Math.max(li, Math.abs(d));
      l2 += d * d;
    }
    const dist = norm === "inf" ? li : Math.sqrt(l2);
    if (atk === "square" || ps.success[i]) inBall &&= dist <= eps * (1 + 1e-5);
    const lab = Number(ds.y.data[i]);
    // samples misclassified from the start are not attacked
    if (ps.pred_clean[i] === lab)
      succ &&= Boolean(ps.success[i]) === (ps.pred_adv[i] !== lab && dist <= eps * (1 + 1e-5));
  }
  check(inBox && inBall, `${tag}: adversarials in [0,1] and within eps`);
  check(succ, `${tag}: success flags consistent with labels, predictions and distances`);
  const [olab] = await ortRun(model, xa.data, N, ["label"]);
  let agree = 0;
  for (let i = 0; i < N; i++) agree += Number(olab.data[i]) === ps.pred_adv[i];
  check(agree === N, `${tag}: onnxruntime agrees on ${agree}/${N} adversarial predictions`);
}
if (fails) {
  console.error(`${fails} check(s) failed`);
  process.exit(1);
}
