"""
Warm start of A2Gen's (item, moment) table from who engaged where (beyond the paper; off by default).

The table of ``history_event_moment_source="table"`` (:class:`~a2gen_hf.modeling_a2gen.ItemMomentTable`) learns what
each moment of each item shows only through the gradient of the target's loss, diluted by CAM's pooling. Yet the
train split says it more directly: users who engage at the same moments of videos share a taste, and moments that
the same users engage at show the same thing (and leaving at a moment tells against it). :func:`engagement_layouts`
factorises the users x (item, moment) engagement matrix of the train split's sessions, leaves counting against
(a truncated SVD of its degree-normalised form), and
:func:`start_moment_table_from_events` writes the rows' vectors into the table before training, which then trains
them on or keeps them fixed (:data:`MOMENT_STARTS`). ``a2gen train`` / ``a2gen compare`` do it with
``--moment-warm-start trainable|frozen``; docs/model.md has the details, docs/results.md (e) the measurements.

Sessions are read from the train split's histories and targets (no validation or test row is read); a session that
several examples' histories repeat is counted once. Users are told apart by their ``user_id`` hash bucket.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from ..metrics import ranked_action_ids

logger = logging.getLogger(__name__)


@dataclass
class MomentSessions:
    """
    The distinct sessions of a split, one row each: ``users`` `(S,)` dense user indices, ``items`` `(S,)` item hash
    buckets, ``first`` `(S, A)` the first moment bucket of each engagement action (the tokenizer's actions other than
    its start and end actions, :func:`~a2gen_hf.metrics.ranked_action_ids`; -1: not done), ``ends`` `(S,)` the moment
    bucket of the end action (the leave; -1: none, or at or past the last moment bucket).
    """

    users: np.ndarray
    items: np.ndarray
    first: np.ndarray
    ends: np.ndarray

    def __len__(self) -> int:
        return len(self.items)


def _flat(column: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, np.ndarray]:
    """A list column -> (its values, the row of each value)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return pc.list_flatten(array), pc.list_parent_indices(array).to_numpy()


def _column(table: pa.Table, column: str) -> pa.ChunkedArray:
    """A column of the split; refused, naming it, when the split lacks it."""
    if column not in table.column_names:
        raise ValueError(f"The train split has no column {column!r}; the moment table's warm start reads the "
                         "histories' and targets' timelines (user_id, history_item_ids, history_action_ids, "
                         "history_action_seconds, item_id, action_ids, action_seconds).")
    return table.column(column)


def _list_column(table: pa.Table, column: str) -> tuple[pa.Array, np.ndarray]:
    """A list column of the split, flattened (:func:`_flat`)."""
    return _flat(_column(table, column))


def collect_sessions(dataset, tokenizer, moment_count: int, seconds_per_moment: float,
                     chunk_size: int = 20_000) -> MomentSessions:
    """
    The distinct sessions of a split (a ``datasets.Dataset``): every history item's timeline and the target's, with
    the example's ``user_id``. Times are seconds from the session's start, bucketed into ``moment_count`` buckets of
    ``seconds_per_moment`` as the model buckets them (:meth:`~a2gen_hf.modeling_a2gen.EventMoments.of_seconds`, with
    the tokenizer's time statistics). Reads ``chunk_size`` examples at a time.
    """
    from ..modeling_a2gen import EventMoments

    moments = EventMoments(moment_count, seconds_per_moment, tokenizer.time_log_mean, tokenizer.time_log_std)
    # The engagement actions, then the end action (its first moment is the leave's).
    tracked = [*ranked_action_ids(tokenizer), tokenizer.action_names.index(tokenizer.end_action) + 1]
    parts = [_chunk_sessions(dataset.with_format("arrow")[start:start + chunk_size], tracked, moments)
             for start in range(0, len(dataset), chunk_size)]
    users, items, first, fingerprints = (np.concatenate(column) for column in zip(*parts))
    keep = _distinct(users, items, fingerprints)
    _, user_index = np.unique(users[keep], return_inverse=True)
    ends = first[keep, -1]
    ends[ends >= moments.count - 1] = -1  # a leave in the last bucket may be a capped late one: no position
    return MomentSessions(user_index.astype(np.int64), items[keep], first[keep, :-1], ends)


