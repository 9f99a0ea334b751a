"""The Numba interpreter: one cached, precompiled function runs every Program.

No rule is ever JIT-compiled. A step runs the opcodes of a :class:`~primitives.program.Program`
over **tiles** of the parameter vector: every opcode on elements ``[lo, lo + TILE)``, then the
weight update of those elements, then the next tile. Gradient, weights and state buffers are
full-length rows; every other register (intermediate values, vec literals) holds one tile, so
a step's temporaries stay in L1/L2 however large P is. Every primitive is elementwise, so
tiling changes no bit of the result. Several runs (one per learning rate) can share one
register file side by side (:mod:`fitness.kernels`), so a small task pays the per-opcode cost
once per step for all of them. Two pairs of passes run as one, since a pass that only loads and
stores cannot hide behind the divisions of another: an EMA and its bias correction
(``ema_bc``), and a rule's last elementwise opcode and the weight update (adam's step about
10% faster, measured side by side; the bits do not change). A last ``sign`` of an elementwise
value joins that pass too (lion's step about 10% faster, measured side by side), and so does
an EMA just before an ``interp`` or ``sign`` that reads its state first (Lion's whole step in
one pass; see :func:`_fused_ema`).

Dispatch reads the primitive table only: the table's kernel tuple is cut into ``_GROUPS``
slices, each a ``literal_unroll`` loop, so a new primitive needs no change here. (One
``literal_unroll`` over the whole tuple compiles to a jump-table loop costing about 45 ns per
opcode, measured; slices of two cost about 7 ns.) Options follow DESIGN.md invariant 3:
``cache=True``, ``error_model='numpy'`` (x/0 is inf, not an exception), ``nogil=True``.

Layout of a register file (:func:`new_registers`): one flat float64 buffer; ``starts[r]`` is
where register r's current tile begins; ``layout`` holds the number of full-length rows, their
length and where the step's schedule values live. Opcode loops index with unsigned offsets
(signed ones stop LLVM from vectorising; views would cost a reference count each).

Entry points: :func:`new_registers`, :func:`rule_step` (and :func:`rule_step_tile` for loops
that compute their gradient tile by tile), :func:`rule_direction`, :class:`StepRunner` (one step
at a time from Python), :func:`run_quadratic` (benchmarks). One file of about 580 lines: every
function here is compiled into the others, and the Numba cache is keyed per compiled file.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from numba import literal_unroll, njit
from numba.core.errors import NumbaExperimentalFeatureWarning

from primitives.program import REG_GRAD, REG_WEIGHT, Program
from primitives.table import (
    ACCUMULATE_UPDATE,
    BIAS_CORRECTION,
    ELEMENTWISE_INDEX,
    ELEMENTWISE_KERNELS,
    EMA_UPDATE,
    OP_ACC,
    OP_BIAS,
    OP_EMA,
    OP_SCHEDULE,
    SCHEDULE_KERNELS,
)

# literal_unroll over a tuple of functions is tagged experimental by Numba; it is exactly the
# dispatch we want (one branch per table entry, resolved at compile time).
warnings.filterwarnings("ignore", category=NumbaExperimentalFeatureWarning)

_JIT = dict(cache=True, nogil=True, error_model="numpy")
_INLINE = dict(inline="always", nogil=True, error_model="numpy")
# The entry points called once per step allocate nothing, so they are compiled without
# Numba's reference counting (``_nrt=False``): with it, each call paid an atomic
# increment and decrement per array argument, about 150 ns a step, measured.
_HOT = dict(cache=True, nogil=True, error_model="numpy", _nrt=False)
# A function called once per tile rather than inlined (see _elementwise_update).
_CALLED = dict(nogil=True, error_model="numpy", _nrt=False)

# A tile's registers, all rows together, fill at most this many float64 (32 KiB, within L1):
# Adam's 11 registers get tiles of 368 elements, Lion's 5 of 816, never more than TILE.
L1_DOUBLES = 4096
TILE = 1024
_MIN_TILE = 128
# Runs side by side in one call while their parameters total at most this many: beyond it a
# run's rows alone outgrow the caches and batching only adds memory traffic, measured.
BATCH_ELEMENTS = 16384


def runs_per_call(p: int) -> int:
    """How many runs of P parameters to step side by side in one register file."""
    return max(1, BATCH_ELEMENTS // max(int(p), 1))
_GROUPS = 8


@njit(inline="always")
def _never(x, y, z, c):  # pads an empty slice of the table; its opcode never occurs
    return x


def _slices(kernels: tuple, groups: int) -> tuple[tuple, list[int]]:
    size = max(1, -(-len(kernels) // groups))
    parts, bases = [], []
    for g in range(groups):
        part = kernels[g * size:(g + 1) * size]
        parts.append(part if part else (_never,))
        bases.append(g * size if part else 1 << 30)
    return tuple(parts), bases


(_K0, _K1, _K2, _K3, _K4, _K5, _K6, _K7), _BASES = _slices(ELEMENTWISE_KERNELS, _GROUPS)
_N_ELEMENTWISE = len(ELEMENTWISE_KERNELS)
_SCHEDULES = SCHEDULE_KERNELS
_EMA, _ACC, _BIAS = EMA_UPDATE.kernel, ACCUMULATE_UPDATE.kernel, BIAS_CORRECTION.kernel
_OP_SIGN = ELEMENTWISE_INDEX["sign"]
_SIGN = ELEMENTWISE_KERNELS[_OP_SIGN]


@njit(**_INLINE)
def _moved(w, d, lr, weight_decay):
    """One weight after its step. Without weight decay the term is left out, not multiplied
    by 0 (0 * inf is NaN). The branch is loop-invariant: LLVM moves it out of the loops."""
    if weight_decay != 0.0:
        return w - lr * (d + weight_decay * w)
    return w - lr * d


def _slice_runner(kernels: tuple, base: int):
    """One inlined literal_unroll loop over a slice of the table's kernels."""

    @njit(**_INLINE)
    def run(op, buf, dst, x, y, z, c, n, extra):
        k = base
        for kernel in literal_unroll(kernels):
            if k == op:
                for j in range(n):
                    i = np.uint64(j)
                    buf[dst + i] = kernel(buf[x + i], buf[y + i], buf[z + i], c)
            k += 1

    return run


