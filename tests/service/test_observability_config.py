"""The observability settings, from flags and from WORKFLOW_* environment variables."""

import pytest

from service.config import parse_args


def test_everything_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("METRICS_PORT", "METRICS_HOST", "TRACING", "OTLP_ENDPOINT", "LOG_FORMAT"):
        monkeypatch.delenv(f"WORKFLOW_{name}", raising=False)
    c = parse_args([])
    assert (c.metrics_port, c.metrics_host, c.tracing, c.otlp_endpoint) == (0, None, False, None)
    assert c.log_format == "keyvalue"


def test_flags() -> None:
    c = parse_args(
        [
            *("--metrics-port", "9100", "--metrics-host", "0.0.0.0", "--tracing"),
            *("--otlp-endpoint", "http://collector:4317", "--log-format", "json"),
        ]
    )
    assert (c.metrics_port, c.metrics_host, c.tracing) == (9100, "0.0.0.0", True)
    assert (c.otlp_endpoint, c.log_format) == ("http://collector:4317", "json")
    assert parse_args(["--tracing", "false"]).tracing is False


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKFLOW_METRICS_PORT", "9200")
    monkeypatch.setenv("WORKFLOW_TRACING", "true")
    monkeypatch.setenv("WORKFLOW_LOG_FORMAT", "json")
    c = parse_args([])
    assert (c.metrics_port, c.tracing, c.log_format) == (9200, True, "json")


@pytest.mark.parametrize(
    "argv",
    [
        ["--metrics-port", "70000"],
        ["--metrics-port", "http"],
        ["--tracing", "maybe"],
        ["--log-format", "xml"],
    ],
)
def test_bad_values_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        parse_args(argv)
    assert e.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_bad_log_format_in_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKFLOW_LOG_FORMAT", "xml")
    with pytest.raises(SystemExit) as e:
        parse_args([])
    assert e.value.code == 2
