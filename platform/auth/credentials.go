package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/retry"
	authv1 "github.com/sluicehq/sluice/proto/gen/sluice/auth/v1"
)

// The key-value buckets credentials are published in (declared under
// deploy/nats/keyvalues).
const (
	// TokensBucket: key = token id, value = TokenRecord. Source writes it.
	TokensBucket = "sluice-tokens"
	// ServicesBucket: key = <service>.<instance>, value = ServiceRecord.
	// Each service writes under its own name only.
	ServicesBucket = "sluice-service-identities"
)

// TokenRecord is what every service knows of a user token.
type TokenRecord struct {
	ID           string     `json:"id"`
	Name         string     `json:"name"`
	Role         string     `json:"role"`
	Repositories []string   `json:"repositories,omitempty"`
	Hash         string     `json:"hash"`
	ExpiresAt    *time.Time `json:"expires_at,omitempty"`
}

// ServiceRecord is what every service knows of one process of a service:
// its secret's hash. The service is the key's first token.
type ServiceRecord struct {
	Hash string `json:"hash"`
}

// Verifier knows every credential and says whose a secret is. It learns
// them by watching the two buckets (Run); until both are loaded it refuses
// every secret and its Ready reports why.
type Verifier struct {
	log *slog.Logger
	now func() time.Time

	mu       sync.RWMutex
	byHash   map[string]Identity
	keyHash  map[string]string // bucket/key -> hash, to forget deleted keys
	loaded   map[string]bool   // by bucket
	watchErr error
}

// NewVerifier makes a verifier that knows nothing yet.
func NewVerifier(log *slog.Logger) *Verifier {
	return &Verifier{log: log, now: time.Now, byHash: map[string]Identity{}, keyHash: map[string]string{}, loaded: map[string]bool{}}
}

// Ready is nil once both buckets are loaded.
func (v *Verifier) Ready() error {
	v.mu.RLock()
	defer v.mu.RUnlock()
	for _, b := range []string{TokensBucket, ServicesBucket} {
		if !v.loaded[b] {
			if v.watchErr != nil {
				return fmt.Errorf("credentials in %s not loaded: %w", b, v.watchErr)
			}
			return fmt.Errorf("credentials in %s not loaded yet", b)
		}
	}
	return nil
}

// Authenticate returns the identity secret belongs to.
func (v *Verifier) Authenticate(secret string) (Identity, error) {
	if len(secret) > MaxSecretLen {
		return Identity{}, fmt.Errorf("the token is longer than any Sluice token: %w", apierror.ErrUnauthenticated)
	}
	if err := v.Ready(); err != nil {
		return Identity{}, fmt.Errorf("this service cannot check tokens yet (%w): %w", err, apierror.ErrUnavailable)
	}
	v.mu.RLock()
	id, ok := v.byHash[Hash(secret)]
	v.mu.RUnlock()
	if !ok {
		if tid := TokenID(secret); tid != "" {
			return Identity{}, fmt.Errorf("token %s is not valid: revoked, or never issued here: %w", tid, apierror.ErrUnauthenticated)
		}
		return Identity{}, fmt.Errorf("the token is not valid here: %w", apierror.ErrUnauthenticated)
	}
	if !id.ExpiresAt.IsZero() && !v.now().Before(id.ExpiresAt) {
		return Identity{}, fmt.Errorf("token %s (%s) expired at %s: %w", id.TokenID, id.Name, id.ExpiresAt.UTC().Format(time.RFC3339), apierror.ErrUnauthenticated)
	}
	return id, nil
}

// Buckets are the key-value buckets a Verifier watches.
func Buckets() []string { return []string{TokensBucket, ServicesBucket} }

// Run watches both buckets (Watch) until ctx ends.
func (v *Verifier) Run(ctx context.Context, js jetstream.JetStream) error {
	var wg sync.WaitGroup
	for _, bucket := range Buckets() {
		wg.Go(func() { v.Watch(ctx, js, bucket) })
	}
	wg.Wait()
	return nil
}

// Watch watches one of the Buckets until ctx ends, waiting for it to
// exist (source makes TokensBucket) and watching again after a failure.
// A process runs one Watch per bucket, each a background loop of its own.
func (v *Verifier) Watch(ctx context.Context, js jetstream.JetStream, bucket string) {
	b := retry.Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.2}
	for try := 0; ctx.Err() == nil; try++ {
		err := v.watch(ctx, js, bucket)
		if ctx.Err() != nil {
			return
		}
		v.mu.Lock()
		v.watchErr = err
		v.mu.Unlock()
		v.log.Warn("watching credentials failed; watching again", slog.String("bucket", bucket), slog.Any("error", err))
		if !retry.Sleep(ctx, b.Delay(try)) {
			return
		}
	}
}

func (v *Verifier) watch(ctx context.Context, js jetstream.JetStream, bucket string) error {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return fmt.Errorf("open %s: %w", bucket, err)
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch %s: %w", bucket, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("the watch ended")
			}
			if e == nil {
				v.mu.Lock()
				v.loaded[bucket] = true
				v.watchErr = nil
				v.mu.Unlock()
				continue
			}
			v.apply(bucket, e)
		}
	}
}

func (v *Verifier) apply(bucket string, e jetstream.KeyValueEntry) {
	key := bucket + "/" + e.Key()
	v.mu.Lock()
	defer v.mu.Unlock()
	if old, ok := v.keyHash[key]; ok {
		delete(v.byHash, old)
		delete(v.keyHash, key)
	}
	if e.Operation() != jetstream.KeyValuePut {
		return
	}
	id, hash, err := identityOf(bucket, e.Key(), e.Value())
	if err != nil {
		v.log.Warn("credential ignored", slog.String("bucket", bucket), slog.String("key", e.Key()), slog.Any("error", err))
		return
	}
	v.byHash[hash] = id
	v.keyHash[key] = hash
}

func identityOf(bucket, key string, value []byte) (Identity, string, error) {
	switch bucket {
	case TokensBucket:
		var r TokenRecord
		if err := json.Unmarshal(value, &r); err != nil {
			return Identity{}, "", err
		}
		role, err := ParseRole(r.Role)
		if err != nil {
			return Identity{}, "", err
		}
		if r.ID != key || len(r.Hash) != 64 {
			return Identity{}, "", errors.New("the record's id or hash is malformed")
		}
		id := Identity{Kind: KindUser, Name: r.Name, TokenID: r.ID, Role: role, Repositories: r.Repositories}
		if r.ExpiresAt != nil {
			id.ExpiresAt = *r.ExpiresAt
		}
		return id, r.Hash, nil
	default:
		var r ServiceRecord
		if err := json.Unmarshal(value, &r); err != nil {
			return Identity{}, "", err
		}
		service, _, _ := strings.Cut(key, ".")
		if service == "" || len(r.Hash) != 64 {
			return Identity{}, "", errors.New("the record's key or hash is malformed")
		}
		return Identity{Kind: KindService, Name: service, Role: authv1.Role_ROLE_UNSPECIFIED}, r.Hash, nil
	}
}
