"""Benchmark: drift detection on one night's rows, the project's profile vs scipy vs Evidently.

Scenario: ``--rows`` current rows (default 1,000,000: one activity partition of that many
customers) checked on every model feature (the 9 activity features: 2 categorical, 7
numeric) against a reference of the same number of rows. The data comes from
``synthetic.activity`` with ``customers = rows``:

* reference: the ``REFERENCE_DAYS`` (7) days before the checked day ``D``, one row per
  customer, customer ``i`` taken from day ``D - 7 + i % 7`` (so ``rows`` rows in all);
* today: day ``D`` with covariate drift injected from ``D`` on (``drift_start = D``) on
  ``DRIFT_FEATURES`` (``usage_minutes``, ``sessions``) with ``drift_magnitude`` 0.6 (the
  rates are multiplied by 1.6). ``days_since_last_login`` depends on ``sessions`` in the
  generator (0 when a customer had a session), so it moves a little too, indirectly.

Both frames are written to parquet (``synthetic.ACTIVITY_SCHEMA``, zstd) and the reference
profile is built once from the reference frame with ``profiling.reference_profile`` (bins =
``training.profile_bins``, quantile function sized by ``drift.profile_*``; the prediction
histogram uses the hidden churn probability as a stand-in for holdout scores) and stored
as JSON, as training does. All of it is cached under ``<state_root>/bench/drift/r<rows>/``
with a manifest, so reruns skip generation.

Measured paths, each in its own fresh subprocess (so peak RSS, ``ru_maxrss``, is per path;
heavy libraries are imported before the clock starts; ``read_s`` is reading the parquet
inputs, reported separately and never in ``wall_s``; ``rss_before_mb`` is the peak just
before the clock, i.e. interpreter, libraries and the loaded data):

* ``ours``: ``drift.feature_drift(profile, today, settings)``, with the profile loaded from
  its JSON and today's frame read the way ``monitoring.nightly.check`` reads it
  (``pq.read_table(columns=profile features).to_pandas()``). Flags: ``level == "alert"``
  (numeric: PSI or normed Wasserstein distance at its alert level; categorical: JS).
* ``scipy`` (what a user without a profile would write): on the raw reference and today
  rows, ``scipy.stats.ks_2samp`` for every numeric feature and ``chi2_contingency`` on the
  2 x k table of category counts for every categorical one. Flags: ``p < 0.05`` (at 1M rows
  nearly everything, however small the shift: that is the point of reporting it).
* ``evidently`` (the baseline): ``Report([DataDriftPreset()], include_tests=True).run(
  current_data=today, reference_data=reference)`` (Evidently 0.7's order: current first),
  on pandas frames of the same parquet files. Evidently is not a project dependency: it
  runs in its own virtualenv, ``<state_root>/bench/evidently-venv`` (created with
  ``pip install 'evidently>=0.7,<0.8' 'pandas<3' pyarrow`` when missing; ``pandas<3``
  because evidently 0.7 imports a helper pandas 3 removed), with ``DO_NOT_TRACK=1``.
  Flags: the per-column ``Value Drift`` test failing, i.e. Evidently's own verdict with its
  default method and threshold per column (``include_tests`` only turns that verdict
  into a test entry; the drift computation is the same). If the venv cannot be built or
  the run fails, the error is recorded in the JSON, never raised.

Targets (printed as ``target <name>: <value> vs <bound>: met|MISSED`` lines, and in the
JSON under ``targets``): ``ours_s`` <= 2 s, ``speedup_vs_evidently`` (evidently_s /
ours_s) >= 10, and ``same_features_flagged`` (ours' alert set equal to Evidently's drifted
set); without Evidently the last two are missed. The JSON also says whether ours'
set equals the injected one (``ours_equals_injected``), and lists per feature ours' scores
and level next to Evidently's method, value and verdict (``per_feature``).

Run it from the repository root::

    .venv/bin/python -m bench.drift [--rows 1000000] [--state-root .state]
                                    [--skip-evidently] [--repeats 1]
                                    [--drift-features usage_minutes,sessions]

``--drift-features`` picks the drifted numeric features (data cached apart from the default
set's, under ``r<rows>-<a>+<b>/``). ``--repeats N`` runs each path N times (fresh
subprocess each time, interleaved); ``*_s`` is then the median and the peak RSS the
maximum. It prints human-readable lines, then, as its last line, one JSON object with
every figure, ratio and flagged set.

This module imports only the standard library at import time: the Evidently child runs
it (``python -m bench.drift --role evidently``) in Evidently's venv, without the project.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench._common import (
    PROJECT_ROOT,
    ChildFailed,
    Target,
    add_role_arguments,
    cache_valid,
    child_env,
    max_of,
    measure,
    median_of,
    print_targets,
    ratio,
    run_child,
    say,
    targets_json,
    wall_runs,
    warm_page_cache,
    write_json,
)

PATHS = ("ours", "scipy", "evidently")
MANIFEST_VERSION = 2
REFERENCE_DAYS = 7
CHECK_DAY_OFFSET = 28  # the checked day D is start_date + 28 days
DRIFT_FEATURES = ("usage_minutes", "sessions")
DRIFT_MAGNITUDE = 0.6
P_VALUE_ALPHA = 0.05
OURS_MAX_S = 2.0
SPEEDUP_VS_EVIDENTLY_MIN = 10.0
EVIDENTLY_REQUIREMENTS = ("evidently>=0.7,<0.8", "pandas<3", "pyarrow")
EVIDENTLY_TIMEOUT_S = 1_800.0
EVIDENTLY_ENV = {"DO_NOT_TRACK": "1"}
# The drift settings the stored profile depends on (its cache key); the levels are not.
PROFILE_SETTINGS = {"profile_quantiles", "profile_tail_quantiles", "profile_steps"}
DATA_FILES = ("reference.parquet", "today.parquet", "profile.json")


# --------------------------------------------------------------------------- children


def _read_manifest(data_dir: Path) -> dict[str, Any]:
    """The manifest the generate child wrote beside the data."""
    loaded: dict[str, Any] = json.loads((data_dir / "manifest.json").read_text())
    return loaded


def _expected_manifest(rows: int, drift_features: tuple[str, ...]) -> dict[str, Any]:
    """What the cache must hold for `rows`: the generator's settings and the bench's layout."""
    from pipelines.demo import synthetic
    from pipelines.settings import SyntheticSettings, load_settings

    settings = load_settings()
    defaults = SyntheticSettings()
    today = defaults.start_date + timedelta(days=CHECK_DAY_OFFSET)
    cfg = defaults.model_copy(
        update={
            "customers": rows,
            "drift_start": today,
            "drift_features": drift_features,
            "drift_magnitude": DRIFT_MAGNITUDE,
        }
    )
    return {
        "version": MANIFEST_VERSION,
        "rows": rows,
        "synthetic": cfg.model_dump(mode="json"),
        "today": today.isoformat(),
        "reference_days": [
            (today - timedelta(days=REFERENCE_DAYS - k)).isoformat() for k in range(REFERENCE_DAYS)
        ],
        "categorical": list(synthetic.CATEGORICAL_FEATURES),
        "numeric": list(synthetic.NUMERIC_FEATURES),
        "features": list(synthetic.FEATURES),
        "injected": list(drift_features),
        "bins": settings.training.profile_bins,
        "profile": settings.drift.model_dump(include=PROFILE_SETTINGS),
        "schema": str(synthetic.ACTIVITY_SCHEMA),
    }


def _write_frames(manifest: dict[str, Any], files: list[Path]) -> None:
    """Write the reference (a day in 7 per customer) and today's drifted rows as parquet."""
    import pandas as pd
    import pyarrow as pa

    from pipelines.demo import synthetic
    from pipelines.io import lake
    from pipelines.settings import SyntheticSettings

    cfg = SyntheticSettings.model_validate(manifest["synthetic"])
    parts = []
    for k, day_text in enumerate(manifest["reference_days"]):
        frame = synthetic.activity(cfg, date.fromisoformat(day_text))
        parts.append(frame.iloc[k::REFERENCE_DAYS])
    reference = pd.concat(parts, ignore_index=True)
    del parts
    current = synthetic.activity(cfg, date.fromisoformat(manifest["today"]))
    for frame, target in zip((reference, current), files[:2], strict=True):
        table = pa.Table.from_pandas(frame, schema=synthetic.ACTIVITY_SCHEMA, preserve_index=False)
        lake.write_table_atomic(table, target)


