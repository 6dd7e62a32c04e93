package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/sluicehq/sluice/platform/apierror"
	authv1 "github.com/sluicehq/sluice/proto/gen/sluice/auth/v1"
)

// Authenticator says whose a secret is (the Verifier).
type Authenticator interface {
	Authenticate(secret string) (Identity, error)
}

// Guard is the server interceptor that enforces every procedure's policy:
// it authenticates the request's bearer secret, checks the role or service
// the policy asks for and the repository the request names, and puts the
// identity in the handler's context. Errors are apierror kinds, which the
// apierror interceptor outside it maps to Connect codes.
type Guard struct {
	authn Authenticator
	log   *slog.Logger
	// policies caches each procedure's policy (its descriptor's options
	// are read once).
	policies sync.Map // protoreflect.MethodDescriptor -> *authv1.Policy
}

var _ connect.Interceptor = (*Guard)(nil)

// NewGuard makes the interceptor.
func NewGuard(authn Authenticator, log *slog.Logger) *Guard { return &Guard{authn: authn, log: log} }

// PolicyOf is the policy a procedure's proto declares, nil when none.
func PolicyOf(md protoreflect.MethodDescriptor) *authv1.Policy {
	if md == nil || !proto.HasExtension(md.Options(), authv1.E_Policy) {
		return nil
	}
	p, _ := proto.GetExtension(md.Options(), authv1.E_Policy).(*authv1.Policy)
	return p
}

// auditAction is what an audit_action looks like (sluice.audit.v1.AuditEntry
// says the same).
var auditAction = regexp.MustCompile(`^[a-z]+(\.[a-z]+)+$`)

// CheckPolicies refuses a service whose procedures lack a policy or name a
// repository field their request does not have; servers call it for each
// service they mount, so such a mistake stops the process at start.
func CheckPolicies(sd protoreflect.ServiceDescriptor) error {
	var errs []error
	methods := sd.Methods()
	for i := range methods.Len() {
		md := methods.Get(i)
		p := PolicyOf(md)
		if p == nil {
			errs = append(errs, fmt.Errorf("%s has no (sluice.auth.v1.policy) option", md.FullName()))
			continue
		}
		switch {
		case p.GetServicesOnly() && len(p.GetServices()) == 0:
			errs = append(errs, fmt.Errorf("%s: its policy is services_only but names no service", md.FullName()))
		case p.GetServicesOnly() && p.GetRole() != authv1.Role_ROLE_UNSPECIFIED:
			errs = append(errs, fmt.Errorf("%s: its policy is services_only, so it must name no role", md.FullName()))
		case !p.GetServicesOnly() && p.GetRole() == authv1.Role_ROLE_UNSPECIFIED:
			errs = append(errs, fmt.Errorf("%s: its policy names no role", md.FullName()))
		}
		for _, field := range [][2]string{{"repository_field", p.GetRepositoryField()}, {"audit_target_field", p.GetAuditTargetField()}} {
			what, f := field[0], field[1]
			if f == "" {
				continue
			}
			fd := md.Input().Fields().ByName(protoreflect.Name(f))
			if fd == nil || fd.Kind() != protoreflect.StringKind || fd.IsList() {
				errs = append(errs, fmt.Errorf("%s: %s %q is not a string field of %s", md.FullName(), what, f, md.Input().FullName()))
			}
		}
		if a := p.GetAuditAction(); a != "" && !auditAction.MatchString(a) {
			errs = append(errs, fmt.Errorf("%s: audit_action %q is not a dotted lower-case name like run.trigger", md.FullName(), a))
		}
		if p.GetAuditAction() != "" && (md.IsStreamingClient() || md.IsStreamingServer()) {
			errs = append(errs, fmt.Errorf("%s: only unary procedures are audited; a streaming one must not change state", md.FullName()))
		}
	}
	return errors.Join(errs...)
}

func methodOf(spec connect.Spec) protoreflect.MethodDescriptor {
	md, _ := spec.Schema.(protoreflect.MethodDescriptor)
	return md
}

