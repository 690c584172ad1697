"""Triton kernels of the heatmap-decoding family (GPU backend; also runs on CPU under TRITON_INTERPRET=1).

``decode``: grid (channel,). One pass over the map in BLOCK-sized chunks keeps, per lane, the running maximum
and its first row-major index (``wsm`` also the lane's runner-up; ``topk`` with ``k <= KMAX`` a running top-k
set merged per chunk), so each map is read once; the lanes are then reduced (ties: lowest index) and the
method refines the argmax from a few loads around it. ``dark`` (its (blur + 4)^2 patch) and
``local_softargmax`` (its window) visit their region in TILE x TILE tiles, and ``topk`` with ``k > KMAX``
finds the k-th value bit by bit in passes over the map (32 for float32 maps, 64 for float64, plus two), so
no setting of ``blur``, ``window`` or ``k`` makes the compiled kernel larger. The affine map to image space
is applied before the store.

``soft_argmax_forward``: grid (channel,), a single online pass: each lane keeps its own running maximum of
``beta * h`` and rescales its sums of ``exp``, ``exp * j`` and ``exp * i`` when that maximum grows (one exp
per pixel); the lanes are combined at the end. ``soft_argmax_backward``: grid (channel, block of pixels),
elementwise from the saved (coords, stat). Everything accumulates in the compute dtype (float64 for float64
maps, else float32); float arguments are annotated ``tl.float64`` and converted to it (``common.scalar``).
"""

from __future__ import annotations

import functools
from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from fastlmk.kernels.common import enum, scalar
from fastlmk.reference.decode import dark_kernel

# the method codes, as the C++ kernels define them (csrc/decode/decode.h)
ARGMAX, QUARTER, WSM, PARABOLA, DARK, LOCAL_SOFTARGMAX, TOPK, OFFSET = enum(
    "decode_method", "argmax", "quarter", "wsm", "parabola", "dark", "local_softargmax", "topk", "offset")

BLOCK = 1024
TILE = 16  # largest tile of the dark patch and the local_softargmax window
KMAX = 32  # largest k kept as a running set; larger k select the k-th value in passes over the map
_BIG = tl.constexpr(1 << 30)  # "no pixel" index; maps hold fewer pixels
_COMPUTE = {torch.float32: tl.float32, torch.float64: tl.float64}
_KEYS = {torch.float32: tl.uint32, torch.float64: tl.uint64}  # _key's integer type per compute dtype