def _write_profile(manifest: dict[str, Any], files: list[Path]) -> None:
    """Build the reference profile as training would, from the reference read back."""
    import numpy as np
    import pandas as pd

    from pipelines.demo import synthetic
    from pipelines.io import lake
    from pipelines.monitoring import profiling
    from pipelines.settings import DriftSettings, SyntheticSettings

    cfg = SyntheticSettings.model_validate(manifest["synthetic"])
    today = date.fromisoformat(manifest["today"])
    features = pd.read_parquet(files[0], columns=manifest["features"])
    scores = synthetic.churn_probability(cfg, features, today - timedelta(days=1))
    profile = profiling.reference_profile(
        features,
        manifest["categorical"],
        np.asarray(scores),
        {},  # no model here: the holdout metrics are not used by the feature drift check
        manifest["bins"],
        DriftSettings(**manifest["profile"]),
    )
    lake.write_json_atomic(profile, files[2])


def _child_generate(
    data_dir: Path, rows: int, drift_features: tuple[str, ...], result_file: Path
) -> None:
    """Write reference.parquet, today.parquet and profile.json (unless cached)."""
    from pipelines.io import lake

    manifest = _expected_manifest(rows, drift_features)
    files = [data_dir / name for name in DATA_FILES]
    manifest_path = data_dir / "manifest.json"
    cached = cache_valid(manifest_path, manifest, files)
    started = time.perf_counter()
    if not cached:
        manifest_path.unlink(missing_ok=True)
        _write_frames(manifest, files)
        _write_profile(manifest, files)
        lake.write_json_atomic(manifest, manifest_path)
    generate_s = time.perf_counter() - started
    # Every path reads the same bytes: make them equally warm in the page cache.
    data_bytes = warm_page_cache(files)
    write_json(
        result_file,
        {
            "cached": cached,
            "generate_s": round(generate_s, 2),
            "data_mb": round(data_bytes / 2**20, 1),
            "profile_kb": round(files[2].stat().st_size / 1024, 1),
        },
    )


