-- 0011_org_limit: org_max_concurrent_execs counts the org's execs on every broker.
--
-- Each broker used to count its own execs in memory, so N brokers let an org run N times
-- its limit. The statement that inserts an exec's running row (audit/writer.c's
-- audit_authz_begin_sql) now asks exec_audit_org_room() first: the org's attached execs
-- running on brokers that are alive, counted under a lock per org that is held to the
-- commit, so that two inserts of one org, on one broker or many, are counted one after
-- the other and the limit holds exactly. It costs no extra round trip: the check is part of
-- the one statement an exec makes before its command. What it costs is that the inserts of
-- one org wait for each other's commits (those of different orgs do not).
--
-- A broker that dies frees its org's places once its heartbeat is older than dead_s (the
-- time after which other brokers judge it gone), without waiting for its rows to be swept.
-- Detached execs are not counted: they hold nothing on a broker once started.

CREATE INDEX exec_audit_running_org_idx ON exec_audit (org_id, broker_instance)
	WHERE status = 'running' AND NOT detached;

CREATE FUNCTION exec_audit_org_room(org text, lim integer, dead_s integer) RETURNS boolean
	LANGUAGE plpgsql AS $$
BEGIN
	IF lim IS NULL THEN
		RETURN true;
	END IF;
	PERFORM pg_advisory_xact_lock(hashtext('exec_broker.org:' || org));
	-- A volatile function's statements see what committed before each of them began: once
	-- the lock is had, every insert of this org that held it before is counted.
	RETURN (SELECT count(*) FROM exec_audit a
	        JOIN broker_instances b ON b.instance = a.broker_instance
	        WHERE a.org_id = org AND a.status = 'running' AND NOT a.detached
	          AND b.heartbeat_at >= now() - make_interval(secs => dead_s)) < lim;
END
$$;
