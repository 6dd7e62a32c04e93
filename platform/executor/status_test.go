package executor

import (
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/sluicehq/sluice/platform/runner"
)

// panickingReader stands for a report pipe whose read panics.
type panickingReader struct{}

func (panickingReader) Read([]byte) (int, error) { panic("bad read") }
func (panickingReader) Close() error             { return nil }

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// A panic in the goroutine that reads the sandbox supervisor's report
// fails the step with it instead of crashing the process.
func TestReportReaderPanicFailsTheStep(t *testing.T) {
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = devNull.Close() }()
	sup, err := runner.NewSupervisor(slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	st := &supervisorStatus{
		sup:  sup,
		spec: nopWriteCloser{io.Discard}, specR: devNull, w: io.NopCloser(nil), r: panickingReader{},
		done: make(chan struct{}), panicked: make(chan error, 2),
	}
	st.started()
	_, err = st.outcome()
	if p, ok := runner.Panicked(err); !ok || p.Task != "step report reader" {
		t.Fatalf("outcome returned %v; want the reader's panic", err)
	}
}