def _distinct(users, items, fingerprints) -> np.ndarray:
    """Indices of the distinct sessions: a session repeated by several examples' histories (the same user, item and
    event times) counts once."""
    _, keep = np.unique(np.stack([users, items, fingerprints], axis=1), axis=0, return_index=True)
    return np.sort(keep)


def _chunk_sessions(table: pa.Table, tracked: list[int], moments):
    """The distinct sessions of a chunk of examples (:func:`_bucket_sessions`): the histories', then the targets'."""
    user_ids = _column(table, "user_id").to_numpy()
    # History sessions: (B, N) items, (B, N, E) actions and seconds.
    history_items, history_row = _list_column(table, "history_item_ids")
    actions, action_row = _flat(_list_column(table, "history_action_ids")[0])
    seconds, _ = _flat(_list_column(table, "history_action_seconds")[0])
    if len(actions) != len(seconds):
        raise ValueError("history_action_ids and history_action_seconds differ in length in the train split; each "
                         "event needs one action and one time.")
    target_actions, target_row = _list_column(table, "action_ids")
    target_seconds, _ = _list_column(table, "action_seconds")
    sessions = len(history_items)
    users = np.concatenate([user_ids[history_row], user_ids])
    items = np.concatenate([history_items.to_numpy(), _column(table, "item_id").to_numpy()])
    event_session = np.concatenate([action_row, sessions + target_row])
    event_action = np.concatenate([actions.to_numpy(), target_actions.to_numpy()])
    event_seconds = np.concatenate([seconds.to_numpy(), target_seconds.to_numpy()]).astype(np.float64)
    return _bucket_sessions(users, items, event_session, event_action, event_seconds, tracked, moments)


def _bucket_sessions(users, items, event_session, event_action, event_seconds, tracked: list[int], moments):
    """Per session: user, item, each engagement action's first moment bucket (-1: none) and a fingerprint of its
    timed events; the chunk's distinct sessions only. Events without a usable time (NaN, negative) are left out."""
    known = np.isfinite(event_seconds) & (event_seconds >= 0) & (event_action > 0)
    event_session, event_action, event_seconds = event_session[known], event_action[known], event_seconds[known]
    buckets = moments.of_seconds(event_seconds)
    count = len(items)
    first = np.full((count, len(tracked)), moments.count, dtype=np.int64)
    for column, action in enumerate(tracked):
        chosen = event_action == action
        np.minimum.at(first[:, column], event_session[chosen], buckets[chosen])
    first[first == moments.count] = -1
    fingerprint = np.zeros(count, dtype=np.float64)
    np.add.at(fingerprint, event_session, event_seconds * (1 + event_action))
    fingerprint = np.round(fingerprint * 1e3).astype(np.int64)
    keep = _distinct(users, items, fingerprint)
    return users[keep], items[keep], first[keep], fingerprint[keep]