def _update_runner(kernels: tuple, base: int, signed: bool, ema: bool):
    """The same loop, applying the weight update with each value (see :func:`_update`)
    instead of storing it: a rule's last opcode and the update are one pass over the tile.
    ``signed``: the update takes the sign of each value (see :func:`_fused_tail`). ``ema``:
    the EMA just before those opcodes, whose state is the opcode's first input, runs in the
    same pass (see :func:`_fused_ema`)."""

    @njit(**_INLINE)
    def run(op, buf, dst, x, y, z, c, n, extra):
        w, lrs, lo, seg, weight_decay, m, mx, mb = extra
        k = base
        for kernel in literal_unroll(kernels):
            if k == op:
                # the tile may span several runs (segments of ``seg`` elements), each with
                # its own learning rate; the division only where it is needed
                s = 0 if lo < seg else lo // seg
                start = 0
                while start < n:
                    end = min(n, (s + 1) * seg - lo)
                    lr = lrs[s]
                    for j in range(start, end):
                        i = np.uint64(j)
                        if ema:  # compile-time constants, as signed: no branch is left
                            # the state goes to the opcode in a register: read back from
                            # memory, it stopped the loop from vectorising (3x slower)
                            a = _EMA(buf[m + i], buf[mx + i], mb)
                            buf[m + i] = a
                        else:
                            a = buf[x + i]
                        d = kernel(a, buf[y + i], buf[z + i], c)
                        if signed:
                            d = _SIGN(d, d, d, c)
                        buf[w + i] = _moved(buf[w + i], d, lr, weight_decay)
                    start = end
                    s += 1
            k += 1

    return run


def _tree(runners: list, bases: list[int], jit_options: dict):
    """A binary search over the slices' first opcodes, down to one slice's loop."""
    if len(runners) == 1:
        return runners[0]
    half = len(runners) // 2
    low, high = _tree(runners[:half], bases[:half], _INLINE), _tree(runners[half:],
                                                                     bases[half:], _INLINE)
    split = bases[half]

    @njit(**jit_options)
    def dispatch(op, buf, dst, x, y, z, c, n, extra):
        if op < split:
            low(op, buf, dst, x, y, z, c, n, extra)
        else:
            high(op, buf, dst, x, y, z, c, n, extra)

    return dispatch


def _dispatcher(make_runner, jit_options: dict, *options):
    parts = (_K0, _K1, _K2, _K3, _K4, _K5, _K6, _K7)
    return _tree([make_runner(part, base, *options) for part, base in zip(parts, _BASES)],
                 _BASES, jit_options)


