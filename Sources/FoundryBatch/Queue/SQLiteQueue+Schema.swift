import GRDB

extension SQLiteQueue {
    /// The schema, as named, append-only migrations: never edit one that has shipped.
    ///
    /// The README documents these tables for users who query the state with `sqlite3`.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE job (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                    CREATE TABLE loads (
                        id INTEGER PRIMARY KEY,
                        source TEXT NOT NULL,
                        loaded_at REAL NOT NULL,
                        rows INTEGER NOT NULL
                    );
                    CREATE TABLE rows (
                        seq INTEGER PRIMARY KEY,
                        id TEXT NOT NULL,
                        variant TEXT NOT NULL DEFAULT '',
                        source TEXT NOT NULL,
                        load_id INTEGER NOT NULL,
                        content_hash TEXT NOT NULL,
                        api TEXT NOT NULL,
                        deployment TEXT NOT NULL,
                        body TEXT NOT NULL,
                        metadata TEXT,
                        estimated_tokens INTEGER NOT NULL,
                        estimated_prompt_tokens INTEGER NOT NULL DEFAULT 0,
                        state TEXT NOT NULL DEFAULT 'pending'
                            CHECK (state IN ('pending', 'running', 'succeeded', 'failed')),
                        attempts INTEGER NOT NULL DEFAULT 0,
                        next_attempt_at REAL NOT NULL DEFAULT 0,
                        lease_owner TEXT,
                        lease_expires_at REAL,
                        status_code INTEGER,
                        request_id TEXT,
                        client_request_id TEXT,
                        response TEXT,
                        error_code TEXT,
                        error_message TEXT,
                        prompt_tokens INTEGER,
                        completion_tokens INTEGER,
                        total_tokens INTEGER,
                        latency_ms REAL,
                        first_sent_at REAL,
                        finished_at REAL,
                        UNIQUE (id, variant)
                    );
                    CREATE INDEX rows_pending ON rows(seq) WHERE state = 'pending';
                    CREATE INDEX rows_running ON rows(lease_owner) WHERE state = 'running';
                    CREATE TABLE attempts (
                        seq INTEGER NOT NULL REFERENCES rows(seq),
                        attempt INTEGER NOT NULL,
                        at REAL NOT NULL,
                        status_code INTEGER,
                        error_code TEXT,
                        error_message TEXT,
                        request_id TEXT,
                        client_request_id TEXT
                    );
                    CREATE INDEX attempts_seq ON attempts(seq);
                    """
            )
        }
        // Phase 2: which of a job's targets answered each try.
        migrator.registerMigration("v2-targets") { db in
            try db.execute(
                sql: """
                    ALTER TABLE rows ADD COLUMN target TEXT;
                    ALTER TABLE attempts ADD COLUMN target TEXT;
                    CREATE TABLE parkings (target TEXT PRIMARY KEY, until REAL, reason TEXT NOT NULL, at REAL NOT NULL);
                    CREATE TABLE runners (owner TEXT PRIMARY KEY, seen REAL NOT NULL);
                    """
            )
        }
        // Phase 2: batches at the provider, and which batch answered a row.
        migrator.registerMigration("v3-batches") { db in
            try db.execute(
                sql: """
                    ALTER TABLE rows ADD COLUMN batch INTEGER;
                    CREATE TABLE batches (
                        number INTEGER PRIMARY KEY,
                        target TEXT NOT NULL,
                        model TEXT NOT NULL,
                        api TEXT NOT NULL,
                        phase TEXT NOT NULL,
                        rows INTEGER NOT NULL,
                        bytes INTEGER NOT NULL,
                        tokens INTEGER NOT NULL DEFAULT 0,
                        file_id TEXT,
                        batch_id TEXT,
                        status TEXT,
                        completed INTEGER NOT NULL DEFAULT 0,
                        failed INTEGER NOT NULL DEFAULT 0,
                        created_at REAL NOT NULL,
                        submitted_at REAL,
                        ends_by REAL,
                        output_file_id TEXT,
                        error_file_id TEXT,
                        not_before REAL,
                        refusals INTEGER NOT NULL DEFAULT 0,
                        cancel_requested INTEGER NOT NULL DEFAULT 0,
                        message TEXT,
                        owner TEXT,
                        owner_until REAL
                    );
                    CREATE INDEX rows_batch ON rows(lease_owner, seq) WHERE state = 'running';
                    """
            )
        }
        // Phase 2: output checks (structured outputs retried, answers cut off or filtered).
        migrator.registerMigration("v4-output-checks") { db in
            try db.execute(
                sql: """
                    ALTER TABLE rows ADD COLUMN output_retries INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE rows ADD COLUMN finish TEXT;
                    """
            )
        }
        return migrator
    }
}
