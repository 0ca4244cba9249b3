"""The PostgreSQL schema, as numbered migrations applied in order under an advisory lock."""

from __future__ import annotations

# Key of the advisory lock of migrations, per database: servers starting at
# once migrate one after the other.
MIGRATION_LOCK_KEY = 0x535353_02

# MIGRATIONS[n] takes the schema from version n to n + 1.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE channels (
      name text PRIMARY KEY,
      schema text,
      form text NOT NULL,
      description text NOT NULL,
      metadata jsonb NOT NULL
    );
    -- The greatest cursor ever assigned. Every append takes this row's lock
    -- inside its transaction, so cursors are assigned in commit order and a
    -- reader of `cursor > N` never misses a lower cursor committed later.
    CREATE TABLE cursor_head (
      singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
      head bigint NOT NULL
    );
    INSERT INTO cursor_head (head) VALUES (0);
    CREATE TABLE events (
      cursor bigint PRIMARY KEY,
      id text NOT NULL UNIQUE,
      channel text NOT NULL REFERENCES channels(name),
      timestamp_ns bigint NOT NULL,
      source text,
      kind text NOT NULL,
      payload jsonb NOT NULL,
      schema text,
      metadata jsonb NOT NULL,
      correlation_id text,
      parent_ids text[] NOT NULL,
      -- Position among the channel's events, and among its events of this
      -- kind: lag counts are two index lookups. `ts_high`: the greatest
      -- timestamp up to this event in the channel, never decreasing, so a
      -- seek by time is one index lookup.
      seq bigint NOT NULL,
      kind_seq bigint NOT NULL,
      ts_high bigint NOT NULL,
      -- The event as the API serves it (protobuf, without its cursor).
      wire bytea
    );
    CREATE INDEX events_by_channel ON events (channel, cursor);
    CREATE INDEX events_by_channel_kind ON events (channel, kind, cursor);
    CREATE INDEX events_by_channel_time ON events (channel, ts_high, cursor);
    CREATE TABLE subscriptions (
      id text PRIMARY KEY,
      channel text NOT NULL REFERENCES channels(name),
      cursor bigint NOT NULL DEFAULT 0,
      consumer text,
      batch_size integer NOT NULL,
      kind text,
      metadata jsonb NOT NULL
    );
    CREATE INDEX subscriptions_by_channel ON subscriptions (channel, id);
    CREATE TABLE artifacts (
      id text PRIMARY KEY,
      channel text REFERENCES channels(name),
      media_type text NOT NULL,
      size bigint NOT NULL,
      sha256 text NOT NULL,
      metadata jsonb NOT NULL,
      event_ids text[] NOT NULL
    );
    -- Payloads by content: each digest once, its bytes in the chunks of the
    -- upload that first stored it.
    CREATE TABLE blobs (
      sha256 text PRIMARY KEY,
      upload text NOT NULL UNIQUE,
      size bigint NOT NULL
    );
    CREATE TABLE blob_chunks (
      upload text NOT NULL,
      number integer NOT NULL,
      data bytea NOT NULL,
      PRIMARY KEY (upload, number)
    );
    -- Uploads whose chunks are not content yet: a killed server's are found
    -- here, without reading the chunks of every stored payload.
    CREATE TABLE uploads (
      upload text PRIMARY KEY,
      started_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE snapshots (
      name text PRIMARY KEY,
      channel text REFERENCES channels(name),
      timestamp_ns bigint NOT NULL,
      value jsonb NOT NULL,
      schema text,
      source_event_id text,
      metadata jsonb NOT NULL
    )
    """,
    """
    -- Each channel deletion holds a cursor of its own, so the commit feed of
    -- every server announces it at its place among the events (and forgets
    -- the channel's events kept in memory before a new channel of the same
    -- name gets any). Kept: one small row per deletion.
    CREATE TABLE channel_deletions (
      cursor bigint PRIMARY KEY,
      channel text NOT NULL,
      subscriptions text[] NOT NULL,
      deleted_at timestamptz NOT NULL DEFAULT now()
    );
    -- Which stream owns the subscription, on whichever server: each claim
    -- takes the next epoch, and a write for a stream whose epoch is no
    -- longer the subscription's is refused. `delivered`: the highest cursor
    -- its owner sent (an acknowledgement may not pass it); `seeks`: a
    -- cursor move begun before a seek must not undo it.
    ALTER TABLE subscriptions
      ADD COLUMN lease_epoch bigint NOT NULL DEFAULT 0,
      ADD COLUMN lease_owner text,
      ADD COLUMN lease_expires_at timestamptz,
      ADD COLUMN delivered bigint NOT NULL DEFAULT 0,
      ADD COLUMN seeks bigint NOT NULL DEFAULT 0
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
