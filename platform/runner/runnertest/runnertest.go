// Package runnertest is a runner.Supervisor for tests that check what it
// recovered.
package runnertest

import (
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/platform/runner"
)

// Supervisor logs nowhere and counts in a registry of its own.
type Supervisor struct {
	*runner.Supervisor
	reg *prometheus.Registry
}

// New makes a Supervisor.
func New(t testing.TB) *Supervisor {
	t.Helper()
	reg := prometheus.NewRegistry()
	sup, err := runner.NewSupervisor(slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	return &Supervisor{Supervisor: sup, reg: reg}
}

// Panics is sluice_goroutine_panics_total{task}: how many of task's panics
// s recovered.
func (s *Supervisor) Panics(t testing.TB, task string) float64 {
	t.Helper()
	return Panics(t, s.reg, task)
}

// Panics is sluice_goroutine_panics_total{task} in g (0 when absent).
func Panics(t testing.TB, g prometheus.Gatherer, task string) float64 {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "sluice_goroutine_panics_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "task" && l.GetValue() == task {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
