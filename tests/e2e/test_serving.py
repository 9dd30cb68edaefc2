"""The online scoring service as users run it: `python -m pipelines serve` in its own
process, on a night that was materialized and scored in batch.

Online scores equal the published batch scores bit for bit; a promotion is picked up
while requests keep coming, none dropped or mixed; scoring needs the token; bad requests
get clear 4xx answers.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from pipelines import cli, contracts, security
from pipelines.io.orchestrator import free_port, wait_for
from pipelines.jobs import feature_pipeline, training
from pipelines.scoring import publishing
from pipelines.serving import features
from pipelines.serving.app import create_app
from pipelines.settings import Settings, load_settings

pytestmark = pytest.mark.e2e

NIGHT = date(2026, 2, 14)
WEAKER = {"n_estimators": 20, "max_depth": 2}
READY_TIMEOUT_S = 180.0
SWAP_TIMEOUT_S = 120.0


def _published(settings: Settings) -> dict[str, Any]:
    """The night's published batch scores by customer, and the version that made them."""
    table = pq.read_table(publishing.partition(settings, publishing.PREDICTIONS, NIGHT))
    names = settings.project
    ids = table.column(names.entity.column).to_pylist()
    return {
        "version": table.column("model_version")[0].as_py(),
        "scores": dict(zip(ids, table.column(names.scoring.score_column).to_pylist(), strict=True)),
    }


def _champion(trained: dict[str, Any]) -> str | None:
    """The version a training made champion (None: it was rejected)."""
    moves = trained["outcome"] if isinstance(trained["outcome"], list) else []
    return {move["alias"]: move["to_version"] for move in moves}.get(contracts.CHAMPION)


def _bits(values: list[float]) -> np.ndarray:
    return np.array(values, dtype=np.float64).view(np.int64)


@pytest.fixture(scope="module")
def served(labelled_world, tmp_path_factory) -> Iterator[tuple[Settings, httpx.Client, Path]]:
    """The night materialized and scored in batch by a first champion, and the service
    running on it as of the night's scoring time."""
    patch, _ = labelled_world
    first = training.train_and_gate(NIGHT, None, None, WEAKER, "first champion", "test")
    assert _champion(first) == "1", first
    feature_pipeline.materialize(NIGHT)
    assert cli.main(["score", str(NIGHT)]) == 0
    port = free_port()
    patch.setenv("MLOPS_SERVING__AS_OF", contracts.midnight_after(NIGHT).isoformat())
    patch.setenv("MLOPS_SERVING__POLL_SECONDS", "0.5")
    settings = load_settings()
    env = os.environ | {"MLOPS_SERVING__PORT": str(port)}
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "pipelines", "serve"], env=env, stdout=output, stderr=output
        )
    token = security.serving_token(settings)
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        wait_for("the service to be ready", lambda: _ready(client, server, log), READY_TIMEOUT_S)
        yield settings, client, log
    finally:
        client.close()
        server.terminate()
        server.wait(timeout=60)


def _ready(client: httpx.Client, server: subprocess.Popen, log: Path) -> bool:
    if server.poll() is not None:
        raise AssertionError(f"the service exited: {log.read_text()[-3000:]}")
    return client.get("/readyz").status_code == 200


def _score_all(client: httpx.Client, ids: list[Any]) -> dict[str, Any]:
    response = client.post("/v1/score", json={"ids": ids})
    assert response.status_code == 200, response.text
    return response.json()


def test_online_scores_equal_the_published_batch_bit_for_bit(served):
    settings, client, _ = served
    published = _published(settings)
    ids = list(published["scores"])

    answer = _score_all(client, ids)

    rows = answer["predictions"]
    names = settings.project
    assert answer["model_version"] == published["version"] == "1"
    assert [row[names.entity.column] for row in rows] == ids
    assert {row["status"] for row in rows} == {"scored"}
    online = [row[names.scoring.score_column] for row in rows]
    assert (_bits(online) == _bits([published["scores"][key] for key in ids])).all()
    decisions = [row[names.scoring.predicted_label_column] for row in rows]
    assert decisions == [score >= names.scoring.threshold for score in online]


def test_online_reads_are_feasts_get_online_features_value_for_value(served):
    settings, _, _ = served
    online = features.open_online_features(settings)
    assert online.views is not None, "the project's plain feature service is read directly"
    known = list(_published(settings)["scores"])
    ids = [*known, known[0], 1, 2**40]  # one asked twice, two never materialized

    direct = features.read(online, ids)
    through_feast = features.read(dataclasses.replace(online, views=None), ids)

    assert direct == through_feast
    assert direct.times[-2:] == [None, None]
    assert all(time is not None for time in direct.times[:-2])


