"""How to read one kind of interaction log: :class:`LogPreset` and the shipped :data:`PRESETS`.

A preset is plain data (column names, units, the action mapping); it imports nothing of the data package, so the
readers (``validation.py``, ``partitions.py``) and the converter (``logs.py``) all depend on it and never on each
other for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..configuration_a2gen import ECOMMERCE_ACTIONS, SHORT_VIDEO_ACTIONS

TIME_UNITS = ("s", "ms", "mmdd")


@dataclass(frozen=True)
class LogPreset:
    """How to read one kind of log.

    Two layouts exist. *Event logs* (``action_column`` set) hold one event per row; sessions are cut per (user, item)
    by the gap rule. An event log may also name a ``duration_column`` (e.g. a short-video log's watch time, logged on
    its ``play`` rows and left empty on the others): each row's duration runs from that row's time, and a session
    without a logged end action ends where the last of its logged durations ends (at its last event if that is
    later, or if no row logs one); a logged end action keeps its own time. *View logs* (``duration_column`` without ``action_column``, with 0/1
    ``flag_columns``) hold one whole session per row: the start action at the row's time, the flagged actions with
    unknown times, the end action after ``duration``.

    Args:
        name: the preset's name.
        action_names / start_action / end_action: the vocabulary, as in :class:`A2GenConfig`.
        user_column / item_column / time_column: column names of the raw user id, item id and event time.
        columns: the column names, in order, of header-less files; ``None`` when the file has a header.
        delimiter: CSV delimiter.
        time_unit: ``"s"`` (Unix seconds), ``"ms"`` (Unix milliseconds) or ``"mmdd"`` (a day of ``year``).
        year: the year of ``"mmdd"`` times.
        time_window: ``(first, last)`` Unix seconds; rows outside are bad rows (``outside_window``).
        action_column / action_mapping: event logs: the action column and its raw values -> action names.
        flag_columns: view logs: 0/1 columns -> action names, listed in the order the actions take in a sequence
            (refused with ``action_column``: an event log's actions are its rows).
        duration_column / duration_unit: time from the start to the end action (``"s"`` or ``"ms"``). View logs:
            required, a value on every row. Event logs: optional, and a cell may be empty (unknown); a negative or
            non-numeric value is a bad row either way. See docs/data.md ("Durations of event logs").
        side_feature_columns: item side features (category, seller, ...), hashed per field; empty = unknown.
        quote_char: CSV quoting (e.g. ``'"'``), for logs that quote values; ``None`` (the shipped presets, whose
            logs never quote): no quoting, so a stray quote is part of its value and can never join lines. Quoted
            values may not span lines.
    """

    name: str
    action_names: tuple[str, ...]
    start_action: str
    end_action: str
    user_column: str
    item_column: str
    time_column: str
    columns: tuple[str, ...] | None = None
    delimiter: str = ","
    time_unit: str = "s"
    year: int | None = None
    time_window: tuple[int, int] | None = None
    action_column: str | None = None
    action_mapping: dict[str, str] = field(default_factory=dict)
    flag_columns: dict[str, str] = field(default_factory=dict)
    duration_column: str | None = None
    duration_unit: str = "ms"
    side_feature_columns: tuple[str, ...] = ()
    quote_char: str | None = None

    def __post_init__(self):
        problems = []
        if self.action_column is None and self.duration_column is None:
            problems.append(
                "flag_columns make a view log (one session per row), which needs duration_column, the time from its "
                "start to its end action; an event log sets action_column instead" if self.flag_columns else
                "set action_column (an event log: one event per row, optionally with a duration_column) or "
                "duration_column (a view log: one session per row)"
            )
        if self.action_column is not None and self.flag_columns:
            problems.append(
                f"flag_columns {list(self.flag_columns)} belong to view logs (one session per row, no action_column); "
                f"an event log's actions are its rows' {self.action_column!r} values: map them with action_mapping"
            )
        # Each message names the field and, for a generic log, its command-line flag (the fields are also the
        # --generic-* options of `a2gen prepare`, whose users never see the field names).
        roles = {**{action: "a value of action_mapping (CLI: --generic-action-mapping)"
                    for action in self.action_mapping.values()},
                 **{action: "an action of flag_columns" for action in self.flag_columns.values()},
                 self.start_action: "start_action (CLI: --generic-start-action)",
                 self.end_action: "end_action (CLI: --generic-end-action)"}  # fmt: skip
        for action in sorted(roles):
            if action not in self.action_names:
                problems.append(f"action {action!r}, {roles[action]}, is not in action_names "
                                f"{list(self.action_names)} (CLI: --generic-actions): add it there or map to one of "
                                "them")
        if self.time_unit not in TIME_UNITS or self.duration_unit not in ("s", "ms"):
            problems.append(f"time_unit must be one of {list(TIME_UNITS)} and duration_unit 's' or 'ms'")
        if self.quote_char is not None and (
            len(self.quote_char) != 1 or self.quote_char in "\n\r" or self.quote_char == self.delimiter
        ):
            problems.append(f"quote_char must be one character other than a line break and the delimiter "
                            f"({self.delimiter!r}), or None; got {self.quote_char!r} (CLI: --quote-char, or none for "
                            "None; the delimiter: --delimiter)")
        if self.time_unit == "mmdd" and self.year is None:
            problems.append("time_unit='mmdd' needs the year")
        if self.time_window is not None and not (
            len(self.time_window) == 2 and self.time_window[0] <= self.time_window[1]
        ):
            problems.append(f"time_window must be (first, last) Unix seconds with first <= last or None, got "
                            f"{self.time_window!r}")
        roles = self.needed_columns()
        if len(set(roles)) < len(roles):
            twice = sorted({name for name in roles if roles.count(name) > 1})
            problems.append(f"column(s) {twice} are given more than one role (user, item, time, action, flag, "
                            "duration or side feature column); give each role its own column")  # fmt: skip
        if self.columns is not None and not set(self.needed_columns()) <= set(self.columns):
            problems.append(f"columns {list(self.columns)} lack some of {self.needed_columns()}")
        if problems:
            raise ValueError(f"Invalid LogPreset {self.name!r}: " + "; ".join(problems) + ".")

    @property
    def is_view_log(self) -> bool:
        """One whole session per row (``duration_column`` without ``action_column``); an event log, with or without
        a duration column, is not one."""
        return self.action_column is None and self.duration_column is not None

    def empty_means_unknown(self, name: str) -> bool:
        """Whether an empty value of the number column ``name`` is read as unknown (NaN) rather than a bad row: an
        event log's duration, which only some of its rows log (a view log needs its duration on every row)."""
        return name == self.duration_column and not self.is_view_log

    def action_id(self, name: str) -> int:
        return self.action_names.index(name) + 1

    def required_string_columns(self) -> list[str]:
        return [self.user_column, self.item_column]

    def string_columns(self) -> list[str]:
        return [*self.required_string_columns(), *self.side_feature_columns]

    def number_columns(self) -> list[tuple[str, str]]:
        pairs = [(self.time_column, self.time_unit)]
        if self.duration_column is not None:
            pairs.append((self.duration_column, self.duration_unit))
        return pairs

    def needed_columns(self) -> list[str]:
        names = [*self.string_columns(), *(name for name, _ in self.number_columns()), *self.flag_columns]
        if self.action_column is not None:
            names.append(self.action_column)
        return names

    def describe_row(self) -> str:
        return f"columns {list(self.columns) if self.columns is not None else self.needed_columns()}"


PRESETS: dict[str, LogPreset] = {
    # Tianchi "User Behavior Data from Taobao for Recommendation" (UserBehavior.csv).
    "taobao": LogPreset(
        name="taobao",
        action_names=tuple(ECOMMERCE_ACTIONS),
        start_action="click",
        end_action="leave",
        columns=("user_id", "item_id", "category_id", "behavior_type", "timestamp"),
        user_column="user_id",
        item_column="item_id",
        time_column="timestamp",
        time_window=(1511539200, 1512316799),
        action_column="behavior_type",
        action_mapping={"pv": "click", "fav": "collect", "cart": "cart", "buy": "buy"},
        side_feature_columns=("category_id",),
    ),
    # IJCAI-15 Tmall repeat-buyers "user_log_format1.csv": day-level times (mmdd of 2015).
    "tmall": LogPreset(
        name="tmall",
        action_names=tuple(ECOMMERCE_ACTIONS),
        start_action="click",
        end_action="leave",
        user_column="user_id",
        item_column="item_id",
        time_column="time_stamp",
        time_unit="mmdd",
        year=2015,
        action_column="action_type",
        action_mapping={"0": "click", "1": "cart", "2": "buy", "3": "collect"},
        side_feature_columns=("cat_id", "seller_id", "brand_id"),
    ),
    # KuaiRand "log_standard_*.csv": one row per view; interactions have no time of their own.
    "kuairand": LogPreset(
        name="kuairand",
        action_names=tuple(SHORT_VIDEO_ACTIONS),
        start_action="start",
        end_action="leave",
        user_column="user_id",
        item_column="video_id",
        time_column="time_ms",
        time_unit="ms",
        flag_columns={"is_like": "like", "is_follow": "follow", "is_forward": "forward", "is_comment": "comment"},
        duration_column="play_time_ms",
        duration_unit="ms",
    ),
}


def preset_named(preset: str | LogPreset) -> LogPreset:
    """``preset`` itself, or the preset of :data:`PRESETS` with that name."""
    if isinstance(preset, LogPreset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; use one of {sorted(PRESETS)} or pass a LogPreset.")
    return PRESETS[preset]


def parse_delimiter(text: str, flag: str = "--delimiter") -> str:
    """A delimiter as given on the command line (``a2gen prepare --delimiter`` / ``--generic-delimiter``, named by
    ``flag``): one character, ``\\t`` (or ``tab``) for a tab. Errors name the flag and the value."""
    named = {"\\t": "\t", "tab": "\t"}
    delimiter = named.get(text.lower(), text)
    if len(delimiter) != 1 or delimiter in "\r\n\"":
        raise ValueError(
            f"{flag} {text!r} is not one character (other than a quote or a line break); write e.g. ';' or \\t "
            "for a tab."
        )
    return delimiter


def parse_quote_char(text: str) -> str | None:
    """A quote character as given on the command line (``a2gen prepare --quote-char``): one character, or ``none``
    (values are read as written, quotes included). Errors name the value."""
    if text.strip().lower() == "none":
        return None
    if len(text) != 1 or text in "\r\n":
        raise ValueError(f"--quote-char {text!r} is not one character (other than a line break) or none; write e.g. "
                         "'\"' for CSV's double quotes.")
    return text


def parse_time_window(text: str) -> tuple[int, int] | None:
    """
    A time window as given on the command line (``a2gen prepare --time-window``): ``"FIRST,LAST"`` Unix seconds
    -> ``(first, last)``, or ``"none"`` -> ``None`` (every time kept). Errors name the value and the form.
    """
    if text.strip().lower() == "none":
        return None
    parts = [part.strip() for part in text.split(",")]
    try:
        first, last = (int(part) for part in parts)
    except ValueError:
        raise ValueError(
            f"--time-window {text!r} is not FIRST,LAST (two whole Unix seconds, e.g. 1511539200,1512316799) or none."
        ) from None
    if first > last:
        raise ValueError(f"--time-window {text!r}: FIRST ({first}) is after LAST ({last}); give FIRST <= LAST.")
    return first, last
