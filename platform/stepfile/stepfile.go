// Package stepfile opens a file a step left in its workspace for a service
// to read: an artifact, a test report. The step is not trusted: the path
// it leaves may be a symbolic link out of the workspace, a directory, a
// device, or a named pipe (FIFO), whose opening for reading waits for a
// writer, which may never come, and would hold the service's worker for
// good.
package stepfile

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// NotRegularError is Open's error for a path that is not a regular file.
type NotRegularError struct {
	// Path is the path as given to Open.
	Path string
	Mode fs.FileMode
}

func (e *NotRegularError) Error() string {
	return fmt.Sprintf("%s is %s, not a regular file", e.Path, Kind(e.Mode))
}

// Open opens name, a slash-separated path inside root, for reading, and
// returns it with what it is. Symbolic links are followed while they stay
// inside root (os.Root refuses the others). Only a regular file is
// accepted: any other is a *NotRegularError. The file is opened without
// waiting (O_NONBLOCK: a named pipe opens at once, and is refused), and
// what it is is asked of the open file, not of its path, which a process
// the step left behind could change between the two.
func Open(root *os.Root, name string) (*os.File, fs.FileInfo, error) {
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, nil, fmt.Errorf("stat %s: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, nil, &NotRegularError{Path: name, Mode: fi.Mode()}
	}
	// O_NONBLOCK does nothing to a regular file's reads (Linux, and the
	// go runtime reads a regular file with blocking system calls).
	return f, fi, nil
}

// Kind names the type of a file of mode m for messages: "a directory",
// "a named pipe (FIFO)", ...
func Kind(m fs.FileMode) string {
	switch t := m.Type(); {
	case t == 0:
		return "a regular file"
	case t&fs.ModeDir != 0:
		return "a directory"
	case t&fs.ModeSymlink != 0:
		return "a symbolic link"
	case t&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case t&fs.ModeSocket != 0:
		return "a socket"
	case t&fs.ModeCharDevice != 0:
		return "a character device"
	case t&fs.ModeDevice != 0:
		return "a device"
	}
	return "an irregular file"
}
