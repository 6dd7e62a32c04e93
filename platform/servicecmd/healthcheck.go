package servicecmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/sluicehq/sluice/platform/tlsconfig"
)

// HealthcheckCommand is the subcommand that asks a running service whether
// it is ready: `sluice-build healthcheck [flags]`. It reads the same flags
// and SLUICE_<SERVICE>_* variables as the server, so in a container whose
// environment configures the service it needs no arguments. It is meant
// for a Dockerfile HEALTHCHECK in an image that has no shell or curl.
const HealthcheckCommand = "healthcheck"

// HealthcheckTimeout bounds the whole check (connect, request, response).
const HealthcheckTimeout = 3 * time.Second

// maxReason is how much of a not-ready response body the reason quotes.
const maxReason = 300

// healthcheck exits 0 when GET http://<addr>/readyz answers 200, and 1
// otherwise with a one-line reason on stderr. Docker reserves exit code 2,
// so bad flags exit 1 as well.
func healthcheck[C Config[C], P Registrar[C]](c Command[C], args []string, stdout, stderr io.Writer, lookup func(string) (string, bool)) int {
	name := "sluice-" + c.Service + " " + HealthcheckCommand
	s, err := parse[C, P](c, args, stderr, lookup)
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	if err := s.process.Validate(); err != nil {
		fmt.Fprintf(stderr, "%s: %s\n", name, strings.ReplaceAll(err.Error(), "\n", "; "))
		return 1
	}
	network, err := s.process.Network(c.Service, nil)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	url, err := readyzURL(s.process.Addr, network.Server.TLS != nil)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), HealthcheckTimeout)
	defer cancel()
	if err := checkReady(ctx, url, network.Client); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %s ready\n", name, url)
	return 0
}

// readyzURL is the /readyz URL of a server listening on addr, https://
// when it serves TLS. A wildcard host (empty, 0.0.0.0 or ::) is asked on
// 127.0.0.1.
func readyzURL(addr string, secure bool) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("listen address %q: %w", addr, err)
	}
	if port == "" || port == "0" {
		return "", fmt.Errorf("listen address %q has no fixed port to check", addr)
	}
	switch host {
	case "", "0.0.0.0", "::":
		host = "127.0.0.1"
	}
	scheme := "http://"
	if secure {
		scheme = "https://"
	}
	return scheme + net.JoinHostPort(host, port) + "/readyz", nil
}

// checkReady GETs url, never through a proxy, trusting what client
// trusts (the process's own certificate among it), and returns nil only
// on 200. A not-ready answer's body (one reason a line) is folded into the
// error.
func checkReady(ctx context.Context, url string, client *tlsconfig.Client) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("request %s: %w", url, err)
	}
	tr := client.Transport()
	tr.Proxy, tr.DisableKeepAlives = nil, true
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return fmt.Errorf("not reachable: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4*maxReason))
	if err != nil {
		return fmt.Errorf("%s: reading the answer: %w", resp.Status, err)
	}
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	reason := strings.Join(strings.Fields(strings.ReplaceAll(string(body), "\n", "; ")), " ")
	reason = strings.TrimSuffix(reason, ";")
	if len(reason) > maxReason {
		reason = reason[:maxReason] + "..."
	}
	if reason == "" {
		return fmt.Errorf("not ready: %s", resp.Status)
	}
	return fmt.Errorf("not ready: %s: %s", resp.Status, reason)
}
