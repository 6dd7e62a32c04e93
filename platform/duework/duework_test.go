package duework_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/duework"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// queue is an in-memory Queue: items due at their time, leased once
// claimed; an attempt at a "panic" item panics, and one at a "retry" item
// fails once and is due again a little later.
type queue struct {
	mu       sync.Mutex
	due      map[string]time.Time
	leased   map[string]bool
	done     []string
	running  int
	most     int
	failed   map[string]bool
	attempts map[string]int
	// first is when each item was first attempted.
	first map[string]time.Time
	hold  chan struct{}
}

func newQueue(items map[string]time.Time) *queue {
	return &queue{due: items, leased: map[string]bool{}, failed: map[string]bool{}, attempts: map[string]int{}, first: map[string]time.Time{}}
}

func (q *queue) Claim(_ context.Context, now time.Time, limit int) ([]string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []string
	for _, id := range slices.Sorted(func(yield func(string) bool) {
		for id := range q.due {
			if !yield(id) {
				return
			}
		}
	}) {
		if len(out) < limit && !q.leased[id] && !q.due[id].After(now) {
			q.leased[id] = true
			out = append(out, id)
		}
	}
	return out, nil
}

func (q *queue) NextDue(context.Context) (time.Time, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var next time.Time
	for id, at := range q.due {
		if !q.leased[id] && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	if next.IsZero() {
		return next, fmt.Errorf("due item: %w", apierror.ErrNotFound)
	}
	return next, nil
}

func (q *queue) Attempt(_ context.Context, _ *slog.Logger, id string) {
	q.mu.Lock()
	q.running++
	q.most = max(q.most, q.running)
	q.attempts[id]++
	if _, ok := q.first[id]; !ok {
		q.first[id] = time.Now()
	}
	hold := q.hold
	q.mu.Unlock()
	if hold != nil {
		<-hold
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.running--
	switch {
	case id == "panic" && q.attempts[id] == 1:
		panic("an attempt panicked")
	case id == "retry" && !q.failed[id]:
		q.failed[id] = true
		q.due[id] = time.Now().Add(50 * time.Millisecond)
		q.leased[id] = false
		return
	}
	delete(q.due, id)
	delete(q.leased, id)
	q.done = append(q.done, id)
}

func (q *queue) finished() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Sorted(slices.Values(q.done))
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Due items are attempted, a failed one again when it is due again, one
// that is not due yet at its time (not before, and not at the next look,
// an hour away here), and a panic in one attempt stops neither the loop
// nor the others.
func TestLoopAttemptsDueItems(t *testing.T) {
	t.Parallel()
	now := time.Now()
	later := now.Add(200 * time.Millisecond)
	q := newQueue(map[string]time.Time{"a": now, "b": now, "retry": now, "later": later, "panic": now})
	l := &duework.Loop[string]{Name: "items", Queue: q, Workers: 2, Log: slog.New(slog.DiscardHandler), Poll: time.Hour}
	ctx, cancel := context.WithCancel(t.Context())
	stopped := make(chan error)
	go func() { stopped <- l.Run(ctx) }()
	waitFor(t, "every item but the panicked one", func() bool { return len(q.finished()) == 4 })
	if got, want := q.finished(), []string{"a", "b", "later", "retry"}; !slices.Equal(got, want) {
		t.Errorf("done %v, want %v", got, want)
	}
	cancel()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if q.attempts["retry"] != 2 || q.attempts["panic"] != 1 {
		t.Errorf("attempts %v", q.attempts)
	}
	if q.first["later"].Before(later) {
		t.Errorf("the later item was attempted %v before it was due", later.Sub(q.first["later"]))
	}
}

// No more than Workers attempts run at once, and Wake starts what was
// queued after the loop went idle without waiting for its next look (an
// hour away here).
func TestLoopBoundsAttemptsAndWakes(t *testing.T) {
	t.Parallel()
	now := time.Now()
	items := map[string]time.Time{}
	for i := range 10 {
		items[fmt.Sprint(i)] = now
	}
	q := newQueue(items)
	q.hold = make(chan struct{})
	l := &duework.Loop[string]{Name: "items", Queue: q, Workers: 3, Poll: time.Hour}
	ctx, cancel := context.WithCancel(t.Context())
	stopped := make(chan error)
	go func() { stopped <- l.Run(ctx) }()
	waitFor(t, "3 attempts under way", func() bool { q.mu.Lock(); defer q.mu.Unlock(); return q.running == 3 })
	close(q.hold)
	waitFor(t, "10 items done", func() bool { return len(q.finished()) == 10 })
	if q.most != 3 {
		t.Errorf("at most %d attempts at once, want 3", q.most)
	}

	// Idle now: an item queued and woken for is attempted at once.
	q.mu.Lock()
	q.due["late"] = time.Now()
	q.mu.Unlock()
	l.Wake()
	waitFor(t, "the late item", func() bool { return len(q.finished()) == 11 })
	cancel()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}
