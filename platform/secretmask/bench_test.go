package secretmask_test

import (
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/platform/secretmask"
)

// benchSecrets returns n random secrets of 20 to 40 characters, like API
// tokens.
func benchSecrets(rng *rand.Rand, n int) []string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	secrets := make([]string, n)
	for i := range secrets {
		b := make([]byte, 20+rng.IntN(21))
		for j := range b {
			b[j] = alphabet[rng.IntN(len(alphabet))]
		}
		secrets[i] = string(b)
	}
	return secrets
}

// benchLog returns size bytes of build and test log lines, with a secret
// (plain or base64) in about one line per MiB, and how many it put in.
func benchLog(rng *rand.Rand, size int, secrets []string) ([]byte, int) {
	log := make([]byte, 0, size+512)
	hex := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = "0123456789abcdef"[rng.IntN(16)]
		}
		return string(b)
	}
	words := []string{"parser", "lexer", "store", "router", "cache", "session", "worker", "queue", "handler", "config"}
	word := func() string { return words[rng.IntN(len(words))] }
	placed := 0
	for len(log) < size {
		ts := fmt.Sprintf("2026-11-05T%02d:%02d:%02d.%03dZ", rng.IntN(24), rng.IntN(60), rng.IntN(60), rng.IntN(1000))
		switch rng.IntN(8) {
		case 0:
			log = fmt.Appendf(log, "%s INFO  build/attempt.go:%d step %q started pid=%d\n", ts, rng.IntN(400), word(), rng.IntN(1<<16))
		case 1:
			log = fmt.Appendf(log, "go: downloading github.com/%s/%s v1.%d.%d\n", word(), word(), rng.IntN(30), rng.IntN(10))
		case 2:
			log = fmt.Appendf(log, "=== RUN   Test%s/case_%d\n--- PASS: Test%s/case_%d (0.%02ds)\n", word(), rng.IntN(100), word(), rng.IntN(100), rng.IntN(100))
		case 3:
			log = fmt.Appendf(log, "[ %2d%%] Building CXX object src/CMakeFiles/core.dir/%s.cpp.o\n", rng.IntN(100), word())
		case 4:
			log = fmt.Appendf(log, `{"level":"info","ts":%q,"msg":"request done","path":"/api/v1/%s/%d","status":200,"dur_ms":%d}`+"\n", ts, word(), rng.IntN(1e6), rng.IntN(500))
		case 5:
			log = fmt.Appendf(log, "commit %s\nAuthor: Dev %s <dev@example.com>\n", hex(40), word())
		case 6:
			log = fmt.Appendf(log, "ok  \tgithub.com/sluicehq/sluice/%s\t%d.%03ds\tcoverage: %d.%d%% of statements\n", word(), rng.IntN(10), rng.IntN(1000), rng.IntN(100), rng.IntN(10))
		default:
			log = fmt.Appendf(log, "%s WARN  %s: retrying after %dms (attempt %d of 5): connection reset by peer\n", ts, word(), rng.IntN(2000), 1+rng.IntN(5))
		}
		if rng.IntN(1<<20/70) == 0 { // about once per MiB at ~70 bytes a line
			s := secrets[rng.IntN(len(secrets))]
			if rng.IntN(2) == 0 {
				s = base64.StdEncoding.EncodeToString([]byte(s))
			}
			log = fmt.Appendf(log, "%s DEBUG auth header: Bearer %s\n", ts, s)
			placed++
		}
	}
	return log, placed
}

// BenchmarkWriter100MB50Secrets measures the masker's throughput on a
// 100 MB log with 50 secrets, written in 32 KiB chunks.
func BenchmarkWriter100MB50Secrets(b *testing.B) {
	const size, chunk = 100 << 20, 32 << 10
	rng := rand.New(rand.NewPCG(7, 8))
	secrets := benchSecrets(rng, 50)
	log, placed := benchLog(rng, size, secrets)
	m := secretmask.New(secrets)

	masked := m.String(string(log))
	if n := strings.Count(masked, secretmask.Mask); n < placed {
		b.Fatalf("%d masks for %d secrets placed", n, placed)
	}
	for _, s := range secrets {
		if strings.Contains(masked, s) {
			b.Fatalf("secret %q left in the log", s)
		}
	}

	b.SetBytes(int64(len(log)))
	b.ReportAllocs()
	for b.Loop() {
		w := m.Writer(io.Discard)
		for p := log; len(p) > 0; {
			n := min(chunk, len(p))
			if _, err := w.Write(p[:n]); err != nil {
				b.Fatal(err)
			}
			p = p[n:]
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNew50Secrets measures building a Masker for 50 secrets (once per
// step).
func BenchmarkNew50Secrets(b *testing.B) {
	secrets := benchSecrets(rand.New(rand.NewPCG(7, 8)), 50)
	b.ReportAllocs()
	for b.Loop() {
		secretmask.New(secrets)
	}
}
