"""The data contract's Arrow types, and the lossless casts that put a landed file on them.

What the gate publishes has exactly the contract's types, so nothing downstream meets a
type the contract does not name. A landed column may differ in a way that loses
nothing, and is cast at staging: a narrower or unsigned integer, a float column holding
only whole numbers (pandas' integers with nulls), float32, large or dictionary-encoded
strings, a timestamp in another unit or time zone. A timestamp without a time zone holds
wall times of the source's time zone (the project's `source.timezone`): it becomes the
instants they name there. Anything else refuses the partition, naming the column: a wall
time a daylight-saving change skips or repeats (which instant is it?), a timestamp finer
than a microsecond, fractions or values beyond int64 for an integer, any other type.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.errors import ContractViolationError, brief, shown

# The one timestamp type of the lake: microseconds, UTC (what Feast and pandas read back).
TIMESTAMP = pa.timestamp("us", tz="UTC")


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind)


def _is_text(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        return _is_text(kind.value_type)
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


# Per contract type: which landed types may be cast to it (a checked, "safe" cast).
_CASTABLE: Mapping[pa.DataType, Callable[[pa.DataType], bool]] = {
    pa.int64(): _is_number,
    pa.float64(): _is_number,
    pa.string(): _is_text,
    pa.bool_(): pa.types.is_boolean,
    TIMESTAMP: lambda kind: pa.types.is_timestamp(kind) and kind.tz is not None,
}


def _example(walls: pa.ChunkedArray) -> str:
    """The first of some wall times, to the second."""
    first = walls.slice(0, 1).cast(pa.timestamp("s"), safe=False)
    return str(pc.strftime(first, "%Y-%m-%d %H:%M:%S")[0])


def _unclear_wall_times(name: str, column: pa.ChunkedArray, timezone: str) -> str:
    """What is wrong with wall times that name no instant, or two, in `timezone`."""
    early = pc.assume_timezone(column, timezone, ambiguous="earliest", nonexistent="earliest")
    late = pc.assume_timezone(column, timezone, ambiguous="latest", nonexistent="latest")
    unclear = pc.fill_null(pc.not_equal(early, late), False)
    walls = column.filter(unclear)
    # A skipped wall time is not the wall time of the instant just before the skip.
    skipped = pc.not_equal(pc.local_timestamp(early.filter(unclear)), walls)
    found = []
    for kind, picked in (
        ("skipped when clocks go forward", walls.filter(skipped)),
        ("repeated when clocks go back", walls.filter(pc.invert(skipped))),
    ):
        if len(picked):
            found.append(f"{len(picked)} {kind} (e.g. {_example(picked)})")
    return (
        f"column {shown(name)} ({column.type}) holds wall times of {timezone} (the source's "
        f"time zone) that name no single instant: {', '.join(found)}; write it with its "
        "time zone"
    )


def _localized(name: str, column: pa.ChunkedArray, timezone: str) -> pa.ChunkedArray:
    """Wall times (a timestamp without a time zone) as the instants they name in `timezone`;
    an error naming the column if a daylight-saving change skips or repeats one."""
    try:
        return pc.assume_timezone(column, timezone)
    except pa.ArrowInvalid:
        raise ContractViolationError(_unclear_wall_times(name, column, timezone)) from None


def conform_column(
    name: str, column: pa.ChunkedArray, target: pa.DataType, timezone: str
) -> pa.ChunkedArray:
    """`column` cast to `target` if that loses nothing (wall times read in `timezone`);
    else a one-line error naming it."""
    if column.type == target:
        return column
    landed = column.type
    if pa.types.is_timestamp(landed) and landed.tz is None and target == TIMESTAMP:
        column = _localized(name, column, timezone)
    # An all-null column (pandas writes an empty object column so) fits any type.
    if not (pa.types.is_null(column.type) or _CASTABLE[target](column.type)):
        raise ContractViolationError(
            f"column {shown(name)} is {landed}; the contract needs {target}"
        )
    try:
        return column.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        reason = str(error).strip().splitlines()[0]
        raise ContractViolationError(
            f"column {shown(name)} ({landed}) does not fit {target} without loss: {brief(reason)}"
        ) from error


def refuse_repeated_columns(names: list[str]) -> None:
    """Raise naming every column name a file holds more than once."""
    repeated = {name: count for name, count in Counter(names).items() if count > 1}
    if repeated:
        raise ContractViolationError(
            "; ".join(f"column {shown(name)} appears {n} times" for name, n in repeated.items())
        )


def conform(table: pa.Table, schema: pa.Schema, timezone: str) -> pa.Table:
    """The contract's columns of `table` that it holds, cast onto the contract's types;
    timestamps without a time zone are wall times in `timezone` (the source's).

    Columns the contract does not name are dropped; missing ones are left for the
    expectation suite to report. Every violation is listed, in one line.
    """
    refuse_repeated_columns(table.column_names)
    present = [field for field in schema if field.name in table.column_names]
    columns, problems = [], []
    for field in present:
        try:
            columns.append(
                conform_column(field.name, table.column(field.name), field.type, timezone)
            )
        except ContractViolationError as error:
            problems.append(str(error))
    if problems:
        raise ContractViolationError("; ".join(problems))
    return pa.Table.from_arrays(columns, schema=pa.schema(present))
