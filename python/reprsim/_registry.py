"""The measure registry: every name reprsim computes, the statistics it needs, its finalisers, its options
and what it guarantees.

A measure is registered once, as

- the **statistics kind** it is a function of (``"moments"``, ``"factor"``, ``"kernel"``, ``"minibatch"``,
  ``"neighbours"``; see :mod:`reprsim._stats`), and
- a **finaliser** from one pair's statistics to its value (and one to its dissimilarity),

plus its options with their checks and its metadata. Every path a user has — the public functions,
:func:`reprsim.measure`/:func:`reprsim.distance`, :func:`reprsim.pairwise`, :class:`reprsim.StreamingSimilarity`,
:func:`reprsim.permutation_test`/:func:`reprsim.bootstrap`, the benchmark, ``reprsim.torch.compare`` and CUDA
tensors — computes the statistics its own way (in memory, per representation once, streamed, on a device) and
calls the same finaliser, found here by name. Options are checked in one place, :meth:`Measure.bind`.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

ORTHOGONAL = "orthogonal"
ISOTROPIC_SCALING = "isotropic_scaling"
INVERTIBLE_LINEAR = "invertible_linear"
TRANSLATION = "translation"
PERMUTATION = "permutation"

KINDS = ("moments", "factor", "kernel", "minibatch", "neighbours", "rdm", "folds")
# Kinds whose statistics an accumulator can keep over batches (exactly, whatever the split). "folds"
# (per-fold moments) needs the number of rows in advance to place the fold boundaries.
STREAMING_KINDS = frozenset({"moments", "factor", "minibatch", "folds"})

Finaliser = Callable[[Any, "Bound"], float]


@dataclass(frozen=True)
class Option:
    """One option of a measure: its name, default and check.

    Attributes
    ----------
    name : str
        The keyword.
    default : object
        Its value when not given.
    check : callable
        ``check(value) -> value``: returns the normalised value, or raises ValueError/TypeError naming
        the option and the values it takes.
    doc : str
        One line for the documentation.
    """

    name: str
    default: Any
    check: Callable[[Any], Any]
    doc: str = ""


@dataclass(frozen=True, eq=False)
class Bound:
    """A measure with checked options: what every path evaluates (and a cache key).

    Attributes
    ----------
    measure : Measure
        The registry entry.
    options : mapping of str to object
        Every option of the measure, defaults filled in, checked.
    """

    measure: Measure
    options: Mapping[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.options[key]

    @property
    def name(self) -> str:
        return self.measure.name

    @property
    def symmetric(self) -> bool:
        """Whether the value is symmetric in x and y under these options."""
        m = self.measure
        return m.symmetric and (m.symmetric_when is None or m.symmetric_when(self))

    @property
    def min_n(self) -> int:
        m = self.measure.min_n
        return int(m(self) if callable(m) else m)

    @property
    def value_range(self) -> tuple[float, float]:
        """(low, high) of the value under these options."""
        m = self.measure
        return m.ranges(self)[0] if m.ranges is not None else m.value_range

    @property
    def distance_range(self) -> tuple[float, float]:
        """(low, high) of the dissimilarity under these options."""
        m = self.measure
        return m.ranges(self)[1] if m.ranges is not None else m.range

    def value(self, pair: Any) -> float:
        """The measure's own value for one pair's statistics (what its public function returns)."""
        return self.measure.value(pair, self)

    def distance(self, pair: Any) -> float:
        """The measure's dissimilarity for one pair's statistics."""
        return self.measure.distance(pair, self)

    def key(self) -> tuple[Any, ...]:
        return (self.measure.name, *sorted(self.options.items()))

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{self.measure.name}({opts})"


@dataclass(frozen=True, eq=False)
class Measure:
    """A registry entry: a measure's statistics, finalisers, options and guarantees.

    Attributes
    ----------
    name : str
        The name every path accepts (``reprsim.measure(x, y, name)``, ``pairwise(..., metric=name)``, ...).
    function : str or None
        The public function of ``reprsim`` returning the measure's value, if any.
    value_kind : {"similarity", "distance"}
        What the measure's value is: what its function, :func:`reprsim.measure`, :func:`reprsim.pairwise`,
        ``StreamingSimilarity.measure`` and ``reprsim.torch.compare`` return. Permutation tests take
        "more similar than chance" as ``"greater"`` for similarities and ``"less"`` for distances.
    statistics : str
        The statistics kind the finalisers read (one of ``"moments"``, ``"factor"``, ``"kernel"``,
        ``"minibatch"``, ``"neighbours"``, ``"rdm"``, ``"folds"``).
    definition : str
        The formula of the value.
    distance_definition : str
        The formula of the dissimilarity (:func:`reprsim.distance`, :func:`reprsim.pairwise_distances`).
    range : tuple of float
        (low, high) of the dissimilarity under the default options.
    value_range : tuple of float
        (low, high) of the value under the default options.
    symmetric : bool
        measure(x, y) == measure(y, x).
    is_metric : bool
        The dissimilarity satisfies the triangle inequality (a metric on equivalence classes).
    invariances : frozenset of str
        Transforms of either input that leave the value unchanged.
    estimator : {"biased", "debiased", "exact", "cross-validated", "minibatch"}
        How the value relates to a population quantity.
    reference : str
        Where the definition comes from.
    options : tuple of Option
        The options the measure takes (``fixed`` ones excluded from what users may pass).
    fixed : mapping
        Options this name fixes (e.g. ``debiased=True`` for ``"debiased_cka"``).
    value, distance : callable
        The finalisers: ``value(pair, bound)`` and ``distance(pair, bound)`` from one pair's statistics
        (see ``reprsim._stats``) and the bound options.
    min_n : int or callable
        The fewest rows the measure is defined on (a function of the bound options where they change it).
    identity : float or None
        The value of a representation with itself, when it is a constant (1 for CKA); None when it
        depends on the data. ``pairwise(xs)`` puts it on the diagonal exactly.
    zero_diagonal : bool
        The dissimilarity of a representation with itself is 0 (``pairwise_distances(xs)`` puts exact
        zeros on the diagonal).
    ranges : callable or None
        ``ranges(bound) -> (value range, dissimilarity range)`` where options change them.
    symmetric_when : callable or None
        ``symmetric_when(bound)`` is False for options that make a symmetric measure asymmetric.
    validate : callable or None
        Checks between options, after each option's own check.
    option_hints : mapping
        Hints for options that belong to another name (e.g. ``kernel=`` on "cka" points to "rbf_cka").
    title : str
        How messages name the measure.
    permutation_null : callable or None
        A compiled permutation null for numpy input (see ``reprsim._nulls``); without one, permutation
        tests recompute the measure for every permutation.
    float64_products : bool
        The finaliser makes rank decisions on the moments (pseudo-inverses on the numerical rank), so
        moments of tensors on a device are formed with float64 products, as on the CPU.
    """

    name: str
    function: str | None
    value_kind: str
    statistics: str
    value: Finaliser
    distance: Finaliser
    definition: str
    distance_definition: str
    range: tuple[float, float]
    value_range: tuple[float, float]
    symmetric: bool
    is_metric: bool
    invariances: frozenset[str]
    estimator: str
    reference: str
    options: tuple[Option, ...] = ()
    fixed: Mapping[str, Any] = field(default_factory=dict)
    min_n: int | Callable[[Bound], int] = 2
    identity: float | None = None
    zero_diagonal: bool = True
    # (value range, dissimilarity range) for bound options, where options change them.
    ranges: Callable[[Bound], tuple[tuple[float, float], tuple[float, float]]] | None = None
    # Options that make a symmetric measure asymmetric: symmetric_when(bound) is False then.
    symmetric_when: Callable[[Bound], bool] | None = None
    # Checks between options (after each option's own check); raises ValueError/TypeError.
    validate: Callable[[Mapping[str, Any]], None] | None = None
    # Hints for options users reach for that belong to another name ({"kernel": "use metric='rbf_cka'"}).
    option_hints: Mapping[str, str] = field(default_factory=dict)
    # How messages name the measure ("debiased CKA needs at least 4 samples").
    title: str = ""
    # A compiled permutation null for numpy input: builder(x, y, bound, n_permutations, n_jobs, space)
    # returning an object whose evaluate(permutations, n_jobs) gives the values (see reprsim._nulls);
    # without one, permutation tests recompute the measure for every permutation.
    permutation_null: Callable[..., Any] | None = None
    # Rank decisions on the moments: device moments are formed with float64 products.
    float64_products: bool = False

    @property
    def kind(self) -> str:
        """Same as ``value_kind``."""
        return self.value_kind

    @property
    def similarity(self) -> str | None:
        """The public function returning the similarity, for similarity measures (else None)."""
        return self.function if self.value_kind == "similarity" else None

    @property
    def streams(self) -> bool:
        """Whether ``StreamingSimilarity`` computes it exactly from batches without keeping every row."""
        return self.statistics in STREAMING_KINDS

    @property
    def option_names(self) -> tuple[str, ...]:
        """The options a user may pass (those this name does not fix)."""
        return tuple(o.name for o in self.options if o.name not in self.fixed)

    @property
    def defaults(self) -> Mapping[str, Any]:
        """The user-settable options and their defaults."""
        return MappingProxyType({o.name: o.default for o in self.options if o.name not in self.fixed})

    def bind(self, **options: Any) -> Bound:
        """Check ``options`` and return the bound measure every path evaluates.

        Parameters
        ----------
        **options
            The measure's options; the others take their defaults.

        Returns
        -------
        Bound
            The measure with every option checked and filled in.

        Raises
        ------
        TypeError
            An option this measure does not take.
        ValueError, TypeError
            An option value its check rejects.
        """
        known = {o.name: o for o in self.options}
        for key in options:
            if key not in known or key in self.fixed:
                if key in self.fixed:
                    hint = f" ({key}={self.fixed[key]!r} is fixed by this name)"
                elif not self.option_names:
                    extra = f" ({self.option_hints[key]})" if key in self.option_hints else ""
                    raise TypeError(f"metric {self.name!r} takes no options, got {sorted(options)}{extra}")
                else:
                    close = difflib.get_close_matches(key, list(self.option_names), n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                takes = ", ".join(self.option_names) or "no options"
                extra = f" ({self.option_hints[key]})" if key in self.option_hints else ""
                raise TypeError(f"metric {self.name!r} does not take the option {key!r}{hint}; it takes {takes}{extra}")
        values: dict[str, Any] = {}
        for o in self.options:
            if o.name in self.fixed:
                values[o.name] = self.fixed[o.name]
            elif o.name in options:
                values[o.name] = o.check(options[o.name])
            else:
                values[o.name] = o.default
        if self.validate is not None:
            self.validate(values)
        return Bound(self, MappingProxyType(values))


_REGISTRY: dict[str, Measure] = {}

METRICS: Mapping[str, Measure] = MappingProxyType(_REGISTRY)
"""Every registered measure by name (read-only); see :class:`Measure` for the fields."""

MetricInfo = Measure  # the name of the metadata type in reprsim 0.1


def register(measure: Measure) -> Measure:
    """Add a measure to the registry (each name once)."""
    if measure.name in _REGISTRY:
        raise ValueError(f"a measure named {measure.name!r} is already registered")
    if measure.statistics not in KINDS:
        raise ValueError(f"unknown statistics kind {measure.statistics!r}; one of {KINDS}")
    if measure.value_kind not in ("similarity", "distance"):
        raise ValueError(f"value_kind must be 'similarity' or 'distance', got {measure.value_kind!r}")
    _REGISTRY[measure.name] = measure
    return measure


def get(metric: Any) -> Measure:
    """The registry entry of a name; TypeError/ValueError with the known names otherwise."""
    if not isinstance(metric, str):
        raise TypeError(f"metric must be a string, one of {sorted(_REGISTRY)}; got {type(metric).__name__}")
    try:
        return _REGISTRY[metric]
    except KeyError:
        close = difflib.get_close_matches(metric, list(_REGISTRY), n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown metric {metric!r}{hint} Known metrics: {', '.join(sorted(_REGISTRY))}") from None


def bind(metric: Any, options: Mapping[str, Any]) -> Bound:
    """``get(metric).bind(**options)``."""
    return get(metric).bind(**dict(options))


check_metric = get


def describe(bound: Bound) -> str:
    """How messages name a bound measure, e.g. "debiased CKA"."""
    title = bound.measure.title or bound.measure.name
    if bound.options.get("debiased") is True and "debiased" not in title:
        title = "debiased " + title
    return title


# ---------------------------------------------------------------------------------------------
# Option checks shared by the measures


def check_bool(name: str) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {value!r}")
        return bool(value)

    return check


def check_choice(name: str, choices: tuple[Any, ...]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}")
        return value

    return check


def check_real(name: str, *, low: float | None = None, high: float | None = None, low_open: bool = False,
               high_open: bool = False) -> Callable[[Any], float]:
    """A finite real number in the given interval (closed unless stated)."""

    def describe() -> str:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        hi = ")" if high is None else hi
        return f"in {lo}{'-inf' if low is None else format(low, 'g')}, {'inf' if high is None else format(high, 'g')}{hi}"

    def check(value: Any) -> float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} must be a number {describe()}, got {value!r}")
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number {describe()}, got {value!r}")
        if low is not None and (v < low or (low_open and v == low)):
            raise ValueError(f"{name} must be a number {describe()}, got {value!r}")
        if high is not None and (v > high or (high_open and v == high)):
            raise ValueError(f"{name} must be a number {describe()}, got {value!r}")
        return v

    return check


def check_int(name: str, *, low: int = 1, allow_none: bool = False) -> Callable[[Any], int | None]:
    def check(value: Any) -> int | None:
        if value is None and allow_none:
            return None
        extra = " or None" if allow_none else ""
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an integer ≥ {low}{extra}, got {type(value).__name__} {value!r}")
        if value < low:
            raise ValueError(f"{name} must be an integer ≥ {low}{extra}, got {value!r}")
        return int(value)

    return check