def engagement_layouts(
    sessions: MomentSessions, keys_of, size: int, moment_count: int, spread: int = 1, leave_weight: float = 0.0
) -> tuple[torch.LongTensor, torch.Tensor, dict]:
    """
    The (item, moment) rows' vectors from who engaged where: the users x rows matrix ``M[u, r] = 1`` when user ``u``
    did an engagement action at row ``r`` in some session, or at a moment up to ``spread`` buckets before or after it
    in the same item (an item's content runs for several moments, and users react early or late in it), minus
    ``leave_weight`` where ``u`` left the item at ``r`` or up to ``spread`` moments from it (a user leaves most often
    at what they do not care for; a leave at the item's latest leave moment, where sessions that ran to the end
    close, is not counted: :func:`_leaves_before_end`), normalised by the square roots of both degrees
    (``D_u^-1/2 M D_r^-1/2``, each degree the user's or row's engagements and leaves + 1), factorised by a truncated
    SVD of rank ``size``; a row's vector is its right singular vector scaled by the square roots of the singular
    values, then given unit length. Rows that the same users engage with point the same way: on logs where users act
    on what a moment shows, they share what it shows. ``keys_of(items, moments)`` maps item buckets and moment
    buckets (elementwise, int64 tensors) to table keys.

    Returns the table keys `(R,)` of the rows with at least one engagement or counted leave (and a vector in the
    factorisation's span), their vectors `(R, size)` and a summary.
    """
    import scipy.sparse as sparse
    from scipy.sparse.linalg import svds

    def entries(done: np.ndarray, moments: np.ndarray):
        items, moments = torch.from_numpy(sessions.items[done]), torch.from_numpy(moments[done])
        for offset in range(-spread, spread + 1):
            yield sessions.users[done], keys_of(items, (moments + offset).clamp(0, moment_count - 1)).numpy()

    engaged = [entry for column in sessions.first.T for entry in entries(column >= 0, column)]
    left = list(entries(_leaves_before_end(sessions), sessions.ends)) if leave_weight else []
    users, keys = (np.concatenate(part) for part in zip(*engaged, *left))
    row_keys, columns = np.unique(keys, return_inverse=True)
    num_users = int(sessions.users.max()) + 1 if len(sessions) else 0
    rank = min(size, num_users - 1, len(row_keys) - 1)
    if rank < 1:
        raise ValueError(
            f"The train split has {len(row_keys)} (item, moment) rows with an engagement or a leave from {num_users} "
            "users; warming the moment table from them needs at least two of each."
        )
    engagements = sum(len(part) for part, _ in engaged)
    matrix = _binary(users[:engagements], columns[:engagements], num_users, len(row_keys))
    leaves = _binary(users[engagements:], columns[engagements:], num_users, len(row_keys))
    evidence = matrix + leaves  # how much is known of each user and row, for the degrees
    engaged_pairs = int(matrix.nnz)
    matrix = matrix - leave_weight * leaves
    user_degree = np.asarray(evidence.sum(axis=1)).ravel() + 1.0
    row_degree = np.asarray(evidence.sum(axis=0)).ravel() + 1.0
    normalised = sparse.diags(1 / np.sqrt(user_degree)) @ matrix @ sparse.diags(1 / np.sqrt(row_degree))
    _, values, right = svds(normalised, k=rank, random_state=0)
    vectors = right.T * np.sqrt(values)
    lengths = np.linalg.norm(vectors, axis=1)
    # A row outside the factorisation's span (e.g. engaged only by users who engage nothing else) says nothing.
    spanned = lengths > 1e-6 * lengths.max()
    row_keys, vectors = row_keys[spanned], vectors[spanned] / lengths[spanned, None]
    summary = {"rows": len(row_keys), "rows_engaged": len(spanned), "users": num_users,
               "engagements": engaged_pairs, "leaves": int(leaves.nnz), "rank": rank, "spread": spread,
               "leave_weight": leave_weight,
               "median_engagements_per_row": float(np.median(row_degree - 1))}
    return torch.from_numpy(row_keys), torch.from_numpy(vectors).float(), summary


def _binary(users: np.ndarray, columns: np.ndarray, num_users: int, num_rows: int):
    """The users x rows 0/1 matrix with a 1 at each (user, row) pair given (however often)."""
    import scipy.sparse as sparse

    matrix = sparse.csr_matrix((np.ones(len(users)), (users, columns)), shape=(num_users, num_rows))
    matrix.data[:] = 1.0
    return matrix


def _leaves_before_end(sessions: MomentSessions) -> np.ndarray:
    """Which sessions left before their item ended: a leave earlier than the item's latest leave (a session that
    watched to the end closes there, which says nothing against what the last moment shows)."""
    latest = np.full(int(sessions.items.max()) + 1 if len(sessions) else 0, -1, dtype=np.int64)
    np.maximum.at(latest, sessions.items, sessions.ends)
    return (sessions.ends >= 0) & (sessions.ends < latest[sessions.items])


# How training starts the (item, moment) table: as the model initialises it (zeros), or warmed from the train split
# and then trained on (``trainable``) or kept fixed (``frozen``).
MOMENT_STARTS = ("off", "trainable", "frozen")


def _check_start_name(start: str) -> None:
    if start not in MOMENT_STARTS:
        raise ValueError(f"moment_warm_start={start!r} is unknown; use one of {', '.join(MOMENT_STARTS)}.")


