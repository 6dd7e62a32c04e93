package executor_test

import (
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/executor"
)

const (
	testToken = "tok-3f9a2c7Qx81LmZ"
	testKey   = "-----BEGIN TEST KEY-----\nAAAAB3NzaC1yc2EAAAADAQABAAABAQC7\nZm9vYmFyYmF6cXV4cXV1eGNvcmdl\n-----END TEST KEY-----"
)

// runWithSecrets runs command with TOKEN and KEY in its environment and
// both as secrets.
func runWithSecrets(t *testing.T, l *executor.Local, command string, timeout time.Duration) (executor.Result, *output) {
	t.Helper()
	return runSpec(t, l, executor.Spec{
		Command: command,
		Env:     map[string]string{"TOKEN": testToken, "KEY": testKey},
		Timeout: timeout,
		Secrets: []string{testToken, testKey},
	})
}

// assertMasked checks that the step's output has a mask and no secret,
// nor any line of the key.
func assertMasked(t *testing.T, out *output) {
	t.Helper()
	out.mu.Lock()
	defer out.mu.Unlock()
	all := strings.Join(append(append([]string{}, out.stdout...), out.stderr...), "\n")
	if !strings.Contains(all, "***") {
		t.Errorf("no mask in the output: stdout %q, stderr %q", out.stdout, out.stderr)
	}
	for _, secret := range append([]string{testToken}, strings.Split(testKey, "\n")...) {
		if strings.Contains(all, secret) {
			t.Errorf("the output shows %q: stdout %q, stderr %q", secret, out.stdout, out.stderr)
		}
	}
}

func TestSecretsAreMaskedInOutput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, command string
		needs         string // a command the step needs, or ""
		stdout        []string
	}{
		{name: "plain", command: `echo "token is $TOKEN"`, stdout: []string{"token is ***"}},
		{name: "stderr", command: `echo "token is $TOKEN" >&2`},
		{
			name:    "split in two writes",
			command: `printf 'token: tok-3f9a2'; sleep 0.3; printf 'c7Qx81LmZ, done\n'`,
			stdout:  []string{"token: ***, done"},
		},
		{
			// The first and last characters mix in "user:" and the end.
			name: "base64", needs: "base64", command: `printf 'user:%s' "$TOKEN" | base64`,
			stdout: []string{"dXNlcjp***o="},
		},
		{
			name: "hex", needs: "od", command: `printf '%s' "$TOKEN" | od -An -tx1 | tr -d ' \n'; echo`,
			stdout: []string{"***"},
		},
		{name: "multi-line", command: `printf 'key:\n%s\nend\n' "$KEY"`, stdout: []string{"key:", "***", "end"}},
		{
			name:    "multi-line, indented",
			command: `printf '%s\n' "$KEY" | sed 's/^/    /'`,
			stdout:  []string{"    ***", "    ***", "    ***", "    ***"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.needs != "" {
				if _, err := exec.LookPath(tc.needs); err != nil {
					t.Skipf("no %s here", tc.needs)
				}
			}
			res, out := runWithSecrets(t, &executor.Local{}, tc.command, 0)
			if res.ExitCode != 0 {
				t.Fatalf("ExitCode = %d, stderr %q", res.ExitCode, out.stderr)
			}
			assertMasked(t, out)
			if tc.stdout != nil && strings.Join(out.stdout, "\n") != strings.Join(tc.stdout, "\n") {
				t.Errorf("stdout = %q, want %q", out.stdout, tc.stdout)
			}
		})
	}
}

func TestSecretsKeepTheLastPartialLine(t *testing.T) {
	t.Parallel()
	// The output ends with what could be the start of the token: it is
	// held back until the step ends, then delivered.
	res, out := runWithSecrets(t, &executor.Local{}, `echo first; printf 'almost tok-3f9a'`, 0)
	if res.ExitCode != 0 {
		t.Fatalf("ExitCode = %d", res.ExitCode)
	}
	if got := strings.Join(out.stdout, "|"); got != "first|almost tok-3f9a" {
		t.Errorf("stdout = %q", out.stdout)
	}
}

func TestSecretsDoNotChangeTheResult(t *testing.T) {
	t.Parallel()
	t.Run("exit code", func(t *testing.T) {
		t.Parallel()
		res, out := runWithSecrets(t, &executor.Local{}, `echo "$TOKEN"; exit 3`, 0)
		if res.ExitCode != 3 || res.TimedOut || res.Cancelled {
			t.Errorf("result = %+v, want ExitCode 3", res)
		}
		assertMasked(t, out)
	})
	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		res, out := runWithSecrets(t, &executor.Local{KillGrace: 200 * time.Millisecond},
			`echo "$TOKEN"; printf 'tok-3f9'; sleep 1000`, 2*time.Second)
		if !res.TimedOut || res.ExitCode != -1 {
			t.Errorf("result = %+v, want TimedOut, ExitCode -1", res)
		}
		if res.Duration > 10*time.Second {
			t.Errorf("Duration = %v", res.Duration)
		}
		assertMasked(t, out)
		if got := strings.Join(out.stdout, "|"); got != "***|tok-3f9" {
			t.Errorf("stdout = %q", out.stdout)
		}
	})
	t.Run("daemon holding output", func(t *testing.T) {
		t.Parallel()
		res, out := runWithSecrets(t, &executor.Local{KillGrace: 200 * time.Millisecond}, `sleep 1000 & echo $!; echo "$TOKEN"`, 0)
		pid := grandchildPID(t, out)
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
		if res.ExitCode != 0 || res.TimedOut || res.Cancelled {
			t.Errorf("result = %+v, want a clean exit", res)
		}
		assertMasked(t, out)
	})
}
