-- 0007_detached_quota: a workspace's limit of running detached execs holds when starts
-- race, on one broker or many.
--
-- The statement that inserts a running row counts the workspace's running detached execs
-- first (audit_authz_begin_sql), but two starts in flight at once both count before either
-- commits. This trigger settles them: the insert of a running detached row takes a lock
-- for its workspace (held to its commit), then counts again, seeing every start committed
-- before it. The limit is the broker's setting (workspace_max_detached_execs), which the
-- statement hands over as exec_broker.max_detached for its own transaction; a row inserted
-- without it (by hand) is not counted against anything.

CREATE FUNCTION exec_audit_detached_quota() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	lim integer := nullif(current_setting('exec_broker.max_detached', true), '')::integer;
BEGIN
	IF NEW.detached AND NEW.status = 'running' AND lim IS NOT NULL THEN
		PERFORM pg_advisory_xact_lock(hashtext('exec_broker.detached:' || NEW.workspace_id));
		IF (SELECT count(*) FROM exec_audit
		    WHERE workspace_id = NEW.workspace_id AND detached AND status = 'running') >= lim THEN
			RAISE EXCEPTION 'workspace % already has % detached execs running',
				NEW.workspace_id, lim
				USING ERRCODE = 'EBQ01';
		END IF;
	END IF;
	RETURN NEW;
END
$$;

CREATE TRIGGER exec_audit_detached_quota BEFORE INSERT ON exec_audit
	FOR EACH ROW EXECUTE FUNCTION exec_audit_detached_quota();
