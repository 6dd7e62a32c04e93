package build_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/platform/natstest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, natstest.KnownLeaks()...)
}
