// Package pagingtest checks a list call's paging in tests.
package pagingtest

import "testing"

// maxPages bounds All: tokens that go round in circles fail the test.
const maxPages = 1000

// All calls list with the page_token of each page, starting with none,
// until a page gives no next_page_token, and returns the keys of every
// item in the order listed. It fails the test when a page holds more than
// size items or a key comes twice.
func All(t testing.TB, size int, list func(pageToken string) (keys []string, nextPageToken string)) []string {
	t.Helper()
	var all []string
	seen := map[string]bool{}
	token := ""
	for range maxPages {
		keys, next := list(token)
		if len(keys) > size {
			t.Fatalf("a page of %d items, want at most %d", len(keys), size)
		}
		for _, k := range keys {
			if seen[k] {
				t.Fatalf("%s listed twice", k)
			}
			seen[k] = true
		}
		all = append(all, keys...)
		if next == "" {
			return all
		}
		token = next
	}
	t.Fatalf("more than %d pages: the tokens go round in circles", maxPages)
	return nil
}
