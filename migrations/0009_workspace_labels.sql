-- 0009_workspace_labels: labels on workspaces, the key=value pairs that select them (issue
-- 14: a batch runs on the workspaces of an org that carry every pair it names).
--
-- A key is 1-63 of [a-z0-9._/-] starting with a lower-case letter or digit; a value is
-- 0-63 of [A-Za-z0-9._-], empty allowed as in Kubernetes. common/labels.c checks the same
-- before a label reaches the database. Labels go with their workspace.
--
-- A workspace has at most 64 labels, whoever writes them (the CLI or the API). A trigger
-- counts them once the statement that added some has done all its work (so a statement
-- that removes some and adds others is judged by what it leaves), after taking the
-- workspace's row lock: two transactions adding labels to one workspace count in turn, the
-- second seeing what the first committed.

CREATE TABLE workspace_labels (
	workspace_id text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
	key          text NOT NULL CHECK (key ~ '^[a-z0-9][a-z0-9._/-]{0,62}$'),
	value        text NOT NULL CHECK (value ~ '^[A-Za-z0-9._-]{0,63}$'),
	PRIMARY KEY (workspace_id, key)
);
-- Selection: the workspaces that carry a pair.
CREATE INDEX workspace_labels_pair_idx ON workspace_labels (key, value);

CREATE FUNCTION workspace_labels_limit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
BEGIN
	PERFORM 1 FROM workspaces WHERE id = NEW.workspace_id FOR NO KEY UPDATE;
	SELECT count(*) INTO n FROM workspace_labels WHERE workspace_id = NEW.workspace_id;
	IF n > 64 THEN
		RAISE EXCEPTION 'workspace % would have % labels, more than 64', NEW.workspace_id, n
			USING ERRCODE = 'EBL01',
			      HINT = 'remove some with workspace set --label KEY-';
	END IF;
	RETURN NULL;
END
$$;

CREATE TRIGGER workspace_labels_limit AFTER INSERT OR UPDATE OF workspace_id
	ON workspace_labels FOR EACH ROW EXECUTE FUNCTION workspace_labels_limit();
