-- The kind of credential the release's repository is read with
-- (gitauth.Kind: 0 none, 1 an HTTPS token, 2 an SSH key), from the test
-- run's event: a deploy asks source for it before its checkout.
ALTER TABLE releases ADD COLUMN repository_git_credential INTEGER NOT NULL DEFAULT 0;
