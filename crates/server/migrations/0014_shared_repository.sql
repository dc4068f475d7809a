-- The shared repository of replicas on one PostgreSQL (docs/operating.md#shared-repository-and-one-writer).
-- Used only when the server runs on PostgreSQL; SQLite creates the tables and leaves them empty.
-- BYTEA is PostgreSQL's byte string; SQLite accepts the type name (its values stay BLOBs).

-- Content-addressed file bodies: the SHA-256 (hex) of `bytes`.
CREATE TABLE repo_blobs (
    sha256 TEXT PRIMARY KEY,
    bytes BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

-- Published versions of a repository tree (`site`: the server's own repository; `upstream`:
-- the mirror), numbered from 1 per tree, written by the one writer of that tree.
CREATE TABLE repo_trees (
    tree TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (tree, version)
);

-- Every file of a tree version: its path under the tree (`metadata/timestamp.json`) and blob.
CREATE TABLE repo_tree_files (
    tree TEXT NOT NULL,
    version BIGINT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (tree, version, path)
);
CREATE INDEX repo_tree_files_blob ON repo_tree_files (sha256);

-- Files every replica must hold the same copy of: the private CA (`tls/ca.pem`, `tls/ca.key`)
-- and the site repository's non-root keys (`site/online-keys/…`, `site/offline-keys/…`, as
-- their files are: encrypted when the server has a key passphrase).
CREATE TABLE shared_files (
    name TEXT PRIMARY KEY,
    bytes BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
