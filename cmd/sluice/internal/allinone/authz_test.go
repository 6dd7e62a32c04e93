package allinone_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/sluicehq/sluice/platform/auth"
	auditv1 "github.com/sluicehq/sluice/proto/gen/sluice/audit/v1"
	authv1 "github.com/sluicehq/sluice/proto/gen/sluice/auth/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
)

// outcome is what the authorization layer made of a call: refused as
// unauthenticated, refused as not permitted, or let through to the
// handler (which may still refuse the request for other reasons).
type outcome string

const (
	unauthenticated outcome = "unauthenticated"
	denied          outcome = "permission_denied"
	admitted        outcome = "admitted"
)

// caller is one identity of the matrix.
type caller struct {
	name   string
	secret string
	// expect says what the policy must make of this caller's call.
	expect func(p *authv1.Policy, req protoreflect.Message) outcome
}

func byRole(role authv1.Role) func(*authv1.Policy, protoreflect.Message) outcome {
	return func(p *authv1.Policy, _ protoreflect.Message) outcome {
		if !p.GetServicesOnly() && role >= p.GetRole() {
			return admitted
		}
		return denied
	}
}

// limitedTo is an admin token limited to repository: it may call what
// names that repository, and what its handler checks against it.
func limitedTo(repository, mine string) func(*authv1.Policy, protoreflect.Message) outcome {
	return func(p *authv1.Policy, req protoreflect.Message) outcome {
		if p.GetServicesOnly() {
			return denied
		}
		named := ""
		if f := p.GetRepositoryField(); f != "" {
			named = req.Get(req.Descriptor().Fields().ByName(protoreflect.Name(f))).String()
		}
		switch {
		case named != "":
			if named == repository {
				return admitted
			}
			return denied
		case !p.GetRepositoryChecked():
			return denied
		case req.Descriptor().FullName() == "sluice.notify.v1.ListDeliveriesRequest":
			// Deliveries carry their own repository, and the list shows
			// only the caller's; a run id only narrows it.
			return admitted
		case req.Descriptor().Fields().ByName("run_id") != nil:
			// The request names a run of mine.
			if repository == mine {
				return admitted
			}
			return denied
		default:
			return admitted // a list the handler filters
		}
	}
}

