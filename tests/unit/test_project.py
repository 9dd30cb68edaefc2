"""A project is one folder of configuration, checked when the settings load it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.errors import ConfigurationError
from pipelines.project import PROJECTS_ROOT, load_project
from pipelines.settings import Settings


def _demo() -> dict:
    return yaml.safe_load((PROJECTS_ROOT / "demo" / "project.yaml").read_text())


def _write(tmp_path: Path, document: dict) -> Path:
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_the_demo_is_a_project_the_settings_select_by_default():
    settings = Settings()

    assert settings.project == load_project("demo")
    assert settings.project.model.name == "churn"
    assert settings.project.features[0] == "plan"


def test_a_project_is_selected_by_name_or_by_path(tmp_path, monkeypatch):
    # Given a copy of the demo project outside the repository, under another name
    document = {**_demo(), "name": "copy"}
    path = _write(tmp_path, document)

    # When the environment selects it by its folder, then the settings carry it
    monkeypatch.setenv("MLOPS_PROJECT", str(tmp_path))
    assert Settings().project.name == "copy"
    assert Settings().feast_project == "copy"
    # And by its file too
    monkeypatch.setenv("MLOPS_PROJECT", str(path))
    assert Settings().project.name == "copy"


def test_an_unknown_project_names_the_known_ones():
    with pytest.raises(ConfigurationError, match=r"no project at .*nope.*demo"):
        load_project("nope")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["source"].update(timezone="Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
        (lambda d: d["model"].update(features=["plan", "shoe_size"]), "shoe_size"),
        (
            lambda d: d["source"]["columns"]["plan"].update(min=0),
            "source.columns.plan: min and max apply to numbers, not to string",
        ),
        (
            lambda d: d["model"]["hyperparameters"].update(max_depth=99),
            "model.hyperparameters.max_depth",
        ),
        (
            lambda d: d["model"]["gate"].append({"metric": "accuracy", "greater_is_better": True}),
            "accuracy",
        ),
        (lambda d: d["entity"].update(type="uuid"), "entity.type"),
        (
            lambda d: d["entity"].update(type="string"),
            "entity: min applies to int64 ids, not to string",
        ),
        (lambda d: d["source"]["columns"].update(customer_id={"type": "int64"}), "repeats a key"),
        (lambda d: d.update(colour="blue"), "colour: Extra inputs are not permitted"),
    ],
)
def test_a_wrong_project_is_refused_naming_the_field(tmp_path, change, message):
    # Given the demo project with one mistake
    document = _demo()
    change(document)
    path = _write(tmp_path, document)

    # When it is loaded, then one error names the file and the field
    with pytest.raises(ConfigurationError, match=message) as raised:
        load_project(path)
    assert str(path) in str(raised.value)


def test_a_project_file_that_is_not_yaml_is_refused(tmp_path):
    path = tmp_path / "project.yaml"
    path.write_text("name: [unclosed")

    with pytest.raises(ConfigurationError, match="is not valid YAML"):
        load_project(path)
