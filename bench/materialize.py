"""Benchmark: materialize one day into the online store, the project's path vs stock Feast,
on SQLite and on Redis, after a short and a long history.

Scenario: ``--customers`` customers (default 100,000) with ``--history-days`` days of
history (default 30), so the validated zone holds ``history_days + 1`` daily partitions
of one row per customer (3.1M rows by default); then the same with
``--long-history-days`` (default 90: 9.1M rows). Each time we materialize the last day,
with the window a DAG run uses: ``materialization.materialization_window(settings,
*contracts.night_interval(last_day))``, i.e. ``[last_day - overlap, last_day + 1 day]``.

Compared paths, each in its own fresh subprocess (so peak RSS is per path), on each online
store of ``--stores`` (default both: ``sqlite``, the embedded profile's, and ``redis``, the
production profile's, at ``--redis``):

* ``ours``: ``pipelines.features.materialization.materialize_window(settings, start, end, store)``,
  which reads only the partitions that can hold rows of the window and writes the online
  records in bulk (``pipelines.io.online_store``); after both histories;
* ``stock`` (the baseline): Feast's own ``FeatureStore.materialize(start, end, [view])``
  through the file offline store (dask) and the local compute engine, which reads the
  whole file source; after the short history.

Each path gets its own state root per history (own registry and sqlite online store, both
reset before every run) whose lake is a hardlink copy of the same generated files. The
registry is always a file; a Redis run's online store is Redis under a project of its own
(``bench_<random>``, which ends every key it writes: a fresh key space per run), removed
with ``FeatureStore.teardown`` after the run. The repo is applied
(``feast_store.apply_repo``'s objects) in each child before timing; ``wall_s`` times the
materialize call only; ``peak_rss_mb`` is the child's ``ru_maxrss`` right after it (it
includes the interpreter, Feast and the apply; ``rss_before_mb`` is the same figure just
before the call). ``rows_per_s`` is ``window_rows`` (lake rows with start <= ts <= end)
over ``wall_s``; ``entities_per_s`` is the entities ours wrote over its ``wall_s`` (reading
the window included), ``written_entities_per_s`` the same over ``write_s``, the time spent
writing them (in ``online_store.write_rows``). Afterwards each online store is read back
through the feature service for a sample of customers and compared with the other path's
(``online_values_equal``) and with the latest row per customer computed from the lake with
pandas (``online_values_match_lake``).

The lake is generated directly into the validated zone with ``synthetic.activity``:
the Great Expectations gate is skipped, since this bench is about materialization and
the generator's clean partitions satisfy the contract the gate enforces. The generated
lake is cached under ``<state_root>/bench/materialize/c<customers>-h<history_days>/``
(with a manifest of the synthetic settings), so reruns skip generation. The embedded
profile (sqlite online store, file registry) is forced, Redis replacing only the online
store, so no run shares a Redis key space or a SQL registry with another.

Targets (printed as ``target <name>: <value> vs <bound>: met|MISSED`` lines, and in the
JSON under ``targets``), for each store: ``<store>_speedup_vs_stock`` (stock wall over ours)
>= ``SPEEDUP_VS_STOCK_MIN`` (5); the one-day window's cost and ours' peak RSS flat as the
history grows, ``<store>_window_cost_<long>d_vs_<short>d`` and
``<store>_peak_rss_<long>d_vs_<short>d`` (ours after the long history over ours after the
short one) <= ``FLAT_MAX`` (1.3); the values served equal stock's and the lake's
(``<store>_online_values_match``); and on Redis ``redis_written_entities_per_s`` >=
``REDIS_ENTITIES_PER_S_MIN`` (100,000).

Run it from the repository root (Redis must be reachable for the ``redis`` store)::

    .venv/bin/python -m bench.materialize [--customers 100000] [--history-days 30]
        [--long-history-days 90] [--stores sqlite,redis] [--redis 127.0.0.1:6379]
        [--state-root .state] [--repeats 1]

``--repeats N`` runs each path N times (fresh subprocess and fresh online store each
time, interleaved); ``wall_s`` is then the median and ``peak_rss_mb`` the maximum. The
machine's load average before and after is recorded: other work on the host skews every
figure.

It prints human-readable lines, then, as its last line, one JSON object with every figure
and ratio, for each store.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench._common import (
    PROJECT_ROOT,
    Target,
    add_role_arguments,
    at_least,
    at_most,
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
STORES = ("sqlite", "redis")
SAMPLE_SIZE = 1_000
MANIFEST_VERSION = 2
_SAMPLE_SEED = 20_240_601
SPEEDUP_VS_STOCK_MIN = 5.0
FLAT_MAX = 1.3
REDIS_ENTITIES_PER_S_MIN = 100_000


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


def _applied_store(settings: Any, online: str) -> Any:
    """The repo applied to a store whose online store is the embedded profile's SQLite, or
    Redis (the settings' connection) with the file registry kept."""
    from feast import FeatureStore, RepoConfig

    from feature_repo.definitions import build
    from pipelines.io import feast_store

    if online == "sqlite":
        return feast_store.apply_repo(settings)
    redis = {"type": "redis", "connection_string": settings.feast.redis_connection}
    config = feast_store.repo_config_dict(settings) | {"online_store": redis}
    store = FeatureStore(
        repo_path=str(settings.feature_repo),
        config=RepoConfig(repo_path=settings.feature_repo, **config),
    )
    store.apply(build(settings))
    return store


@contextmanager
def _timed_writes() -> Iterator[dict[str, float]]:
    """Add up the time spent in `online_store.write_rows` while in the block (`write_s`)."""
    from pipelines.io import online_store

    figures = {"write_s": 0.0}
    write_rows = online_store.write_rows

    def timed(*args: Any) -> None:
        started = time.perf_counter()
        try:
            write_rows(*args)
        finally:
            figures["write_s"] += time.perf_counter() - started

    online_store.write_rows = timed
    try:
        yield figures
    finally:
        online_store.write_rows = write_rows


def _materialize(path: str, settings: Any, store: Any) -> dict[str, Any]:
    """Time one materialization of the last day by `path`; its figures."""
    from pipelines.features import materialization

    start, end = _window(settings)
    if path == "ours":
        with _timed_writes() as writes, measure() as measured:
            outcome = materialization.materialize_window(settings, start, end, store)
        return measured | {
            "write_s": writes["write_s"],
            "online_rows": outcome.entities_written,
            "partitions": outcome.partitions,
        }
    if path == "stock":
        with measure() as measured:
            store.materialize(start, end, [settings.project.source.feature_view])
        return measured
    raise ValueError(f"unknown path {path!r}")


def _child_measure(path: str, online: str, result_file: Path, sample_file: Path) -> None:
    """Apply the repo, time one materialization of the last day, read the sample back."""
    from pipelines.settings import load_settings

    settings = load_settings()
    store = _applied_store(settings, online)
    try:
        measured = _materialize(path, settings, store)
        ids = json.loads(sample_file.read_text())
        write_json(result_file, measured | {"sample": _online_sample(settings, store, ids)})
    finally:
        if online == "redis":
            store.teardown()  # the run's project: every key it wrote


# --------------------------------------------------------------------------- parent


@dataclass(frozen=True)
class Lake:
    """One generated history: its length, each path's state root, the generator's report."""

    history_days: int
    roots: dict[str, Path]
    generated: dict[str, Any]
    sample_file: Path


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


def _prepare_lake(customers: int, history_days: int, state_root: Path, workdir: Path) -> Lake:
    """Generate (or reuse) one history's lake under ours' root, link it under stock's."""
    key_dir = state_root / "bench" / "materialize" / f"c{customers}-h{history_days}"
    roots = {path: key_dir / path for path in PATHS}
    key_dir.mkdir(parents=True, exist_ok=True)
    sample_file = workdir / f"sample_ids_h{history_days}.json"
    say(f"lake: {customers} customers x {history_days + 1} days under {key_dir}")
    env = embedded_env(roots["ours"], customers, history_days + 1)
    args = ["--sample-file", str(sample_file)]
    tag = f"generate-h{history_days}"
    generated = run_child("bench.materialize", "generate", workdir, env, args, tag=tag)
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
    return Lake(history_days, roots, generated, sample_file)


Run = tuple[str, str, int]  # (online store, path, history days)


def _plan(stores: list[str], short: int, long: int) -> list[Run]:
    """Every measured run: on each store, ours and stock after the short history, ours after
    the long one."""
    return [
        (online, path, days)
        for online in stores
        for path, days in (("ours", short), ("stock", short), ("ours", long))
    ]


def _run_env(lake: Lake, path: str, customers: int, online: str, redis: str) -> dict[str, str]:
    """A run's environment: its path's state root and, on Redis, a project of its own."""
    extra = {"MLOPS_FEAST__REDIS_CONNECTION": redis}
    if online == "redis":  # Feast ends every key with the project: a fresh key space
        extra["MLOPS_FEAST__PROJECT"] = f"bench_{secrets.token_hex(4)}"
    return embedded_env(lake.roots[path], customers, lake.history_days + 1, extra)


def _measure_runs(
    plan: list[Run], lakes: dict[int, Lake], customers: int, redis: str, workdir: Path, repeats: int
) -> dict[Run, list[dict[str, Any]]]:
    """Every run of the plan, repeats interleaved, each with a fresh online store and process."""
    runs: dict[Run, list[dict[str, Any]]] = {run: [] for run in plan}
    for attempt in range(1, repeats + 1):
        for run in plan:  # interleaved, so drift in the machine hits every path alike
            online, path, days = run
            lake = lakes[days]
            shutil.rmtree(lake.roots[path] / "feast", ignore_errors=True)
            env = _run_env(lake, path, customers, online, redis)
            args = ["--sample-file", str(lake.sample_file), "--online", online]
            tag = f"{online}-{path}-h{days}"
            result = run_child("bench.materialize", path, workdir, env, args, tag=tag)
            runs[run].append(result)
            rows = int(lake.generated["window_rows"])
            say(
                f"{online:>6} {path:>5} {days:>3}d (run {attempt}/{repeats}): "
                f"{result['wall_s']:.3f} s, {round(rows / result['wall_s'])} rows/s, "
                f"peak RSS {result['peak_rss_mb']} MiB "
                f"(before the call {result['rss_before_mb']} MiB)"
            )
    return runs


def _figures(runs: list[dict[str, Any]], window_rows: int) -> dict[str, Any]:
    """Median wall time and the highest peak RSS over the runs of one path."""
    wall = median_of(runs, "wall_s")
    figures: dict[str, Any] = {
        "wall_s": round(wall, 3),
        "rows_per_s": rate(window_rows, wall) if wall > 0 else None,
        "peak_rss_mb": max_of(runs, "peak_rss_mb"),
        "rss_before_mb": max_of(runs, "rss_before_mb"),
    }
    if "write_s" in runs[0]:
        figures["write_s"] = round(median_of(runs, "write_s"), 3)
    if len(runs) > 1:
        figures["wall_s_runs"] = wall_runs(runs)
    return figures


def _same(left: dict[str, list[Any]], right: dict[str, list[Any]]) -> bool:
    """Equal served values and timestamps, with every sampled customer present."""
    if left.keys() != right.keys():
        return False
    complete = all(v is not None for column in left.values() for v in column)
    return complete and all(left[key] == right[key] for key in left)


def _store_summary(
    online: str,
    runs: dict[Run, list[dict[str, Any]]],
    lakes: dict[int, Lake],
    short: int,
    long: int,
) -> dict[str, Any]:
    """One store's figures: each path's, and the ratios the targets judge."""
    rows = {days: int(lake.generated["window_rows"]) for days, lake in lakes.items()}
    ours_runs, stock_runs = runs[(online, "ours", short)], runs[(online, "stock", short)]
    long_runs = runs[(online, "ours", long)]
    ours, stock = _figures(ours_runs, rows[short]), _figures(stock_runs, rows[short])
    ours_long = _figures(long_runs, rows[long])
    written = int(ours_runs[-1]["online_rows"])
    samples = [ours_runs[-1]["sample"], stock_runs[-1]["sample"], long_runs[-1]["sample"]]
    expected = [lakes[short].generated["expected"]] * 2 + [lakes[long].generated["expected"]]
    return {
        "ours": ours,
        "stock": stock,
        "ours_long_history": ours_long,
        "speedup": ratio(stock["wall_s"], ours["wall_s"]),
        "rss_ratio": ratio(stock["peak_rss_mb"], ours["peak_rss_mb"]),
        "window_cost_ratio": ratio(ours_long["wall_s"], ours["wall_s"]),
        "peak_rss_ratio": ratio(ours_long["peak_rss_mb"], ours["peak_rss_mb"]),
        "online_rows": written,
        "entities_per_s": rate(written, ours["wall_s"]),
        "written_entities_per_s": rate(written, ours["write_s"]),
        "online_values_equal": _same(samples[0], samples[1]),
        "online_values_match_lake": all(map(_same, samples, expected)),
    }


def _targets(summary: dict[str, Any], stores: list[str]) -> list[Target]:
    """Each store's targets (speedup, flat cost and memory, correct values), then Redis' rate."""
    short, long = summary["history_days"], summary["long_history_days"]
    targets = []
    for online in stores:
        figures = summary[online]
        matched = figures["online_values_equal"] and figures["online_values_match_lake"]
        targets += [
            at_least(f"{online}_speedup_vs_stock", figures["speedup"], SPEEDUP_VS_STOCK_MIN),
            at_most(
                f"{online}_window_cost_{long}d_vs_{short}d", figures["window_cost_ratio"], FLAT_MAX
            ),
            at_most(f"{online}_peak_rss_{long}d_vs_{short}d", figures["peak_rss_ratio"], FLAT_MAX),
            Target(f"{online}_online_values_match", matched, "stock's and the lake's", matched),
        ]
    if "redis" in stores:
        rate_ = summary["redis"]["written_entities_per_s"]
        targets.append(at_least("redis_written_entities_per_s", rate_, REDIS_ENTITIES_PER_S_MIN))
    return targets


def _print_results(summary: dict[str, Any], stores: list[str]) -> None:
    """The human-readable verdict lines after the runs."""
    short, long = summary["history_days"], summary["long_history_days"]
    for online in stores:
        figures = summary[online]
        say(
            f"{online}: speedup (stock/ours wall) {figures['speedup']}x, peak RSS ratio "
            f"(stock/ours) {figures['rss_ratio']}x; ours after {long}d vs {short}d: wall "
            f"{figures['window_cost_ratio']}x, peak RSS {figures['peak_rss_ratio']}x; "
            f"{figures['entities_per_s']} entities/s materialized, "
            f"{figures['written_entities_per_s']} entities/s written"
        )
        say(
            f"{online}: online values equal on {summary['online_sample_size']} customers: "
            f"{figures['online_values_equal']}; "
            f"match the lake: {figures['online_values_match_lake']}"
        )
    say(
        f"load average before {summary['load_average_before']}, "
        f"after {summary['load_average_after']}"
    )
    say(f"bench wall time: {summary['bench_wall_s']} s")


def run(
    customers: int,
    histories: tuple[int, int],
    state_root: Path,
    stores: list[str],
    redis: str,
    repeats: int = 1,
) -> dict[str, Any]:
    """Generate (or reuse) both lakes, measure every run, and return the summary."""
    bench_started = time.perf_counter()
    load_before = [round(x, 2) for x in os.getloadavg()]
    short, long = histories
    with tempfile.TemporaryDirectory(prefix="bench-materialize-") as tmp:
        workdir = Path(tmp)
        lakes = {days: _prepare_lake(customers, days, state_root, workdir) for days in histories}
        plan = _plan(stores, short, long)
        runs = _measure_runs(plan, lakes, customers, redis, workdir, repeats)
    summary: dict[str, Any] = {
        "customers": customers,
        "history_days": short,
        "long_history_days": long,
        "window_rows": {
            str(days): int(lake.generated["window_rows"]) for days, lake in lakes.items()
        },
        **{online: _store_summary(online, runs, lakes, short, long) for online in stores},
        "online_sample_size": len(next(iter(lakes[short].generated["expected"].values()), [])),
        "repeats": repeats,
        "lake_cached": {str(days): lake.generated["cached"] for days, lake in lakes.items()},
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    targets = _targets(summary, stores)
    summary["targets"] = targets_json(
        targets,
        {
            "speedup_vs_stock_min": SPEEDUP_VS_STOCK_MIN,
            "flat_max": FLAT_MAX,
            "redis_entities_per_s_min": REDIS_ENTITIES_PER_S_MIN,
        },
    )
    summary["bench_wall_s"] = round(time.perf_counter() - bench_started, 1)
    _print_results(summary, stores)
    print_targets(targets)
    return summary


def _stores(text: str) -> list[str]:
    """The comma-separated online stores to measure, each known."""
    stores = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(stores) - set(STORES))
    if unknown or not stores:
        raise argparse.ArgumentTypeError(f"stores are among {', '.join(STORES)}, not {text!r}")
    return list(dict.fromkeys(stores))


def _parser() -> argparse.ArgumentParser:
    """The command line: the public options and the hidden ones of a child role."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.materialize",
        description="Materialize one day: pipelines.features.materialize_window vs stock Feast.",
    )
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--history-days", type=int, default=30)
    parser.add_argument("--long-history-days", type=int, default=90)
    parser.add_argument("--stores", type=_stores, default=list(STORES), help="sqlite,redis")
    parser.add_argument("--redis", default="127.0.0.1:6379", help="Feast connection string")
    parser.add_argument("--state-root", type=Path, default=PROJECT_ROOT / ".state")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="fresh runs per path, interleaved; wall_s is the median, peak_rss_mb the max",
    )
    add_role_arguments(parser, ("generate", *PATHS))
    parser.add_argument("--sample-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--online", choices=STORES, default="sqlite", help=argparse.SUPPRESS)
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
            _child_measure(args.role, args.online, args.result_file, args.sample_file)
        return 0

    if args.customers < 1 or args.history_days < 0 or args.repeats < 1:
        parser.error("--customers and --repeats must be >= 1, --history-days >= 0")
    if args.long_history_days <= args.history_days:
        parser.error("--long-history-days must be more than --history-days")
    histories = (args.history_days, args.long_history_days)
    summary = run(
        args.customers, histories, args.state_root.resolve(), args.stores, args.redis, args.repeats
    )
    print(json.dumps(summary, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
