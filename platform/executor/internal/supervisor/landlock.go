package supervisor

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Landlock ABI versions that change what the sandbox restricts (see the
// kernel's Documentation/userspace-api/landlock.rst).
const (
	// MinABI restricts the file system (Linux 5.13).
	MinABI = 1
	// referABI restricts linking and renaming across directories.
	referABI = 2
	// truncateABI restricts truncate(2).
	truncateABI = 3
	// ioctlDevABI restricts ioctl(2) on device files.
	ioctlDevABI = 5
	// ScopedABI scopes signals and abstract Unix sockets to the sandbox
	// (Linux 6.12).
	ScopedABI = 6
	// resolveUnixABI restricts connecting to Unix sockets by path.
	resolveUnixABI = 9
)

// Access rights. A step may read and execute its read paths, do anything
// to files and directories under its write paths (connecting to its own
// Unix sockets and moving files between its own directories included), and
// use a few device files.
const (
	accessRead  = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_READ_DIR
	accessWrite = unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_REMOVE_DIR |
		unix.LANDLOCK_ACCESS_FS_REMOVE_FILE | unix.LANDLOCK_ACCESS_FS_MAKE_CHAR |
		unix.LANDLOCK_ACCESS_FS_MAKE_DIR | unix.LANDLOCK_ACCESS_FS_MAKE_REG |
		unix.LANDLOCK_ACCESS_FS_MAKE_SOCK | unix.LANDLOCK_ACCESS_FS_MAKE_FIFO |
		unix.LANDLOCK_ACCESS_FS_MAKE_BLOCK | unix.LANDLOCK_ACCESS_FS_MAKE_SYM |
		unix.LANDLOCK_ACCESS_FS_REFER | unix.LANDLOCK_ACCESS_FS_TRUNCATE |
		unix.LANDLOCK_ACCESS_FS_RESOLVE_UNIX
	accessDevWrite = unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_TRUNCATE
	accessDevRead  = unix.LANDLOCK_ACCESS_FS_READ_FILE
)

// The device files a step may use.
var (
	devWrite = []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/tty"}
	devRead  = []string{"/dev/random", "/dev/urandom"}
)

// ABI is the kernel's Landlock ABI version; an error when the kernel has
// no Landlock or does not enable it.
func ABI() (int, error) {
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		if errors.Is(errno, unix.ENOSYS) || errors.Is(errno, unix.EOPNOTSUPP) {
			return 0, fmt.Errorf("landlock is not supported by this kernel or not enabled at boot: %w", errno)
		}
		return 0, fmt.Errorf("landlock_create_ruleset: %w", errno)
	}
	return int(v), nil
}

// handledFS is every file system access right the kernel's ABI knows: the
// sandbox denies each of them except where a rule grants it.
func handledFS(abi int) uint64 {
	switch {
	case abi >= resolveUnixABI:
		return 1<<17 - 1
	case abi >= ioctlDevABI:
		return 1<<16 - 1
	case abi >= truncateABI:
		return 1<<15 - 1
	case abi >= referABI:
		return 1<<14 - 1
	default:
		return 1<<13 - 1
	}
}

// restrictThread confines the calling thread, and everything it starts
// from now on, to read (read and execute) and write (everything) under the
// given directories plus the device files; with scope, also keeps it from
// signalling processes, and reaching abstract Unix sockets, outside its
// sandbox. Paths in read that do not exist are skipped; write paths must
// exist. The caller has locked its goroutine to the thread.
func restrictThread(read, write []string, scope bool) error {
	abi, err := ABI()
	if err != nil {
		return err
	}
	if abi < MinABI {
		return fmt.Errorf("landlock ABI %d", abi)
	}
	handled := handledFS(abi)
	attr := unix.LandlockRulesetAttr{Handled_access_fs: handled}
	if scope && abi >= ScopedABI {
		attr.Scoped = unix.LANDLOCK_SCOPE_SIGNAL | unix.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
	}
	// The kernel takes the prefix of the attribute it knows: the fields
	// after the ones set here are zero.
	size := unsafe.Offsetof(attr.Scoped) + unsafe.Sizeof(attr.Scoped)
	if attr.Scoped == 0 {
		size = unsafe.Sizeof(attr.Handled_access_fs)
	}
	fd, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), size, 0)
	if errno != 0 {
		return fmt.Errorf("landlock_create_ruleset: %w", errno)
	}
	ruleset := int(fd)
	defer func() { _ = unix.Close(ruleset) }()
	rules := []struct {
		paths    []string
		access   uint64
		optional bool
	}{
		{read, accessRead, true},
		{write, accessRead | accessWrite, false},
		{devWrite, accessDevWrite, true},
		{devRead, accessDevRead, true},
	}
	for _, r := range rules {
		for _, p := range r.paths {
			if err := addPath(ruleset, p, r.access&handled); err != nil {
				if r.optional && errors.Is(err, unix.ENOENT) {
					continue
				}
				return fmt.Errorf("landlock: %s: %w", p, err)
			}
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	if _, _, errno := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, uintptr(ruleset), 0, 0); errno != 0 {
		return fmt.Errorf("landlock_restrict_self: %w", errno)
	}
	return nil
}

// addPath grants access under path. A rule on a file (not a directory)
// may only carry rights that apply to files.
func addPath(ruleset int, path string, access uint64) error {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer func() { _ = unix.Close(fd) }()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		access &= unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE |
			unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_TRUNCATE |
			unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	}
	if access == 0 {
		return nil
	}
	rule := unix.LandlockPathBeneathAttr{Allowed_access: access, Parent_fd: int32(fd)}
	_, _, errno := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, uintptr(ruleset), unix.LANDLOCK_RULE_PATH_BENEATH, uintptr(unsafe.Pointer(&rule)), 0, 0, 0)
	if errno != 0 {
		return fmt.Errorf("landlock_add_rule: %w", errno)
	}
	return nil
}
