"""A batched, idempotent COPY sink for one table with a natural key.

`await sink.put(row)` adds a row (a tuple in `columns` order) to a bounded buffer; a background
task writes the buffer in batches of `batch_rows`, or whatever is there once the oldest row has
waited `flush_interval_s`, over `writers` connections (two by default: one batch's COPY
overlaps the previous one's INSERT).

Idempotence, at COPY speed: a batch is first COPied straight into the table under a savepoint.
The table's unique key (which `ON CONFLICT` needs anyway) refuses the whole COPY if any row is
already there; then the batch goes the careful way, in the same transaction: COPY into a
temporary staging table and `INSERT … SELECT … ON CONFLICT (key) DO NOTHING` (or `DO UPDATE` of
`update` columns, the last row of a key in the batch winning). After such a batch the sink
stays careful until a batch meets no duplicates, so a replay pays one refused COPY, not one per
batch. Either way at-least-once delivery and replays never duplicate a row.

Backpressure: the buffer holds at most `max_rows` rows (the batch being written included); `put`
waits for room, so a producer slows down to the database's pace instead of buffering without
bound. Outages: a batch that fails on a connection error stays in the sink and is retried on a
new connection with capped exponential backoff (and jitter) until it is written; nothing is
dropped, and a batch whose commit was lost on the wire is harmless to write again. Any other
database error stops the sink: the rows stay buffered and the next `put`, `flush` or `close`
raises `SinkError`. A caller commits its input (e.g. Kafka offsets) only after `flush()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql

from ioc.config import StorageSettings
from ioc.retry import RETRYABLE

log = logging.getLogger(__name__)

Row = Sequence[Any]


class SinkError(RuntimeError):
    """The sink stopped on an error that retrying cannot fix (its rows are still buffered)."""


@dataclass
class SinkStats:
    """What the sink did so far."""

    written: int = 0  # rows in batches that committed
    inserted: int = 0  # of those, new rows (the rest were duplicates, or updates)
    batches: int = 0
    retries: int = 0  # failed attempts that were retried
    waits: int = 0  # times a put waited for room (backpressure)
    careful: int = 0  # batches written through the staging table (they met existing rows)


class CopySink:
    """Batched idempotent writes into `table`; see the module doc."""

    def __init__(
        self,
        dsn: str,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        *,
        update: Sequence[str] = (),
        batch_rows: int = 5000,
        flush_interval_s: float = 1.0,
        max_rows: int = 50_000,
        retry_initial_s: float = 0.1,
        retry_max_s: float = 30.0,
        copy: bool = True,
        connect_timeout_s: float = 5.0,
        writers: int | None = None,
        optimistic: bool = True,
    ) -> None:
        if not set(key) <= set(columns) or not set(update) <= set(columns) - set(key):
            raise ValueError("key and update must be columns; update must not name key columns")
        if batch_rows < 1 or max_rows < batch_rows:
            raise ValueError("need 1 <= batch_rows <= max_rows")
        # Two writers overlap one batch's COPY with the previous batch's INSERT; with DO UPDATE
        # one, so that the last row of a key put is the one that stays.
        writers = writers or (1 if update else 2)
        if writers < 1 or (update and writers > 1):
            raise ValueError("writers must be >= 1, and 1 with update columns")
        self.writers = writers
        self.dsn, self.table = dsn, table
        self.columns, self.key, self.update = tuple(columns), tuple(key), tuple(update)
        self.batch_rows, self.flush_interval_s, self.max_rows = (
            batch_rows,
            flush_interval_s,
            max_rows,
        )
        self.retry_initial_s, self.retry_max_s = retry_initial_s, retry_max_s
        self.copy, self.connect_timeout_s = copy, connect_timeout_s
        self.stats = SinkStats()
        self._buffer: deque[Row] = deque()
        self._flying: dict[int, list[Row]] = {}  # batches being written, by sequence number
        self._batches = 0  # batches taken so far
        self._oldest = 0.0  # monotonic time the oldest buffered row arrived
        self._flush_wanted = False
        self._closing = False
        self._error: BaseException | None = None
        self._changed = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []
        self._conns: list[AsyncConnection | None] = [None] * writers
        self._statements = self._build_statements()
        self.optimistic = optimistic  # False: always through the staging table
        self._optimistic = optimistic  # COPY straight into the table until it meets a duplicate

    # -- producer side ---------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Rows put but not yet committed."""
        return len(self._buffer) + sum(map(len, self._flying.values()))

    async def put(self, row: Row) -> None:
        """Add one row; waits while the sink is full."""
        await self.put_many((row,))

    async def put_many(self, rows: Iterable[Row]) -> None:
        """Add rows in order; waits for room whenever the sink is full."""
        self._start()
        remaining = iter(rows)
        while True:
            async with self._changed:
                for row in remaining:
                    if len(row) != len(self.columns):
                        raise ValueError(f"row has {len(row)} values, {len(self.columns)} columns")
                    if self.pending >= self.max_rows:
                        self.stats.waits += 1
                        await self._changed.wait_for(self._room)
                    self._raise_if_failed()
                    if self._closing:
                        raise SinkError(f"sink for {self.table} is closed")
                    if not self._buffer:
                        self._oldest = time.monotonic()
                    self._buffer.append(row)
                    if len(self._buffer) % self.batch_rows == 0:
                        self._changed.notify_all()
                        break  # let a writer take the full batch while we go on
                else:
                    self._raise_if_failed()
                    return
            await asyncio.sleep(0)

    def _room(self) -> bool:
        return self.pending < self.max_rows or self._error is not None or self._closing

    async def flush(self) -> None:
        """Return once every row put so far is committed (waits through outages)."""
        self._start()
        async with self._changed:
            self._flush_wanted = True
            self._changed.notify_all()
            await self._changed.wait_for(lambda: self.pending == 0 or self._error is not None)
            self._flush_wanted = False
            self._raise_if_failed()

    async def close(self) -> None:
        """Flush, then stop the writer and close its connection; raises `SinkError` when the
        sink had stopped with rows not written."""
        try:
            if self._tasks and self._error is None:
                await self.flush()
            elif self.pending:
                self._raise_if_failed()
        finally:
            self._closing = True
            if self._tasks:
                async with self._changed:
                    self._changed.notify_all()
                await asyncio.gather(*self._tasks, return_exceptions=True)
                self._tasks = []
            await self._disconnect_all()

    async def abort(self) -> list[Row]:
        """Stop at once without flushing (e.g. shutting down while the database is away);
        returns the rows not known to be committed, in order. Their input must not be
        acknowledged: a redelivery writes them later, without duplicates."""
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._disconnect_all()
        left = [row for _, batch in sorted(self._flying.items()) for row in batch]
        left.extend(self._buffer)
        self._flying.clear()
        self._buffer.clear()
        async with self._changed:
            self._changed.notify_all()  # a blocked put sees the sink closed
        return left

    async def __aenter__(self) -> CopySink:
        self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise SinkError(f"sink for {self.table} stopped: {self._error}") from self._error

    def _start(self) -> None:
        if self._closing:
            raise SinkError(f"sink for {self.table} is closed")
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(self._run(slot), name=f"copy-sink-{self.table}-{slot}")
                for slot in range(self.writers)
            ]

    # -- writer side -----------------------------------------------------------------------

    def _due(self) -> bool:
        if not self._buffer:
            return False
        return (
            len(self._buffer) >= self.batch_rows
            or self._flush_wanted
            or self._closing
            or time.monotonic() - self._oldest >= self.flush_interval_s
        )

    async def _run(self, slot: int) -> None:
        try:
            while self._error is None:
                async with self._changed:
                    while not self._due():
                        if (self._closing and not self._buffer) or self._error is not None:
                            return
                        timeout = None
                        if self._buffer:
                            timeout = self._oldest + self.flush_interval_s - time.monotonic()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._changed.wait(), timeout)
                    count = min(self.batch_rows, len(self._buffer))
                    batch = [self._buffer.popleft() for _ in range(count)]
                    number, self._batches = self._batches, self._batches + 1
                    self._flying[number] = batch  # what is left is due: a backlog goes out now
                # On an error the batch stays in `_flying`: still pending, and `abort` returns it.
                await self._write_with_retry(batch, slot)
                async with self._changed:
                    del self._flying[number]
                    self._changed.notify_all()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.error("sink for %s stopped: %s", self.table, error)
            async with self._changed:
                self._error = error
                self._changed.notify_all()

    async def _write_with_retry(self, batch: list[Row], slot: int) -> None:
        attempt = 0
        while True:
            try:
                inserted = await self._write(batch, slot)
            except RETRYABLE as error:
                await self._disconnect(slot)
                delay = min(self.retry_max_s, self.retry_initial_s * 2**attempt)
                delay = delay / 2 + random.uniform(0, delay / 2)
                attempt += 1
                self.stats.retries += 1
                log.warning(
                    "sink for %s: %d rows not written (%s); retry %d in %.1fs",
                    self.table,
                    len(batch),
                    str(error).strip().splitlines()[0] if str(error).strip() else type(error),
                    attempt,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            if attempt:
                log.info("sink for %s: written after %d retries", self.table, attempt)
            self.stats.written += len(batch)
            self.stats.inserted += inserted
            self.stats.batches += 1
            return

    async def _connection(self, slot: int) -> AsyncConnection:
        conn = self._conns[slot]
        if conn is None or conn.closed:
            conn = self._conns[slot] = await AsyncConnection.connect(
                self.dsn, connect_timeout=max(1, round(self.connect_timeout_s))
            )
        return conn

    async def _disconnect(self, slot: int) -> None:
        conn, self._conns[slot] = self._conns[slot], None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _disconnect_all(self) -> None:
        for slot in range(self.writers):
            await self._disconnect(slot)

    async def _write(self, batch: list[Row], slot: int) -> int:
        """One batch in one transaction; the number of new rows."""
        conn = await self._connection(slot)
        create, copy, insert, values, direct = self._statements
        async with conn.transaction(), conn.cursor() as cursor:
            if self.copy and self._optimistic:
                try:
                    async with conn.transaction(), cursor.copy(direct) as writer:  # savepoint
                        for row in batch:
                            await writer.write_row(row)
                    return len(batch)
                except psycopg.errors.UniqueViolation:
                    self._optimistic = False  # a replay or an overlap: careful for a while
            if self.copy:
                self.stats.careful += 1
                await cursor.execute(create)
                async with cursor.copy(copy) as writer:
                    for row in batch:
                        await writer.write_row(row)
                await cursor.execute(insert)
                inserted = max(cursor.rowcount, 0)
                # no duplicates left: fast again
                self._optimistic = self.optimistic and inserted == len(batch)
                return inserted
            await cursor.executemany(values, batch)
            return max(cursor.rowcount, 0)

    def _build_statements(self) -> tuple[sql.Composed, ...]:
        table, stage = sql.Identifier(self.table), sql.Identifier(f"stage_{self.table}")
        columns = sql.SQL(", ").join(map(sql.Identifier, self.columns))
        key = sql.SQL(", ").join(map(sql.Identifier, self.key))
        if self.update:
            action = sql.SQL("DO UPDATE SET {}").format(
                sql.SQL(", ").join(
                    sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(name))
                    for name in self.update
                )
            )
            # One row per key (the last one put): DO UPDATE cannot touch a row twice.
            source = sql.SQL(
                "SELECT DISTINCT ON ({key}) {columns} FROM {stage} ORDER BY {key}, ctid DESC"
            )
        else:
            action = sql.SQL("DO NOTHING")
            source = sql.SQL("SELECT {columns} FROM {stage}")
        source = source.format(key=key, columns=columns, stage=stage)
        conflict = sql.SQL("ON CONFLICT ({key}) {action}").format(key=key, action=action)
        create = sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS"
            " AS SELECT {columns} FROM {table} WITH NO DATA"
        ).format(stage=stage, columns=columns, table=table)
        copy = sql.SQL("COPY {stage} ({columns}) FROM STDIN").format(stage=stage, columns=columns)
        insert = sql.SQL("INSERT INTO {table} ({columns}) {source} {conflict}").format(
            table=table, columns=columns, source=source, conflict=conflict
        )
        values = sql.SQL("INSERT INTO {table} ({columns}) VALUES ({marks}) {conflict}").format(
            table=table,
            columns=columns,
            marks=sql.SQL(", ").join(sql.Placeholder() * len(self.columns)),
            conflict=conflict,
        )
        direct = sql.SQL("COPY {table} ({columns}) FROM STDIN").format(table=table, columns=columns)
        return create, copy, insert, values, direct


def sink_from_settings(
    dsn: str,
    storage: StorageSettings,
    table: str,
    columns: Sequence[str],
    key: Sequence[str],
    **kwargs: Any,
) -> CopySink:
    """A sink with `StorageSettings`' batch size, flush interval, bound and retry cap."""
    options = {
        "batch_rows": storage.sink_batch_rows,
        "flush_interval_s": storage.sink_flush_interval_s,
        "max_rows": storage.sink_max_rows,
        "retry_max_s": storage.sink_retry_max_s,
    } | kwargs
    return CopySink(dsn, table, columns, key, **options)
