"""The passes over one chunk of channels: ESPRIT at the singular-value
order, a sharper subspace and an order search, fewer modes, the stable
fallbacks, and the residue guard."""
from __future__ import annotations

import numpy as np
from s4dc.passes.kernel_fit.grids import _dft_poles, _fe_poles
from s4dc.passes.kernel_fit.lattice import _lattice_candidates, _lattice_init, _pole_weights
from s4dc.passes.kernel_fit.lstsq import _eval_sets, _lstsq_fit, _lstsq_tsvd
from s4dc.passes.kernel_fit.modes import _clip_radius, _coef_to_residues, _conj_closed, _slots, _stabilize
from s4dc.passes.kernel_fit.ranking import _RES_MAX, _SWELL, _Best, _swell
from s4dc.passes.kernel_fit.state import ChunkState, FitSettings
from s4dc.passes.kernel_fit.subspace import _esprit, _orders_from_sv, _subspace

_SKETCH_MIN = 72          # sketch width (columns) for the first pass
_OVERSAMPLE = 12          # extra sketch columns beyond the largest order tried


def _try_orders(st: ChunkState, U: np.ndarray, rows: np.ndarray, orders: np.ndarray,
                view: np.ndarray | None = None, record: bool = True) -> np.ndarray:
    """ESPRIT fits at the given order per channel, offered to `st.best`.

    rows: rows of U; view[r] is row r's live position (identity when None,
    U then has a row per live position). record=False leaves the reference
    and unstable fits as they are (side trials). Returns the number of
    folded modes of each fit (aligned with rows)."""
    cfg = st.cfg
    at = rows if view is None else view[rows]      # live positions of the rows
    slots = np.zeros(len(rows), dtype=int)
    for n in np.unique(orders):
        of_n = orders == n
        ev = _esprit(U[rows[of_n]], int(n))
        ev = np.where(np.abs(ev.imag) <= 1e-14 * np.abs(ev), ev.real + 0j, ev)
        x, rn = _lstsq_fit(st.k[st.live[at[of_n]]], ev, cfg.tol)
        pp, rr = _coef_to_residues(ev, x)
        pos = np.nonzero(of_n)[0]
        for j, i in enumerate(at[of_n]):
            ci = st.live[i]
            stable = bool(np.all(np.abs(ev[j]) <= cfg.rho_max))
            slots[pos[j]] = _slots(ev[j])
            fits_cap = slots[pos[j]] <= cfg.cap
            if stable and fits_cap:
                tame = True
                if rn[j] <= cfg.tol and not st.decayed[ci]:
                    tame = _swell(pp[j], rr[j], st.L) <= _SWELL
                st.best.offer(ci, pp[j], rr[j], rn[j], tame)
            elif not stable and record:
                st.unstable_fit[i] = (ev[j], pp[j], rr[j], rn[j])
            if not record:
                continue
            cur = st.ref_fit[i]
            # reference unconstrained fit: the lowest order within tol/10, else the most accurate
            if cur is None or (cur[3] > 0.1 * cfg.tol and rn[j] < cur[3]):
                st.ref_fit[i] = (ev[j], pp[j], rr[j], rn[j])
    return slots


