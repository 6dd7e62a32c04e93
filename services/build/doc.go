// Package build is Sluice's build service: it takes run requests from its
// JetStream work queue, checks the commit out, runs the pipeline's build
// steps, stores their logs and the artifacts, and announces every step of
// the way as events. It serves builds and logs over Connect
// (sluice.build.v1.BuildService).
//
// # Work queue and leases
//
// Every replica pulls run requests from the same durable consumer
// (build-runs on SOURCE). A build is keyed by its run id, so a duplicate
// request never makes a second build. The worker running a build holds two
// leases: JetStream's (InProgress every Config.Heartbeat keeps the message
// from being redelivered) and the database's (the builds row names the
// worker and when its lease expires, renewed at the same pace; every write
// the worker makes checks it still holds it). A delivery that finds the
// build:
//
//   - ended: acknowledges the request without effect;
//   - RUNNING under a live lease: waits until it ends or the lease lapses;
//   - QUEUED, or RUNNING under a lapsed or released lease: claims it in the
//     next attempt and runs the whole build again in a fresh workspace,
//     continuing the same log ("--- worker W took over (attempt N)").
//
// A worker that is stopped kills its step, releases its lease and leaves
// the build RUNNING for whoever gets the redelivery; a worker that dies
// stops renewing and is taken over once its lease lapses. On the consumer's
// last delivery, a build that cannot complete is ended FAILED, so that no
// build stays RUNNING forever.
//
// A run request is validated by the rules of its proto when it is
// received: one that breaks them (a run id that cannot name a workspace or
// an artifact object, a pipeline source would have refused) is
// dead-lettered (sluice.deadletter.build.build-runs) and gets no build.
//
// State changes and the events announcing them are written in one
// transaction (the outbox); the log is marked complete right after the
// build ends.
//
// The build stage is build.go (claim, lease, finish, give up) and
// attempt.go (one attempt in a fresh workspace: checkout, steps,
// artifacts); consumer.go is its port on the work queue.
package build
