#!/usr/bin/python3
"""LSTM / GRU / RNN cases beyond ONNX's node tests, with ONNX's own references.

libonnx-testdata's LSTM/GRU node tests cover the forward direction only,
without reverse or bidirectional runs, sequence_lens, or layout 1 with
states. The references here are ONNX's own numpy implementations
(onnx.backend.test.case.node.lstm.LSTM_Helper, gru.GRU_Helper and
rnn.RNN_Helper, the code
that made those node tests), applied item by item and direction by
direction, as the operator spec defines the general case: batch item b
runs on its first sequence_lens[b] steps (a reverse direction on those
steps reversed, its outputs put back in time order), Y is zero past the
length, Y_h / Y_c are the states after the last valid step. Y_c is the
cell state that LSTM_Helper passes to its output activation at the last
step. The *_states cases output (Y_h + Y_c) * Y_h (GRU: 2 Y_h^2), so that
the finite-difference check reaches the final-state gradients too.

Node-test layout: model.onnx + test_data_set_0/{input_0,output_*}.pb; X is
the only graph input, everything else an initializer. Gradients through
these models are checked by finite differences in
tests/grad/test_grad_models.c (grad.models).

Usage: /usr/bin/python3 tools/gen_rnn_cases.py tests/onnx/rnn_extra
(deterministic: fixed seeds).
"""
import sys

import numpy as np
from onnx import helper, numpy_helper, TensorProto
from onnx.backend.test.case.node.gru import GRU_Helper
from onnx.backend.test.case.node.lstm import LSTM_Helper
from onnx.backend.test.case.node.rnn import RNN_Helper

from nodecase import write_case


class LSTMWithC(LSTM_Helper):
    """LSTM_Helper that remembers the cell state of its last step."""

    def h(self, x):
        self.last_c = x
        return np.tanh(x)


def run_item(kind, x, W, R, Bv, P, h0, c0, lbr):
    """One direction, one batch item (x: L x 1 x I): Y (L x H), Y_h, Y_c."""
    params = dict(X=x, W=W[None], R=R[None], B=Bv[None], initial_h=h0[None, None])
    if kind == "LSTM":
        params["initial_c"] = c0[None, None]
        if P is not None:
            params["P"] = P[None]
        hlp = LSTMWithC(**params)
        y, yh = hlp.step()
        return y[:, 0, 0], yh[0, 0], hlp.last_c[0]
    if kind == "RNN":
        y, yh = RNN_Helper(**params).step()
        return y[:, 0, 0], yh[0, 0], None
    params["linear_before_reset"] = lbr
    y, yh = GRU_Helper(**params).step()
    return y[:, 0, 0], yh[0, 0], None