def _fit_chunk(k: np.ndarray, cfg: FitSettings) -> tuple[list, list, np.ndarray, list]:
    """Fit a chunk of normalized kernels (B, L), each with ||k|| = 1 or 0.

    Returns per-channel poles (Im >= 0), residues, the relative fit error, and
    a lattice hint (theta_top, rho_top) for kernels that have not decayed in
    the window (None otherwise).
    """
    tol, cap, rho_max = cfg.tol, cfg.cap, cfg.rho_max
    B, L = k.shape
    best = _Best(B, tol)
    norms = np.linalg.norm(k, axis=1)
    for i in range(B):  # the empty model is the baseline (exact for a zero kernel)
        best.offer(i, np.zeros(0, complex), np.zeros(0, complex), float(norms[i]))
    live = np.nonzero(norms > 0)[0]
    hints: list = [None] * B
    if live.size == 0 or cap == 0:
        return best.poles, best.res, best.err, hints

    q = L // 2
    p_rows = L - q + 1
    n_max = int(min(2 * cap, p_rows - 2, q - 1))
    if n_max < 1:
        # kernels too short for a Hankel matrix: exact stable interpolation
        if L // 2 + 1 <= cap:
            ev = _dft_poles(L, min(rho_max, float(np.exp(-1.0 / L))))
            for i in live:
                pp, rr, ee = _eval_sets(k[i:i + 1], [ev], 0.5 * tol)
                best.offer(i, pp[0], rr[0], ee[0])
        return best.poles, best.res, best.err, hints

    # kernels whose last tenth holds less than 1e-3 of their peak have decayed:
    # a stable fit of those cannot swell past the window
    peak = np.max(np.abs(k), axis=1)
    decayed = np.max(np.abs(k[:, L - max(1, L // 10):]), axis=1) <= 1e-3 * peak
    nl = len(live)
    st = ChunkState(k, cfg, best, live, decayed, hints, ref_fit=[None] * nl, unstable_fit=[None] * nl)
    allidx = np.arange(nl)

    # ---- pass 1: plain sketch, ESPRIT at the singular-value order
    width = min(q, _SKETCH_MIN)
    U, S = _subspace(k[live], width, 0, st.cache)
    n0 = _orders_from_sv(S, tol, n_max)
    _try_orders(st, U, allidx, n0)
    todo = np.array([i for i in allidx if not best.done(live[i])], dtype=int)
    if todo.size == 0:
        return _finish(st)

    # ---- pass 2: accurate subspace (one power iteration, wider when the rank needs it)
    need_w = n0[todo] + 3 * _OVERSAMPLE // 2
    need_w = np.where(n0[todo] >= width - 2, n_max + _OVERSAMPLE, need_w)   # rank fills the sketch
    for wgrp in np.unique(np.minimum(q, np.maximum(_SKETCH_MIN, need_w))):
        grp = todo[np.minimum(q, np.maximum(_SKETCH_MIN, need_w)) == wgrp]
        U2, S2 = _subspace(k[live[grp]], int(wgrp), 1, st.cache)
        m_max = min(n_max, U2.shape[2] - 1)
        n1 = _orders_from_sv(S2, tol, m_max)
        loc = np.arange(len(grp))
        order = n1.copy()
        top = np.full(len(grp), m_max)          # highest order allowed (mode cap)
        active = np.ones(len(grp), bool)
        for it, step in enumerate((1, 1, 2, 4, 8, 8, 8, 8)):
            a = loc[active]
            if a.size == 0:
                break
            sl = _try_orders(st, U2, a, order[a], view=grp)   # U2's row j is live position grp[j]
            for j, nsl in zip(a, sl):
                ci = live[grp[j]]
                rf = st.ref_fit[grp[j]]
                if nsl > cap:                    # too many modes: come back down
                    top[j] = order[j] - 1
                    order[j] = max(1, order[j] - (nsl - cap))
                    if order[j] > top[j] or it >= 6:
                        active[j] = False
                    continue
                # done: fitted; or the order is exhausted; or an unconstrained fit is
                # already accurate but unstable (more order will not make it stable)
                if best.done(ci) or order[j] >= top[j] or (rf is not None and rf[3] <= 0.1 * tol):
                    active[j] = False
                else:
                    order[j] = min(order[j] + step, top[j])

    # ---- fewer modes: an ESPRIT fit with several real poles (a near-real
    #      pair resolved as two reals, say) may have a neighbour order that
    #      needs fewer folded modes
    extra = []
    for i in allidx:
        ci = live[i]
        p = best.poles[ci]
        if best.done(ci) and p is not None and np.count_nonzero(p.imag == 0) >= 2:
            extra.append(i)
    if extra:
        extra = np.array(extra, dtype=int)
        n_b = np.array([2 * np.count_nonzero(best.poles[live[i]].imag > 0)
                        + np.count_nonzero(best.poles[live[i]].imag == 0) for i in extra])
        for dn in (-1, -2, 1):
            o = n_b + dn
            ok = (o >= 1) & (o <= min(n_max, U.shape[2] - 1))
            if ok.any():
                _try_orders(st, U, extra[ok], o[ok], record=False)

    # ---- pass 3: stable candidates for channels ESPRIT could not fit stably
    need = [i for i in allidx if not best.done(live[i])]
    if need:
        _fallbacks(st, need)

    return _finish(st)


def _finish(st: ChunkState) -> tuple[list, list, np.ndarray, list]:
    """Residue guard and lattice hints; the chunk's results."""
    best, cfg = st.best, st.cfg
    for i, ci in enumerate(st.live):
        if not st.decayed[ci] and st.ref_fit[i] is not None:
            _, pp, rr, _ = st.ref_fit[i]
            init = _lattice_init(pp, _pole_weights(pp, rr, st.L), cfg)
            if init is not None:
                st.hints[ci] = init[:2]
    # ---- conditioning guard: residues far beyond the kernel's scale cancel inside
    #      the window (near-zero poles imitating the taps of an FIR kernel, say).
    #      Such a realization is numerically meaningless (its value depends on
    #      rounding, and no fixed-point format holds it), so residues are bounded
    #      by _RES_MAX x ||k||: the largest truncated-SVD fit within the bound,
    #      its (larger) error reported as it is.
    for ci in st.live:
        p, r = best.poles[ci], best.res[ci]
        if p is None or p.size == 0 or np.max(np.abs(r)) <= _RES_MAX:
            continue
        ev = _conj_closed(p)
        x, e = _lstsq_tsvd(st.k[ci], ev, 0.5 * cfg.tol, bound=_RES_MAX)
        pp, rr = _coef_to_residues(ev[None], x[None])
        best.poles[ci], best.res[ci], best.err[ci] = pp[0], rr[0], e
    return best.poles, best.res, best.err, st.hints


def _fallbacks(st: ChunkState, need: list[int]) -> None:
    """Stable candidates for the channels (live positions `need`) whose ESPRIT
    fits were unstable, above tol, or swelling: the lattice first, then (when
    it fails) a damped Fourier extension, the ESPRIT poles reflected and
    clamped, and for short kernels an exact stable interpolation. The
    reference unconstrained ESPRIT fit of each channel shows the band, radius
    and lattice of its kernel. Residues of these often ill-conditioned sets
    come from `_lstsq_tame`."""
    best, cfg = st.best, st.cfg
    tol, cap, rho_max = cfg.tol, cfg.cap, cfg.rho_max
    L = st.L
    for i in need:
        ci = st.live[i]
        kk = st.k[ci]
        if st.ref_fit[i] is None:
            continue
        _, pp, rr, _ = st.ref_fit[i]
        a = np.abs(pp)
        w = _pole_weights(pp, rr, L)

        # a. lattice (S4D-Lin structure)
        for pq, rq, eq, tame in _lattice_candidates(kk, pp, w, cfg):
            best.offer(ci, pq, rq, eq, tame)
        if best.done(ci):
            continue

        # b. the rest, in increasing mode count, until one is within tol and tame
        sig = w > max(0.3 * tol, 0.02 * float(np.median(w)) if w.size else 0.0)
        theta_b = max(float(np.max(np.abs(np.angle(pp[sig])), initial=0.0)), 2 * np.pi / L)
        j_min = int(np.count_nonzero(sig)) + 2
        rad = a[sig & (a > 0)]
        rho_fe = float(np.median(rad)) if rad.size else rho_max
        rho_fe = min(float(np.clip(rho_fe, np.exp(-3.0 / L), np.exp(-0.25 / L))), rho_max)
        cands: list[np.ndarray] = []
        for c in (1.5, 1.25, 1.0):
            ev_fe = _fe_poles(theta_b, L, cap, rho_fe, c, j_min)
            if ev_fe is not None:
                cands.append(ev_fe)
        cands.append(_conj_closed(_stabilize(pp, rho_max)))
        if st.unstable_fit[i] is not None:
            cands.append(_conj_closed(_stabilize(st.unstable_fit[i][1], rho_max)))
        if L // 2 + 1 <= cap:   # short kernels: exact stable interpolation
            cands.append(_dft_poles(L, float(np.exp(-1.0 / L))))
        else:                   # last resort: cap modes spread over the band
            g = _fe_poles(theta_b, L, cap, rho_fe, 2.0 * L * theta_b * 1.15 / (np.pi * max(cap - 1, 1)), cap)
            if g is not None:
                cands.append(g)
        cands = [_clip_radius(c, rho_max) for c in cands if _slots(c) <= cap and len(c) <= L]
        cands.sort(key=_slots)
        for c in cands:
            if best.done(ci) and _slots(c) >= best.slots[ci]:
                break
            p_l, r_l, e_l = _eval_sets(kk[None], [c], 0.5 * tol)
            best.offer(ci, p_l[0], r_l[0], e_l[0], _swell(p_l[0], r_l[0], L) <= _SWELL)
