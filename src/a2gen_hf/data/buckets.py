"""Embedding tables sized from the data: hash-bucket counts chosen from the number of distinct ids.

The tokenizer hashes raw ids into ``[1, buckets)`` (0 is padding) when ``a2gen prepare`` / ``a2gen simulate`` write
the examples, and a model's tables have exactly the tokenizer's bucket counts. So the data folder decides the table
sizes: unless the user sets a bucket count, it is :func:`buckets_for` the number of distinct values seen, which is
recorded in ``a2gen_data.json`` (``"distinct"``). Hashing stays the same stable BLAKE2b function, so a model still
serves ids it never saw: they share a row with some other id.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

logger = logging.getLogger(__name__)

# Tokenizer fields, and the key of each one's distinct count in a2gen_data.json's "distinct" record.
BUCKET_FIELDS = {"user_buckets": "users", "item_buckets": "items", "side_feature_buckets": "side_values"}
# Largest table chosen from the data (rows); set a bucket count by hand above it.
MAX_DATA_SIZED_BUCKETS = 1 << 22
MIN_DATA_SIZED_BUCKETS = 16
# Rows per distinct value of a table sized from the data (before rounding up to a power of two): see buckets_for.
ROWS_PER_VALUE = 16


def buckets_for(distinct: int, cap: int = MAX_DATA_SIZED_BUCKETS) -> int:
    """
    Hash buckets for ``distinct`` values: the next power of two at or above ``ROWS_PER_VALUE * distinct + 1`` (bucket
    0 is padding), at least :data:`MIN_DATA_SIZED_BUCKETS`, at most ``cap``.

    With m buckets for n values, a value shares its row with another one with probability about ``1 - exp(-n / m)``:
    at 16 to 32 rows per value that is 3-6 % of the values (at the earlier 2-4 rows per value it was 22-39 %: 417 of
    a 2,000-video catalogue in 4,096 buckets, whose rows then mixed two videos' content, docs/results.md (e)).
    """
    if distinct < 0:
        raise ValueError(f"distinct={distinct} must be >= 0 (a count of distinct ids).")
    wanted = max(ROWS_PER_VALUE * int(distinct) + 1, MIN_DATA_SIZED_BUCKETS)
    return min(1 << (wanted - 1).bit_length(), cap)


def data_sized_buckets(distinct: Mapping[str, int], fixed: Mapping[str, int | None] | None = None) -> dict[str, int]:
    """
    The tokenizer's bucket counts: ``fixed[field]`` where the user set one, else :func:`buckets_for` the distinct
    count of ``distinct[BUCKET_FIELDS[field]]``.

    Args:
        distinct: ``{"users": ..., "items": ..., "side_values": ...}`` as recorded in ``a2gen_data.json``.
        fixed: ``{"item_buckets": 1_000_000, ...}``; ``None`` values are chosen from the data.
    """
    fixed = fixed or {}
    unknown = sorted(set(fixed) - set(BUCKET_FIELDS))
    if unknown:
        raise ValueError(f"Unknown bucket field(s) {unknown}; use {list(BUCKET_FIELDS)}.")
    return {
        field: int(fixed[field]) if fixed.get(field) is not None else buckets_for(distinct[key])
        for field, key in BUCKET_FIELDS.items()
    }


def bucket_record(distinct: Mapping[str, int], buckets: Mapping[str, int], chosen: Mapping[str, bool]) -> dict:
    """What ``a2gen_data.json`` records: the distinct counts, the bucket counts used and which came from the data."""
    return {
        "distinct": {key: int(distinct[key]) for key in BUCKET_FIELDS.values()},
        "buckets": {
            field: {"count": int(buckets[field]), "from": "data" if chosen[field] else "user"}
            for field in BUCKET_FIELDS
        },
    }


def format_bucket_record(summary: Mapping) -> str | None:
    """``embedding rows: users 2048 (1,000 distinct, from the data), ...`` of a summary holding :func:`bucket_record`
    (``None`` for a summary written before the counts were recorded)."""
    if "distinct" not in summary or "buckets" not in summary:
        return None
    parts = []
    for field, key in BUCKET_FIELDS.items():
        bucket = summary["buckets"][field]
        parts.append(f"{key} {bucket['count']} ({summary['distinct'][key]:,} distinct, set by the {bucket['from']})")
    return "embedding rows: " + ", ".join(parts)


# A hand-set table with fewer rows than this share of its distinct values is warned of (many values share a row).
FEW_ROWS_PER_VALUE = 1.0


def colliding_share(distinct: int, buckets: int) -> float:
    """The expected share of ``distinct`` values that share their row with another one in ``buckets`` hash buckets
    (bucket 0 is padding): ``1 - exp(-distinct / (buckets - 1))`` (:func:`buckets_for`)."""
    return 1.0 - math.exp(-distinct / max(buckets - 1, 1)) if distinct else 0.0


def check_bucket_bounds(buckets: Mapping[str, int]) -> None:
    """Refuse a bucket count (set by hand) outside the model config's bounds (``configuration_a2gen.SIZE_BOUNDS``:
    2 .. ``MAX_TABLE_ROWS``), naming it as ``item_buckets=...`` (the CLI names it ``--item-buckets``): before, 2**40
    was accepted here and a model with a trillion embedding rows failed later, far from the cause."""
    from ..configuration_a2gen import SIZE_BOUNDS

    for name, count in buckets.items():
        low, high, why = SIZE_BOUNDS[name]
        if count is not None and not low <= int(count) <= high:
            raise ValueError(f"{name}={count:,} must be between {low} and {high:,} ({why}); leave it unset to size the "
                             "table from the data.")


def warn_of_few_buckets(distinct: Mapping[str, int], fixed: Mapping[str, int]) -> None:
    """Warn of each bucket count set by hand (``fixed``) below the number of distinct values it hashes
    (:data:`FEW_ROWS_PER_VALUE` rows per value), with the expected share of colliding values and the size the data
    would choose."""
    for name, count in fixed.items():
        values = int(distinct[BUCKET_FIELDS[name]])
        if values and count - 1 < FEW_ROWS_PER_VALUE * values:
            logger.warning(
                f"{name}={count:,} (CLI: --{name.replace('_', '-')}) gives {values:,} distinct "
                f"{BUCKET_FIELDS[name].replace('_', ' ')} only {count - 1:,} row(s) (bucket 0 is padding): about {100 * colliding_share(values, count):.0f} % of them share a row "
                f"with another one and are told apart by nothing else. Leave {name} unset to size the table from "
                f"the data ({buckets_for(values):,} rows here), or set it larger."
            )
