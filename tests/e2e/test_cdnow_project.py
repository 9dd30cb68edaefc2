"""The real-data example project, CDNOW, end to end on a slice of its first two months.

Real purchases (the `Lifetimes` package's data file), ids as shipped (zero-padded text),
an events source: validate, publish, build features, derive labels, materialize, train,
gate, promote, score and check drift, all by configuration, through the CLI.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stdout
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from pipelines import cli
from pipelines.io import lake
from pipelines.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
LAST_FEATURE_NIGHT, SCORED = date(1997, 2, 26), date(1997, 2, 27)


def _cli(*args: str) -> dict | list:
    out = io.StringIO()
    with redirect_stdout(out):
        code = cli.main(list(args))
    assert code == 0, out.getvalue()
    return json.loads(out.getvalue())


@pytest.fixture
def cdnow(tmp_path, monkeypatch):
    """The CDNOW project on its own state root, its first two months landed."""
    monkeypatch.setenv("MLOPS_PROJECT", "cdnow")
    monkeypatch.setenv("MLOPS_STATE_ROOT", str(tmp_path / "state"))
    landed = subprocess.run(
        [sys.executable, "projects/cdnow/land.py", "--until", SCORED.isoformat()],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    assert "landed 58 days of purchases, 1997-01-01 to 1997-02-27" in landed.stdout
    return load_settings()


def test_the_cdnow_slice_runs_from_landed_purchases_to_scored_and_monitored_nights(cdnow):
    # Given 57 nights of real purchases run through the feature pipeline
    nights = _cli("run", "--features-only", "--from", "1997-01-01", "--to", str(LAST_FEATURE_NIGHT))
    assert len(nights) == 57
    built = nights[-1]["build_features"]
    assert built["entities"] > 10_000 and built["nights_replayed"] == 1
    labels = [night["build_labels"] for night in nights if not night["build_labels"]["skipped"]]
    assert len(labels) == 57 - 30 and all(0 < item["positives"] < item["rows"] for item in labels)

    # When a model is trained as of the last night, then the gate promotes it
    trained = _cli("train", "--as-of", str(LAST_FEATURE_NIGHT), "--reason", "cdnow slice")
    assert trained["gate"]["passed"], trained["gate"]
    assert "promote" in {move["action"] for move in trained["outcome"]}
    assert trained["candidate"]["metrics"]["holdout_roc_auc"] > 0.65

    # And the next night is scored and monitored
    (night,) = _cli("run", "--from", str(SCORED), "--to", str(SCORED))
    predictions = pd.read_parquet(night["score"]["predictions"])
    features = pd.read_parquet(night["build_features"]["path"])
    assert sorted(predictions["customer_id"]) == sorted(features["customer_id"])
    assert predictions["customer_id"].str.fullmatch(r"\d{5}").all()  # ids as shipped
    assert predictions["repeat_probability"].between(0, 1).all()
    assert set(predictions["model_version"]) == {trained["candidate"]["version"]}
    assert Path(night["drift"]["report"]).is_file()
    # The age-like feature is monotone by the project's drift policy: never an alarm
    report = json.loads((Path(night["drift"]["report"]).parent / "report.json").read_text())
    levels = {item["feature"]: item["level"] for item in report["features"]}
    assert levels["days_since_first_purchase"] in ("ok", "expected")
    assert lake.partition_days(cdnow.validated_root, "purchases_features")[-1] == SCORED
