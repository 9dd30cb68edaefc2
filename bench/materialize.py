"""Benchmark: materialize one day into the online store, the project's path vs stock Feast.

Scenario: ``--customers`` customers (default 100,000) with ``--history-days`` days of
history (default 30), so the validated zone holds ``history_days + 1`` daily partitions
of one row per customer (3.1M rows by default). We then materialize the last day, with
the window a DAG run uses: ``materialization.materialization_window(settings,
*contracts.night_interval(last_day))``, i.e. ``[last_day - overlap, last_day + 1 day]``.

Compared paths, each in its own fresh subprocess (so peak RSS is per path):

* ``ours``: ``pipelines.features.materialization.materialize_window(settings, start, end, store)``,
  which reads only the partitions that can hold rows of the window;
* ``stock`` (the baseline): Feast's own ``FeatureStore.materialize(start, end, [view])``
  through the file offline store (dask) and the local compute engine, which reads the
  whole file source.

Each path gets its own state root (own registry and sqlite online store, both reset
before every run) whose lake is a hardlink copy of the same generated files. The repo is
applied (``feast_store.apply_repo``) in each child before timing; ``wall_s`` times the
materialize call only; ``peak_rss_mb`` is the child's ``ru_maxrss`` right after it (it
includes the interpreter, Feast and the apply; ``rss_before_mb`` is the same figure just
before the call). ``rows_per_s`` is ``window_rows`` (lake rows with start <= ts <= end)
over ``wall_s``. Afterwards both online stores are read back through the feature
service for a sample of customers and compared to each other (``online_values_equal``)
and to the latest row per customer computed from the lake with pandas
(``online_values_match_lake``).

The lake is generated directly into the validated zone with ``synthetic.activity``:
the Great Expectations gate is skipped, since this bench is about materialization and
the generator's clean partitions satisfy the contract the gate enforces. The generated
lake is cached under ``<state_root>/bench/materialize/c<customers>-h<history_days>/``
(with a manifest of the synthetic settings), so reruns skip generation. The embedded
profile (sqlite online store, file registry) is forced, so the two stores never share
a Redis or a SQL registry.

Run it from the repository root::

    .venv/bin/python -m bench.materialize [--customers 100000] [--history-days 30]
                                          [--state-root .state] [--repeats 1]

``--repeats N`` runs each path N times (fresh subprocess and fresh online store each
time, interleaved); ``wall_s`` is then the median and ``peak_rss_mb`` the maximum.

It prints human-readable lines, then, as its last line, one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench._common import PROJECT_ROOT, child_env, measure, write_json
from pipelines import contracts

PATHS = ("ours", "stock")
SAMPLE_SIZE = 1_000
MANIFEST_VERSION = 2
_SAMPLE_SEED = 20_240_601


# --------------------------------------------------------------------------- children


def _last_day(settings: Any) -> date:
    from pipelines.demo import synthetic

    return synthetic.days(settings.synthetic)[-1]


def _window(settings: Any) -> tuple[datetime, datetime]:
    from pipelines.features import materialization

    return materialization.materialization_window(
        settings, *contracts.night_interval(_last_day(settings))
    )


def _expected_sample(settings: Any, ids: list[int]) -> dict[str, list[Any]]:
    """Latest row per sampled customer inside the window, from the lake, with plain pandas.

    Same shape as `OnlineResponse.to_dict(include_event_timestamps=True)`, so it can be
    compared to what the online stores serve.
    """
    import pandas as pd
    import pyarrow.parquet as pq

    from pipelines.demo.synthetic import FEATURES
    from pipelines.io import lake

    names = settings.dataset
    start, end = _window(settings)
    days = [start.date() + timedelta(days=n) for n in range((end.date() - start.date()).days + 1)]
    files = [lake.partition_file(settings.validated_root, names.raw_dataset, d) for d in days]
    frame = pd.concat([pq.read_table(f).to_pandas() for f in files if f.exists()])
    ts = frame[names.timestamp]
    frame = frame[(ts >= pd.Timestamp(start)) & (ts <= pd.Timestamp(end))]
    latest = frame.sort_values([names.entity, names.timestamp]).groupby(names.entity).tail(1)
    latest = latest.set_index(names.entity).reindex(ids)
    out: dict[str, list[Any]] = {names.entity: ids}
    seconds = [None if pd.isna(t) else int(t.timestamp()) for t in latest[names.timestamp]]
    for feature in FEATURES:
        out[feature] = [None if pd.isna(v) else v for v in latest[feature].tolist()]
        out[f"{feature}__ts"] = seconds
    return out


def _online_sample(settings: Any, store: Any, ids: list[int]) -> dict[str, list[Any]]:
    """What the online store serves through the feature service for the sampled customers."""
    service = store.get_feature_service(settings.dataset.feature_service)
    rows = [{settings.dataset.entity: customer} for customer in ids]
    response = store.get_online_features(features=service, entity_rows=rows)
    served: dict[str, list[Any]] = response.to_dict(include_event_timestamps=True)
    served.pop(f"{settings.dataset.entity}__ts", None)  # the key's own "timestamp": meaningless
    return served


def _child_generate(result_file: Path, sample_file: Path) -> None:
    """Write the validated partitions (unless cached), warm the page cache, count the window."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.dataset as ds

    from pipelines.demo import synthetic
    from pipelines.io import lake
    from pipelines.settings import load_settings

    settings = load_settings()
    cfg = settings.synthetic
    names = settings.dataset
    days = synthetic.days(cfg)
    files = [lake.partition_file(settings.validated_root, names.raw_dataset, d) for d in days]
    manifest_path = settings.state_root.parent / "lake.json"
    manifest = {
        "version": MANIFEST_VERSION,
        "synthetic": cfg.model_dump(mode="json"),
        "dataset": [names.raw_dataset, names.entity, names.timestamp],
        "schema": str(synthetic.ACTIVITY_SCHEMA),
        "days": [d.isoformat() for d in days],
    }
    cached = (
        manifest_path.exists()
        and json.loads(manifest_path.read_text()) == manifest
        and all(f.exists() for f in files)
    )
    started = time.perf_counter()
    if not cached:
        manifest_path.unlink(missing_ok=True)
        shutil.rmtree(settings.lake_root, ignore_errors=True)
        for day, target in zip(days, files, strict=True):
            frame = synthetic.activity(cfg, day)
            table = pa.Table.from_pandas(
                frame, schema=synthetic.ACTIVITY_SCHEMA, preserve_index=False
            )
            lake.write_table_atomic(table, target)
        lake.write_json_atomic(manifest, manifest_path)
    generate_s = time.perf_counter() - started

    # Both paths read the same bytes: make them equally warm in the page cache.
    lake_bytes = 0
    for path in files:
        lake_bytes += len(path.read_bytes())

    start, end = _window(settings)
    ts_type = pa.timestamp("us", tz="UTC")
    window = (ds.field(names.timestamp) >= pa.scalar(start, ts_type)) & (
        ds.field(names.timestamp) <= pa.scalar(end, ts_type)
    )
    dataset = ds.dataset([str(f) for f in files], format="parquet")
    total_rows = dataset.count_rows()
    window_rows = dataset.count_rows(filter=window)

    last = ds.dataset(str(files[-1]), format="parquet").to_table(columns=[names.entity])
    population = np.asarray(last.column(names.entity).to_numpy())
    rng = np.random.default_rng(_SAMPLE_SEED)
    size = min(SAMPLE_SIZE, len(population))
    ids = sorted(int(i) for i in rng.choice(population, size=size, replace=False))
    sample_file.write_text(json.dumps(ids))

    result = {
        "cached": cached,
        "generate_s": round(generate_s, 2),
        "partitions": len(files),
        "total_rows": total_rows,
        "window_rows": window_rows,
        "lake_mb": round(lake_bytes / 2**20, 1),
        "window": [start.isoformat(), end.isoformat()],
        "expected": _expected_sample(settings, ids),
    }
    write_json(result_file, result)


