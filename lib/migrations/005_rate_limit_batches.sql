-- Takes one token from each of a batch of buckets (lib/rate-limit.ts): the checks of
-- every request that reached its rate limit in one turn of a process's event loop, in
-- one round trip. A key may appear several times; its checks are made in the order
-- given, each seeing the fill the one before it left, exactly as separate statements
-- would. Keys are visited in sorted order so that two batches touching the same keys
-- lock them in the same order and cannot deadlock.
--
-- Per item: key, quota, window in microseconds, and the time (null: clock_timestamp(),
-- the real time even inside a transaction, where now() stands still). A new bucket starts
-- full and pays for this request at once. Time never runs backwards in a bucket: a check
-- that read the clock before waiting for the lock refills nothing. Units are described in
-- 003_rate_limits.sql.
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
#variable_conflict use_column
DECLARE
  item record;
BEGIN
  FOR item IN
    SELECT t.key, t.quota, t.window_us, t.at, t.slot::integer AS slot
    FROM unnest(keys, quotas, windows, times)
      WITH ORDINALITY AS t(key, quota, window_us, at, slot)
    ORDER BY t.key, t.slot
  LOOP
    slot := item.slot;

    INSERT INTO rate_limit_buckets AS bucket (key, fill, allowed, updated_at, full_at)
    SELECT item.key, (item.quota - 1) * item.window_us, true, clock.now,
      clock.now + interval '1 microsecond' * ceil(item.window_us / item.quota::numeric)
    FROM (SELECT coalesce(item.at, clock_timestamp()) AS now) AS clock
    ON CONFLICT (key) DO UPDATE SET (fill, allowed, updated_at, full_at) = (
      SELECT refill.fill - take.units, take.units > 0, refill.now,
        refill.now + interval '1 microsecond'
          * ceil((item.quota * item.window_us - refill.fill + take.units)
            / item.quota::numeric)
      FROM (
        SELECT
          least(
            item.quota * item.window_us,
            bucket.fill + item.quota * least(item.window_us, greatest(0,
              (extract(epoch FROM excluded.updated_at - bucket.updated_at)
                * 1000000)::bigint))
          ) AS fill,
          greatest(bucket.updated_at, excluded.updated_at) AS now
      ) AS refill,
      LATERAL (
        SELECT CASE WHEN refill.fill >= item.window_us THEN item.window_us ELSE 0 END
          AS units
      ) AS take
    )
    RETURNING bucket.allowed,
      (bucket.fill / item.window_us)::integer,
      CASE WHEN bucket.fill >= item.quota * item.window_us THEN 0
        ELSE ceil(((bucket.fill / item.window_us + 1) * item.window_us - bucket.fill)
          / item.quota::numeric)
      END::float8 / 1000000
    INTO allowed, remaining, next_token_seconds;

    RETURN NEXT;
  END LOOP;
END
$$;
