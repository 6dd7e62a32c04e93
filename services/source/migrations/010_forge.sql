-- The forge a repository lives on (platform/forge): its kind (github,
-- gitea, gitlab; '' for none), its address and the project's path there.
-- Its API token is the repository's secret SLUICE_FORGE_TOKEN.
ALTER TABLE repositories ADD COLUMN forge_kind TEXT NOT NULL DEFAULT '';
ALTER TABLE repositories ADD COLUMN forge_url TEXT NOT NULL DEFAULT '';
ALTER TABLE repositories ADD COLUMN forge_project TEXT NOT NULL DEFAULT '';
