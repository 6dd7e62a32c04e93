package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/paging"
	authv1 "github.com/sluicehq/sluice/proto/gen/sluice/auth/v1"
	"github.com/sluicehq/sluice/services/source/domain"
)

// tokenSyncInterval is how often the tokens bucket is brought in line with
// the database (after a failed publish, or a revocation on another
// replica, or an expiry).
const tokenSyncInterval = 5 * time.Second

// NewToken is what CreateToken is asked for.
type NewToken struct {
	Name         string
	Role         string
	Repositories []string
	// ExpiresIn is 0 for a token that does not expire.
	ExpiresIn time.Duration
}

// CreateToken makes a token for the caller (an admin) and returns it with
// its secret, which is shown only this once.
func (s *Service) CreateToken(ctx context.Context, n NewToken) (domain.Token, string, error) {
	creator, _ := auth.FromContext(ctx)
	for _, name := range n.Repositories {
		if _, err := s.store.RepositoryByName(ctx, name); err != nil {
			return domain.Token{}, "", fmt.Errorf("repositories: %w", err)
		}
	}
	id, secret := auth.NewUserToken()
	now := time.Now()
	t := domain.Token{
		ID: id, Name: n.Name, Role: n.Role, Repositories: n.Repositories, Hash: auth.Hash(secret),
		CreatedAt: now, CreatedBy: creator.String(),
	}
	if n.ExpiresIn > 0 {
		t.ExpiresAt = now.Add(n.ExpiresIn)
	}
	if err := s.store.InsertToken(ctx, t); err != nil {
		return domain.Token{}, "", err
	}
	s.log.InfoContext(ctx, "token created", slog.String("token", t.ID), slog.String("name", t.Name), slog.String("role", t.Role), slog.String("by", t.CreatedBy))
	s.tokens.sync(ctx, s.log)
	return t, secret, nil
}

// ListTokens lists a page of tokens, newest first.
func (s *Service) ListTokens(ctx context.Context, includeRevoked bool, page paging.Page) ([]domain.Token, string, error) {
	tokens, err := s.store.ListTokens(ctx, includeRevoked, page)
	if err != nil {
		return nil, "", err
	}
	tokens, next := paging.Cut(page, tokens, func(t domain.Token) paging.Cursor {
		return paging.Cursor{Time: t.CreatedAt.UnixNano(), ID: t.ID}
	})
	return tokens, next, nil
}

// RevokeToken revokes a token; every service refuses it once the tokens
// bucket says so (at once, or at the next sync).
func (s *Service) RevokeToken(ctx context.Context, id string) (domain.Token, error) {
	if _, err := s.store.Token(ctx, id); err != nil {
		return domain.Token{}, err
	}
	if err := s.store.RevokeToken(ctx, id, time.Now()); err != nil {
		return domain.Token{}, err
	}
	by, _ := auth.FromContext(ctx)
	s.log.InfoContext(ctx, "token revoked", slog.String("token", id), slog.String("by", by.String()))
	s.tokens.sync(ctx, s.log)
	return s.store.Token(ctx, id)
}

