package release

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/natstest"
)

// stateReplica is the part of a release replica that keeps deploy state:
// its own data directory, the NATS both replicas use.
func stateReplica(js jetstream.JetStream, max int) *Service {
	return &Service{cfg: Config{MaxStateSize: max}, js: js}
}

func stateStore(t *testing.T) jetstream.JetStream {
	t.Helper()
	srv := natstest.Start(t)
	js, err := jetstream.New(srv.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateObjectStore(t.Context(), jetstream.ObjectStoreConfig{Bucket: StateBucket}); err != nil {
		t.Fatal(err)
	}
	return js
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A state written on one replica is what the next deploy on another
// replica, with another data directory, finds; the state kept in a data
// directory before the store was is taken over.
func TestStateMovesBetweenReplicas(t *testing.T) {
	t.Parallel()
	js := stateStore(t)
	a, b := stateReplica(js, 1<<20), stateReplica(js, 1<<20)
	a.cfg.DataDir, b.cfg.DataDir = t.TempDir(), t.TempDir()

	// Before the upgrade, replica a kept its state in its data directory.
	writeFile(t, filepath.Join(StateDir(a.cfg.DataDir, "app", "production"), "pid"), "41\n")
	st, err := a.restoreState(t.Context(), "app", "production")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.notes) != 1 || !strings.Contains(st.notes[0], "using the files kept in") {
		t.Errorf("notes %q; want one that says the local state is taken over", st.notes)
	}
	writeFile(t, filepath.Join(st.dir, "releases", "v1", "bin"), "binary")
	if notes, err := st.save(t.Context(), a.stateTmpDir()); err != nil || len(notes) != 0 {
		t.Fatalf("save: %v %q", err, notes)
	}

	st, err = b.restoreState(t.Context(), "app", "production")
	if err != nil {
		t.Fatal(err)
	}
	if st.problem != "" {
		t.Fatal(st.problem)
	}
	for name, want := range map[string]string{"pid": "41\n", "releases/v1/bin": "binary"} {
		if got, err := os.ReadFile(filepath.Join(StateDir(b.cfg.DataDir, "app", "production"), filepath.FromSlash(name))); err != nil || string(got) != want {
			t.Errorf("replica b's %s: %q, %v; want %q", name, got, err, want)
		}
	}
	// b's deploy removes a file and links another: the link is not kept
	// (said), the removal is.
	_ = os.Remove(filepath.Join(st.dir, "pid"))
	if err := os.Symlink("/etc/passwd", filepath.Join(st.dir, "link")); err != nil {
		t.Fatal(err)
	}
	notes, err := st.save(t.Context(), b.stateTmpDir())
	if err != nil || len(notes) != 1 || !strings.Contains(notes[0], "not stored: link") {
		t.Fatalf("save: %v %q", err, notes)
	}
	// a's directory is emptied before the state is restored: nothing stale.
	st, err = a.restoreState(t.Context(), "app", "production")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(st.dir, "pid")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("replica a kept its stale pid file: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(st.dir, "link")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the link was restored: %v", err)
	}
	// Other environments are apart.
	st, err = b.restoreState(t.Context(), "app", "staging")
	if err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(st.dir); len(entries) != 0 {
		t.Errorf("staging has %d entries of production's state", len(entries))
	}
}

// A state larger than max-state-size fails, naming the setting, when it is
// stored and when it is restored.
func TestStateOverTheLimitIsRefusedNamingTheSetting(t *testing.T) {
	t.Parallel()
	js := stateStore(t)
	small := stateReplica(js, 4096)
	small.cfg.DataDir = t.TempDir()
	st, err := small.restoreState(t.Context(), "app", "production")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(st.dir, "big"), strings.Repeat("x", 8192))
	_, err = st.save(t.Context(), small.stateTmpDir())
	if !errors.Is(err, errStateRefused) || !strings.Contains(err.Error(), "max-state-size") || !strings.Contains(err.Error(), "SLUICE_RELEASE_MAX_STATE_SIZE") {
		t.Fatalf("saving a state over the limit: %v; want a refusal naming max-state-size", err)
	}

	large := stateReplica(js, 1<<20)
	large.cfg.DataDir = t.TempDir()
	st, err = large.restoreState(t.Context(), "app", "production")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(st.dir, "big"), strings.Repeat("x", 8192))
	if _, err := st.save(t.Context(), large.stateTmpDir()); err != nil {
		t.Fatal(err)
	}
	st, err = small.restoreState(t.Context(), "app", "production")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.problem, "max-state-size") {
		t.Errorf("restoring a state over the limit: problem %q; want one naming max-state-size", st.problem)
	}
}

