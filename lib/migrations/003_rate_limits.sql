-- Token buckets for the rate limits (lib/rate-limit.ts). UNLOGGED: a crash empties the
-- table, which only refills every bucket; no quota or user data ever lives here.
--
-- `fill` is the tokens in hand times the policy window in microseconds: a request takes
-- one window's worth, and every elapsed microsecond adds `quota` back, so the refill
-- arithmetic stays in exact integers. `full_at` is when the bucket will be full again,
-- after which the row means nothing and the cleanup may delete it. The spare room in each
-- page (fillfactor) keeps the updates of a hot key HOT, without index churn.
CREATE UNLOGGED TABLE rate_limit_buckets (
  key text PRIMARY KEY,
  fill bigint NOT NULL CHECK (fill >= 0),
  allowed boolean NOT NULL,
  updated_at timestamptz NOT NULL,
  full_at timestamptz NOT NULL
) WITH (fillfactor = 70);
