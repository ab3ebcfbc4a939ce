"""The labelled matrix that :func:`reprsim.pairwise`, :func:`reprsim.pairwise_distances` and
``reprsim.torch.compare`` return.

It imports neither torch, pandas nor matplotlib: :meth:`Comparison.to_pandas` and :meth:`Comparison.plot`
import theirs when called.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from ._registry import check_bool

VALUE_KINDS = ("similarity", "distance")


def _unwrap(v: Any) -> Any:
    if isinstance(v, Comparison):
        return v.values
    if isinstance(v, tuple):
        return tuple(_unwrap(e) for e in v)
    return v


class _LabelIndexer:
    """``result.at[row, column]``: one value by its labels."""

    def __init__(self, result: Comparison) -> None:
        self._result = result

    def __getitem__(self, key: Any) -> float:
        if not (isinstance(key, tuple) and len(key) == 2):
            raise TypeError("use result.at[row_label, column_label]")
        r = self._result
        return float(r.values[r._position(key[0], r.rows, "row"), r._position(key[1], r.columns, "column")])


@dataclass(frozen=True, eq=False, repr=False)
class Comparison(NDArrayOperatorsMixin):
    """A labelled matrix of one measure: ``values[i, j]`` compares ``rows[i]`` with ``columns[j]``.

    Returned by :func:`reprsim.pairwise` (the measure's values), :func:`reprsim.pairwise_distances` (its
    dissimilarities) and ``reprsim.torch.compare`` (layer × layer). ``value_kind`` says whether the values
    are similarities (larger = more alike: CKA, the CCA family, ENSD, ...) or distances (0 = alike: the
    Procrustes metrics, and every measure's dissimilarity from ``pairwise_distances``).

    It behaves as the float64 matrix wherever an array is expected: ``np.asarray(res)``, ``res[i, j]``,
    ``res.shape``, arithmetic and comparisons (which return plain numpy arrays), numpy's testing
    functions, and every other public ndarray attribute (``res.T``, ``res.max()``, ``res.ravel()``, ...),
    which is the matrix's. Labels: ``res.at[row, column]``, :meth:`to_pandas`, :meth:`plot`.

    Attributes
    ----------
    values : numpy.ndarray, shape (len(rows), len(columns))
        The float64 matrix.
    rows, columns : list
        The labels of the compared representations: the keys of a dict given to ``pairwise``, the
        positions 0, 1, … of a list, or the layer names of the two models for ``compare``.
    metric : str
        The measure's name in ``reprsim.METRICS``.
    value_kind : {"similarity", "distance"}
        What the values are.
    n_samples : int
        Rows the values were computed over (samples; tokens or positions for ``compare`` with
        ``pool="tokens"``/``"spatial"``).
    options : dict
        The measure's options as given.
    names : tuple of two str or None
        Names of the two axes (the models for ``compare``; None for ``pairwise``): the axis names of
        :meth:`to_pandas` and the axis labels of :meth:`plot`.
    """

    values: np.ndarray
    rows: list[Hashable]
    columns: list[Hashable]
    metric: str
    value_kind: str
    n_samples: int
    options: dict[str, Any] = field(default_factory=dict)
    names: tuple[str | None, str | None] = (None, None)

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim != 2 or values.shape != (len(self.rows), len(self.columns)):
            raise ValueError(
                f"values must have shape (len(rows), len(columns)) = ({len(self.rows)}, {len(self.columns)}), "
                f"got {values.shape}"
            )
        if self.value_kind not in VALUE_KINDS:
            raise ValueError(f"value_kind must be 'similarity' or 'distance', got {self.value_kind!r}")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "rows", list(self.rows))
        object.__setattr__(self, "columns", list(self.columns))
        object.__setattr__(self, "names", (self.names[0], self.names[1]))

    # -- the array -----------------------------------------------------------------------------

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if copy:
            return np.array(self.values, dtype=dtype, copy=True)
        return self.values if dtype is None else self.values.astype(dtype, copy=False)

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if "out" in kwargs:
            kwargs["out"] = _unwrap(kwargs["out"])
        return getattr(ufunc, method)(*_unwrap(inputs), **kwargs)

    def __getitem__(self, key: Any) -> Any:
        return self.values[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self.values[key] = value

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.values)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the class does not define: the ndarray's public attributes.
        if name.startswith("_") or name == "values" or not hasattr(np.ndarray, name):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(self.values, name)

    @property
    def shape(self) -> tuple[int, ...]:
        """The matrix's shape, (len(rows), len(columns))."""
        return self.values.shape

    # -- labels --------------------------------------------------------------------------------

    @property
    def at(self) -> _LabelIndexer:
        """One value by labels: ``res.at["x", "y"]`` (a float)."""
        return _LabelIndexer(self)

    @property
    def layers_a(self) -> list[Hashable]:
        """The row labels (model a's layers, for ``compare``)."""
        return self.rows

    @property
    def layers_b(self) -> list[Hashable]:
        """The column labels (model b's layers, for ``compare``)."""
        return self.columns

    @property
    def label(self) -> str:
        """How the values are named: the metric, followed by "distance" where the values are the dissimilarity
        of a similarity measure."""
        own = _own_kind(self.metric)
        if self.value_kind == "distance" and own == "similarity":
            return f"{self.metric} distance"
        return self.metric

    @staticmethod
    def _position(label: Any, labels: Sequence[Hashable], axis: str) -> int:
        try:
            return list(labels).index(label)
        except ValueError:
            raise KeyError(f"no {axis} labelled {label!r}; the {axis}s are {list(labels)}") from None

    def __repr__(self) -> str:
        head = (f"Comparison({self.label}: {self.value_kind} matrix {self.values.shape[0]} × {self.values.shape[1]}, "
                f"n_samples={self.n_samples}"
                + (f", options={self.options}" if self.options else "") + ")")
        return head + "\n" + self._table()

    def _table(self, max_rows: int = 20, max_cols: int = 8) -> str:
        rows = [str(r) for r in self.rows]
        cols = [str(c) for c in self.columns]
        show_r = list(range(len(rows))) if len(rows) <= max_rows else [*range(max_rows // 2), -1,
                                                                          *range(len(rows) - max_rows // 2, len(rows))]
        show_c = list(range(len(cols))) if len(cols) <= max_cols else [*range(max_cols // 2), -1,
                                                                          *range(len(cols) - max_cols // 2, len(cols))]

        def cell(i: int, j: int) -> str:
            if i < 0 or j < 0:
                return "…"
            return f"{round(float(self.values[i, j]), 4) + 0.0:.4f}"  # + 0.0: no "-0.0000"

        header = ["" if i < 0 else rows[i] for i in show_r]
        corner = "" if self.names == (None, None) else f"{self.names[0] or ''} \\ {self.names[1] or ''}"
        width0 = max([len(h) for h in header] + [len(corner)])
        body = [[cell(i, j) for j in show_c] for i in show_r]
        titles = ["…" if j < 0 else cols[j] for j in show_c]
        widths = [max(len(t), *(len(line[k]) for line in body)) for k, t in enumerate(titles)]
        lines = [corner.ljust(width0) + "  " + "  ".join(t.rjust(w) for t, w in zip(titles, widths))]
        for h, line in zip(header, body):
            lines.append(h.ljust(width0) + "  " + "  ".join(v.rjust(w) for v, w in zip(line, widths)))
        return "\n".join(line.rstrip() for line in lines)

    # -- pandas and matplotlib -----------------------------------------------------------------

    def to_pandas(self) -> Any:
        """The matrix as a pandas DataFrame indexed by the labels (requires pandas).

        Returns
        -------
        pandas.DataFrame
            ``values`` with ``rows`` as the index and ``columns`` as the columns, their names from
            ``names``; ``attrs`` holds ``metric``, ``value_kind``, ``n_samples`` and ``options``.

        Raises
        ------
        ImportError
            pandas is not installed.
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError('Comparison.to_pandas needs pandas: pip install pandas (or "reprsim[pandas]")') from None
        df = pd.DataFrame(self.values.copy(), index=pd.Index(self.rows, name=self.names[0]),
                          columns=pd.Index(self.columns, name=self.names[1]))
        df.attrs.update(metric=self.metric, value_kind=self.value_kind, n_samples=self.n_samples,
                        options=dict(self.options))
        return df

    def plot(self, ax: Any = None, *, cmap: str = "magma", annotate: bool = False) -> Any:
        """Draw the matrix as a heatmap (requires matplotlib).

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Where to draw; default: a new figure sized to the number of rows and columns.
        cmap : str, default "magma"
            A matplotlib colormap name.
        annotate : bool, default False
            Write each value in its cell.

        Returns
        -------
        matplotlib.axes.Axes
            The Axes drawn on, with a colorbar labelled by the metric (and "distance" for dissimilarities).

        Raises
        ------
        ImportError
            matplotlib is not installed.
        """
        annotate = check_bool("annotate")(annotate)
        try:
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError('Comparison.plot needs matplotlib: pip install matplotlib (or "reprsim[plot]")') from None
        rows = [str(r) for r in self.rows]
        cols = [str(c) for c in self.columns]
        if ax is None:
            _, ax = plt.subplots(figsize=(max(4.5, 1.8 + 0.5 * len(cols)), max(3.8, 1.2 + 0.5 * len(rows))))
        im = ax.imshow(self.values, cmap=cmap, origin="lower", aspect="auto")
        ax.set_xticks(range(len(cols)), cols, rotation=45 if len(cols) > 6 else 0,
                      ha="right" if len(cols) > 6 else "center")
        ax.set_yticks(range(len(rows)), rows)
        if self.names[1] is not None:
            ax.set_xlabel(self.names[1])
        if self.names[0] is not None:
            ax.set_ylabel(self.names[0])
        ax.figure.colorbar(im, ax=ax, label=self.label)
        if annotate:
            lo, hi = float(self.values.min()), float(self.values.max())
            for i in range(self.values.shape[0]):
                for j in range(self.values.shape[1]):
                    v = self.values[i, j]
                    color = "black" if v > (lo + hi) / 2 else "white"  # readable on both ends of the colormap
                    ax.text(j, i, f"{round(float(v), 2) + 0.0:.2f}", ha="center", va="center", fontsize=8, color=color)
        return ax


def _own_kind(metric: str) -> str | None:
    from ._registry import METRICS

    m = METRICS.get(metric)
    return m.value_kind if m is not None else None