def _child_ours(data_dir: Path, result_file: Path) -> None:
    """Time `drift.feature_drift` on today's rows against the stored profile."""
    import pyarrow.parquet as pq
    import scipy.spatial.distance  # noqa: F401  (imported lazily by drift.categorical_drift)

    from pipelines.monitoring import drift
    from pipelines.settings import load_settings

    settings = load_settings()
    started = time.perf_counter()
    profile = json.loads((data_dir / "profile.json").read_text())
    columns = list(profile["features"])
    frame = pq.read_table(data_dir / "today.parquet", columns=columns).to_pandas()
    read_s = time.perf_counter() - started
    with measure() as measured:
        results = drift.feature_drift(profile, frame, settings)
    write_json(
        result_file,
        measured
        | {
            "read_s": read_s,
            "rows": len(frame),
            "features": {
                r.feature: {
                    "kind": r.kind,
                    "score": round(r.score, 6),
                    "distance": round(r.distance, 6),
                    "wasserstein": None if r.wasserstein is None else round(r.wasserstein, 6),
                    "level": r.level,
                }
                for r in results
            },
            "flagged": sorted(r.feature for r in results if r.level == "alert"),
        },
    )


def _two_sample_tests(ref: Any, cur: Any, manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """KS per numeric feature, chi-square on the 2 x k category counts per categorical one."""
    import numpy as np
    from scipy import stats

    features: dict[str, dict[str, Any]] = {}
    for column in manifest["features"]:
        if column in manifest["categorical"]:
            ref_counts = ref[column].fillna("<missing>").value_counts()
            cur_counts = cur[column].fillna("<missing>").value_counts()
            categories = ref_counts.index.union(cur_counts.index)
            table = np.vstack(
                [
                    ref_counts.reindex(categories, fill_value=0).to_numpy(),
                    cur_counts.reindex(categories, fill_value=0).to_numpy(),
                ]
            )
            chi2 = stats.chi2_contingency(table)
            statistic, pvalue, test = float(chi2.statistic), float(chi2.pvalue), "chi2"
        else:
            left = ref[column].to_numpy(dtype=float)
            right = cur[column].to_numpy(dtype=float)
            ks = stats.ks_2samp(left[~np.isnan(left)], right[~np.isnan(right)])
            statistic, pvalue, test = float(ks.statistic), float(ks.pvalue), "ks"
        features[column] = {"test": test, "statistic": statistic, "pvalue": pvalue}
    return features


def _child_scipy(data_dir: Path, result_file: Path) -> None:
    """Time two-sample tests on the raw rows: KS per numeric feature, chi-square per categorical."""
    import pyarrow.parquet as pq
    import scipy.stats  # noqa: F401  (imported before the clock, as every path's libraries)

    manifest = _read_manifest(data_dir)
    started = time.perf_counter()
    reference = pq.read_table(data_dir / "reference.parquet", columns=manifest["features"])
    current = pq.read_table(data_dir / "today.parquet", columns=manifest["features"])
    ref, cur = reference.to_pandas(), current.to_pandas()
    read_s = time.perf_counter() - started
    with measure() as measured:
        features = _two_sample_tests(ref, cur, manifest)
    write_json(
        result_file,
        measured
        | {
            "read_s": read_s,
            "rows": len(cur),
            "reference_rows": len(ref),
            "features": features,
            "flagged": sorted(c for c, f in features.items() if f["pvalue"] < P_VALUE_ALPHA),
        },
    )


def _evidently_verdicts(document: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], Any]:
    """Per column Evidently's method, threshold, value and verdict; its drifted-columns count."""
    features: dict[str, dict[str, Any]] = {}
    drifted_count: Any = None
    for metric in document["metrics"]:
        config = metric["config"]
        if config["type"].endswith(":ValueDrift"):
            features[config["column"]] = {
                "method": config.get("method"),
                "threshold": config.get("threshold"),
                "value": metric["value"],
                "drifted": None,
            }
        elif config["type"].endswith(":DriftedColumnsCount"):
            drifted_count = metric["value"]
    for test in document["tests"]:
        column = test.get("metric_config", {}).get("params", {}).get("column")
        if test.get("id") == "drift" and column in features:
            features[column]["drifted"] = test["status"] == "FAIL"
    return features, drifted_count


