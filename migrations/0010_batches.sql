-- 0010_batches: one command fanned out to many workspaces (POST /v1/batches).
--
-- A batch is a row of its own (who asked, the selector as given, the workspaces it
-- resolved to, the command without its env values or stdin, the budgets, the counts and the
-- final status), and each of its targets is an ordinary exec_audit row that names the batch
-- in batch_id. The batch row is not in the hash chain: every command that ran is, through
-- its target's row, and a target row's batch_id is in its canonical content (after the
-- detached mark, only when set, so rows without a batch hash exactly as before and verify
-- needs no second version).
--
-- A batch row changes only while it runs, and once final it never changes; rows are never
-- deleted. A running attached batch whose broker died is marked 'abandoned' by the same
-- statements that abandon that broker's running execs (audit/writer.c).

CREATE TABLE batches (
	batch_id           uuid PRIMARY KEY,
	request_id         text NOT NULL CHECK (length(request_id) BETWEEN 1 AND 200),
	actor              text NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
	actor_kind         text NOT NULL CHECK (actor_kind IN ('workspace', 'org', 'admin')),
	org_id             text, -- the token's org; NULL for an admin token
	break_glass_reason text CHECK (length(break_glass_reason) BETWEEN 1 AND 500),
	target             jsonb NOT NULL,
	targets            text[] NOT NULL,
	argv               text[] NOT NULL,
	env_keys           text[] NOT NULL,
	cwd                text,
	stdin_bytes        bigint NOT NULL CHECK (stdin_bytes >= 0),
	timeout_s          integer NOT NULL CHECK (timeout_s > 0),
	max_concurrency    integer NOT NULL CHECK (max_concurrency >= 1),
	max_errors         integer NOT NULL CHECK (max_errors >= 0),
	detached           boolean NOT NULL,
	client_addr        inet,
	broker_instance    text NOT NULL,
	status             text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed',
		'partial_failure', 'failed', 'stopped', 'cancelled', 'abandoned')),
	-- A detached batch: every target that was to start has started (or was refused).
	launched           boolean NOT NULL DEFAULT false,
	succeeded          integer CHECK (succeeded >= 0),
	failed             integer CHECK (failed >= 0),
	not_started        integer CHECK (not_started >= 0),
	started_at         timestamptz NOT NULL DEFAULT now(),
	finished_at        timestamptz,
	CHECK ((status = 'running') = (finished_at IS NULL))
);
CREATE INDEX batches_actor_idx ON batches (actor, started_at DESC, batch_id DESC);
CREATE INDEX batches_running_idx ON batches (broker_instance) WHERE status = 'running';

CREATE FUNCTION batches_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'UPDATE' AND OLD.status = 'running'
	   AND (to_jsonb(NEW) - ARRAY['status', 'launched', 'succeeded', 'failed', 'not_started',
	                              'finished_at'])
	       = (to_jsonb(OLD) - ARRAY['status', 'launched', 'succeeded', 'failed',
	                                'not_started', 'finished_at']) THEN
		RETURN NEW;
	END IF;
	RAISE EXCEPTION 'batches rows cannot be deleted, and only a running batch''s outcome can '
		'be recorded'
		USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER batches_guard BEFORE UPDATE OR DELETE ON batches
	FOR EACH ROW EXECUTE FUNCTION batches_guard();
CREATE TRIGGER batches_no_truncate BEFORE TRUNCATE ON batches
	FOR EACH STATEMENT EXECUTE FUNCTION batches_guard();

-- No foreign key, as for exec_admin_access: a TRUNCATE of exec_audit must fail on the
-- audit log's own refusal.
ALTER TABLE exec_audit ADD COLUMN batch_id uuid;
CREATE INDEX exec_audit_batch_idx ON exec_audit (batch_id) WHERE batch_id IS NOT NULL;

-- The guard: batch_id is what the exec is, fixed at its insert.
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
	    NEW.detached, NEW.name, NEW.batch_id)
	   IS DISTINCT FROM
	   (OLD.exec_id, OLD.request_id, OLD.workspace_id, OLD.org_id, OLD.actor,
	    OLD.actor_kind, OLD.break_glass_reason, OLD.argv, OLD.cwd, OLD.env_keys,
	    OLD.stdin_bytes, OLD.client_addr, OLD.timeout_s, OLD.started_at, OLD.broker_instance,
	    OLD.detached, OLD.name, OLD.batch_id) THEN
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
		     ELSE '' END ||
		CASE WHEN (r).batch_id IS NOT NULL
		     THEN 'batch' || exec_audit_canon_field((r).batch_id::text) ELSE '' END, 'UTF8')
$$;
