"""SQLite schema migrations, versioned in the database with `PRAGMA user_version`."""

from __future__ import annotations

# Each entry moves the schema from version N to N+1 and is never edited once
# released: add a new entry instead. Cursors come from an AUTOINCREMENT key,
# so SQLite never hands out a cursor twice, even after rows are deleted.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE channels (
      name TEXT PRIMARY KEY,
      schema TEXT,
      form TEXT NOT NULL,
      description TEXT NOT NULL,
      metadata TEXT NOT NULL
    );
    CREATE TABLE events (
      cursor INTEGER PRIMARY KEY AUTOINCREMENT,
      id TEXT NOT NULL UNIQUE,
      channel TEXT NOT NULL REFERENCES channels(name),
      timestamp_ns INTEGER NOT NULL,
      source TEXT,
      kind TEXT NOT NULL,
      payload TEXT NOT NULL,
      schema TEXT,
      metadata TEXT NOT NULL,
      correlation_id TEXT,
      parent_ids TEXT NOT NULL
    );
    CREATE INDEX events_by_channel ON events(channel, cursor);
    CREATE INDEX events_by_channel_kind ON events(channel, kind, cursor);
    CREATE TABLE subscriptions (
      id TEXT PRIMARY KEY,
      channel TEXT NOT NULL REFERENCES channels(name),
      cursor INTEGER NOT NULL DEFAULT 0,
      consumer TEXT,
      batch_size INTEGER NOT NULL,
      kind TEXT,
      metadata TEXT NOT NULL
    );
    CREATE TABLE artifacts (
      id TEXT PRIMARY KEY,
      channel TEXT REFERENCES channels(name),
      media_type TEXT NOT NULL,
      size INTEGER NOT NULL,
      sha256 TEXT NOT NULL,
      metadata TEXT NOT NULL,
      event_ids TEXT NOT NULL
    );
    CREATE TABLE snapshots (
      name TEXT PRIMARY KEY,
      channel TEXT REFERENCES channels(name),
      timestamp_ns INTEGER NOT NULL,
      value TEXT NOT NULL,
      schema TEXT,
      source_event_id TEXT,
      metadata TEXT NOT NULL
    );
    """,
    # 2: SeekSubscription by timestamp finds the first event at or after an
    # instant without scanning the channel.
    """
    CREATE INDEX events_by_channel_timestamp ON events(channel, timestamp_ns);
    """,
    # 3: an event may keep the form it is served in, so reads skip decoding:
    # `wire` holds the whole event as encoded by the API (without its
    # cursor), and payload and metadata may hold a BLOB, the value in the
    # wire form the API received it in (TEXT still means JSON).
    """
    ALTER TABLE events ADD COLUMN wire BLOB;
    """,
    # 4: costs that stay flat as the store grows. Each event records its
    # position among its channel's events (`seq`) and among those of its kind
    # (`kind_seq`), so the number of events after a cursor is two index
    # lookups rather than a count; and the latest timestamp of its channel up
    # to it (`ts_high`), which never decreases along the channel, so the
    # first event at or after an instant is one index lookup. An event with
    # a wire form keeps its payload and metadata only there (the columns
    # hold an empty BLOB). Subscriptions are found by channel through an index.
    """
    ALTER TABLE events ADD COLUMN seq INTEGER;
    ALTER TABLE events ADD COLUMN kind_seq INTEGER;
    ALTER TABLE events ADD COLUMN ts_high INTEGER;
    UPDATE events SET seq = ranked.seq, kind_seq = ranked.kind_seq, ts_high = ranked.ts_high
      FROM (
        SELECT cursor,
          row_number() OVER (PARTITION BY channel ORDER BY cursor) AS seq,
          row_number() OVER (PARTITION BY channel, kind ORDER BY cursor) AS kind_seq,
          max(timestamp_ns) OVER (
            PARTITION BY channel ORDER BY cursor ROWS UNBOUNDED PRECEDING
          ) AS ts_high
        FROM events
      ) AS ranked
      WHERE events.cursor = ranked.cursor;
    UPDATE events SET payload = x'', metadata = x'' WHERE wire IS NOT NULL;
    DROP INDEX events_by_channel_timestamp;
    CREATE INDEX events_by_channel_time ON events(channel, ts_high);
    CREATE INDEX subscriptions_by_channel ON subscriptions(channel, id);
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)
