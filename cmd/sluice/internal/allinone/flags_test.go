package allinone

import (
	"slices"
	"testing"

	"github.com/spf13/pflag"

	"github.com/sluicehq/sluice/platform/servicecmd"
	"github.com/sluicehq/sluice/services/build"
	"github.com/sluicehq/sluice/services/notify"
	"github.com/sluicehq/sluice/services/release"
	"github.com/sluicehq/sluice/services/source"
	"github.com/sluicehq/sluice/services/tests"
)

// binaryFlags are the flags of each service's own binary, as its main
// composes it.
func binaryFlags() map[string]*pflag.FlagSet {
	return map[string]*pflag.FlagSet{
		source.Name:  servicecmd.FlagSet(servicecmd.Command[source.Config]{Service: source.Name, Addr: ":0", Config: source.DefaultConfig()}),
		build.Name:   servicecmd.FlagSet(servicecmd.Command[build.Config]{Service: build.Name, Addr: ":0", Config: build.DefaultConfig()}),
		tests.Name:   servicecmd.FlagSet(servicecmd.Command[tests.Config]{Service: tests.Name, Addr: ":0", Config: tests.DefaultConfig()}),
		release.Name: servicecmd.FlagSet(servicecmd.Command[release.Config]{Service: release.Name, Addr: ":0", Config: release.DefaultConfig()}),
		notify.Name:  servicecmd.FlagSet(servicecmd.Command[notify.Config]{Service: notify.Name, Addr: ":0", Config: notify.DefaultConfig()}),
	}
}

// processFlags are a binary's flags that are the process's, not the
// service's: `sluice up` has them once, unprefixed. --version is the CLI's
// own (`sluice --version`).
var processFlags = []string{"addr", "nats-url", "nats-user", "nats-password", "nats-ca-file", "nats-cert-file", "nats-key-file",
	"tls-cert-file", "tls-key-file", "tls-ca-file", "log-level", "read-timeout", "idle-timeout", "max-streams", "version"}

// Every setting of every service binary can be set in `sluice up`, as
// --<service>-<flag> of the same type, or, for the process's own settings,
// as the same flag; and `sluice up` has no service flag that no binary has.
func TestUpAcceptsEverySettingOfEveryBinary(t *testing.T) {
	t.Parallel()
	o := DefaultOptions()
	up := NewUpFlags(&o)
	upService := up.serviceFlags()
	for service, fs := range binaryFlags() {
		var n int
		fs.VisitAll(func(f *pflag.Flag) {
			n++
			want := service + "-" + f.Name
			if slices.Contains(processFlags, f.Name) {
				if f.Name == "version" {
					return
				}
				want = f.Name
			}
			got := up.FlagSet.Lookup(want)
			switch {
			case got == nil:
				t.Errorf("sluice-%s --%s: `sluice up` has no --%s", service, f.Name, want)
			case got.Value.Type() != f.Value.Type():
				t.Errorf("sluice-%s --%s is a %s, `sluice up` --%s a %s", service, f.Name, f.Value.Type(), want, got.Value.Type())
			case got.Usage != f.Usage && !slices.Contains(processFlags, f.Name):
				t.Errorf("sluice-%s --%s says %q, `sluice up` --%s says %q", service, f.Name, f.Usage, want, got.Usage)
			}
		})
		if n < 8 {
			t.Errorf("sluice-%s has %d flags; the comparison saw too few to mean anything", service, n)
		}
		for _, name := range upService[service] {
			bare := name[len(service)+1:]
			if fs.Lookup(bare) == nil {
				t.Errorf("`sluice up` --%s has no counterpart --%s in sluice-%s", name, bare, service)
			}
		}
	}
}
