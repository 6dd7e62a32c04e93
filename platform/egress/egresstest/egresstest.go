// Package egresstest makes egress policies for tests.
package egresstest

import (
	"testing"

	"github.com/sluicehq/sluice/platform/egress"
)

// Policy is the policy that allows entries (egress.New), its refusals
// naming the setting "allow-egress"; a bad entry fails the test.
func Policy(t testing.TB, entries ...string) *egress.Policy {
	t.Helper()
	p, err := egress.New("allow-egress", entries)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
