package audit_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/audit"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/rpcserver"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	"github.com/sluicehq/sluice/platform/sqldb"
	auditv1 "github.com/sluicehq/sluice/proto/gen/sluice/audit/v1"
	authv1 "github.com/sluicehq/sluice/proto/gen/sluice/auth/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
)

// tokens is an Authenticator that knows a fixed set of secrets.
type tokens map[string]auth.Identity

func (ts tokens) Authenticate(secret string) (auth.Identity, error) {
	if id, ok := ts[secret]; ok {
		return id, nil
	}
	return auth.Identity{}, apierror.ErrUnauthenticated
}

// revoker answers RevokeToken (audited: token.revoke, target field id) as
// its request's id says, writing a row of its own to show a change.
type revoker struct {
	sourcev1connect.UnimplementedAccessServiceHandler
	db *sqldb.DB
}

var errAfterCommit = errors.New("failed after its change committed")

func (r revoker) RevokeToken(ctx context.Context, req *sourcev1.RevokeTokenRequest) (*sourcev1.RevokeTokenResponse, error) {
	change := func(fail error) error {
		return r.db.InTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO processed_events (consumer, event_id, processed_at) VALUES ('test', $1, 0)`, req.GetId()); err != nil {
				return err
			}
			if err := audit.Record(ctx, tx, audit.Target{ID: "made-" + req.GetId()}); err != nil {
				return err
			}
			return fail
		})
	}
	switch req.GetId() {
	case "commit":
		return &sourcev1.RevokeTokenResponse{}, change(nil)
	case "rollback":
		return nil, change(apierror.ErrNotFound)
	case "commit-then-fail":
		if err := change(nil); err != nil {
			return nil, err
		}
		return nil, errAfterCommit
	case "unchanged":
		audit.Unchanged(ctx, audit.Target{Repository: "app", ID: "as-it-was"})
		return &sourcev1.RevokeTokenResponse{}, nil
	default: // forgets to record
		return &sourcev1.RevokeTokenResponse{}, nil
	}
}

func (revoker) WhoAmI(context.Context, *sourcev1.WhoAmIRequest) (*sourcev1.WhoAmIResponse, error) {
	return &sourcev1.WhoAmIResponse{}, nil
}

// Each call of an audited procedure leaves exactly one entry in the
// outbox, with its actor and how it ended: the handler's, committed with
// its change, or the recorder's when the call failed, was refused, or its
// handler forgot (which is logged as an error). Reads leave none.
func TestOneEntryPerCall(t *testing.T) {
	t.Parallel()
	db := servicekittest.OpenDB(t)
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	admin := auth.Identity{Kind: auth.KindUser, Name: "alice", TokenID: "aaaaaaaaaaaaaaaa", Role: authv1.Role_ROLE_ADMIN}
	viewer := auth.Identity{Kind: auth.KindUser, Name: "bob", TokenID: "bbbbbbbbbbbbbbbb", Role: authv1.Role_ROLE_VIEWER}
	recorder := audit.NewRecorder("source", db, events.NewRelay(db, nil, log), log)
	path, h := sourcev1connect.NewAccessServiceHandler(revoker{db: db},
		rpcserver.HandlerOptions(log, auth.NewGuard(tokens{"admin-secret": admin, "viewer-secret": viewer}, log), recorder)...)
	mux := http.NewServeMux()
	mux.Handle(path, h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	client := func(secret, requestID string) sourcev1connect.AccessServiceClient {
		return sourcev1connect.NewAccessServiceClient(&http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
			r = r.Clone(r.Context())
			if secret != "" {
				r.Header.Set("Authorization", "Bearer "+secret)
			}
			r.Header.Set(audit.RequestIDHeader, requestID)
			return http.DefaultTransport.RoundTrip(r)
		})}, srv.URL)
	}
	ctx := context.Background()
	calls := []struct {
		secret, id string
		code       connect.Code // 0: ok
	}{
		{"admin-secret", "commit", 0},
		{"admin-secret", "rollback", connect.CodeNotFound},
		{"admin-secret", "commit-then-fail", connect.CodeInternal},
		{"admin-secret", "unchanged", 0},
		{"admin-secret", "forgets", 0},
		{"viewer-secret", "denied", connect.CodePermissionDenied},
		{"sluice_cccccccccccccccc_not-known", "anonymous", connect.CodeUnauthenticated},
		{"admin-secret", strings.Repeat("x", 65), connect.CodeInvalidArgument},
	}
	for _, c := range calls {
		_, err := client(c.secret, "req-"+c.id[:min(len(c.id), 20)]).RevokeToken(ctx, &sourcev1.RevokeTokenRequest{Id: c.id})
		if connect.CodeOf(err) != c.code && (c.code != 0 || err != nil) {
			t.Fatalf("RevokeToken(%s): %v, want %v", c.id, err, c.code)
		}
	}
	if _, err := client("admin-secret", "read").WhoAmI(ctx, &sourcev1.WhoAmIRequest{}); err != nil {
		t.Fatal(err)
	}

	entries := outboxEntries(t, db)
	byRequest := map[string][]*auditv1.AuditEntry{}
	for _, e := range entries {
		byRequest[e.GetRequestId()] = append(byRequest[e.GetRequestId()], e)
		if e.GetProcedure() != sourcev1connect.AccessServiceRevokeTokenProcedure || e.GetAction() != "token.revoke" || e.GetService() != "source" {
			t.Errorf("entry %v", e)
		}
	}
	if len(entries) != len(calls) {
		t.Errorf("%d entries for %d audited calls: %v", len(entries), len(calls), entries)
	}
	for _, want := range []struct {
		request, outcome, target, actorID, role, kind string
	}{
		{"req-commit", "ok", "made-commit", admin.TokenID, "admin", audit.ActorUser},
		{"req-rollback", "not_found", "rollback", admin.TokenID, "admin", audit.ActorUser},
		{"req-commit-then-fail", "ok", "made-commit-then-fail", admin.TokenID, "admin", audit.ActorUser},
		{"req-unchanged", "ok", "as-it-was", admin.TokenID, "admin", audit.ActorUser},
		{"req-forgets", "ok", "forgets", admin.TokenID, "admin", audit.ActorUser},
		{"req-denied", "permission_denied", "denied", viewer.TokenID, "viewer", audit.ActorUser},
		{"req-anonymous", "unauthenticated", "anonymous", "cccccccccccccccc", "", audit.ActorAnonymous},
		{"req-" + strings.Repeat("x", 20), "invalid_argument", strings.Repeat("x", 65), admin.TokenID, "admin", audit.ActorUser},
	} {
		got := byRequest[want.request]
		if len(got) != 1 {
			t.Errorf("%s: %d entries, want 1", want.request, len(got))
			continue
		}
		e := got[0]
		if e.GetOutcome() != want.outcome || e.GetTarget() != want.target || e.GetActorId() != want.actorID ||
			e.GetActorRole() != want.role || e.GetActorKind() != want.kind {
			t.Errorf("%s: %v, want outcome %s, target %s, actor %s %s %s", want.request, e, want.outcome, want.target, want.kind, want.actorID, want.role)
		}
		if strings.Contains(e.String(), "secret") {
			t.Errorf("%s: an entry holds a credential: %v", want.request, e)
		}
	}
	if byRequest["req-unchanged"] != nil && byRequest["req-unchanged"][0].GetRepository() != "app" {
		t.Errorf("an unchanged call keeps what its handler named: %v", byRequest["req-unchanged"][0])
	}
	if n := strings.Count(logs.String(), audit.MsgNotRecorded); n != 1 {
		t.Errorf("%d errors logged for a handler that forgot its entry, want 1:\n%s", n, logs.String())
	}
}

// outboxEntries decodes the audit entries waiting in db's outbox.
func outboxEntries(t *testing.T, db *sqldb.DB) []*auditv1.AuditEntry {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `SELECT subject, headers, body FROM outbox ORDER BY created_at`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []*auditv1.AuditEntry
	for rows.Next() {
		var subject, headers, body string
		if err := rows.Scan(&subject, &headers, &body); err != nil {
			t.Fatal(err)
		}
		var h nats.Header
		if err := json.Unmarshal([]byte(headers), &h); err != nil {
			t.Fatal(err)
		}
		ev, err := events.Decode(subject, h, []byte(body))
		if err != nil {
			t.Fatalf("decode %s: %v", subject, err)
		}
		e, ok := ev.Payload.(*auditv1.AuditEntry)
		if !ok || subject != "sluice.audit.source" || ev.ID != e.GetId() {
			t.Fatalf("outbox row on %s carries %T, id %s", subject, ev.Payload, ev.ID)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
