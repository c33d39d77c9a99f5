"""Counters, gauges and histograms updated without locks, scraped through prometheus_client.

prometheus_client's own metrics take a lock on every update: about 0.5 µs per counter
increment and 1 µs per histogram observation on a 2-core machine, and a RunWorkflow call
with metrics on makes some fifteen updates. The series here are plain attributes updated in
place (on the hot paths ``series.value += 1`` itself, without a method call). That is safe
because each series is only ever updated from one thread (the event loop's; the SQLite
store's append latency from its writer thread) and the GIL makes each read and write of a
value whole; a scrape, on the HTTP server's thread, may see a
histogram's sum one observation behind its buckets, never a torn number.

Exposition is prometheus_client's: :class:`SeriesRegistry` is a collector of metric
families, served by its HTTP server and text format as usual.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

# prometheus_client's default buckets (seconds), +Inf implied.
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


class _ValueSeries:
    """A series with one number."""

    __slots__ = ("value",)

    def __init__(self, bounds: tuple[float, ...] = ()) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def add_to(self, family: CounterMetricFamily | GaugeMetricFamily, values: list[str]) -> None:
        family.add_metric(values, self.value)


class CounterSeries(_ValueSeries):
    __slots__ = ()

    @staticmethod
    def family(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
        return CounterMetricFamily(name, doc, labels=labels)


class GaugeSeries(_ValueSeries):
    __slots__ = ()

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount

    @staticmethod
    def family(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=labels)


class HistogramSeries:
    """Counts per bucket (not cumulative: the scrape adds them up) and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: the first bound >= value, as Prometheus' "le" has it.
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    @staticmethod
    def family(name: str, doc: str, labels: list[str]) -> HistogramMetricFamily:
        return HistogramMetricFamily(name, doc, labels=labels)

    def add_to(self, family: HistogramMetricFamily, values: list[str]) -> None:
        total = self.sum
        buckets: list[tuple[str, float]] = []
        seen = 0
        for bound, count in zip((*self.bounds, math.inf), list(self.counts), strict=True):
            seen += count
            buckets.append(("+Inf" if math.isinf(bound) else repr(bound), seen))
        family.add_metric(values, buckets, total)


S = TypeVar("S", CounterSeries, GaugeSeries, HistogramSeries)


class Family(Generic[S]):
    """A metric's series by label values."""

    def __init__(
        self,
        kind: type[S],
        name: str,
        doc: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
    ) -> None:
        self.kind: type[S] = kind
        self.name = name
        self.doc = doc
        self.labelnames = tuple(labelnames)
        self.bounds = tuple(sorted(b for b in buckets if not math.isinf(b)))
        self.series: dict[tuple[str, ...], S] = {}
        if not self.labelnames:
            self.labels()  # shown (at 0) from the start, as prometheus_client does

    def labels(self, *values: str) -> S:
        """The series of these label values, made at first use. Callers keep the series
        they update often instead of looking them up each time."""
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {values}")
        series = self.series.get(values)
        if series is None:
            series = self.series[values] = self.kind(self.bounds)
        return series

    def collect(self) -> Metric:
        family = self.kind.family(self.name, self.doc, list(self.labelnames))
        for values, series in list(self.series.items()):  # a copy: series may be added
            series.add_to(family, list(values))
        metric: Metric = family
        return metric


class SeriesRegistry(Collector):
    """The families of one server, collected together at each scrape."""

    def __init__(self) -> None:
        self.families: list[Family[CounterSeries] | Family[GaugeSeries] | Family[HistogramSeries]]
        self.families = []

    def counter(self, name: str, doc: str, labelnames: Sequence[str] = ()) -> Family[CounterSeries]:
        """``name`` without ``_total``: the exposition adds it."""
        return self._add(Family(CounterSeries, name, doc, labelnames, ()))

    def gauge(self, name: str, doc: str, labelnames: Sequence[str] = ()) -> Family[GaugeSeries]:
        return self._add(Family(GaugeSeries, name, doc, labelnames, ()))

    def histogram(
        self,
        name: str,
        doc: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> Family[HistogramSeries]:
        return self._add(Family(HistogramSeries, name, doc, labelnames, buckets))

    def _add(self, family: Family[S]) -> Family[S]:
        self.families.append(family)
        return family

    def collect(self) -> Iterator[Metric]:
        for family in self.families:
            yield family.collect()