def _child_evidently(data_dir: Path, result_file: Path) -> None:
    """Time Evidently's DataDriftPreset (runs in Evidently's own venv, without the project)."""
    import evidently
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset

    manifest = _read_manifest(data_dir)
    started = time.perf_counter()
    ref = pd.read_parquet(data_dir / "reference.parquet", columns=manifest["features"])
    cur = pd.read_parquet(data_dir / "today.parquet", columns=manifest["features"])
    read_s = time.perf_counter() - started
    with measure() as measured:
        snapshot = Report([DataDriftPreset()], include_tests=True).run(
            current_data=cur, reference_data=ref
        )
    started = time.perf_counter()
    document = snapshot.dict()
    extract_s = time.perf_counter() - started
    features, drifted_count = _evidently_verdicts(document)
    write_json(
        result_file,
        measured
        | {
            "read_s": read_s,
            "extract_s": extract_s,
            "rows": len(cur),
            "version": evidently.__version__,
            "drifted_columns": drifted_count,
            "features": features,
            "flagged": sorted(c for c, f in features.items() if f["drifted"]),
        },
    )


# --------------------------------------------------------------------------- parent


def _run_role(
    role: str,
    data_dir: Path,
    rows: int,
    workdir: Path,
    drift_features: tuple[str, ...] = DRIFT_FEATURES,
    evidently_python: str | None = None,
) -> dict[str, Any]:
    """Run one role of this bench in a fresh interpreter (the shared harness).

    With `evidently_python`, in Evidently's venv, with its environment and timeout.
    """
    args = ["--data-dir", str(data_dir), "--rows", str(rows)]
    args += ["--drift-features", ",".join(drift_features)]
    if evidently_python is None:
        return run_child("bench.drift", role, workdir, child_env(), args)
    return run_child(
        "bench.drift",
        role,
        workdir,
        child_env(EVIDENTLY_ENV),
        args,
        python=evidently_python,
        timeout_s=EVIDENTLY_TIMEOUT_S,
    )


