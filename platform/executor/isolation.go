package executor

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/sluicehq/sluice/platform/executor/internal/supervisor"
)

// Isolation modes.
const (
	// IsolationLandlock runs every step in the step sandbox (see
	// Isolation). It is the default; a service whose kernel cannot do it
	// refuses to start.
	IsolationLandlock = "landlock"
	// IsolationOff runs steps as plain child processes of the service, as
	// its user, able to read what the service can read. Only for hosts
	// where every repository is trusted as much as the platform.
	IsolationOff = "off"
)

// MinLandlockABI is the oldest Landlock ABI the sandbox accepts: 1
// (Linux 5.13) restricts the file system. Scoped signals and abstract
// Unix sockets need ABI 6 (Linux 6.12); on older kernels the sandbox
// works without them and Probe says so.
const MinLandlockABI = supervisor.MinABI

// DefaultReadPaths are what a step may read and execute besides its
// workspace, its home and Isolation.ReadPaths: the system's programs,
// libraries and configuration, and /proc and /sys (the kernel keeps other
// processes' environment and memory from a sandboxed step). Paths that do
// not exist are skipped.
func DefaultReadPaths() []string {
	return []string{
		"/bin", "/sbin", "/usr", "/lib", "/lib32", "/lib64", "/libx32",
		"/etc", "/opt", "/proc", "/sys", "/nix/store",
	}
}

// Isolation says how Local keeps steps away from the platform.
//
// In IsolationLandlock mode each step starts under a small supervisor (the
// service's own binary, started again; see internal/supervisor) that
//   - puts the step in a new session and becomes the reaper of everything
//     it starts, so when the step's main process ends, every process it
//     left behind (background jobs and setsid daemons too) is killed,
//     unless the Spec asks to keep them;
//   - drops every capability when the service runs as root, so the step
//     cannot regain them (no_new_privs);
//   - restricts the step with Landlock: it may read and execute only
//     DefaultReadPaths and ReadPaths, and write only its working directory,
//     its home, Spec.Writable and WritePaths. The services' data
//     directories (databases, keys, other runs' workspaces) are neither;
//   - scopes signals and abstract Unix sockets to the step (Landlock ABI
//     6+), so the step cannot signal the service.
//
// The service process itself is made non-dumpable (Protect), so no
// process of its user without CAP_SYS_PTRACE, sandboxed or not, reads its
// environment or memory through /proc.
type Isolation struct {
	// Mode is IsolationLandlock (the default when empty) or IsolationOff.
	Mode string
	// ReadPaths are more paths steps may read and execute (a toolchain
	// outside the system directories, for example).
	ReadPaths []string
	// WritePaths are paths every step may write: caches the operator
	// shares between all repositories' runs, knowing that a run can then
	// change what later runs read.
	WritePaths []string
	// Env are NAME=VALUE variables every step gets, after the run's own
	// HOME, TMPDIR and XDG_CACHE_HOME and before the pipeline's: a cache
	// the operator shares, for example GOCACHE=/var/cache/go-build with
	// that directory in WritePaths. Steps can read them; no secrets here.
	Env []string
}

// Flags is what RegisterFlags needs of a service's flags
// (*servicekit.Flags), an interface so this package need not import
// servicekit.
type Flags interface {
	StringVar(p *string, name, usage string)
	StringsVar(p *[]string, name, usage string)
}

// RegisterFlags registers step-isolation, step-read-paths,
// step-write-paths and step-env.
func (i *Isolation) RegisterFlags(f Flags) {
	f.StringVar(&i.Mode, "step-isolation", "how steps are kept from the platform: landlock (the step sandbox) or off (steps run as the service's user with its rights; trusted repositories only)")
	f.StringsVar(&i.ReadPaths, "step-read-paths", "more paths steps may read and execute, besides the system's directories (a toolchain, for example)")
	f.StringsVar(&i.WritePaths, "step-write-paths", "paths every step may write (caches shared by all repositories' runs)")
	f.StringsVar(&i.Env, "step-env", "NAME=VALUE variables every step gets, such as a shared cache (GOCACHE=/var/cache/go-build with that directory in step-write-paths); never secrets")
}

