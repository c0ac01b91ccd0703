-- A run's step subset (a re-execution from failure runs only some steps of its plan) is a
-- column, not a JSON list inside a run tag: a JSON list of step keys, NULL for every step.
ALTER TABLE runs ADD COLUMN step_subset JSONB;
UPDATE runs SET step_subset = (tags ->> 'orch/steps')::jsonb WHERE tags ? 'orch/steps';
UPDATE runs SET tags = tags - 'orch/steps' WHERE tags ? 'orch/steps';
