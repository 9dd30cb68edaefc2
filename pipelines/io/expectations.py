"""The Great Expectations file context of the project, with the selected project's suites.

The committed context (`great_expectations/great_expectations.yml`) holds the data assets;
each suite, its validation definition and its checkpoint are rendered from the project
under the state root before the context opens, so a project never edits GE files by hand.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

from pipelines.ingest import contract
from pipelines.io import lake
from pipelines.settings import Settings

# Suite kind -> the committed data asset and batch definition it validates.
ASSETS = {"raw": ("raw_partition", "partition"), "training": ("training_set", "snapshot")}


def gx_context(settings: Settings) -> Any:
    """The committed GE file context, with the project's suites, results and Data Docs
    under the state root."""
    import great_expectations as gx

    render_suites(settings)
    return gx.get_context(
        mode="file",
        context_root_dir=str(settings.gx_context_root),
        runtime_environment={"state_root": str(settings.state_root)},
    )


def render_suites(settings: Settings) -> list[Path]:
    """Write each suite of the project, its validation definition and checkpoint (files
    that already hold the same bytes are left alone)."""
    project = settings.project
    ge_version = version("great_expectations")
    suites = {
        "raw": contract.suite_document(
            project.raw_suite,
            f"One landed {project.source.dataset} partition of project {project.name!r}. "
            "Parameters: partition_start, partition_end, min_rows, max_rows.",
            contract.raw_partition_expectations(project),
            ge_version,
        ),
        "training": contract.suite_document(
            project.training_suite,
            f"Point-in-time training set of model {project.model.name!r}. Parameters: "
            "min_rows, min_label_share, max_label_share, min_feature_coverage.",
            contract.training_set_expectations(project),
            ge_version,
        ),
    }
    datasource = _datasource(settings)
    written = []
    for kind, suite in suites.items():
        definition = _validation_definition(datasource, ASSETS[kind], suite)
        documents = {
            "expectations": suite,
            "validation_definitions": definition,
            "checkpoints": _checkpoint(definition),
        }
        for store, document in documents.items():
            target = settings.gx_state_root / "context" / store / f"{suite['name']}.json"
            written.append(_write_if_changed(target, document))
    return written


def _datasource(settings: Settings) -> dict[str, Any]:
    """The committed context's one fluent datasource (the lake), as configured."""
    config = yaml.safe_load((settings.gx_context_root / "great_expectations.yml").read_text())
    name, datasource = next(iter(config["fluent_datasources"].items()))
    return {"name": name, **datasource}


def _validation_definition(
    datasource: dict[str, Any], asset_and_batch: tuple[str, str], suite: dict[str, Any]
) -> dict[str, Any]:
    asset_name, batch_name = asset_and_batch
    asset = datasource["assets"][asset_name]
    batch = asset["batch_definitions"][batch_name]
    return {
        "data": {
            "asset": {"id": asset["id"], "name": asset_name},
            "batch_definition": {"id": batch["id"], "name": batch_name},
            "datasource": {"id": datasource["id"], "name": datasource["name"]},
        },
        "id": contract.suite_id(f"{suite['name']}/validation_definition"),
        "name": suite["name"],
        "suite": {"id": suite["id"], "name": suite["name"]},
    }


def _checkpoint(definition: dict[str, Any]) -> dict[str, Any]:
    return {
        "actions": [{"name": "update_data_docs", "site_names": [], "type": "update_data_docs"}],
        "id": contract.suite_id(f"{definition['name']}/checkpoint"),
        "name": definition["name"],
        "result_format": {"partial_unexpected_count": 5, "result_format": "SUMMARY"},
        "validation_definitions": [{"id": definition["id"], "name": definition["name"]}],
    }


def _write_if_changed(target: Path, document: dict[str, Any]) -> Path:
    """Write the document atomically unless the file already holds these bytes (tasks
    render at once, and Data Docs keep a suite's history by its bytes)."""
    data = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
    if not target.is_file() or target.read_bytes() != data:
        lake.write_bytes_atomic(data, target)
    return target
