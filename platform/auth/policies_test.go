package auth_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/sluicehq/sluice/platform/auth"
	authv1 "github.com/sluicehq/sluice/proto/gen/sluice/auth/v1"
)

// serviceWith is a service whose one procedure, Do, has policy p; its
// request has a string field name and a list field names; streaming makes
// its responses a stream.
func serviceWith(t *testing.T, p *authv1.Policy, streaming bool) protoreflect.ServiceDescriptor {
	t.Helper()
	opts := &descriptorpb.MethodOptions{}
	proto.SetExtension(opts, authv1.E_Policy, p)
	str, rep := descriptorpb.FieldDescriptorProto_TYPE_STRING, descriptorpb.FieldDescriptorProto_LABEL_REPEATED
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name:    proto.String("policies_test.proto"),
		Package: proto.String("policiestest"),
		Syntax:  proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("Req"), Field: []*descriptorpb.FieldDescriptorProto{
				{Name: proto.String("name"), Number: proto.Int32(1), Type: &str, JsonName: proto.String("name")},
				{Name: proto.String("names"), Number: proto.Int32(2), Type: &str, Label: &rep, JsonName: proto.String("names")},
			}},
		},
		Service: []*descriptorpb.ServiceDescriptorProto{{Name: proto.String("S"), Method: []*descriptorpb.MethodDescriptorProto{{
			Name: proto.String("Do"), InputType: proto.String(".policiestest.Req"), OutputType: proto.String(".policiestest.Req"),
			ServerStreaming: proto.Bool(streaming), Options: opts,
		}}}},
	}, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	return fd.Services().Get(0)
}

// A server refuses to start with a policy it cannot enforce or audit.
func TestCheckPolicies(t *testing.T) {
	t.Parallel()
	admin := authv1.Role_ROLE_ADMIN
	for _, c := range []struct {
		name      string
		policy    *authv1.Policy
		streaming bool
		want      string // "": accepted
	}{
		{"audited", &authv1.Policy{Role: admin, AuditAction: "thing.do", AuditTargetField: "name", RepositoryField: "name"}, false, ""},
		{"no role", &authv1.Policy{}, false, "names no role"},
		{"audit target not a field", &authv1.Policy{Role: admin, AuditAction: "thing.do", AuditTargetField: "nope"}, false, `audit_target_field "nope" is not a string field`},
		{"audit target a list", &authv1.Policy{Role: admin, AuditAction: "thing.do", AuditTargetField: "names"}, false, `audit_target_field "names" is not a string field`},
		{"repository a list", &authv1.Policy{Role: admin, RepositoryField: "names"}, false, `repository_field "names" is not a string field`},
		{"audit action not dotted", &authv1.Policy{Role: admin, AuditAction: "Delete"}, false, `audit_action "Delete" is not a dotted lower-case name`},
		{"audited stream", &authv1.Policy{Role: admin, AuditAction: "thing.do"}, true, "only unary procedures are audited"},
		{"read stream", &authv1.Policy{Role: admin}, true, ""},
	} {
		err := auth.CheckPolicies(serviceWith(t, c.policy, c.streaming))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}
