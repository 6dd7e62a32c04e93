package container_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every connection to the engine is closed, every step's output copied
// to its end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
