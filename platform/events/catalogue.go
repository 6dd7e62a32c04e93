// Package events is Sluice's event plumbing: the catalogue of every event
// type, the CloudEvents/CDEvents envelope, the transactional outbox that
// publishes them, and the idempotent JetStream consumer that receives them.
package events

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	auditv1 "github.com/sluicehq/sluice/proto/gen/sluice/audit/v1"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	notifyeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/notify/events/v1"
	releaseeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/release/events/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	testeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/events/v1"
)

// Kind describes one event type: where it is published, what it is called
// in CloudEvents and CDEvents terms, which payload rides in customData, and
// how the CDEvents subject content is derived from that payload.
type Kind struct {
	// Service is the producing service; it owns the stream.
	Service string
	// Subject is the NATS subject, sluice.<service>.<subject>.<predicate>.
	Subject string
	// Type is the CloudEvents type, which is also the CDEvents type: a
	// standard dev.cdevents.* type of CDEvents v0.5.1 where CDEvents has one,
	// else a custom dev.cdeventsx.sluice-<subject>.<predicate>.<version>.
	Type string
	// Former are types this kind was published under before; Decode still
	// accepts them, so events published before an upgrade are handled.
	Former []string
	// Doc says when the event is published.
	Doc string
	// payload is a zero value of the payload message.
	payload proto.Message
	// content derives the CDEvents subject content from a payload; nil for
	// an empty content.
	content func(proto.Message) (map[string]any, error)
	// stream, when set, is the stream the kind is published on instead of
	// its service's (audit entries).
	stream string
	// cut are the payload's free-text fields New may cut to keep an event
	// within MaxBody (CutFields).
	cut []cutField
}

// NewPayload returns a new, empty payload message of this kind.
func (k Kind) NewPayload() proto.Message { return k.payload.ProtoReflect().New().Interface() }

// PayloadName is the payload's full protobuf name.
func (k Kind) PayloadName() protoreflect.FullName {
	return k.payload.ProtoReflect().Descriptor().FullName()
}

// Stream is the JetStream stream the kind is published on.
func (k Kind) Stream() string {
	if k.stream != "" {
		return k.stream
	}
	return streamOf(k.Service)
}

// Standard reports whether the type is a standard CDEvents type (not a
// custom dev.cdeventsx one).
func (k Kind) Standard() bool { return strings.HasPrefix(k.Type, "dev.cdevents.") }

// Content is the CDEvents subject content of an event of this kind whose
// payload is payload. It fails when the payload lacks what the CDEvents
// schema of the type requires.
func (k Kind) Content(payload proto.Message) (map[string]any, error) {
	if k.content == nil {
		return map[string]any{}, nil
	}
	c, err := k.content(payload)
	if err != nil {
		return nil, fmt.Errorf("%s subject content: %w", k.Type, err)
	}
	return c, nil
}

func streamOf(service string) string {
	switch service {
	case "source":
		return "SOURCE"
	case "build":
		return "BUILD"
	case "test":
		return "TEST"
	case "release":
		return "RELEASE"
	case "notify":
		return "NOTIFY"
	}
	return ""
}

// Catalogue lists every event Sluice publishes. docs/events.md is checked
// against it by a test, and every kind's CDEvent against the CDEvents
// schema of its type.
func Catalogue() []Kind { return slices.Clone(catalogue().kinds) }

// index is the catalogue with its lookups, built once: New and Decode look
// a kind up for every event.
type index struct {
	kinds     []Kind
	byPayload map[protoreflect.FullName]Kind
	byType    map[string]Kind // current types
	bySubject map[string]Kind
	byFormer  map[string]Kind // types a kind had before
}

var catalogue = sync.OnceValue(func() index {
	ix := index{kinds: kinds(), byPayload: map[protoreflect.FullName]Kind{}, byType: map[string]Kind{}, bySubject: map[string]Kind{}, byFormer: map[string]Kind{}}
	for _, k := range ix.kinds {
		k.checkCutFields()
		ix.byPayload[k.PayloadName()] = k
		ix.byType[k.Type] = k
		ix.bySubject[k.Subject] = k
		for _, f := range k.Former {
			ix.byFormer[f] = k
		}
	}
	return ix
})

// deploymentText is the free text of a deployment in a release event.
var deploymentText = []cutField{{path: "deployment.reason"}, {path: "deployment.last_log_lines", last: true}}

