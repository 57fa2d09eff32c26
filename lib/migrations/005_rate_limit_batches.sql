-- Rate-limit checks and account lookups in batches (lib/rate-limit.ts and
-- lib/middleware/authenticate.ts): everything the requests of one turn of a process's
-- event loop ask at the same stage goes to PostgreSQL in one round trip.

-- Takes one token from a bucket, if one is there: one atomic statement, so concurrent
-- checks of one key serialise on its row lock and each sees the fill its predecessor
-- left. `taken_at` null means clock_timestamp(), the real time even inside a transaction,
-- where now() stands still. A new bucket starts full and pays for this request at once.
-- Time never runs backwards in a bucket: a check that read the clock before waiting for
-- the lock refills nothing. Units are described in 003_rate_limits.sql.
CREATE FUNCTION take_rate_token(
  bucket_key text,
  quota bigint,
  window_us bigint,
  taken_at timestamptz,
  OUT allowed boolean,
  OUT remaining integer,
  OUT next_token_seconds float8
)
LANGUAGE sql
AS $$
INSERT INTO rate_limit_buckets AS bucket (key, fill, allowed, updated_at, full_at)
SELECT bucket_key, (quota - 1) * window_us, true, clock.now,
  clock.now + interval '1 microsecond' * ceil(window_us / quota::numeric)
FROM (SELECT coalesce(taken_at, clock_timestamp()) AS now) AS clock
ON CONFLICT (key) DO UPDATE SET (fill, allowed, updated_at, full_at) = (
  SELECT refill.fill - take.units, take.units > 0, refill.now,
    refill.now + interval '1 microsecond'
      * ceil((quota * window_us - refill.fill + take.units) / quota::numeric)
  FROM (
    SELECT
      least(
        quota * window_us,
        bucket.fill + quota * least(window_us, greatest(0,
          (extract(epoch FROM excluded.updated_at - bucket.updated_at) * 1000000)::bigint))
      ) AS fill,
      greatest(bucket.updated_at, excluded.updated_at) AS now
  ) AS refill,
  LATERAL (
    SELECT CASE WHEN refill.fill >= window_us THEN window_us ELSE 0 END AS units
  ) AS take
)
RETURNING bucket.allowed,
  (bucket.fill / window_us)::integer,
  CASE WHEN bucket.fill >= quota * window_us THEN 0
    ELSE ceil(((bucket.fill / window_us + 1) * window_us - bucket.fill) / quota::numeric)
  END::float8 / 1000000
$$;

-- A batch of checks, one row per item with its 1-based position as `slot`. A key may
-- appear several times; its checks are made in the order given, exactly as separate
-- statements would. Keys are visited in sorted order, so two batches touching the same
-- keys lock them in the same order and cannot deadlock.
CREATE FUNCTION take_rate_tokens(
  keys text[],
  quotas bigint[],
  windows bigint[],
  times timestamptz[]
) RETURNS TABLE (
  slot integer,
  allowed boolean,
  remaining integer,
  next_token_seconds float8
)
LANGUAGE plpgsql
AS $$
DECLARE
  item record;
BEGIN
  FOR item IN
    SELECT t.key, t.quota, t.window_us, t.at, t.position::integer AS position
    FROM unnest(keys, quotas, windows, times)
      WITH ORDINALITY AS t(key, quota, window_us, at, position)
    ORDER BY t.key, t.position
  LOOP
    slot := item.position;
    SELECT token.allowed, token.remaining, token.next_token_seconds
      INTO allowed, remaining, next_token_seconds
      FROM take_rate_token(item.key, item.quota, item.window_us, item.at) AS token;
    RETURN NEXT;
  END LOOP;
END
$$;

-- The accounts behind a batch of verified access tokens, each with its per-account check
-- when the endpoint has one. The token is taken only from an account that may still
-- act: it exists, is enabled, and its session generation is the token's. A revoked
-- token therefore costs its account nothing. Locking order as above.
CREATE FUNCTION authenticate_accounts(
  ids uuid[],
  versions integer[],
  keys text[],
  quotas bigint[],
  windows bigint[]
) RETURNS TABLE (
  slot integer,
  id uuid,
  email text,
  role text,
  disabled boolean,
  token_version integer,
  allowed boolean,
  remaining integer,
  next_token_seconds float8
)
LANGUAGE plpgsql
AS $$
DECLARE
  item record;
BEGIN
  FOR item IN
    SELECT t.account, t.version, t.key, t.quota, t.window_us,
      t.position::integer AS position
    FROM unnest(ids, versions, keys, quotas, windows)
      WITH ORDINALITY AS t(account, version, key, quota, window_us, position)
    ORDER BY t.key, t.position
  LOOP
    slot := item.position;
    allowed := NULL;
    remaining := NULL;
    next_token_seconds := NULL;
    SELECT u.id, u.email, u.role, u.disabled, u.token_version
      INTO id, email, role, disabled, token_version
      FROM users AS u WHERE u.id = item.account;

    IF FOUND AND NOT disabled AND token_version = item.version
      AND item.key IS NOT NULL THEN
      SELECT token.allowed, token.remaining, token.next_token_seconds
        INTO allowed, remaining, next_token_seconds
        FROM take_rate_token(item.key, item.quota, item.window_us, NULL) AS token;
    END IF;
    RETURN NEXT;
  END LOOP;
END
$$;
