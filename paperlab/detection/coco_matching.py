"""COCOeval's matching and accumulation, vectorised (note F4): the machinery under
``map.coco_evaluate``, whose docstring states the rules (pycocotools' ``cocoeval.py``).

- ``paired_iou``: the IoU of (detection, object) pairs with maskApi.c's ``bbIou`` arithmetic
  (float64; a crowd region's union is the detection's area).
- ``match``: the greedy matching of every image, category, area range and IoU threshold at
  once. All (detection, object) pairs of one (image, category) group are scored in one call;
  only detections with some IoU >= .5 (the first threshold) candidate take part (the others
  match nothing at any threshold), and step s handles the s-th such detection of every
  group, so the Python loop runs max-detections-per-group times, not once per detection.
- ``accumulate``: precision at the 101 recall points and the final recall of every category
  at once, visiting only the true positives (its docstring says why that suffices).

Shapes: A area ranges, T IoU thresholds, D detections (grouped by key, by score inside a
group), G objects, K categories, R recall points.
"""

from __future__ import annotations

import numpy as np


def paired_iou(d: np.ndarray, g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of pairs ``d[i], g[i]`` with maskApi.c's ``bbIou`` arithmetic (float64)."""
    w = np.minimum(d[:, 2] + d[:, 0], g[:, 2] + g[:, 0]) - np.maximum(d[:, 0], g[:, 0])
    h = np.minimum(d[:, 3] + d[:, 1], g[:, 3] + g[:, 1]) - np.maximum(d[:, 1], g[:, 1])
    inter = w * h
    da = d[:, 2] * d[:, 3]
    union = np.where(crowd, da, da + g[:, 2] * g[:, 3] - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((w > 0) & (h > 0), inter / union, 0.0)


def match(d_key: np.ndarray, d_box: np.ndarray, g_key: np.ndarray, g_box: np.ndarray,
          g_crowd: np.ndarray, g_ign: np.ndarray, g_id_ok: np.ndarray,
          iou_thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCO's greedy matching for every (area range, IoU threshold) at once.

    Returns ``tp_ok`` (A, T, D): matched to an object whose id is not 0, and ``dt_ign`` (A, T,
    D): matched to an ignored object. ``iou_thresholds`` (T,) ascending. Detections (grouped
    by key, by score inside a group) take part only if some object of their group has IoU
    >= the first threshold with them; the others
    match nothing at any threshold. Step s handles the s-th such detection of every group.
    """
    A, T, D = g_ign.shape[0], len(iou_thresholds), len(d_key)
    thr = np.minimum(iou_thresholds, 1 - 1e-10)
    tp_ok = np.zeros((A, T, D), bool)
    dt_ign = np.zeros((A, T, D), bool)
    if D == 0 or len(g_key) == 0:
        return tp_ok, dt_ign
    # every (detection, object) pair of the same group: one IoU call
    start = np.searchsorted(g_key, d_key, side="left")
    count = np.searchsorted(g_key, d_key, side="right") - start
    pair_d = np.repeat(np.arange(D), count)
    offset = np.arange(len(pair_d)) - np.repeat(np.cumsum(count) - count, count)
    pair_g = np.repeat(start, count) + offset
    iou = paired_iou(d_box[pair_d], g_box[pair_g], g_crowd[pair_g])
    cand = iou >= thr[0]
    pair_d, pair_g, iou = pair_d[cand], pair_g[cand], iou[cand]
    if len(pair_d) == 0:
        return tp_ok, dt_ign
    # candidate lists (one row per live detection, objects in group order, padded)
    live, n_c = np.unique(pair_d, return_counts=True)
    row = np.searchsorted(live, pair_d)
    col = np.arange(len(pair_d)) - np.repeat(np.cumsum(n_c) - n_c, n_c)
    C, G = int(n_c.max()), len(g_key)
    c_g = np.full((len(live), C), G)  # G: a padding object that never matches (IoU -1)
    c_iou = np.full((len(live), C), -1.0)
    c_g[row, col], c_iou[row, col] = pair_g, iou
    # step of each live detection: its position among its group's live detections
    lkey = d_key[live]
    step = np.arange(len(live)) - np.searchsorted(lkey, lkey, side="left")
    by_step = np.argsort(step, kind="stable")
    bounds = np.searchsorted(step[by_step], np.arange(int(step.max()) + 2))
    regular = np.concatenate([~g_ign, np.zeros((A, 1), bool)], axis=1)  # (A, G + 1)
    crowd = np.append(g_crowd, False)
    id_ok = np.append(g_id_ok, False)
    taken = np.zeros((A, T, G + 1), bool)
    a_ix, t_ix = np.arange(A)[:, None, None], np.arange(T)[None, :, None]
    for s in range(len(bounds) - 1):
        rows = by_step[bounds[s]:bounds[s + 1]]
        cg, ci = c_g[rows], c_iou[rows]  # (n, C)
        n = len(rows)
        ge = ci[None, None] >= thr[None, :, None, None]  # (1, T, n, C)
        free = ~taken[:, :, cg] | crowd[cg][None, None]  # (A, T, n, C)
        reg = regular[:, cg][:, None]  # (A, 1, n, C)
        ok = ge & free
        use = np.where((ok & reg).any(-1, keepdims=True), ok & reg, ok & ~reg)
        val = np.where(use, ci[None, None], -1.0)
        j = C - 1 - np.argmax(val[..., ::-1], axis=-1)  # the last best (A, T, n)
        found = use.any(-1)
        g_sel = cg[np.arange(n)[None, None], j]
        taken[np.broadcast_to(a_ix, found.shape)[found],
              np.broadcast_to(t_ix, found.shape)[found], g_sel[found]] = True
        d_idx = live[rows]
        tp_ok[:, :, d_idx] = found & id_ok[g_sel]
        dt_ign[:, :, d_idx] = found & ~np.take_along_axis(regular, g_sel.reshape(A, -1),
                                                          axis=1).reshape(found.shape)
    return tp_ok, dt_ign


def accumulate(tps: np.ndarray, ign: np.ndarray, cat: np.ndarray, npig: np.ndarray,
               recall_thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision at the 101 recall points (A, T, K, R) and the final recall (A, T, K) of
    every category at once. ``tps`` and ``ign`` (A, T, n): true positives and ignored
    detections in accumulation order, which is sorted by category (``cat`` (n,));
    ``npig`` (A, K): the objects that count.

    Only the true positives are visited. COCOeval reads the envelope max(pr[p:]) at p = the
    first detection whose recall tp / npig reaches R_r; recall grows only at a true positive,
    so p is the c_r-th true positive, c_r = the least c with c / npig >= R_r, and the
    precision between true positives only falls, so the envelope is the largest precision
    over the true positives from the c_r-th on: pr_i = i / (N_i + eps) at the i-th, N_i the
    detections not ignored up to it (COCOeval's tp + fp).
    """
    A, T, n = tps.shape
    K, R = npig.shape[1], len(recall_thresholds)
    counts = np.bincount(cat, minlength=K)
    seg_start = np.cumsum(counts) - counts
    tp_at = np.flatnonzero(tps)  # in (row = a * T + t, position) order
    row, pos = np.divmod(tp_at, n)
    k = cat[pos]
    seg = row * K + k  # non-decreasing: positions are sorted by category
    n_tp = np.bincount(seg, minlength=A * T * K)
    first = np.cumsum(n_tp) - n_tp
    i = (np.arange(len(tp_at)) - first[seg] + 1).astype(np.float64)
    ign_at = np.flatnonzero(ign)
    ignored = (np.searchsorted(ign_at, tp_at, side="right")
               - np.searchsorted(ign_at, row * n + seg_start[k], side="left"))
    seen = (pos - seg_start[k] + 1 - ignored).astype(np.float64)  # tp + fp
    pr = i / (seen + np.spacing(1))
    n_tp = n_tp.reshape(A, T, K)
    with np.errstate(divide="ignore", invalid="ignore"):
        rc_last = n_tp / npig[:, None, :]
    # c_r per (area, category): ceil(R_r npig), corrected by one where rounding misleads
    npf = npig.astype(np.float64)[:, :, None]
    c = np.ceil(recall_thresholds * npf)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where((c > 0) & ((c - 1) / npf >= recall_thresholds), c - 1, c)
        c = np.where(c / npf < recall_thresholds, c + 1, c)
    c = np.maximum(np.nan_to_num(c, nan=0.0, posinf=0.0), 1).astype(np.int64)  # (A, K, R)
    reach = c[:, None] <= n_tp[..., None]  # (A, T, K, R)
    ends = (first + n_tp.ravel()).reshape(A, T, K, 1)
    at = np.where(reach, first.reshape(A, T, K, 1) + c[:, None] - 1, ends)
    # the envelope: maxima of the pieces between consecutive sample points, then a suffix
    # maximum over the 101 points
    starts = at.ravel()
    stops = np.append(starts[1:], len(pr))
    padded = np.zeros(len(pr) + 1)  # one past the end, so every start is a valid index
    padded[:-1] = pr
    piece = np.where(starts < stops, np.maximum.reduceat(padded, starts), 0.0)
    env = np.maximum.accumulate(piece.reshape(A, T, K, R)[..., ::-1], axis=-1)[..., ::-1]
    return np.where(reach, env, 0.0), rc_last


__all__ = ["accumulate", "match", "paired_iou"]
