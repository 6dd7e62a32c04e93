// Package tests is Sluice's test service: it tests every successful build.
// The service is named "test" (its binary sluice-test, its NATS user,
// stream, subjects and SLUICE_TEST_* variables); the Go package is tests so
// that importing it needs no alias. On a BuildFinished event it checks the
// commit out, puts the build's artifacts in place, runs the pipeline's test
// steps, reads their JUnit or `go test -json` reports, stores steps, suites
// and cases, and publishes TestRunFinished, on which release starts. Its
// Connect API (sluice.test.v1.TestService) serves test runs, their steps,
// suites and cases, and the step logs.
//
// # Per BuildFinished event (consumer test-builds on BUILD)
//
//  1. The event is validated by the rules of its proto when it is received:
//     one that breaks them (a run id that cannot name a workspace, a
//     commit that is not a full SHA-1) is dead-lettered
//     (sluice.deadletter.test.test-builds) and gets no test run.
//  2. A build that did not succeed is acknowledged and nothing else happens.
//  3. The test run is keyed by run id. The worker records it RUNNING, with
//     the pipeline's test steps PENDING, together with TestRunStarted
//     (outbox, same transaction). A run that ended is skipped. A duplicate
//     event (another event id) while a worker holds the run is skipped. A
//     RUNNING run whose worker stopped renewing its lease (30 s, renewed
//     every 10 s) is taken over with attempt + 1. A worker that fails and
//     returns the event for redelivery releases its lease, so the next
//     delivery takes over at once. Every update names the worker's
//     attempt, so a worker that lost the run cannot finish it.
//     TestRunStarted is published for the first attempt only, because the
//     event has no attempt field.
//  4. The pipeline comes in the BuildFinished event itself (build passes on
//     what source requested), so the service asks no other service for
//     anything. An event without one (from an older build service) ends
//     the run in ERROR.
//  5. The commit is checked out into <DataDir>/workspaces/<run-id>-<attempt>,
//     which is removed afterwards. The stage's caches (test.cache) are
//     restored (platform/stepcache), then the build's artifacts are fetched
//     from the sluice-artifacts object store to the paths in
//     build.artifacts, checked against the sha256 and size the build
//     recorded, and made executable (0755, because the object store keeps
//     no file mode); a directory's or a glob's gzipped tar is unpacked
//     where it came from (artifacts.ArchiveBase). The caches are saved
//     after the steps succeeded.
//  6. The test steps run in order and stop at the first failure. Their
//     output goes to the step log ("--- step <name>: <cmd>", "--- step
//     <name> exited with code N after D"). Then every report is read, even
//     after a failed step.
//  7. The outcome rule is domain.Decide. A failed case or a failed step
//     makes the run FAILED: the reason is "2 tests failed: TestA, TestB",
//     then `step "unit" exited with code 1` if a step failed too. Otherwise
//     a missing or malformed report makes it ERROR, with a reason naming
//     the file (and the line). Otherwise it PASSED. A report that is
//     missing after a failed step is a result of that failure: it is added
//     to the FAILED reason and does not turn the run into ERROR. A pipeline
//     with no tests passes with zero counts.
//  8. The steps are recorded as they ended (SKIPPED for those that did not
//     run, CANCELLED for one the worker stopped), with the suites, the
//     cases and TestRunFinished, in one transaction.
//  9. Infrastructure errors (clone or object store failures) are returned
//     for redelivery. On the consumer's last delivery (its max_deliver,
//     read from deploy/nats), the run ends in ERROR with "gave up after N
//     deliveries: ...".
//
// # Reports (package report)
//
//   - go test -json: one suite per package and one case per test and
//     subtest. A package that fails without a failing test becomes a failed
//     case "[build failed]", "[package failed]" (for example TestMain or
//     goleak) or "[package did not finish]". A test that started and never
//     ended counts as failed.
//   - JUnit XML: a <testsuites> or <testsuite> root. Nested suites are
//     flattened. <failure> and <error> mean failed, <skipped> means
//     skipped. A case is named classname.name when the classname adds
//     information.
//   - A failed case keeps the last 50 lines of its output.
//
// # Files
//
// The test stage is testrun.go (claim, lease, finish, give up) and
// attempt.go (one attempt in a fresh workspace: checkout, artifacts,
// steps, reports); consumer.go is its port on test-builds.
package tests