// Validate checks the mode and that the paths are absolute.
func (i Isolation) Validate() error {
	var errs []error
	switch i.Mode {
	case "", IsolationLandlock, IsolationOff:
	default:
		errs = append(errs, fmt.Errorf("step-isolation: %q is not landlock or off", i.Mode))
	}
	for _, set := range []struct {
		name  string
		paths []string
	}{{"step-read-paths", i.ReadPaths}, {"step-write-paths", i.WritePaths}} {
		for _, p := range set.paths {
			if !filepath.IsAbs(p) {
				errs = append(errs, fmt.Errorf("%s: %q is not an absolute path", set.name, p))
			}
		}
	}
	for _, kv := range i.Env {
		if name, _, ok := strings.Cut(kv, "="); !ok || name == "" || strings.ContainsAny(name, " \t\n\x00") {
			errs = append(errs, fmt.Errorf("step-env: %q is not NAME=VALUE", kv))
		}
	}
	return errors.Join(errs...)
}

// Sandboxed reports whether steps run in the sandbox.
func (i Isolation) Sandboxed() bool { return i.Mode != IsolationOff }

// GoToolchainRoot is the root (GOROOT) of the Go toolchain whose go command
// is first on PATH, for a step-read-paths that lets steps build Go with it;
// "" when there is none.
func GoToolchainRoot() string {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return ""
	}
	real, err := filepath.EvalSymlinks(goBin)
	if err != nil || !filepath.IsAbs(real) {
		return ""
	}
	return filepath.Dir(filepath.Dir(real))
}

// Report is what Probe found.
type Report struct {
	// ABI is the kernel's Landlock ABI version; 0 without Landlock.
	ABI int
	// Scoped reports that signals and abstract Unix sockets are scoped.
	Scoped bool
	// Root reports that the service runs as root, so steps run as root
	// without capabilities.
	Root bool
}

// String describes the sandbox in one line, for the service's log.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "landlock ABI %d", r.ABI)
	if !r.Scoped {
		fmt.Fprintf(&b, " (no signal scoping before ABI %d: a step may signal processes of the service's user)", supervisor.ScopedABI)
	}
	if r.Root {
		b.WriteString("; steps run as root without capabilities")
	}
	return b.String()
}

// Probe checks that the kernel can run the sandbox.
func Probe() (Report, error) {
	abi, err := supervisor.ABI()
	if err != nil || abi < MinLandlockABI {
		if err == nil {
			err = fmt.Errorf("ABI %d", abi)
		}
		return Report{}, fmt.Errorf("%w: this kernel cannot run the step sandbox (Landlock, Linux 5.13 or later with landlock in the lsm= list): %w; run steps on such a host, or set step-isolation=off to run them unisolated", ErrNoSandbox, err)
	}
	return Report{ABI: abi, Scoped: abi >= supervisor.ScopedABI, Root: unix.Geteuid() == 0}, nil
}

// ErrNoSandbox is returned when the sandbox cannot run here.
var ErrNoSandbox = errors.New("no step sandbox")

var protectOnce sync.Once

// Protect makes this process non-dumpable: processes of the same user
// without CAP_SYS_PTRACE can then neither read its environment, memory or
// file descriptors under /proc nor trace it, and it leaves no core dump
// with its secrets. Every service that runs steps calls it (NewLocal does);
// calling it again does nothing.
func Protect() error {
	var err error
	protectOnce.Do(func() {
		err = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	})
	if err != nil {
		return fmt.Errorf("make the process non-dumpable: %w", err)
	}
	return nil
}

// readPaths and writePaths are the sandbox's path lists for spec.
func (i Isolation) readPaths() []string {
	return slices.Concat(DefaultReadPaths(), i.ReadPaths)
}

func (i Isolation) writePaths(spec Spec, home string) []string {
	return slices.Concat([]string{spec.Dir, home}, spec.Writable, i.WritePaths)
}
