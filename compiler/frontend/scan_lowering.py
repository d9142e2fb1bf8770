"""The recurrent form: an ONNX Scan whose body is a linear state update.

Rather than matching the body's ops (Einsum, MatMul, Mul/ReduceSum, real and
imaginary parts ... all appear in practice), the body is *measured*: onnx's
reference evaluator runs it once on a batch of probes (zero, every unit state
and input vector, random vectors). That gives A, B, C, D exactly for a
linear body, and the random probes prove linearity or refuse the node. The
per-channel (S4D) structure is then read off the coupling graph; a body
whose channels are coupled, or that maps H inputs to another number of
outputs, is a MIMO state space (one shared state, op `mimo`).
"""
from __future__ import annotations

import networkx as nx
import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from s4dc.errors import UnsupportedPatternError, first_line
from s4dc.frontend.lower import Frontend, where
from s4dc.frontend.handlers import _attr, handles
from s4dc.frontend.values import PROBE_BATCHES, Act, Const, Sym

MAX_PROBED_STATES = 4096  # the probe batch is S + H rows of S values each


def _fail(node, what: str) -> UnsupportedPatternError:
    return UnsupportedPatternError(f"{where(node)}: {what}")


def _outer_names(body: onnx.GraphProto) -> set[str]:
    """Names the body reads from the enclosing scope."""
    defined = {i.name for i in body.input} | {i.name for i in body.initializer}
    used: set[str] = set()
    for n in body.node:
        used.update(x for x in n.input if x)
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                used |= _outer_names(a.g)
        defined.update(n.output)
    return used - defined


def _state_shape(fe: Frontend, node, v) -> tuple[int, ...]:
    """The per-sample shape of an initial state, checked to be all zeros. A
    state built from the input's shape (Sym) has the probe batch first; a
    constant one has the file's batch first where the input fixes it (torch
    exports a static batch as a (batch, ...) zeros initializer)."""
    if isinstance(v, Act):
        raise _fail(node, "initial state computed from activation values")
    arr = v.values[0] if isinstance(v, Sym) else v.value
    if np.any(arr != 0):
        raise _fail(node, "initial state is not zero; S4D layers start from a zero state")
    if isinstance(v, Const) and fe.batch and (arr.ndim == 0 or arr.shape[0] != fe.batch):
        raise _fail(node, f"initial state of shape {arr.shape} does not start with the input's batch size "
                          f"{fe.batch}; a Scan state is (batch, ...)")
    batch = PROBE_BATCHES[0] if isinstance(v, Sym) else fe.batch or PROBE_BATCHES[0]
    return tuple(arr.shape[1:] if arr.ndim and arr.shape[0] == batch else arr.shape)


