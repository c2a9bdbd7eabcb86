"""Partial FC: two gloo processes with sample_rate = 1 equal one process computing the full
margin softmax (loss and every gradient, float32 1e-5 and float64 1e-12); gradcheck of the
distributed cross-entropy in float64 across the two processes; positive-first sampling;
bad inputs.

The two-process part runs this file as a script (``python test_partial_fc.py OUT_DIR``),
which spawns the ranks; each writes its measured differences to ``OUT_DIR/rank<r>.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from paperlab.errors import ArgumentError
from paperlab.face.margin import margin_logits
from paperlab.face.partial_fc import PartialFC, dist_cross_entropy, sample_centres, shard

pytestmark = pytest.mark.note("E2", reference="full softmax cross-entropy (one process)")

WORLD, B, C, D = 2, 6, 11, 8  # 11 classes: rank 0 holds 6, rank 1 holds 5
MARGINS = {"arcface": (1.0, 0.5, 0.0), "cosface": (1.0, 0.0, 0.35),
           "combined": (1.2, 0.3, 0.1)}
TOL = {"float32": 1e-5, "float64": 1e-12}


def _full_reference(x, w, y, s, m):
    """One process: margin softmax over all classes of the whole batch."""
    cos = F.normalize(x, dim=1) @ F.normalize(w, dim=1).T
    return F.cross_entropy(margin_logits(cos, y, s=s, m1=m[0], m2=m[1], m3=m[2]), y)


def _err(a, b):
    return (a.detach().double() - b.detach().double()).abs().max().item()


def _gradcheck_served(rank, checker, logits, labels):
    """gradcheck of the distributed CE on ``checker``'s logits; the other rank answers each
    forward with its fixed logits (the backward needs no communication)."""
    flag = torch.zeros(1)
    if rank == checker:
        def f(z):
            flag.fill_(1.0)
            dist.broadcast(flag, src=checker)
            return dist_cross_entropy(z, labels)
        ok = torch.autograd.gradcheck(f, (logits.clone().requires_grad_(),), eps=1e-6,
                                      atol=1e-8)
        flag.fill_(0.0)
        dist.broadcast(flag, src=checker)
        return bool(ok)
    while True:
        dist.broadcast(flag, src=checker)
        if flag.item() == 0.0:
            return None
        dist_cross_entropy(logits, labels)


def _rank(rank, store, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                            world_size=WORLD)
    torch.set_num_threads(1)
    result = {}
    for dtype_name in TOL:
        dtype = getattr(torch, dtype_name)
        for name, m in MARGINS.items():
            g = torch.Generator().manual_seed(0)  # the same global batch on every rank
            x = torch.randn(WORLD * B, D, generator=g, dtype=dtype)
            w = torch.randn(C, D, generator=g, dtype=dtype)
            y = torch.randint(0, C, (WORLD * B,), generator=g)
            xf, wf = x.clone().requires_grad_(), w.clone().requires_grad_()
            ref = _full_reference(xf, wf, y, 16.0, m)
            gx, gw = torch.autograd.grad(ref, [xf, wf])
            pfc = PartialFC(C, D, s=16.0, m1=m[0], m2=m[1], m3=m[2]).to(dtype)
            start, count = shard(C, rank, WORLD)
            assert (pfc.class_start, pfc.num_local) == (start, count)
            with torch.no_grad():
                pfc.weight.copy_(w[start:start + count])
            xl = x[rank * B:(rank + 1) * B].clone().requires_grad_()
            loss = pfc(xl, y[rank * B:(rank + 1) * B])
            loss.backward()
            result[f"{name}-{dtype_name}"] = {
                "loss": _err(loss, ref),
                "grad_embeddings": _err(xl.grad, gx[rank * B:(rank + 1) * B]),
                "grad_centres": _err(pfc.weight.grad, gw[start:start + count]),
                "grad_scale": float(gx.abs().max()),
            }
    # gradcheck of the distributed cross-entropy, each rank's columns in turn
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 4, generator=g, dtype=torch.float64) * 3 + rank
    labels = torch.tensor([0, -1, 3, -1, 1]) if rank == 0 else torch.tensor([-1, 2, -1, 0, -1])
    for checker in range(WORLD):
        ok = _gradcheck_served(rank, checker, logits, labels)
        if ok is not None:
            result["gradcheck"] = ok
    # the distributed loss is the CE of the concatenated columns
    every = [torch.empty_like(logits) for _ in range(WORLD)]
    dist.all_gather(every, logits)
    full = torch.cat(every, 1)
    full_labels = torch.tensor([0, 4 + 2, 3, 4 + 0, 1])
    result["ce_vs_concatenated"] = _err(dist_cross_entropy(logits, labels),
                                        F.cross_entropy(full, full_labels))
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(result))
    dist.barrier()  # no rank tears gloo down while another still talks to it
    dist.destroy_process_group()


def test_two_processes_equal_the_full_softmax(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, __file__, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in range(WORLD):
        data = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert data["gradcheck"] is True
        assert data["ce_vs_concatenated"] < 1e-12
        cases = {k: v for k, v in data.items() if isinstance(v, dict)}
        assert sorted(cases) == sorted(f"{n}-{d}" for n in MARGINS for d in TOL)
        for case, errors in cases.items():
            tol = TOL[case.rsplit("-", 1)[1]]
            assert errors["grad_scale"] > 1e-3
            for what in ("loss", "grad_embeddings", "grad_centres"):
                assert errors[what] <= tol, f"rank {rank} {case} {what}: {errors[what]:.3e}"


def test_one_process_equals_the_margin_softmax_and_gradcheck():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(7, D, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, C, (7,), generator=g)
    pfc = PartialFC(C, D, s=16.0, m2=0.5).double()
    loss = pfc(x, y)
    ref = _full_reference(x, pfc.weight, y, 16.0, (1.0, 0.5, 0.0))
    assert abs(float(loss.detach()) - float(ref.detach())) < 1e-12
    labels = torch.tensor([0, -1, 3, 2, -1])
    z = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: dist_cross_entropy(t, labels), (z,))


def test_sampling_keeps_every_positive_and_relabels():
    labels = torch.tensor([3, -1, 17, 3, 40, -1, 8])
    index, relabelled = sample_centres(labels, 50, 10, torch.Generator().manual_seed(0))
    assert len(index) == 10 and (index[1:] > index[:-1]).all()
    assert set(labels[labels >= 0].tolist()) <= set(index.tolist())
    pos = labels >= 0
    assert (index[relabelled[pos]] == labels[pos]).all() and (relabelled[~pos] == -1).all()
    # more positives than the sample: only the positives
    index, _ = sample_centres(labels, 50, 2)
    assert index.tolist() == [3, 8, 17, 40]


def test_sampled_loss_is_the_softmax_over_the_kept_centres():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(9, D, generator=g, dtype=torch.float64)
    y = torch.randint(0, 40, (9,), generator=g)
    pfc = PartialFC(40, D, s=8.0, m2=0.3, sample_rate=0.3,
                    generator=torch.Generator().manual_seed(5)).double()
    loss = pfc(x, y)
    assert pfc.num_sample == 12
    index, yy = sample_centres(y, 40, 12, torch.Generator().manual_seed(5))
    ref = _full_reference(x, pfc.weight[index], yy, 8.0, (1.0, 0.3, 0.0))
    assert abs(float(loss.detach()) - float(ref.detach())) < 1e-12


def test_bad_inputs_are_named():
    with pytest.raises(ArgumentError, match="sample_rate"):
        PartialFC(10, 4, sample_rate=0.0)
    with pytest.raises(ArgumentError, match="labels"):
        PartialFC(10, 4)(torch.randn(3, 4), torch.tensor([0, 1, 10]))


if __name__ == "__main__":
    import torch.multiprocessing as mp

    out = Path(sys.argv[1])
    mp.spawn(_rank, args=(str(out / "store"), str(out)), nprocs=WORLD, join=True)
