"""The ``reprsim`` command: ``demo``, ``compare A B``, ``metrics`` and ``benchmark``.

Exit status: 0 on success; 1 when some measure is undefined for the data (each reason is printed once on
stderr; the other measures are computed and printed); 2 for usage and input errors (bad arguments, a file
that cannot be read, NaN/Inf, a constant representation, different numbers of samples).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._backend import pair_set
from ._compute import evaluate
from ._registry import METRICS, Bound, bind, describe, get
from ._validation import as_representation

EXIT_OK, EXIT_UNDEFINED, EXIT_USAGE = 0, 1, 2

EXIT_STATUS_HELP = """\
exit status:
  0  every requested measure was computed
  1  some measure is undefined for these data (each reason is printed once on stderr; the
     others are still computed and printed)
  2  usage or input error: bad arguments, a file that cannot be read, NaN/Inf, a constant
     representation, different numbers of samples in the two files
"""

TEXT_EXTENSIONS = {".csv": ",", ".tsv": "\t", ".txt": None}


class InputError(Exception):
    """A problem with the command line or the input files (exit status 2)."""


# ------------------------------------------------------------------------------------------------
# Reading representations


def load_representation(path: str, key: str | None = None, key_option: str = "--key") -> np.ndarray:
    """The array in `path`: a .npy file, one array of a .npz archive (`key`, or its only array), or a text
    table (.csv, .tsv, .txt) of one sample per line. InputError naming the file otherwise."""
    if os.path.isdir(path):
        raise InputError(f"{path} is a directory; pass a .npy, .npz, .csv or .txt file")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path} cannot be opened: {exc.strerror or exc}") from None
    if not head:
        raise InputError(f"{path} is empty (0 bytes); save the activations with numpy.save (a .npy file)")
    if head.startswith(b"\x93NUMPY"):
        if key is not None:
            raise InputError(f"{key_option} applies to .npz archives; {path} is a .npy file, which holds one array")
        return _read_npy(path, lambda: np.load(path, allow_pickle=False))
    if head.startswith(b"PK"):
        return _read_npz(path, key, key_option)
    ext = os.path.splitext(path)[1].lower()
    if ext in TEXT_EXTENSIONS:
        if key is not None:
            raise InputError(f"{key_option} applies to .npz archives; {path} is a text table")
        return _read_text(path, TEXT_EXTENSIONS[ext])
    raise InputError(
        f"{path} is neither a .npy file nor a .npz archive (it does not start with numpy's header); save the "
        "activations with numpy.save, or give a text table the extension .csv, .tsv or .txt"
    )


def _read_npy(path: str, read: Callable[[], Any]) -> np.ndarray:
    try:
        arr = read()
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise InputError(f"{path} holds Python objects (dtype object), not numbers; reprsim does not unpickle "
                             "files: save a numeric array") from None
        raise InputError(f"{path} is not a readable numpy file ({exc})") from None
    except (EOFError, OSError) as exc:
        raise InputError(f"{path} is truncated or damaged ({exc or type(exc).__name__})") from None
    return np.asarray(arr)


def _read_npz(path: str, key: str | None, key_option: str) -> np.ndarray:
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise InputError(f"{path} is not a readable .npz archive ({exc})") from None
    with archive:
        names = list(archive.files)
        if key is None:
            if len(names) != 1:
                listing = ", ".join(names) if names else "none"
                raise InputError(f"{path} holds {len(names)} arrays ({listing}); choose one with {key_option} NAME")
            key = names[0]
        elif key not in names:
            raise InputError(f"{path} has no array named {key!r}; it holds {', '.join(names) or 'none'}")
        return _read_npy(f"{path}[{key}]", lambda: archive[key])


def _read_text(path: str, delimiter: str | None) -> np.ndarray:
    sep = "commas" if delimiter == "," else "tabs" if delimiter == "\t" else "spaces"
    try:
        return np.loadtxt(path, delimiter=delimiter, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise InputError(
            f"{path} could not be read as a table of numbers ({exc}); the text format is one sample per line, "
            f"its features separated by {sep}, with no header line"
        ) from None
    except UnicodeDecodeError:
        raise InputError(f"{path} is not a text file; .csv, .tsv and .txt files are read as text tables") from None


def check_representation(arr: np.ndarray, path: str) -> np.ndarray:
    """The checks every measure needs, made once per file: 2-D, numeric, finite, not constant."""
    if arr.ndim != 2:
        raise InputError(
            f"{path} holds an array of shape {arr.shape}; reprsim compares 2-D arrays (n_samples, n_features): "
            + ("save one feature per sample as shape (n, 1)" if arr.ndim < 2
               else "flatten each sample first (numpy: a.reshape(len(a), -1))")
        )
    try:
        arr = as_representation(arr, path)
    except (ValueError, TypeError) as exc:
        raise InputError(str(exc)) from None
    bad = ~np.isfinite(arr)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise InputError(f"{path} contains NaN or Inf ({int(bad.sum())} entries, the first at row {i}, column {j}); "
                         "remove or replace them before comparing")
    if arr.shape[0] < 2:
        raise InputError(f"{path} has {arr.shape[0]} sample; comparing representations needs at least 2 (rows are "
                         "samples)")
    if bool((arr == arr[0]).all()):
        raise InputError(f"{path} is constant (all {arr.shape[0]} rows are equal): it holds nothing to compare "
                         "(no measure is defined for it); check how the activations were saved")
    return arr


# ------------------------------------------------------------------------------------------------
# Measures and their options


@dataclass
class MetricSpec:
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    bound: Bound | None = None

    @property
    def label(self) -> str:
        if not self.options:
            return self.name
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in self.options.items())})"


def _option_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_metric(spec: str) -> MetricSpec:
    """``NAME`` or ``NAME:KEY=VALUE[,KEY=VALUE...]`` (values: numbers, true/false, none, or text)."""
    name, _, rest = spec.partition(":")
    name = name.strip()
    options: dict[str, Any] = {}
    if rest.strip():
        for item in rest.split(","):
            k, eq, v = item.partition("=")
            if not eq or not k.strip():
                raise InputError(f"--metric {spec}: options are KEY=VALUE pairs separated by commas, e.g. "
                                 "--metric svcca:variance=0.9,convention=singular_values")
            options[k.strip()] = _option_value(v.strip())
    try:
        bound = get(name).bind(**options)
    except (ValueError, TypeError) as exc:
        raise InputError(f"--metric {spec}: {exc}") from None
    return MetricSpec(name, options, bound)


def _rename(message: str, names: dict[str, str]) -> str:
    """Messages of the library name the inputs x and y; the command names them by their files."""
    for short, path in names.items():
        message = re.sub(rf"(?<![\w.\[\]'\"ᵀ]){short}(?![\w.\[\]'\"ᵀ(])", path, message)
    return message


def evaluate_metrics(x: np.ndarray, y: np.ndarray, specs: Sequence[MetricSpec], names: tuple[str, str]
                     ) -> list[dict[str, Any]]:
    """Value and dissimilarity of every measure for one pair; an undefined one carries its reason."""
    records = []
    for spec in specs:
        bound = spec.bound or bind(spec.name, spec.options)
        record: dict[str, Any] = {"metric": spec.name, "options": dict(spec.options), "value": None,
                                  "distance": None, "value_kind": bound.measure.value_kind, "n": int(x.shape[0]),
                                  "paths": list(names), "error": None}
        try:
            pset = pair_set(bound.measure.statistics, [x], [y], names_x=[names[0]], names_y=[names[1]],
                            min_n=bound.min_n, what=describe(bound))
            record["value"] = float(evaluate(bound, pset, "value")[0, 0])
            record["distance"] = float(evaluate(bound, pset, "distance")[0, 0])
        except (ValueError, TypeError, FloatingPointError) as exc:
            record["value"] = record["distance"] = None
            record["error"] = _rename(str(exc), {"x": names[0], "y": names[1]})
        records.append(record)
    return records


def _report_undefined(command: str, labelled: list[tuple[str, str]]) -> None:
    """Each reason once, with the measures it applies to."""
    by_reason: dict[str, list[str]] = {}
    for label, reason in labelled:
        by_reason.setdefault(reason, []).append(label)
    for reason, labels in by_reason.items():
        print(f"reprsim {command}: {', '.join(labels)}: undefined: {reason}", file=sys.stderr)


# ------------------------------------------------------------------------------------------------
# Output


def fmt(v: float | None, digits: int = 4) -> str:
    """A value for the table; never "-0.0000"."""
    if v is None:
        return "undefined"
    return f"{round(v, digits) + 0.0:.{digits}f}"


def print_table(rows: list[str], columns: list[str], cells: list[list[str]], out: Any = None) -> None:
    out = out or sys.stdout
    width0 = max(len(r) for r in rows)
    widths = [max(len(c), *(len(cells[i][j]) for i in range(len(rows)))) for j, c in enumerate(columns)]
    print(" " * width0 + "  " + "  ".join(c.rjust(w) for c, w in zip(columns, widths)), file=out)
    for r, row in zip(rows, cells):
        print((r.ljust(width0) + "  " + "  ".join(v.rjust(w) for v, w in zip(row, widths))).rstrip(), file=out)


CSV_FIELDS = ("metric", "options", "value", "distance", "value_kind", "n", "path_a", "path_b", "error")


def write_csv(records: list[dict[str, Any]], out: Any) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for r in records:
        options = ";".join(f"{k}={v}" for k, v in r["options"].items())
        writer.writerow([r["metric"], options, "" if r["value"] is None else repr(r["value"]),
                         "" if r["distance"] is None else repr(r["distance"]), r["value_kind"], r["n"],
                         r["paths"][0], r["paths"][1], r["error"] or ""])


# ------------------------------------------------------------------------------------------------
# Commands


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
    specs = [MetricSpec(m) for m in METRICS]
    results = {k: evaluate_metrics(base, v, specs, ("base", k)) for k, v in reps.items()}
    cells = [[fmt(results[k][i]["distance"]) if results[k][i]["error"] is None else "n/a" for k in names]
             for i in range(len(specs))]
    print_table([s.name for s in specs], names, cells)
    undefined = []
    for i, s in enumerate(specs):
        reasons = {results[k][i]["error"] for k in names if results[k][i]["error"] is not None}
        undefined += [(s.name, r) for r in sorted(reasons)]
    _report_undefined("demo", undefined)
    return EXIT_UNDEFINED if undefined else EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    specs = [parse_metric(s) for s in args.metric] if args.metric else [MetricSpec(m) for m in METRICS]
    key_a = args.key_a if args.key_a is not None else args.key
    key_b = args.key_b if args.key_b is not None else args.key
    opt_a = "--key-a" if args.key_a is not None or args.key is None else "--key"
    opt_b = "--key-b" if args.key_b is not None or args.key is None else "--key"
    x = check_representation(load_representation(args.a, key_a, opt_a), args.a)
    y = check_representation(load_representation(args.b, key_b, opt_b), args.b)
    if x.shape[0] != y.shape[0]:
        raise InputError(f"{args.a} has {x.shape[0]} samples (rows) and {args.b} has {y.shape[0]}; the rows of the "
                         "two files must be the same samples, in the same order")
    records = evaluate_metrics(x, y, specs, (args.a, args.b))
    if args.json:
        json.dump(records, sys.stdout, indent=2)
        print()
    elif args.csv:
        write_csv(records, sys.stdout)
    else:
        print(f"{args.a} {x.shape} vs {args.b} {y.shape}: {x.shape[0]} samples\n")
        print_table([s.label for s in specs], ["value", "distance", "value is"],
                    [[fmt(r["value"]), fmt(r["distance"]), r["value_kind"]] for r in records])
    undefined = [(s.label, r["error"]) for s, r in zip(specs, records) if r["error"] is not None]
    _report_undefined("compare", undefined)
    return EXIT_UNDEFINED if undefined else EXIT_OK


def cmd_metrics(args: argparse.Namespace) -> int:
    rows, cells = [], []
    for name, m in METRICS.items():
        lo, hi = m.value_range
        options = ", ".join(f"{k}={v!r}" for k, v in m.defaults.items()) or "—"
        rows.append(name)
        cells.append([m.value_kind, f"[{fmt(lo, 2)}, {fmt(hi, 2)}]".replace("inf", "∞"), m.estimator, options])
    print_table(rows, ["value", "range", "estimator", "options (defaults)"], cells)
    print("\nOptions go after the name: reprsim compare a.npy b.npy --metric svcca:variance=0.9,"
          "convention=singular_values")
    return EXIT_OK


def cmd_benchmark(args: argparse.Namespace) -> int:
    try:
        from .benchmark import suite
    except ImportError as exc:  # pragma: no cover - scipy missing
        print(f"reprsim benchmark: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        import sklearn  # noqa: F401
    except ImportError:
        print(
            'reprsim benchmark: scikit-learn is needed for the data set; from the source folder, install it with '
            'pip install ".[benchmark]" (or pip install scikit-learn)',
            file=sys.stderr,
        )
        return EXIT_USAGE
    config = suite.quick_or_full(args.quick, args.seed)
    records = suite.run_suite(config)
    print(suite.format_table(records))
    if args.json:
        suite.write_json(records, args.json)
        print(f"\nwrote {args.json}", file=sys.stderr)
    if args.figure and suite.plot_records(records, args.figure):
        print(f"wrote {args.figure}", file=sys.stderr)
    return EXIT_OK


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="reprsim", description="Compare neural-network representations.", epilog=EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"reprsim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{demo,compare,metrics,benchmark}")

    p = sub.add_parser("demo", help="print every metric for representations with known relationships",
                       epilog=EXIT_STATUS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=_int_at_least(2), default=500, help="samples, at least 2 (default 500)")
    p.add_argument("--p", type=_int_at_least(1), default=64, help="features, at least 1 (default 64)")
    p.add_argument("--seed", type=_int_at_least(0), default=0, help="random seed (default 0)")
    p.set_defaults(func=cmd_demo)

    names = ", ".join(METRICS)
    p = sub.add_parser(
        "compare", help="compare two saved representations (.npy, .npz, .csv, .txt)",
        description="Compare two representations of the same samples: arrays of shape (n_samples, n_features) "
        "whose rows are the same samples in the same order. Prints each measure's value, its dissimilarity "
        "(0 = alike) and whether the value is a similarity or a distance.",
        epilog="input files: .npy (numpy.save); .npz (numpy.savez: the only array, or the one --key names); "
        ".csv/.tsv/.txt (one sample per line, no header).\n\n"
        "--json writes a list of records, --csv one row per measure, with the fields\n"
        "  metric, options, value, distance, value_kind ('similarity' or 'distance'), n (samples),\n"
        "  paths (--csv: path_a, path_b), error (why the measure is undefined, else null/empty);\n"
        "  values are full-precision floats; an undefined measure has null (empty) value and distance.\n\n"
        + EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("a", help="first representation, shape (n, p1)")
    p.add_argument("b", help="second representation, shape (n, p2), the same samples in the same order")
    p.add_argument("--metric", action="append", metavar="NAME[:KEY=VALUE,...]",
                   help=f"a measure to compute (repeatable; default: all of them), with options after a colon, "
                   f"e.g. svcca:variance=0.9 or mutual_knn:k=5. Names: {names}. "
                   "'reprsim metrics' lists each one's options")
    p.add_argument("--key", metavar="NAME", help="the array to read from .npz archives (both files)")
    p.add_argument("--key-a", metavar="NAME", help="the array to read from the first file, if an .npz archive")
    p.add_argument("--key-b", metavar="NAME", help="the array to read from the second file, if an .npz archive")
    fmt_group = p.add_mutually_exclusive_group()
    fmt_group.add_argument("--json", action="store_true", help="print the results as JSON (see below)")
    fmt_group.add_argument("--csv", action="store_true", help="print the results as CSV (see below)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("metrics", help="list the measures, what their values are, and their options")
    p.set_defaults(func=cmd_metrics)

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (see ``reprsim --help``)."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except InputError as exc:
        print(f"reprsim {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, TypeError, OSError) as exc:
        print(f"reprsim {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"reprsim {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