// SyncTokens registers the bootstrap admin token, then keeps the tokens
// bucket in line with the database until ctx ends.
func (s *Service) SyncTokens(ctx context.Context) error {
	if s.cfg.AdminTokenFile != "" {
		if err := s.bootstrapAdmin(ctx); err != nil {
			return err
		}
	}
	t := time.NewTicker(tokenSyncInterval)
	defer t.Stop()
	for {
		s.tokens.sync(ctx, s.log)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// bootstrapAdmin registers the admin token in Config.AdminTokenFile, first
// making one there when the file does not exist.
func (s *Service) bootstrapAdmin(ctx context.Context) error {
	path := s.cfg.AdminTokenFile
	secret, created, err := EnsureAdminTokenFile(path)
	if err != nil {
		return err
	}
	if created {
		s.log.Info("made an admin token", slog.String("file", path))
	}
	if _, found, err := s.store.TokenByHash(ctx, auth.Hash(secret)); err != nil || found {
		return err
	}
	err = s.store.InsertToken(ctx, domain.Token{
		ID: auth.TokenID(secret), Name: "admin", Role: auth.RoleName(authv1.Role_ROLE_ADMIN), Hash: auth.Hash(secret),
		CreatedAt: time.Now(), CreatedBy: "admin-token-file " + path,
	})
	if errors.Is(err, errTokenExists) {
		return fmt.Errorf("admin-token-file %s: a token with its id exists with another secret", path)
	}
	return err
}

// EnsureAdminTokenFile reads the admin token's secret from path, first
// making a token and writing it there (0600) when the file does not exist;
// created says whether it did.
func EnsureAdminTokenFile(path string) (secret string, created bool, err error) {
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		_, secret = auth.NewUserToken()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return "", false, fmt.Errorf("admin-token-file: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			return EnsureAdminTokenFile(path) // made meanwhile by another process
		}
		if err != nil {
			return "", false, fmt.Errorf("admin-token-file: %w", err)
		}
		_, werr := f.WriteString(secret + "\n")
		if err := errors.Join(werr, f.Close()); err != nil {
			return "", false, fmt.Errorf("admin-token-file: %w", err)
		}
		return secret, true, nil
	case err != nil:
		return "", false, fmt.Errorf("admin-token-file: %w", err)
	}
	secret = strings.TrimSpace(string(data))
	if err := auth.CheckSecret(secret); err != nil || auth.TokenID(secret) == "" {
		return "", false, fmt.Errorf("admin-token-file %s: it must hold a user token made by Sluice (sluice_...)", path)
	}
	return secret, false, nil
}

// tokenPublisher puts active tokens in the tokens bucket and deletes the
// others, remembering what it published so that it writes only changes.
// It never deletes a key it does not know: tests and operators may put
// tokens there themselves (NATS lets only source and the admin write).
type tokenPublisher struct {
	store *Store
	js    jetstream.JetStream

	mu        sync.Mutex
	kv        jetstream.KeyValue
	published map[string]string // id -> record as published; "" deleted
}

func newTokenPublisher(store *Store, js jetstream.JetStream) *tokenPublisher {
	return &tokenPublisher{store: store, js: js, published: map[string]string{}}
}

// sync publishes what changed; a failure is logged and retried at the
// next sync.
func (p *tokenPublisher) sync(ctx context.Context, log *slog.Logger) {
	if err := p.syncOnce(ctx); err != nil && ctx.Err() == nil {
		log.Warn("publishing tokens failed; trying again shortly", slog.Any("error", err))
	}
}

func (p *tokenPublisher) syncOnce(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.kv == nil {
		kv, err := p.js.KeyValue(ctx, auth.TokensBucket)
		if err != nil {
			return fmt.Errorf("open %s: %w", auth.TokensBucket, err)
		}
		p.kv = kv
	}
	tokens, err := p.store.UnrevokedTokens(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	want := map[string]string{}
	for _, t := range tokens {
		if !t.Active(now) {
			continue
		}
		rec := auth.TokenRecord{ID: t.ID, Name: t.Name, Role: t.Role, Repositories: t.Repositories, Hash: t.Hash}
		if !t.ExpiresAt.IsZero() {
			rec.ExpiresAt = &t.ExpiresAt
		}
		b, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		want[t.ID] = string(b)
	}
	var errs []error
	for id, rec := range want {
		if p.published[id] == rec {
			continue
		}
		if _, err := p.kv.Put(ctx, id, []byte(rec)); err != nil {
			errs = append(errs, fmt.Errorf("put token %s: %w", id, err))
			continue
		}
		p.published[id] = rec
	}
	// Revoked and expired tokens this process published, and every revoked
	// or expired one the database knows (another replica may have
	// published it).
	stale, err := p.inactive(ctx, want)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, id := range stale {
		if v, ok := p.published[id]; ok && v == "" {
			continue
		}
		if err := p.kv.Delete(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("delete token %s: %w", id, err))
			continue
		}
		p.published[id] = ""
	}
	return errors.Join(errs...)
}

// inactive lists the ids of every token that must not be in the bucket.
func (p *tokenPublisher) inactive(ctx context.Context, active map[string]string) ([]string, error) {
	var ids []string
	for id := range p.published {
		if _, ok := active[id]; !ok {
			ids = append(ids, id)
		}
	}
	all, err := p.store.ListTokens(ctx, true, paging.Page{Size: maxTokensListed})
	if err != nil {
		return nil, err
	}
	for _, t := range all {
		if _, ok := active[t.ID]; !ok && !slices.Contains(ids, t.ID) {
			ids = append(ids, t.ID)
		}
	}
	return ids, nil
}

// maxTokensListed bounds the tokens a sync reads back.
const maxTokensListed = 100000
