// Package supervisor is the step sandbox's supervisor: the service's own
// binary started again, which confines itself and then runs one step.
//
// It imports only the standard library and golang.org/x/sys/unix, on
// purpose. Go initializes packages in import-path order as soon as their
// imports are initialized, so this package's init, which recognises a
// supervisor and never returns from it, runs before the service's heavy
// packages (protobuf descriptors, validation rules, NATS, SQL drivers),
// which all wait for google.golang.org/protobuf. A supervisor that waited
// for them would cost every step ~25 ms of initialization it never uses.
// That is also why Landlock is spoken here with its three system calls
// (landlock.go) rather than through a library that applies rules to every
// thread with libpsx: the step inherits the rules of the one thread that
// starts it, and that thread is all that needs them.
package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The supervisor is started with argv [Arg0] and EnvName=EnvValue in its
// environment; the init below recognises it before anything else of the
// program runs. It reads a Spec (JSON) from fd SpecFD and reports on fd
// StatusFD: "error: <why>" when the step could not start, else "exit
// <code>" or "signal <number>" when the step's main process has ended and
// everything it left is gone.
const (
	Arg0     = "sluice-step-supervisor"
	EnvName  = "SLUICE_STEP_SUPERVISOR"
	EnvValue = "v1"
	SpecFD   = 3
	StatusFD = 4
	// maxSpec bounds what the supervisor reads from SpecFD.
	maxSpec = 64 << 20
	// sweepFor bounds how long the supervisor keeps killing what a step
	// left; a step forking faster than it kills is reported.
	sweepFor = 10 * time.Second
)

// Spec is what the supervisor needs to run one step.
type Spec struct {
	Shell   string   `json:"shell"`
	Command string   `json:"command"`
	Dir     string   `json:"dir"`
	Env     []string `json:"env"`
	// Read are the directories the step may read and execute; Write
	// those it may also change.
	Read  []string `json:"read"`
	Write []string `json:"write"`
	// Keep leaves the processes the step started running when it ends,
	// and lets it signal processes outside its sandbox.
	Keep  bool          `json:"keep"`
	Grace time.Duration `json:"grace"`
}

func init() {
	if len(os.Args) == 1 && os.Args[0] == Arg0 && os.Getenv(EnvName) == EnvValue {
		os.Exit(supervise())
	}
}

// supervise runs the supervisor and returns its exit code; the service
// reads the outcome from the status pipe, not from the code.
func supervise() int {
	// The step is started from this thread, whose credentials and
	// Landlock domain it inherits: both are set on this thread only.
	runtime.LockOSThread()
	unix.CloseOnExec(SpecFD)
	unix.CloseOnExec(StatusFD)
	status := os.NewFile(StatusFD, "status")
	defer status.Close()
	report := func(format string, args ...any) int {
		fmt.Fprintf(status, format+"\n", args...)
		return 0
	}
	var spec Spec
	specFile := os.NewFile(SpecFD, "spec")
	err := json.NewDecoder(io.LimitReader(specFile, maxSpec)).Decode(&spec)
	_ = specFile.Close()
	if err != nil {
		return report("error: step sandbox: read the step: %v", err)
	}
	// Signals first: a stop that arrives while the sandbox is being set up
	// is handled once the step runs (it is then stopped at once); a child
	// that ends is reaped when SIGCHLD says so.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	children := make(chan os.Signal, 1)
	signal.Notify(children, syscall.SIGCHLD)
	if err := confine(spec); err != nil {
		return report("error: step sandbox: %v", err)
	}
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return report("error: step sandbox: %v", err)
	}
	proc, err := os.StartProcess(spec.Shell, []string{spec.Shell, "-c", spec.Command}, &os.ProcAttr{
		Dir:   spec.Dir,
		Env:   spec.Env,
		Files: []*os.File{devNull, os.Stdout, os.Stderr},
	})
	_ = devNull.Close()
	if err != nil {
		return report("error: %v", err)
	}
	ended := reap(proc.Pid, children)
	select {
	case ws := <-ended:
		if !spec.Keep {
			sweep(syscall.SIGKILL, time.Now().Add(sweepFor))
		}
		return report("%s", outcome(ws))
	case <-stop:
		// The service stops the step: TERM to everything, KILL to what is
		// left after the grace.
		sweep(syscall.SIGTERM, time.Now().Add(spec.Grace))
		sweep(syscall.SIGKILL, time.Now().Add(sweepFor))
		select {
		case ws := <-ended:
			return report("%s", outcome(ws))
		case <-time.After(time.Second):
			return report("signal %d", syscall.SIGKILL)
		}
	}
}

