-- 0012_audit_seal_cost: linking a row into the chain costs less, with the same chain.
--
-- Every seal (0005) is one backend's work at a time for all brokers together, under the
-- chain head's lock, so the fleet links at most 1 / (time per row) rows a second. A row
-- cost about 0.3 ms with a core to itself (bench/README.md, bench_chain): a third of it the
-- canonical content, whose helpers ran as SQL function calls, one executor each, since
-- none of them could be inlined; the rest a per-row UPDATE, each one re-finding its row,
-- and the guard's two to_jsonb of the whole row. Here:
--
-- - the helpers of the canonical content produce the same bytes, but inline into
--   exec_audit_canonical(): octet_length() is cast to text explicitly (the implicit
--   `integer || text` is only STABLE, which kept the IMMUTABLE field helper from being
--   inlined), the time helper is declared STABLE as extract() on a timestamptz is, and
--   the array helper is a loop in PL/pgSQL instead of a query per call;
-- - exec_audit_seal() computes the links in its loop and writes them with one UPDATE;
-- - the guard checks a link by comparing the row, with the link's three columns taken from
--   NEW, to NEW: field by field, every column of the table, those to come included.
--
-- The canonical content and every hash are unchanged (docs/audit.md); tests/check_review.c
-- compares the content before and after this migration over rows of every shape.

CREATE OR REPLACE FUNCTION exec_audit_canon_field(v text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
	SELECT CASE WHEN v IS NULL THEN '-' ELSE octet_length(v)::text || ':' || v END
$$;

CREATE OR REPLACE FUNCTION exec_audit_canon_array(a text[]) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
	e text;
	s text;
BEGIN
	IF a IS NULL THEN
		RETURN '-';
	END IF;
	s := cardinality(a)::text || '[';
	-- Every element in storage order, as unnest() gives them, whatever the dimensions.
	FOREACH e IN ARRAY a LOOP
		s := s || exec_audit_canon_field(e);
	END LOOP;
	RETURN s || ']';
END
$$;

CREATE OR REPLACE FUNCTION exec_audit_canon_time(t timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
	SELECT exec_audit_canon_field((extract(epoch FROM t) * 1000000)::bigint::text)
$$;

-- The guard of 0010; only the check of a link differs.
CREATE OR REPLACE FUNCTION exec_audit_guard_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	linked exec_audit;
BEGIN
	IF OLD.status <> 'running' THEN
		IF OLD.seal_pending AND NOT NEW.seal_pending AND OLD.chain_seq IS NULL
		   AND NEW.chain_seq IS NOT NULL THEN
			linked := OLD;
			linked.chain_seq := NEW.chain_seq;
			linked.chain_hash := NEW.chain_hash;
			linked.seal_pending := NEW.seal_pending;
			-- Composite values compare field by field, two NULLs as equal (unlike
			-- ROW(...) = ROW(...)), and a field of any type with its own equality.
			IF linked = NEW THEN
				RETURN NEW;
			END IF;
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

-- The seal of 0005, same arguments, same result: the links are computed in the loop, in
-- the order the rows finished, and written by one UPDATE.
CREATE OR REPLACE FUNCTION exec_audit_seal(ids uuid[], stale interval) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
	h exec_audit_chain_head;
	r exec_audit;
	link_ids uuid[] := '{}';
	link_seqs bigint[] := '{}';
	link_hashes bytea[] := '{}';
	n integer := 0;
BEGIN
	SELECT * INTO STRICT h FROM exec_audit_chain_head WHERE only_row FOR UPDATE;
	FOR r IN SELECT * FROM exec_audit
	         WHERE seal_pending AND (exec_id = ANY (ids) OR finished_at < now() - stale)
	         ORDER BY finished_at, exec_id FOR UPDATE LOOP
		h.seq := h.seq + 1;
		r.chain_seq := h.seq;
		h.hash := sha256(h.hash || exec_audit_canonical(r));
		n := n + 1;
		link_ids[n] := r.exec_id;
		link_seqs[n] := h.seq;
		link_hashes[n] := h.hash;
	END LOOP;
	IF n > 0 THEN
		UPDATE exec_audit a
		SET chain_seq = l.seq, chain_hash = l.hash, seal_pending = false
		FROM unnest(link_ids, link_seqs, link_hashes) AS l (exec_id, seq, hash)
		WHERE a.exec_id = l.exec_id;
		UPDATE exec_audit_chain_head SET seq = h.seq, hash = h.hash WHERE only_row;
		PERFORM pg_notify('exec_audit', '');
	END IF;
	RETURN n;
END
$$;
