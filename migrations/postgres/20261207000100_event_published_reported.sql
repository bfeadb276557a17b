-- Clock sanity: an event whose `published` lies further in the future than
-- okta.max_clock_skew_seconds is stored with `published` = the time of receipt, and the
-- time Okta reported kept here (NULL for every sane event). The full event stays in `raw`.
ALTER TABLE events ADD COLUMN published_reported BIGINT;