def _child_measure(path: str, result_file: Path, sample_file: Path) -> None:
    """Apply the repo, time one materialization of the last day, read the sample back."""
    from pipelines.features import materialization
    from pipelines.io import feast_store
    from pipelines.settings import load_settings

    settings = load_settings()
    store = feast_store.apply_repo(settings)
    start, end = _window(settings)
    extra: dict[str, Any] = {}
    if path == "ours":
        with measure() as measured:
            outcome = materialization.materialize_window(settings, start, end, store)
        extra = {
            "online_rows": getattr(outcome, "entities_written", None),
            "partitions": outcome.partitions,
        }
    elif path == "stock":
        with measure() as measured:
            store.materialize(start, end, [settings.dataset.feature_view])
    else:
        raise ValueError(f"unknown path {path!r}")
    ids = json.loads(sample_file.read_text())
    write_json(result_file, measured | {"sample": _online_sample(settings, store, ids), **extra})


# --------------------------------------------------------------------------- parent


def _child_env(state_root: Path, customers: int, history_days: int) -> dict[str, str]:
    return child_env(
        {
            "MLOPS_PROFILE": "embedded",
            "MLOPS_STATE_ROOT": str(state_root),
            "MLOPS_SYNTHETIC__CUSTOMERS": str(customers),
            "MLOPS_SYNTHETIC__DAYS": str(history_days + 1),
        }
    )