@handles("Scan")
def lower_scan(fe: Frontend, node: onnx.NodeProto, ins: list) -> list:
    body: onnx.GraphProto = _attr(node, "body")
    m = _attr(node, "num_scan_inputs")
    if not isinstance(body, onnx.GraphProto):
        raise _fail(node, "has no body graph")
    if m != 1:
        raise _fail(node, f"{m} scan inputs; s4dc maps a Scan over one input sequence")
    n_state = len(ins) - m
    if n_state < 0 or any(v is None for v in ins):
        raise _fail(node, f"has {len(ins)} inputs (some empty); a Scan takes its states, then the scanned input")
    if len(body.input) != len(ins) or len(body.output) != len(node.output) or len(node.output) <= n_state:
        raise _fail(node, f"the body has {len(body.input)} inputs and {len(body.output)} outputs; the node has "
                          f"{len(ins)} inputs and {len(node.output)} outputs")
    if any(d != 0 for d in (_attr(node, "scan_input_directions") or []) + (_attr(node, "scan_output_directions") or [])):
        raise _fail(node, "reverse-direction scan; Loihi 2 runs forward in time")
    u = ins[n_state]
    if not isinstance(u, Act) or u.padded:
        raise _fail(node, "the scanned input must be an activation")
    in_axis = (_attr(node, "scan_input_axes") or [0])[0] % len(u.axes)
    if u.axes[in_axis] != "T":
        raise _fail(node, f"scans axis {in_axis} ({u.axes[in_axis]}) of a {u.axes} activation, not time")
    step_axes = u.axes[:in_axis] + u.axes[in_axis + 1:]
    if not step_axes or step_axes[0] != "B":
        raise _fail(node, "the per-step input must have the batch axis first")
    state_shapes = [_state_shape(fe, node, v) for v in ins[:n_state]]
    n_scan_out = len(node.output) - n_state
    used = [i for i in range(n_scan_out)
            if node.output[n_state + i] and (fe.readers.get(node.output[n_state + i]) or
                                             node.output[n_state + i] in fe.graph_outputs)]
    for i in range(n_state):
        o = node.output[i]
        if o and (fe.readers.get(o) or o in fe.graph_outputs):
            raise _fail(node, "the final state is read after the scan; only per-step outputs map")
    if len(used) != 1:
        raise _fail(node, f"{len(used)} scan outputs are used; s4dc maps exactly one")
    k_out = used[0]

    # -- measure the body ------------------------------------------------------
    sizes = [int(np.prod(s)) for s in state_shapes]
    S, H = sum(sizes), u.features
    if S > MAX_PROBED_STATES:
        raise _fail(node, f"state of {S} values is too large to probe (max {MAX_PROBED_STATES}); "
                          "export the canonical or the convolution form instead")
    rng = np.random.default_rng(0)
    r1, r2 = rng.standard_normal((2, S + H))
    probes = np.concatenate([np.zeros((1, S + H)), np.eye(S + H), np.stack([r1, r2, r1 + r2, 3 * r1])])
    outs = _run_body(fe, node, body, probes, state_shapes, step_axes, u, n_state)
    for o, shape in zip(outs[:n_state], state_shapes):  # the body must keep the batch and the states' shapes
        if o.shape != (len(probes),) + tuple(shape):
            raise _fail(node, f"the body turns a state of shape {tuple(shape)} per sample into {o.shape[1:]} "
                              "(or drops the batch axis)")
    if len(outs) <= n_state + k_out or np.ndim(outs[n_state + k_out]) < 1 \
            or np.shape(outs[n_state + k_out])[0] != len(probes):
        raise _fail(node, "the body's per-step output does not keep the batch axis")
    new_state = np.concatenate([o.reshape(len(probes), -1) for o in outs[:n_state]], axis=1)
    y_raw = outs[n_state + k_out]
    y = y_raw.reshape(len(probes), -1)
    f = np.concatenate([new_state, y], axis=1).astype(np.float64)
    if not np.isfinite(f).all():
        raise _fail(node, "the body gives NaN or Inf on a probe (state, input); s4dc maps linear state "
                          "updates x' = A x + B u, y = C x + D u")
    f0, cols, rnd = f[0], f[1:1 + S + H] - f[0], f[1 + S + H:]
    # Each block (the new state, then the output) against its own size: a
    # nonlinear output read from large states would hide under the states' scale.
    dev = 0.0
    for blk in (slice(0, S), slice(S, f.shape[1])):
        scale = max(float(np.abs(f[:, blk]).max(initial=0.0)), 1e-30)
        dev = max(dev, float(np.abs(rnd[0, blk] + rnd[1, blk] - f0[blk] - rnd[2, blk]).max(initial=0.0)) / scale,
                  float(np.abs(3 * rnd[0, blk] - 2 * f0[blk] - rnd[3, blk]).max(initial=0.0)) / scale)
    if dev > 1e-4:
        raise _fail(node, f"the body is not linear in (state, input) (deviation {dev:.2g}); s4dc maps "
                          "linear state updates x' = A x + B u, y = C x + D u")
    scale = max(float(np.abs(f[:, :S]).max(initial=0.0)), 1e-30)
    if np.abs(f0[:S]).max(initial=0.0) > 1e-6 * scale:
        # From a zero state and input, a time-invariant linear body stays at zero;
        # a counter (x' = x + 1) or any drive of its own makes the update time-varying.
        raise _fail(node, f"the state update has a constant term (|x'| = {np.abs(f0[:S]).max():.3g} from a zero "
                          "state and input): the body is time-varying; s4dc maps time-invariant x' = A x + B u")
    A, B = cols[:S, :S].T, cols[S:, :S].T
    C_old, D_old, y_bias = cols[:S, S:].T, cols[S:, S:].T, f0[S:]
    Hout = y.shape[1]
    # The body's output may read the old state; the IR reads the new one:
    # y = C_old x_old + D_old u = C (A x_old + B u) + D u  =>  C = C_old A^-1.
    reads_old = bool(np.abs(C_old).max(initial=0) > 0)
    if reads_old:
        cond = np.linalg.cond(A) if S else 1.0
        if np.isfinite(cond) and cond <= 1e10:
            C = np.linalg.solve(A.T, C_old.T).T
        else:
            # A singular: an output of the new state (C_old = C A) still has a
            # C, any solution giving the same y; one that reads what A
            # annihilates (the old state itself) has none.
            C = np.linalg.lstsq(A.T, C_old.T, rcond=None)[0].T
            if np.abs(C @ A - C_old).max() > 1e-6 * np.abs(C_old).max():
                raise _fail(node, f"the output reads the old state and A is singular (condition {cond:.3g}): "
                                  "the new state does not determine it")
        D = D_old - C @ B
    else:
        C, D = C_old, D_old
    channels = _split_channels(A, B, C, D, H, max(u.time, 1)) if Hout == H else None
    if channels is None:  # coupled, or H -> Hout: one shared state (MIMO), diagonalized later
        t = fe.emit(node, "mimo", [u.tensor], Hout, True,
                    params={"A": A.copy(), "B": B.copy(), "C": C.copy(), "D": D.copy(), "bias": y_bias.copy()},
                    attrs={"form": "dense", "time": "discrete", "folded": False})
        return _scan_outputs(node, t, y_raw, Hout, u, n_scan_out, n_state, k_out)
    N = max((len(s) for s in channels), default=0)
    Ah, Bh, Ch = np.zeros((H, N, N)), np.zeros((H, N)), np.zeros((H, N))
    for h, idx in enumerate(channels):
        n = len(idx)
        Ah[h, :n, :n] = A[np.ix_(idx, idx)]
        Bh[h, :n], Ch[h, :n] = B[idx, h], C[h, idx]
    t = fe.emit(node, "ssm", [u.tensor], H, True,
                params={"A": Ah, "B": Bh, "C": Ch, "D": np.diag(D).copy(), "bias": y_bias.copy()},
                attrs={"form": "dense", "time": "discrete", "folded": False})
    return _scan_outputs(node, t, y_raw, H, u, n_scan_out, n_state, k_out)


