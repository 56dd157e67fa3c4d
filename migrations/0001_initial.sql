-- 0001_initial: workspaces, API tokens and the exec audit log.
-- The database enforces what it can itself: formats, ranges, the token kind/scope rule,
-- and an audit log that refuses DELETE, TRUNCATE and any change to a finished row.

CREATE FUNCTION eb_touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	NEW.updated_at := now();
	RETURN NEW;
END
$$;

CREATE TABLE workspaces (
	id              text PRIMARY KEY
	                CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
	org_id          text NOT NULL
	                CHECK (org_id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
	host            text NOT NULL
	                CHECK (length(host) BETWEEN 1 AND 253 AND host ~ '^[A-Za-z0-9.:_-]+$'
	                       AND left(host, 1) <> '-'),
	port            integer NOT NULL DEFAULT 22 CHECK (port BETWEEN 1 AND 65535),
	ssh_user        text NOT NULL CHECK (ssh_user ~ '^[A-Za-z_][A-Za-z0-9._-]{0,31}$'),
	host_key_sha256 text NOT NULL CHECK (host_key_sha256 ~ '^SHA256:[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]$'),
	tier            smallint NOT NULL CHECK (tier BETWEEN 1 AND 4),
	state           text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'stopped')),
	created_at      timestamptz NOT NULL DEFAULT now(),
	updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workspaces_org_idx ON workspaces (org_id, id);
CREATE TRIGGER workspaces_touch BEFORE UPDATE ON workspaces
	FOR EACH ROW EXECUTE FUNCTION eb_touch_updated_at();

