// Package source is Sluice's source service: it registers git repositories,
// notices their changes (polling, GitHub-style webhooks, manual triggers),
// reads each commit's pipeline file, requests runs, and folds the other
// services' events into each run's summary.
package source
