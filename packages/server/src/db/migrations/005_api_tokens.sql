-- Switchyard schema, version 5: API tokens with scopes, and indexes for the audit log API.

-- Bearer tokens for people and tools on the admin API (the bootstrap admin token of DESIGN §2 is not here: it
-- lives in SWITCHYARD_ADMIN_TOKEN or <data dir>/admin-token). Only the sha256 of a token is stored; the token
-- itself is shown once, in the answer that creates it. A revoked token keeps its row (the audit log names it)
-- and stops authenticating at once: lookups ask for `revoked_at IS NULL` on every request, nothing is cached.
CREATE TABLE api_tokens (
  id           serial PRIMARY KEY,
  name         text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
  scope        text NOT NULL CHECK (scope IN ('admin', 'operator', 'viewer')),
  -- sha256 hex of the token.
  token_hash   text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
  created_at   timestamptz NOT NULL DEFAULT now(),
  created_by   text NOT NULL,
  -- Updated at most once a minute per token (a write on every request would cost more than it tells).
  last_used_at timestamptz,
  revoked_at   timestamptz,
  revoked_by   text
);
CREATE INDEX api_tokens_active_idx ON api_tokens (id) WHERE revoked_at IS NULL;

-- GET /api/v1/audit: newest first (by id), filtered by actor or action, or by time.
CREATE INDEX audit_log_actor_idx ON audit_log (actor, id DESC);
CREATE INDEX audit_log_action_idx ON audit_log (action, id DESC);
CREATE INDEX audit_log_at_idx ON audit_log (at);