// admit authenticates header's credential and checks the policy's role or
// service; the repository comes later, with the request message. It tells
// an observer on ctx (ObserveIdentity) whom the credential is, even when
// it then refuses the call.
func (g *Guard) admit(ctx context.Context, spec connect.Spec, authorization string) (Identity, *authv1.Policy, error) {
	md := methodOf(spec)
	var policy *authv1.Policy
	if cached, ok := g.policies.Load(md); ok {
		policy, _ = cached.(*authv1.Policy)
	} else if policy = PolicyOf(md); policy != nil {
		g.policies.Store(md, policy)
	}
	if policy == nil {
		// CheckPolicies keeps this from happening in a started server.
		return Identity{}, nil, fmt.Errorf("%s has no authorization policy, so nobody may call it: %w", spec.Procedure, apierror.ErrPermissionDenied)
	}
	scheme, secret, ok := strings.Cut(authorization, " ")
	if authorization == "" {
		return Identity{}, nil, fmt.Errorf("%s needs a token: send `Authorization: Bearer <token>` (the CLI takes SLUICE_TOKEN or `sluice login`): %w", spec.Procedure, apierror.ErrUnauthenticated)
	}
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(secret) == "" {
		return Identity{}, nil, fmt.Errorf("the Authorization header must be `Bearer <token>`: %w", apierror.ErrUnauthenticated)
	}
	id, err := g.authn.Authenticate(strings.TrimSpace(secret))
	if err != nil {
		return Identity{}, nil, err
	}
	if o, ok := ctx.Value(observerKey{}).(*observer); ok {
		o.id, o.ok = id, true
	}
	switch id.Kind {
	case KindService:
		if !slices.Contains(policy.GetServices(), id.Name) {
			return Identity{}, nil, fmt.Errorf("%s may not call %s: %w", id, spec.Procedure, apierror.ErrPermissionDenied)
		}
	default:
		if policy.GetServicesOnly() {
			return Identity{}, nil, fmt.Errorf("%s is called only by Sluice services (%s), not with a user's token: %w", spec.Procedure, strings.Join(policy.GetServices(), ", "), apierror.ErrPermissionDenied)
		}
		if id.Role < policy.GetRole() {
			return Identity{}, nil, fmt.Errorf("%s needs the %s role; %s is %s: %w", spec.Procedure, RoleName(policy.GetRole()), id, RoleName(id.Role), apierror.ErrPermissionDenied)
		}
	}
	return id, policy, nil
}

// checkRequest checks the repository the request names against a limited
// identity.
func checkRequest(procedure string, id Identity, policy *authv1.Policy, msg any) error {
	if !id.Limited() {
		return nil
	}
	field := policy.GetRepositoryField()
	if field == "" {
		if policy.GetRepositoryChecked() {
			return nil
		}
		return fmt.Errorf("%s needs a token for every repository; %s is limited to %s: %w", procedure, id, strings.Join(id.Repositories, ", "), apierror.ErrPermissionDenied)
	}
	m, ok := msg.(proto.Message)
	if !ok {
		return fmt.Errorf("%s: request is not a proto message: %w", procedure, apierror.ErrPermissionDenied)
	}
	r := m.ProtoReflect()
	repo := r.Get(r.Descriptor().Fields().ByName(protoreflect.Name(field))).String()
	if repo == "" {
		if policy.GetRepositoryChecked() {
			return nil
		}
		return fmt.Errorf("%s is limited to %s: name the repository (%s): %w", id, strings.Join(id.Repositories, ", "), field, apierror.ErrPermissionDenied)
	}
	if !id.AllowsRepository(repo) {
		return fmt.Errorf("%s is limited to %s, not %q: %w", id, strings.Join(id.Repositories, ", "), repo, apierror.ErrPermissionDenied)
	}
	return nil
}

// WrapUnary checks unary calls.
func (g *Guard) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		id, policy, err := g.admit(ctx, req.Spec(), req.Header().Get("Authorization"))
		if err != nil {
			return nil, err
		}
		if err := checkRequest(req.Spec().Procedure, id, policy, req.Any()); err != nil {
			return nil, err
		}
		return next(WithIdentity(ctx, id), req)
	}
}

// WrapStreamingClient leaves clients alone.
func (g *Guard) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler checks streaming calls: the credential before the
// handler runs, the repository as the request message arrives.
func (g *Guard) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		id, policy, err := g.admit(ctx, conn.Spec(), conn.RequestHeader().Get("Authorization"))
		if err != nil {
			return err
		}
		return next(WithIdentity(ctx, id), &guardedConn{StreamingHandlerConn: conn, id: id, policy: policy})
	}
}

type guardedConn struct {
	connect.StreamingHandlerConn
	id     Identity
	policy *authv1.Policy
}

func (c *guardedConn) Receive(msg any) error {
	if err := c.StreamingHandlerConn.Receive(msg); err != nil {
		return err
	}
	return checkRequest(c.Spec().Procedure, c.id, c.policy, msg)
}
