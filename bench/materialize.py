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

Target (printed as ``target <name>: <value> vs <bound>: met|MISSED`` lines, and in the
JSON under ``targets``): ``speedup`` (stock wall over ours) >= ``SPEEDUP_VS_STOCK_MIN`` (5).

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
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench._common import (
    PROJECT_ROOT,
    Target,
    add_role_arguments,
    at_least,
    cache_valid,
    embedded_env,
    lake_manifest,
    max_of,
    measure,
    median_of,
    print_targets,
    rate,
    ratio,
    run_child,
    say,
    targets_json,
    wall_runs,
    warm_page_cache,
    write_json,
)
from pipelines import contracts

PATHS = ("ours", "stock")
SAMPLE_SIZE = 1_000
MANIFEST_VERSION = 2
_SAMPLE_SEED = 20_240_601
SPEEDUP_VS_STOCK_MIN = 5.0


# --------------------------------------------------------------------------- children


def _last_day(settings: Any) -> date:
    """The last generated day: the night this bench materializes."""
    from pipelines.demo import synthetic

    return synthetic.days(settings.synthetic)[-1]


def _window(settings: Any) -> tuple[datetime, datetime]:
    """The window a DAG run materializes for the last day."""
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

    names = settings.project
    start, end = _window(settings)
    days = [start.date() + timedelta(days=n) for n in range((end.date() - start.date()).days + 1)]
    files = [lake.partition_file(settings.validated_root, names.source.dataset, d) for d in days]
    frame = pd.concat([pq.read_table(f).to_pandas() for f in files if f.exists()])
    ts = frame[names.source.timestamp]
    frame = frame[(ts >= pd.Timestamp(start)) & (ts <= pd.Timestamp(end))]
    latest = (
        frame.sort_values([names.entity.column, names.source.timestamp])
        .groupby(names.entity.column)
        .tail(1)
    )
    latest = latest.set_index(names.entity.column).reindex(ids)
    out: dict[str, list[Any]] = {names.entity.column: ids}
    seconds = [None if pd.isna(t) else int(t.timestamp()) for t in latest[names.source.timestamp]]
    for feature in FEATURES:
        out[feature] = [None if pd.isna(v) else v for v in latest[feature].tolist()]
        out[f"{feature}__ts"] = seconds
    return out


def _online_sample(settings: Any, store: Any, ids: list[int]) -> dict[str, list[Any]]:
    """What the online store serves through the feature service for the sampled customers."""
    service = store.get_feature_service(settings.project.model.feature_service)
    rows = [{settings.project.entity.column: customer} for customer in ids]
    response = store.get_online_features(features=service, entity_rows=rows)
    served: dict[str, list[Any]] = response.to_dict(include_event_timestamps=True)
    served.pop(
        f"{settings.project.entity.column}__ts", None
    )  # the key's own "timestamp": meaningless
    return served


def _write_lake(
    settings: Any, days: list[date], files: list[Path], manifest: dict[str, Any], path: Path
) -> None:
    """Generate every daily partition into the validated zone, then the manifest at `path`."""
    import pyarrow as pa

    from pipelines.demo import synthetic
    from pipelines.io import lake

    path.unlink(missing_ok=True)
    shutil.rmtree(settings.lake_root, ignore_errors=True)
    for day, target in zip(days, files, strict=True):
        frame = synthetic.activity(settings.synthetic, day)
        table = pa.Table.from_pandas(frame, schema=synthetic.ACTIVITY_SCHEMA, preserve_index=False)
        lake.write_table_atomic(table, target)
    lake.write_json_atomic(manifest, path)


