package gitcheckout

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/gitauth"
)

// DefaultTimeout bounds a checkout when Limits.Timeout is zero.
const DefaultTimeout = 10 * time.Minute

// ErrTimedOut marks a checkout that ran out of its Limits.Timeout.
var ErrTimedOut = errors.New("checkout timed out")

// Limits bound the checkouts of a service (build, test, release), so that
// a repository server that trickles its answer cannot hold a worker for
// ever.
type Limits struct {
	// Timeout bounds one checkout, clone and working tree; zero is
	// DefaultTimeout.
	Timeout time.Duration
}

// Flags is what RegisterFlags needs of a service's flags
// (*servicekit.Flags).
type Flags interface {
	DurationVar(p *time.Duration, name, usage string)
}

// RegisterFlags registers --checkout-timeout.
func (l *Limits) RegisterFlags(f Flags) {
	if l.Timeout == 0 {
		l.Timeout = DefaultTimeout
	}
	f.DurationVar(&l.Timeout, "checkout-timeout", "longest a checkout of a run's commit may take (clone and working tree); longer, and the stage fails saying so")
}

// Validate refuses a negative timeout.
func (l Limits) Validate() error {
	if l.Timeout < 0 {
		return fmt.Errorf("checkout-timeout is %s; it must be positive", l.Timeout)
	}
	return nil
}

// Checkout is Checkout bounded by the timeout: a checkout that runs out of
// it fails with ErrTimedOut and an error that names checkout-timeout.
func (l Limits) Checkout(ctx context.Context, policy *egress.Policy, url, commit, dir string, cred gitauth.Credential) error {
	d := l.Timeout
	if d <= 0 {
		d = DefaultTimeout
	}
	ctx, cancel := context.WithTimeoutCause(ctx, d, fmt.Errorf("the checkout took longer than checkout-timeout (%s): %w", d, ErrTimedOut))
	defer cancel()
	return Checkout(ctx, policy, url, commit, dir, cred)
}