// archive is a tar of entries.
func archive(t *testing.T, entries ...*tar.Header) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range entries {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write(bytes.Repeat([]byte("x"), int(h.Size))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func file(name string, size int64) *tar.Header {
	return &tar.Header{Name: name, Typeflag: tar.TypeReg, Size: size, Mode: 0o644}
}

// An archive in the store is hostile: only files and directories inside
// the state directory, within the limits, are restored.
func TestHostileStateArchivesAreRefused(t *testing.T) {
	t.Parallel()
	many := []*tar.Header{}
	for i := range 11 {
		many = append(many, file("f"+string(rune('a'+i)), 1))
	}
	for name, c := range map[string]struct {
		tar  []byte
		want string
	}{
		"a symlink out":      {archive(t, &tar.Header{Name: "etc", Typeflag: tar.TypeSymlink, Linkname: "/etc"}), "not a regular file or a directory"},
		"a hard link":        {archive(t, file("a", 1), &tar.Header{Name: "b", Typeflag: tar.TypeLink, Linkname: "a"}), "not a regular file or a directory"},
		"a device":           {archive(t, &tar.Header{Name: "null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}), "not a regular file or a directory"},
		"a parent path":      {archive(t, file("../escaped", 1)), "not a path inside"},
		"a parent inside":    {archive(t, file("a/../../escaped", 1)), "not a path inside"},
		"an absolute path":   {archive(t, file("/tmp/escaped", 1)), "not a path inside"},
		"too many entries":   {archive(t, many...), "more than 10 entries"},
		"files over the max": {archive(t, file("a", 600), file("b", 600)), "more than max-state-size"},
		"twice one file":     {archive(t, file("a", 1), file("a", 1)), `entry "a"`},
		"not a tar":          {[]byte("this is not an archive at all, but it is long enough to be read as a header block........................................................................................................................................................................................................................................................................................................................................................................................................................................................................................"), "not a readable archive"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			parent := t.TempDir()
			dir := filepath.Join(parent, "state")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			_, err := untarState(bytes.NewReader(c.tar), dir, 1000, 10)
			if !errors.Is(err, errStateRefused) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("untar: %v; want a refusal saying %q", err, c.want)
			}
			if entries, _ := os.ReadDir(parent); len(entries) != 1 {
				t.Errorf("something was written beside the state directory: %v", entries)
			}
		})
	}
	// A symbolic link inside the directory (one a deploy made, say) is not
	// followed out of it either.
	dir := t.TempDir()
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "out")); err != nil {
		t.Fatal(err)
	}
	if _, err := untarState(bytes.NewReader(archive(t, file("out/escaped", 1))), dir, 1000, 10); !errors.Is(err, errStateRefused) {
		t.Errorf("untar through a link: %v; want a refusal", err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("written through a link out of the state directory: %v", entries)
	}
}

// The archive of a directory is the same bytes whenever it is made.
func TestStateArchivesAreDeterministic(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "b", "c"), "c")
	writeFile(t, filepath.Join(dir, "a"), "a")
	var one, two bytes.Buffer
	if _, err := tarState(dir, &one); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(dir, "a"), time.Now(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := tarState(dir, &two); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(one.Bytes(), two.Bytes()) {
		t.Error("two archives of one directory differ")
	}
	out := t.TempDir()
	if n, err := untarState(bytes.NewReader(one.Bytes()), out, 1000, 10); err != nil || n != 3 {
		t.Fatalf("untar: %d entries, %v", n, err)
	}
	if got, _ := os.ReadFile(filepath.Join(out, "b", "c")); string(got) != "c" {
		t.Errorf("b/c = %q", got)
	}
}

// stuckFirstPut is an object store whose first Put goes unanswered, as
// one in flight when a NATS node is killed: it returns only when its
// context ends. Later Puts are stored.
type stuckFirstPut struct {
	jetstream.ObjectStore
	puts      int
	deadlines []time.Duration
}

func (s *stuckFirstPut) Put(ctx context.Context, meta jetstream.ObjectMeta, r io.Reader) (*jetstream.ObjectInfo, error) {
	s.puts++
	d, ok := ctx.Deadline()
	if !ok {
		return nil, errors.New("a Put without a deadline")
	}
	s.deadlines = append(s.deadlines, time.Until(d))
	if s.puts == 1 {
		// Not waited out: the deadline is what is checked.
		return nil, context.DeadlineExceeded
	}
	return s.ObjectStore.Put(ctx, meta, r)
}

// One unanswered attempt to store a deploy state does not use up the
// patience of all: each attempt has its own bound, well inside it, so the
// next one is made (a SIGKILLed NATS node once left a verified deploy
// failed for its state while a second attempt would have stored it).
func TestStoringAStateBoundsEachAttempt(t *testing.T) {
	t.Parallel()
	js := stateStore(t)
	r := stateReplica(js, 1<<20)
	r.cfg.DataDir = t.TempDir()
	st, err := r.restoreState(t.Context(), "app", "staging")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(st.dir, "pid"), "7\n")
	stuck := &stuckFirstPut{ObjectStore: st.obs}
	st.obs = stuck
	if _, err := st.save(t.Context(), t.TempDir()); err != nil {
		t.Fatalf("save after one stuck attempt: %v", err)
	}
	if stuck.puts != 2 {
		t.Fatalf("%d attempts, want 2", stuck.puts)
	}
	for i, d := range stuck.deadlines {
		if d > stateAttemptTimeout || stateAttemptTimeout > statePatience/2 {
			t.Fatalf("attempt %d may take %v of a patience of %v", i+1, d, statePatience)
		}
	}
	if _, err := st.obs.GetInfo(t.Context(), st.object); err != nil {
		t.Fatalf("the state was not stored: %v", err)
	}
}
