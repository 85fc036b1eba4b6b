extension PostgresQueue {
    /// The schema, as numbered, append-only migrations (`§` is the job's schema): never edit
    /// one that has shipped. The tables and columns are the SQLite state's, so `state copy`
    /// moves rows as they are and the README's table of columns holds for both.
    static let migrations: [[String]] = [
        [
            "CREATE TABLE §job (key text PRIMARY KEY, value text NOT NULL)",
            "CREATE TABLE §loads (id bigserial PRIMARY KEY, source text NOT NULL, loaded_at double precision NOT NULL, rows bigint NOT NULL)",
            """
            CREATE TABLE §rows (
                seq bigserial PRIMARY KEY,
                id text NOT NULL,
                variant text NOT NULL DEFAULT '',
                source text NOT NULL,
                load_id bigint NOT NULL,
                content_hash text NOT NULL,
                api text NOT NULL,
                deployment text NOT NULL,
                body text NOT NULL,
                metadata text,
                estimated_tokens bigint NOT NULL,
                estimated_prompt_tokens bigint NOT NULL DEFAULT 0,
                state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'succeeded', 'failed')),
                attempts integer NOT NULL DEFAULT 0,
                next_attempt_at double precision NOT NULL DEFAULT 0,
                lease_owner text,
                lease_expires_at double precision,
                status_code integer,
                request_id text,
                client_request_id text,
                response text,
                error_code text,
                error_message text,
                prompt_tokens bigint,
                completion_tokens bigint,
                total_tokens bigint,
                latency_ms double precision,
                first_sent_at double precision,
                finished_at double precision,
                target text,
                batch bigint,
                output_retries integer NOT NULL DEFAULT 0,
                finish text,
                UNIQUE (id, variant)
            )
            """,
            "CREATE INDEX rows_pending ON §rows (seq) WHERE state = 'pending'",
            "CREATE INDEX rows_running ON §rows (lease_owner, seq) WHERE state = 'running'",
            """
            CREATE TABLE §attempts (
                seq bigint NOT NULL REFERENCES §rows (seq),
                attempt integer NOT NULL,
                at double precision NOT NULL,
                status_code integer,
                error_code text,
                error_message text,
                request_id text,
                client_request_id text,
                target text
            )
            """,
            "CREATE INDEX attempts_seq ON §attempts (seq)",
            "CREATE TABLE §parkings (target text PRIMARY KEY, until double precision, reason text NOT NULL, at double precision NOT NULL)",
            "CREATE TABLE §runners (owner text PRIMARY KEY, seen double precision NOT NULL)",
            """
            CREATE TABLE §batches (
                number bigserial PRIMARY KEY,
                target text NOT NULL,
                model text NOT NULL,
                api text NOT NULL,
                phase text NOT NULL,
                rows integer NOT NULL,
                bytes bigint NOT NULL,
                tokens bigint NOT NULL DEFAULT 0,
                file_id text,
                batch_id text,
                status text,
                completed integer NOT NULL DEFAULT 0,
                failed integer NOT NULL DEFAULT 0,
                created_at double precision NOT NULL,
                submitted_at double precision,
                ends_by double precision,
                output_file_id text,
                error_file_id text,
                not_before double precision,
                refusals integer NOT NULL DEFAULT 0,
                cancel_requested boolean NOT NULL DEFAULT false,
                message text,
                owner text,
                owner_until double precision
            )
            """,
            // The report reads answers inside their JSON; a body that is not JSON is shown as it is.
            """
            CREATE FUNCTION §try_jsonb(body text) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
            BEGIN
                RETURN body::jsonb;
            EXCEPTION WHEN others THEN
                RETURN NULL;
            END $$
            """,
            // What the report shows for a succeeded row: AnswerText.shown(body:api:), in SQL.
            """
            CREATE FUNCTION §answer_text(api text, body text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
                SELECT CASE
                    WHEN j IS NULL THEN body
                    WHEN api = 'responses' THEN coalesce(
                        (SELECT c->>'text' FROM jsonb_array_elements(CASE jsonb_typeof(j->'output') WHEN 'array' THEN j->'output' ELSE '[]' END) AS o,
                            jsonb_array_elements(CASE jsonb_typeof(o->'content') WHEN 'array' THEN o->'content' ELSE '[]' END) AS c
                         WHERE c->>'type' = 'output_text' AND jsonb_typeof(c->'text') = 'string' LIMIT 1),
                        'refused: ' || (SELECT c->>'refusal' FROM jsonb_array_elements(CASE jsonb_typeof(j->'output') WHEN 'array' THEN j->'output' ELSE '[]' END) AS o,
                            jsonb_array_elements(CASE jsonb_typeof(o->'content') WHEN 'array' THEN o->'content' ELSE '[]' END) AS c
                         WHERE c->>'type' = 'refusal' AND jsonb_typeof(c->'refusal') = 'string' LIMIT 1),
                        body)
                    ELSE coalesce(
                        CASE jsonb_typeof(j #> '{choices,0,message,content}') WHEN 'string' THEN j #>> '{choices,0,message,content}' END,
                        'refused: ' || CASE jsonb_typeof(j #> '{choices,0,message,refusal}') WHEN 'string' THEN j #>> '{choices,0,message,refusal}' END,
                        body)
                END
                FROM (SELECT CASE WHEN body IS NULL THEN NULL ELSE §try_jsonb(body) END AS j) AS parsed
            $$
            """,
            // The last user message of a request: AnswerText.prompt(ofRequest:), in SQL.
            """
            CREATE FUNCTION §prompt_text(body text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
                SELECT CASE
                    WHEN jsonb_typeof(j #> '{messages,-1,content}') = 'string' THEN j #>> '{messages,-1,content}'
                    WHEN jsonb_typeof(j -> 'input') = 'string' THEN j ->> 'input'
                    WHEN jsonb_typeof(j #> '{input,-1,content}') = 'string' THEN j #>> '{input,-1,content}'
                END
                FROM (SELECT §try_jsonb(body) AS j) AS parsed
            $$
            """,
        ],
        // 2: the claim that leased a row, so that a claim whose answer was lost takes its rows back.
        ["ALTER TABLE §rows ADD COLUMN claim_id text"],
        // 3: when the next pending row is due, read off an index: workers with nothing to
        // claim ask it every half second, and without one each asking read every row the
        // job had (48 ms on 20k rows, 64 workers at once at the end of a run).
        ["CREATE INDEX rows_due ON §rows (next_attempt_at) WHERE state = 'pending'"],
        // 4: the cut that made a batch, so that a cut whose answer was lost finds its batch again.
        ["ALTER TABLE §batches ADD COLUMN cut_id text"],
    ]
}
