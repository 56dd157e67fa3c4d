-- Which broker process wrote an audit row. A broker that restarts marks as 'abandoned' only
-- the rows it left running itself (and rows far past any deadline), never the running
-- execs of another broker sharing this database.
ALTER TABLE exec_audit ADD COLUMN broker_instance text
	CHECK (length(broker_instance) BETWEEN 1 AND 200);

-- The guard of 0001, with broker_instance among the columns that identify an exec.
CREATE OR REPLACE FUNCTION exec_audit_guard_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF OLD.status <> 'running' THEN
		RAISE EXCEPTION 'exec_audit row % is final (status %) and cannot change',
			OLD.exec_id, OLD.status
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	IF (NEW.exec_id, NEW.request_id, NEW.workspace_id, NEW.org_id, NEW.actor,
	    NEW.actor_kind, NEW.break_glass_reason, NEW.argv, NEW.cwd, NEW.env_keys,
	    NEW.stdin_bytes, NEW.client_addr, NEW.timeout_s, NEW.started_at, NEW.broker_instance)
	   IS DISTINCT FROM
	   (OLD.exec_id, OLD.request_id, OLD.workspace_id, OLD.org_id, OLD.actor,
	    OLD.actor_kind, OLD.break_glass_reason, OLD.argv, OLD.cwd, OLD.env_keys,
	    OLD.stdin_bytes, OLD.client_addr, OLD.timeout_s, OLD.started_at, OLD.broker_instance) THEN
		RAISE EXCEPTION 'exec_audit row %: only the outcome of a running exec can be recorded',
			OLD.exec_id
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	RETURN NEW;
END
$$;