def _evidently_python(state_root: Path) -> tuple[str | None, str | None]:
    """Evidently's venv interpreter (built on first use), or None and why it is missing."""
    venv = state_root / "bench" / "evidently-venv"
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import evidently, pandas, pyarrow"]
    env = child_env(EVIDENTLY_ENV)
    if python.exists() and subprocess.run(probe, env=env, capture_output=True).returncode == 0:
        return str(python), None
    say(f"evidently: building its venv at {venv} (one-off)")
    log = state_root / "bench" / "evidently-venv-install.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        steps = [
            [sys.executable, "-m", "venv", "--clear", str(venv)],
            [str(python), "-m", "pip", "install", "--quiet", *EVIDENTLY_REQUIREMENTS],
        ]
        for step in steps:
            if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                return None, f"could not install {' '.join(EVIDENTLY_REQUIREMENTS)} (see {log})"
    if subprocess.run(probe, env=env, capture_output=True).returncode != 0:
        return None, f"evidently installed but does not import (see {log})"
    return str(python), None


def _figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median wall and read times and the highest peak RSS over the runs of one path."""
    figures: dict[str, Any] = {
        "wall_s": round(median_of(runs, "wall_s"), 3),
        "read_s": round(median_of(runs, "read_s"), 3),
        "peak_rss_mb": max_of(runs, "peak_rss_mb"),
        "rss_before_mb": max_of(runs, "rss_before_mb"),
        "flagged": runs[-1]["flagged"],
        "features": runs[-1]["features"],
    }
    if len(runs) > 1:
        figures["wall_s_runs"] = wall_runs(runs)
    for key in ("version", "drifted_columns", "extract_s", "reference_rows"):
        if key in runs[-1]:
            figures[key] = runs[-1][key]
    return figures


def _side_by_side(figures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per feature, ours' scores and level next to Evidently's method, value and verdict."""
    theirs = figures.get("evidently", {}).get("features", {})
    return {
        feature: {
            "ours_psi_or_js": ours["score"],
            "ours_wasserstein": ours["wasserstein"],
            "ours_level": ours["level"],
            "evidently_method": theirs.get(feature, {}).get("method"),
            "evidently_value": theirs.get(feature, {}).get("value"),
            "evidently_drifted": theirs.get(feature, {}).get("drifted"),
        }
        for feature, ours in figures["ours"]["features"].items()
    }


def _describe(path: str, attempt: int, repeats: int, result: dict[str, Any]) -> str:
    """One line for one run of one path."""
    return (
        f"{path:>9} (run {attempt}/{repeats}): {result['wall_s']:.3f} s "
        f"(read {result['read_s']:.2f} s, outside the clock), "
        f"peak RSS {result['peak_rss_mb']} MiB (before the clock {result['rss_before_mb']} MiB), "
        f"flags {result['flagged']}"
    )


def _evidently(state_root: Path, skip_evidently: bool) -> tuple[str | None, str | None]:
    """Evidently's interpreter, or None and why (skipped, or its venv is unavailable)."""
    if skip_evidently:
        return None, "skipped (--skip-evidently)"
    python, error = _evidently_python(state_root)
    if python is None:
        say(f"evidently: unavailable: {error}")
    return python, error


