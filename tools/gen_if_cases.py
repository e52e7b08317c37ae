#!/usr/bin/python3
"""If (control flow) cases in the node-test layout, numpy references.

libonnx-testdata has one plain If test (test_if, a bool graph input that
onnx-check binds as a constant, so the branch is folded at plan time). This
writes the shapes real exports take:
  - if_data_dependent: the condition is computed from the float input
    (ReduceSum(x) > 0), the branches read outer-scope values, define an
    initializer of their own, reuse one internal name ("t") in both
    branches, and the else branch holds a nested data-dependent If; three
    data sets take then, else/then and else/else;
  - if_sample_rate: a voice-activity-detector pattern, If(sr == 16000)
    with sr an int64 input (bound as a constant): the untaken branch
    reshapes x to a shape that does not fit, so it must not be planned;
  - if_two_outputs: two outputs per branch, one an outer value passed
    through unchanged.
tests/grad/test_grad_models.c checks gradients through the data-dependent
case by finite differences.

Given a second directory it also writes models the loader or planner must
refuse with exit 2 and a clear message (a branch with the wrong output
count, a missing else_branch, branches of different shapes under a
data-dependent condition, a branch reading its sibling's value, nesting
deeper than the loader's cap, an unsupported op inside a branch), with
expect.txt listing each case's message regex.

Usage: /usr/bin/python3 tools/gen_if_cases.py tests/onnx/if_extra tests/onnx/if_bad
(deterministic: a fixed seed).
"""
import os
import sys

import numpy as np
from onnx import helper, numpy_helper, TensorProto

from nodecase import write_case

F = TensorProto.FLOAT


def vi(name, shape, t=F):
    return helper.make_tensor_value_info(name, t, shape)


def f32(name, a):
    return numpy_helper.from_array(np.asarray(a, dtype=np.float32), name)


def i64(name, a):
    return numpy_helper.from_array(np.asarray(a, dtype=np.int64), name)


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def data_dependent(rng):
    w = rng.standard_normal((2, 3)).astype(np.float32)
    then_g = helper.make_graph(
        [helper.make_node("Mul", ["x", "x"], ["t"]),
         helper.make_node("Add", ["t", "wt"], ["then_y"])],
        "then", [], [vi("then_y", [2, 3])], initializer=[f32("wt", w)])
    inner_then = helper.make_graph(
        [helper.make_node("Tanh", ["t"], ["it_y"])], "inner_then", [], [vi("it_y", [2, 3])])
    inner_else = helper.make_graph(
        [helper.make_node("Neg", ["t"], ["n"]),
         helper.make_node("Mul", ["n", "x"], ["ie_y"])], "inner_else", [], [vi("ie_y", [2, 3])])
    else_g = helper.make_graph(
        [helper.make_node("Sigmoid", ["x"], ["t"]),
         helper.make_node("ReduceMax", ["x"], ["mx"], keepdims=0),
         helper.make_node("Less", ["mx", "half"], ["c2"]),
         helper.make_node("If", ["c2"], ["else_y"], then_branch=inner_then,
                          else_branch=inner_else, name="inner_if")],
        "else", [], [vi("else_y", [2, 3])])
    nodes = [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
             helper.make_node("Greater", ["s", "zero"], ["c"]),
             helper.make_node("If", ["c"], ["y0"], then_branch=then_g,
                              else_branch=else_g, name="outer_if"),
             helper.make_node("Mul", ["y0", "x"], ["y"])]
    graph = helper.make_graph(nodes, "if_data_dependent", [vi("x", [2, 3])], [vi("y", [2, 3])],
                              initializer=[f32("zero", 0.0), f32("half", 0.5)])

    def ref(x):
        if x.sum() > 0:
            y0 = x * x + w
        else:
            t = sigmoid(x)
            y0 = np.tanh(t) if x.max() < 0.5 else -t * x
        return (y0 * x).astype(np.float32)

    xs = [np.abs(rng.standard_normal((2, 3))).astype(np.float32) + 0.1,
          -np.abs(rng.standard_normal((2, 3))).astype(np.float32) - 0.1,
          np.array([[-3.0, -2.5, 0.9], [-1.0, 0.7, -2.0]], dtype=np.float32)]
    return "if_data_dependent", graph, 13, [[("x", x)] for x in xs], [[("y", ref(x))] for x in xs]


def sample_rate(rng):
    x = rng.standard_normal((1, 8)).astype(np.float32)
    then_g = helper.make_graph(
        [helper.make_node("Reshape", ["x", "s16"], ["r"]),
         helper.make_node("Relu", ["r"], ["then_y"])],
        "then", [], [vi("then_y", [2, 4])], initializer=[i64("s16", [2, 4])])
    else_g = helper.make_graph(  # 8 elements never fit 3 x 3
        [helper.make_node("Reshape", ["x", "s8"], ["r"]),
         helper.make_node("Abs", ["r"], ["else_y"])],
        "else", [], [vi("else_y", [3, 3])], initializer=[i64("s8", [3, 3])])
    nodes = [helper.make_node("Equal", ["sr", "k16000"], ["c"]),
             helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g,
                              name="sr_if")]
    graph = helper.make_graph(nodes, "if_sample_rate",
                              [vi("x", [1, 8]), vi("sr", [], TensorProto.INT64)],
                              [vi("y", [2, 4])], initializer=[i64("k16000", 16000)])
    return ("if_sample_rate", graph, 16,
            [[("x", x), ("sr", np.array(16000, dtype=np.int64))]],
            [[("y", np.maximum(x.reshape(2, 4), 0))]])


