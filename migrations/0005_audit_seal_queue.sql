-- 0005_audit_seal_queue: the hash chain off the exec's critical path.
--
-- Until now every row was linked (0003) inside the statement that made it final, under the
-- chain head's row lock: each completion waited for every other one to commit, which bound
-- the whole service's throughput and was most of an exec's latency. Now a broker finishes
-- its rows with seal_pending set: the row is final at once (the guard of 0002 still lets
-- nothing about it change), and it is linked moments later, in a batch, by
-- exec_audit_seal(): by the broker that finished it, or, if that broker is gone, by any
-- other, once the row has waited longer than the stale age it is given. Rows finished any
-- other way (SQL, the abandon and sweep statements) are still linked at once.
--
-- Tamper evidence is unchanged: the canonical content (0003) does not include
-- seal_pending, a pending row can change in nothing but being linked, and `exec-broker
-- audit verify` reports rows left pending for long.

ALTER TABLE exec_audit ADD COLUMN seal_pending boolean NOT NULL DEFAULT false;

-- A final row is linked, or waiting to be; a running row is neither.
DO $$
DECLARE
	c text;
BEGIN
	SELECT conname INTO STRICT c FROM pg_constraint
	WHERE conrelid = 'exec_audit'::regclass AND contype = 'c'
	  AND pg_get_constraintdef(oid) LIKE '%(status = ''running''::text) = (chain_seq IS NULL)%';
	EXECUTE format('ALTER TABLE exec_audit DROP CONSTRAINT %I', c);
END
$$;
ALTER TABLE exec_audit
	ADD CONSTRAINT exec_audit_sealed_check CHECK (
		CASE WHEN status = 'running' THEN chain_seq IS NULL AND NOT seal_pending
		     ELSE (chain_seq IS NULL) = seal_pending END);

-- The rows waiting, for the sealers and for verify.
CREATE INDEX exec_audit_seal_pending_idx ON exec_audit (finished_at, exec_id)
	WHERE seal_pending;

-- The guard of 0002, and one more change it allows: linking a pending row, which sets its
-- link and nothing else.
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

-- The link trigger of 0003: a row that becomes final with seal_pending waits for
-- exec_audit_seal(); linking it (an update of a final row) is that function's own work.
CREATE OR REPLACE FUNCTION exec_audit_link() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	h exec_audit_chain_head;
BEGIN
	IF NEW.status = 'running' THEN
		NEW.chain_seq := NULL;
		NEW.chain_hash := NULL;
		NEW.seal_pending := false;
		RETURN NEW;
	END IF;
	IF TG_OP = 'UPDATE' AND OLD.status <> 'running' THEN
		RETURN NEW; -- exec_audit_seal() linking it; the guard checked the rest
	END IF;
	IF NEW.seal_pending THEN
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

-- Links the pending rows among ids, and every pending row finished more than stale ago
-- (their broker did not link them: it is gone), in the order they finished, under the
-- head's lock. Returns how many it linked. A row already linked, or not pending, is left
-- alone, so any broker may call it with any ids, and two calls never link a row twice.
CREATE FUNCTION exec_audit_seal(ids uuid[], stale interval) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
	h exec_audit_chain_head;
	r exec_audit;
	n integer := 0;
BEGIN
	SELECT * INTO STRICT h FROM exec_audit_chain_head WHERE only_row FOR UPDATE;
	FOR r IN SELECT * FROM exec_audit
	         WHERE seal_pending AND (exec_id = ANY (ids) OR finished_at < now() - stale)
	         ORDER BY finished_at, exec_id FOR UPDATE LOOP
		h.seq := h.seq + 1;
		r.chain_seq := h.seq;
		h.hash := sha256(h.hash || exec_audit_canonical(r));
		UPDATE exec_audit SET chain_seq = h.seq, chain_hash = h.hash, seal_pending = false
		WHERE exec_id = r.exec_id;
		n := n + 1;
	END LOOP;
	IF n > 0 THEN
		UPDATE exec_audit_chain_head SET seq = h.seq, hash = h.hash WHERE only_row;
		PERFORM pg_notify('exec_audit', '');
	END IF;
	RETURN n;
END
$$;
