#!/usr/bin/python3
"""The runner's gallery strips, decoded by Pillow (an independent PNG
reader), show the dataset's images: the original panel equals the NPZ
sample scaled to 8 bits, the adversarial panel equals the runner's own
adversarial NPY, and the perturbation panel is mid-gray where they agree.
Broken samples come first and the captions name label and predictions."""
import io, json, os, subprocess, sys, tempfile
import numpy as np
from PIL import Image

runner, runjob, fixtures = sys.argv[1:4]
model = os.path.join(fixtures, "mnist_cnn.onnx")
data = os.path.join(fixtures, "demo_mnist.npz")
spec = {"kind": "attack", "attack": "pgd", "eps": 0.15, "steps": 10, "n": 12, "seed": 3}
fails = 0
with tempfile.TemporaryDirectory() as d:
    rj, rn = os.path.join(d, "r.json"), os.path.join(d, "r.npy")
    env = dict(os.environ, RUNJOB_GALLERY=d)
    p = subprocess.run([runjob, runner, model, data, json.dumps(spec), rj, rn],
                       capture_output=True, text=True, env=env)
    print(p.stdout.strip())
    assert p.returncode == 0, p.stderr
    res = json.load(open(rj))
    x = np.load(data)["x"]
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x
    y = np.load(data)["y"]
    xa = np.load(rn)
    succ = res["per_sample"]["success"]
    order = [i for i in range(len(succ)) if succ[i]] + [i for i in range(len(succ)) if not succ[i]]
    n = min(8, len(order))
    assert p.stdout.count("gallery %d" % n) == 1, "expected %d strips" % n
    for k in range(n):
        i = order[k]
        im = Image.open(os.path.join(d, "gallery-%d.png" % k))
        desc = im.info.get("Description", "")
        a = np.asarray(im.convert("RGB")).astype(int)
        H, W = x.shape[2], x.shape[3]
        zoom = (96 + H - 1) // H
        gap = 4
        orig = a[gap:gap + H * zoom:zoom, gap:gap + W * zoom:zoom, 0]
        adv = a[gap:gap + H * zoom:zoom, 2 * gap + W * zoom:2 * gap + W * zoom + W * zoom:zoom, 0]
        want_o = np.rint(np.clip(x[i, 0], 0, 1) * 255).astype(int)
        want_a = np.rint(np.clip(xa[i, 0], 0, 1) * 255).astype(int)
        ok = (np.abs(orig - want_o).max() <= 1 and np.abs(adv - want_a).max() <= 1
              and desc.startswith("sample %d: label %d," % (i, y[i]))
              and ("adversarial prediction %d," % res["per_sample"]["pred_adv"][i]) in desc)
        print("strip %d (sample %d): %s | %s" % (k, i, "ok" if ok else "MISMATCH", desc))
        fails += not ok
sys.exit(1 if fails else 0)
