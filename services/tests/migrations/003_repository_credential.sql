-- The kind of credential the run's repository is read with
-- (gitauth.Kind: 0 none, 1 an HTTPS token, 2 an SSH key), from the build's
-- event: the test run asks source for it before its checkout.
ALTER TABLE test_runs ADD COLUMN repository_git_credential INTEGER NOT NULL DEFAULT 0;
