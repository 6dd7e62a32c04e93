-- One role and one database per service, each owned by its role. Run by the
-- sluice-postgres image's entrypoint once, when it initializes the data
-- directory. The passwords come from the environment (psql's \getenv), which
-- the StatefulSet fills from the Secret postgres-secrets.
\set ON_ERROR_STOP on

\getenv source_password SOURCE_DB_PASSWORD
CREATE ROLE source LOGIN PASSWORD :'source_password';
CREATE DATABASE source OWNER source;

\getenv build_password BUILD_DB_PASSWORD
CREATE ROLE build LOGIN PASSWORD :'build_password';
CREATE DATABASE build OWNER build;

\getenv test_password TEST_DB_PASSWORD
CREATE ROLE test LOGIN PASSWORD :'test_password';
CREATE DATABASE test OWNER test;

\getenv release_password RELEASE_DB_PASSWORD
CREATE ROLE release LOGIN PASSWORD :'release_password';
CREATE DATABASE release OWNER release;

\getenv notify_password NOTIFY_DB_PASSWORD
CREATE ROLE notify LOGIN PASSWORD :'notify_password';
CREATE DATABASE notify OWNER notify;
