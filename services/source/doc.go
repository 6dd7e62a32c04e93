// Package source is Sluice's source service: it registers git repositories,
// notices their changes (polling, the forges' webhooks, manual triggers),
// reads each commit's pipeline file, requests runs, and folds the other
// services' events into each run's summary. It serves repositories, runs
// and commits over Connect (sluice.source.v1.SourceService) and receives
// webhooks at WebhookPath.
//
// # What it owns
//
// Its database holds the repositories (with their webhook secrets and the
// head of the watched branch last seen), the webhook deliveries that made a
// run (so a redelivery makes none), the commits that have a run per branch
// (so a replayed push or the poll makes no second one), and the runs with
// their stages. Each
// repository's mirror lives under <data-dir>/mirrors/<repository id>.
//
// # What it publishes and consumes
//
// It publishes, through the outbox, on sluice.source.>: repository created,
// change received (a poll or a webhook noticed a commit), run requested
// (with the parsed pipeline, which every later stage reads from the events
// before it), run started (once, when the run leaves the queue: the first
// of its stages' events is folded) and run finished (once, when the summary ends, or at once when
// the pipeline file is missing or invalid).
//
// It consumes every event of the BUILD, TEST and RELEASE streams
// (source-build, source-test and source-release) and folds it into its run,
// once per event id.
//
// # Where things are
//
// service.go has Deps, Service and NewService; the use cases are
// repositories.go (register, list, read), runs.go (trigger a run and read
// runs and commits), poll.go, webhook.go (a push starts a run; the HTTP
// route beside it) and summary.go (the fold). The pipeline file's parser is
// package pipeline; the git mirrors are package gitmirror; the run
// summary's rules are package domain.
package source
