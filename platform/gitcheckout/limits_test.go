package gitcheckout_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/egress/egresstest"
	"github.com/sluicehq/sluice/platform/gitauth"
	"github.com/sluicehq/sluice/platform/gitcheckout"
)

// A repository server that never answers holds a checkout only until
// checkout-timeout, and the error says which limit ended it.
func TestCheckoutTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer stuck.Close()
	defer close(release)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	err := gitcheckout.Limits{Timeout: time.Second}.Checkout(ctx, egresstest.Policy(t, egress.Loopback), stuck.URL+"/repo.git",
		strings.Repeat("a", 40), filepath.Join(t.TempDir(), "ws"), gitauth.Credential{})
	if !errors.Is(err, gitcheckout.ErrTimedOut) || !strings.Contains(err.Error(), "checkout-timeout (1s)") {
		t.Fatalf("err = %v; want the checkout-timeout named", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the outer context ran out: the bound did not end the checkout")
	}
}

func TestLimitsValidate(t *testing.T) {
	t.Parallel()
	if err := (gitcheckout.Limits{Timeout: -time.Second}).Validate(); err == nil || !strings.Contains(err.Error(), "checkout-timeout") {
		t.Errorf("a negative timeout: %v", err)
	}
	if err := (gitcheckout.Limits{}).Validate(); err != nil {
		t.Errorf("zero (the default): %v", err)
	}
}
