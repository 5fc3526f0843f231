"""The main job: the demo against a real flaky HTTP server, end to end."""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest

from breaker_fsm import CircuitBreaker
from breaker_fsm import _demo as demo
from breaker_fsm._flaky_server import FlakyServer
from breaker_fsm.audit import read_jsonl, verify
from breaker_fsm.httpx import BreakerTransport


def test_demo_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """run() trips, rejects, half-opens, recovers, writes a verified trail, leaves no thread."""
    monkeypatch.chdir(tmp_path)
    threads_before = set(threading.enumerate())
    out = io.StringIO()
    started = time.monotonic()
    breaker = demo.run(out=out)
    elapsed = time.monotonic() - started
    text = out.getvalue()

    assert elapsed < 30
    assert set(threading.enumerate()) <= threads_before
    assert isinstance(breaker, CircuitBreaker)
    assert breaker.state == "closed"
    assert breaker.name.startswith("127.0.0.1:")
    for line in [
        "a flaky service on http://127.0.0.1:",
        "httpx calls it through BreakerTransport",
        "-- the service goes down: every request answers 503",
        "503 failure in",
        "=> trip: closed -> open (3 consecutive failures ≥ 3; open for 0.3s)",
        "rejected in",
        "fallback: cached answer",
        "=> attempt_reset: open -> half_open",
        "=> retrip: half_open -> open (trial call failed; open for 0.6s)",
        "-- the service comes back",
        "=> recover: half_open -> closed",
        "rejected without a connection",
        "failing fast saved about",
        "audit trail:",
        f"5 records written to {tmp_path / 'demo-audit.jsonl'}",
        "circuitbreaker_state{name=",
        "the server is stopped",
    ]:
        assert line in text, line

    records = read_jsonl(tmp_path / "demo-audit.jsonl")
    assert verify(records) == 5
    assert [r.event for r in records] == [
        "trip",
        "attempt_reset",
        "retrip",
        "attempt_reset",
        "recover",
    ]
    assert [r.event for r in breaker.audit] == [r.event for r in records]

    m = breaker.metrics()
    assert m.rejected_count > 0
    assert (
        f"{m.rejected_count} were rejected without a connection and {m.rejected_count} served"
        in text
    )
    assert f"the service itself counted {m.total_requests} requests" in text


def test_demo_overwrites_an_explicit_audit_path(tmp_path: Path) -> None:
    """An existing audit file is emptied first, so each run's trail verifies on its own."""
    path = tmp_path / "trail.jsonl"
    path.write_text("not json\n", encoding="utf-8")
    assert demo._audit_file(path, io.StringIO()) == path
    assert path.read_text(encoding="utf-8") == ""


def test_unwritable_default_audit_path_falls_back_to_the_temp_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If ./demo-audit.jsonl cannot be written the trail goes to the temporary directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    (tmp_path / "demo-audit.jsonl").mkdir()  # a directory where the file should be
    out = io.StringIO()
    path = demo._audit_file(None, out)
    assert path == tmp_path / "tmp" / "demo-audit.jsonl"
    assert path.exists()
    assert "cannot write demo-audit.jsonl" in out.getvalue()
    with pytest.raises(IsADirectoryError):
        demo._audit_file(tmp_path / "demo-audit.jsonl", out)


def test_without_httpx_the_simulated_walkthrough_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """With httpx unavailable the demo says so in one line and runs the simulation."""
    monkeypatch.setitem(sys.modules, "breaker_fsm.httpx", None)
    out = io.StringIO()
    breaker = demo.run(out=out)
    text = out.getvalue()
    assert text.splitlines()[0].startswith("httpx is not installed, so this is the simulated")
    assert breaker.name == "flaky-service"
    assert "audit trail:" in text
    assert verify(breaker.audit) == len(breaker.audit) > 0


def test_simulated_walkthrough_on_request() -> None:
    """simulated=True runs the instant walkthrough, the same for the same seed."""
    first, second = io.StringIO(), io.StringIO()
    demo.run(simulated=True, out=first)
    demo.run(simulated=True, out=second)
    assert first.getvalue() == second.getvalue()
    assert "rejected, fallback" in first.getvalue()


def test_demo_request_reports_transport_errors_and_phase_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connect error is shown as such; a phase stops at its time limit; no-data summary."""
    with FlakyServer() as gone:
        url = gone.url
    out = io.StringIO()
    run = demo._Demo(out, 1, demo._audit_file(tmp_path / "a.jsonl", out))
    monkeypatch.setattr(demo, "_PACE", 0.0)
    transport = BreakerTransport(httpx.HTTPTransport(retries=0), registry=run.registry)
    with httpx.Client(transport=transport, base_url=url, trust_env=False) as client:
        breaker = transport.breaker_for(url)
        run.request(client, breaker)
        assert "ConnectError in" in out.getvalue()
        monkeypatch.setattr(demo, "_PHASE_LIMIT", 0.0)
        run.until(client, breaker, lambda: False)
        assert run.sent == 1
    run.summary(breaker, 0)
    assert "failing fast saved" not in out.getvalue()
    assert "0 records written" in out.getvalue()


def test_demo_skips_prometheus_without_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without prometheus_client the demo leaves out the scrape and still finishes."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    out = io.StringIO()
    run = demo._Demo(out, 1, demo._audit_file(tmp_path / "a.jsonl", out))
    run.prometheus(run.registry.get("x"))
    assert out.getvalue() == ""


def test_python_m_breaker_fsm_demo(tmp_path: Path) -> None:
    """`python -m breaker_fsm demo` (what make demo runs) exits 0 and writes ./demo-audit.jsonl."""
    result = subprocess.run(
        [sys.executable, "-m", "breaker_fsm", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "=> recover: half_open -> closed" in result.stdout
    assert verify(read_jsonl(tmp_path / "demo-audit.jsonl")) == 5