def _scan_outputs(node, t: str, y_raw: np.ndarray, H: int, u: Act, n_scan_out: int, n_state: int,
                  k_out: int) -> list:
    """The node's outputs: the layer's tensor `t` (H features) as the used scan output."""
    # Labels of the per-step output, then the time axis where Scan stacks it.
    y_axes = ["B"] + ["F" if d == H and H != 1 else "1" for d in y_raw.shape[1:]]
    if H == 1 and "F" not in y_axes and len(y_axes) > 1:
        y_axes[-1] = "F"
    out_axis = (_attr(node, "scan_output_axes") or [0] * n_scan_out)[k_out] % (len(y_axes) + 1)
    y_axes.insert(out_axis, "T")
    outs_v = [None] * len(node.output)
    outs_v[n_state + k_out] = Act(t, tuple(y_axes), H, u.time)
    return outs_v


def _run_body(fe, node, body, probes, state_shapes, step_axes, u, n_state) -> list[np.ndarray]:
    P = len(probes)
    feeds, off = {}, 0
    for inp, shp in zip(body.input[:n_state], state_shapes):
        size = int(np.prod(shp))
        feeds[inp.name] = probes[:, off:off + size].reshape((P,) + tuple(shp)).astype(np.float32)
        off += size
    step_shape = tuple(1 if a == "1" else u.features for a in step_axes[1:])
    feeds[body.input[n_state].name] = probes[:, off:].reshape((P,) + step_shape).astype(np.float32)
    g = onnx.GraphProto()
    g.CopyFrom(body)
    for name in sorted(_outer_names(body)):
        v = fe.values.get(name)
        if not isinstance(v, Const):
            raise _fail(node, f"the body reads '{name}' from outside, which is not a constant")
        g.initializer.append(numpy_helper.from_array(np.asarray(v.value), name))
    # Body shapes are written for the real batch; the probes use their own.
    for vi in list(g.input) + list(g.output):
        vi.type.tensor_type.ClearField("shape")
    del g.value_info[:]
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", fe.opset)])
    try:
        ev = ReferenceEvaluator(model)
    except Exception as e:
        raise _fail(node, f"cannot evaluate the Scan body ({first_line(e)})") from None
    chunk = fe.batch
    if chunk:  # all probes in one run first: a fixed batch is usually only in the initial state
        try:
            outs = _evaluate(ev, feeds)
            if all(o.ndim and o.shape[0] == P for o in outs):
                return outs
        except Exception:  # noqa: BLE001 - the body may be tied to its batch; retried below
            pass
    else:
        chunk = P
    # A body exported for a fixed batch may carry it in its constants
    # (reshape targets, zeros): then run the probes that many at a time.
    try:
        runs = [_evaluate(ev, {k: _rows(v, i, chunk) for k, v in feeds.items()}) for i in range(0, P, chunk)]
    except Exception as e:
        raise _fail(node, f"cannot evaluate the Scan body ({first_line(e)})") from None
    if len(runs) == 1:
        return runs[0]
    if any(o.ndim == 0 or o.shape[0] != chunk for o in runs[0]):
        raise _fail(node, f"the body's outputs {[o.shape for o in runs[0]]} at batch {chunk} do not keep the "
                          "batch axis first")
    return [np.concatenate([r[j] for r in runs])[:P] for j in range(len(runs[0]))]


