-- 0006_detached_execs: execs that outlive their request and their broker.
--
-- A detached exec is one exec_audit row like any other: inserted 'running' before the
-- command starts, completed exactly once. What differs is who completes it: not the broker
-- that started it, but whichever broker first learns the outcome from the host (a read, a
-- follow, a wait, or the sweep). So the sweeps that abandon rows of dead brokers leave
-- detached rows alone (the statements in audit/writer.c say NOT detached), and a detached
-- row gets one more final status: 'lost', when its host can no longer say what became of
-- the command.
--
-- The row records that it was detached and its name; both are in the canonical content
-- (a detached row's content ends with "detached" and the name), so rows of attached execs
-- hash exactly as before and verify needs no second version.

ALTER TABLE exec_audit
	ADD COLUMN detached boolean NOT NULL DEFAULT false,
	ADD COLUMN name text CHECK (name ~ '^[A-Za-z0-9._-]{1,64}$'),
	ADD CONSTRAINT exec_audit_name_detached_check CHECK (name IS NULL OR detached);

DO $$
DECLARE
	c text;
BEGIN
	SELECT conname INTO STRICT c FROM pg_constraint
	WHERE conrelid = 'exec_audit'::regclass AND contype = 'c'
	  AND pg_get_constraintdef(oid) LIKE '%''abandoned''%';
	EXECUTE format('ALTER TABLE exec_audit DROP CONSTRAINT %I', c);
END
$$;
ALTER TABLE exec_audit
	ADD CONSTRAINT exec_audit_status_check CHECK (status IN ('running', 'denied', 'exited',
		'signaled', 'timeout', 'cancelled', 'transport_error', 'failed_to_start',
		'shutdown', 'abandoned', 'lost'));

-- A name is unique among the workspace's running detached execs.
CREATE UNIQUE INDEX exec_audit_running_name_idx ON exec_audit (workspace_id, name)
	WHERE detached AND status = 'running' AND name IS NOT NULL;
-- The workspace's detached execs (list, quota) and the sweep's running ones.
CREATE INDEX exec_audit_detached_idx ON exec_audit (workspace_id, started_at DESC, exec_id DESC)
	WHERE detached;
CREATE INDEX exec_audit_detached_running_idx ON exec_audit (started_at)
	WHERE detached AND status = 'running';

-- An admin's read or signal of a detached exec, recorded with the exec (the audit row is
-- final once the exec ends, so these are rows of their own, keyed by the exec).
CREATE TABLE exec_admin_access (
	-- No foreign key: a reference would make TRUNCATE of exec_audit fail on it rather
	-- than on the audit log's own refusal.
	exec_id   uuid NOT NULL,
	at        timestamptz NOT NULL DEFAULT now(),
	actor     text NOT NULL,
	action    text NOT NULL CHECK (action IN ('read', 'output', 'list', 'signal', 'cancel')),
	detail    text CHECK (detail ~ '^[A-Z0-9]{1,8}$'),
	reason    text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500)
);
CREATE INDEX exec_admin_access_exec_idx ON exec_admin_access (exec_id, at);

CREATE FUNCTION exec_admin_access_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'exec_admin_access rows cannot be changed or deleted'
		USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER exec_admin_access_append_only BEFORE UPDATE OR DELETE ON exec_admin_access
	FOR EACH ROW EXECUTE FUNCTION exec_admin_access_refuse();
CREATE TRIGGER exec_admin_access_no_truncate BEFORE TRUNCATE ON exec_admin_access
	FOR EACH STATEMENT EXECUTE FUNCTION exec_admin_access_refuse();

-- The guard: detached and name are what the exec is, fixed at its insert.
CREATE OR REPLACE FUNCTION exec_audit_guard_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF OLD.status <> 'running' THEN
		IF OLD.seal_pending AND NOT NEW.seal_pending AND OLD.chain_seq IS NULL
		   AND NEW.chain_seq IS NOT NULL
		   AND (to_jsonb(NEW) - ARRAY['chain_seq', 'chain_hash', 'seal_pending'])
		       = (to_jsonb(OLD) - ARRAY['chain_seq', 'chain_hash', 'seal_pending']) THEN
			RETURN NEW;
		END IF;
		RAISE EXCEPTION 'exec_audit row % is final (status %) and cannot change',
			OLD.exec_id, OLD.status
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	IF (NEW.exec_id, NEW.request_id, NEW.workspace_id, NEW.org_id, NEW.actor,
	    NEW.actor_kind, NEW.break_glass_reason, NEW.argv, NEW.cwd, NEW.env_keys,
	    NEW.stdin_bytes, NEW.client_addr, NEW.timeout_s, NEW.started_at, NEW.broker_instance,
	    NEW.detached, NEW.name)
	   IS DISTINCT FROM
	   (OLD.exec_id, OLD.request_id, OLD.workspace_id, OLD.org_id, OLD.actor,
	    OLD.actor_kind, OLD.break_glass_reason, OLD.argv, OLD.cwd, OLD.env_keys,
	    OLD.stdin_bytes, OLD.client_addr, OLD.timeout_s, OLD.started_at, OLD.broker_instance,
	    OLD.detached, OLD.name) THEN
		RAISE EXCEPTION 'exec_audit row %: only the outcome of a running exec can be recorded',
			OLD.exec_id
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION exec_audit_canonical(r exec_audit) RETURNS bytea LANGUAGE sql STABLE AS $$
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
		exec_audit_canon_field((r).broker_instance) ||
		CASE WHEN (r).detached THEN 'detached' || exec_audit_canon_field((r).name)
		     ELSE '' END, 'UTF8')
$$;