// confine makes this process the reaper of what the step starts, drops
// this thread's capabilities when it runs as root and applies the Landlock
// rules the step inherits.
func confine(spec Spec) error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become the step's reaper: %w", err)
	}
	// Only the thread that starts the step is confined; the supervisor's
	// other threads keep its rights (and, as root, its capabilities).
	// Non-dumpable, the supervisor cannot be traced, nor its memory read
	// or written through /proc, by the step it runs.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("make the supervisor non-dumpable: %w", err)
	}
	if unix.Geteuid() == 0 {
		if err := dropCapabilities(); err != nil {
			return err
		}
	}
	return restrictThread(spec.Read, spec.Write, !spec.Keep)
}

// dropCapabilities leaves this thread, and so the step it starts, without
// any capability: an empty bounding set (execve cannot grant any back) and
// empty effective, permitted, inheritable and ambient sets. The
// supervisor's other threads keep theirs; they run only the supervisor.
func dropCapabilities() error {
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("drop ambient capabilities: %w", err)
	}
	for c := 0; ; c++ {
		err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0)
		if errors.Is(err, unix.EINVAL) {
			break // past the kernel's last capability
		}
		if err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("drop capabilities: %w", err)
	}
	return nil
}

// reap collects every child (the step's main process and whatever is left
// to this reaper) each time SIGCHLD arrives, and sends the main process's
// status once.
func reap(main int, children <-chan os.Signal) <-chan unix.WaitStatus {
	ended := make(chan unix.WaitStatus, 1)
	go func() {
		for range children {
			for {
				var ws unix.WaitStatus
				pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
				if errors.Is(err, unix.EINTR) {
					continue
				}
				if err != nil || pid <= 0 {
					break // ECHILD, or nobody else has ended yet
				}
				if pid == main {
					ended <- ws
				}
			}
		}
	}()
	return ended
}

func outcome(ws unix.WaitStatus) string {
	if ws.Signaled() {
		return "signal " + strconv.Itoa(int(ws.Signal()))
	}
	return "exit " + strconv.Itoa(ws.ExitStatus())
}

// sweep sends sig to every process descended from this one until none is
// left (zombies the reaper has not collected yet do not count) or deadline
// passes. The supervisor reaps orphans, so whatever the step started, even
// a daemon in a session of its own, is a descendant, and a supervisor
// without children has no descendants at all.
func sweep(sig syscall.Signal, deadline time.Time) {
	self := os.Getpid()
	for {
		if !hasChildren() {
			return
		}
		left := descendants(self)
		if len(left) == 0 {
			return
		}
		if sig == syscall.SIGKILL || time.Now().Before(deadline) {
			for _, pid := range left {
				_ = unix.Kill(pid, sig)
			}
		}
		if !time.Now().Before(deadline) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hasChildren reports whether this process has a child, running or not yet
// reaped.
func hasChildren() bool {
	var info unix.Siginfo
	err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	return !errors.Is(err, unix.ECHILD)
}

// descendants are the live processes below root, from /proc.
func descendants(root int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, state, ok := statOf(pid)
		if !ok || state == 'Z' {
			continue
		}
		children[ppid] = append(children[ppid], pid)
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// statOf reads a process's parent and state from /proc/<pid>/stat.
func statOf(pid int) (ppid int, state byte, ok bool) {
	// Plain system calls: os.Open would register each file with the
	// poller, which costs more than the read.
	fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/stat", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, 0, false
	}
	defer func() { _ = unix.Close(fd) }()
	var buf [1024]byte
	n, err := unix.Read(fd, buf[:])
	if err != nil || n <= 0 {
		return 0, 0, false
	}
	line := string(buf[:n])
	// The command name is in parentheses and may contain anything; the
	// fields after the last ')' are "state ppid ...".
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, 0, false
	}
	fields := strings.Fields(line[i+1:])
	if len(fields) < 2 || len(fields[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(fields[1])
	if err != nil {
		return 0, 0, false
	}
	return ppid, fields[0][0], true
}
