-- Sessions: what a buyer signs in with. A session's refresh credential is a random 256-bit secret
-- kept here only as its SHA-256; it is exchanged for short-lived signed access tokens, which are
-- never stored. Revoking a session stops its refresh credential at once and its access tokens as
-- soon as every process has polled the revocation (by `revoked_xid`).

create table sessions (
  id           uuid primary key,
  user_id      uuid not null references users (id),
  -- SHA-256 of the refresh credential: the secret is full-entropy, so a fast hash cannot be
  -- guessed backwards, and the lookup stays one index probe.
  refresh_hash bytea not null unique,
  created_at   timestamptz not null default now(),
  -- The latest expiry of an access token issued from this session: once it has passed, a
  -- revocation of the session has nothing left to refuse.
  access_until timestamptz not null,
  revoked_at   timestamptz,
  -- The revoking transaction: processes poll revocations by transaction id, not time, because
  -- transactions commit out of the order of their clocks (see RevokedSessions).
  revoked_xid  xid8,
  check ((revoked_at is null) = (revoked_xid is null))
);

create index sessions_user on sessions (user_id);
-- The poll of revocations newer than a cursor, and a process's first load of those still live.
create index sessions_revoked_xid on sessions (revoked_xid) where revoked_xid is not null;
create index sessions_revoked_until on sessions (access_until) where revoked_xid is not null;

-- Whether the user's token of the pre-session format (`<userId>.<hmac>`) may still be exchanged
-- for a session. True for every account that existed before sessions (it may hold such a token),
-- false for every account made after; revoking the user clears it.
alter table users add column legacy_token_usable boolean not null default true;
alter table users alter column legacy_token_usable set default false;
