"""The ``reprsim`` command: ``reprsim demo``, ``reprsim compare a.npy b.npy`` and ``reprsim benchmark``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import numpy as np

from . import _metrics
from ._registry import METRICS
from ._validation import as_pair


def _all_metrics(x: np.ndarray, y: np.ndarray) -> list[tuple[str, str]]:
    """Every distance of the registry for one pair, formatted; an undefined one shows its reason."""
    out = []
    for name in METRICS:
        try:
            out.append((name, f"{_metrics.distance(x, y, metric=name):.4f}"))
        except ValueError as exc:
            out.append((name, f"n/a ({str(exc).split(';')[0]})"))
    return out


def _print_table(rows: list[str], columns: list[str], cells: list[list[str]]) -> None:
    width0 = max(len(r) for r in rows)
    widths = [max(len(c), *(len(cells[i][j]) for i in range(len(rows)))) for j, c in enumerate(columns)]
    print(" " * width0 + "  " + "  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for r, row in zip(rows, cells):
        print(r.ljust(width0) + "  " + "  ".join(v.rjust(w) for v, w in zip(row, widths)))


def demo_representations(n: int = 500, p: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """A base representation and copies with known relationships to it."""
    rng = np.random.default_rng(seed)
    # A representation with a decaying spectrum, like a trained layer's.
    base = rng.standard_normal((n, p)) * (1.0 / np.arange(1, p + 1)) ** 0.5
    base = base @ np.linalg.qr(rng.standard_normal((p, p)))[0]
    q = np.linalg.qr(rng.standard_normal((p, p)))[0]
    return {
        "base": base,
        "rotated": base @ q,
        "scaled x3": 3.0 * base,
        "noisy": base + 0.5 * base.std() * rng.standard_normal((n, p)),
        "linear map": base @ rng.standard_normal((p, p)),
        "unrelated": rng.standard_normal((n, p)) * (1.0 / np.arange(1, p + 1)) ** 0.5,
    }


def cmd_demo(args: argparse.Namespace) -> int:
    reps = demo_representations(n=args.n, p=args.p, seed=args.seed)
    base = reps.pop("base")
    print(f"Distances between a base representation (n={args.n}, p={args.p}) and transformed copies")
    print("(0 = identical up to the metric's invariances):\n")
    names = list(reps)
    cells_by_rep = {k: dict(_all_metrics(base, v)) for k, v in reps.items()}
    metrics = list(METRICS)
    _print_table(metrics, names, [[cells_by_rep[k][m] for k in names] for m in metrics])
    return 0


def _load(path: str) -> np.ndarray:
    arr = np.load(path, allow_pickle=False)
    if isinstance(arr, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} is an .npz archive; save a single array with numpy.save")
    return arr


def cmd_compare(args: argparse.Namespace) -> int:
    x, y = _load(args.a), _load(args.b)
    as_pair(x, y)  # shape and value errors are reported once, not once per metric
    print(f"{args.a} {x.shape} vs {args.b} {y.shape}\n")
    rows = _all_metrics(x, y)
    _print_table([r[0] for r in rows], ["distance"], [[r[1]] for r in rows])
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    try:
        from .benchmark import suite
    except ImportError as exc:  # pragma: no cover - scipy missing
        print(f"reprsim benchmark: {exc}", file=sys.stderr)
        return 2
    try:
        import sklearn  # noqa: F401
    except ImportError:
        print(
            'reprsim benchmark: scikit-learn is needed for the data set; install it with '
            'pip install "reprsim[benchmark]"',
            file=sys.stderr,
        )
        return 2
    config = suite.quick_or_full(args.quick, args.seed)
    records = suite.run_suite(config)
    print(suite.format_table(records))
    if args.json:
        suite.write_json(records, args.json)
        print(f"\nwrote {args.json}", file=sys.stderr)
    if args.figure and suite.plot_records(records, args.figure):
        print(f"wrote {args.figure}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reprsim", description="Compare neural-network representations.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="print every metric for representations with known relationships")
    p.add_argument("--n", type=int, default=500, help="samples (default 500)")
    p.add_argument("--p", type=int, default=64, help="features (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("compare", help="print every metric for two arrays saved with numpy.save")
    p.add_argument("a", help="first .npy file, shape (n, p1)")
    p.add_argument("b", help="second .npy file, shape (n, p2)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "benchmark",
        help="which metric to trust? score every metric against functional differences (Ding et al. 2021)",
        description="Train small ReLU networks on scikit-learn's digits, then score every metric by the rank "
        "correlation between its dissimilarities and functional differences (Ding, Denain & Steinhardt 2021).",
    )
    p.add_argument("--quick", action="store_true", help="a reduced run (under a minute) for CI")
    p.add_argument("--json", metavar="PATH", help="write the records (one per test and metric) as JSON")
    p.add_argument("--figure", metavar="PATH", help="write a PNG figure (needs matplotlib)")
    p.add_argument("--seed", type=int, default=None, help="base seed (default 0, the published table)")
    p.set_defaults(func=cmd_benchmark)

    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (ValueError, TypeError, OSError) as exc:
        print(f"reprsim {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
