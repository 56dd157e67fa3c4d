-- 0008_token_scopes: what a token may do, apart from where it reaches.
--
-- Until now every token that could read the audit log could also run commands, so an
-- auditor could not be given the one without the other. A token now holds scopes:
--   exec        run commands (attached and detached) where the token reaches
--   batch       fan out one command to many workspaces (POST /v1/batches)
--   audit:read  read the audit log where the token reaches
-- Existing tokens keep their powers: workspace and org tokens get exec and audit:read,
-- admin tokens all three. A token inserted without scopes gets the same defaults for its
-- kind (the trigger below), so that the defaults live in one place. A workspace token
-- never holds batch: it reaches one workspace, there is nothing to fan out to.

ALTER TABLE api_tokens ADD COLUMN scopes text[];

CREATE FUNCTION api_tokens_default_scopes(kind text) RETURNS text[]
	LANGUAGE sql IMMUTABLE AS $$
	SELECT CASE kind WHEN 'admin' THEN ARRAY['exec', 'batch', 'audit:read']
	                 ELSE ARRAY['exec', 'audit:read'] END
$$;

UPDATE api_tokens SET scopes = api_tokens_default_scopes(kind);

ALTER TABLE api_tokens
	ALTER COLUMN scopes SET NOT NULL,
	ADD CONSTRAINT api_tokens_scopes_check CHECK (
		cardinality(scopes) >= 1
		AND scopes <@ ARRAY['exec', 'batch', 'audit:read']
		AND array_position(scopes, NULL) IS NULL
		AND NOT (kind = 'workspace' AND 'batch' = ANY (scopes)));

CREATE FUNCTION api_tokens_fill_scopes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.scopes IS NULL THEN
		NEW.scopes := api_tokens_default_scopes(NEW.kind);
	END IF;
	RETURN NEW;
END
$$;

CREATE TRIGGER api_tokens_fill_scopes BEFORE INSERT ON api_tokens
	FOR EACH ROW EXECUTE FUNCTION api_tokens_fill_scopes();
