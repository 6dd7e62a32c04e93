package stepcache

import (
	"errors"
	"fmt"
	"time"
)

// Defaults of Limits.
const (
	DefaultMaxEntrySize = 2 << 30
	DefaultMaxSize      = 20 << 30
	DefaultMaxAge       = 7 * 24 * time.Hour
)

// Limits bound a stage's caches.
type Limits struct {
	// MaxEntrySize bounds one cache, in bytes, before and after
	// compression: a larger one is not saved.
	MaxEntrySize int
	// MaxSize bounds the stage's cache store: after a save, the least
	// recently used caches go until the rest fit.
	MaxSize int
	// MaxAge is how long a cache no run restored or saved is kept.
	MaxAge time.Duration
}

// Flags is what RegisterFlags needs of a service's flags
// (*servicekit.Flags).
type Flags interface {
	IntVar(p *int, name, usage string)
	DurationVar(p *time.Duration, name, usage string)
}

// RegisterFlags registers --cache-max-entry-size, --cache-max-size and
// --cache-max-age, with their defaults for what is still zero.
func (l *Limits) RegisterFlags(f Flags) {
	*l = l.withDefaults()
	f.IntVar(&l.MaxEntrySize, "cache-max-entry-size", "the largest cache (a pipeline's cache: entry) saved, in bytes; a larger one is not saved and the stage's log says so")
	f.IntVar(&l.MaxSize, "cache-max-size", "the most bytes this stage's caches take in the object store; after a save the least recently used go until the rest fit")
	f.DurationVar(&l.MaxAge, "cache-max-age", "how long a cache that no run used is kept")
}

func (l Limits) withDefaults() Limits {
	if l.MaxEntrySize == 0 {
		l.MaxEntrySize = DefaultMaxEntrySize
	}
	if l.MaxSize == 0 {
		l.MaxSize = DefaultMaxSize
	}
	if l.MaxAge == 0 {
		l.MaxAge = DefaultMaxAge
	}
	return l
}

// Validate refuses limits no cache could be kept with.
func (l Limits) Validate() error {
	var errs []error
	if l.MaxEntrySize < 0 {
		errs = append(errs, fmt.Errorf("cache-max-entry-size is %d; it must be positive", l.MaxEntrySize))
	}
	if l.MaxSize < 0 || (l.MaxSize > 0 && l.MaxSize < l.withDefaults().MaxEntrySize) {
		errs = append(errs, fmt.Errorf("cache-max-size is %d; it must be at least cache-max-entry-size", l.MaxSize))
	}
	if l.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("cache-max-age is %s; it must be positive", l.MaxAge))
	}
	return errors.Join(errs...)
}
