package source_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

// A request that inflates past rpcserver.MaxRequestBytes is refused
// (resource_exhausted) instead of being decoded: 64 MiB of zeros gzip to
// 64 KiB.
func TestInflatingRequestIsRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	var body bytes.Buffer
	zw := gzip.NewWriter(&body)
	_, _ = zw.Write([]byte(`{"repository":"`))
	_, _ = zw.Write(bytes.Repeat([]byte("0"), 64<<20))
	_, _ = zw.Write([]byte(`"}`))
	_ = zw.Close()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, h.url+"/sluice.source.v1.SourceService/ListRuns", &body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", "gzip")
	res, err := h.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	if res.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(answer), "resource_exhausted") {
		t.Errorf("a 64 MiB inflating request: %d %s; want resource_exhausted", res.StatusCode, answer)
	}
}
