// Package paging is how every list call of Sluice's API pages: a request
// names a page_size (DefaultSize when 0, at most MaxSize) and the
// page_token of the page before, and a response gives the next_page_token,
// empty on the last page. A token is the position after the last item
// returned (keyset paging: the list's sort key, not an offset), so a page
// does not shift when items are added in front of it. Tokens are opaque to
// clients: base64url of a small versioned JSON; one that does not decode
// is an invalid argument naming page_token.
package paging

import (
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/sluicehq/sluice/platform/apierror"
)

// DefaultSize is a page's size when the request says 0.
const DefaultSize = 50

// MaxSize is the largest page a request may ask for; the API's protos
// refuse larger ones.
const MaxSize = 1000

// maxTokenLength bounds what Decode reads.
const maxTokenLength = 1024

// Cursor is a position in a list ordered by (Time, ID), newest first or
// oldest first as the list says: the sort key of the last item of a page.
type Cursor struct {
	// Time is the item's sort time in Unix nanoseconds (or another integer
	// key the list sorts on).
	Time int64 `json:"t"`
	// ID breaks ties between items with the same Time.
	ID string `json:"i"`
}

// Page is one page's request, read from a list call.
type Page struct {
	// Size is how many items to return.
	Size int
	// After is where the page starts: after this item; nil from the start.
	After *Cursor
}

// token is a cursor as it travels.
type token struct {
	V int `json:"v"`
	Cursor
}

// Request reads a list call's page_size and page_token. A legacy limit
// (the field lists had before page_size) is the size when page_size is 0.
func Request(pageSize, legacyLimit int32, pageToken string) (Page, error) {
	size := int(pageSize)
	if size == 0 {
		size = int(legacyLimit)
	}
	switch {
	case size < 0:
		return Page{}, fmt.Errorf("%w: page_size %d is negative", apierror.ErrInvalidArgument, size)
	case size == 0:
		size = DefaultSize
	case size > MaxSize:
		size = MaxSize
	}
	p := Page{Size: size}
	if pageToken == "" {
		return p, nil
	}
	c, err := Decode(pageToken)
	if err != nil {
		return Page{}, err
	}
	p.After = &c
	return p, nil
}

// Encode makes the token of the page after c.
func Encode(c Cursor) string {
	b, err := json.Marshal(token{V: 1, Cursor: c})
	if err != nil {
		// A struct of an int and a string always marshals.
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// Decode reads a token Encode made; anything else is an invalid argument.
func Decode(s string) (Cursor, error) {
	bad := func() (Cursor, error) {
		return Cursor{}, fmt.Errorf("%w: page_token is not a token of this list (pass the next_page_token of the page before, or none)", apierror.ErrInvalidArgument)
	}
	if len(s) > maxTokenLength {
		return bad()
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return bad()
	}
	var t token
	if err := json.Unmarshal(b, &t); err != nil || t.V != 1 {
		return bad()
	}
	return t.Cursor, nil
}

// Limit is the number of rows a list query fetches: one more than the
// page, so that Cut knows whether another page follows.
func (p Page) Limit() int { return p.Size + 1 }

// Where is the SQL condition that keeps the rows after p.After in a list
// ordered by (timeCol, idCol), newest first when desc: "1=1" from the
// start. Its placeholders are numbered from n ($n, $n+1), so it can follow
// a query's own arguments; it returns its arguments.
func (p Page) Where(timeCol, idCol string, desc bool, n int) (string, []any) {
	if p.After == nil {
		return "1=1", nil
	}
	op := ">"
	if desc {
		op = "<"
	}
	return fmt.Sprintf("(%[1]s %[3]s $%[4]d OR (%[1]s = $%[4]d AND %[2]s %[3]s $%[5]d))", timeCol, idCol, op, n, n+1),
		[]any{p.After.Time, p.After.ID}
}

// Cut trims items fetched with p.Limit() to the page and returns them with
// the next_page_token: the position of the last item kept (cursor says
// what it is) when more follow, else "".
func Cut[T any](p Page, items []T, cursor func(T) Cursor) ([]T, string) {
	if len(items) <= p.Size {
		return items, ""
	}
	items = items[:p.Size]
	if len(items) == 0 {
		return items, ""
	}
	return items, Encode(cursor(items[len(items)-1]))
}
