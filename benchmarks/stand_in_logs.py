"""
Cut the stand-in logs of docs/results.md (d) from a Taobao-format CSV (``user_id,item_id,category_id,behavior,
timestamp``): slices by user id, item category or time, and the cold-start log, whose users have no history.

    python benchmarks/stand_in_logs.py --input ../shared/data/taobao_userbehavior_sample.csv --output data/stand_ins

writes one CSV per stand-in (``users_mod8_3.csv``, ``cat_mod4_1.csv``, ``days_first.csv``, ``cold_start_users.csv``,
...), each to be prepared with ``a2gen prepare --preset taobao --input FILE --on-bad-rows skip``. The slices are the
``awk`` commands of docs/results.md (``'$1 % 8 == 3'`` etc.); the cold-start log takes the first ``--cold-start-rows``
rows and gives every pair of one user's consecutive rows (in file order: the sample is ordered by user, then time) a
new user id, so that no user has more than two events.

The crawler log (``crawler_users_mod8_3.csv``) is the ``users_mod8_3`` slice plus one crawler-like user
(:data:`CRAWLER_USER`) holding ``--crawler-share`` of the rows (0.3): items drawn from the slice's rows (with their
categories), behaviours drawn with the slice's shares, times uniform over the slice's span, seeded (``--seed``).
"""

from __future__ import annotations

import argparse
import csv
import random
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from _arguments import fraction, positive_int


def field(row: list[str], index: int) -> float:
    """``row[index]`` read as ``awk`` reads a field in arithmetic (the slices were first cut with awk): its leading
    number, 0 for a missing or non-numeric field, so that a damaged row lands where awk put it and ``prepare``
    reports it."""
    match = re.match(r"\s*[-+]?\d*\.?\d+", row[index]) if index < len(row) else None
    return float(match.group()) if match else 0.0


# The split of the time slices: 29 November 2017 16:00 UTC, midway through the sample's nine days.
DAYS_SPLIT = 1511971200

SLICES: dict[str, Callable[[list[str]], bool]] = {
    **{f"users_mod2_{k}": (lambda row, k=k: field(row, 0) % 2 == k) for k in (0, 1)},
    **{f"users_mod4_{k}": (lambda row, k=k: field(row, 0) % 4 == k) for k in (0, 1, 2, 3)},
    **{f"users_mod8_{k}": (lambda row, k=k: field(row, 0) % 8 == k) for k in (1, 3, 5, 6)},
    "cat_mod2_0": lambda row: field(row, 2) % 2 == 0,
    **{f"cat_mod4_{k}": (lambda row, k=k: field(row, 2) % 4 == k) for k in (0, 1, 2, 3)},
    **{f"cat_mod8_{k}": (lambda row, k=k: field(row, 2) % 8 == k) for k in (0, 1, 2, 3, 6)},
    "days_first": lambda row: field(row, 4) < DAYS_SPLIT,
    "days_last": lambda row: field(row, 4) >= DAYS_SPLIT,
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="a Taobao-format CSV without a header")
    parser.add_argument("--output", required=True, help="the folder for the stand-ins' CSV files")
    parser.add_argument("--cold-start-rows", type=positive_int, default=12000,
                        help="rows of the cold-start log; %(default)s")
    parser.add_argument("--crawler-share", type=fraction, default=0.3,
                        help="the crawler-like user's share of the crawler log's rows; %(default)s")
    parser.add_argument("--seed", type=int, default=0, help="the crawler's random draws; %(default)s")
    args = parser.parse_args()
    if args.crawler_share >= 1:
        parser.error(f"--crawler-share {args.crawler_share} must be below 1 (the slice's own rows stay)")
    if not Path(args.input).is_file():
        parser.error(f"--input {args.input} is not a file")
    return args


def cold_start_rows(rows: Iterable[list[str]]) -> list[list[str]]:
    """``rows`` with every pair of one user's consecutive rows under a new user id (1, 2, ...), in file order."""
    by_user: dict[str, list[list[str]]] = {}
    for row in rows:
        by_user.setdefault(row[0], []).append(row)
    out, next_id = [], 1
    for events in by_user.values():
        for start in range(0, len(events), 2):
            out.extend([str(next_id), *row[1:]] for row in events[start:start + 2])
            next_id += 1
    return out


CRAWLER_USER = "999999999"  # no user of the Tianchi sample: ids there have at most 7 digits
CRAWLER_SLICE = "users_mod8_3"


def crawler_rows(rows: list[list[str]], share: float, seed: int) -> list[list[str]]:
    """``rows`` plus a crawler-like user (:data:`CRAWLER_USER`) holding ``share`` of all rows: each of its rows takes
    the item (with its category) of one random row of ``rows``, the behaviour of another and a time uniform over the
    span of their times; its rows sorted by time, after the others."""
    draws = random.Random(seed)
    times = [int(row[4]) for row in rows if row[4].lstrip("-").isdigit()]
    first, last = min(times), max(times)
    items, behaviours = [(row[1], row[2]) for row in rows], [row[3] for row in rows]
    added = []
    for _ in range(round(share / (1 - share) * len(rows))):
        item, category = draws.choice(items)
        added.append([CRAWLER_USER, item, category, draws.choice(behaviours), str(draws.randint(first, last))])
    return rows + sorted(added, key=lambda row: int(row[4]))


def write_rows(path: Path, rows: Iterable[list[str]]) -> int:
    from a2gen_hf.output_folders import replacing_file

    count = 0
    with replacing_file(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def main() -> None:
    args = parse_args()
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    with open(args.input, newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    for name, keep in SLICES.items():
        print(f"{name}.csv: {write_rows(output / f'{name}.csv', (row for row in rows if keep(row))):,} rows")
    cold = cold_start_rows(rows[: args.cold_start_rows])
    print(f"cold_start_users.csv: {write_rows(output / 'cold_start_users.csv', cold):,} rows")
    sliced = [row for row in rows if SLICES[CRAWLER_SLICE](row)]
    crawler = crawler_rows(sliced, args.crawler_share, args.seed)
    print(f"crawler_{CRAWLER_SLICE}.csv: {write_rows(output / f'crawler_{CRAWLER_SLICE}.csv', crawler):,} rows "
          f"(user {CRAWLER_USER}: {len(crawler) - len(sliced):,})")


if __name__ == "__main__":
    main()