func kinds() []Kind {
	return []Kind{
		{Service: "source", Subject: "sluice.source.repository.created", Type: "dev.cdevents.repository.created.0.3.0",
			Doc: "A repository was registered.", payload: &sourceeventsv1.RepositoryCreated{}, content: contentOf(repositoryCreated)},
		{Service: "source", Subject: "sluice.source.change.received", Type: "dev.cdeventsx.sluice-change.received.0.1.0",
			Doc: "A new commit was noticed on a watched branch (poll or webhook).", payload: &sourceeventsv1.ChangeReceived{}},
		{Service: "source", Subject: "sluice.source.run.requested", Type: "dev.cdevents.pipelinerun.queued.0.3.0",
			Former: []string{"dev.cdeventsx.sluice-run.requested.0.1.0"},
			Doc:    "A run with a valid pipeline was admitted (its concurrency group and the limits of active runs let it start); build takes it from its work queue.", payload: &sourceeventsv1.RunRequested{},
			content: contentOf(runRequested), cut: []cutField{{path: "commit_message"}}},
		{Service: "source", Subject: "sluice.source.run.started", Type: "dev.cdevents.pipelinerun.started.0.3.0",
			Doc: "A run left the queue: its build started.", payload: &sourceeventsv1.RunStarted{}, content: contentOf(runStarted)},
		{Service: "source", Subject: "sluice.source.run.cancelrequested", Type: "dev.cdeventsx.sluice-run.cancelrequested.0.1.0",
			Doc: "Someone asked for a run to be cancelled; build and test stop its steps, release does not begin.", payload: &sourceeventsv1.RunCancelRequested{}},
		{Service: "source", Subject: "sluice.source.run.finished", Type: "dev.cdevents.pipelinerun.finished.0.3.0",
			Doc: "A run reached its end state (succeeded or failed, with the reason).", payload: &sourceeventsv1.RunFinished{},
			content: contentOf(runFinished), cut: []cutField{{path: "failure_reason"}}},
		{Service: "source", Subject: "sluice.source.commitstatus.changed", Type: "dev.cdeventsx.sluice-commitstatus.changed.0.1.0",
			Doc:     "What a run's commit status on its repository's forge should now say (one per run or per stage); notify sets it there, the latest of each context only.",
			payload: &sourceeventsv1.CommitStatusChanged{}, cut: []cutField{{path: "description"}}},
		{Service: "source", Subject: "sluice.source.forgerelease.requested", Type: "dev.cdeventsx.sluice-forgerelease.requested.0.1.0",
			Doc:     "A release of a repository whose forge_releases is on; notify makes the git tag and the forge's release, with the changelog, once.",
			payload: &sourceeventsv1.ForgeReleaseRequested{}, cut: []cutField{{path: "changelog"}}},
		{Service: "build", Subject: "sluice.build.build.started", Type: "dev.cdevents.build.started.0.3.0",
			Doc: "A build worker took a run (again, with a higher attempt, when it took a run over).", payload: &buildeventsv1.BuildStarted{}},
		{Service: "build", Subject: "sluice.build.step.started", Type: "dev.cdevents.taskrun.started.0.3.0",
			Doc: "A build step started.", payload: &buildeventsv1.StepStarted{}, content: contentOf(stepStarted)},
		{Service: "build", Subject: "sluice.build.step.finished", Type: "dev.cdevents.taskrun.finished.0.3.0",
			Former: []string{"dev.cdeventsx.sluice-step.finished.0.1.0"},
			Doc:    "A build step ended (succeeded, failed or timed out).", payload: &buildeventsv1.StepFinished{}, content: contentOf(stepFinished)},
		{Service: "build", Subject: "sluice.build.artifact.published", Type: "dev.cdevents.artifact.published.0.3.0",
			Doc: "An artifact was stored in the artifact object store.", payload: &buildeventsv1.ArtifactPublished{}},
		{Service: "build", Subject: "sluice.build.build.finished", Type: "dev.cdevents.build.finished.0.3.0",
			Doc: "A build ended; test starts on a successful one.", payload: &buildeventsv1.BuildFinished{},
			cut: []cutField{{path: "failure_reason"}, {path: "last_log_lines", last: true}}},
		{Service: "test", Subject: "sluice.test.testrun.started", Type: "dev.cdevents.testsuiterun.started.0.3.0",
			Doc: "Tests started for a successful build.", payload: &testeventsv1.TestRunStarted{}, content: contentOf(testRunStarted)},
		{Service: "test", Subject: "sluice.test.testcase.finished", Type: "dev.cdevents.testcaserun.finished.0.3.0",
			Doc: "A test case passed or failed (published when its test run ends, for a bounded number of cases).", payload: &testeventsv1.TestCaseFinished{},
			content: contentOf(testCaseFinished)},
		{Service: "test", Subject: "sluice.test.testcase.skipped", Type: "dev.cdevents.testcaserun.skipped.0.2.0",
			Doc: "A test case was skipped (published when its test run ends, for a bounded number of cases).", payload: &testeventsv1.TestCaseSkipped{},
			content: contentOf(testCaseSkipped)},
		{Service: "test", Subject: "sluice.test.testrun.finished", Type: "dev.cdevents.testsuiterun.finished.0.3.0",
			Doc: "Tests ended, with passed/failed/skipped counts; release starts on a passed one.", payload: &testeventsv1.TestRunFinished{},
			content: contentOf(testRunFinished),
			cut:     []cutField{{path: "failure_reason"}, {path: "last_log_lines", last: true}, {path: "failed_cases"}}},
		{Service: "release", Subject: "sluice.release.release.published", Type: "dev.cdeventsx.sluice-release.published.0.1.0",
			Doc: "A new version was released, with its changelog and artifacts.", payload: &releaseeventsv1.ReleasePublished{},
			cut: []cutField{{path: "release.changelog"}}},
		{Service: "release", Subject: "sluice.release.service.deployed", Type: "dev.cdevents.service.deployed.0.3.0",
			Doc: "A release was deployed to an environment and verified.", payload: &releaseeventsv1.ServiceDeployed{},
			content: contentOf(serviceDeployed), cut: deploymentText},
		{Service: "release", Subject: "sluice.release.deployment.failed", Type: "dev.cdeventsx.sluice-deployment.failed.0.1.0",
			Doc: "A deploy command or its verification failed.", payload: &releaseeventsv1.DeploymentFailed{}, cut: deploymentText},
		{Service: "release", Subject: "sluice.release.service.rolledback", Type: "dev.cdevents.service.rolledback.0.3.0",
			Doc: "An environment was rolled back to an earlier verified release.", payload: &releaseeventsv1.ServiceRolledBack{},
			content: contentOf(serviceRolledBack), cut: append([]cutField{{path: "reason"}}, deploymentText...)},
		{Service: "release", Subject: "sluice.release.run.finished", Type: "dev.cdeventsx.sluice-release.finished.0.1.0",
			Doc: "The release stage of a run ended: succeeded, failed or skipped.", payload: &releaseeventsv1.ReleaseFinished{},
			cut: []cutField{{path: "reason"}}},
		{Service: "notify", Subject: "sluice.notify.delivery.succeeded", Type: "dev.cdeventsx.sluice-delivery.succeeded.0.1.0",
			Doc: "An event was delivered to a subscriber.", payload: &notifyeventsv1.DeliverySucceeded{}},
		{Service: "notify", Subject: "sluice.notify.delivery.failed", Type: "dev.cdeventsx.sluice-delivery.failed.0.1.0",
			Doc: "Every attempt to deliver an event to a subscriber failed; it was dead-lettered.", payload: &notifyeventsv1.DeliveryFailed{},
			cut: []cutField{{path: "last_error"}}},
	}
}

