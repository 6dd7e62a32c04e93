package stepcache_test

import (
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/stepcache"
)

// program is a small service that pulls in a good part of the standard
// library, as a real project would: its first build compiles all of it.
const program = `package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"os"
)

func main() {
	_ = sql.Drivers()
	t := template.Must(template.New("x").Parse("{{.}}"))
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"path": r.URL.Path})
		_ = t.Execute(os.Stdout, r.URL.Path)
	})
	slog.Info("ready")
	fmt.Println(http.ListenAndServe("127.0.0.1:0", nil))
}
`

// goBuild builds the program in ws with its build cache in home, as a
// step would (GOCACHE is where XDG_CACHE_HOME puts it).
func goBuild(b *testing.B, gobin string, d stepcache.Dirs) {
	b.Helper()
	cmd := exec.CommandContext(b.Context(), gobin, "build", "-o", filepath.Join(d.Workspace, "app"), ".")
	cmd.Dir = d.Workspace
	cmd.Env = append(os.Environ(), "GOCACHE="+filepath.Join(d.Home, ".cache/go-build"), "GOFLAGS=-mod=mod", "GOPROXY=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
}

func project(b *testing.B) stepcache.Dirs {
	b.Helper()
	base := b.TempDir()
	d := stepcache.Dirs{Workspace: filepath.Join(base, "ws"), Home: filepath.Join(base, "ws.home")}
	for path, content := range map[string]string{"go.mod": "module example.com/app\n\ngo 1.26\n", "main.go": program} {
		if err := os.MkdirAll(d.Workspace, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d.Workspace, path), []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return d
}

// BenchmarkSecondGoBuild is a Go project's build in a fresh workspace, as
// every run's is: without a cache, and with its build cache (what the
// first run saved) restored from the object store first. Its figures are
// what a cache: entry saves a run.
func BenchmarkSecondGoBuild(b *testing.B) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		b.Skip("no go command")
	}
	b.Run("no-cache", func(b *testing.B) {
		for b.Loop() {
			goBuild(b, gobin, project(b))
		}
	})
	b.Run("cache-restored", func(b *testing.B) {
		js := provision(b)
		s, err := stepcache.Open(b.Context(), js, stepcache.BuildBucket, stepcache.Limits{}, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		sc := stepcache.Scope{RepositoryID: "repo-1", Branch: "main"}
		paths := []string{"~/.cache/go-build"}
		first := project(b)
		goBuild(b, gobin, first)
		saved, err := s.Save(b.Context(), sc, "go", paths, first)
		if err != nil {
			b.Fatal(err)
		}
		var restore time.Duration
		for b.Loop() {
			d := project(b)
			began := time.Now()
			if r, err := s.Restore(b.Context(), sc, "go", paths, d); err != nil || r.Object == "" {
				b.Fatalf("restore: %+v, %v", r, err)
			}
			restore += time.Since(began)
			goBuild(b, gobin, d)
		}
		b.ReportMetric(float64(saved.Size)/(1<<20), "cache-MiB")
		b.ReportMetric(restore.Seconds()/float64(b.N), "restore-s/op")
	})
}