def _row_counts(settings: Any, files: list[Path]) -> tuple[int, int]:
    """Rows in the whole lake and rows inside the materialization window."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    names = settings.project
    start, end = _window(settings)
    ts_type = pa.timestamp("us", tz="UTC")
    window = (ds.field(names.source.timestamp) >= pa.scalar(start, ts_type)) & (
        ds.field(names.source.timestamp) <= pa.scalar(end, ts_type)
    )
    dataset = ds.dataset([str(f) for f in files], format="parquet")
    return dataset.count_rows(), dataset.count_rows(filter=window)


def _sample_ids(last_file: Path, entity: str) -> list[int]:
    """A seeded sample of the customers of the last partition."""
    import numpy as np
    import pyarrow.dataset as ds

    last = ds.dataset(str(last_file), format="parquet").to_table(columns=[entity])
    population = np.asarray(last.column(entity).to_numpy())
    rng = np.random.default_rng(_SAMPLE_SEED)
    size = min(SAMPLE_SIZE, len(population))
    return sorted(int(i) for i in rng.choice(population, size=size, replace=False))


def _child_generate(result_file: Path, sample_file: Path) -> None:
    """Write the validated partitions (unless cached), warm the page cache, count the window."""
    from pipelines.demo import synthetic
    from pipelines.io import lake
    from pipelines.settings import load_settings

    settings = load_settings()
    names = settings.project
    days = synthetic.days(settings.synthetic)
    files = [lake.partition_file(settings.validated_root, names.source.dataset, d) for d in days]
    manifest_path = settings.state_root.parent / "lake.json"
    manifest = lake_manifest(settings, days, MANIFEST_VERSION)
    cached = cache_valid(manifest_path, manifest, files)
    started = time.perf_counter()
    if not cached:
        _write_lake(settings, days, files, manifest, manifest_path)
    generate_s = time.perf_counter() - started
    # Both paths read the same bytes: make them equally warm in the page cache.
    lake_bytes = warm_page_cache(files)
    total_rows, window_rows = _row_counts(settings, files)
    ids = _sample_ids(files[-1], names.entity.column)
    sample_file.write_text(json.dumps(ids))
    start, end = _window(settings)
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
            store.materialize(start, end, [settings.project.source.feature_view])
    else:
        raise ValueError(f"unknown path {path!r}")
    ids = json.loads(sample_file.read_text())
    write_json(result_file, measured | {"sample": _online_sample(settings, store, ids), **extra})


# --------------------------------------------------------------------------- parent


def _run_role(role: str, env: dict[str, str], workdir: Path) -> dict[str, Any]:
    """Run one role of this bench in a fresh interpreter (the shared harness)."""
    sample = ["--sample-file", str(workdir / "sample_ids.json")]
    return run_child("bench.materialize", role, workdir, env, sample)


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
    wall = median_of(runs, "wall_s")
    figures: dict[str, Any] = {
        "wall_s": round(wall, 3),
        "rows_per_s": rate(window_rows, wall) if wall > 0 else None,
        "peak_rss_mb": max_of(runs, "peak_rss_mb"),
        "rss_before_mb": max_of(runs, "rss_before_mb"),
    }
    if len(runs) > 1:
        figures["wall_s_runs"] = wall_runs(runs)
    return figures


def _same(left: dict[str, list[Any]], right: dict[str, list[Any]]) -> bool:
    """Equal served values and timestamps, with every sampled customer present."""
    if left.keys() != right.keys():
        return False
    complete = all(v is not None for column in left.values() for v in column)
    return complete and all(left[key] == right[key] for key in left)


def _generate(env: dict[str, str], workdir: Path, roots: dict[str, Path]) -> dict[str, Any]:
    """Generate (or reuse) the lake under ours' root, link it under stock's, say what it is."""
    generated = _run_role("generate", env, workdir)
    how = "reused cache" if generated["cached"] else f"generated in {generated['generate_s']}s"
    say(
        f"lake: {generated['partitions']} partitions, {generated['total_rows']} rows, "
        f"{generated['lake_mb']} MiB ({how})"
    )
    _link_lake(roots["ours"] / "lake", roots["stock"] / "lake")
    say(
        f"window: {generated['window'][0]} .. {generated['window'][1]} "
        f"({int(generated['window_rows'])} lake rows)"
    )
    return generated


def _measure_paths(
    envs: dict[str, dict[str, str]],
    roots: dict[str, Path],
    workdir: Path,
    repeats: int,
    window_rows: int,
) -> dict[str, list[dict[str, Any]]]:
    """Every run of both paths, interleaved, each with a fresh online store and process."""
    runs: dict[str, list[dict[str, Any]]] = {path: [] for path in PATHS}
    for attempt in range(1, repeats + 1):
        for path in PATHS:  # interleaved, so drift in the machine hits both paths alike
            shutil.rmtree(roots[path] / "feast", ignore_errors=True)
            result = _run_role(path, envs[path], workdir)
            runs[path].append(result)
            say(
                f"{path:>5} (run {attempt}/{repeats}): {result['wall_s']:.3f} s, "
                f"{round(window_rows / result['wall_s'])} rows/s, "
                f"peak RSS {result['peak_rss_mb']} MiB "
                f"(before the call {result['rss_before_mb']} MiB)"
            )
    return runs


def _targets(summary: dict[str, Any]) -> list[Target]:
    """The stated target: stock's wall time over ours at least `SPEEDUP_VS_STOCK_MIN`."""
    return [at_least("speedup_vs_stock", summary["speedup"], SPEEDUP_VS_STOCK_MIN)]


