"""Compiled run loops of the proxy tasks: hand-written losses, gradients and one loop per task type.

Each ``run_*`` function runs one Program on one task instance at every learning rate of a grid
and returns ``(loss0, final_losses, status, steps_done)``. The rule is interpreted by
:func:`fitness.interpreter.exec_step` from inside the compiled loop, so no rule is ever compiled
and the Python overhead is one call per (rule, task). Runs stop early when the training loss is
NaN/inf or climbs above ``ascend * loss0`` (status codes below); a bad rule never raises.

Numba's cache tracks only this file: after a change to :mod:`fitness.interpreter` or to the
primitive table, the cache folder changes by itself (:mod:`fitness.numba_cache`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from fitness.interpreter import apply_update, exec_step, init_registers

_JIT = dict(cache=True, nogil=True, error_model="numpy")

STATUS_OK = 0
STATUS_NAN = 1  # loss or weights became NaN/inf
STATUS_ASCENDED = 2  # training loss rose above ascend * loss0

# The quadratic's loss is checked for divergence every this many steps (and at the end).
CHECK_EVERY = 8


@njit(**_JIT)
def loss_status(loss, limit):
    """STATUS_NAN for a NaN/inf loss, STATUS_ASCENDED above ``limit``, else STATUS_OK."""
    if not math.isfinite(loss):
        return STATUS_NAN
    if loss > limit:
        return STATUS_ASCENDED
    return STATUS_OK


LOSS_SOFTMAX_CE = 0
LOSS_LOGISTIC = 1
LOSS_MSE = 2


# --------------------------------------------------------------------------------------------
# Diagonal quadratic 0.5 * sum(h * (w - c)**2), optionally with additive gradient noise. The
# minimum c is away from the origin so that weight decay alone (the rule ``w``) is no optimizer.


@njit(**_JIT)
def quadratic_loss(curvature, center, w):
    total = 0.0
    for i in range(w.shape[0]):
        r = w[i] - center[i]
        total += 0.5 * curvature[i] * r * r
    return total


@njit(**_JIT)
def run_quadratic_task(code, consts, literal_registers, literal_values, n_registers, output,
                       curvature, center, w0, noise, lrs, steps, ascend):
    """``noise`` is (steps, P) additive gradient noise, or (0, P) for exact gradients.

    The same noise sequence is used at every lr (common random numbers), and the score is the
    exact loss at the final weights.
    """
    n_lr = lrs.shape[0]
    final = np.empty(n_lr)
    status = np.zeros(n_lr, dtype=np.int64)
    done = np.zeros(n_lr, dtype=np.int64)
    loss0 = quadratic_loss(curvature, center, w0)
    limit = ascend * loss0
    noisy = noise.shape[0] > 0
    n = w0.shape[0]
    for k in range(n_lr):
        regs = init_registers(n_registers, literal_registers, literal_values, w0)
        w = regs[1]
        g = regs[0]
        st = STATUS_OK
        t = 0
        while t < steps:
            for i in range(n):
                g[i] = curvature[i] * (w[i] - center[i])
            # the loss (a reduction that does not vectorise) is checked every CHECK_EVERY steps;
            # NaN and inf persist in w, so a divergence is still caught
            if t % CHECK_EVERY == 0:
                loss = quadratic_loss(curvature, center, w)
                st = loss_status(loss, limit)
                if st != STATUS_OK:
                    break
            if noisy:
                row = noise[t]
                for i in range(n):
                    g[i] += row[i]
            exec_step(code, consts, regs, t + 1, steps)
            apply_update(regs, output, lrs[k], 0.0)
            t += 1
        loss = quadratic_loss(curvature, center, w)
        if st == STATUS_OK:
            st = loss_status(loss, limit)
        final[k] = loss if st == STATUS_OK else np.nan
        status[k] = st
        done[k] = t
    return loss0, final, status, done


# --------------------------------------------------------------------------------------------
# Rosenbrock in n dimensions of u = w + shift: sum_i 100 (u[i+1] - u[i]^2)^2 + (1 - u[i])^2.
# The shift puts w = 0 on a high slope, so weight decay alone (the rule ``w``) gains nothing.


@njit(**_JIT)
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


@njit(**_JIT)
def run_rosenbrock_task(code, consts, literal_registers, literal_values, n_registers, output,
                        shift, w0, lrs, steps, ascend):
    n_lr = lrs.shape[0]
    final = np.empty(n_lr)
    status = np.zeros(n_lr, dtype=np.int64)
    done = np.zeros(n_lr, dtype=np.int64)
    scratch = np.empty(w0.shape[0])
    loss0 = rosenbrock_loss_grad(w0, shift, scratch)
    limit = ascend * loss0
    for k in range(n_lr):
        regs = init_registers(n_registers, literal_registers, literal_values, w0)
        w = regs[1]
        g = regs[0]
        st = STATUS_OK
        t = 0
        while t < steps:
            loss = rosenbrock_loss_grad(w, shift, g)
            st = loss_status(loss, limit)
            if st != STATUS_OK:
                break
            exec_step(code, consts, regs, t + 1, steps)
            apply_update(regs, output, lrs[k], 0.0)
            t += 1
        loss = rosenbrock_loss_grad(w, shift, scratch)
        if st == STATUS_OK:
            st = loss_status(loss, limit)
        final[k] = loss if st == STATUS_OK else np.nan
        status[k] = st
        done[k] = t
    return loss0, final, status, done


# --------------------------------------------------------------------------------------------
# Multi-layer perceptron with ReLU hidden layers on a flat parameter vector.
# Layer l has W_l (sizes[l] x sizes[l+1], row-major, at w_off[l]) and b_l (at b_off[l]).
# Matrix products go through np.dot (BLAS): scalar loops over these small layers do not
# vectorise well (inner loops of 1 to 16 outputs) and were 5x slower.
# Activations live in one flat buffer; layer l's (nb, sizes[l]) block starts at l * stride.


@njit(**_JIT)
def _weights(w, w_off, layer, nin, nout):
    start = w_off[layer]
    return w[start:start + nin * nout].reshape((nin, nout))


@njit(**_JIT)
def _block(buf, layer, stride, rows, cols):
    start = layer * stride
    return buf[start:start + rows * cols].reshape((rows, cols))


@njit(**_JIT)
def _mlp_forward(w, sizes, w_off, b_off, x, rows, nb, acts, stride):
    """Fill the activation blocks; the last block holds the logits."""
    n_layers = sizes.shape[0] - 1
    a0 = _block(acts, 0, stride, nb, sizes[0])
    for b in range(nb):
        a0[b, :] = x[rows[b]]
    for layer in range(n_layers):
        nin = sizes[layer]
        nout = sizes[layer + 1]
        src = _block(acts, layer, stride, nb, nin)
        dst = _block(acts, layer + 1, stride, nb, nout)
        z = np.dot(src, _weights(w, w_off, layer, nin, nout))
        bo = b_off[layer]
        hidden = layer < n_layers - 1
        for b in range(nb):
            for j in range(nout):
                v = z[b, j] + w[bo + j]
                if hidden and v < 0.0:
                    v = 0.0
                dst[b, j] = v


@njit(**_JIT)
def _mlp_loss_delta(logits, y, rows, nb, nout, loss_kind, delta):
    """Mean loss over the batch; ``delta`` (nb, nout) gets d(mean loss)/d(logits)."""
    total = 0.0
    inv = 1.0 / nb
    for b in range(nb):
        z = logits[b]
        target = y[rows[b]]
        d = delta[b]
        if loss_kind == LOSS_SOFTMAX_CE:
            m = z[0]
            for j in range(1, nout):
                if z[j] > m:
                    m = z[j]
            s = 0.0
            for j in range(nout):
                s += math.exp(z[j] - m)
            lse = m + math.log(s)
            for j in range(nout):
                total += target[j] * (lse - z[j])
                d[j] = (math.exp(z[j] - lse) - target[j]) * inv
        elif loss_kind == LOSS_LOGISTIC:
            z0 = z[0]
            # softplus(z) - y z, and sigmoid, both written to stay finite for large |z|
            e = math.exp(-abs(z0))
            total += max(z0, 0.0) + math.log1p(e) - target[0] * z0
            sig = 1.0 / (1.0 + e) if z0 >= 0.0 else e / (1.0 + e)
            d[0] = (sig - target[0]) * inv
        else:
            for j in range(nout):
                r = z[j] - target[j]
                total += 0.5 * r * r
                d[j] = r * inv
    return total * inv


@njit(**_JIT)
def _mlp_backward(w, grad, sizes, w_off, b_off, acts, stride, delta, nb):
    """Gradient of the mean loss into ``grad``; ``delta`` is (nb, n_out) from the loss."""
    n_layers = sizes.shape[0] - 1
    cur = delta
    for layer in range(n_layers - 1, -1, -1):
        nin = sizes[layer]
        nout = sizes[layer + 1]
        a = _block(acts, layer, stride, nb, nin)
        gw = np.dot(a.T, cur)
        wo = w_off[layer]
        bo = b_off[layer]
        for i in range(nin):
            for j in range(nout):
                grad[wo + i * nout + j] = gw[i, j]
        for j in range(nout):
            s = 0.0
            for b in range(nb):
                s += cur[b, j]
            grad[bo + j] = s
        if layer > 0:
            # back through W and the ReLU of the layer below (a == 0 where the ReLU was off)
            prev = np.dot(cur, _weights(w, w_off, layer, nin, nout).T)
            for b in range(nb):
                for i in range(nin):
                    if a[b, i] <= 0.0:
                        prev[b, i] = 0.0
            cur = prev


@njit(**_JIT)
def _mlp_buffers(sizes, rows):
    width = 0
    for s in sizes:
        width = max(width, s)
    stride = rows * width
    return np.zeros(sizes.shape[0] * stride), stride


@njit(**_JIT)
def _mlp_eval(w, sizes, w_off, b_off, x, y, rows, loss_kind, acts, stride):
    nb = rows.shape[0]
    _mlp_forward(w, sizes, w_off, b_off, x, rows, nb, acts, stride)
    last = sizes.shape[0] - 1
    logits = _block(acts, last, stride, nb, sizes[last])
    delta = np.empty((nb, sizes[last]))
    return _mlp_loss_delta(logits, y, rows, nb, sizes[last], loss_kind, delta)


@njit(**_JIT)
def mlp_loss_grad(w, sizes, w_off, b_off, x, y, rows, loss_kind, grad):
    """Mean loss of the rows ``rows`` of (x, y) and its gradient (into ``grad``)."""
    nb = rows.shape[0]
    acts, stride = _mlp_buffers(sizes, nb)
    _mlp_forward(w, sizes, w_off, b_off, x, rows, nb, acts, stride)
    last = sizes.shape[0] - 1
    delta = np.empty((nb, sizes[last]))
    loss = _mlp_loss_delta(_block(acts, last, stride, nb, sizes[last]), y, rows, nb,
                           sizes[last], loss_kind, delta)
    _mlp_backward(w, grad, sizes, w_off, b_off, acts, stride, delta, nb)
    return loss


@njit(**_JIT)
def run_mlp_task(code, consts, literal_registers, literal_values, n_registers, output,
                 sizes, w_off, b_off, w0, x, y, batches, x_test, y_test, loss_kind,
                 lrs, steps, ascend):
    """Minibatch training (rows ``batches[t]`` at step t); scored on the held-out loss."""
    n_lr = lrs.shape[0]
    final = np.empty(n_lr)
    status = np.zeros(n_lr, dtype=np.int64)
    done = np.zeros(n_lr, dtype=np.int64)
    nb = batches.shape[1]
    n_test = x_test.shape[0]
    acts, stride = _mlp_buffers(sizes, max(nb, n_test))
    test_rows = np.arange(n_test)
    loss0 = _mlp_eval(w0, sizes, w_off, b_off, x_test, y_test, test_rows, loss_kind, acts,
                      stride)
    limit = ascend * loss0
    last = sizes.shape[0] - 1
    n_out = sizes[last]
    delta = np.empty((nb, n_out))
    for k in range(n_lr):
        regs = init_registers(n_registers, literal_registers, literal_values, w0)
        w = regs[1]
        g = regs[0]
        st = STATUS_OK
        t = 0
        while t < steps:
            rows = batches[t]
            _mlp_forward(w, sizes, w_off, b_off, x, rows, nb, acts, stride)
            logits = _block(acts, last, stride, nb, n_out)
            loss = _mlp_loss_delta(logits, y, rows, nb, n_out, loss_kind, delta)
            st = loss_status(loss, limit)
            if st != STATUS_OK:
                break
            _mlp_backward(w, g, sizes, w_off, b_off, acts, stride, delta, nb)
            exec_step(code, consts, regs, t + 1, steps)
            apply_update(regs, output, lrs[k], 0.0)
            t += 1
        loss = _mlp_eval(w, sizes, w_off, b_off, x_test, y_test, test_rows, loss_kind, acts,
                         stride)
        if st == STATUS_OK:
            st = loss_status(loss, limit)
        final[k] = loss if st == STATUS_OK else np.nan
        status[k] = st
        done[k] = t
    return loss0, final, status, done


__all__ = [
    "LOSS_LOGISTIC",
    "LOSS_MSE",
    "LOSS_SOFTMAX_CE",
    "STATUS_ASCENDED",
    "STATUS_NAN",
    "STATUS_OK",
    "mlp_loss_grad",
    "quadratic_loss",
    "rosenbrock_loss_grad",
    "run_mlp_task",
    "run_quadratic_task",
    "run_rosenbrock_task",
]