CREATE TABLE api_tokens (
	id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	prefix        text NOT NULL UNIQUE CHECK (prefix ~ '^ebk_[A-Za-z0-9_-]{8}$'),
	secret_sha256 bytea NOT NULL UNIQUE CHECK (length(secret_sha256) = 32),
	kind          text NOT NULL CHECK (kind IN ('workspace', 'org', 'admin')),
	org_id        text CHECK (org_id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
	workspace_id  text REFERENCES workspaces (id) ON DELETE CASCADE,
	name          text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
	created_at    timestamptz NOT NULL DEFAULT now(),
	expires_at    timestamptz CHECK (expires_at > created_at),
	revoked_at    timestamptz,
	last_used_at  timestamptz,
	CHECK ((kind = 'workspace' AND workspace_id IS NOT NULL AND org_id IS NULL)
	    OR (kind = 'org' AND org_id IS NOT NULL AND workspace_id IS NULL)
	    OR (kind = 'admin' AND org_id IS NULL AND workspace_id IS NULL))
);
CREATE INDEX api_tokens_workspace_idx ON api_tokens (workspace_id) WHERE workspace_id IS NOT NULL;

-- One row per exec. There is no column for output, by design: stdout, stderr, stdin and
-- environment values never reach the database.
CREATE TABLE exec_audit (
	exec_id            uuid PRIMARY KEY,
	request_id         text NOT NULL CHECK (length(request_id) BETWEEN 1 AND 200),
	workspace_id       text NOT NULL,
	org_id             text NOT NULL,
	actor              text NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
	actor_kind         text NOT NULL CHECK (actor_kind IN ('workspace', 'org', 'admin')),
	break_glass_reason text CHECK (length(break_glass_reason) BETWEEN 1 AND 500),
	argv               text[] NOT NULL
	                   CHECK (cardinality(argv) BETWEEN 1 AND 256 AND array_ndims(argv) = 1),
	cwd                text,
	env_keys           text[] NOT NULL DEFAULT '{}',
	stdin_bytes        bigint NOT NULL DEFAULT 0 CHECK (stdin_bytes >= 0),
	client_addr        inet,
	timeout_s          integer CHECK (timeout_s > 0),
	status             text NOT NULL CHECK (status IN ('running', 'denied', 'exited',
	                   'signaled', 'timeout', 'cancelled', 'transport_error',
	                   'failed_to_start', 'shutdown', 'abandoned')),
	error_code         text CHECK (error_code ~ '^[a-z_]{1,64}$'),
	exit_code          integer CHECK (exit_code BETWEEN 0 AND 255),
	exit_signal        text CHECK (exit_signal ~ '^[A-Z0-9+-]{1,32}$'),
	started_at         timestamptz NOT NULL DEFAULT now(),
	finished_at        timestamptz,
	duration_ms        bigint CHECK (duration_ms >= 0),
	stdout_bytes       bigint NOT NULL DEFAULT 0 CHECK (stdout_bytes >= 0),
	stderr_bytes       bigint NOT NULL DEFAULT 0 CHECK (stderr_bytes >= 0),
	stdout_truncated   boolean NOT NULL DEFAULT false,
	stderr_truncated   boolean NOT NULL DEFAULT false,
	-- A row is running exactly while it has no end.
	CHECK ((status = 'running') = (finished_at IS NULL)),
	CHECK (finished_at IS NULL OR finished_at >= started_at),
	-- Only a command that exited has an exit code; only a signaled one has a signal.
	CHECK ((status = 'exited') = (exit_code IS NOT NULL)),
	CHECK ((status = 'signaled') = (exit_signal IS NOT NULL)),
	-- Refusals and failures say why.
	CHECK (status NOT IN ('denied', 'failed_to_start') OR error_code IS NOT NULL),
	CHECK ((actor_kind = 'admin') = (break_glass_reason IS NOT NULL) OR status = 'denied')
);
CREATE INDEX exec_audit_started_idx ON exec_audit (started_at DESC, exec_id DESC);
CREATE INDEX exec_audit_workspace_idx ON exec_audit (workspace_id, started_at DESC, exec_id DESC);
CREATE INDEX exec_audit_org_idx ON exec_audit (org_id, started_at DESC, exec_id DESC);
CREATE INDEX exec_audit_actor_idx ON exec_audit (actor, started_at DESC, exec_id DESC);
CREATE INDEX exec_audit_running_idx ON exec_audit (started_at) WHERE status = 'running';

CREATE FUNCTION exec_audit_refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'exec_audit rows cannot be deleted'
		USING ERRCODE = 'insufficient_privilege',
		      HINT = 'the audit log is append-only';
END
$$;

-- A running row may be completed once; nothing that identifies the exec may change, and a
-- finished row may not change at all.
CREATE FUNCTION exec_audit_guard_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF OLD.status <> 'running' THEN
		RAISE EXCEPTION 'exec_audit row % is final (status %) and cannot change',
			OLD.exec_id, OLD.status
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	IF (NEW.exec_id, NEW.request_id, NEW.workspace_id, NEW.org_id, NEW.actor,
	    NEW.actor_kind, NEW.break_glass_reason, NEW.argv, NEW.cwd, NEW.env_keys,
	    NEW.stdin_bytes, NEW.client_addr, NEW.timeout_s, NEW.started_at)
	   IS DISTINCT FROM
	   (OLD.exec_id, OLD.request_id, OLD.workspace_id, OLD.org_id, OLD.actor,
	    OLD.actor_kind, OLD.break_glass_reason, OLD.argv, OLD.cwd, OLD.env_keys,
	    OLD.stdin_bytes, OLD.client_addr, OLD.timeout_s, OLD.started_at) THEN
		RAISE EXCEPTION 'exec_audit row %: only the outcome of a running exec can be recorded',
			OLD.exec_id
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	RETURN NEW;
END
$$;

CREATE TRIGGER exec_audit_no_delete BEFORE DELETE ON exec_audit
	FOR EACH ROW EXECUTE FUNCTION exec_audit_refuse_delete();
CREATE TRIGGER exec_audit_no_truncate BEFORE TRUNCATE ON exec_audit
	FOR EACH STATEMENT EXECUTE FUNCTION exec_audit_refuse_delete();
CREATE TRIGGER exec_audit_final BEFORE UPDATE ON exec_audit
	FOR EACH ROW EXECUTE FUNCTION exec_audit_guard_update();
