package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/ids"
)

// ServiceIdentity is this process's identity as one of the Sluice
// services: a secret that lives only in its memory, whose hash it publishes
// under <service>.<instance> in ServicesBucket. Other services then accept
// the secret as that service (and only for the procedures whose policy
// names it).
type ServiceIdentity struct {
	service string
	key     string
	secret  string
}

// NewServiceIdentity makes this process's identity as service.
func NewServiceIdentity(service string) *ServiceIdentity {
	return &ServiceIdentity{service: service, key: service + "." + ids.New(), secret: NewServiceSecret(service)}
}

// Service is the service's name.
func (s *ServiceIdentity) Service() string { return s.service }

// Secret is what the process sends as its credential.
func (s *ServiceIdentity) Secret() string { return s.secret }

// Publish puts the identity's record in ServicesBucket (which the
// service's NATS provisioning made).
func (s *ServiceIdentity) Publish(ctx context.Context, js jetstream.JetStream) error {
	kv, err := js.KeyValue(ctx, ServicesBucket)
	if err != nil {
		return fmt.Errorf("open %s: %w", ServicesBucket, err)
	}
	value, err := json.Marshal(ServiceRecord{Hash: Hash(s.secret)})
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, s.key, value); err != nil {
		return fmt.Errorf("publish %s's identity: %w", s.service, err)
	}
	return nil
}

// Transport returns base (http.DefaultTransport when nil) sending the
// identity's secret with every request.
func (s *ServiceIdentity) Transport(base http.RoundTripper) http.RoundTripper {
	return WithSecret(base, s.Secret)
}

// RefreshEvery is how often a process puts its record again, so that the
// bucket's age limit removes only the records of processes that are gone.
const RefreshEvery = 10 * time.Minute

// WithSecret returns base (http.DefaultTransport when nil) sending
// `Authorization: Bearer <secret()>` with every request that has no
// Authorization header of its own, and refusing to follow a redirect.
func WithSecret(base http.RoundTripper, secret func() string) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return bearer{base: base, secret: secret}
}

type bearer struct {
	base   http.RoundTripper
	secret func() string
}

func (b bearer) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Response != nil {
		// http.Client follows a redirect by calling the transport again
		// with the response that asked for it; the credential added here
		// would go wherever the Location points. Sluice's APIs never
		// redirect: a redirect is a proxy or an attacker.
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, fmt.Errorf("%s redirected the call to %s: a call that carries a credential does not follow redirects", req.Response.Request.URL.Host, req.URL.Redacted())
	}
	if req.Header.Get("Authorization") == "" {
		if secret := b.secret(); secret != "" {
			req = req.Clone(req.Context())
			req.Header.Set("Authorization", "Bearer "+secret)
		}
	}
	return b.base.RoundTrip(req)
}
