package paging_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/paging"
)

func TestRequest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		size, limit int32
		want        int
	}{{0, 0, paging.DefaultSize}, {10, 0, 10}, {0, 7, 7}, {5, 9, 5}, {5000, 0, paging.MaxSize}} {
		p, err := paging.Request(tc.size, tc.limit, "")
		if err != nil || p.Size != tc.want || p.After != nil || p.Limit() != tc.want+1 {
			t.Errorf("Request(%d, %d) = %+v, %v; want size %d", tc.size, tc.limit, p, err, tc.want)
		}
	}
	if _, err := paging.Request(-1, 0, ""); !errors.Is(err, apierror.ErrInvalidArgument) {
		t.Errorf("negative size: %v", err)
	}
}

func TestTokensRoundTripAndHostileOnesAreRefused(t *testing.T) {
	t.Parallel()
	c := paging.Cursor{Time: 1733300000000000000, ID: "01a2-x"}
	p, err := paging.Request(2, 0, paging.Encode(c))
	if err != nil || p.After == nil || *p.After != c {
		t.Fatalf("round trip: %+v, %v", p, err)
	}
	for _, bad := range []string{"x", "!!!", paging.Encode(c)[:5], strings.Repeat("A", 5000), "eyJ2IjoyfQ"} {
		_, err := paging.Request(0, 0, bad)
		if !errors.Is(err, apierror.ErrInvalidArgument) || !strings.Contains(err.Error(), "page_token") {
			t.Errorf("token %.20q: %v; want invalid page_token", bad, err)
		}
	}
}

func TestCutAndWhere(t *testing.T) {
	t.Parallel()
	p := paging.Page{Size: 2}
	cursor := func(i int) paging.Cursor { return paging.Cursor{Time: int64(i), ID: "x"} }
	items, next := paging.Cut(p, []int{1, 2, 3}, cursor)
	if len(items) != 2 || next == "" {
		t.Fatalf("Cut = %v, %q", items, next)
	}
	if c, err := paging.Decode(next); err != nil || c != cursor(2) {
		t.Fatalf("next token is %+v, %v; want the last item kept", c, err)
	}
	if _, next := paging.Cut(p, []int{1, 2}, cursor); next != "" {
		t.Fatal("a page that is not over full has a next token")
	}
	if w, args := p.Where("created_at", "id", true, 3); w != "1=1" || args != nil {
		t.Fatalf("Where from the start: %q %v", w, args)
	}
	p.After = &paging.Cursor{Time: 5, ID: "b"}
	w, args := p.Where("created_at", "id", true, 3)
	if w != "(created_at < $3 OR (created_at = $3 AND id < $4))" || len(args) != 2 {
		t.Fatalf("Where: %q %v", w, args)
	}
}

func TestCut(t *testing.T) {
	t.Parallel()
	p := paging.Page{Size: 2}
	cursor := func(i int) paging.Cursor { return paging.Cursor{Time: int64(i), ID: "x"} }
	items, next := paging.Cut(p, []int{7, 8, 9}, cursor)
	if len(items) != 2 || next == "" {
		t.Fatalf("Cut of a full page = %v, %q; want 2 items and a token", items, next)
	}
	if c, err := paging.Decode(next); err != nil || c != cursor(8) {
		t.Fatalf("the token is %+v, %v; want the last item kept", c, err)
	}
	if items, next := paging.Cut(p, []int{7, 8}, cursor); len(items) != 2 || next != "" {
		t.Fatalf("Cut of the last page = %v, %q; want no token", items, next)
	}
	if items, next := paging.Cut(p, nil, cursor); len(items) != 0 || next != "" {
		t.Fatalf("Cut of nothing = %v, %q", items, next)
	}
}
