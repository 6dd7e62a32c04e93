package stepgraph

import "fmt"

// Limits are the operator's bound on a stage's parallel steps: the
// --max-parallel-steps setting of the services that run steps.
type Limits struct {
	// MaxParallel is the most steps of one stage that run at once; a
	// pipeline's max_parallel may ask for fewer.
	MaxParallel int
}

// DefaultMaxParallel is MaxParallel by default.
const DefaultMaxParallel = 4

// Flags is what RegisterFlags needs of a service's flags
// (*servicekit.Flags).
type Flags interface {
	IntVar(p *int, name, usage string)
}

// RegisterFlags registers --max-parallel-steps, with its default for what
// is still zero.
func (l *Limits) RegisterFlags(f Flags) {
	if l.MaxParallel == 0 {
		l.MaxParallel = DefaultMaxParallel
	}
	f.IntVar(&l.MaxParallel, "max-parallel-steps", "most steps of one stage (of one run) that run at once; a pipeline's max_parallel may ask for fewer")
}

// Validate refuses limits a stage cannot run with.
func (l Limits) Validate() error {
	if l.MaxParallel < 0 || l.MaxParallel > 64 {
		return fmt.Errorf("max-parallel-steps is %d; it must be from 1 to 64", l.MaxParallel)
	}
	return nil
}

// Parallel is how many steps of a stage run at once: what the pipeline
// asks (0: no bound of its own), within the operator's limit.
func (l Limits) Parallel(asked int32) int {
	limit := l.MaxParallel
	if limit <= 0 {
		limit = DefaultMaxParallel
	}
	if asked > 0 && int(asked) < limit {
		return int(asked)
	}
	return limit
}
