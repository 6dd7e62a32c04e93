package audit

import (
	"testing"
	"time"
)

// The bucket lets a burst through, then its rate; it reports the refusals
// at most once a minute.
func TestBucket(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := newBucket(10, 100, func() time.Time { return now })
	for i := range 100 {
		if _, ok := b.take(); !ok {
			t.Fatalf("take %d of the burst refused", i)
		}
	}
	if n, ok := b.take(); ok || n != 1 {
		t.Fatalf("over the burst: %d %v, want refused and 1 reported", n, ok)
	}
	if n, ok := b.take(); ok || n != 0 {
		t.Fatalf("again within the minute: %d %v, want refused and nothing reported", n, ok)
	}
	now = now.Add(time.Second)
	for i := range 10 {
		if _, ok := b.take(); !ok {
			t.Fatalf("take %d of a second's rate refused", i)
		}
	}
	if _, ok := b.take(); ok {
		t.Fatal("more than the rate")
	}
	now = now.Add(time.Minute)
	for range 100 {
		b.take()
	}
	if n, ok := b.take(); ok || n != 3 {
		t.Fatalf("a minute later: %d %v, want refused and the 3 refusals since the last report", n, ok)
	}
	now = now.Add(time.Hour)
	got := 0
	for range 1000 {
		if _, ok := b.take(); ok {
			got++
		}
	}
	if got != 100 {
		t.Fatalf("after an hour %d taken, want the burst, 100", got)
	}
}
