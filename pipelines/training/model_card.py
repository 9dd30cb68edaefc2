"""The model card of a registered version: what it learned from, how it scored, what the
gate and the infra check said, what became of it, and what it is (not) for.

One JSON document, rendered as markdown by one function; both are artifacts of the
version's MLflow run (`model_card/model_card.json`, `model_card/model_card.md`). Built only
from what exists: the run (params, metrics, lineage tags, figures, reference profile), the
version's tags (the gate's and the infra check's verdicts) and the project's configuration
(intended use, limitations). Written at registration with the decision pending, and again
when the candidate is promoted or rejected (MLflow accepts artifacts of a finished run).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pipelines.contracts import CHALLENGER, CHAMPION, AliasMove
from pipelines.errors import ModelCardError, brief, shown
from pipelines.io import tracking
from pipelines.monitoring import profiling
from pipelines.project import DriftPolicy
from pipelines.settings import Settings

CARD_FOLDER = "model_card"
CARD_JSON = f"{CARD_FOLDER}/model_card.json"
CARD_MARKDOWN = f"{CARD_FOLDER}/model_card.md"
# The run's folder of figures: registration logs them there, the card links them.
PLOTS = "plots"
# Run parameters that describe the training set, not the model's hyperparameters.
NOT_HYPERPARAMETERS = ("features", "window_days")
TOP_CATEGORIES = 3

Status = Literal["pending", "promoted", "rejected"]
STATUS_OF_ACTION: dict[str, Status] = {"promote": "promoted", "reject": "rejected"}


@dataclass(frozen=True)
class Decision:
    """What became of a version: pending until a promotion or a rejection records it."""

    status: Status
    reason: str = ""
    actor: str = ""
    source: str = ""
    when: str = ""


PENDING = Decision("pending")


def decided(moves: Sequence[AliasMove]) -> Decision:
    """The decision a promotion's or a rejection's audit entries record: the move that gave
    the version its alias (`champion`, or `challenger`)."""
    move = next(m for m in moves if m.alias in (CHAMPION, CHALLENGER) and m.to_version)
    return Decision(STATUS_OF_ACTION[move.action], move.reason, move.actor, move.source, move.when)


def _registered(settings: Settings, version: str) -> Any:
    """The registered version (MLflow's `ModelVersion`); a clear error naming it if none."""
    from mlflow.exceptions import MlflowException

    name = settings.project.model.name
    try:
        return tracking.mlflow_client(settings).get_model_version(name, version)
    except MlflowException as error:
        raise ModelCardError(f"{name} has no registered version {shown(version)}") from error


def _number(text: str | None) -> float | None:
    return None if text is None else float(text)


def _integer(text: str | None) -> int | None:
    return None if text is None else int(text)


def _prefixed(tags: dict[str, str], prefix: str) -> dict[str, float]:
    return {key.removeprefix(prefix): float(v) for key, v in tags.items() if key.startswith(prefix)}


def gate_from_tags(tags: dict[str, str]) -> dict[str, Any] | None:
    """The gate's verdict as the evaluation tagged it on the version (None before it ran)."""
    if "gate.passed" not in tags:
        return None
    champion = tags.get("gate.champion_version", "none")
    return {
        "passed": tags["gate.passed"] == "true",
        "champion_version": None if champion == "none" else champion,
        "reasons": tags.get("gate.reasons", "").split("; "),
        "thresholds": json.loads(tags.get("gate.thresholds", "[]")),
        "candidate": _prefixed(tags, "gate.candidate."),
        "champion": _prefixed(tags, "gate.champion."),
    }


def infra_from_tags(tags: dict[str, str]) -> dict[str, Any] | None:
    """The infra check's verdict as it tagged it on the version (None before it ran)."""
    if "infra_check.passed" not in tags:
        return None
    return {
        "passed": tags["infra_check.passed"] == "true",
        "detail": tags.get("infra_check.detail", ""),
    }


def feature_summary(profile: dict[str, Any], drift: DriftPolicy) -> list[dict[str, Any]]:
    """Per feature of a reference profile: its kind, drift policy and a few numbers."""
    rows = profile["rows"] or 1
    summary = []
    for name, item in profile["features"].items():
        entry = {"name": name, "kind": item["kind"], "drift_policy": drift.of(name)}
        if item["kind"] == "numeric":
            quantiles = item["quantiles"]
            entry |= {
                "mean": item["mean"],
                "std": item["std"],
                "p05": quantiles["0.05"],
                "median": quantiles["0.5"],
                "p95": quantiles["0.95"],
                "missing_share": item["missing"] / rows,
            }
        else:
            top = list(item["counts"].items())[:TOP_CATEGORIES]
            entry |= {
                "categories": len(item["counts"]),
                "top": {category: count / rows for category, count in top},
            }
        summary.append(entry)
    return summary


def _training_set(
    settings: Settings, tags: dict[str, str], params: dict[str, str]
) -> dict[str, Any]:
    """The training window, its rows and label share, as the run's lineage recorded them."""
    return {
        "start": tags.get("training_set.start"),
        "end": tags.get("training_set.end"),
        "days": _integer(params.get("window_days")),
        "rows": _integer(tags.get("training_set.rows")),
        "label": settings.project.label.column,
        "label_share": _number(tags.get("training_set.label_share")),
        "holdout_start": tags.get("holdout.start"),
        "holdout_rows": _integer(tags.get("holdout.rows")),
        "fingerprint": tags.get("training_set.fingerprint"),
    }


def _metrics(metrics: dict[str, float]) -> dict[str, Any]:
    """The run's metrics by split (`holdout_roc_auc` → holdout: roc_auc), and the trees kept."""
    grouped: dict[str, dict[str, float]] = {"holdout": {}, "validation": {}}
    for key, value in sorted(metrics.items()):
        split, _, name = key.partition("_")
        if split in grouped:
            grouped[split][name] = value
    best = metrics.get("best_iteration")
    return {**grouped, "best_iteration": None if best is None else int(best)}


def build(settings: Settings, version: str, decision: Decision) -> dict[str, Any]:
    """The card of a registered version, as JSON values."""
    import mlflow

    registered = _registered(settings, version)
    client = tracking.mlflow_client(settings)
    run = client.get_run(registered.run_id)
    run_id, tags, params = run.info.run_id, run.data.tags, run.data.params
    model = settings.project.model
    profile = mlflow.artifacts.load_dict(f"runs:/{run_id}/{profiling.PROFILE_ARTIFACT}")
    registered_at = datetime.fromtimestamp(registered.creation_timestamp / 1000, UTC)
    return {
        "model": {
            "name": model.name,
            "version": str(version),
            "run_id": run_id,
            "registered": registered_at.isoformat(timespec="seconds"),
            "project": settings.project.description,
            "feature_service": tags.get("feature_service"),
            "code_version": tags.get("code_version"),
            "reason": tags.get("reason"),
        },
        "intended_use": model.intended_use,
        "limitations": list(model.limitations),
        "training_set": _training_set(settings, tags, params),
        "reference_profile": {"artifact": profiling.PROFILE_ARTIFACT, "rows": profile["rows"]},
        "features": feature_summary(profile, settings.project.drift),
        "hyperparameters": {k: v for k, v in params.items() if k not in NOT_HYPERPARAMETERS},
        "metrics": _metrics(run.data.metrics),
        "plots": sorted(item.path for item in client.list_artifacts(run_id, PLOTS)),
        "gate": gate_from_tags(registered.tags),
        "infra_check": infra_from_tags(registered.tags),
        "decision": asdict(decision),
    }


def write(settings: Settings, version: str, decision: Decision) -> dict[str, Any]:
    """Build the version's card and store it, JSON and markdown, in its run; the card."""
    card = build(settings, version, decision)
    client = tracking.mlflow_client(settings)
    client.log_dict(card["model"]["run_id"], card, CARD_JSON)
    client.log_text(card["model"]["run_id"], render(card), CARD_MARKDOWN)
    return card


def stored(settings: Settings, version: str, artifact: str) -> str:
    """The text of a version's stored card: `CARD_MARKDOWN` or `CARD_JSON`."""
    import mlflow
    from mlflow.exceptions import MlflowException

    run_id = _registered(settings, version).run_id
    try:
        return str(mlflow.artifacts.load_text(f"runs:/{run_id}/{artifact}"))
    except (MlflowException, OSError) as error:
        name = settings.project.model.name
        raise ModelCardError(
            f"{name} v{version} has no model card in its run {run_id}: {brief(str(error))}"
        ) from error


# Rendering: JSON → markdown ------------------------------------------------------------------


def _shown(value: Any, digits: int = 3) -> str:
    """A number for people: thousands separated above 1,000, else `digits` significant."""
    if value is None:
        return "unknown"
    if isinstance(value, float) and abs(value) < 1000:
        return f"{value:.{digits}g}"
    return f"{value:,.0f}" if isinstance(value, float) else f"{value:,}"


def _share(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1%}"


def _decision(decision: dict[str, Any]) -> str:
    if decision["status"] == "pending":
        return "**Decision: pending**: not promoted or rejected yet."
    became = "champion" if decision["status"] == "promoted" else "challenger"
    by = f"by {decision['actor']}" + (f" ({decision['source']})" if decision["source"] else "")
    return (
        f"**Decision: {decision['status']}** ({became}) on {decision['when']} {by}: "
        f"{decision['reason']}"
    )


def _heading(card: dict[str, Any]) -> list[str]:
    model = card["model"]
    return [
        f"# Model card: {model['name']} v{model['version']}",
        "",
        _decision(card["decision"]),
        "",
        f"- Registered: {model['registered']}, from MLflow run `{model['run_id']}`",
        f"- Code version: `{model['code_version']}`",
        *([f"- Trained because: {model['reason']}"] if model["reason"] else []),
        *([f"- Project: {model['project']}"] if model["project"] else []),
    ]


def _use(card: dict[str, Any]) -> list[str]:
    limitations = [f"- {item}" for item in card["limitations"]]
    return [
        "## Intended use",
        "",
        card["intended_use"] or "_Not stated: set `model.intended_use` in the project._",
        "",
        "## Limitations",
        "",
        *(limitations or ["_None stated: set `model.limitations` in the project._"]),
    ]


def _training(card: dict[str, Any]) -> list[str]:
    data = card["training_set"]
    return [
        "## Training data",
        "",
        "| | |",
        "|---|---|",
        f"| window | {data['start']} to {data['end']} ({_shown(data['days'])} labelled days) |",
        f"| rows | {_shown(data['rows'])} (holdout: {_shown(data['holdout_rows'])} rows "
        f"from {data['holdout_start']}) |",
        f"| label | `{data['label']}`, positive share {_share(data['label_share'])} |",
        f"| feature service | `{card['model']['feature_service']}` |",
        f"| fingerprint | `{data['fingerprint']}` |",
    ]


def _feature_numbers(feature: dict[str, Any]) -> str:
    if feature["kind"] == "numeric":
        numbers = ", ".join(
            f"{key} {_shown(feature[key])}" for key in ("mean", "std", "p05", "median", "p95")
        )
        return f"{numbers}; missing {_share(feature['missing_share'])}"
    top = ", ".join(f"{name} {_share(share)}" for name, share in feature["top"].items())
    return f"{feature['categories']} categories; {top}"


def _features(card: dict[str, Any]) -> list[str]:
    profile = card["reference_profile"]
    return [
        "## Features",
        "",
        f"From the reference profile (`../{profile['artifact']}`, {_shown(profile['rows'])} "
        "training rows) that drift monitoring compares each night with.",
        "",
        "| feature | kind | drift policy | reference |",
        "|---|---|---|---|",
        *(
            f"| `{f['name']}` | {f['kind']} | {f['drift_policy']} | {_feature_numbers(f)} |"
            for f in card["features"]
        ),
    ]


def _performance(card: dict[str, Any]) -> list[str]:
    metrics = card["metrics"]
    names = sorted(set(metrics["holdout"]) | set(metrics["validation"]))
    return [
        "## Metrics",
        "",
        "| metric | holdout | validation |",
        "|---|---|---|",
        *(
            f"| {name} | {_shown(metrics['holdout'].get(name), 4)} "
            f"| {_shown(metrics['validation'].get(name), 4)} |"
            for name in names
        ),
        "",
        f"Best iteration (early stopping on validation): {_shown(metrics['best_iteration'])}.",
    ]


def _rule(rule: dict[str, Any]) -> str:
    """A gate rule in words."""
    word = "at least" if rule["greater_is_better"] else "at most"
    parts = [] if rule.get("threshold") is None else [f"{word} {rule['threshold']}"]
    for field, unit in (("min_absolute_change", ""), ("min_relative_change", " of its value")):
        change = rule.get(field)
        if change is not None:
            parts.append(f"beats the champion by {change}{unit}" if change else "no worse")
    return "; ".join(parts)


def _gate(gate: dict[str, Any] | None) -> list[str]:
    if gate is None:
        return ["## Evaluation gate", "", "Not evaluated yet."]
    champion = gate["champion_version"]
    against = (
        f"against the champion v{champion}, both scored on the same holdout"
        if champion
        else "with no champion to compare with: value thresholds only"
    )
    rules = {rule["metric"]: _rule(rule) for rule in gate["thresholds"]}
    return [
        "## Evaluation gate",
        "",
        f"**{'Passed' if gate['passed'] else 'Failed'}**, {against}.",
        "",
        "| metric | candidate | champion | rule |",
        "|---|---|---|---|",
        *(
            f"| {name} | {_shown(value, 4)} | "
            f"{_shown(gate['champion'].get(name), 4) if champion else '-'} | "
            f"{rules.get(name, '-')} |"
            for name, value in sorted(gate["candidate"].items())
        ),
        "",
        *(f"- {reason}" for reason in gate["reasons"]),
    ]


def _infra(infra: dict[str, Any] | None) -> list[str]:
    if infra is None:
        return ["## Infra check", "", "Not run yet."]
    verdict = "Passed" if infra["passed"] else "Failed"
    return ["## Infra check", "", f"**{verdict}**: {infra['detail']}"]


def _plots(card: dict[str, Any]) -> list[str]:
    links = [
        f"![{posixpath.splitext(posixpath.basename(path))[0]}]"
        f"({posixpath.relpath(path, CARD_FOLDER)})"
        for path in card["plots"]
    ]
    return ["## Plots", "", *(links or ["None logged."])]


def _hyperparameters(card: dict[str, Any]) -> list[str]:
    return [
        "## Hyperparameters",
        "",
        "| name | value |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in sorted(card["hyperparameters"].items())),
    ]


def render(card: dict[str, Any]) -> str:
    """The card as markdown: the one rendering of its JSON."""
    sections = [
        _heading(card),
        _use(card),
        _training(card),
        _features(card),
        _performance(card),
        _gate(card["gate"]),
        _infra(card["infra_check"]),
        _plots(card),
        _hyperparameters(card),
    ]
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"