// KindOf returns the kind whose payload is msg's type.
func KindOf(msg proto.Message) (Kind, error) {
	name := msg.ProtoReflect().Descriptor().FullName()
	if k, ok := catalogue().byPayload[name]; ok {
		return k, nil
	}
	return Kind{}, fmt.Errorf("no event kind has payload %s", name)
}

// KindByType returns the kind with the CloudEvents type t.
func KindByType(t string) (Kind, bool) {
	k, ok := catalogue().byType[t]
	return k, ok
}

// kindByAnyType is KindByType that also knows the kinds' former types.
func kindByAnyType(t string) (Kind, bool) {
	if k, ok := KindByType(t); ok {
		return k, true
	}
	k, ok := catalogue().byFormer[t]
	return k, ok
}

// AuditType is the CloudEvents type of audit entries.
const AuditType = "dev.cdeventsx.sluice-audit.recorded.0.1.0"

// AuditSubjectPrefix starts the subject of every audit entry:
// sluice.audit.<service>, in the AUDIT stream every service shares. NATS
// lets each service publish only under its own name.
const AuditSubjectPrefix = "sluice.audit."

// AuditKind is the kind of the audit entries service publishes
// (platform/audit). It is not in the Catalogue: an audit entry is not a
// pipeline event, and only source's audit log reads them; WatchEvents and
// subscriptions never see them.
func AuditKind(service string) Kind {
	return Kind{
		Service: service, Subject: AuditSubjectPrefix + service, Type: AuditType,
		Doc:     "A call of a procedure that changes state was handled or refused (the audit log).",
		payload: &auditv1.AuditEntry{}, stream: "AUDIT",
	}
}

// NewAudit makes the event of service's audit entry; its id is the
// entry's, so an entry enqueued twice is one event.
func NewAudit(service string, entry *auditv1.AuditEntry) (Event, error) {
	ev, err := newOfKind(AuditKind(service), entry, entry.GetAction(), "")
	if err != nil {
		return Event{}, err
	}
	ev.ID = entry.GetId()
	ev.Time = entry.GetTime().AsTime()
	return ev, nil
}

// kindOfSubject is the kind published on subject (an audit kind for
// sluice.audit.<service>).
func kindOfSubject(subject string) (Kind, bool) {
	if service, ok := strings.CutPrefix(subject, AuditSubjectPrefix); ok && service != "" {
		return AuditKind(service), true
	}
	k, ok := catalogue().bySubject[subject]
	return k, ok
}

// serviceOfSubject is the service a subject sluice.<service>.… names, or
// "unknown".
func serviceOfSubject(subject string) string {
	if tokens := strings.Split(subject, "."); len(tokens) > 2 && tokens[0] == "sluice" {
		return tokens[1]
	}
	return "unknown"
}

// DeadLetterSubject is where a service's consumer puts messages it gave up on.
func DeadLetterSubject(service, consumer string) string {
	return "sluice.deadletter." + service + "." + consumer
}
