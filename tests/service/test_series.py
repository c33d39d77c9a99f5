"""The lock-free series expose exactly what prometheus_client's own metrics would."""

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service.series import SeriesRegistry

OBSERVED = [0.0, 0.005, 0.0050001, 0.3, 1.0, 2.5, 11.0, 1e9]  # bounds, between, above all


def samples(registry: CollectorRegistry) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")  # prometheus_client's creation times
    }


def test_series_expose_what_prometheus_client_metrics_would() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    series = SeriesRegistry()
    ours.register(series)

    counter = series.counter("calls", "Calls.", ("method",))
    their_counter = Counter("calls", "Calls.", ("method",), registry=theirs)
    gauge = series.gauge("open", "Open.")
    their_gauge = Gauge("open", "Open.", registry=theirs)
    histogram = series.histogram("seconds", "Seconds.", ("method",))
    their_histogram = Histogram("seconds", "Seconds.", ("method",), registry=theirs)
    custom = series.histogram("append", "Append.", buckets=(0.001, 0.01))
    their_custom = Histogram("append", "Append.", buckets=(0.001, 0.01), registry=theirs)

    for method in ("Get", "Run"):
        counter.labels(method).inc()
        their_counter.labels(method).inc()
    counter.labels("Run").inc(2.5)
    their_counter.labels("Run").inc(2.5)
    for _ in range(3):
        gauge.labels().inc()
        their_gauge.inc()
    gauge.labels().dec()
    their_gauge.dec()
    for value in OBSERVED:
        histogram.labels("Run").observe(value)
        their_histogram.labels("Run").observe(value)
        custom.labels().observe(value / 100)
        their_custom.observe(value / 100)

    assert samples(ours) == samples(theirs)
    assert ("open", (), 2.0) in samples(ours)
    assert ("seconds_bucket", (("le", "0.005"), ("method", "Run")), 2.0) in samples(ours)
    assert ("seconds_count", (("method", "Run"),), len(OBSERVED)) in samples(ours)


def test_unlabelled_series_show_from_the_start_and_labels_are_checked() -> None:
    registry = CollectorRegistry()
    series = SeriesRegistry()
    registry.register(series)
    series.gauge("idle", "Idle.")
    labelled = series.counter("by_method", "By method.", ("method",))
    assert samples(registry) == {("idle", (), 0.0)}
    with pytest.raises(ValueError, match=r"expected labels \('method',\)"):
        labelled.labels("a", "b")
