package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The CLI's token life: an admin makes a viewer token, someone logs in
// with it (stdin, never a flag), may read but not register; the admin
// revokes it and it stops working within seconds.
func TestTokensFromTheCLI(t *testing.T) {
	p, _ := startAllInOne(t, t.TempDir())
	out := mustCLI(t, p.env, "token", "create", "--name", "alice", "--role", "viewer", "--expires", "30d")
	secret := regexp.MustCompile(`sluice_[a-z2-7]{16}_[A-Za-z0-9_-]+`).FindString(out)
	id := regexp.MustCompile(`token ([a-z2-7]{16}) \(alice, viewer\)`).FindStringSubmatch(out)
	if secret == "" || id == nil {
		t.Fatalf("token create printed:\n%s", out)
	}
	if strings.Contains(mustCLI(t, p.env, "token", "ls"), secret) {
		t.Fatal("token ls shows a secret")
	}

	// Alice's own config folder: what login saves, the CLI then uses.
	alice := []string{"SLUICE_SERVER=" + p.url, "XDG_CONFIG_HOME=" + filepath.Join(t.TempDir(), "alice")}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	login := exec.CommandContext(ctx, bin(t, "sluice"), "login")
	login.Env = append(os.Environ(), alice...)
	login.Stdin = strings.NewReader(secret + "\n")
	if out, err := login.CombinedOutput(); err != nil || !strings.Contains(string(out), "as token "+id[1]) {
		t.Fatalf("login: %v\n%s", err, out)
	}
	if who := mustCLI(t, alice, "whoami"); !strings.Contains(who, "alice") || !strings.Contains(who, "viewer") {
		t.Fatalf("whoami: %s", who)
	}
	mustCLI(t, alice, "runs")
	out, code := cli(t, alice, "repo", "add", t.TempDir(), "--name", "nope")
	if code != 1 || !strings.Contains(out, "not allowed") || !strings.Contains(out, "admin") {
		t.Fatalf("a viewer registers a repository: exit %d\n%s", code, out)
	}

	mustCLI(t, p.env, "token", "revoke", id[1])
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, code := cli(t, alice, "whoami")
		if code == 1 && strings.Contains(out, "not valid") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the revoked token still works after 10s: exit %d\n%s", code, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The audit log has all of it, and is an admin's only.
	deadline = time.Now().Add(10 * time.Second)
	for {
		tokens := mustCLI(t, p.env, "audit", "--action", "token.", "-o", "json")
		refused := mustCLI(t, p.env, "audit", "--actor", "alice")
		if strings.Count(tokens, id[1]) == 2 && strings.Contains(tokens, `"token.create"`) && strings.Contains(tokens, `"token.revoke"`) &&
			strings.Contains(refused, "repository.create") && strings.Contains(refused, "permission_denied") && strings.Contains(refused, id[1]+" (alice)") {
			if strings.Contains(tokens, secret) || strings.Contains(refused, secret) {
				t.Fatal("the audit log shows a token's secret")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sluice audit after 10s:\n%s\n%s", tokens, refused)
		}
		time.Sleep(200 * time.Millisecond)
	}
	viewerOnly := []string{"SLUICE_SERVER=" + p.url, "SLUICE_TOKEN=" + mustViewerToken(t, p.env)}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, code := cli(t, viewerOnly, "whoami"); code == 0 || time.Now().After(deadline) {
			break
		}
	}
	if out, code := cli(t, viewerOnly, "audit"); code != 1 || !strings.Contains(out, "admin") {
		t.Fatalf("a viewer reads the audit log: exit %d\n%s", code, out)
	}

	// Without any token the CLI says what to do.
	out, code = cli(t, []string{"SLUICE_SERVER=" + p.url, "XDG_CONFIG_HOME=" + t.TempDir()}, "runs")
	if code != 1 || !strings.Contains(out, "sluice login") {
		t.Fatalf("no token: exit %d\n%s", code, out)
	}
}

// mustViewerToken makes a viewer token as env's admin and returns its
// secret.
func mustViewerToken(t *testing.T, env []string) string {
	t.Helper()
	out := mustCLI(t, env, "token", "create", "--name", "reader", "--role", "viewer")
	secret := regexp.MustCompile(`sluice_[a-z2-7]{16}_[A-Za-z0-9_-]+`).FindString(out)
	if secret == "" {
		t.Fatalf("token create printed:\n%s", out)
	}
	return secret
}
