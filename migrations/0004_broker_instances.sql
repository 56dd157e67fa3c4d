-- Which brokers are alive. Each broker writes a heartbeat every broker_heartbeat_s; one not
-- heard from for three of them (and a margin) is gone, and any other broker may then mark
-- the rows it left 'running' as 'abandoned' once they are past their deadline, without
-- waiting for a broker of the same name to come back.
CREATE TABLE broker_instances (
	instance text PRIMARY KEY CHECK (length(instance) BETWEEN 1 AND 200),
	started_at timestamptz NOT NULL DEFAULT now(),
	heartbeat_at timestamptz NOT NULL DEFAULT now(),
	-- Since when it has been heard from without a gap. After a gap (the broker, or its way
	-- to the database, was down) it starts again: a broker that was cut off judges no other
	-- until it has been back long enough for every live broker to have been heard from too.
	up_since timestamptz NOT NULL DEFAULT now()
);

-- The sweep reads running rows, oldest first: exec_audit_running_idx (0001) serves it.
