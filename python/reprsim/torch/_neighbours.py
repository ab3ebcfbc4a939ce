"""k-NN lists and RDMs of torch tensors computed with torch ops (the path for tensors on a GPU).

The same definitions as the C++ kernels, so the same values: rows normalised in float64 and multiplied
in the input's dtype (TF32 off), one tile of rows against all rows at a time, never an n×n matrix.
``torch.topk`` leaves the order of tied values unspecified, so it only supplies each row's k-th largest
similarity v_k; the neighbours are then every column above v_k and, of the columns equal to v_k, the
ones with the smallest indices — the tie rule of the CPU search. The lists (O(n·k)) move to the CPU and
go through the same finalisers as the CPU path (``reprsim._neighbours``). For RDMs, the condensed
vectors stay on the device; Pearson, cosine and Spearman (ranks by ``torch.sort``, ties averaged) are
reduced there in float64, Kendall's tau-a by the CPU kernel.

Any device works (the tests run this path on CPU tensors).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from .. import _rsa
from .._neighbours import KnnLists, check_k, lists_from_arrays
from ._backend import check_tensor, checked_tensors

# Similarities per tile: rows × n entries of the product dtype (about 256 MB in float32).
_TILE_ENTRIES = 1 << 26


@contextlib.contextmanager
def _no_tf32() -> Iterator[None]:
    """float32 products in full float32 (TF32 would round the inputs to 10-bit mantissas)."""
    matmul = torch.backends.cuda.matmul
    saved = matmul.allow_tf32
    matmul.allow_tf32 = False
    try:
        yield
    finally:
        matmul.allow_tf32 = saved


def _rows_list(rows: torch.Tensor) -> str:
    r = rows.tolist()
    shown = ", ".join(str(i) for i in r[:10])
    more = f" and {len(r) - 10} more" if len(r) > 10 else ""
    return f"{'row' if len(r) == 1 else 'rows'} {shown}{more}"


def unit_rows(t: torch.Tensor, prep: str, name: str) -> torch.Tensor:
    """Rows (prepared: "none", "column" centred or "row" centred) divided by their norm, formed in float64,
    returned in t's dtype; ValueError naming `name` and the rows whose norm is zero."""
    t64 = t.to(torch.float64)
    if prep == "column":
        lo, hi = t64.min(dim=0).values, t64.max(dim=0).values
        mean = torch.where(lo == hi, lo, t64.mean(dim=0))  # constant columns centre to exact zeros
        t64 = t64 - mean
    elif prep == "row":
        lo, hi = t64.min(dim=1, keepdim=True).values, t64.max(dim=1, keepdim=True).values
        t64 = torch.where(lo == hi, torch.zeros_like(t64), t64 - t64.mean(dim=1, keepdim=True))
    norms = torch.linalg.vector_norm(t64, dim=1, keepdim=True)
    zero = (norms[:, 0] == 0).nonzero()[:, 0]
    if zero.numel():
        c = zero.numel()
        if prep == "none":
            why = (f" of zero norm ({_rows_list(zero)}): the cosine similarity of a zero row is undefined; "
                   "drop those samples")
        elif prep == "column":
            why = (f" equal to the mean row ({_rows_list(zero)}), which centring turns into zero rows whose "
                   "cosine similarity is undefined; drop those samples or use center=False")
        else:
            raise ValueError(
                f"{name} has {c} constant row{'s' if c > 1 else ''} ({_rows_list(zero)}): the correlation "
                "between a constant row and any other is undefined; drop those samples or use method='euclidean'"
            )
        raise ValueError(f"{name} has {c} row{'s' if c > 1 else ''}{why}")
    return (t64 / norms).to(t.dtype)


