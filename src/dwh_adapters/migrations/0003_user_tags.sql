-- User tags (docs/CONTRACT.md §8, docs/TAGS.md).

-- The ledger keeps what a tag rule needs of each order: its date (for rules with a
-- window) and the hash keys of its products' names (for rules on a product, which name
-- it). NULL date: the order facts came from a producer that did not send it.
ALTER TABLE cdm.order_contributions
    ADD COLUMN order_date timestamp,
    ADD COLUMN product_names uuid[] NOT NULL DEFAULT '{}';
CREATE INDEX order_contributions_order_date ON cdm.order_contributions (order_date);

-- The rules in force, one row per tag, and the one row every writer of tags locks: a
-- CDM batch FOR SHARE, a rule change or a window sweep FOR UPDATE. ``revision`` moves on
-- every change of the rules or of a window, so a worker reloads them only then.
CREATE TABLE cdm.tag_control (
    id              boolean   PRIMARY KEY DEFAULT true CHECK (id),
    ruleset_version int       NOT NULL DEFAULT 0,
    revision        bigint    NOT NULL DEFAULT 0,
    applied_at      timestamp,
    rules_source    text      NOT NULL DEFAULT ''
);
INSERT INTO cdm.tag_control DEFAULT VALUES;

CREATE TABLE cdm.tag_rules (
    tag_id       varchar   PRIMARY KEY,
    tag_name     varchar   NOT NULL,
    target       varchar   NOT NULL CHECK (target IN ('product', 'category')),
    target_name  varchar   NOT NULL,
    at_least     int       NOT NULL CHECK (at_least > 0),
    within_days  int       CHECK (within_days > 0),
    -- a rule with a window counts the orders dated after window_start
    window_start timestamp CHECK ((within_days IS NULL) = (window_start IS NULL)),
    since_version int      NOT NULL
);

-- Per user and tag: the counted orders that match the rule, and the sequence number of
-- the last transition. A row whose order_cnt is NULL is a claim placeholder, never
-- committed (dwh_adapters.postgres.claims).
CREATE TABLE cdm.user_tag_counters (
    user_id        uuid      NOT NULL,
    tag_id         varchar   NOT NULL,
    user_source_id varchar   NOT NULL,
    order_cnt      int       CHECK (order_cnt >= 0),
    sequence       int       NOT NULL DEFAULT 0,
    entered_at     timestamp,
    PRIMARY KEY (user_id, tag_id)
);

-- The current members: the counters of those who entered and have not exited (a view,
-- so that nothing else is written per batch and nothing can disagree with them).
CREATE VIEW cdm.user_tags AS
    SELECT user_id, tag_id, user_source_id, entered_at, order_cnt, sequence
    FROM cdm.user_tag_counters
    WHERE entered_at IS NOT NULL;
CREATE INDEX user_tag_counters_members ON cdm.user_tag_counters (tag_id)
    WHERE entered_at IS NOT NULL;

-- Every transition, in order; event_id is the order of delivery to the topic
-- cdm-service-user-tags, published marks those delivered.
CREATE TABLE cdm.user_tag_events (
    event_id        bigserial PRIMARY KEY,
    user_id         uuid      NOT NULL,
    user_source_id  varchar   NOT NULL,
    tag_id          varchar   NOT NULL,
    tag_name        varchar   NOT NULL,
    event           varchar   NOT NULL CHECK (event IN ('entered', 'exited')),
    at              timestamp NOT NULL,
    sequence        int       NOT NULL,
    order_cnt       int       NOT NULL,
    ruleset_version int       NOT NULL,
    published       boolean   NOT NULL DEFAULT false,
    UNIQUE (user_id, tag_id, sequence)
);
CREATE INDEX user_tag_events_unpublished ON cdm.user_tag_events (event_id) WHERE NOT published;