def _generate(
    data_dir: Path, rows: int, workdir: Path, drift_features: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Generate (or reuse) the data and the profile; the generate child's figures, the manifest."""
    say(f"data: {rows} reference + {rows} current rows under {data_dir}")
    generated = _run_role("generate", data_dir, rows, workdir, drift_features)
    how = "reused cache" if generated["cached"] else f"generated in {generated['generate_s']}s"
    manifest = _read_manifest(data_dir)
    say(
        f"data: {generated['data_mb']} MiB of parquet, profile {generated['profile_kb']} KiB "
        f"({how}); injected drift on {manifest['injected']} from {manifest['today']} "
        f"(x{1 + DRIFT_MAGNITUDE})"
    )
    return generated, manifest


def _measure_paths(
    paths: list[str],
    data_dir: Path,
    rows: int,
    workdir: Path,
    repeats: int,
    evidently_python: str | None,
) -> tuple[dict[str, list[dict[str, Any]]], str | None]:
    """Every run of every path, interleaved; a failed Evidently run drops it, with the error."""
    runs: dict[str, list[dict[str, Any]]] = {path: [] for path in paths}
    evidently_error: str | None = None
    for attempt in range(1, repeats + 1):
        for path in list(runs):  # interleaved, so drift in the machine hits all alike
            python = evidently_python if path == "evidently" else None
            try:
                result = _run_role(path, data_dir, rows, workdir, evidently_python=python)
            except ChildFailed as error:
                if path != "evidently":
                    raise
                evidently_error = str(error)[-2_000:]
                say(f"evidently: failed: {evidently_error}")
                runs.pop(path)
                continue
            runs[path].append(result)
            say(_describe(path, attempt, repeats, result))
    return runs, evidently_error


def _flagged(figures: dict[str, Any], manifest: dict[str, Any]) -> dict[str, list[str] | None]:
    """The injected set and every path's flagged set (None for a path that did not run)."""
    flagged: dict[str, list[str] | None] = {"injected": sorted(manifest["injected"])}
    flagged.update({path: figures[path]["flagged"] if path in figures else None for path in PATHS})
    return flagged


def _targets(
    seconds: dict[str, float | None], speedup: float | None, flagged: dict[str, Any]
) -> list[Target]:
    """ours <= 2 s, >= 10x faster than Evidently, the same features flagged as Evidently."""
    ours_s = seconds["ours"]
    same = flagged["evidently"] is not None and flagged["ours"] == flagged["evidently"]
    theirs = "(not run)" if flagged["evidently"] is None else flagged["evidently"]
    return [
        Target("ours_s", ours_s, f"<= {OURS_MAX_S} s", ours_s is not None and ours_s <= OURS_MAX_S),
        Target(
            "speedup_vs_evidently",
            speedup,
            f">= {SPEEDUP_VS_EVIDENTLY_MIN}",
            speedup is not None and speedup >= SPEEDUP_VS_EVIDENTLY_MIN,
        ),
        Target("same_features_flagged", flagged["ours"], f"== evidently's {theirs}", same),
    ]


def _targets_json(targets: list[Target]) -> dict[str, Any]:
    """The JSON ``targets``: the bounds and verdicts by name, plus the shared checks."""
    ours_s, speedup, same = targets
    return targets_json(
        targets,
        {
            "ours_max_s": OURS_MAX_S,
            "ours_s_met": ours_s.met,
            "speedup_vs_evidently_min": SPEEDUP_VS_EVIDENTLY_MIN,
            "speedup_vs_evidently_met": speedup.met,
            "same_features_flagged_met": same.met,
        },
    )


def _summary(
    rows: int,
    manifest: dict[str, Any],
    figures: dict[str, Any],
    evidently_error: str | None,
) -> dict[str, Any]:
    """Every figure, ratio and flagged set of the bench (without repeats and wall time)."""
    seconds = {path: figures[path]["wall_s"] if path in figures else None for path in PATHS}
    flagged = _flagged(figures, manifest)
    injected = flagged["injected"]
    speedup_vs_evidently = ratio(seconds["evidently"], seconds["ours"])
    targets = _targets(seconds, speedup_vs_evidently, flagged)
    evidently = figures.get("evidently")
    return {
        "rows": rows,
        "reference_rows": rows,
        "features": len(manifest["features"]),
        "ours_s": seconds["ours"],
        "scipy_s": seconds["scipy"],
        "evidently_s": seconds["evidently"],
        "speedup_vs_evidently": speedup_vs_evidently,
        "speedup_vs_scipy": ratio(seconds["scipy"], seconds["ours"]),
        "ours_peak_rss_mb": figures["ours"]["peak_rss_mb"],
        "scipy_peak_rss_mb": figures["scipy"]["peak_rss_mb"],
        "evidently_peak_rss_mb": evidently["peak_rss_mb"] if evidently else None,
        "ours_read_today_s": figures["ours"]["read_s"],
        "flagged": flagged,
        "same_features_flagged": None
        if flagged["evidently"] is None
        else flagged["ours"] == flagged["evidently"],
        "ours_equals_injected": flagged["ours"] == injected,
        "evidently_equals_injected": None
        if flagged["evidently"] is None
        else flagged["evidently"] == injected,
        "scipy_equals_injected": flagged["scipy"] == injected,
        "evidently_error": evidently_error,
        "per_feature": _side_by_side(figures),
        "targets": _targets_json(targets),
        "paths": figures,
        "drift": {
            "features": manifest["injected"],
            "magnitude": DRIFT_MAGNITUDE,
            "today": manifest["today"],
            "reference_days": manifest["reference_days"],
        },
    }


def _print_results(summary: dict[str, Any]) -> None:
    """The human-readable lines after the runs: flagged sets and times."""
    flagged = summary["flagged"]
    say(f"injected: {flagged['injected']}")
    for path in PATHS:
        say(f"flagged by {path:>9}: {flagged[path]}")
    say(f"ours flags the injected set: {summary['ours_equals_injected']}")
    say(
        f"ours {summary['ours_s']} s vs scipy {summary['scipy_s']} s "
        f"(x{summary['speedup_vs_scipy']}) vs evidently {summary['evidently_s']} s "
        f"(x{summary['speedup_vs_evidently']})"
    )
    say(f"bench wall time: {summary['bench_wall_s']} s")


def _checked(summary: dict[str, Any]) -> list[Target]:
    """The summary's targets back as `Target`s, to print."""
    return [Target(**check) for check in summary["targets"]["checks"]]


def run(
    rows: int,
    state_root: Path,
    skip_evidently: bool,
    repeats: int = 1,
    drift_features: tuple[str, ...] = DRIFT_FEATURES,
) -> dict[str, Any]:
    """Generate (or reuse) the data, measure every path, and return the summary."""
    bench_started = time.perf_counter()
    key = f"r{rows}" if drift_features == DRIFT_FEATURES else f"r{rows}-{'+'.join(drift_features)}"
    data_dir = state_root / "bench" / "drift" / key
    data_dir.mkdir(parents=True, exist_ok=True)
    evidently_python, evidently_error = _evidently(state_root, skip_evidently)
    paths = [p for p in PATHS if p != "evidently" or evidently_python is not None]
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        workdir = Path(tmp)
        generated, manifest = _generate(data_dir, rows, workdir, drift_features)
        runs, failed = _measure_paths(paths, data_dir, rows, workdir, repeats, evidently_python)
    figures = {path: _figures(path_runs) for path, path_runs in runs.items()}
    summary = _summary(rows, manifest, figures, failed or evidently_error)
    summary["repeats"] = repeats
    summary["data_cached"] = generated["cached"]
    summary["bench_wall_s"] = round(time.perf_counter() - bench_started, 1)
    _print_results(summary)
    print_targets(_checked(summary))
    return summary


def _parser() -> argparse.ArgumentParser:
    """The command line: the public options and the hidden ones of a child role."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.drift",
        description="Drift check of one night: drift.feature_drift vs scipy vs Evidently.",
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--state-root", type=Path, default=PROJECT_ROOT / ".state")
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument(
        "--drift-features",
        type=lambda text: tuple(name for name in text.split(",") if name),
        default=DRIFT_FEATURES,
        help="comma-separated numeric features given covariate drift today "
        f"(default {','.join(DRIFT_FEATURES)})",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="fresh runs per path, interleaved; *_s is the median, peak RSS the max",
    )
    add_role_arguments(parser, ("generate", *PATHS))
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    return parser


def _run_child_role(args: argparse.Namespace) -> None:
    """Run the child role the parent asked for."""
    if args.role == "generate":
        _child_generate(args.data_dir, args.rows, args.drift_features, args.result_file)
    elif args.role == "ours":
        _child_ours(args.data_dir, args.result_file)
    elif args.role == "scipy":
        _child_scipy(args.data_dir, args.result_file)
    else:
        _child_evidently(args.data_dir, args.result_file)


def main(argv: list[str] | None = None) -> int:
    """Run the bench (or, with --role, one child of it)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.role is not None:
        if args.result_file is None or args.data_dir is None:
            parser.error("--role needs --data-dir and --result-file")
        _run_child_role(args)
        return 0

    if args.rows < 1 or args.repeats < 1:
        parser.error("--rows and --repeats must be >= 1")
    summary = run(
        args.rows,
        args.state_root.resolve(),
        args.skip_evidently,
        args.repeats,
        args.drift_features,
    )
    print(json.dumps(summary, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