// TestAuthorizationMatrix calls every procedure of every Sluice service,
// found in the generated descriptors (so a new procedure is in it at
// once), as every kind of caller, and checks what its policy promises:
// anonymous, revoked and expired tokens are unauthenticated; each role
// may call what its policy's role allows; a token limited to another
// repository is refused what names or loads a repository of this one; a
// service identity may call only what its policy names it for.
func TestAuthorizationMatrix(t *testing.T) {
	dir := t.TempDir()
	p := startPlatform(t, filepath.Join(dir, "data"))
	ctx := t.Context()
	admin := sourcev1connect.NewSourceServiceClient(p.Client(), p.URL)
	access := sourcev1connect.NewAccessServiceClient(p.Client(), p.URL)

	for _, name := range []string{"mine", "other"} {
		repo := newScenarioRepo(t, filepath.Join(dir, name))
		if _, err := admin.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: repo.Dir, Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	run, err := admin.TriggerRun(ctx, &sourcev1.TriggerRunRequest{Repository: "mine"})
	if err != nil {
		t.Fatal(err)
	}
	runID := run.GetRun().GetId()
	waitRun(ctx, t, admin, runID)

	token := func(name string, role authv1.Role, repos ...string) string {
		res, err := access.CreateToken(ctx, &sourcev1.CreateTokenRequest{Name: name, Role: role, Repositories: repos})
		if err != nil {
			t.Fatalf("create token %s: %v", name, err)
		}
		return res.GetSecret()
	}
	revoked := token("revoked", authv1.Role_ROLE_ADMIN)
	if _, err := access.RevokeToken(ctx, &sourcev1.RevokeTokenRequest{Id: auth.TokenID(revoked)}); err != nil {
		t.Fatal(err)
	}
	// An expired token and a service's identity, put in the buckets as
	// source and the release service would put them.
	expired := putRecord(t, p.NATSURL(), auth.TokensBucket, func(secret string) (string, any) {
		past := time.Now().Add(-time.Minute)
		return auth.TokenID(secret), auth.TokenRecord{ID: auth.TokenID(secret), Name: "expired", Role: "admin", Hash: auth.Hash(secret), ExpiresAt: &past}
	})
	release := putRecord(t, p.NATSURL(), auth.ServicesBucket, func(secret string) (string, any) {
		return "release.matrix", auth.ServiceRecord{Hash: auth.Hash(secret)}
	})

	always := func(o outcome) func(*authv1.Policy, protoreflect.Message) outcome {
		return func(*authv1.Policy, protoreflect.Message) outcome { return o }
	}
	callers := []caller{
		{"anonymous", "", always(unauthenticated)},
		{"revoked", revoked, always(unauthenticated)},
		{"expired", expired, always(unauthenticated)},
		{"not a token", "sluice_aaaaaaaaaaaaaaaa_not-a-secret-sluice-issued", always(unauthenticated)},
		{"viewer", token("viewer", authv1.Role_ROLE_VIEWER), byRole(authv1.Role_ROLE_VIEWER)},
		{"operator", token("operator", authv1.Role_ROLE_OPERATOR), byRole(authv1.Role_ROLE_OPERATOR)},
		{"admin", token("admin", authv1.Role_ROLE_ADMIN), byRole(authv1.Role_ROLE_ADMIN)},
		{"limited to mine", token("mine-only", authv1.Role_ROLE_ADMIN, "mine"), limitedTo("mine", "mine")},
		{"limited to other", token("other-only", authv1.Role_ROLE_ADMIN, "other"), limitedTo("other", "mine")},
		{"service release", release, func(p *authv1.Policy, _ protoreflect.Message) outcome {
			if slices.Contains(p.GetServices(), "release") {
				return admitted
			}
			return denied
		}},
	}

	procedures := 0
	var audited []protoreflect.MethodDescriptor
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if !strings.HasPrefix(string(fd.Package()), "sluice.") {
			return true
		}
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				md := sd.Methods().Get(j)
				procedures++
				policy := auth.PolicyOf(md)
				if policy == nil {
					t.Errorf("%s has no (sluice.auth.v1.policy)", md.FullName())
					continue
				}
				switch {
				case policy.GetAuditAction() == "" && changesState(md):
					t.Errorf("%s looks like it changes state, and its policy has no audit_action: give it one and call audit.Record where it commits (platform/audit)", md.FullName())
				case policy.GetAuditAction() != "" && !changesState(md):
					t.Errorf("%s only reads, and its policy has an audit_action", md.FullName())
				case policy.GetAuditAction() != "":
					audited = append(audited, md)
				}
				req := requestFor(md, runID)
				for _, c := range callers {
					want := c.expect(policy, req)
					got := eventually(want, func() outcome { return call(ctx, p.URL, md, req, c.secret) })
					if got != want {
						t.Errorf("%s as %s: %s, want %s", md.FullName(), c.name, got, want)
					}
				}
			}
		}
		return true
	})
	if procedures < 25 {
		t.Fatalf("only %d procedures found in the descriptors", procedures)
	}
	t.Logf("%d procedures x %d callers", procedures, len(callers))

	// Every call of a procedure that changes state is in the audit log:
	// sluice up's admin triggering the run above, and each audited
	// procedure as called by the matrix (refused as anonymous and as a
	// viewer, and as the admin token however it ended).
	if len(audited) < 9 {
		t.Fatalf("only %d audited procedures in the descriptors", len(audited))
	}
	log := sourcev1connect.NewAuditServiceClient(p.Client(), p.URL)
	upAdmin := auth.TokenID(p.AdminToken)
	tokenOf := func(name string) string {
		i := slices.IndexFunc(callers, func(c caller) bool { return c.name == name })
		return auth.TokenID(callers[i].secret)
	}
	viewer, matrixAdmin := tokenOf("viewer"), tokenOf("admin")
	type want struct {
		what  string
		match func(*auditv1.AuditEntry) bool
	}
	wants := []want{{"sluice up's admin triggering run " + runID, func(e *auditv1.AuditEntry) bool {
		return e.GetAction() == "run.trigger" && e.GetOutcome() == "ok" && e.GetTarget() == runID && e.GetRepository() == "mine" &&
			e.GetActorId() == upAdmin && e.GetActorName() == "admin" && e.GetActorRole() == "admin" && e.GetService() == "source"
	}}}
	for _, md := range audited {
		procedure := "/" + string(md.Parent().FullName()) + "/" + string(md.Name())
		action := auth.PolicyOf(md).GetAuditAction()
		of := func(e *auditv1.AuditEntry) bool { return e.GetProcedure() == procedure && e.GetAction() == action }
		wants = append(wants,
			want{procedure + " refused as anonymous", func(e *auditv1.AuditEntry) bool {
				return of(e) && e.GetOutcome() == "unauthenticated" && e.GetActorKind() == "anonymous"
			}},
			want{procedure + " refused to the viewer", func(e *auditv1.AuditEntry) bool {
				return of(e) && e.GetOutcome() == "permission_denied" && e.GetActorId() == viewer && e.GetActorRole() == "viewer"
			}},
			want{procedure + " called by the admin", func(e *auditv1.AuditEntry) bool { return of(e) && e.GetActorId() == matrixAdmin }},
		)
	}
	var missing []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		entries := auditEntries(ctx, t, log)
		missing = missing[:0]
		for _, w := range wants {
			if !slices.ContainsFunc(entries, w.match) {
				missing = append(missing, w.what)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, m := range missing {
		t.Errorf("the audit log has no entry of %s", m)
	}
}

// changesState says whether md's name is not one of a procedure that only
// reads: a new procedure that changes state (CancelRun) must be audited.
func changesState(md protoreflect.MethodDescriptor) bool {
	for _, verb := range []string{"Get", "List", "Watch", "Tail", "WhoAmI", "Resolve"} {
		if strings.HasPrefix(string(md.Name()), verb) {
			return false
		}
	}
	return true
}

// auditEntries reads the whole audit log, page after page.
func auditEntries(ctx context.Context, t *testing.T, log sourcev1connect.AuditServiceClient) []*auditv1.AuditEntry {
	t.Helper()
	var out []*auditv1.AuditEntry
	req := &sourcev1.ListAuditEntriesRequest{PageSize: 1000}
	for {
		res, err := log.ListAuditEntries(ctx, req)
		if err != nil {
			t.Fatalf("ListAuditEntries: %v", err)
		}
		out = append(out, res.GetEntries()...)
		if req.PageToken = res.GetNextPageToken(); req.PageToken == "" {
			return out
		}
	}
}

// requestFor is a request to md that names the repository "mine" where its
// policy reads one and the run runID where it takes a run; a ref that does
// not exist keeps TriggerRun from starting runs.
// requiredFields are the values requestFor gives the fields a request
// needs to pass validation and reach its handler's repository check.
var requiredFields = map[protoreflect.FullName]map[protoreflect.Name]string{
	"sluice.build.v1.GetArtifactContentRequest": {"name": "app"},
}

func requestFor(md protoreflect.MethodDescriptor, runID string) protoreflect.Message {
	msg := dynamicpb.NewMessage(md.Input())
	fields := md.Input().Fields()
	if f := auth.PolicyOf(md).GetRepositoryField(); f != "" {
		msg.Set(fields.ByName(protoreflect.Name(f)), protoreflect.ValueOfString("mine"))
	}
	if f := fields.ByName("run_id"); f != nil && f.Kind() == protoreflect.StringKind && !f.IsList() {
		msg.Set(f, protoreflect.ValueOfString(runID))
	}
	// Fields a request needs to pass validation, beyond a run id.
	for name, value := range requiredFields[md.Input().FullName()] {
		msg.Set(fields.ByName(name), protoreflect.ValueOfString(value))
	}
	if f := fields.ByName("ref"); f != nil && f.Kind() == protoreflect.StringKind {
		msg.Set(f, protoreflect.ValueOfString("no-such-branch"))
	}
	return msg
}

// eventually calls until the outcome is want, for up to 10 s: a token
// created or revoked a moment ago reaches every service within that.
func eventually(want outcome, call func() outcome) outcome {
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := call()
		if got == want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// call calls md with req as secret ("": no credential) and classifies the
// answer.
func call(ctx context.Context, baseURL string, md protoreflect.MethodDescriptor, req protoreflect.Message, secret string) outcome {
	httpClient := &http.Client{Transport: auth.WithSecret(nil, func() string { return secret })}
	procedure := "/" + string(md.Parent().FullName()) + "/" + string(md.Name())
	client := connect.NewClient[dynamicpb.Message, dynamicpb.Message](httpClient, baseURL+procedure,
		connect.WithSchema(md),
		connect.WithResponseInitializer(func(_ connect.Spec, message any) error {
			m, ok := message.(*dynamicpb.Message)
			if !ok {
				return fmt.Errorf("response is a %T", message)
			}
			*m = *dynamicpb.NewMessage(md.Output())
			return nil
		}))
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	msg, _ := req.Interface().(*dynamicpb.Message)
	var err error
	if md.IsStreamingServer() {
		var stream *connect.ServerStreamForClient[dynamicpb.Message]
		stream, err = client.CallServerStream(ctx, connect.NewRequest(msg))
		if err == nil {
			stream.Receive()
			err = stream.Err()
			_ = stream.Close()
		}
	} else {
		_, err = client.CallUnary(ctx, connect.NewRequest(msg))
	}
	var ce *connect.Error
	switch {
	case errors.As(err, &ce) && ce.Code() == connect.CodeUnauthenticated:
		return unauthenticated
	case errors.As(err, &ce) && ce.Code() == connect.CodePermissionDenied:
		return denied
	default:
		return admitted
	}
}

// putRecord makes a secret and puts the record make returns for it under
// its key in bucket; it returns the secret.
func putRecord(t *testing.T, natsURL, bucket string, make func(secret string) (string, any)) string {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), bucket)
	if err != nil {
		t.Fatal(err)
	}
	_, secret := auth.NewUserToken()
	key, rec := make(secret)
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), key, b); err != nil {
		t.Fatal(err)
	}
	return secret
}