def _evaluate(ev: ReferenceEvaluator, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(o) for o in ev.run(None, feeds)]


def _rows(v: np.ndarray, start: int, n: int) -> np.ndarray:
    """Rows start..start+n of `v`, padded with zero rows to n."""
    part = v[start:start + n]
    return part if len(part) == n else np.concatenate([part, np.zeros((n - len(part),) + v.shape[1:], v.dtype)])


def _split_channels(A, B, C, D, H, L: int) -> list[list[int]] | None:
    """States of each channel, from the coupling graph; None where channels
    are coupled (the body is then a MIMO state space). A split is kept only
    if the channels alone give the whole system's impulse response over the
    L steps of the window: dropping an entry as rounding must not drop a
    coupling."""
    S = A.shape[0]
    # Probing runs in the body's float32: treat what float32 rounding leaves of
    # each matrix as zero, against that matrix's own largest entry.
    def big(M):
        return np.abs(M) > 1e-5 * max(float(np.abs(M).max(initial=0.0)), 1e-30)

    g = nx.Graph()
    g.add_nodes_from(("s", i) for i in range(S))
    g.add_nodes_from(("c", h) for h in range(H))
    for i, j in zip(*np.nonzero(big(A))):
        g.add_edge(("s", int(i)), ("s", int(j)))
    for i, h in zip(*np.nonzero(big(B))):
        g.add_edge(("s", int(i)), ("c", int(h)))
    for h, i in zip(*np.nonzero(big(C))):
        g.add_edge(("s", int(i)), ("c", int(h)))
    if big(D)[~np.eye(H, dtype=bool)].any():
        return None
    channels: list[list[int]] = [[] for _ in range(H)]
    for comp in sorted((sorted(c) for c in nx.connected_components(g)), key=lambda c: c[0]):
        chans = sorted(i for kind, i in comp if kind == "c")
        states = sorted(i for kind, i in comp if kind == "s")
        if len(chans) > 1:
            return None
        if chans:
            channels[chans[0]] = states
    return channels if _split_is_exact(A, B, C, D, channels, L) else None


# The largest impulse-response check of a channel split (multiply-adds):
# past it the split rests on the per-matrix thresholds alone (a MIMO layer
# of every state instead would cost far more than the check).
MAX_SPLIT_CHECK = 2e9


def _split_is_exact(A, B, C, D, channels: list[list[int]], L: int) -> bool:
    """Whether the per-channel systems reproduce (A, B, C, D)'s impulse
    response (H, H, L) to 1e-5 of its largest tap. Where the split dropped
    only exact zeros (a per-channel body) it is exact as it stands."""
    As, Bs, Cs = np.zeros_like(A), np.zeros_like(B), np.zeros_like(C)
    for h, idx in enumerate(channels):
        As[np.ix_(idx, idx)], Bs[idx, h], Cs[h, idx] = A[np.ix_(idx, idx)], B[idx, h], C[h, idx]
    Ds = np.diag(np.diag(D))
    if np.array_equal(As, A) and np.array_equal(Bs, B) and np.array_equal(Cs, C) and np.array_equal(Ds, D):
        return True
    if A.shape[0] ** 2 * B.shape[1] * L > MAX_SPLIT_CHECK:
        return True
    X, Xs = B.copy(), Bs   # the state after an impulse at step 0 (the IR reads the new state)
    full, split = [D + C @ X], [Ds + Cs @ Xs]
    for _ in range(1, L):
        X, Xs = A @ X, As @ Xs
        full.append(C @ X)
        split.append(Cs @ Xs)
    K, Ks = np.stack(full), np.stack(split)
    return bool(np.abs(K - Ks).max(initial=0.0) <= 1e-5 * max(float(np.abs(K).max(initial=0.0)), 1e-30))