def _tile_rows(n: int) -> int:
    return max(1, min(n, 4096, _TILE_ENTRIES // max(n, 1)))


@torch.no_grad()
def knn_arrays(z: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's k neighbours (ascending indices, int64) and their similarities (float64) among the rows
    of the unit-norm matrix z, the row itself excluded, ties to the smaller index."""
    n = z.shape[0]
    indices = torch.empty((n, k), dtype=torch.int64, device=z.device)
    sims = torch.empty((n, k), dtype=torch.float64, device=z.device)
    step = _tile_rows(n)
    with _no_tf32():
        for r0 in range(0, n, step):
            r1 = min(n, r0 + step)
            s = z[r0:r1] @ z.T
            local = torch.arange(r1 - r0, device=z.device)
            s[local, local + r0] = -math.inf
            kth = torch.topk(s, k, dim=1).values[:, -1:]
            above = s > kth
            tied = s == kth
            need = k - above.sum(dim=1, keepdim=True)
            take = above | (tied & (torch.cumsum(tied, dim=1) <= need))
            cols = take.nonzero()[:, 1].view(r1 - r0, k)  # row-major: each row's columns ascending
            indices[r0:r1] = cols
            sims[r0:r1] = torch.gather(s, 1, cols).to(torch.float64)
    return indices, sims


@torch.no_grad()
def knn_lists_torch(x: Any, k: Any, *, center: bool = False, name: str = "x") -> KnnLists:
    """The k-NN lists of a tensor (any device), searched with torch ops (see the module docstring)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor for the device path, got {type(x).__name__}")
    t = check_tensor(x, name)
    n = t.shape[0]
    if n < 2:
        raise ValueError(f"{name} has n = {n} samples; a k-NN search needs at least 2")
    k = check_k(k, n)
    z = unit_rows(t, "column" if center else "none", name)
    indices, sims = knn_arrays(z, k)
    z64 = z.to(torch.float64)
    row_means = (z64 @ z64.sum(dim=0)) / n
    return lists_from_arrays(indices.cpu().numpy(), sims.cpu().numpy(), row_means.cpu().numpy(), k, center, name)


def knn_lists_pair_torch(x: Any, y: Any, k: Any, center: bool, what: str, min_n: int) -> tuple[KnnLists, KnnLists]:
    """Both tensors checked as a pair (same device, same n, finite), then each searched once."""
    (xt,), yts = checked_tensors([x], [y], ["x"], ["y"], min_n, what)
    assert yts is not None
    yt = yts[0]
    k = check_k(k, xt.shape[0])
    return knn_lists_torch(xt, k, center=center, name="x"), knn_lists_torch(yt, k, center=center, name="y")


@torch.no_grad()
def rdm_torch(x: Any, method: str, name: str = "x") -> torch.Tensor:
    """The condensed RDM of a tensor as a float64 tensor on its device (definitions of reprsim.rdm)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor for the device path, got {type(x).__name__}")
    t = check_tensor(x, name)
    return _rdm_checked(t, method, name)


def _rdm_checked(t: torch.Tensor, method: str, name: str) -> torch.Tensor:
    n, p = t.shape
    if n < 2:
        raise ValueError(f"{name} has n = {n} samples; an RDM needs at least 2")
    if method == "euclidean":
        t64 = t.to(torch.float64)
        lo, hi = t64.min(dim=0).values, t64.max(dim=0).values
        z = (t64 - torch.where(lo == hi, lo, t64.mean(dim=0))).to(t.dtype)
        sq = z.to(torch.float64).pow(2).sum(dim=1)
    else:
        z = unit_rows(t, "row" if method == "correlation" else "none", name)
        sq = None
    eps = float(torch.finfo(z.dtype).eps)
    out = torch.empty(n * (n - 1) // 2, dtype=torch.float64, device=t.device)
    step = _tile_rows(n)
    offset = 0
    with _no_tf32():
        for r0 in range(0, n, step):
            r1 = min(n, r0 + step)
            g = (z[r0:r1] @ z[r0:].T).to(torch.float64)
            upper = torch.ones(g.shape, dtype=torch.bool, device=t.device).triu(diagonal=1)
            if sq is None:
                vals = 1.0 - g[upper]
            else:
                si = sq[r0:r1, None].expand_as(g)[upper]
                sj = sq[None, r0:].expand_as(g)[upper]
                vals = si + sj - 2.0 * g[upper]
                neg = vals < 0
                if bool(neg.any()):
                    if bool((-vals[neg] > p * eps * (si[neg] + sj[neg])).any()):
                        raise FloatingPointError("a squared distance came out negative beyond the rounding bound "
                                                 "of its formula; please report this input")
                    vals = torch.where(neg, torch.zeros_like(vals), vals)
                vals = vals / p
            out[offset:offset + vals.numel()] = vals
            offset += vals.numel()
    return out


def _average_ranks(v: torch.Tensor) -> torch.Tensor:
    """1-based ranks, tied entries sharing the mean of their positions (scipy.stats.rankdata's default)."""
    values, order = torch.sort(v)
    _, counts = torch.unique_consecutive(values, return_counts=True)
    ends = torch.cumsum(counts, dim=0).to(torch.float64)
    mean_rank = ends - (counts.to(torch.float64) - 1.0) / 2.0
    ranks = torch.empty_like(v, dtype=torch.float64)
    ranks[order] = torch.repeat_interleave(mean_rank, counts)
    return ranks


def _all_equal(v: torch.Tensor) -> bool:
    return bool(v.min() == v.max())


def _pearson(a: torch.Tensor, b: torch.Tensor, what: str) -> float:
    for v, nm in ((a, "x"), (b, "y")):
        if _all_equal(v):
            raise ValueError(
                f"{nm}'s RDM has all {v.numel()} dissimilarities equal, so its {what} with another RDM is "
                "undefined; compare='kendall_tau_a' or 'cosine' is defined for it"
            )
    da, db = a - a.mean(), b - b.mean()
    return float((da @ db) / (torch.linalg.vector_norm(da) * torch.linalg.vector_norm(db)))


def rsa_torch(x: Any, y: Any, method: str, compare: str) -> float:
    """RSA of two tensors on one device (definitions of reprsim.rsa)."""
    (xt,), yts = checked_tensors([x], [y], ["x"], ["y"], 3, "RSA")
    assert yts is not None
    yt = yts[0]
    with torch.no_grad():
        a = _rdm_checked(xt, method, "x")
        b = _rdm_checked(yt, method, "y")
        if compare == "pearson":
            value = _pearson(a, b, "Pearson correlation")
        elif compare == "spearman":
            for v, nm in ((a, "x"), (b, "y")):
                if _all_equal(v):
                    raise ValueError(
                        f"{nm}'s RDM has all {v.numel()} dissimilarities equal, so its Spearman correlation with "
                        "another RDM is undefined; compare='kendall_tau_a' or 'cosine' is defined for it"
                    )
            value = _pearson(_average_ranks(a), _average_ranks(b), "Spearman correlation")
        elif compare == "cosine":
            na, nb = torch.linalg.vector_norm(a), torch.linalg.vector_norm(b)
            for v, nm in ((na, "x"), (nb, "y")):
                if float(v) == 0.0:
                    raise ValueError(f"{nm}'s RDM is all zeros, so its cosine similarity with another RDM is undefined")
            value = float((a @ b) / (na * nb))
        else:
            value = _rsa.compare_rdms(np.asarray(a.cpu()), np.asarray(b.cpu()), compare, names=("x's RDM", "y's RDM"))
    if not math.isfinite(value):
        raise FloatingPointError(f"RSA came out as {value}; please report this input")
    return value
