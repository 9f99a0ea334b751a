"""Compiled run loops of the proxy tasks: hand-written losses and gradients, all lrs in one call.

Each ``run_*`` function runs one Program on one task instance at every learning rate of
``lrs``, **side by side in one register file** (:func:`fitness.interpreter.new_registers` with
one copy per lr), and returns ``(loss0, final_losses, status, steps_done)``. Batching the lrs is
what lets a small task pay the interpreter's per-opcode cost once per step for all its runs
instead of once per run. A run whose training loss becomes NaN/inf or climbs above
``ascend * loss0`` stops (status codes below) and is swapped out of the batch, so the others
never pay for it; a bad rule never raises. At step t the lr is ``lrs[k] * factors[t]`` (the
schedule, :mod:`fitness.schedule`); every run of a call sees the same minibatches and noise
(common random numbers).

Each runner allocates, then hands its arrays to a loop compiled without reference counting
(``_HOT``, as the interpreter's step), so that a step of a small task costs no more than its
arithmetic. Matrix products are plain loops over contiguous rows (which vectorise): for these
layers (1 to 64 units) BLAS calls and their allocations cost several times the arithmetic.

Why one file of this length: Numba's cache keys each cached function by the file that defines
it, and the cache folder by the files listed in :mod:`fitness.numba_cache`; every compiled
task loop lives here so that an edit to any of them invalidates the cache.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from fitness.interpreter import LAYOUT_PERSIST, LAYOUT_STRIDE, new_registers, rule_step
from primitives.program import REG_GRAD, REG_WEIGHT

_JIT = dict(cache=True, nogil=True, error_model="numpy")
_HOT = dict(cache=True, nogil=True, error_model="numpy", _nrt=False)
_INLINE = dict(inline="always", nogil=True, error_model="numpy")

STATUS_OK = 0
STATUS_NAN = 1  # loss or weights became NaN/inf
STATUS_ASCENDED = 2  # training loss rose above ascend * loss0

LOSS_SOFTMAX_CE = 0
LOSS_LOGISTIC = 1
LOSS_MSE = 2

ACT_RELU = 0
ACT_TANH = 1

# The quadratic's loss is checked for divergence every this many steps (and at the end).
CHECK_EVERY = 8


@njit(**_INLINE)
def loss_status(loss, limit):
    """STATUS_NAN for a NaN/inf loss, STATUS_ASCENDED above ``limit``, else STATUS_OK."""
    if not math.isfinite(loss):
        return STATUS_NAN
    if loss > limit:
        return STATUS_ASCENDED
    return STATUS_OK


# --------------------------------------------------------------------------------------------
# The batch of runs: run ``slot_run[s]`` lives in slot s (elements [s * p, (s + 1) * p) of each
# persistent row); the first ``n_live`` slots are running.


@njit(**_INLINE)
def _segment(buf, layout, row, slot, p):
    start = row * layout[LAYOUT_STRIDE] + slot * p
    return buf[start:start + p]


@njit(**_INLINE)
def _retire(buf, layout, slot_run, slot, n_live, p):
    """Stop the run in ``slot``: the last running slot moves into its place. Returns n_live."""
    last = n_live - 1
    if slot != last:
        stride = layout[LAYOUT_STRIDE]
        for r in range(layout[LAYOUT_PERSIST]):
            dst = r * stride + slot * p
            src = r * stride + last * p
            for i in range(p):
                buf[dst + i] = buf[src + i]
        slot_run[slot] = slot_run[last]
    return last


@njit(**_INLINE)
def _stop(k, st, t, status, done):
    status[k] = st
    done[k] = t


@njit(**_INLINE)
def _check(st, buf, layout, slot_run, slot, n_live, p, t, status, done):
    """Retire the run in ``slot`` when its loss status is not OK; returns n_live."""
    if st == STATUS_OK:
        return n_live
    _stop(slot_run[slot], st, t, status, done)
    return _retire(buf, layout, slot_run, slot, n_live, p)


@njit(**_INLINE)
def _finish(k, loss, limit, t, final, status, done):
    """A run that reached the end: its scored loss, if that is still finite and bounded."""
    _stop(k, loss_status(loss, limit), t, status, done)
    if status[k] == STATUS_OK:
        final[k] = loss


@njit(**_INLINE)
def _step_all(code, consts, buf, starts, layout, output, lrs, factors, slot_run, lr_t, n_live,
              p, t, steps):
    for s in range(n_live):
        lr_t[s] = lrs[slot_run[s]] * factors[t]
    rule_step(code, consts, buf, starts, layout, n_live * p, t + 1, steps, output, lr_t, p, 0.0)


@njit(**_JIT)
def _start(code, literal_registers, literal_values, n_registers, w0, lrs):
    k_runs = lrs.shape[0]
    buf, starts, layout = new_registers(code, literal_registers, literal_values, n_registers,
                                        w0, k_runs)
    slot_run = np.arange(k_runs)
    final = np.full(k_runs, np.nan)
    status = np.zeros(k_runs, dtype=np.int64)
    done = np.zeros(k_runs, dtype=np.int64)
    return buf, starts, layout, slot_run, np.empty(k_runs), final, status, done


# --------------------------------------------------------------------------------------------
# Diagonal quadratic 0.5 * sum(h * (w - c)**2), optionally with additive gradient noise. The
# minimum c is away from the origin so that weight decay alone (the rule ``w``) is no optimizer.


@njit(**_HOT)
def quadratic_loss(curvature, center, w):
    total = 0.0
    for i in range(w.shape[0]):
        r = w[i] - center[i]
        total += 0.5 * curvature[i] * r * r
    return total


@njit(**_HOT)
def _quadratic_loop(code, consts, buf, starts, layout, output, curvature, center, noise, lrs,
                    factors, steps, limit, slot_run, lr_t, final, status, done):
    p = curvature.shape[0]
    n_live = lrs.shape[0]
    noisy = noise.shape[0] > 0
    t = 0
    while t < steps and n_live > 0:
        # the loss (a reduction that does not vectorise) is checked every CHECK_EVERY steps;
        # NaN and inf persist in w, so a divergence is still caught
        if t % CHECK_EVERY == 0:
            for s in range(n_live - 1, -1, -1):
                w = _segment(buf, layout, REG_WEIGHT, s, p)
                st = loss_status(quadratic_loss(curvature, center, w), limit)
                n_live = _check(st, buf, layout, slot_run, s, n_live, p, t, status, done)
            if n_live == 0:
                break
        for s in range(n_live):
            w = _segment(buf, layout, REG_WEIGHT, s, p)
            g = _segment(buf, layout, REG_GRAD, s, p)
            for i in range(p):
                g[i] = curvature[i] * (w[i] - center[i])
            if noisy:
                row = noise[t]
                for i in range(p):
                    g[i] += row[i]
        _step_all(code, consts, buf, starts, layout, output, lrs, factors, slot_run, lr_t,
                  n_live, p, t, steps)
        t += 1
    for s in range(n_live):
        loss = quadratic_loss(curvature, center, _segment(buf, layout, REG_WEIGHT, s, p))
        _finish(slot_run[s], loss, limit, t, final, status, done)


@njit(**_JIT)
def run_quadratic_task(code, consts, literal_registers, literal_values, n_registers, output,
                       curvature, center, w0, noise, lrs, factors, steps, ascend):
    """``noise`` is (steps, P) additive gradient noise, or (0, P) for exact gradients; the
    score is the exact loss at the final weights."""
    buf, starts, layout, slot_run, lr_t, final, status, done = _start(
        code, literal_registers, literal_values, n_registers, w0, lrs)
    loss0 = quadratic_loss(curvature, center, w0)
    _quadratic_loop(code, consts, buf, starts, layout, output, curvature, center, noise, lrs,
                    factors, steps, ascend * loss0, slot_run, lr_t, final, status, done)
    return loss0, final, status, done


# --------------------------------------------------------------------------------------------
# Rosenbrock in n dimensions of u = w + shift: sum_i 100 (u[i+1] - u[i]^2)^2 + (1 - u[i])^2.
# The shift puts w = 0 on a high slope, so weight decay alone (the rule ``w``) gains nothing.


@njit(**_HOT)
def rosenbrock_loss_grad(w, shift, grad):
    n = w.shape[0]
    for i in range(n):
        grad[i] = 0.0
    total = 0.0
    for i in range(n - 1):
        ui = w[i] + shift[i]
        a = w[i + 1] + shift[i + 1] - ui * ui
        b = 1.0 - ui
        total += 100.0 * a * a + b * b
        grad[i] += -400.0 * ui * a - 2.0 * b
        grad[i + 1] += 200.0 * a
    return total


@njit(**_HOT)
def _rosenbrock_loop(code, consts, buf, starts, layout, output, shift, scratch, lrs, factors,
                     steps, limit, slot_run, lr_t, final, status, done):
    p = shift.shape[0]
    n_live = lrs.shape[0]
    t = 0
    while t < steps and n_live > 0:
        for s in range(n_live - 1, -1, -1):
            w = _segment(buf, layout, REG_WEIGHT, s, p)
            g = _segment(buf, layout, REG_GRAD, s, p)
            st = loss_status(rosenbrock_loss_grad(w, shift, g), limit)
            n_live = _check(st, buf, layout, slot_run, s, n_live, p, t, status, done)
        if n_live == 0:
            break
        _step_all(code, consts, buf, starts, layout, output, lrs, factors, slot_run, lr_t,
                  n_live, p, t, steps)
        t += 1
    for s in range(n_live):
        loss = rosenbrock_loss_grad(_segment(buf, layout, REG_WEIGHT, s, p), shift, scratch)
        _finish(slot_run[s], loss, limit, t, final, status, done)


@njit(**_JIT)
def run_rosenbrock_task(code, consts, literal_registers, literal_values, n_registers, output,
                        shift, w0, lrs, factors, steps, ascend):
    buf, starts, layout, slot_run, lr_t, final, status, done = _start(
        code, literal_registers, literal_values, n_registers, w0, lrs)
    scratch = np.empty(w0.shape[0])
    loss0 = rosenbrock_loss_grad(w0, shift, scratch)
    _rosenbrock_loop(code, consts, buf, starts, layout, output, shift, scratch, lrs, factors,
                     steps, ascend * loss0, slot_run, lr_t, final, status, done)
    return loss0, final, status, done


# --------------------------------------------------------------------------------------------
# Multi-layer perceptrons on a flat parameter vector: layer l has W_l (sizes[l] x sizes[l+1],
# row-major, at w_off[l]) and b_l (at b_off[l]); hidden layers use ReLU or tanh. Activations of
# a batch live in one flat buffer, layer l's (rows, sizes[l]) block at l * stride. An
# autoencoder is an MLP whose targets are its inputs (LOSS_MSE).


@njit(**_INLINE)
def _block(buf, layer, stride, rows, cols):
    start = layer * stride
    return buf[start:start + rows * cols].reshape((rows, cols))


@njit(**_INLINE)
def _weights(w, w_off, layer, nin, nout):
    start = w_off[layer]
    return w[start:start + nin * nout].reshape((nin, nout))


@njit(**_INLINE)
def _tanh(x):
    """tanh from one exp: libm's tanh (through expm1) was half of a tanh network's step.
    Relative error below 1e-13 (the Taylor branch covers the cancellation near 0)."""
    a = abs(x)
    if a < 0.01:
        x2 = x * x
        return x * (1.0 - x2 * (1.0 / 3.0 - x2 * (2.0 / 15.0)))
    e = math.exp(-2.0 * a)
    t = (1.0 - e) / (1.0 + e)
    return t if x >= 0.0 else -t


# The MLP code indexes rows as a[b, j] rather than taking row views: in these loops every view
# cost an atomic reference-count increment and decrement, a third of the time, measured.


@njit(**_JIT)
def _mlp_forward(w, sizes, w_off, b_off, act, x, rows, nb, acts, stride):
    """Fill the activation blocks of rows ``rows[:nb]`` of x; the last block holds the outputs.

    Products go to BLAS with preallocated outputs (``np.dot(a, b, out)``): 5-7x faster than
    loops at these sizes, measured, and no allocation per step.
    """
    n_layers = sizes.shape[0] - 1
    a0 = _block(acts, 0, stride, nb, sizes[0])
    for b in range(nb):
        r = rows[b]
        for i in range(sizes[0]):
            a0[b, i] = x[r, i]
    for layer in range(n_layers):
        nin = sizes[layer]
        nout = sizes[layer + 1]
        out = _block(acts, layer + 1, stride, nb, nout)
        np.dot(_block(acts, layer, stride, nb, nin), _weights(w, w_off, layer, nin, nout), out)
        bias = w[b_off[layer]:b_off[layer] + nout]
        hidden = layer < n_layers - 1
        for b in range(nb):
            for j in range(nout):
                out[b, j] += bias[j]
            if hidden:
                if act == ACT_RELU:
                    for j in range(nout):
                        if out[b, j] < 0.0:
                            out[b, j] = 0.0
                else:
                    for j in range(nout):
                        out[b, j] = _tanh(out[b, j])


@njit(**_JIT)
def _mlp_loss_delta(z, y, rows, nb, nout, loss_kind, d):
    """Mean loss over the batch; ``d`` (nb, nout) gets d(mean loss)/d(outputs ``z``)."""
    total = 0.0
    inv = 1.0 / nb
    for b in range(nb):
        r = rows[b]
        if loss_kind == LOSS_SOFTMAX_CE:
            m = z[b, 0]
            for j in range(1, nout):
                if z[b, j] > m:
                    m = z[b, j]
            s = 0.0
            for j in range(nout):
                d[b, j] = math.exp(z[b, j] - m)
                s += d[b, j]
            lse = m + math.log(s)
            for j in range(nout):
                total += y[r, j] * (lse - z[b, j])
                d[b, j] = (d[b, j] / s - y[r, j]) * inv
        elif loss_kind == LOSS_LOGISTIC:
            z0 = z[b, 0]
            # softplus(z) - y z, and sigmoid, both written to stay finite for large |z|
            e = math.exp(-abs(z0))
            total += max(z0, 0.0) + math.log1p(e) - y[r, 0] * z0
            sig = 1.0 / (1.0 + e) if z0 >= 0.0 else e / (1.0 + e)
            d[b, 0] = (sig - y[r, 0]) * inv
        else:
            for j in range(nout):
                e = z[b, j] - y[r, j]
                total += 0.5 * e * e
                d[b, j] = e * inv
    return total * inv


@njit(**_JIT)
def _mlp_backward(w, grad, sizes, w_off, b_off, act, acts, stride, delta, spare, nb):
    """Gradient of the mean loss into ``grad``. ``delta`` (flat) holds d(loss)/d(outputs) as
    (nb, n_out); it and ``spare`` (room for nb rows of the widest layer) are overwritten."""
    n_layers = sizes.shape[0] - 1
    cur = delta
    nxt = spare
    for layer in range(n_layers - 1, -1, -1):
        nin = sizes[layer]
        nout = sizes[layer + 1]
        c = cur[:nb * nout].reshape((nb, nout))
        a = _block(acts, layer, stride, nb, nin)
        wo = w_off[layer]
        np.dot(a.T, c, grad[wo:wo + nin * nout].reshape((nin, nout)))
        g_b = grad[b_off[layer]:b_off[layer] + nout]
        for j in range(nout):
            g_b[j] = 0.0
        for b in range(nb):
            for j in range(nout):
                g_b[j] += c[b, j]
        if layer > 0:
            # back through W and the activation of the layer below
            prev = nxt[:nb * nin].reshape((nb, nin))
            np.dot(c, _weights(w, w_off, layer, nin, nout).T, prev)
            for b in range(nb):
                if act == ACT_RELU:
                    for i in range(nin):
                        if a[b, i] <= 0.0:
                            prev[b, i] = 0.0
                else:
                    for i in range(nin):
                        prev[b, i] *= 1.0 - a[b, i] * a[b, i]
            cur, nxt = nxt, cur


@njit(**_JIT)
def _mlp_buffers(sizes, rows):
    width = 0
    for s in sizes:
        width = max(width, s)
    stride = rows * width
    return np.zeros(sizes.shape[0] * stride), stride, np.zeros(stride), np.zeros(stride)


@njit(**_JIT)
def _mlp_eval(w, sizes, w_off, b_off, act, x, y, rows, loss_kind, acts, stride, delta):
    nb = rows.shape[0]
    _mlp_forward(w, sizes, w_off, b_off, act, x, rows, nb, acts, stride)
    last = sizes.shape[0] - 1
    nout = sizes[last]
    return _mlp_loss_delta(_block(acts, last, stride, nb, nout), y, rows, nb, nout, loss_kind,
                           delta[:nb * nout].reshape((nb, nout)))


@njit(**_JIT)
def mlp_loss_grad(w, sizes, w_off, b_off, act, x, y, rows, loss_kind, grad):
    """Mean loss of the rows ``rows`` of (x, y) and its gradient (into ``grad``)."""
    nb = rows.shape[0]
    acts, stride, delta, spare = _mlp_buffers(sizes, nb)
    loss = _mlp_eval(w, sizes, w_off, b_off, act, x, y, rows, loss_kind, acts, stride, delta)
    _mlp_backward(w, grad, sizes, w_off, b_off, act, acts, stride, delta, spare, nb)
    return loss


@njit(**_JIT)
def _mlp_loop(code, consts, buf, starts, layout, output, sizes, w_off, b_off, act, x, y,
              batches, x_test, y_test, test_rows, loss_kind, lrs, factors, steps, limit,
              acts, stride, delta, spare, slot_run, lr_t, final, status, done):
    # Compiled with reference counting (BLAS with out= needs it); at tens of microseconds a
    # step, the ~0.1 us it adds to the interpreter's step does not show.
    p = layout[LAYOUT_STRIDE] // lrs.shape[0]
    n_live = lrs.shape[0]
    nb = batches.shape[1]
    t = 0
    while t < steps and n_live > 0:
        rows = batches[t]
        for s in range(n_live - 1, -1, -1):
            w = _segment(buf, layout, REG_WEIGHT, s, p)
            loss = _mlp_eval(w, sizes, w_off, b_off, act, x, y, rows, loss_kind, acts, stride,
                             delta)
            st = loss_status(loss, limit)
            if st != STATUS_OK:
                n_live = _check(st, buf, layout, slot_run, s, n_live, p, t, status, done)
                continue
            g = _segment(buf, layout, REG_GRAD, s, p)
            _mlp_backward(w, g, sizes, w_off, b_off, act, acts, stride, delta, spare, nb)
        if n_live == 0:
            break
        _step_all(code, consts, buf, starts, layout, output, lrs, factors, slot_run, lr_t,
                  n_live, p, t, steps)
        t += 1
    for s in range(n_live):
        loss = _mlp_eval(_segment(buf, layout, REG_WEIGHT, s, p), sizes, w_off, b_off, act,
                         x_test, y_test, test_rows, loss_kind, acts, stride, delta)
        _finish(slot_run[s], loss, limit, t, final, status, done)


@njit(**_JIT)
def run_mlp_task(code, consts, literal_registers, literal_values, n_registers, output,
                 sizes, w_off, b_off, act, w0, x, y, batches, x_test, y_test, loss_kind,
                 lrs, factors, steps, ascend):
    """Minibatch training (rows ``batches[t]`` at step t); scored on the held-out loss."""
    buf, starts, layout, slot_run, lr_t, final, status, done = _start(
        code, literal_registers, literal_values, n_registers, w0, lrs)
    n_test = x_test.shape[0]
    acts, stride, delta, spare = _mlp_buffers(sizes, max(batches.shape[1], n_test))
    test_rows = np.arange(n_test)
    loss0 = _mlp_eval(w0, sizes, w_off, b_off, act, x_test, y_test, test_rows, loss_kind, acts,
                      stride, delta)
    _mlp_loop(code, consts, buf, starts, layout, output, sizes, w_off, b_off, act, x, y,
              batches, x_test, y_test, test_rows, loss_kind, lrs, factors, steps,
              ascend * loss0, acts, stride, delta, spare, slot_run, lr_t, final, status, done)
    return loss0, final, status, done


# --------------------------------------------------------------------------------------------
# Elman recurrent network on sequences: h_t = tanh(x_t Wx + h_(t-1) Wh + b), h_0 = 0, output
# z = h_L Wo + bo, mean squared error (0.5 e^2) against a scalar target. x holds a row's L steps
# of din features flat (row-major, step after step); the flat parameter vector is
# Wx (din x H), Wh (H x H), b (H), Wo (H x 1), bo (1), in that order (``rnn_layout``). The
# gradient is back-propagation through time, written out; ``hs`` holds the L + 1 hidden states
# of a batch, ``dh`` and ``da`` one (rows, H) block each.


@njit(**_INLINE)
def rnn_layout(din, hidden):
    """Offsets of Wx, Wh, b, Wo, bo and the parameter count."""
    o_wh = din * hidden
    o_b = o_wh + hidden * hidden
    o_wo = o_b + hidden
    o_bo = o_wo + hidden
    return 0, o_wh, o_b, o_wo, o_bo, o_bo + 1


@njit(**_JIT)
def _rnn_eval(w, dims, x, y, rows, nb, hs, delta):
    """Mean loss of rows ``rows[:nb]``; fills ``hs`` and ``delta`` (d loss / d z, nb values)."""
    din, hidden, length = dims[0], dims[1], dims[2]
    o_wx, o_wh, o_b, o_wo, o_bo, _ = rnn_layout(din, hidden)
    block = nb * hidden
    for i in range(block):
        hs[i] = 0.0
    total = 0.0
    inv = 1.0 / nb
    for t in range(length):
        prev = t * block
        cur = prev + block
        for b in range(nb):
            r = rows[b]
            out = cur + b * hidden
            # accumulated in place, a row of Wx or Wh at a time (contiguous, so it vectorises)
            for j in range(hidden):
                hs[out + j] = w[o_b + j]
            for i in range(din):
                xi = x[r, t * din + i]
                row = o_wx + i * hidden
                for j in range(hidden):
                    hs[out + j] += xi * w[row + j]
            for i in range(hidden):
                hi = hs[prev + b * hidden + i]
                row = o_wh + i * hidden
                for j in range(hidden):
                    hs[out + j] += hi * w[row + j]
            for j in range(hidden):
                hs[out + j] = _tanh(hs[out + j])
    last = length * block
    for b in range(nb):
        z = w[o_bo]
        for j in range(hidden):
            z += hs[last + b * hidden + j] * w[o_wo + j]
        e = z - y[rows[b], 0]
        total += 0.5 * e * e
        delta[b] = e * inv
    return total * inv


@njit(**_JIT)
def _rnn_backward(w, grad, dims, x, rows, nb, hs, delta, dh, da):
    """Gradient of the mean loss into ``grad`` (back-propagation through time)."""
    din, hidden, length = dims[0], dims[1], dims[2]
    o_wx, o_wh, o_b, o_wo, o_bo, n = rnn_layout(din, hidden)
    block = nb * hidden
    for i in range(n):
        grad[i] = 0.0
    last = length * block
    for b in range(nb):
        grad[o_bo] += delta[b]
        for j in range(hidden):
            grad[o_wo + j] += hs[last + b * hidden + j] * delta[b]
            dh[b * hidden + j] = delta[b] * w[o_wo + j]
    for t in range(length - 1, -1, -1):
        prev = t * block
        cur = prev + block
        for b in range(nb):
            r = rows[b]
            base = b * hidden
            for j in range(hidden):
                h = hs[cur + base + j]
                d = dh[base + j] * (1.0 - h * h)
                da[base + j] = d
                grad[o_b + j] += d
            for i in range(din):
                xi = x[r, t * din + i]
                row = o_wx + i * hidden
                for j in range(hidden):
                    grad[row + j] += xi * da[base + j]
            for i in range(hidden):
                hi = hs[prev + base + i]
                row = o_wh + i * hidden
                for j in range(hidden):
                    grad[row + j] += hi * da[base + j]
        if t > 0:
            for b in range(nb):
                for i in range(hidden):
                    acc = 0.0
                    for j in range(hidden):
                        acc += da[b * hidden + j] * w[o_wh + i * hidden + j]
                    dh[b * hidden + i] = acc


@njit(**_JIT)
def _rnn_buffers(dims, rows):
    block = rows * dims[1]
    return np.zeros((dims[2] + 1) * block), np.zeros(rows), np.zeros(block), np.zeros(block)


@njit(**_JIT)
def rnn_loss_grad(w, dims, x, y, rows, grad):
    """Mean loss of the rows ``rows`` of (x, y) and its gradient (into ``grad``)."""
    nb = rows.shape[0]
    hs, delta, dh, da = _rnn_buffers(dims, nb)
    loss = _rnn_eval(w, dims, x, y, rows, nb, hs, delta)
    _rnn_backward(w, grad, dims, x, rows, nb, hs, delta, dh, da)
    return loss


@njit(**_JIT)
def _rnn_loop(code, consts, buf, starts, layout, output, dims, x, y, batches, x_test, y_test,
              test_rows, lrs, factors, steps, limit, hs, delta, dh, da, slot_run, lr_t, final,
              status, done):
    p = layout[LAYOUT_STRIDE] // lrs.shape[0]
    n_live = lrs.shape[0]
    nb = batches.shape[1]
    t = 0
    while t < steps and n_live > 0:
        rows = batches[t]
        for s in range(n_live - 1, -1, -1):
            w = _segment(buf, layout, REG_WEIGHT, s, p)
            st = loss_status(_rnn_eval(w, dims, x, y, rows, nb, hs, delta), limit)
            if st != STATUS_OK:
                n_live = _check(st, buf, layout, slot_run, s, n_live, p, t, status, done)
                continue
            _rnn_backward(w, _segment(buf, layout, REG_GRAD, s, p), dims, x, rows, nb, hs,
                          delta, dh, da)
        if n_live == 0:
            break
        _step_all(code, consts, buf, starts, layout, output, lrs, factors, slot_run, lr_t,
                  n_live, p, t, steps)
        t += 1
    for s in range(n_live):
        loss = _rnn_eval(_segment(buf, layout, REG_WEIGHT, s, p), dims, x_test, y_test,
                         test_rows, test_rows.shape[0], hs, delta)
        _finish(slot_run[s], loss, limit, t, final, status, done)


@njit(**_JIT)
def run_rnn_task(code, consts, literal_registers, literal_values, n_registers, output, dims, w0,
                 x, y, batches, x_test, y_test, lrs, factors, steps, ascend):
    """Minibatch training of the recurrent network (rows ``batches[t]`` at step t); scored on
    the held-out loss."""
    buf, starts, layout, slot_run, lr_t, final, status, done = _start(
        code, literal_registers, literal_values, n_registers, w0, lrs)
    n_test = x_test.shape[0]
    hs, delta, dh, da = _rnn_buffers(dims, max(batches.shape[1], n_test))
    test_rows = np.arange(n_test)
    loss0 = _rnn_eval(w0, dims, x_test, y_test, test_rows, n_test, hs, delta)
    _rnn_loop(code, consts, buf, starts, layout, output, dims, x, y, batches, x_test, y_test,
              test_rows, lrs, factors, steps, ascend * loss0, hs, delta, dh, da, slot_run, lr_t,
              final, status, done)
    return loss0, final, status, done


__all__ = [
    "ACT_RELU",
    "ACT_TANH",
    "LOSS_LOGISTIC",
    "LOSS_MSE",
    "LOSS_SOFTMAX_CE",
    "STATUS_ASCENDED",
    "STATUS_NAN",
    "STATUS_OK",
    "mlp_loss_grad",
    "quadratic_loss",
    "rnn_layout",
    "rnn_loss_grad",
    "rosenbrock_loss_grad",
    "run_mlp_task",
    "run_quadratic_task",
    "run_rnn_task",
    "run_rosenbrock_task",
]