def two_outputs(rng):
    then_g = helper.make_graph(
        [helper.make_node("Exp", ["x"], ["a"])], "then", [],
        [vi("a", [3]), vi("x", [3])])
    else_g = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["b"]), helper.make_node("Abs", ["x"], ["c"])],
        "else", [], [vi("b", [3]), vi("c", [3])])
    nodes = [helper.make_node("ReduceMin", ["x"], ["m"], keepdims=0),
             helper.make_node("Greater", ["m", "zero"], ["cnd"]),
             helper.make_node("If", ["cnd"], ["y", "z"], then_branch=then_g,
                              else_branch=else_g, name="two_if")]
    graph = helper.make_graph(nodes, "if_two_outputs", [vi("x", [3])],
                              [vi("y", [3]), vi("z", [3])], initializer=[f32("zero", 0.0)])
    xs = [np.array([0.5, 1.0, 2.0], np.float32), np.array([-0.5, 1.0, 2.0], np.float32)]
    outs = []
    for x in xs:
        if x.min() > 0:
            outs.append([("y", np.exp(x)), ("z", x)])
        else:
            outs.append([("y", -x), ("z", np.abs(x))])
    return "if_two_outputs", graph, 13, [[("x", x)] for x in xs], outs


def bad_models():
    """Malformed or unsupported If models: (name, graph, input x, message regex
    that tests/onnx/CMakeLists.txt expects with exit code 2)."""
    def g(name, branch_t, branch_e):
        nodes = [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
                 helper.make_node("Greater", ["s", "zero"], ["c"])]
        attrs = {"then_branch": branch_t}
        if branch_e is not None:
            attrs["else_branch"] = branch_e
        nodes.append(helper.make_node("If", ["c"], ["y"], name="bad_if", **attrs))
        return helper.make_graph(nodes, name, [vi("x", [2])], [vi("y", [2])],
                                 initializer=[f32("zero", 0.0)])
    neg = helper.make_graph([helper.make_node("Neg", ["x"], ["a"])], "t", [], [vi("a", [2])])
    two = helper.make_graph([helper.make_node("Neg", ["x"], ["a"]),
                             helper.make_node("Abs", ["x"], ["b"])], "e", [],
                            [vi("a", [2]), vi("b", [2])])
    cat = helper.make_graph([helper.make_node("Concat", ["x", "x"], ["a"], axis=0)], "e", [],
                            [vi("a", [4])])
    sib_t = helper.make_graph([helper.make_node("Neg", ["x"], ["tmp"])], "t", [], [vi("tmp", [2])])
    sib_e = helper.make_graph([helper.make_node("Abs", ["tmp"], ["b"])], "e", [], [vi("b", [2])])
    deep = neg
    for k in range(9):
        deep = helper.make_graph(
            [helper.make_node("If", ["c"], ["a%d" % k], then_branch=deep, else_branch=deep)],
            "n%d" % k, [], [vi("a%d" % k, [2])])
    det = helper.make_graph([helper.make_node("Det", ["x"], ["a"])], "e", [], [vi("a", [2])])
    return [
        ("output_count", g("output_count", neg, two), "else_branch.has.2.outputs"),
        ("no_else", g("no_else", neg, None), "lacks.else_branch"),
        ("shape_mismatch", g("shape_mismatch", neg, cat), "different.shapes"),
        ("sibling_scope", g("sibling_scope", sib_t, sib_e), "undefined.value..tmp"),
        ("too_deep", g("too_deep", deep, neg), "nested.deeper.than"),
        ("unsupported_inside", g("unsupported_inside", neg, det),
         "Det..in.subgraph.of.If.node..bad_if"),
    ]


def main():
    root = sys.argv[1]
    bad_root = sys.argv[2] if len(sys.argv) > 2 else None
    if bad_root:
        x = np.array([1.0, 2.0], np.float32)
        with open(os.path.join(bad_root, "expect.txt"), "w") as f:
            f.write("# case | regex of the exit-2 message (tools/gen_if_cases.py)\n")
            for name, graph, regex in bad_models():
                model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                                          producer_name="gen_if_cases")
                model.ir_version = 8
                write_case(bad_root, name, model, [([("x", x)], [("y", x)])])
                f.write("%s|%s\n" % (name, regex))
    rng = np.random.default_rng(1306)
    cases = [data_dependent(rng), sample_rate(rng), two_outputs(rng)]
    for name, graph, opset, ins, outs in cases:
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                  producer_name="gen_if_cases")
        model.ir_version = 8
        write_case(root, "test_" + name, model, list(zip(ins, outs)))
    print("wrote %d cases under %s" % (len(cases), root))


if __name__ == "__main__":
    main()
