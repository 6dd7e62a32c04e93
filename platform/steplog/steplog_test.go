package steplog_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/platform/steplog"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(t *testing.T) *steplog.Store {
	t.Helper()
	db, err := sqldb.Open(context.Background(), filepath.Join(t.TempDir(), "logs.db"), steplog.Migrations())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return steplog.New(db)
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

func TestLongLinesAreCut(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	w, _ := s.Writer(ctx, "r", time.Hour)
	long := make([]byte, steplog.MaxLineBytes+100)
	for i := range long {
		long[i] = 'x'
	}
	w.Append("s", steplog.Stdout, string(long))
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	page, _ := s.Read(ctx, "r", "", 1, 1)
	if len(page.Lines) != 1 || len(page.Lines[0].Text) >= len(long)+30 || len(page.Lines[0].Text) < steplog.MaxLineBytes {
		t.Fatalf("line length %d", len(page.Lines[0].Text))
	}
}
