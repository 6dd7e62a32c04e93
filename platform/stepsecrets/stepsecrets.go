// Package stepsecrets gets the values of the secrets a pipeline's commands
// ask for (`env: {TOKEN: {secret: NAME}}`), for the services that run them
// (build, test, release). Events carry only the names; just before a stage
// runs its commands, its service asks source (SecretService.ResolveSecrets,
// a documented read-only query, with the service's own identity) for the
// values of that run's secrets, puts them in the commands' environment and
// hands them to the executor to mask in the log (executor.Spec.Secrets).
package stepsecrets

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/platform/forge"
	"github.com/sluicehq/sluice/platform/gitauth"
	"github.com/sluicehq/sluice/platform/tlsconfig"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
)

// ErrUnresolvable marks an error that retrying does not mend: a secret
// not set, a name the run does not ask for, no source to ask. The stage
// fails with it; other errors (source unreachable) are retried.
var ErrUnresolvable = errors.New("secrets cannot be resolved")

// resolveTimeout bounds one question to source; a source that does not
// answer in time is an error the stage retries.
const resolveTimeout = 30 * time.Second

// Resolver asks source for secret values.
type Resolver struct {
	service string
	client  sourcev1connect.SecretServiceClient
}

// NewResolver makes the resolver of service, which calls source at
// sourceURL (http:// or https://) through transport, which sends the
// service's identity (servicekit.CallTransport). With an empty sourceURL,
// every run that asks for a secret fails, saying the setting is missing.
func NewResolver(service, sourceURL string, transport http.RoundTripper) *Resolver {
	r := &Resolver{service: service}
	if sourceURL != "" {
		r.client = sourcev1connect.NewSecretServiceClient(&http.Client{Transport: transport}, sourceURL)
	}
	return r
}

// Names lists the secret names the refs (variable → secret name) ask for,
// sorted, without repeats.
func Names(refs ...map[string]string) []string {
	var names []string
	for _, m := range refs {
		for _, name := range m {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// Set is the values of a run's secrets, by secret name.
type Set struct {
	values map[string]string
	// masked are more values to mask that no variable receives (the
	// repository's credential).
	masked []string
}

// Masking returns s with values added to what Values returns for the
// masker, and to no command's environment.
func (s Set) Masking(values ...string) Set {
	s.masked = append(slices.Clone(s.masked), values...)
	return s
}

// Resolve gets the values of names for runID. No names, no call.
func (r *Resolver) Resolve(ctx context.Context, runID string, names []string) (Set, error) {
	if len(names) == 0 {
		return Set{}, nil
	}
	if r == nil || r.client == nil {
		return Set{}, fmt.Errorf("the %s service has no source-url, so it cannot get the secrets the run asks for: %w", r.serviceName(), ErrUnresolvable)
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	res, err := r.client.ResolveSecrets(ctx, &sourcev1.ResolveSecretsRequest{RunId: runID, Names: names})
	if err != nil {
		switch connect.CodeOf(err) {
		case connect.CodeFailedPrecondition, connect.CodePermissionDenied, connect.CodeNotFound, connect.CodeInvalidArgument:
			var cerr *connect.Error
			msg := err.Error()
			if errors.As(err, &cerr) {
				msg = cerr.Message()
			}
			return Set{}, fmt.Errorf("%s: %w", msg, ErrUnresolvable)
		}
		return Set{}, fmt.Errorf("ask source for the run's secrets: %w", err)
	}
	values := res.GetValues()
	for _, name := range names {
		if _, ok := values[name]; !ok {
			return Set{}, fmt.Errorf("source gave no value for the secret %q: %w", name, ErrUnresolvable)
		}
	}
	return Set{values: values}, nil
}

// Credential gets the credential of run runID's repository, whose kind the
// run's events say (RepositoryRef.git_credential), to check its commit out
// with: the repository's reserved secrets (gitauth). A repository without
// one costs no call. The caller masks Credential.Secrets in the run's logs.
func (r *Resolver) Credential(ctx context.Context, runID string, kind gitauth.Kind) (gitauth.Credential, error) {
	set, err := r.Resolve(ctx, runID, kind.Names())
	if err != nil {
		return gitauth.Credential{}, err
	}
	cred, err := gitauth.FromSecrets(kind, set.values)
	if err != nil {
		return gitauth.Credential{}, fmt.Errorf("%w: %w", err, ErrUnresolvable)
	}
	return cred, nil
}

// ForgeToken gets the forge token of run runID's repository (the secret
// forge.TokenSecret), which source gives only to the services that report
// to the forge (notify, release).
func (r *Resolver) ForgeToken(ctx context.Context, runID string) (string, error) {
	set, err := r.Resolve(ctx, runID, []string{forge.TokenSecret})
	if err != nil {
		return "", err
	}
	return set.values[forge.TokenSecret], nil
}

func (r *Resolver) serviceName() string {
	if r == nil {
		return "calling"
	}
	return r.service
}

// Env returns env with each variable of refs set to its secret's value:
// the environment of one command. env is not changed.
func (s Set) Env(env, refs map[string]string) map[string]string {
	out := make(map[string]string, len(env)+len(refs))
	for k, v := range env {
		out[k] = v
	}
	for variable, name := range refs {
		out[variable] = s.values[name]
	}
	return out
}

// Values are the secret values, for the executor to mask.
func (s Set) Values() []string {
	out := make([]string, 0, len(s.values)+len(s.masked))
	for _, v := range s.values {
		out = append(out, v)
	}
	out = append(out, s.masked...)
	slices.Sort(out)
	return slices.Compact(out)
}

// DefaultSourceURL is where a service finds source by default: the
// all-in-one process's, or source's own default address.
const DefaultSourceURL = "http://127.0.0.1:8081"

// CheckSourceURL refuses a source-url setting that is not an http:// or
// https:// URL, or that is plain http:// to a host other than loopback
// unless allowPlainHTTP (the service's identity and the secrets it fetches
// would cross the network readable); empty is allowed only when required
// is false.
func CheckSourceURL(sourceURL string, required, allowPlainHTTP bool) error {
	if sourceURL == "" {
		if required {
			return errors.New("source-url is required")
		}
		return nil
	}
	u, err := url.Parse(sourceURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("source-url %q is not an http:// or https:// URL", sourceURL)
	}
	if tlsconfig.PlainText(u) && !allowPlainHTTP {
		return fmt.Errorf("source-url %q is plain http:// to another machine: the service's identity and the secrets it fetches would be readable on the network; use https:// or set allow-plain-http", sourceURL)
	}
	return nil
}
