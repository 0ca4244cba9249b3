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
)

SCHEMA_VERSION = len(MIGRATIONS)
