"""`python -m pipelines`: the CLI runs the same jobs as the DAGs, with clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *args],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_generate_validate_publish_materialize_a_day(settings):
    # Given two generated days
    generated = _cli("generate", "--start", "2026-01-01", "--days", "2")
    assert generated.returncode == 0, generated.stderr
    assert len(json.loads(generated.stdout)) == 2

    # When the second day goes through the gate and into the online store
    validated = _cli("validate", "2026-01-02")
    published = _cli("publish", "2026-01-02")
    materialized = _cli("materialize", "2026-01-02")

    # Then each step reports what it did
    assert validated.returncode == 0, validated.stderr
    assert json.loads(validated.stdout)["rows"] == settings.synthetic.customers
    assert published.returncode == 0 and "validated" in json.loads(published.stdout)
    assert materialized.returncode == 0, materialized.stderr
    assert json.loads(materialized.stdout)["entities_written"] == settings.synthetic.customers


def test_a_failing_gate_exits_1_and_names_the_failure(settings):
    _cli("generate", "--start", "2026-01-01", "--days", "1", "--fault", "duplicate_keys")

    result = _cli("validate", "2026-01-01")

    assert result.returncode == 1
    assert "expect_compound_columns_to_be_unique" in result.stderr
    assert "customer_id, event_timestamp" in result.stderr


def test_a_missing_partition_exits_1_and_names_the_path(settings):
    result = _cli("validate", "2026-03-01")

    assert result.returncode == 1
    assert "has not landed" in result.stderr and "date=2026-03-01" in result.stderr


def test_settings_are_printed_as_json(settings):
    result = _cli("settings")

    assert json.loads(result.stdout)["state_root"] == str(settings.state_root)


def test_promotion_route_follows_gate_infra_check_and_approval_setting(settings, monkeypatch):
    from pipelines import jobs

    passed, failed = {"passed": True, "reasons": []}, {"passed": False, "reasons": ["worse"]}
    infra_ok = {"passed": True, "detail": "ok"}

    assert jobs.promotion_route(passed, infra_ok) == "promote"
    assert jobs.promotion_route(failed, infra_ok) == "reject"
    assert jobs.promotion_route(passed, {"passed": False, "detail": "too big"}) == "reject"
    monkeypatch.setenv("MLOPS_GATE__REQUIRE_APPROVAL", "true")
    assert jobs.promotion_route(passed, infra_ok) == ["approve", "promote"]
    assert jobs.rejection_reason(failed, {"passed": False, "detail": "too big"}) == (
        "gate: worse | infra check: too big"
    )