def _summary(
    customers: int,
    history_days: int,
    generated: dict[str, Any],
    runs: dict[str, list[dict[str, Any]]],
    repeats: int,
) -> dict[str, Any]:
    """Every figure of the bench (without its wall time and targets)."""
    window_rows = int(generated["window_rows"])
    ours, stock = (_figures(runs[path], window_rows) for path in PATHS)
    samples = {path: runs[path][-1]["sample"] for path in PATHS}
    expected = generated["expected"]
    return {
        "customers": customers,
        "history_days": history_days,
        "window_rows": window_rows,
        "ours": ours,
        "stock": stock,
        "speedup": round(stock["wall_s"] / ours["wall_s"], 2),
        "rss_ratio": ratio(stock["peak_rss_mb"], ours["peak_rss_mb"]),
        "online_values_equal": _same(samples["ours"], samples["stock"]),
        "online_values_match_lake": _same(samples["ours"], expected)
        and _same(samples["stock"], expected),
        "online_sample_size": len(next(iter(samples["ours"].values()), [])),
        "online_rows": runs["ours"][-1].get("online_rows"),
        "repeats": repeats,
        "lake_cached": generated["cached"],
    }


def _print_results(summary: dict[str, Any]) -> None:
    """The human-readable verdict lines after the runs."""
    ours, stock = summary["ours"], summary["stock"]
    if summary["repeats"] > 1:
        say(f"median wall: ours {ours['wall_s']:.3f} s, stock {stock['wall_s']:.3f} s")
    say(
        f"speedup (stock/ours wall): {summary['speedup']}x, "
        f"peak RSS ratio (stock/ours): {summary['rss_ratio']}x"
    )
    say(
        f"online values equal on {summary['online_sample_size']} customers: "
        f"{summary['online_values_equal']}; match the lake: {summary['online_values_match_lake']}"
    )
    say(f"bench wall time: {summary['bench_wall_s']} s")


def run(customers: int, history_days: int, state_root: Path, repeats: int = 1) -> dict[str, Any]:
    """Generate (or reuse) the lake, measure both paths, and return the summary."""
    bench_started = time.perf_counter()
    key_dir = state_root / "bench" / "materialize" / f"c{customers}-h{history_days}"
    roots = {path: key_dir / path for path in PATHS}
    key_dir.mkdir(parents=True, exist_ok=True)
    envs = {path: embedded_env(root, customers, history_days + 1) for path, root in roots.items()}
    with tempfile.TemporaryDirectory(prefix="bench-materialize-") as tmp:
        workdir = Path(tmp)
        say(f"lake: {customers} customers x {history_days + 1} days under {key_dir}")
        generated = _generate(envs["ours"], workdir, roots)
        runs = _measure_paths(envs, roots, workdir, repeats, int(generated["window_rows"]))
    summary = _summary(customers, history_days, generated, runs, repeats)
    targets = _targets(summary)
    summary["targets"] = targets_json(
        targets,
        {
            "speedup_vs_stock_min": SPEEDUP_VS_STOCK_MIN,
            "speedup_vs_stock_met": targets[0].met,
        },
    )
    summary["bench_wall_s"] = round(time.perf_counter() - bench_started, 1)
    _print_results(summary)
    print_targets(targets)
    return summary


def _parser() -> argparse.ArgumentParser:
    """The command line: the public options and the hidden ones of a child role."""
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
    add_role_arguments(parser, ("generate", *PATHS))
    parser.add_argument("--sample-file", type=Path, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the bench (or, with --role, one child of it)."""
    parser = _parser()
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