def test_one_entity_and_an_unknown_one(served):
    settings, client, _ = served
    published = _published(settings)
    known = next(iter(published["scores"]))

    one = client.get(f"/v1/score/{known}").json()
    unknown = _score_all(client, [known, 1])["predictions"][1]

    score = one["predictions"][0][settings.project.scoring.score_column]
    assert _bits([score]) == _bits([published["scores"][known]])
    assert unknown["status"] == "not_found"
    assert unknown[settings.project.scoring.score_column] is None


def test_scoring_needs_the_token_and_the_probes_do_not(served):
    _, client, _ = served
    bare = httpx.Client(base_url=client.base_url)

    missing = bare.post("/v1/score", json={"ids": [1]})
    wrong = bare.get("/v1/score/1", headers={"Authorization": "Bearer not-the-token"})

    assert missing.status_code == wrong.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert bare.get("/healthz").status_code == 200
    assert bare.get("/readyz").json()["status"] == "ready"
    metrics = bare.get("/metrics").text
    assert 'serving_requests_total{code="401",route="/v1/score"}' in metrics
    assert 'serving_model_version{model="churn"} 1.0' in metrics


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"ids": ["100001"]}, ["ids", 0]),
        ({"ids": [1.5]}, ["ids", 0]),
        ({"ids": []}, ["ids"]),
        ({"ids": [1], "extra": True}, ["extra"]),
        ({}, ["ids"]),
    ],
)
def test_a_bad_body_gets_a_422_naming_the_field(served, body, where):
    _, client, _ = served

    response = client.post("/v1/score", json=body)

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == where


def test_too_many_ids_or_bytes_are_refused(served):
    settings, client, _ = served
    limit = settings.serving.max_entities

    too_many = client.post("/v1/score", json={"ids": list(range(1, limit + 2))})
    too_big = client.post("/v1/score", content=b" " * (settings.serving.max_body_bytes + 1))
    not_json = client.post("/v1/score", content=b'{"ids": [1,')
    bad_path = client.get("/v1/score/abc")

    assert too_many.status_code == 422 and "at most" in too_many.json()["detail"][0]["msg"]
    assert too_big.status_code == 413 and "over" in too_big.json()["detail"]
    assert not_json.status_code == 422 and not_json.json()["detail"][0]["type"] == "json_invalid"
    assert bad_path.status_code == 422 and bad_path.json()["detail"][0]["loc"] == [
        "path",
        "entity_id",
    ]


def test_features_older_than_the_ttl_are_stale_not_scored(served, labelled_world):
    settings, _, _ = served
    later = settings.model_copy(
        update={
            "serving": settings.serving.model_copy(
                update={"as_of": contracts.midnight_after(NIGHT) + timedelta(days=30)}
            )
        }
    )
    known = next(iter(_published(settings)["scores"]))

    with TestClient(create_app(later)) as client:
        token = security.serving_token(later)
        response = client.get(f"/v1/score/{known}", headers={"Authorization": f"Bearer {token}"})

    row = response.json()["predictions"][0]
    assert row["status"] == "stale" and row["feature_timestamp"].startswith(str(NIGHT))
    assert row[settings.project.scoring.score_column] is None


def test_a_promotion_is_picked_up_with_no_request_dropped_or_mixed(served):
    settings, client, _ = served
    ids = list(_published(settings)["scores"])
    answers: list[dict[str, Any]] = []
    failures: list[str] = []
    done = threading.Event()

    def keep_asking() -> None:
        with httpx.Client(base_url=client.base_url, headers=client.headers) as own:
            while not done.is_set():
                response = own.post("/v1/score", json={"ids": ids})
                if response.status_code != 200:
                    failures.append(f"{response.status_code}: {response.text}")
                    continue
                answers.append(response.json())

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        second = training.train_and_gate(NIGHT, None, None, None, "a better model", "test")
        assert _champion(second) == "2", second
        wait_for(
            "the service to serve version 2",
            lambda: answers and answers[-1]["model_version"] == "2",
            SWAP_TIMEOUT_S,
            every=0.2,
        )
    finally:
        done.set()
        asker.join()
    before = _published(settings)["scores"]
    assert cli.main(["score", str(NIGHT)]) == 0  # the night again, with the new champion
    after = _published(settings)
    expected = {"1": before, "2": after["scores"]}

    assert not failures
    assert after["version"] == "2"
    versions = [answer["model_version"] for answer in answers]
    assert versions == sorted(versions) and set(versions) == {"1", "2"}
    score = settings.project.scoring.score_column
    for answer in answers:
        got = [row[score] for row in answer["predictions"]]
        want = [expected[answer["model_version"]][key] for key in ids]
        assert (_bits(got) == _bits(want)).all(), answer["model_version"]


def test_the_token_is_private_and_never_printed(served):
    settings, _, log = served
    token = security.serving_token(settings)

    output = log.read_text()

    assert settings.serving_token_file.stat().st_mode & 0o777 == 0o600
    assert str(settings.serving_token_file) in output and token not in output
