"""Latency histograms on fixed buckets: what the router counts per request, and what the
metrics' percentiles are read from (pure).

Times are whole milliseconds (the router's log line's ``service=``). Below 8 ms each value
has its bucket; from there each doubling has 8 buckets of equal width (HdrHistogram's
layout with 3 significant bits): a value ``v`` with ``b = v.bit_length()`` falls in bucket
``(b - 3) * 8 + ((v >> (b - 4)) & 7)``, integer operations only, which the compiled router
does inline (router/metrics.py; a test checks the two agree). Times from 2**18 ms (4.4
minutes) up share the last bucket. A percentile is read as the middle of the whole
milliseconds its rank's bucket holds: at most 1/16 (6.25%) off the exact percentile, and
exact below 16 ms. Sparse dicts of fixed buckets add up exactly across router processes,
minutes and rollups, which a streaming sketch would not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

BUCKETS = 128  # buckets 0..127
TOP = (1 << 18) - 1  # the largest time (ms) with a bucket of its own width
RELATIVE_ERROR = 1 / 16

Histogram = dict[int, int]


def bucket(ms: int) -> int:
    """The bucket of a time of ``ms`` whole milliseconds."""
    if ms < 8:
        return max(ms, 0)
    if ms > TOP:
        ms = TOP
    bits = ms.bit_length()
    return (bits - 3) * 8 + ((ms >> (bits - 4)) & 7)


def bounds(index: int) -> tuple[int, int]:
    """The whole milliseconds a bucket holds: ``(lowest, highest)``."""
    if index < 8:
        return index, index
    group, step = divmod(index, 8)
    width = 1 << (group - 1)
    lowest = (8 + step) * width
    return lowest, lowest + width - 1


def add_to(histogram: Histogram, ms: int) -> None:
    index = bucket(ms)
    histogram[index] = histogram.get(index, 0) + 1


def merge(into: Histogram, other: Mapping[int, int]) -> None:
    for index, count in other.items():
        into[index] = into.get(index, 0) + count


def merged(histograms: Iterable[Mapping[int, int]]) -> Histogram:
    total: Histogram = {}
    for histogram in histograms:
        merge(total, histogram)
    return total


def difference(now: Mapping[int, int], before: Mapping[int, int]) -> Histogram:
    """What was counted between two readings of a cumulative histogram (a count that went
    down belongs to a counter started again: all of it is new)."""
    delta: Histogram = {}
    for index, count in now.items():
        previous = before.get(index, 0)
        change = count - previous if count >= previous else count
        if change:
            delta[index] = change
    return delta


def representative(index: int) -> float:
    """The time (ms) a bucket stands for: the middle of the whole milliseconds it holds."""
    lowest, highest = bounds(index)
    return (lowest + highest) / 2


def percentile(histogram: Mapping[int, int], q: float) -> float | None:
    """The ``q`` quantile (0 < q <= 1) in ms by nearest rank; None for an empty histogram."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total - 1e-9))  # nearest rank; 1e-9: 0.95 * 20 is not 19
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return representative(index)
    return representative(max(histogram))


def to_json(histogram: Mapping[int, int]) -> dict[str, int]:
    return {str(index): count for index, count in histogram.items() if count}


def from_json(data: object) -> Histogram:
    """A histogram from its JSON (keys as text); anything malformed is dropped."""
    if not isinstance(data, dict):
        return {}
    histogram: Histogram = {}
    for key, count in data.items():
        try:
            index = int(key)
        except (TypeError, ValueError):
            continue
        if isinstance(count, int) and count > 0 and 0 <= index < BUCKETS:
            histogram[index] = count
    return histogram
