// Package release is the release service: it versions the runs whose tests
// passed, deploys them to the pipeline's environments one after the other,
// verifies each deploy and rolls an environment back to its last good
// release when a deploy or its verification fails.
//
// It owns releases (version, changelog, the build's artifacts and its copy
// of them, KeptBucket), deployments
// and each run's release log: the output of the deploy and verify commands,
// sequence-numbered (platform/steplog) under the steps deploy:<environment>,
// verify:<environment> and rollback:<environment>.
//
// It consumes testrun.finished (the release-tests consumer), which carries
// the run's pipeline and the build's artifacts. It publishes
// release.published, service.deployed, deployment.failed,
// service.rolledback and run.finished (ReleaseFinished). The one thing it
// asks another service is source's ListCommits, a read-only query, for the
// commits since the last release and for commit ancestry (ancestry.go):
// versions follow ancestry, and nothing older is deployed over something
// newer automatically. Which branches deploy where is the platform's
// setting (Config.EnvironmentBranches), which a pipeline only narrows.
//
// The files follow the one service shape (docs/architecture.md):
// release.go is the stage (version, release record, environments in
// order), ancestry.go places a commit among the releases, deploy.go deploys
// and verifies one environment, rollback.go rolls
// back (after a failure, or on request), keep.go keeps each release's
// artifacts in release's own object store for as long as a deploy or a
// rollback may need them (keep-releases), consumer.go is the event port,
// handler.go the Connect API, convert.go the conversions, store.go the SQL
// and locks.go the locks (per repository, run, and environment) that keep
// versions, a run's deploys and an environment's deploys from overlapping
// across replicas.
package release