def check_moment_start(config, start: str = "trainable") -> None:
    """
    Refuse an unknown ``start`` (:data:`MOMENT_STARTS`), and a warm start of a config whose model has no
    (item, moment) table of vectors to warm, saying which options to set.
    """
    _check_start_name(start)
    if start == "off":
        return
    if not getattr(config, "history_event_item_moments", 0) or config.history_event_moment_source != "table":
        raise ValueError(
            f"Warming the moment table (moment_warm_start={start!r}, --moment-warm-start) needs A2Gen's (item, "
            "moment) table: "
            "set history_event_item_moments > 0 (--event-item-moments 64) and history_event_moment_source='table' "
            "(--event-moment-source table)."
        )
    if getattr(config, "history_event_moment_topics", 0):
        raise ValueError(
            "The moment table holds topic logits (history_event_moment_topics); its rows are not vectors to warm. "
            "Set history_event_moment_topics=0 or do not warm the table."
        )


def moment_table(model):
    """The model's :class:`~a2gen_hf.modeling_a2gen.ItemMomentTable`, or None (another network, or no table)."""
    from ..modeling_a2gen import ItemMomentTable

    features = getattr(getattr(model, "a2gen", model), "features", None)
    table = getattr(features, "item_moments", None)
    return table if isinstance(table, ItemMomentTable) else None


def apply_moment_start(model, tokenizer, dataset, start: str) -> dict | None:
    """
    What ``moment_warm_start`` asks of ``model`` before training (:data:`MOMENT_STARTS`): nothing for ``off`` or a
    network without an (item, moment) table (MMoE beside A2Gen in a comparison; :func:`check_moment_start` refuses a
    run whose A2Gen lacks the table), else :func:`start_moment_table_from_events`, frozen for ``frozen``. Returns the
    warm start's summary, or None.
    """
    _check_start_name(start)
    if start == "off" or moment_table(model) is None:
        return None
    return start_moment_table_from_events(model, tokenizer, dataset, frozen=start == "frozen")


@torch.no_grad()
def start_moment_table_from_events(
    model, tokenizer, dataset, size: int = 16, scale: float = 3.0, spread: int = 1, leave_weight: float = 0.5,
    frozen: bool = False,
) -> dict:
    """
    Write :func:`engagement_layouts` of ``dataset["train"]`` (or of ``dataset``, a split; ``spread`` moments either
    side; leaves weighted ``leave_weight``, 0 to leave them out: 0.5 told a simulated second's topic best,
    docs/results.md (e)) into the first ``size`` dimensions of the model's (item, moment) table, times ``scale``, the
    other dimensions of those rows zero, before training; with ``frozen`` the table then takes no gradient (training
    keeps the factorisation and learns to read it). Rows without an engagement or a counted leave stay as they are
    (zero at the start); keys that hash into one row average there. Returns the summary.
    """
    check_moment_start(model.config)
    table = moment_table(model)
    if table is None:
        raise ValueError(f"{type(model).__name__} has no (item, moment) table to warm; warm an A2Gen model.")
    features = getattr(model, "a2gen", model).features
    split = dataset["train"] if hasattr(dataset, "keys") else dataset
    sessions = collect_sessions(split, tokenizer, table.moments.count, table.moments.seconds_per_moment)

    def keys_of(items: torch.LongTensor, moments: torch.LongTensor) -> torch.LongTensor:  # elementwise
        return table.rows_at(features.item_table_rows(items), moments.unsqueeze(-1)).squeeze(-1)

    width = min(size, table.table.embedding_dim)
    keys, vectors, summary = engagement_layouts(sessions, keys_of, width, table.moments.count, spread, leave_weight)
    rows, inverse = keys.unique(return_inverse=True)  # keys hashed into one row average there
    sums = torch.zeros(len(rows), vectors.shape[1]).index_add_(0, inverse, vectors)
    counts = torch.zeros(len(rows)).index_add_(0, inverse, torch.ones(len(keys)))
    weight = table.table.weight
    weight[rows] = 0.0
    weight[rows, : vectors.shape[1]] = (scale * sums / counts[:, None]).to(weight.dtype)
    weight.requires_grad_(not frozen)
    summary.update(sessions=len(sessions), rows_written=len(rows), scale=scale, frozen=frozen)
    logger.info("moment table warmed from %d sessions: %s", len(sessions), summary)
    return summary
