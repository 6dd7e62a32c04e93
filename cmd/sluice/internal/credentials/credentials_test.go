package credentials_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sluicehq/sluice/cmd/sluice/internal/credentials"
)

func TestSaveLoadRemove(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sluice", "credentials.json")
	if tok, err := credentials.Token(path, "http://a"); err != nil || tok != "" {
		t.Fatalf("missing file: %q, %v", tok, err)
	}
	if err := credentials.Save(path, "http://a/", "sluice_one"); err != nil {
		t.Fatal(err)
	}
	if err := credentials.Save(path, "http://b", "sluice_two"); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", info.Mode().Perm())
	}
	if tok, _ := credentials.Token(path, "http://a"); tok != "sluice_one" {
		t.Errorf("a: %q", tok)
	}
	if err := credentials.Save(path, "http://a", ""); err != nil {
		t.Fatal(err)
	}
	if tok, _ := credentials.Token(path, "http://a"); tok != "" {
		t.Errorf("a after removal: %q", tok)
	}
	if tok, _ := credentials.Token(path, "http://b"); tok != "sluice_two" {
		t.Errorf("b: %q", tok)
	}
}

func TestPath(t *testing.T) {
	t.Parallel()
	env := map[string]string{"HOME": "/home/u"}
	p, err := credentials.Path(func(k string) string { return env[k] })
	if err != nil || p != "/home/u/.config/sluice/credentials.json" {
		t.Errorf("HOME: %q %v", p, err)
	}
	env["XDG_CONFIG_HOME"] = "/cfg"
	if p, _ := credentials.Path(func(k string) string { return env[k] }); p != "/cfg/sluice/credentials.json" {
		t.Errorf("XDG: %q", p)
	}
	if _, err := credentials.Path(func(string) string { return "" }); err == nil {
		t.Error("no HOME: no error")
	}
}
