package pagingtest_test

import (
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/platform/paging/pagingtest"
)

// pages lists items two at a time, the token being the next index.
func pages(items []string) func(string) ([]string, string) {
	return func(token string) ([]string, string) {
		from, _ := strconv.Atoi(token)
		to := min(from+2, len(items))
		if to == len(items) {
			return items[from:to], ""
		}
		return items[from:to], strconv.Itoa(to)
	}
}

// fatal records what All fails the test with.
type fatal struct {
	testing.TB
	msg string
}

func (f *fatal) Helper() {}

func (f *fatal) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// failure runs All on list and returns its failure, "" when it passed.
func failure(t *testing.T, size int, list func(string) ([]string, string)) string {
	f := &fatal{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		pagingtest.All(f, size, list)
	}()
	<-done
	return f.msg
}

func TestAll(t *testing.T) {
	t.Parallel()
	items := []string{"a", "b", "c", "d", "e"}
	if got := pagingtest.All(t, 2, pages(items)); !slices.Equal(got, items) {
		t.Fatalf("All = %v, want %v", got, items)
	}
	for _, tc := range []struct {
		name string
		size int
		list func(string) ([]string, string)
		want string
	}{
		{"a page too large", 1, pages(items), "a page of 2 items, want at most 1"},
		{"an item twice", 2, pages([]string{"a", "b", "b"}), "b listed twice"},
		{"tokens in a circle", 2, func(string) ([]string, string) { return nil, "again" }, "go round in circles"},
	} {
		if got := failure(t, tc.size, tc.list); !strings.Contains(got, tc.want) {
			t.Errorf("%s: All failed with %q, want %q", tc.name, got, tc.want)
		}
	}
}