_elementwise = _dispatcher(_slice_runner, _INLINE)
# called, not inlined: inlined into every step function it cost a minute of compile time
_elementwise_update = _dispatcher(_update_runner, _CALLED, False, False)
_elementwise_sign_update = _dispatcher(_update_runner, _CALLED, True, False)
# An EMA joins the update's pass only before these opcodes (Lion's interp, signum's sign):
# over the whole table, as the two above, these loops doubled the first compile, measured.
_EMA_FUSED = tuple(sorted(ELEMENTWISE_INDEX[name] for name in ("interp", "sign")))


def _ema_dispatcher(signed: bool):
    runners = [_update_runner((ELEMENTWISE_KERNELS[op],), op, signed, True) for op in _EMA_FUSED]
    return _tree(runners, list(_EMA_FUSED), _CALLED)


_ema_update = _ema_dispatcher(False)
_ema_sign_update = _ema_dispatcher(True)


@njit(**_INLINE)
def _ema_bias(buf, dst, x, kc, out, denom, n):
    """An EMA and its bias correction (``ema_bc``: OP_EMA, then OP_BIAS of its row) in one
    pass: the division, the slowest part of Adam's step, overlaps the EMA's loads and stores."""
    if denom == 0.0:
        for j in range(n):
            i = np.uint64(j)
            buf[dst + i] = _EMA(buf[dst + i], buf[x + i], kc)
            buf[out + i] = 0.0
    else:
        for j in range(n):
            i = np.uint64(j)
            s = _EMA(buf[dst + i], buf[x + i], kc)
            buf[dst + i] = s
            buf[out + i] = s / denom


@njit(**_INLINE)
def _exec_tile(code, consts, buf, starts, sched, n, t, n_ops):
    """Opcodes ``[0, n_ops)`` once on the current tile (``n`` elements from ``starts``).

    Offsets are unsigned so that Numba emits no negative-index wraparound inside the loops
    (which would stop them from vectorising); views would cost a reference count each.
    Schedule opcodes read their value from ``buf[sched + index]`` (see :func:`begin_step`).
    """
    r = 0
    while r < n_ops:
        op = code[r, 0]
        dst = np.uint64(starts[code[r, 1]])
        x = np.uint64(starts[code[r, 2]])
        kc = consts[code[r, 5]] if code[r, 5] >= 0 else 0.0
        if op < _N_ELEMENTWISE:
            _elementwise(op, buf, dst, x, np.uint64(starts[code[r, 3]]),
                         np.uint64(starts[code[r, 4]]), kc, n, 0)
        elif op == OP_EMA:
            # the update's math is the table's (one row per state update)
            if r + 1 < n_ops and code[r + 1, 0] == OP_BIAS and code[r + 1, 2] == code[r, 1]:
                r += 1
                _ema_bias(buf, dst, x, kc, np.uint64(starts[code[r, 1]]),
                          _BIAS(consts[code[r, 5]], float(t)), n)
            else:
                for j in range(n):
                    i = np.uint64(j)
                    buf[dst + i] = _EMA(buf[dst + i], buf[x + i], kc)
        elif op == OP_ACC:
            for j in range(n):
                i = np.uint64(j)
                buf[dst + i] = _ACC(buf[dst + i], buf[x + i], kc)
        elif op == OP_BIAS:
            denom = _BIAS(kc, float(t))
            if denom == 0.0:
                for j in range(n):
                    buf[dst + np.uint64(j)] = 0.0
            else:
                for j in range(n):
                    i = np.uint64(j)
                    buf[dst + i] = buf[x + i] / denom
        else:
            value = buf[sched + op - OP_SCHEDULE]
            for j in range(n):
                buf[dst + np.uint64(j)] = value
        r += 1


@njit(**_INLINE)
def _fused_tail(code, output):
    """How many of the last opcodes run as one pass with the weight update: 1 when the last
    is elementwise and writes the direction (its value is read by nothing else in the step),
    2 when that last opcode is also ``sign`` of the elementwise opcode just before it (Lion's
    ``sign(interp(...))``: the sign is taken in the pass, its input never stored), else 0."""
    last = code.shape[0] - 1
    if last < 0 or code[last, 0] >= _N_ELEMENTWISE or code[last, 1] != output:
        return 0
    if (last >= 1 and code[last, 0] == _OP_SIGN and code[last - 1, 0] < _N_ELEMENTWISE
            and code[last, 2] == code[last - 1, 1]):
        return 2
    return 1


