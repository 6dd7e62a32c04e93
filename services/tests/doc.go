// Package tests is Sluice's test service (the service is named "test":
// its NATS user, stream, subjects and SLUICE_TEST_* variables; the Go
// package is tests so that importing it needs no alias): it tests every successful build.
// On a BuildFinished event it checks the commit out, puts the build's
// artifacts in place, runs the pipeline's test steps, reads their JUnit or
// `go test -json` reports, stores suites and cases and publishes
// TestRunFinished, on which release starts. Its Connect API serves test
// runs, cases and step logs.
package tests
