#!/usr/bin/python3
"""Tabular ai.onnx.ml fixtures (issue 13 item 5): scikit-learn estimators
(Debian's python3-sklearn) fitted on iris, exported to ONNX by hand with
python3-onnx's onnx.helper the way skl2onnx lays them out (skl2onnx is not
in Debian), written to tests/fixtures/ml/:

  iris.npz          x float32 [30, 4] in [0, 1] (min-max scaled iris
                    features, a seeded 30-sample pick), y int64 [30]
  rf.onnx           Scaler -> TreeEnsembleClassifier (RandomForest, 5 trees)
  gb.onnx           Scaler -> TreeEnsembleClassifier (GradientBoosting,
                    3 classes x 8 trees, base_values, post_transform SOFTMAX)
  lr.onnx           Scaler -> LinearClassifier (multinomial LogisticRegression,
                    post_transform SOFTMAX)
  rf_zipmap.onnx    rf.onnx with a ZipMap (seq(map)) as graph output 0
  rf_modes.onnx     the rf forest behind an ArrayFeatureExtractor, its trees'
                    `x <= t` tests rewritten into the equivalent BRANCH_LT /
                    GTE / GT forms, plus one tree of BRANCH_EQ / NEQ tests
  gbr.onnx          Scaler -> ArrayFeatureExtractor -> Normalizer(L2) ->
                    TreeEnsembleRegressor (GradientBoostingRegressor)
  linreg.onnx       Scaler -> LinearRegressor (LinearRegression)

Graph outputs: output 0 is the float32 probabilities [N, C] (the tensor the
engine attacks), output 1 the int64 label [N] (skl2onnx's order is the
reverse; the engine always uses graph output 0). The references are
onnxruntime-node's outputs, computed at test time (tests/ml/check.mjs).
Run: /usr/bin/python3 tools/make_sklearn_models.py
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper
from sklearn.datasets import load_iris
from sklearn.ensemble import (GradientBoostingClassifier,
                              GradientBoostingRegressor,
                              RandomForestClassifier)
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.preprocessing import Normalizer, StandardScaler

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                   "fixtures", "ml")
ML = "ai.onnx.ml"


def tree_nodes(trees, modes=None):
    """nodes_* attribute lists of sklearn trees (tree id = list position).
    modes[i] rewrites tree i's `x <= t` tests: LEQ as is, GT with the
    children swapped, LT / GTE with t moved to the next float32 up."""
    a = {k: [] for k in ("treeids", "nodeids", "featureids", "values",
                         "modes", "truenodeids", "falsenodeids")}
    for ti, t in enumerate(trees):
        tr = t.tree_
        m = modes[ti] if modes else "BRANCH_LEQ"
        for n in range(tr.node_count):
            leaf = tr.children_left[n] < 0
            thr = np.float32(tr.threshold[n])
            lo, hi = int(tr.children_left[n]), int(tr.children_right[n])
            if leaf:
                mode, f, v, tt, ff = "LEAF", 0, 0.0, 0, 0
            else:
                f = int(tr.feature[n])
                up = float(np.nextafter(thr, np.float32(np.inf)))
                mode, v, tt, ff = {
                    "BRANCH_LEQ": ("BRANCH_LEQ", float(thr), lo, hi),
                    "BRANCH_GT": ("BRANCH_GT", float(thr), hi, lo),
                    "BRANCH_LT": ("BRANCH_LT", up, lo, hi),
                    "BRANCH_GTE": ("BRANCH_GTE", up, hi, lo),
                }[m]
            for k, x in zip(("treeids", "nodeids", "featureids", "values",
                             "modes", "truenodeids", "falsenodeids"),
                            (ti, n, f, v, mode, tt, ff)):
                a[k].append(x)
    return a


def leaves(t):
    return [n for n in range(t.tree_.node_count)
            if t.tree_.children_left[n] < 0]


def scaler_node(sc, src, dst):
    return helper.make_node("Scaler", [src], [dst], domain=ML,
                            offset=sc.mean_.astype(np.float32).tolist(),
                            scale=(1.0 / sc.scale_).astype(np.float32).tolist())


def model(nodes, nfeat, outs, name):
    g = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", nfeat])],
        outs)
    m = helper.make_model(g, producer_name="make_sklearn_models.py",
                          opset_imports=[helper.make_opsetid("", 17),
                                         helper.make_opsetid(ML, 3)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def clf_outputs(c):
    return [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT,
                                          ["N", c]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"])]


def rf_tree_node(rf, src, modes=None, extra=None):
    n = len(rf.estimators_)
    a = tree_nodes(rf.estimators_, modes)
    ct, cn, ci, cw = [], [], [], []
    for ti, t in enumerate(rf.estimators_):
        for leaf in leaves(t):
            v = t.tree_.value[leaf][0]
            v = v / v.sum()
            for k in range(len(v)):
                ct.append(ti), cn.append(leaf), ci.append(k)
                cw.append(float(v[k] / n))
    if extra:
        for k in a:
            a[k] += extra["nodes"][k]
        ct += extra["ct"]
        cn += extra["cn"]
        ci += extra["ci"]
        cw += extra["cw"]
    return helper.make_node(
        "TreeEnsembleClassifier", [src], ["label", "probabilities"], domain=ML, **{"nodes_" + k: v for k, v in a.items()},
        class_treeids=ct, class_nodeids=cn, class_ids=ci, class_weights=cw,
        classlabels_int64s=[0, 1, 2], post_transform="NONE")


def fix_outputs(node):
    # skl2onnx order is (label, probabilities): ours is the reverse
    node.output[:] = ["label", "probabilities"]
    return node


def main():
    os.makedirs(OUT, exist_ok=True)
    iris = load_iris()
    X = iris.data.astype(np.float64)
    X = ((X - X.min(0)) / (X.max(0) - X.min(0))).astype(np.float32)
    y = iris.target.astype(np.int64)
    rng = np.random.RandomState(13)
    pick = np.sort(rng.choice(len(X), 30, replace=False))
    xt, yt = X[pick], y[pick]
    np.savez(os.path.join(OUT, "iris.npz"), x=xt, y=yt)

    sc = StandardScaler().fit(X)
    Xs = sc.transform(X).astype(np.float32)
    xs = sc.transform(xt).astype(np.float32)

    # RandomForest
    rf = RandomForestClassifier(n_estimators=5, max_depth=4,
                                random_state=0).fit(Xs, y)
    node = fix_outputs(rf_tree_node(rf, "xs"))
    m = model([scaler_node(sc, "x", "xs"), node], 4, clf_outputs(3), "rf")
    onnx.save(m, os.path.join(OUT, "rf.onnx"))
    # rf.onnx with skl2onnx's ZipMap on the probabilities: graph output 0
    # is then a seq(map(int64, float)), which the engine reads as the
    # probabilities tensor
    m.graph.node.append(helper.make_node(
        "ZipMap", ["probabilities"], ["output_probability"], domain=ML,
        classlabels_int64s=[0, 1, 2]))
    mt = onnx.TypeProto()
    mt.map_type.key_type = TensorProto.INT64
    mt.map_type.value_type.CopyFrom(
        helper.make_tensor_type_proto(TensorProto.FLOAT, []))
    label = m.graph.output[1]
    del m.graph.output[:]
    m.graph.output.extend([helper.make_value_info(
        "output_probability", helper.make_sequence_type_proto(mt)), label])
    onnx.checker.check_model(m)
    onnx.save(m, os.path.join(OUT, "rf_zipmap.onnx"))

    # the same forest, every test mode (+ one EQ/NEQ tree of zero weight
    # effect on the argmax: 1e-3 to class k on exact matches)
    v0 = float(xs[0, 2])
    extra = {"nodes": {"treeids": [5, 5, 5, 5, 5], "nodeids": [0, 1, 2, 3, 4],
                       "featureids": [2, 0, 0, 0, 0],
                       "values": [v0, float(xs[1, 3]), 0.0, 0.0, 0.0],
                       "modes": ["BRANCH_EQ", "LEAF", "BRANCH_NEQ", "LEAF",
                                 "LEAF"],
                       "truenodeids": [1, 0, 3, 0, 0],
                       "falsenodeids": [2, 0, 4, 0, 0]},
             "ct": [5, 5, 5], "cn": [1, 3, 4], "ci": [0, 1, 2],
             "cw": [1e-3, 2e-3, 3e-3]}
    extra["nodes"]["featureids"][2] = 3
    extra["nodes"]["values"][2] = float(xs[1, 3])
    modes = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT",
             "BRANCH_LT"]
    node = fix_outputs(rf_tree_node(rf, "xf", modes, extra))
    afe = helper.make_node("ArrayFeatureExtractor", ["xs", "idx"], ["xf"],
                           domain=ML)
    idx = helper.make_node("Constant", [], ["idx"], value=helper.make_tensor(
        "idx_v", TensorProto.INT64, [4], [0, 1, 2, 3]))
    m = model([scaler_node(sc, "x", "xs"), idx, afe, node], 4,
              clf_outputs(3), "rf_modes")
    onnx.save(m, os.path.join(OUT, "rf_modes.onnx"))

    # GradientBoosting, 3 classes: raw = init + lr * sum of trees; SOFTMAX
    gb = GradientBoostingClassifier(n_estimators=8, max_depth=2,
                                    learning_rate=0.3, random_state=0).fit(
                                        Xs, y)
    trees = [gb.estimators_[i, k] for i in range(gb.n_estimators_)
             for k in range(3)]
    a = tree_nodes(trees)
    ct, cn, ci, cw = [], [], [], []
    for ti, t in enumerate(trees):
        for leaf in leaves(t):
            ct.append(ti), cn.append(leaf), ci.append(ti % 3)
            cw.append(float(gb.learning_rate * t.tree_.value[leaf][0][0]))
    base = gb._raw_predict_init(xs[:1])[0].astype(np.float32).tolist()
    node = fix_outputs(helper.make_node(
        "TreeEnsembleClassifier", ["xs"], ["label", "probabilities"],
        domain=ML, **{"nodes_" + k: v for k, v in a.items()},
        class_treeids=ct, class_nodeids=cn, class_ids=ci, class_weights=cw,
        classlabels_int64s=[0, 1, 2], base_values=base,
        post_transform="SOFTMAX"))
    m = model([scaler_node(sc, "x", "xs"), node], 4, clf_outputs(3), "gb")
    onnx.save(m, os.path.join(OUT, "gb.onnx"))

    # multinomial LogisticRegression
    lr = LogisticRegression(C=10.0, max_iter=1000).fit(Xs, y)
    node = fix_outputs(helper.make_node(
        "LinearClassifier", ["xs"], ["label", "probabilities"], domain=ML,
        coefficients=lr.coef_.astype(np.float32).ravel().tolist(),
        intercepts=lr.intercept_.astype(np.float32).tolist(),
        classlabels_ints=[0, 1, 2], multi_class=1, post_transform="SOFTMAX"))
    m = model([scaler_node(sc, "x", "xs"), node], 4, clf_outputs(3), "lr")
    onnx.save(m, os.path.join(OUT, "lr.onnx"))

    # GradientBoostingRegressor of petal width on L2-normalized sepal/petal
    # length features (Scaler -> Normalizer -> TreeEnsembleRegressor)
    nz = Normalizer(norm="l2")
    Xn = nz.transform(Xs[:, :3]).astype(np.float32)
    gbr = GradientBoostingRegressor(n_estimators=6, max_depth=2,
                                    learning_rate=0.5, random_state=0).fit(
                                        Xn, X[:, 3])
    trees = [e[0] for e in gbr.estimators_]
    a = tree_nodes(trees)
    tt, tn, tw = [], [], []
    for ti, t in enumerate(trees):
        for leaf in leaves(t):
            tt.append(ti), tn.append(leaf)
            tw.append(float(gbr.learning_rate * t.tree_.value[leaf][0][0]))
    sel = helper.make_node("Constant", [], ["i3"], value=helper.make_tensor(
        "i3_v", TensorProto.INT64, [3], [0, 1, 2]))
    nodes = [scaler_node(sc, "x", "xs"), sel,
             helper.make_node("ArrayFeatureExtractor", ["xs", "i3"], ["x3"],
                              domain=ML),
             helper.make_node("Normalizer", ["x3"], ["xn"], domain=ML,
                              norm="L2"),
             helper.make_node(
                 "TreeEnsembleRegressor", ["xn"], ["variable"], domain=ML,
                 **{"nodes_" + k: v for k, v in a.items()},
                 target_treeids=tt, target_nodeids=tn,
                 target_ids=[0] * len(tt), target_weights=tw, n_targets=1,
                 base_values=[float(gbr.init_.constant_[0][0])],
                 aggregate_function="SUM", post_transform="NONE")]
    m = model(nodes, 4, [helper.make_tensor_value_info(
        "variable", TensorProto.FLOAT, ["N", 1])], "gbr")
    onnx.save(m, os.path.join(OUT, "gbr.onnx"))

    # LinearRegression of petal width from the other three
    lin = LinearRegression().fit(Xs[:, :3], X[:, 3])
    w = np.concatenate([lin.coef_, [0.0]]).astype(np.float32)
    nodes = [scaler_node(sc, "x", "xs"),
             helper.make_node("LinearRegressor", ["xs"], ["variable"],
                              domain=ML, coefficients=w.tolist(),
                              intercepts=[float(lin.intercept_)], targets=1)]
    m = model(nodes, 4, [helper.make_tensor_value_info(
        "variable", TensorProto.FLOAT, ["N", 1])], "linreg")
    onnx.save(m, os.path.join(OUT, "linreg.onnx"))
    # malformed trees the engine must refuse (tests/ml/check.mjs)
    def bad_tree(name, **kw):
        a = dict(nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2],
                 nodes_featureids=[1, 0, 0], nodes_values=[0.5, 0.0, 0.0],
                 nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"],
                 nodes_truenodeids=[1, 0, 0], nodes_falsenodeids=[2, 0, 0],
                 class_treeids=[0, 0], class_nodeids=[1, 2],
                 class_ids=[0, 1], class_weights=[1.0, 1.0],
                 classlabels_int64s=[0, 1, 2])
        a.update(kw)
        node = helper.make_node("TreeEnsembleClassifier", ["x"],
                                ["probabilities", "label"], domain=ML, **a)
        g = helper.make_graph([node], name, [helper.make_tensor_value_info(
            "x", TensorProto.FLOAT, ["N", 4])], clf_outputs(3))
        m = helper.make_model(g, opset_imports=[
            helper.make_opsetid("", 17), helper.make_opsetid(ML, 3)])
        m.ir_version = 8
        onnx.save(m, os.path.join(OUT, name + ".onnx"))
    bad_tree("bad_child", nodes_falsenodeids=[7, 0, 0])
    bad_tree("bad_self", nodes_truenodeids=[0, 0, 0])
    bad_tree("bad_cycle", nodes_modes=["BRANCH_LEQ", "BRANCH_LEQ", "LEAF"],
             nodes_truenodeids=[1, 0, 0], nodes_falsenodeids=[2, 2, 0])
    bad_tree("bad_feature", nodes_featureids=[4, 0, 0])
    bad_tree("bad_class", class_ids=[0, 3])
    bad_tree("bad_mode", nodes_modes=["BRANCH_XX", "LEAF", "LEAF"])
    print("wrote", OUT)


if __name__ == "__main__":
    main()