def make_case(name, kind, S, B, I, H, direction, layout, lens, init, lbr, peep, seed):
    rng = np.random.default_rng(seed)
    D = 2 if direction == "bidirectional" else 1
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[kind]
    W = (0.5 * rng.standard_normal((D, G * H, I))).astype(np.float32)
    R = (0.5 * rng.standard_normal((D, G * H, H))).astype(np.float32)
    Bv = (0.3 * rng.standard_normal((D, 2 * G * H))).astype(np.float32)
    P = (0.3 * rng.standard_normal((D, 3 * H))).astype(np.float32) if peep else None
    x = rng.standard_normal((S, B, I)).astype(np.float32)
    h0 = (0.5 * rng.standard_normal((D, B, H))).astype(np.float32) if init else None
    c0 = (0.5 * rng.standard_normal((D, B, H))).astype(np.float32) if init and kind == "LSTM" else None
    lens_a = np.array(lens if lens else [S] * B, dtype=np.int64)
    Y = np.zeros((S, D, B, H), np.float32)
    Yh = np.zeros((D, B, H), np.float32)
    Yc = np.zeros((D, B, H), np.float32)
    for d in range(D):
        rev = direction == "reverse" or d == 1
        for b in range(B):
            L = int(lens_a[b])
            hb = h0[d, b] if h0 is not None else np.zeros(H, np.float32)
            cb = c0[d, b] if c0 is not None else np.zeros(H, np.float32)
            if L == 0:
                Yh[d, b], Yc[d, b] = hb, cb
                continue
            seq = x[:L, b:b + 1]
            if rev:
                seq = seq[::-1]
            y, yh, yc = run_item(kind, np.ascontiguousarray(seq), W[d], R[d], Bv[d],
                                 P[d] if P is not None else None, hb, cb, lbr)
            Y[:L, d, b] = y[::-1] if rev else y
            Yh[d, b] = yh
            if yc is not None:
                Yc[d, b] = yc
    x_in = x
    if layout:  # X B S I, Y B S D H, states B D H
        x_in = x.transpose(1, 0, 2)
        Y = Y.transpose(2, 0, 1, 3)
        Yh, Yc = Yh.transpose(1, 0, 2), Yc.transpose(1, 0, 2)
        h0 = h0.transpose(1, 0, 2) if h0 is not None else None
        c0 = c0.transpose(1, 0, 2) if c0 is not None else None
    inits = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R"),
             numpy_helper.from_array(Bv, "B")]
    ins = ["X", "W", "R", "B", "", "", "", ""]
    for slot, nm, arr in ((4, "lens", lens_a if lens else None), (5, "h0", h0), (6, "c0", c0),
                          (7, "P", P)):
        if arr is not None:
            inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), nm))
            ins[slot] = nm
    ins = ins[:8 if kind == "LSTM" else 6]
    while ins[-1] == "":
        ins.pop()
    outs = ["Y", "Y_h"] + (["Y_c"] if kind == "LSTM" else [])
    refs = [Y, Yh] + ([Yc] if kind == "LSTM" else [])
    attrs = dict(hidden_size=H, direction=direction, layout=layout)
    if kind == "GRU":
        attrs["linear_before_reset"] = lbr
    if seed % 2:  # some exporters write the default activations out
        attrs["activations"] = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"],
                                "RNN": ["Tanh"]}[kind] * D
    nodes = [helper.make_node(kind, ins, outs, **attrs)]
    if name.endswith("_states"):  # one output reading the final states (FD of Y_h/Y_c)
        nodes.append(helper.make_node("Add", ["Y_h", outs[-1]], ["S"]))
        nodes.append(helper.make_node("Mul", ["S", "Y_h"], ["Z"]))
        outs, refs = ["Z"], [(refs[1] + refs[-1]) * refs[1]]
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_in.shape)],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, v.shape) for o, v in zip(outs, refs)],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)],
                              producer_name="gen_rnn_cases")
    model.ir_version = 8
    return model, x_in, outs, refs


CASES = [
    # name, kind, S, B, I, H, direction, layout, lens, initial states, lbr, peepholes, seed
    ("lstm_bidirectional_lens", "LSTM", 5, 3, 4, 6, "bidirectional", 0, [5, 3, 1], True, 0, False, 11),
    ("lstm_reverse_layout1", "LSTM", 4, 2, 3, 5, "reverse", 1, [2, 4], True, 0, True, 12),
    ("lstm_forward_lens_nostate", "LSTM", 6, 3, 2, 4, "forward", 0, [6, 0, 4], False, 0, False, 13),
    ("lstm_bidirectional_layout1_peep", "LSTM", 3, 2, 5, 3, "bidirectional", 1, None, True, 0, True, 14),
    ("gru_bidirectional_lens", "GRU", 5, 3, 4, 6, "bidirectional", 0, [5, 2, 4], True, 0, False, 21),
    ("gru_reverse_layout1_lbr", "GRU", 4, 2, 3, 5, "reverse", 1, [3, 4], True, 1, False, 22),
    ("gru_bidirectional_lbr", "GRU", 6, 2, 3, 4, "bidirectional", 0, [6, 1], False, 1, False, 23),
    ("gru_forward_layout1", "GRU", 4, 3, 2, 3, "forward", 1, None, True, 0, False, 24),
    ("lstm_bidirectional_states", "LSTM", 4, 3, 2, 3, "bidirectional", 0, [4, 2, 3], True, 0, True, 15),
    ("gru_bidirectional_states", "GRU", 4, 3, 2, 3, "bidirectional", 1, [4, 2, 3], True, 1, False, 25),
    ("rnn_bidirectional_lens", "RNN", 5, 3, 4, 6, "bidirectional", 0, [5, 3, 0], True, 0, False, 31),
    ("rnn_reverse_layout1", "RNN", 4, 2, 3, 5, "reverse", 1, [2, 4], False, 0, False, 32),
    ("rnn_bidirectional_states", "RNN", 4, 3, 2, 3, "bidirectional", 1, [4, 1, 3], True, 0, False, 35),
]


def main():
    root = sys.argv[1]
    for name, *args in CASES:
        model, x, outs, refs = make_case(name, *args)
        write_case(root, "test_" + name, model, [([("X", x)], list(zip(outs, refs)))])
    print("wrote %d cases under %s" % (len(CASES), root))


if __name__ == "__main__":
    main()
