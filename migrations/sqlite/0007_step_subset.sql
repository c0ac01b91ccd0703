-- A run's step subset (a re-execution from failure runs only some steps of its plan) is a
-- column, not a JSON list inside a run tag: a JSON list of step keys, NULL for every step.
ALTER TABLE runs ADD COLUMN step_subset TEXT;
UPDATE runs SET step_subset = json_extract(tags, '$."orch/steps"')
    WHERE json_extract(tags, '$."orch/steps"') IS NOT NULL;
UPDATE runs SET tags = json_remove(tags, '$."orch/steps"')
    WHERE json_extract(tags, '$."orch/steps"') IS NOT NULL;
