-- 0003_audit_chain: tamper evidence for the audit log, and the indexes its review needs.
--
-- Every finished row (any status but 'running') is one link of a single hash chain, in
-- the order rows became final: chain_seq counts 1, 2, 3, ... without gaps, and
--   chain_hash = SHA-256(previous link's chain_hash || canonical content of the row)
-- (32 zero bytes before the first link). exec_audit_chain_head holds the last link, so a
-- removed tail shows too. The link is made by a trigger inside the statement that
-- finishes the row, under the head row's lock, so rows finished concurrently by several
-- brokers still form one chain; `exec-broker audit verify` recomputes it outside the
-- database (docs/audit.md defines the canonical content; it must not change without a new
-- version tag).

ALTER TABLE exec_audit
	ADD COLUMN chain_seq bigint UNIQUE CHECK (chain_seq > 0),
	ADD COLUMN chain_hash bytea CHECK (length(chain_hash) = 32);

CREATE TABLE exec_audit_chain_head (
	only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
	seq      bigint NOT NULL CHECK (seq >= 0),
	hash     bytea NOT NULL CHECK (length(hash) = 32)
);
INSERT INTO exec_audit_chain_head (seq, hash) VALUES (0, decode(repeat('00', 32), 'hex'));

CREATE FUNCTION exec_audit_chain_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'the audit chain head cannot be removed'
		USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER exec_audit_chain_head_keep BEFORE DELETE ON exec_audit_chain_head
	FOR EACH ROW EXECUTE FUNCTION exec_audit_chain_refuse();
CREATE TRIGGER exec_audit_chain_head_no_truncate BEFORE TRUNCATE ON exec_audit_chain_head
	FOR EACH STATEMENT EXECUTE FUNCTION exec_audit_chain_refuse();

-- One field of the canonical content: "<octets>:<value>", or "-" for NULL.
CREATE FUNCTION exec_audit_canon_field(v text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
	SELECT CASE WHEN v IS NULL THEN '-' ELSE octet_length(v) || ':' || v END
$$;

-- An array: "<count>[" then each element as a field, then "]"; "-" for NULL.
CREATE FUNCTION exec_audit_canon_array(a text[]) RETURNS text LANGUAGE sql IMMUTABLE AS $$
	SELECT CASE WHEN a IS NULL THEN '-' ELSE
		cardinality(a) || '[' ||
		coalesce((SELECT string_agg(exec_audit_canon_field(e), '' ORDER BY i)
		          FROM unnest(a) WITH ORDINALITY AS u (e, i)), '') || ']' END
$$;

-- Timestamps as whole microseconds since 1970-01-01 UTC: no time zone or DateStyle in it.
CREATE FUNCTION exec_audit_canon_time(t timestamptz) RETURNS text LANGUAGE sql IMMUTABLE AS $$
	SELECT exec_audit_canon_field((extract(epoch FROM t) * 1000000)::bigint::text)
$$;

-- The canonical content of a finished row: a version tag, then every column in a fixed
-- order. The verifier builds the same bytes from the columns itself (audit/review.c).
CREATE FUNCTION exec_audit_canonical(r exec_audit) RETURNS bytea LANGUAGE sql STABLE AS $$
	SELECT convert_to(
		'exec-broker-audit-v1' ||
		exec_audit_canon_field((r).chain_seq::text) ||
		exec_audit_canon_field((r).exec_id::text) ||
		exec_audit_canon_field((r).request_id) ||
		exec_audit_canon_field((r).workspace_id) ||
		exec_audit_canon_field((r).org_id) ||
		exec_audit_canon_field((r).actor) ||
		exec_audit_canon_field((r).actor_kind) ||
		exec_audit_canon_field((r).break_glass_reason) ||
		exec_audit_canon_array((r).argv) ||
		exec_audit_canon_field((r).cwd) ||
		exec_audit_canon_array((r).env_keys) ||
		exec_audit_canon_field((r).stdin_bytes::text) ||
		exec_audit_canon_field((r).client_addr::text) ||
		exec_audit_canon_field((r).timeout_s::text) ||
		exec_audit_canon_field((r).status) ||
		exec_audit_canon_field((r).error_code) ||
		exec_audit_canon_field((r).exit_code::text) ||
		exec_audit_canon_field((r).exit_signal) ||
		exec_audit_canon_time((r).started_at) ||
		exec_audit_canon_time((r).finished_at) ||
		exec_audit_canon_field((r).duration_ms::text) ||
		exec_audit_canon_field((r).stdout_bytes::text) ||
		exec_audit_canon_field((r).stderr_bytes::text) ||
		exec_audit_canon_field((r).stdout_truncated::text) ||
		exec_audit_canon_field((r).stderr_truncated::text) ||
		exec_audit_canon_field((r).broker_instance), 'UTF8')
$$;

-- Links rows finished before this migration, in the order they finished.
ALTER TABLE exec_audit DISABLE TRIGGER exec_audit_final;
DO $$
DECLARE
	r exec_audit;
	h exec_audit_chain_head;
BEGIN
	SELECT * INTO h FROM exec_audit_chain_head;
	FOR r IN SELECT * FROM exec_audit WHERE status <> 'running'
	         ORDER BY finished_at, started_at, exec_id LOOP
		h.seq := h.seq + 1;
		r.chain_seq := h.seq;
		h.hash := sha256(h.hash || exec_audit_canonical(r));
		UPDATE exec_audit SET chain_seq = h.seq, chain_hash = h.hash
		WHERE exec_id = r.exec_id;
	END LOOP;
	UPDATE exec_audit_chain_head SET seq = h.seq, hash = h.hash;
END
$$;
ALTER TABLE exec_audit ENABLE TRIGGER exec_audit_final;

ALTER TABLE exec_audit
	ADD CHECK ((status = 'running') = (chain_seq IS NULL)),
	ADD CHECK ((chain_seq IS NULL) = (chain_hash IS NULL));

-- Makes the link of a row as it becomes final (inserted 'denied', or completed), and wakes
-- `exec-broker audit --follow` (the payload is empty, so a statement finishing many rows
-- sends one notification; listeners read rows past the last chain_seq they printed).
-- Runs after exec_audit_final (BEFORE triggers fire in name order), when the row's content
-- is settled. The head's row lock is held until commit, so links are committed in order.
CREATE FUNCTION exec_audit_link() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	h exec_audit_chain_head;
BEGIN
	IF NEW.status = 'running' THEN
		NEW.chain_seq := NULL;
		NEW.chain_hash := NULL;
		RETURN NEW;
	END IF;
	-- By its key: a seq scan would read every dead version a long snapshot keeps.
	SELECT * INTO STRICT h FROM exec_audit_chain_head WHERE only_row FOR UPDATE;
	NEW.chain_seq := h.seq + 1;
	NEW.chain_hash := sha256(h.hash || exec_audit_canonical(NEW));
	UPDATE exec_audit_chain_head SET seq = NEW.chain_seq, hash = NEW.chain_hash
	WHERE only_row;
	PERFORM pg_notify('exec_audit', '');
	RETURN NEW;
END
$$;
CREATE TRIGGER exec_audit_link BEFORE INSERT OR UPDATE ON exec_audit
	FOR EACH ROW EXECUTE FUNCTION exec_audit_link();

-- Review: the list pages newest first on (started_at, exec_id); these serve the filters
-- that 0001's indexes do not (status; break-glass execs; status within a workspace), and
-- following by chain_seq is served by the unique index above.
CREATE INDEX exec_audit_status_idx ON exec_audit (status, started_at DESC, exec_id DESC);
CREATE INDEX exec_audit_break_glass_idx ON exec_audit (started_at DESC, exec_id DESC)
	WHERE break_glass_reason IS NOT NULL;
-- A workspace token always filters by its workspace, so a status filter from one needs both.
CREATE INDEX exec_audit_workspace_status_idx
	ON exec_audit (workspace_id, status, started_at DESC, exec_id DESC);
-- A workspace's rows are one org's: without this the planner multiplies the two
-- selectivities and, for an org or workspace token, sorts instead of reading in order.
CREATE STATISTICS exec_audit_workspace_org_stats (dependencies)
	ON workspace_id, org_id FROM exec_audit;
