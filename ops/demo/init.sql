-- Demo schema. ops/demo/demo.py runs this once (as postgres, through psql) on a new cluster.
-- It is idempotent, so running it again is harmless.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'demo') THEN
        CREATE ROLE demo LOGIN PASSWORD 'demo';
    END IF;
END
$$;

SELECT 'CREATE DATABASE demo OWNER demo'
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'demo') \gexec

\connect demo
SET ROLE demo;

CREATE TABLE IF NOT EXISTS accounts (
    id bigint PRIMARY KEY,
    balance bigint NOT NULL DEFAULT 0
);

INSERT INTO accounts (id, balance)
SELECT g, 1000 FROM generate_series(1, 100) AS g
ON CONFLICT (id) DO NOTHING;
