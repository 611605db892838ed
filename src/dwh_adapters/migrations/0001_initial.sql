-- The warehouse tables of docs/CONTRACT.md §3. The DDS tables match the specs in
-- dwh_core.vault (HUBS, LINKS, SATELLITES); a test compares the live catalog with them.

CREATE SCHEMA IF NOT EXISTS stg;
CREATE SCHEMA IF NOT EXISTS dds;
CREATE SCHEMA IF NOT EXISTS cdm;

-- STG: the newest version of each input order, as it came.
CREATE TABLE stg.order_events (
    id          bigserial PRIMARY KEY,
    object_id   int       NOT NULL UNIQUE,
    payload     jsonb     NOT NULL,
    object_type varchar   NOT NULL,
    sent_dttm   timestamp NOT NULL,
    update_ts   timestamp NOT NULL
);

-- DDS hubs: the hash key, the business key (unique), load time and source.
CREATE TABLE dds.h_user (
    h_user_pk uuid      PRIMARY KEY,
    user_id   varchar   NOT NULL UNIQUE,
    load_dt   timestamp NOT NULL,
    load_src  varchar   NOT NULL
);
CREATE TABLE dds.h_product (
    h_product_pk uuid      PRIMARY KEY,
    product_id   varchar   NOT NULL UNIQUE,
    load_dt      timestamp NOT NULL,
    load_src     varchar   NOT NULL
);
CREATE TABLE dds.h_category (
    h_category_pk uuid      PRIMARY KEY,
    category_name varchar   NOT NULL UNIQUE,
    load_dt       timestamp NOT NULL,
    load_src      varchar   NOT NULL
);
CREATE TABLE dds.h_restaurant (
    h_restaurant_pk uuid      PRIMARY KEY,
    restaurant_id   varchar   NOT NULL UNIQUE,
    load_dt         timestamp NOT NULL,
    load_src        varchar   NOT NULL
);
CREATE TABLE dds.h_order (
    h_order_pk uuid      PRIMARY KEY,
    order_id   int       NOT NULL UNIQUE,
    order_dt   timestamp NOT NULL,
    load_dt    timestamp NOT NULL,
    load_src   varchar   NOT NULL
);

-- DDS links: the hash key of the two business keys and the two hub keys. The writer
-- inserts hubs before links in the same transaction, so the foreign keys always hold.
CREATE TABLE dds.l_order_product (
    hk_order_product_pk uuid      PRIMARY KEY,
    h_order_pk          uuid      NOT NULL REFERENCES dds.h_order,
    h_product_pk        uuid      NOT NULL REFERENCES dds.h_product,
    load_dt             timestamp NOT NULL,
    load_src            varchar   NOT NULL
);
CREATE TABLE dds.l_product_restaurant (
    hk_product_restaurant_pk uuid      PRIMARY KEY,
    h_product_pk             uuid      NOT NULL REFERENCES dds.h_product,
    h_restaurant_pk          uuid      NOT NULL REFERENCES dds.h_restaurant,
    load_dt                  timestamp NOT NULL,
    load_src                 varchar   NOT NULL
);
CREATE TABLE dds.l_product_category (
    hk_product_category_pk uuid      PRIMARY KEY,
    h_product_pk           uuid      NOT NULL REFERENCES dds.h_product,
    h_category_pk          uuid      NOT NULL REFERENCES dds.h_category,
    load_dt                timestamp NOT NULL,
    load_src               varchar   NOT NULL
);
CREATE TABLE dds.l_order_user (
    hk_order_user_pk uuid      PRIMARY KEY,
    h_order_pk       uuid      NOT NULL REFERENCES dds.h_order,
    h_user_pk        uuid      NOT NULL REFERENCES dds.h_user,
    load_dt          timestamp NOT NULL,
    load_src         varchar   NOT NULL
);

-- DDS satellites, insert-only: one row per hub key and source version (source_ts, the
-- order's update_ts). The primary key index, scanned backwards, finds a key's current
-- row (greatest source_ts), so no second index is needed for that.
CREATE TABLE dds.s_user_names (
    h_user_pk              uuid      NOT NULL,
    username               varchar   NOT NULL,
    userlogin              varchar   NOT NULL,
    hk_user_names_hashdiff uuid      NOT NULL,
    source_ts              timestamp NOT NULL,
    load_dt                timestamp NOT NULL,
    load_src               varchar   NOT NULL,
    PRIMARY KEY (h_user_pk, source_ts)
);
CREATE TABLE dds.s_product_names (
    h_product_pk              uuid      NOT NULL,
    name                      varchar   NOT NULL,
    hk_product_names_hashdiff uuid      NOT NULL,
    source_ts                 timestamp NOT NULL,
    load_dt                   timestamp NOT NULL,
    load_src                  varchar   NOT NULL,
    PRIMARY KEY (h_product_pk, source_ts)
);
CREATE TABLE dds.s_restaurant_names (
    h_restaurant_pk              uuid      NOT NULL,
    name                         varchar   NOT NULL,
    hk_restaurant_names_hashdiff uuid      NOT NULL,
    source_ts                    timestamp NOT NULL,
    load_dt                      timestamp NOT NULL,
    load_src                     varchar   NOT NULL,
    PRIMARY KEY (h_restaurant_pk, source_ts)
);
CREATE TABLE dds.s_order_cost (
    h_order_pk             uuid      NOT NULL,
    cost                   int       NOT NULL,
    payment                int       NOT NULL,
    hk_order_cost_hashdiff uuid      NOT NULL,
    source_ts              timestamp NOT NULL,
    load_dt                timestamp NOT NULL,
    load_src               varchar   NOT NULL,
    PRIMARY KEY (h_order_pk, source_ts)
);
CREATE TABLE dds.s_order_status (
    h_order_pk               uuid      NOT NULL,
    status                   varchar   NOT NULL,
    hk_order_status_hashdiff uuid      NOT NULL,
    source_ts                timestamp NOT NULL,
    load_dt                  timestamp NOT NULL,
    load_src                 varchar   NOT NULL,
    PRIMARY KEY (h_order_pk, source_ts)
);

-- Per satellite and hub key: the current row's hashdiff and the newest source_ts seen
-- (dwh_core.vault.SatelliteState).
CREATE TABLE dds.satellite_state (
    satellite varchar   NOT NULL,
    hub_pk    uuid      NOT NULL,
    hashdiff  uuid      NOT NULL,
    source_ts timestamp NOT NULL,
    PRIMARY KEY (satellite, hub_pk)
);

-- CDM: the marts (docs/CONTRACT.md §4) and the ledger that keeps them exact
-- (dwh_core.counters.Contribution: what each order currently adds).
CREATE TABLE cdm.user_product_counters (
    id           bigserial PRIMARY KEY,
    user_id      uuid      NOT NULL,
    product_id   uuid      NOT NULL,
    product_name varchar   NOT NULL,
    order_cnt    int       NOT NULL CHECK (order_cnt >= 0),
    UNIQUE (user_id, product_id)
);
CREATE TABLE cdm.user_category_counters (
    id            bigserial PRIMARY KEY,
    user_id       uuid      NOT NULL,
    category_id   uuid      NOT NULL,
    category_name varchar   NOT NULL,
    order_cnt     int       NOT NULL CHECK (order_cnt >= 0),
    UNIQUE (user_id, category_id)
);
CREATE TABLE cdm.order_contributions (
    order_key  uuid      PRIMARY KEY,
    user_key   uuid      NOT NULL,
    update_ts  timestamp NOT NULL,
    products   uuid[]    NOT NULL,
    categories uuid[]    NOT NULL
);