@triton.jit
def _pos(idx, W, COMPUTE: tl.constexpr):
    """Pixel centre (x = j, y = i) of flat index ``idx``."""
    return (idx % W).to(COMPUTE), (idx // W).to(COMPUTE)


@triton.jit
def _inside(y, x, H, W):
    return (x >= 0) & (x < W) & (y >= 0) & (y < H)


@triton.jit
def _load(base, fbase, idx, W, mask, other, COMPUTE: tl.constexpr, FLIP: tl.constexpr, SHIFT: tl.constexpr):
    """The map at flat index ``idx`` = y W + x in COMPUTE where ``mask`` (else ``other``); in the flip test
    (FLIP) the average of the map and the flipped map ``fbase`` at the mirrored column, W - 1 - x or, with
    SHIFT, W - max(x, 1)."""
    v = tl.load(base + idx, mask=mask, other=other).to(COMPUTE)
    if FLIP:
        x = idx % W
        fx = W - tl.maximum(x, 1) if SHIFT else W - 1 - x
        v = (v + tl.load(fbase + idx - x + fx, mask=mask, other=other).to(COMPUTE)) * 0.5
    return v


@triton.jit
def _at(base, fbase, y, x, H, W, COMPUTE: tl.constexpr, FLIP: tl.constexpr, SHIFT: tl.constexpr):
    """map[y, x], 0 outside the map."""
    return _load(base, fbase, y * W + x, W, _inside(y, x, H, W), 0.0, COMPUTE, FLIP, SHIFT)


@triton.jit
def _better(va, ia, vb, ib):
    """(va, ia) comes first: a higher value, or the same value at a lower row-major index."""
    return (va > vb) | ((va == vb) & (ia < ib))


@triton.jit
def _first_max(v, i):
    """max(v) and its lowest index (``_BIG`` entries are not pixels)."""
    m = tl.max(v, 0)
    return m, tl.min(tl.where(v == m, i, _BIG), 0)


@triton.jit
def _last_min(v, i, slots):
    """The last entry of a top-k set over ``slots``: its lowest value, at the highest index."""
    m = tl.min(tl.where(slots, v, float("inf")), 0)
    return m, tl.max(tl.where(slots & (v == m), i, -1), 0)


@triton.jit
def _topk_merge(v, idx, live, tv, ti, slots):
    """Merges a chunk into the running top-k (tv, ti): while the chunk's first live pixel comes before the
    set's last entry, it replaces that entry. Empty slots hold (-inf, _BIG + slot)."""
    cv, ci = _first_max(tl.where(live, v, float("-inf")), tl.where(live, idx, _BIG))
    wv, wi = _last_min(tv, ti, slots)
    while (ci < _BIG) & _better(cv, ci, wv, wi):
        hit = ti == wi
        tv = tl.where(hit, cv, tv)
        ti = tl.where(hit, ci, ti)
        live = live & (idx != ci)
        cv, ci = _first_max(tl.where(live, v, float("-inf")), tl.where(live, idx, _BIG))
        wv, wi = _last_min(tv, ti, slots)
    return tv, ti


@triton.jit
def _quarter(lo, hi, interior):
    """0.25 sign(hi - lo) on interior pixels (sign(NaN) = 0, as torch.sign)."""
    d = hi - lo
    return tl.where(interior, tl.where(d > 0, 0.25, tl.where(d < 0, -0.25, 0.0)), 0.0).to(d.dtype)


@triton.jit
def _parabola(lo, c, hi, interior):
    """Vertex of the parabola through (-1, lo), (0, c), (1, hi), clamped to [-0.5, 0.5]; 0 when flat or when
    one of the three is infinite."""
    denom = lo - 2 * c + hi
    ok = interior & (denom != 0) & (tl.abs(denom) < float("inf"))  # false for NaN and +-inf
    off = 0.5 * (lo - hi) / tl.where(ok, denom, 1.0)
    return tl.where(ok, tl.where(off < -0.5, -0.5, tl.where(off > 0.5, 0.5, off)), 0.0)  # keeps NaN


@triton.jit
def _tap(L, di, dj):
    """L[di, dj] of an 8x8 block holding offsets -2..2 at rows/cols 0..4."""
    p = tl.arange(0, 8)
    return tl.sum(tl.where((p[:, None] == di + 2) & (p[None, :] == dj + 2), L, 0.0))


@triton.jit
def _dark(base, fbase, x, y, H, W, peak, ker_ptr, blur, COMPUTE: tl.constexpr, FLIP: tl.constexpr,
          SHIFT: tl.constexpr, TILE: tl.constexpr):
    """DARK offset in float64. The blurred 5x5 patch around the argmax is B = G R G^T, R the map on rows/cols
    argmax +- (2 + r) (zero outside), G[p, a] = g[a - p] the banded blur; L = log(max(B s, 1e-10)) with
    s = peak / max(B) when max(B) > 0, else 1; offset = -Hess^-1 grad by the reference's differences.
    R is visited in TILE x TILE tiles (column strips outer, rows inner), so the kernel's size does not
    depend on ``blur``."""
    r = (blur - 1) // 2
    n = blur + 4  # rows and columns of R
    p = tl.arange(0, 8)
    t = tl.arange(0, TILE)
    B = tl.zeros([8, 8], tl.float64)
    for b0 in range(0, n, TILE):
        cb = b0 + t
        T = tl.zeros([8, TILE], tl.float64)  # (G R)[p, strip]
        for a0 in range(0, n, TILE):
            ca = a0 + t
            rows = y - 2 - r + ca[:, None]
            cols = x - 2 - r + cb[None, :]
            inside = _inside(rows, cols, H, W) & (ca[:, None] < n) & (cb[None, :] < n)
            R = _load(base, fbase, rows * W + cols, W, inside, 0.0, COMPUTE, FLIP, SHIFT).to(tl.float64)
            ta = ca[None, :] - p[:, None]
            band = (p[:, None] < 5) & (ta >= 0) & (ta < blur)
            G = tl.load(ker_ptr + ta, mask=band, other=0.0)
            # products outside the band are masked, not multiplied by 0, so that an infinite pixel acts as in a conv
            T += tl.sum(tl.where(band[:, :, None], G[:, :, None] * R[None, :, :], 0.0), 1)
        tb = cb[None, :] - p[:, None]
        band = (p[:, None] < 5) & (tb >= 0) & (tb < blur)
        G = tl.load(ker_ptr + tb, mask=band, other=0.0)
        B += tl.sum(tl.where(band[None, :, :], T[:, None, :] * G[None, :, :], 0.0), 2)
    bmax = tl.max(tl.max(tl.where((p[:, None] < 5) & (p[None, :] < 5), B, float("-inf")), 1), 0)
    L = B * tl.where(bmax > 0, peak / bmax, 1.0)
    L = tl.log(tl.where(L < 1e-10, 1e-10, L))  # clamp that keeps NaN
    c = _tap(L, 0, 0)
    gx = 0.5 * (_tap(L, 0, 1) - _tap(L, 0, -1))
    gy = 0.5 * (_tap(L, 1, 0) - _tap(L, -1, 0))
    dxx = 0.25 * (_tap(L, 0, 2) - 2 * c + _tap(L, 0, -2))
    dyy = 0.25 * (_tap(L, 2, 0) - 2 * c + _tap(L, -2, 0))
    dxy = 0.25 * (_tap(L, 1, 1) - _tap(L, -1, 1) - _tap(L, 1, -1) + _tap(L, -1, -1))
    det = dxx * dyy - dxy * dxy
    ok = (x > 1) & (x < W - 2) & (y > 1) & (y < H - 2) & (det != 0)
    safe = tl.where(ok, det, 1.0)
    return tl.where(ok, -(dyy * gx - dxy * gy) / safe, 0.0), tl.where(ok, -(dxx * gy - dxy * gx) / safe, 0.0)


@triton.jit
def _local_softargmax(base, fbase, x, y, H, W, r, COMPUTE: tl.constexpr, FLIP: tl.constexpr, SHIFT: tl.constexpr,
                      TILE: tl.constexpr):
    """Mean offset in the (2r+1)^2 window around the argmax weighted by max(h, 0); 0 when the weights are 0.
    The window is visited in TILE x TILE tiles, so the kernel's size does not depend on ``r``."""
    t = tl.arange(0, TILE)
    sw = tl.zeros([TILE, TILE], COMPUTE)
    sx = sw
    sy = sw
    for i0 in range(-r, r + 1, TILE):
        for j0 in range(-r, r + 1, TILE):
            di = i0 + t[:, None]
            dj = j0 + t[None, :]
            inside = _inside(y + di, x + dj, H, W) & (di <= r) & (dj <= r)
            v = tl.maximum(_load(base, fbase, (y + di) * W + x + dj, W, inside, 0.0, COMPUTE, FLIP, SHIFT), 0.0)
            sw += v
            sx += v * dj.to(COMPUTE)
            sy += v * di.to(COMPUTE)
    total = tl.sum(tl.sum(sw, 1), 0)
    ok = total > 0
    safe = tl.where(ok, total, 1.0)
    return (tl.where(ok, tl.sum(tl.sum(sx, 1), 0) / safe, 0.0),
            tl.where(ok, tl.sum(tl.sum(sy, 1), 0) / safe, 0.0))


@triton.jit
def _key(v, KEY: tl.constexpr):
    """An unsigned integer of v's bits that orders as v does (-0 as +0); NaN as 0, below every number."""
    u = (v + 0.0).to(KEY, bitcast=True)
    top = tl.full(u.shape, 1, KEY) << (KEY.primitive_bitwidth - 1)
    key = tl.where((u & top) != 0, ~u, u | top)
    return tl.where(v == v, key, 0)


@triton.jit
def _topk_select(base, fbase, HW, W, k, score, COMPUTE: tl.constexpr, FLIP: tl.constexpr, SHIFT: tl.constexpr,
                 KEY: tl.constexpr, BLOCK: tl.constexpr):
    """Softmax-weighted mean of the centres of the k first pixels (value descending, then index) for any k,
    in passes over the map: the k-th key bit by bit from the top (a count per bit), then one pass that takes
    every pixel above it and the first (k - above) equal to it."""
    lane = tl.arange(0, BLOCK)
    bits: tl.constexpr = KEY.primitive_bitwidth
    one = tl.full([], 1, KEY)
    kth = tl.full([], 0, KEY)
    for b in range(bits - 1, -1, -1):
        cand = kth | (one << b)
        n = tl.zeros([BLOCK], tl.int32)
        for start in range(0, HW, BLOCK):
            idx = start + lane
            v = _load(base, fbase, idx, W, idx < HW, 0.0, COMPUTE, FLIP, SHIFT)
            n += ((idx < HW) & (_key(v, KEY) >= cand)).to(tl.int32)
        kth = tl.where(tl.sum(n, 0) >= k, cand, kth)
    above = tl.zeros([BLOCK], tl.int32)
    for start in range(0, HW, BLOCK):
        idx = start + lane
        v = _load(base, fbase, idx, W, idx < HW, 0.0, COMPUTE, FLIP, SHIFT)
        above += ((idx < HW) & (_key(v, KEY) > kth)).to(tl.int32)
    ties = k - tl.sum(above, 0)  # pixels equal to the k-th to take, first in row-major order
    seen = 0
    se = tl.zeros([BLOCK], COMPUTE)
    sx = se
    sy = se
    for start in range(0, HW, BLOCK):
        idx = start + lane
        v = _load(base, fbase, idx, W, idx < HW, 0.0, COMPUTE, FLIP, SHIFT)
        key = _key(v, KEY)
        eq = (idx < HW) & (key == kth)
        rank = seen + tl.cumsum(eq.to(tl.int32), 0)  # 1-based among the equal pixels
        take = (idx < HW) & ((key > kth) | (eq & (rank <= ties)))
        e = tl.where(take, tl.exp(v - score), 0.0)
        j, i = _pos(idx, W, COMPUTE)
        se += e
        sx += e * j
        sy += e * i
        seen += tl.sum(eq.to(tl.int32), 0)
    total = tl.sum(se, 0)
    return tl.sum(sx, 0) / total, tl.sum(sy, 0) / total


@triton.jit
def _decode_kernel(maps_ptr, off_ptr, aff_ptr, ker_ptr, flip_ptr, foff_ptr, fidx_ptr, coords_ptr, score_ptr, HW, H,
                   W, KB, blur, window, k, METHOD: tl.constexpr, HAS_AFFINE: tl.constexpr, FLIP: tl.constexpr,
                   SHIFT: tl.constexpr, COMPUTE: tl.constexpr, BLOCK: tl.constexpr, KPAD: tl.constexpr,
                   SELECT: tl.constexpr, KEY: tl.constexpr, TILE: tl.constexpr):
    """coords[c] = argmax + the METHOD offset (then A[c // KB] @ (x, y, 1)), score[c] = max; NaN for a
    channel holding a NaN. FLIP: of the average of the map and flipped channel c - c % KB + fidx[c % KB]
    flipped back (_load), the offsets too (their x negated)."""
    c = tl.program_id(0).to(tl.int64)
    base = maps_ptr + c * HW
    fc = c - c % KB + tl.load(fidx_ptr + c % KB) if FLIP else c
    fbase = flip_ptr + fc * HW
    lane = tl.arange(0, BLOCK)
    v1 = tl.full([BLOCK], float("-inf"), COMPUTE)  # per lane: first maximum (v1, i1), runner-up (v2, i2)
    i1 = tl.full([BLOCK], _BIG, tl.int32)
    v2 = v1
    i2 = i1
    nans = tl.zeros([BLOCK], tl.int32)
    slots = tl.arange(0, KPAD) < k  # top-k set (tv, ti)
    tv = tl.full([KPAD], float("-inf"), COMPUTE)
    ti = _BIG + tl.arange(0, KPAD)
    for start in range(0, HW, BLOCK):
        idx = start + lane
        mask = idx < HW
        v = _load(base, fbase, idx, W, mask, float("-inf"), COMPUTE, FLIP, SHIFT)
        nans += (v != v).to(tl.int32)
        up1 = mask & _better(v, idx, v1, i1)
        if METHOD == WSM:
            up2 = mask & ~up1 & _better(v, idx, v2, i2)
            v2 = tl.where(up1, v1, tl.where(up2, v, v2))
            i2 = tl.where(up1, i1, tl.where(up2, idx, i2))
        v1 = tl.where(up1, v, v1)
        i1 = tl.where(up1, idx, i1)
        if METHOD == TOPK and not SELECT:
            tv, ti = _topk_merge(v, idx, mask & (v == v), tv, ti, slots)
    score, i = _first_max(v1, i1)
    i = tl.minimum(i, HW - 1)  # an all-NaN channel has no maximum
    x = i % W
    y = i // W
    xf, yf = _pos(i, W, COMPUTE)
    if METHOD == ARGMAX:  # argmax
        dx = 0.0
        dy = 0.0
    elif METHOD == QUARTER or METHOD == PARABOLA:  # quarter, parabola: per axis from the 4-neighbours
        lx = _at(base, fbase, y, x - 1, H, W, COMPUTE, FLIP, SHIFT)
        hx = _at(base, fbase, y, x + 1, H, W, COMPUTE, FLIP, SHIFT)
        ly = _at(base, fbase, y - 1, x, H, W, COMPUTE, FLIP, SHIFT)
        hy = _at(base, fbase, y + 1, x, H, W, COMPUTE, FLIP, SHIFT)
        inx = (x >= 1) & (x <= W - 2)
        iny = (y >= 1) & (y <= H - 2)
        if METHOD == QUARTER:
            dx = _quarter(lx, hx, inx)
            dy = _quarter(ly, hy, iny)
        else:
            dx = _parabola(lx, score, hx, inx)
            dy = _parabola(ly, score, hy, iny)
    elif METHOD == WSM:  # wsm: 0.25 px toward the second maximum, i.e. the first among the other pixels
        own = i1 == i
        m2, j = _first_max(tl.where(own, v2, v1), tl.where(own, i2, i1))
        j = tl.where(m2 == float("-inf"), tl.where(i == 0, 1, 0), j)  # all others -inf: the first of them
        ux, uy = _pos(j, W, COMPUTE)
        ux -= xf
        uy -= yf
        norm = tl.sqrt(ux * ux + uy * uy)
        dx = tl.where(HW > 1, 0.25 * ux / norm, 0.0)
        dy = tl.where(HW > 1, 0.25 * uy / norm, 0.0)
    elif METHOD == DARK:  # dark
        dx, dy = _dark(base, fbase, x, y, H, W, score.to(tl.float64), ker_ptr, blur, COMPUTE, FLIP, SHIFT, TILE)
        dx = dx.to(COMPUTE)
        dy = dy.to(COMPUTE)
    elif METHOD == LOCAL_SOFTARGMAX:  # local_softargmax
        dx, dy = _local_softargmax(base, fbase, x, y, H, W, window, COMPUTE, FLIP, SHIFT, TILE)
    elif METHOD == TOPK and SELECT:  # topk for k > KMAX: a few passes over the map
        tx, ty = _topk_select(base, fbase, HW, W, k, score, COMPUTE, FLIP, SHIFT, KEY, BLOCK)
        dx = tx - xf
        dy = ty - yf
    elif METHOD == TOPK:  # topk: softmax-weighted mean of the k first pixels' centres
        p = tl.where(slots, tl.exp(tv - score), 0.0)
        p = p / tl.sum(p, 0)
        tx, ty = _pos(ti, W, COMPUTE)
        dx = tl.sum(p * tx, 0) - xf
        dy = tl.sum(p * ty, 0) - yf
    else:  # offset
        dx = tl.load(off_ptr + 2 * c * HW + i)
        dy = tl.load(off_ptr + (2 * c + 1) * HW + i)
        if FLIP:  # the flipped image's offset at the mirrored pixel, its x negated
            q = y * W + (W - tl.maximum(x, 1) if SHIFT else W - 1 - x)
            dx = (dx - tl.load(foff_ptr + 2 * fc * HW + q)) * 0.5
            dy = (dy + tl.load(foff_ptr + (2 * fc + 1) * HW + q)) * 0.5
    cx = xf + dx
    cy = yf + dy
    bad = tl.sum(nans, 0) > 0
    cx = tl.where(bad, float("nan"), cx)
    cy = tl.where(bad, float("nan"), cy)
    if HAS_AFFINE:
        a = aff_ptr + (c // KB) * 6
        cx, cy = (tl.load(a) * cx + tl.load(a + 1) * cy + tl.load(a + 2),
                  tl.load(a + 3) * cx + tl.load(a + 4) * cy + tl.load(a + 5))
    tl.store(coords_ptr + 2 * c, cx)
    tl.store(coords_ptr + 2 * c + 1, cy)
    tl.store(score_ptr + c, tl.where(bad, float("nan"), score))


@triton.jit
def _vector_max(base, n, COMPUTE: tl.constexpr, BLOCK: tl.constexpr):
    """(first maximum, its index, whether a NaN occurs) of the vector of n values at base."""
    lane = tl.arange(0, BLOCK)
    v1 = tl.full([BLOCK], float("-inf"), COMPUTE)
    i1 = tl.full([BLOCK], _BIG, tl.int32)
    nans = tl.zeros([BLOCK], tl.int32)
    for start in range(0, n, BLOCK):
        idx = start + lane
        mask = idx < n
        v = tl.load(base + idx, mask=mask, other=float("-inf")).to(COMPUTE)
        nans = nans + (v != v).to(tl.int32)
        up = mask & _better(v, idx, v1, i1)
        v1 = tl.where(up, v, v1)
        i1 = tl.where(up, idx, i1)
    m, i = _first_max(v1, i1)
    return m, tl.minimum(i, n - 1), tl.sum(nans, 0) > 0


@triton.jit
def _decode_simcc_kernel(x_ptr, y_ptr, locs_ptr, score_ptr, WX, HY, COMPUTE: tl.constexpr, BLOCK: tl.constexpr):
    """locs[c] = (argmax x[c], argmax y[c]), score[c] = the smaller maximum; NaN where a vector holds NaN."""
    c = tl.program_id(0).to(tl.int64)
    mx, ix, nan_x = _vector_max(x_ptr + c * WX, WX, COMPUTE, BLOCK)
    my, iy, nan_y = _vector_max(y_ptr + c * HY, HY, COMPUTE, BLOCK)
    nan = float("nan")
    tl.store(locs_ptr + 2 * c, tl.where(nan_x, nan, ix.to(COMPUTE)))
    tl.store(locs_ptr + 2 * c + 1, tl.where(nan_y, nan, iy.to(COMPUTE)))
    tl.store(score_ptr + c, tl.where(nan_x | nan_y, nan, tl.minimum(mx, my)))


@triton.jit
def _soft_argmax_fwd_kernel(maps_ptr, flip_ptr, fidx_ptr, coords_ptr, stat_ptr, HW, H, W, KB, beta: tl.float64,
                            RELU: tl.constexpr, FLIP: tl.constexpr, SHIFT: tl.constexpr, COMPUTE: tl.constexpr,
                            BLOCK: tl.constexpr):
    """softmax: stat = logsumexp(beta h), coords = sum e (j, i) / sum e with e = exp(beta h - max);
    relu: stat = S = sum relu(h), coords = sum relu(h) (j, i) / S, the map centre when S = 0. FLIP: h is the
    flip average, as in _decode_kernel."""
    c = tl.program_id(0).to(tl.int64)
    fc = c - c % KB + tl.load(fidx_ptr + c % KB) if FLIP else c
    lane = tl.arange(0, BLOCK)
    m = tl.full([BLOCK], float("-inf"), COMPUTE)
    s = tl.zeros([BLOCK], COMPUTE)
    sx = s
    sy = s
    for start in range(0, HW, BLOCK):
        idx = start + lane
        mask = idx < HW
        h = _load(maps_ptr + c * HW, flip_ptr + fc * HW, idx, W, mask, 0.0, COMPUTE, FLIP, SHIFT)
        j, i = _pos(idx, W, COMPUTE)
        if RELU:
            e = tl.where(h < 0, 0.0, h)  # relu that keeps NaN
            s += e
            sx += e * j
            sy += e * i
        else:
            z = scalar(beta, COMPUTE) * h
            take = mask & (z != float("-inf"))
            up = take & (z > m)
            e = tl.exp(-tl.abs(z - m))  # exp(z - m), or exp(m - z) when z raises the lane's maximum
            s = tl.where(up, s * e + 1, tl.where(take, s + e, s))
            sx = tl.where(up, sx * e + j, tl.where(take, sx + e * j, sx))
            sy = tl.where(up, sy * e + i, tl.where(take, sy + e * i, sy))
            m = tl.where(up, z, m)
    if RELU:
        total = tl.sum(s, 0)
        ok = total != 0  # NaN passes, to NaN coordinates
        safe = tl.where(ok, total, 1.0)
        cx = tl.where(ok, tl.sum(sx, 0) / safe, (W - 1) / 2)
        cy = tl.where(ok, tl.sum(sy, 0) / safe, (H - 1) / 2)
        stat = total
    else:
        mm = tl.max(m, 0)
        r = tl.where(m == mm, 1.0, tl.exp(m - mm))  # 1 also when the maximum is infinite
        total = tl.sum(s * r, 0)
        stat = mm + tl.log(total)
        total = tl.where(mm == float("inf"), float("nan"), total)  # p = exp(inf - inf): NaN coords
        cx = tl.sum(sx * r, 0) / total
        cy = tl.sum(sy * r, 0) / total
    tl.store(coords_ptr + 2 * c, cx.to(COMPUTE))
    tl.store(coords_ptr + 2 * c + 1, cy.to(COMPUTE))
    tl.store(stat_ptr + c, stat)


@triton.jit
def _soft_argmax_bwd_kernel(maps_ptr, coords_ptr, stat_ptr, gc_ptr, gs_ptr, gm_ptr, HW, W, beta: tl.float64,
                            RELU: tl.constexpr, COMPUTE: tl.constexpr, BLOCK: tl.constexpr):
    """softmax: beta p (g . (pos - coords) + g_stat), p = exp(beta h - stat);
    relu: [h > 0] (g . (pos - coords) / S + g_stat), 0 when S = 0."""
    c = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < HW
    h = tl.load(maps_ptr + c * HW + offs, mask=mask, other=0.0).to(COMPUTE)
    j, i = _pos(offs, W, COMPUTE)
    s = tl.load(stat_ptr + c)
    gs = tl.load(gs_ptr + c)
    dot = tl.load(gc_ptr + 2 * c) * (j - tl.load(coords_ptr + 2 * c)) + tl.load(gc_ptr + 2 * c + 1) * (
        i - tl.load(coords_ptr + 2 * c + 1))
    if RELU:
        ok = s != 0
        g = tl.where(ok, tl.where(h > 0, dot / tl.where(ok, s, 1.0) + gs, 0.0), 0.0)
    else:
        b = scalar(beta, COMPUTE)
        g = b * tl.exp(b * h - s) * (dot + gs)
    tl.store(gm_ptr + c * HW + offs, g.to(gm_ptr.dtype.element_ty), mask=mask)


@functools.lru_cache(maxsize=None)
def _dark_kernel(blur: int, device: torch.device) -> Tensor:
    return dark_kernel(blur, device=device)


def _tile(method: int, blur: int, window: int) -> int:
    """Side of the square tiles ``dark`` (its (blur + 4)^2 patch) and ``local_softargmax`` (its window) visit."""
    side = blur + 4 if method == DARK else 2 * window + 1 if method == LOCAL_SOFTARGMAX else 1
    return min(TILE, triton.next_power_of_2(side))


def _block(hw: int) -> int:
    return min(BLOCK, triton.next_power_of_2(hw))


def decode(method: int, maps: Tensor, offsets: Optional[Tensor], affine: Optional[Tensor], k_per_batch: int,
           blur: int, window: int, topk: int, flipped: Optional[Tensor], flipped_offsets: Optional[Tensor],
           flip_index: Optional[Tensor], shift: bool, coords: Tensor, scores: Tensor) -> None:
    """Writes ``coords (N, 2)`` and ``scores (N,)`` of ``maps (N, H, W)`` decoded by METHODS[method]; with
    ``flipped`` (N, H, W), ``flip_index`` (K,) and ``flipped_offsets``, of the flip average."""
    n, h, w = maps.shape
    ker = _dark_kernel(blur, maps.device) if method == DARK else coords
    _decode_kernel[(n,)](maps, maps if offsets is None else offsets, coords if affine is None else affine, ker,
                         maps if flipped is None else flipped, maps if flipped_offsets is None else flipped_offsets,
                         scores if flip_index is None else flip_index, coords, scores, h * w, h, w, k_per_batch, blur,
                         window, topk, METHOD=method, HAS_AFFINE=affine is not None, FLIP=flipped is not None,
                         SHIFT=shift, COMPUTE=_COMPUTE[coords.dtype], BLOCK=_block(h * w),
                         KPAD=triton.next_power_of_2(topk) if method == TOPK and topk <= KMAX else 1,
                         SELECT=method == TOPK and topk > KMAX, KEY=_KEYS[coords.dtype], TILE=_tile(method, blur, window))


def decode_simcc(x: Tensor, y: Tensor, locs: Tensor, scores: Tensor) -> None:
    """Writes ``locs (N, 2)`` and ``scores (N,)`` of SimCC vectors ``x (N, WX)`` and ``y (N, HY)``."""
    n, wx = x.shape
    hy = y.shape[1]
    _decode_simcc_kernel[(n,)](x, y, locs, scores, wx, hy, COMPUTE=_COMPUTE[locs.dtype], BLOCK=_block(max(wx, hy)))


def soft_argmax_forward(maps: Tensor, beta: float, relu: bool, flipped: Optional[Tensor], flip_index: Optional[Tensor],
                        k_per_batch: int, shift: bool, coords: Tensor, stat: Tensor) -> None:
    """Writes ``coords (N, 2)`` and ``stat (N,)`` of ``soft_argmax`` over ``maps (N, H, W)`` (with
    ``flipped``, of the flip average)."""
    n, h, w = maps.shape
    _soft_argmax_fwd_kernel[(n,)](maps, maps if flipped is None else flipped,
                                  stat if flip_index is None else flip_index, coords, stat, h * w, h, w,
                                  k_per_batch, beta, RELU=relu, FLIP=flipped is not None, SHIFT=shift,
                                  COMPUTE=_COMPUTE[coords.dtype], BLOCK=_block(h * w))


def soft_argmax_backward(maps: Tensor, coords: Tensor, stat: Tensor, grad_coords: Tensor, grad_stat: Tensor,
                         beta: float, relu: bool, grad_maps: Tensor) -> None:
    """Writes the gradient of ``soft_argmax`` w.r.t. ``maps`` into ``grad_maps`` (maps' shape and dtype)."""
    n, h, w = maps.shape
    blk = _block(h * w)
    _soft_argmax_bwd_kernel[(n, triton.cdiv(h * w, blk))](maps, coords, stat, grad_coords, grad_stat, grad_maps,
                                                          h * w, w, beta, RELU=relu,
                                                          COMPUTE=_COMPUTE[coords.dtype], BLOCK=blk)
