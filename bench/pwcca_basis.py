"""How much the PWCCA rule of Ding et al.'s released code depends on an arbitrary basis.

    python bench/pwcca_basis.py          # writes bench/results/pwcca-basis.{json,md}

Setting: the benchmark's principal-component deletion. The reference is a 64-wide hidden layer of one of
the benchmark's MLPs (``reprsim benchmark``'s first seeds, trained here on scikit-learn's digits); each
compared representation keeps the top k principal-component scores (k columns) of the same layer of the
same seed, or of another seed. The released code's PWCCA, re-implemented here from its description:
reference first; weights αᵢ = Σⱼ |⟨hᵢ, x̃ⱼ⟩| over all rank-x canonical directions hᵢ of the reference,
taken from a full SVD of QxᵀQy; PWCCA = Σ_{i ≤ k} αᵢρᵢ / Σ_i αᵢ, distance 1 − PWCCA. The rank-x − k
directions without a correlation are an arbitrary orthonormal basis of a subspace (the one LAPACK's
full SVD happens to return); rotating that basis by uniformly random orthogonal matrices gives the
spread below. For the same seed all k correlations are 1 and tie, so the basis of the correlated
directions is arbitrary too: the "both rotated" column rotates it as well (for another seed the
correlations are distinct and their directions unique). The padded column is reprsim's
basis-free rule (``pwcca_padded``: the expected weight over random bases), the last one reprsim's default
PWCCA (weights over the k correlated directions only).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from reprsim import _core
from reprsim.benchmark.generators import delete_principal_components
from reprsim.benchmark.models import load_digits_data, train_mlp
from reprsim.benchmark.suite import FULL

RESULTS = Path(__file__).resolve().parent / "results"
ROTATIONS = 200


def haar(d: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def basis(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ac = a - a.mean(axis=0)
    u, s, _ = np.linalg.svd(ac, full_matrices=False)
    rank = int(np.sum(s > s[0] * max(ac.shape) * np.finfo(np.float64).eps))
    return u[:, :rank], ac


def published_distance(x: np.ndarray, y: np.ndarray, rot_rest=None, rot_tied=None) -> float:
    qx, xc = basis(x)
    qy, _ = basis(y)
    u, rho, _ = np.linalg.svd(qx.T @ qy, full_matrices=True)
    k = min(qx.shape[1], qy.shape[1])
    u = u.copy()
    if rot_rest is not None:
        u[:, k:] = u[:, k:] @ rot_rest
    if rot_tied is not None:
        u[:, :k] = u[:, :k] @ rot_tied
    alpha = np.abs(u.T @ (qx.T @ xc)).sum(axis=1)
    return float(1.0 - alpha[:k] @ rho[:k] / alpha.sum())


def main() -> None:
    cfg = FULL
    x_all, y_all = load_digits_data()
    perm = np.random.default_rng(cfg.seed).permutation(len(x_all))
    train, held = perm[: cfg.n_train], perm[cfg.n_train:]
    coarse = (y_all[train] >= 5).astype(np.int64)
    models = [train_mlp(x_all[train], coarse, n_classes=2, hidden=cfg.hidden, seed=cfg.seed + 1000 + s,
                        epochs=cfg.epochs) for s in range(3)]
    reps = [m.hidden(x_all[held]) for m in models]
    rng = np.random.default_rng(0)
    rows = []
    for layer in (1, 3):
        ref = reps[0][layer]
        for seed in (0, 1):
            for k in (56, 48, 32, 24, 16, 8):
                y = delete_principal_components(reps[seed][layer], [ref.shape[1] - k])[ref.shape[1] - k]
                rank_x = basis(ref)[0].shape[1]
                d = rank_x - k
                lapack = published_distance(ref, y)
                rest = [published_distance(ref, y, haar(d, rng)) for _ in range(ROTATIONS)]
                # Rotating the correlated directions is legitimate only where their correlations tie (all 1:
                # the same seed); elsewhere they are unique.
                both = [published_distance(ref, y, haar(d, rng), haar(k, rng)) for _ in range(ROTATIONS)] if seed == 0 else []
                row = {
                    "layer": layer + 1, "same_seed": seed == 0, "k": k, "rank_x": rank_x,
                    "published_lapack_basis": lapack,
                    "published_rest_rotated": [min(rest), float(np.mean(rest)), max(rest)],
                    "published_both_rotated": [min(both), float(np.mean(both)), max(both)] if both else None,
                    "padded": 1.0 - _core.cca_statistic(ref, y, "pwcca_padded"),
                    "pwcca_x": 1.0 - _core.cca_statistic(ref, y, "pwcca_x"),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pwcca-basis.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = [
        "# PWCCA distance of the released code's rule vs the basis of the uncorrelated directions",
        "",
        f"Reference: a 64-wide hidden layer (seed 0); compared: top-k PC scores of the same layer (seed 0 or 1). "
        f"{ROTATIONS} uniformly random rotations per cell; min / mean / max.",
        "",
        "| layer | seed | k | rank x | LAPACK's basis | uncorrelated basis rotated | both bases rotated | padded (expected weight) | reprsim pwcca |",
        "|---:|---|---:|---:|---:|---|---|---:|---:|",
    ]
    for r in rows:
        a, b = r["published_rest_rotated"], r["published_both_rotated"]
        both = "— (correlations untied)" if b is None else f"{b[0]:.3f} / {b[1]:.3f} / {b[2]:.3f}"
        lines.append(
            f"| {r['layer']} | {'same' if r['same_seed'] else 'other'} | {r['k']} | {r['rank_x']} | "
            f"{r['published_lapack_basis']:.3f} | {a[0]:.3f} / {a[1]:.3f} / {a[2]:.3f} | "
            f"{both} | {r['padded']:.3f} | {r['pwcca_x']:.3f} |"
        )
    (RESULTS / "pwcca-basis.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