def _run_child(role: str, env: dict[str, str], workdir: Path) -> dict[str, Any]:
    """Run one role in a fresh interpreter and return the JSON it wrote."""
    result_file = workdir / f"{role}.json"
    result_file.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "bench.materialize",
        "--role",
        role,
        "--result-file",
        str(result_file),
        "--sample-file",
        str(workdir / "sample_ids.json"),
    ]
    done = subprocess.run(
        command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0 or not result_file.exists():
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
        raise RuntimeError(f"bench child {role!r} failed (exit {done.returncode}):\n{tail}")
    loaded: dict[str, Any] = json.loads(result_file.read_text())
    return loaded


def _link_lake(source_root: Path, target_root: Path) -> None:
    """Make `target_root` hold the same parquet files as `source_root` (hardlinks, or copies)."""
    for source in sorted(source_root.rglob("*.parquet")):
        target = target_root / source.relative_to(source_root)
        if target.exists() and os.path.samefile(source, target):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
    for target in target_root.rglob("*.parquet"):
        if not (source_root / target.relative_to(target_root)).exists():
            target.unlink()


def _figures(runs: list[dict[str, Any]], window_rows: int) -> dict[str, Any]:
    """Median wall time and the highest peak RSS over the runs of one path."""
    walls = [float(run["wall_s"]) for run in runs]
    wall = statistics.median(walls)
    figures: dict[str, Any] = {
        "wall_s": round(wall, 3),
        "rows_per_s": round(window_rows / wall) if wall > 0 else None,
        "peak_rss_mb": max(float(run["peak_rss_mb"]) for run in runs),
        "rss_before_mb": max(float(run["rss_before_mb"]) for run in runs),
    }
    if len(runs) > 1:
        figures["wall_s_runs"] = [round(w, 3) for w in walls]
    return figures


def _same(left: dict[str, list[Any]], right: dict[str, list[Any]]) -> bool:
    """Equal served values and timestamps, with every sampled customer present."""
    if left.keys() != right.keys():
        return False
    complete = all(v is not None for column in left.values() for v in column)
    return complete and all(left[key] == right[key] for key in left)


def run(customers: int, history_days: int, state_root: Path, repeats: int = 1) -> dict[str, Any]:
    """Generate (or reuse) the lake, measure both paths, and return the summary."""
    bench_started = time.perf_counter()
    key_dir = state_root / "bench" / "materialize" / f"c{customers}-h{history_days}"
    roots = {path: key_dir / path for path in PATHS}
    key_dir.mkdir(parents=True, exist_ok=True)
    envs = {path: _child_env(root, customers, history_days) for path, root in roots.items()}

    with tempfile.TemporaryDirectory(prefix="bench-materialize-") as tmp:
        workdir = Path(tmp)
        print(f"lake: {customers} customers x {history_days + 1} days under {key_dir}", flush=True)
        generated = _run_child("generate", envs["ours"], workdir)
        how = "reused cache" if generated["cached"] else f"generated in {generated['generate_s']}s"
        print(
            f"lake: {generated['partitions']} partitions, {generated['total_rows']} rows, "
            f"{generated['lake_mb']} MiB ({how})",
            flush=True,
        )
        _link_lake(roots["ours"] / "lake", roots["stock"] / "lake")
        window_rows = int(generated["window_rows"])
        print(
            f"window: {generated['window'][0]} .. {generated['window'][1]} "
            f"({window_rows} lake rows)",
            flush=True,
        )

        runs: dict[str, list[dict[str, Any]]] = {path: [] for path in PATHS}
        for attempt in range(1, repeats + 1):
            for path in PATHS:  # interleaved, so drift in the machine hits both paths alike
                shutil.rmtree(roots[path] / "feast", ignore_errors=True)
                result = _run_child(path, envs[path], workdir)
                runs[path].append(result)
                print(
                    f"{path:>5} (run {attempt}/{repeats}): {result['wall_s']:.3f} s, "
                    f"{round(window_rows / result['wall_s'])} rows/s, "
                    f"peak RSS {result['peak_rss_mb']} MiB "
                    f"(before the call {result['rss_before_mb']} MiB)",
                    flush=True,
                )

    ours, stock = (_figures(runs[path], window_rows) for path in PATHS)
    samples = {path: runs[path][-1]["sample"] for path in PATHS}
    equal = _same(samples["ours"], samples["stock"])
    match_lake = _same(samples["ours"], generated["expected"]) and _same(
        samples["stock"], generated["expected"]
    )
    summary: dict[str, Any] = {
        "customers": customers,
        "history_days": history_days,
        "window_rows": window_rows,
        "ours": ours,
        "stock": stock,
        "speedup": round(stock["wall_s"] / ours["wall_s"], 2),
        "rss_ratio": round(stock["peak_rss_mb"] / ours["peak_rss_mb"], 2),
        "online_values_equal": equal,
        "online_values_match_lake": match_lake,
        "online_sample_size": len(next(iter(samples["ours"].values()), [])),
        "online_rows": runs["ours"][-1].get("online_rows"),
        "repeats": repeats,
        "lake_cached": generated["cached"],
        "bench_wall_s": round(time.perf_counter() - bench_started, 1),
    }
    if repeats > 1:
        print(
            f"median wall: ours {ours['wall_s']:.3f} s, stock {stock['wall_s']:.3f} s",
            flush=True,
        )
    print(
        f"speedup (stock/ours wall): {summary['speedup']}x, "
        f"peak RSS ratio (stock/ours): {summary['rss_ratio']}x",
        flush=True,
    )
    print(
        f"online values equal on {summary['online_sample_size']} customers: {equal}; "
        f"match the lake: {match_lake}",
        flush=True,
    )
    print(f"bench wall time: {summary['bench_wall_s']} s", flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.materialize",
        description="Materialize one day: pipelines.features.materialize_window vs stock Feast.",
    )
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--history-days", type=int, default=30)
    parser.add_argument("--state-root", type=Path, default=PROJECT_ROOT / ".state")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="fresh runs per path, interleaved; wall_s is the median, peak_rss_mb the max",
    )
    parser.add_argument("--role", choices=("generate", *PATHS), help=argparse.SUPPRESS)
    parser.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--sample-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.role is not None:
        if args.result_file is None or args.sample_file is None:
            parser.error("--role needs --result-file and --sample-file")
        if args.role == "generate":
            _child_generate(args.result_file, args.sample_file)
        else:
            _child_measure(args.role, args.result_file, args.sample_file)
        return 0

    if args.customers < 1 or args.history_days < 0 or args.repeats < 1:
        parser.error("--customers and --repeats must be >= 1, --history-days >= 0")
    summary = run(args.customers, args.history_days, args.state_root.resolve(), args.repeats)
    print(json.dumps(summary, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