@njit(**_INLINE)
def _fused_ema(code, first):
    """1 when the opcode just before the fused tail (which starts at row ``first``) is an EMA
    whose state is the first input of the tail's first opcode, one of ``_EMA_FUSED``: the
    EMA joins the tail's pass (Lion's state update, interp, sign and the update in one pass).
    Each element's state is stored before any later input is read, so an opcode that reads
    it again (``y`` or ``z``) still gets the new value; every opcode is elementwise, so no
    bit changes. (An EMA with its bias correction is never here: the row after it is the
    tail's elementwise opcode.)"""
    if (first == code.shape[0] or first < 1 or code[first - 1, 0] != OP_EMA
            or code[first, 2] != code[first - 1, 1]):
        return 0
    for op in _EMA_FUSED:
        if code[first, 0] == op:
            return 1
    return 0


# layout[...] of a register file (see new_registers)
LAYOUT_PERSIST = 0  # rows kept across steps: gradient, weights, state buffers
LAYOUT_STRIDE = 1  # elements in each of those rows (runs side by side)
LAYOUT_SCHEDULE = 2  # where this step's schedule values live in buf; -1: the rule reads none
LAYOUT_TILE = 3  # elements per tile


@njit(**_JIT)
def new_registers(code, literal_registers, literal_values, n_registers, w0, copies):
    """A fresh register file for ``copies`` runs side by side, each starting from ``w0``.

    Returns ``(buf, starts, layout)``. Rows ``r < layout[LAYOUT_PERSIST]`` (gradient, weights,
    state buffers) hold ``copies * P`` elements, run ``c`` at ``[c * P, (c + 1) * P)`` of row
    ``r`` (which starts at ``r * copies * P``); the other registers are tile rows of
    ``layout[LAYOUT_TILE]`` elements (sized so that a tile of every register fits L1). Vec
    literals are tile rows filled once here.
    """
    p = w0.shape[0]
    n = p * copies
    tile = min(n, max(_MIN_TILE, min(TILE, L1_DOUBLES // n_registers // 8 * 8)))
    n_persist = 2
    uses_schedule = False
    for r in range(code.shape[0]):
        if code[r, 0] == OP_EMA or code[r, 0] == OP_ACC:
            n_persist = max(n_persist, code[r, 1] + 1)
        if code[r, 0] >= OP_SCHEDULE:
            uses_schedule = True
    size = n_persist * n + (n_registers - n_persist) * tile
    buf = np.zeros(size + len(_SCHEDULES))
    for c in range(copies):
        buf[REG_WEIGHT * n + c * p:REG_WEIGHT * n + (c + 1) * p] = w0
    starts = np.zeros(n_registers, dtype=np.int64)
    for r in range(n_persist, n_registers):
        starts[r] = n_persist * n + (r - n_persist) * tile
    for j in range(literal_registers.shape[0]):
        s = starts[literal_registers[j]]
        buf[s:s + tile] = literal_values[j]
    layout = np.array([n_persist, n, size if uses_schedule else -1, tile], dtype=np.int64)
    return buf, starts, layout


@njit(**_INLINE)
def begin_step(buf, layout, t, total_steps):
    """This step's schedule values, when the rule reads any. (Computed in the opcode loop,
    LLVM hoisted cos() out of it into every rule's step: ~20 ns a step, measured.)"""
    base = layout[LAYOUT_SCHEDULE]
    if base >= 0:
        frac = 0.0
        if total_steps > 0:
            frac = min(max((t - 1) / total_steps, 0.0), 1.0)
        k = 0
        for kernel in literal_unroll(_SCHEDULES):
            buf[base + k] = kernel(frac)
            k += 1


@njit(**_INLINE)
def _update(buf, w, d, n, lr, weight_decay):
    """w <- w - lr * (d + weight_decay * w), decoupled weight decay as AdamW and Lion."""
    for j in range(n):
        i = np.uint64(j)
        buf[w + i] = _moved(buf[w + i], buf[d + i], lr, weight_decay)


@njit(**_INLINE)
def _set_tile(starts, layout, lo):
    stride = layout[LAYOUT_STRIDE]
    for r in range(layout[LAYOUT_PERSIST]):
        starts[r] = r * stride + lo


@njit(**_INLINE)
def rule_step_tile(code, consts, buf, starts, layout, lo, m, t, output, lrs, seg,
                   weight_decay, grad_at=-1):
    """:func:`rule_step` on elements ``[lo, lo + m)`` only (``m <= layout[LAYOUT_TILE]``), for
    loops that compute an elementwise gradient tile by tile: given ``grad_at`` >= 0, it is
    read from a tile at that offset of ``buf`` instead of its full-length row, and never leaves
    the cache. The caller calls :func:`begin_step` once per step."""
    _set_tile(starts, layout, lo)
    if grad_at >= 0:
        starts[REG_GRAD] = grad_at
    fused = _fused_tail(code, output)
    first = code.shape[0] - fused
    ema = _fused_ema(code, first)
    _exec_tile(code, consts, buf, starts, layout[LAYOUT_SCHEDULE], m, t, first - ema)
    w = starts[REG_WEIGHT]
    d = starts[output]
    if fused:
        kc = consts[code[first, 5]] if code[first, 5] >= 0 else 0.0
        e = max(first - 1, 0)  # the fused EMA's row, when ema
        args = (code[first, 0], buf, np.uint64(d), np.uint64(starts[code[first, 2]]),
                np.uint64(starts[code[first, 3]]), np.uint64(starts[code[first, 4]]), kc, m,
                (np.uint64(w), lrs, lo, seg, weight_decay, np.uint64(starts[code[e, 1]]),
                 np.uint64(starts[code[e, 2]]), consts[code[e, 5]] if ema else 0.0))
        if ema:
            if fused == 2:
                _ema_sign_update(*args)
            else:
                _ema_update(*args)
        elif fused == 2:
            _elementwise_sign_update(*args)
        else:
            _elementwise_update(*args)
        return
    # the tile may span several runs (segments), each with its own learning rate; the
    # division only where it is needed (it costs ~10 ns, a tenth of a small run's step)
    k = 0 if lo < seg else lo // seg
    i = 0
    while i < m:
        end = min(m, (k + 1) * seg - lo)
        _update(buf, np.uint64(w + i), np.uint64(d + i), end - i, lrs[k], weight_decay)
        i = end
        k += 1


@njit(**_HOT)
def rule_step(code, consts, buf, starts, layout, count, t, total_steps, output, lrs, seg,
              weight_decay):
    """One step: states, direction d and ``w <- w - lr * (d + weight_decay * w)``, tile by tile.

    The gradient row must hold the gradient. The first ``count`` elements of the persistent
    rows are stepped, in segments of ``seg`` (one per run); segment ``k`` steps with
    ``lrs[k]`` (already scaled by any learning-rate schedule). Compiled once, without
    reference counting, and called by every task loop.
    """
    begin_step(buf, layout, t, total_steps)
    tile = layout[LAYOUT_TILE]
    for lo in range(0, count, tile):
        rule_step_tile(code, consts, buf, starts, layout, lo, min(tile, count - lo), t, output,
                       lrs, seg, weight_decay)


@njit(**_HOT)
def rule_direction(code, consts, buf, starts, layout, t, total_steps, output, out):
    """Advance the states one step and write the direction d into ``out`` (weights unchanged)."""
    begin_step(buf, layout, t, total_steps)
    n = layout[LAYOUT_STRIDE]
    tile = layout[LAYOUT_TILE]
    for lo in range(0, n, tile):
        m = min(tile, n - lo)
        _set_tile(starts, layout, lo)
        _exec_tile(code, consts, buf, starts, layout[LAYOUT_SCHEDULE], m, t, code.shape[0])
        d = starts[output]
        for i in range(m):
            out[lo + i] = buf[d + i]


@njit(**_HOT)
def _quadratic_loop(code, consts, buf, starts, layout, output, curvature, lrs, steps, losses):
    p = curvature.shape[0]
    n = layout[LAYOUT_STRIDE]
    tile = layout[LAYOUT_TILE]
    g_tile = buf.shape[0] - tile  # the gradient lives one tile at a time, never in memory
    w_row = np.uint64(REG_WEIGHT * n)
    for t in range(steps + 1):
        begin_step(buf, layout, t + 1, steps)
        # the gradient and loss of a tile, then the rule on that tile: g stays in the cache
        for lo in range(0, n, tile):
            m = min(tile, n - lo)
            k = 0 if lo < p else lo // p
            j = lo
            while j < lo + m:
                end = min(lo + m, (k + 1) * p)
                loss = losses[k, t] if j > k * p else 0.0
                first = np.uint64(k * p)
                for e in range(np.uint64(j), np.uint64(end)):
                    wj = buf[w_row + e]
                    c = curvature[e - first]
                    buf[np.uint64(g_tile) + e - np.uint64(lo)] = c * wj
                    loss += 0.5 * c * wj * wj
                losses[k, t] = loss
                j = end
                k += 1
            if t < steps:
                rule_step_tile(code, consts, buf, starts, layout, lo, m, t + 1, output, lrs,
                               p, 0.0, g_tile)
        finite = True
        for k in range(lrs.shape[0]):
            finite = finite and math.isfinite(losses[k, t])
        if not finite:
            break


@njit(**_JIT)
def run_quadratic(code, consts, literal_registers, literal_values, n_registers, output,
                  curvature, w0, lrs, steps):
    """Minimise 0.5 * sum(curvature * w**2) for ``steps`` steps at each lr of ``lrs``, the
    runs side by side in one register file; returns the loss before each step and at the end,
    shape (len(lrs), steps + 1), NaN after the step where any run's loss stopped being finite.
    """
    buf, starts, layout = new_registers(code, literal_registers, literal_values, n_registers,
                                        w0, lrs.shape[0])
    buf = np.concatenate((buf, np.zeros(layout[LAYOUT_TILE])))  # the gradient's tile
    losses = np.full((lrs.shape[0], steps + 1), np.nan)
    _quadratic_loop(code, consts, buf, starts, layout, output, curvature, lrs, steps, losses)
    return losses


class StepRunner:
    """Drive a Program one step at a time from Python on a flat parameter vector.

    >>> runner = StepRunner(compile_rule("sign(g)"), w0)   # doctest: +SKIP
    >>> w = runner.step(grad, lr=0.01)                      # doctest: +SKIP
    """

    def __init__(self, program: Program, w0: np.ndarray, total_steps: int = 0):
        self.program = program
        self.total_steps = int(total_steps)
        w0 = np.ascontiguousarray(w0, dtype=np.float64)
        self.n = int(w0.shape[0])
        self._buf, self._starts, self._layout = new_registers(
            program.code, program.literal_registers, program.literal_values,
            program.n_registers, w0, 1)
        self._lrs = np.zeros(1)
        self.t = 0

    def _persistent(self, register: int) -> np.ndarray:
        return self._buf[register * self.n:(register + 1) * self.n]

    @property
    def weights(self) -> np.ndarray:
        """The weights (a view: writing to it moves them)."""
        return self._persistent(REG_WEIGHT)

    def _load(self, grad: np.ndarray) -> None:
        self.t += 1
        self._persistent(REG_GRAD)[:] = grad

    def direction(self, grad: np.ndarray) -> np.ndarray:
        """Advance the state with ``grad`` and return the update direction d (a copy)."""
        self._load(grad)
        out = np.empty(self.n)
        p = self.program
        rule_direction(p.code, p.consts, self._buf, self._starts, self._layout, self.t,
                       self.total_steps, p.output, out)
        return out

    def step(self, grad: np.ndarray, lr: float, weight_decay: float = 0.0) -> np.ndarray:
        """One step ``w <- w - lr * (d + weight_decay * w)``; returns the weights (a view)."""
        self._load(grad)
        self._lrs[0] = lr
        p = self.program
        rule_step(p.code, p.consts, self._buf, self._starts, self._layout, self.n, self.t,
                  self.total_steps, p.output, self._lrs, self.n, float(weight_decay))
        return self.weights


def warm_up() -> None:
    """Compile (or load from the cache) the entry points the search uses, before workers fork
    (:func:`run_quadratic`, for benchmarks only, compiles on its first call)."""
    from primitives.program import compile_rule

    prog = compile_rule("ema_bc(add(clip(g, 1.0), lin_decay), 0.9)")
    w0 = np.ones(4)
    runner = StepRunner(prog, w0, total_steps=2)
    runner.direction(np.ones(4))
    runner.step(np.ones(4), 0.1, 0.01)


__all__ = ["BATCH_ELEMENTS", "LAYOUT_PERSIST", "LAYOUT_SCHEDULE", "LAYOUT_STRIDE",
           "LAYOUT_TILE", "TILE",
           "StepRunner", "begin_step", "runs_per_call", "new_registers", "rule_direction", "rule_step", "rule_step_tile",
           "run_quadratic", "warm_up"]
