package servicekit

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Flags is where a service's configuration registers its settings, once,
// for every process that runs the service: the service's own binary
// (sluice-build --workers 8) and `sluice up` (sluice up --build-workers 8).
// Every setting is also read from $SLUICE_<SERVICE>_<NAME>, in both
// processes, and a flag wins over its variable.
type Flags struct {
	fs      *pflag.FlagSet
	service string
	prefix  string
	// names are the settings registered through these Flags, unprefixed.
	names []string
}

// NewFlags registers the service's settings in fs. In the service's own
// binary the flags carry the settings' names (--workers); when several
// services share a FlagSet (`sluice up`), prefixed is true and every flag
// is named <service>-<name> (--build-workers). The variables are the same
// either way.
func NewFlags(fs *pflag.FlagSet, service string, prefixed bool) *Flags {
	f := &Flags{fs: fs, service: service}
	if prefixed {
		f.prefix = service + "-"
	}
	return f
}

// Service is the service whose settings these are.
func (f *Flags) Service() string { return f.service }

// EnvName is the environment variable of a service's setting:
// SLUICE_<SERVICE>_<NAME>, with dashes as underscores; SLUICE_<NAME> for a
// process setting of `sluice up` (service "").
func EnvName(service, name string) string {
	env := "SLUICE_"
	if service != "" {
		env += strings.ToUpper(service) + "_"
	}
	return env + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// FlagName is the flag that sets the setting name in this FlagSet.
func (f *Flags) FlagName(name string) string { return f.prefix + name }

// Describe names a setting the way an error about it should: its flag and
// its variable.
func (f *Flags) Describe(name string) string {
	return "--" + f.FlagName(name) + " ($" + EnvName(f.service, name) + ")"
}

func (f *Flags) add(name, usage string) (flag, help string) {
	f.names = append(f.names, name)
	return f.FlagName(name), usage + " ($" + EnvName(f.service, name) + ")"
}

// StringVar registers a string setting; *p's current value is the default.
func (f *Flags) StringVar(p *string, name, usage string) {
	fl, help := f.add(name, usage)
	f.fs.StringVar(p, fl, *p, help)
}

// IntVar registers an integer setting; *p's current value is the default.
func (f *Flags) IntVar(p *int, name, usage string) {
	fl, help := f.add(name, usage)
	f.fs.IntVar(p, fl, *p, help)
}

// DurationVar registers a duration setting (30s, 5m, ...); *p's current
// value is the default.
func (f *Flags) DurationVar(p *time.Duration, name, usage string) {
	fl, help := f.add(name, usage)
	f.fs.DurationVar(p, fl, *p, help)
}

// BoolVar registers a boolean setting; *p's current value is the default.
func (f *Flags) BoolVar(p *bool, name, usage string) {
	fl, help := f.add(name, usage)
	f.fs.BoolVar(p, fl, *p, help)
}

// StringsVar registers a list setting: comma-separated values
// (--allow-egress loopback,10.0.0.0/8, or the flag given again); *p's
// current value is the default.
func (f *Flags) StringsVar(p *[]string, name, usage string) {
	fl, help := f.add(name, usage)
	f.fs.StringSliceVar(p, fl, *p, help)
}

// Names are the settings registered so far, unprefixed, sorted.
func (f *Flags) Names() []string {
	names := append([]string(nil), f.names...)
	sort.Strings(names)
	return names
}

// ApplyEnv sets every registered setting whose variable lookup finds and
// that the command line did not set (the flag wins), so it may run before
// or after the command line is parsed. A value the setting refuses is an
// error naming the variable.
func (f *Flags) ApplyEnv(lookup func(string) (string, bool)) error {
	var errs []error
	for _, name := range f.names {
		if fl := f.fs.Lookup(f.FlagName(name)); fl != nil && fl.Changed {
			continue
		}
		env := EnvName(f.service, name)
		v, ok := lookup(env)
		if !ok {
			continue
		}
		if err := f.fs.Set(f.FlagName(name), v); err != nil {
			errs = append(errs, fmt.Errorf("$%s=%q: %w", env, v, err))
		}
	}
	return errors.Join(errs...)
}
