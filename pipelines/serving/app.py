"""The online scoring service: the champion's score for entities now, from the Feast
online store, with the nightly batch's encoding and classifier (`scoring.predictor`).

Routes (scoring needs `Authorization: Bearer <token>`; the probes and metrics do not):

* ``GET /v1/score/{id}``: one entity; ``POST /v1/score`` with ``{"ids": [...]}``: many.
  Each row has the batch partition's columns (key, score, decision), the time of its
  features and a status: ``scored``, ``stale`` (features older than the view's TTL, which
  batch scoring would not score either) or ``not_found``. The response names the model
  version that scored every row of it.
* ``GET /healthz``: the process answers; ``GET /readyz``: a champion is loaded and the
  online store answers a read (503 otherwise).
* ``GET /metrics``: Prometheus: requests, latency, entities by status, model version.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations, which
# name types built per project inside `create_app`.

import hmac
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    create_model,
)

from pipelines import security
from pipelines.scoring.predictor import predict_values
from pipelines.serving import features
from pipelines.serving.champion import Champion, ChampionWatcher, settle_heap
from pipelines.serving.metrics import RequestGuard, ServiceMetrics
from pipelines.settings import Settings

log = logging.getLogger(__name__)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_TEXT_ID = 256
JSON = "application/json"
# What the readiness probe asks the online store for: any answer, found or not, will do.
PROBE_IDS: dict[str, int | str] = {"int64": 0, "string": "readiness-probe"}


class Unavailable(HTTPException):
    """503: the service cannot score yet."""

    def __init__(self, detail: str) -> None:
        super().__init__(503, detail)


def _id_type(settings: Settings, strict: bool = True) -> Any:
    """The type of an entity id: an int64 (strict in JSON: no `"42"` or `42.0`; a path's
    text is parsed) or a bounded string."""
    if settings.project.entity.type == "int64":
        return Annotated[StrictInt if strict else int, Field(ge=INT64_MIN, le=INT64_MAX)]
    return Annotated[StrictStr, Field(min_length=1, max_length=MAX_TEXT_ID)]


def _request_model(settings: Settings) -> type[BaseModel]:
    """`{"ids": [...]}`: one to `serving.max_entities` ids of the project's entity type."""
    item = _id_type(settings)
    ids = Field(min_length=1, max_length=settings.serving.max_entities)
    return create_model(
        "ScoreRequest",
        __config__=ConfigDict(extra="forbid"),
        ids=(list[item], ids),  # type: ignore[valid-type]
    )


def scored_rows(settings: Settings, champion: Champion, ids: list[Any]) -> list[dict[str, Any]]:
    """Each id's row: its key, score and decision (as the batch partition has them), the
    time of its features and whether it was scored."""
    project = settings.project
    online = champion.online
    rows = features.read(online, ids)
    as_of = settings.serving.as_of or datetime.now(UTC)
    fresh = features.fresh(online, rows, as_of)
    picked = [index for index, ok in enumerate(fresh) if ok]
    scores: dict[int, float] = {}
    if picked:
        columns = rows.values
        if len(picked) < len(ids):
            columns = {name: [columns[name][index] for index in picked] for name in columns}
        predicted = predict_values(champion.model, columns, online.schema).tolist()
        scores = dict(zip(picked, predicted, strict=True))
    out = project.scoring
    answers = []
    for index, (key, stamp) in enumerate(zip(ids, rows.times, strict=True)):
        score = scores.get(index)
        answers.append(
            {
                project.entity.column: key,
                out.score_column: score,
                out.predicted_label_column: None if score is None else score >= out.threshold,
                features.FEATURE_TIMESTAMP: stamp.isoformat() if stamp else None,
                "status": "scored" if score is not None else ("stale" if stamp else "not_found"),
            }
        )
    return answers


def create_app(settings: Settings) -> FastAPI:
    """The service of the settings' project (its champion, its online store)."""
    token = security.serving_token(settings).encode()
    watcher = ChampionWatcher(settings)
    metrics = ServiceMetrics(CollectorRegistry(), settings.project.model.name)
    # Resolved here too, so a service started before any night is materialized stops at
    # once, naming what to run.
    features.open_online_features(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            watcher.refresh()
        except Exception as error:  # not ready until the poller loads one
            log.warning("no champion loaded yet: %s", error)
        settle_heap()
        watcher.start()
        yield
        watcher.stop()

    async def authorized(request: Request) -> None:
        # Async: FastAPI runs a plain function dependency in its thread pool, a hop that
        # cost a one-entity request more than its scoring.
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token):
            raise HTTPException(
                401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"}
            )

    def respond(ids: list[Any]) -> Response:
        champion = watcher.current  # once: every row of the request scores with it
        if champion is None:
            raise Unavailable("no champion is loaded: train and promote a model first")
        metrics.serving(champion.version)
        rows = scored_rows(settings, champion, ids)
        metrics.entities(rows)
        answer = {
            "model_name": champion.name,
            "model_version": champion.version,
            "model_run_id": champion.run_id,
            "predictions": rows,
        }
        # Rendered here: the rows are plain JSON values already, FastAPI's encoder would
        # only walk them again. Floats print as their shortest round-trip text (bit-exact).
        return Response(json.dumps(answer, separators=(",", ":")), media_type=JSON)

    app = FastAPI(
        title=f"{settings.project.name} online scoring",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(
        RequestGuard, metrics=metrics, max_body_bytes=settings.serving.max_body_bytes
    )
    id_type = _id_type(settings, strict=False)
    score_request = _request_model(settings)

    @app.get("/v1/score/{entity_id}", dependencies=[Depends(authorized)])
    async def score_one(entity_id: Annotated[id_type, Path()]) -> Response:  # type: ignore[valid-type]
        return respond([entity_id])

    @app.post("/v1/score", dependencies=[Depends(authorized)])
    async def score_many(request: Request) -> Response:
        # Parsed by pydantic straight from the bytes, whatever the content type says.
        try:
            body = score_request.model_validate_json(await request.body())
        except ValidationError as error:
            raise RequestValidationError(error.errors(include_url=False)) from None
        return respond(list(body.ids))  # type: ignore[attr-defined]

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        champion = watcher.current
        if champion is None:
            return JSONResponse({"status": "not ready", "reason": "no champion loaded"}, 503)
        try:
            features.read(champion.online, [PROBE_IDS[settings.project.entity.type]])
        except Exception as error:
            reason = f"the online store does not answer: {type(error).__name__}"
            return JSONResponse({"status": "not ready", "reason": reason}, 503)
        return JSONResponse({"status": "ready", "model_version": champion.version})

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def serve(settings: Settings) -> None:
    """Serve the project until interrupted, on the settings' host and port."""
    import uvicorn

    app = create_app(settings)
    where = settings.serving_token_file if not settings.serving.token else "MLOPS_SERVING__TOKEN"
    host = settings.serving.host
    print(f"online scoring on http://{host}:{settings.serving.port} (stop with Ctrl-C)")
    print(f"requests need 'Authorization: Bearer <token>', the token in {where}", flush=True)
    # No access log: a line per request costs more than scoring one entity.
    uvicorn.run(app, host=host, port=settings.serving.port, access_log=False, log_level="info")
