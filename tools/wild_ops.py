#!/usr/bin/python3
"""Describes ONNX models for tests/wild/README.md: opsets, inputs/outputs
(name, type, shape), initializer dtypes and the ops used, subgraphs (If/Loop
branches) included.  Needs Debian's python3-onnx.

usage: /usr/bin/python3 tools/wild_ops.py MODEL.onnx...
"""
import collections
import sys

import onnx
from onnx import TensorProto


def walk(graph, counts):
    """Counts the op types of graph and of every subgraph inside it."""
    for node in graph.node:
        key = node.op_type if node.domain in ("", "ai.onnx") else node.domain + ":" + node.op_type
        counts[key] += 1
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                walk(attr.g, counts)
            for g in attr.graphs:
                walk(g, counts)


def value_desc(v):
    """name: dtype[d0,d1,...] with symbolic dims by name."""
    t = v.type.tensor_type
    dims = [d.dim_param or str(d.dim_value) if (d.dim_param or d.HasField("dim_value")) else "?"
            for d in t.shape.dim]
    return "%s: %s[%s]" % (v.name, TensorProto.DataType.Name(t.elem_type).lower(), ",".join(dims))


def main():
    for path in sys.argv[1:]:
        m = onnx.load(path)
        inits = {i.name for i in m.graph.initializer}
        counts = collections.Counter()
        walk(m.graph, counts)
        dtypes = collections.Counter(TensorProto.DataType.Name(i.data_type).lower()
                                     for i in m.graph.initializer)
        print("## %s" % path)
        print("producer: %s %s; opsets: %s" % (
            m.producer_name, m.producer_version,
            ", ".join("%s=%d" % (o.domain or "ai.onnx", o.version) for o in m.opset_import)))
        for v in m.graph.input:
            if v.name not in inits:
                print("input  " + value_desc(v))
        for v in m.graph.output:
            print("output " + value_desc(v))
        print("initializers: " + ", ".join("%s x%d" % kv for kv in sorted(dtypes.items())))
        print("ops: " + ", ".join("%s x%d" % kv for kv in sorted(counts.items())))
        print()


if __name__ == "__main__":
    main()
