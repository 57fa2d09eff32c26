-- Sessions, password resets and the admin audit trail (lib/sessions.ts,
-- lib/password-reset.ts, lib/admin.ts).

-- Raised whenever every session of an account is revoked (password reset, admin action):
-- an access token carrying an older value is refused at once, before it expires.
ALTER TABLE users ADD COLUMN token_version integer NOT NULL DEFAULT 0;

-- A session is one login: the family of refresh tokens that rotation grows from it.
-- Revoking the session revokes every token of the family. `csrf_key` signs the session's
-- CSRF tokens; it is useless without the session's refresh cookie.
CREATE TABLE sessions (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  csrf_key bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  revoked_at timestamptz,
  revoked_reason text
    CHECK (revoked_reason IN ('logout', 'reuse', 'password_reset', 'admin', 'disabled'))
);

CREATE INDEX sessions_user_idx ON sessions (user_id);

-- Only the sha256 of each refresh token is kept. A token is spent once `used_at` is set;
-- its children are the tokens issued for it (more than one only within the grace period).
CREATE TABLE refresh_tokens (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  parent_id uuid REFERENCES refresh_tokens (id) ON DELETE CASCADE,
  token_hash bytea NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  used_at timestamptz
);

CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);

CREATE TABLE password_reset_tokens (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  token_hash bytea NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  used_at timestamptz
);

CREATE INDEX password_reset_tokens_user_idx ON password_reset_tokens (user_id);

-- Who did what to which account, when, with the fields before and after. The actor is
-- kept as an email too, so the record still reads after the actor's account is deleted.
CREATE TABLE audit_log (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  actor_id uuid REFERENCES users (id) ON DELETE SET NULL,
  actor text NOT NULL,
  action text NOT NULL,
  target_type text NOT NULL,
  target_id uuid,
  before jsonb,
  after jsonb,
  correlation_id text,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX audit_log_target_idx ON audit_log (target_type, target_id, created_at DESC);
