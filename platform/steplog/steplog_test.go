package steplog_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/platform/sqldb/sqldbtest"
	"github.com/sluicehq/sluice/platform/steplog"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(t *testing.T) *steplog.Store {
	t.Helper()
	return openLimited(t, steplog.Limits{})
}

func openLimited(t *testing.T, limits steplog.Limits) *steplog.Store {
	t.Helper()
	// SQLite, or PostgreSQL when SLUICE_TEST_STORE says so.
	db, err := sqldb.Open(context.Background(), sqldbtest.URL(t), steplog.Migrations())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return steplog.New(db, limits)
}

func TestSequenceContinuesAcrossWriters(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	w, err := s.Writer(ctx, "run1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	w.Append("compile", steplog.Stdout, "one")
	w.Append("compile", steplog.Stderr, "two")
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// A second writer (a worker that took over) continues at 3.
	w2, err := s.Writer(ctx, "run1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if seq := w2.Append("test", steplog.Stdout, "three"); seq != 3 {
		t.Fatalf("seq = %d, want 3", seq)
	}
	if err := w2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	page, err := s.Read(ctx, "run1", "", 2, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Lines) != 2 || page.Lines[0].Text != "two" || page.Lines[1].Seq != 3 || page.Next != 4 || page.Complete {
		t.Fatalf("page = %+v", page)
	}
	page, err = s.Read(ctx, "run1", "compile", 0, 10)
	if err != nil || len(page.Lines) != 2 {
		t.Fatalf("step filter: %+v %v", page, err)
	}
	// Other runs are separate.
	page, err = s.Read(ctx, "run2", "", 0, 10)
	if err != nil || len(page.Lines) != 0 {
		t.Fatalf("run2: %+v %v", page, err)
	}
}

func TestTailFollowsUntilComplete(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := open(t)
	w, err := s.Writer(ctx, "r", 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []string, 1)
	go func() {
		var texts []string
		err := s.Tail(ctx, "r", "", 1, func(lines []steplog.Line) error {
			for _, l := range lines {
				texts = append(texts, l.Text)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
		got <- texts
	}()
	for _, text := range []string{"a", "b", "c"} {
		w.Append("s", steplog.Stdout, text)
		time.Sleep(20 * time.Millisecond)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	texts := <-got
	if len(texts) != 3 || texts[0] != "a" || texts[2] != "c" {
		t.Fatalf("tail got %v", texts)
	}
}

// Output past the run's limit is dropped, never silently: the log says when
// the limit was reached and, at the end, how much was dropped; Sluice's
// own lines are still stored, and a writer that takes the run over counts
// what is already stored.
func TestLimitsDropOutputVisibly(t *testing.T) {
	ctx := context.Background()
	s := openLimited(t, steplog.Limits{MaxLines: 100, MaxBytes: 1 << 20})
	w, err := s.Writer(ctx, "run1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 60 {
		w.Append("a", steplog.Stdout, fmt.Sprintf("line %d", i))
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// A takeover after a line of Sluice's own: 40 more fit, 20 do not.
	w, err = s.Writer(ctx, "run1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	w.Append("a", steplog.Meta, "--- worker w1 stopped")
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	w, err = s.Writer(ctx, "run1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for i := 60; i < 120; i++ {
		w.Append("a", steplog.Stdout, fmt.Sprintf("line %d", i))
	}
	w.Append("a", steplog.Meta, "--- exit 0")
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	page, err := s.Read(ctx, "run1", "", 1, 10000)
	if err != nil {
		t.Fatal(err)
	}
	var output, meta []string
	for _, l := range page.Lines {
		if l.Stream == steplog.Meta {
			meta = append(meta, l.Text)
		} else {
			output = append(output, l.Text)
		}
	}
	if len(output) != 100 || output[99] != "line 99" {
		t.Errorf("kept %d output lines, the last %q; want 100 up to line 99", len(output), output[len(output)-1])
	}
	want := []string{"--- worker w1 stopped", "--- the run's log reached its limit", "--- exit 0", "--- 20 lines (160 bytes) of output were dropped"}
	if len(meta) != len(want) {
		t.Fatalf("meta lines %q; want %d", meta, len(want))
	}
	for i, prefix := range want {
		if !strings.HasPrefix(meta[i], prefix) {
			t.Errorf("meta line %d is %q; want %q…", i, meta[i], prefix)
		}
	}
}

func TestLimitsValidate(t *testing.T) {
	for _, l := range []steplog.Limits{{MaxLines: 10}, {MaxBytes: 100}, {MaxLines: -1}} {
		if err := l.Validate(); err == nil {
			t.Errorf("%+v is valid", l)
		}
	}
	if err := (steplog.Limits{}).Validate(); err != nil {
		t.Errorf("zero (the defaults): %v", err)
	}
}

// A line over MaxLineBytes is cut at a character boundary with a mark that
// says how much was cut.
func TestLongLineIsCutVisibly(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	w, err := s.Writer(ctx, "run1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	w.Append("a", steplog.Stdout, strings.Repeat("é", 20<<10)) // 40 KiB
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	page, err := s.Read(ctx, "run1", "", 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	got := page.Lines[0].Text
	if len(got) > steplog.MaxLineBytes || !utf8.ValidString(got) || !strings.Contains(got, "[cut: ") || !strings.Contains(got, "KiB more]") {
		t.Errorf("a 40 KiB line is stored as %d bytes ending %q", len(got), got[max(0, len(got)-40):])
	}
}

// numbered is what a page's lines say, with their numbers.
func numbered(lines []steplog.Line) []string {
	var out []string
	for _, l := range lines {
		out = append(out, fmt.Sprintf("%d %s", l.Seq, l.Text))
	}
	return out
}

// TestTakeoverSupersedesTheEarlierWriter: a worker that lost its run (its
// lease lapsed) may still flush lines after another worker opened the log.
// Those lines are refused, so they can neither take the numbers of the new
// writer's lines (which were lost then) nor be dropped without a word: the
// new writer's first line says the earlier one's unstored lines are lost.
func TestTakeoverSupersedesTheEarlierWriter(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	old, err := s.Writer(ctx, "run1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	old.Append("compile", steplog.Stdout, "stored before the takeover")
	if err := old.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	old.Append("compile", steplog.Stdout, "buffered by the worker that lost the run")

	taker, err := s.Writer(ctx, "run1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	taker.Append("", steplog.Meta, "--- worker b took over")
	// The earlier writer flushes after the takeover, before the new one.
	if err := old.Flush(ctx); !errors.Is(err, steplog.ErrSuperseded) || !strings.Contains(err.Error(), "1 lines not stored") {
		t.Fatalf("flush of the superseded writer = %v; want ErrSuperseded for its 1 line", err)
	}
	if seq := old.Append("compile", steplog.Stdout, "later"); seq != 0 {
		t.Errorf("a superseded writer numbered a line %d", seq)
	}
	if err := old.Close(ctx); !errors.Is(err, steplog.ErrSuperseded) || !strings.Contains(err.Error(), "2 lines not stored") {
		t.Errorf("close of the superseded writer = %v; want ErrSuperseded for its 2 lines", err)
	}
	taker.Append("compile", steplog.Stdout, "from the new worker")
	if err := taker.Close(ctx); err != nil {
		t.Fatal(err)
	}

	page, err := s.Read(ctx, "run1", "", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	got := numbered(page.Lines)
	want := []string{
		"1 stored before the takeover",
		"2 --- the log's earlier writer did not close it (its worker stopped or lost the run): the lines it had not stored by then are lost (a writer stores its lines every 1h0m0s)",
		"3 --- worker b took over",
		"4 from the new worker",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// A writer that closed the log hands it on without a word.
	next, err := s.Writer(ctx, "run1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	next.Append("", steplog.Meta, "--- release")
	if err := next.Close(ctx); err != nil {
		t.Fatal(err)
	}
	page, err = s.Read(ctx, "run1", "", 5, 100)
	if err != nil || !slices.Equal(numbered(page.Lines), []string{"5 --- release"}) {
		t.Fatalf("after a clean close: %q, %v", numbered(page.Lines), err)
	}
}
