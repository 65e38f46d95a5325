"""Log-spaced histograms of durations: what the SLA report's rollups keep instead of every value.

A histogram is ``{bucket: count}`` (JSON, its keys text). Bucket ``0`` holds the
values up to :data:`FLOOR`; bucket ``i >= 1`` the values in
``(FLOOR·GROWTH^(i-1), FLOOR·GROWTH^i]``. Histograms of days, steps and
calendars add up bucket by bucket, and a percentile is read from the counts:
the bucket holding the value of that rank (nearest rank, as
:func:`exact_percentile` reads a sorted list), shown as the bucket's geometric
middle. The value shown is then within :data:`PRECISION` of the true one (or
:data:`FLOOR` of it, for values that small), whatever the number of values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

#: Each bucket's upper bound is this many times its lower one: 16 buckets per doubling.
GROWTH = 2 ** (1 / 16)
#: A percentile read from the buckets is within this fraction of the true value: half a bucket, geometrically
#: (2^(1/32) - 1, about 2.2%).
PRECISION = math.sqrt(GROWTH) - 1
#: Seconds at or below this count as zero (bucket 0).
FLOOR = 0.001
_LOG = math.log(GROWTH)

Histogram = dict[str, int]


def bucket(seconds: float) -> int:
    """The bucket of a duration."""
    if seconds <= FLOOR:
        return 0
    return max(1, math.ceil(math.log(seconds / FLOOR) / _LOG - 1e-9))


def middle(index: int) -> float:
    """The value a bucket stands for: 0 for bucket 0, else the geometric middle of its bounds."""
    return 0.0 if index <= 0 else FLOOR * GROWTH ** (index - 0.5)


def add(histogram: Histogram, seconds: float, count: int = 1) -> None:
    """Count a duration in ``histogram``."""
    key = str(bucket(seconds))
    histogram[key] = histogram.get(key, 0) + count


def merge(into: Histogram, other: Mapping[str, int]) -> Histogram:
    """Add ``other``'s counts to ``into``; return ``into``."""
    for key, count in other.items():
        into[key] = into.get(key, 0) + int(count)
    return into


def rank(fraction: float, count: int) -> int:
    """The nearest rank (1-based) of a percentile among ``count`` values."""
    return min(count, max(1, math.ceil(fraction * count - 1e-9)))


def percentile(histogram: Mapping[str, int], fraction: float) -> float | None:
    """The ``fraction`` percentile (0.9: p90) of the counted durations, within :data:`PRECISION`; ``None`` for
    none."""
    counts = sorted((int(key), count) for key, count in histogram.items() if count)
    total = sum(count for _, count in counts)
    if not total:
        return None
    wanted, seen = rank(fraction, total), 0
    for index, count in counts:
        seen += count
        if seen >= wanted:
            return middle(index)
    raise AssertionError("unreachable")  # pragma: no cover - the counts add up to ``total``


def exact_percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile of a list (what :func:`percentile` estimates); ``None`` for none."""
    if not values:
        return None
    return sorted(values)[rank(fraction, len(values)) - 1]


def of(values: Iterable[float]) -> Histogram:
    """A histogram of some durations."""
    found: Histogram = {}
    for value in values:
        add(found, value)
    return found
