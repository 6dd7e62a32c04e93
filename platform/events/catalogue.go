// Package events is Sluice's event plumbing: the catalogue of every event
// type, the CloudEvents/CDEvents envelope, the transactional outbox that
// publishes them, and the idempotent JetStream consumer that receives them.
package events

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/notify/events/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/release/events/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/test/events/v1"
)

// Kind describes one event type: where it is published, what it is called
// in CloudEvents and CDEvents terms, and which payload rides in customData.
type Kind struct {
	// Service is the producing service; it owns the stream.
	Service string
	// Subject is the NATS subject, sluice.<service>.<subject>.<predicate>.
	Subject string
	// Type is the CloudEvents type, which is also the CDEvents type.
	Type string
	// SubjectType is the CDEvents subject type (build, service, ...).
	SubjectType string
	// Doc says when the event is published.
	Doc string
	// payload is a zero value of the payload message.
	payload proto.Message
}

// NewPayload returns a new, empty payload message of this kind.
func (k Kind) NewPayload() proto.Message { return k.payload.ProtoReflect().New().Interface() }

// PayloadName is the payload's full protobuf name.
func (k Kind) PayloadName() protoreflect.FullName {
	return k.payload.ProtoReflect().Descriptor().FullName()
}

// Stream is the JetStream stream the kind is published on.
func (k Kind) Stream() string { return streamOf(k.Service) }

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
// against it by a test.
func Catalogue() []Kind {
	return []Kind{
		{"source", "sluice.source.repository.created", "dev.cdevents.repository.created.0.3.0", "repository",
			"A repository was registered.", &sourceeventsv1.RepositoryCreated{}},
		{"source", "sluice.source.change.received", "dev.cdeventsx.sluice-change.received.0.1.0", "change",
			"A new commit was noticed on a watched branch (poll or webhook).", &sourceeventsv1.ChangeReceived{}},
		{"source", "sluice.source.run.requested", "dev.cdeventsx.sluice-run.requested.0.1.0", "run",
			"A run was requested with a valid pipeline; build takes it from its work queue.", &sourceeventsv1.RunRequested{}},
		{"source", "sluice.source.run.finished", "dev.cdevents.pipelinerun.finished.0.3.0", "pipelineRun",
			"A run reached its end state (succeeded or failed, with the reason).", &sourceeventsv1.RunFinished{}},
		{"build", "sluice.build.build.started", "dev.cdevents.build.started.0.3.0", "build",
			"A build worker took a run (again, with a higher attempt, when it took a run over).", &buildeventsv1.BuildStarted{}},
		{"build", "sluice.build.step.finished", "dev.cdeventsx.sluice-step.finished.0.1.0", "step",
			"A build step ended (succeeded, failed or timed out).", &buildeventsv1.StepFinished{}},
		{"build", "sluice.build.artifact.published", "dev.cdevents.artifact.published.0.3.0", "artifact",
			"An artifact was stored in the artifact object store.", &buildeventsv1.ArtifactPublished{}},
		{"build", "sluice.build.build.finished", "dev.cdevents.build.finished.0.3.0", "build",
			"A build ended; test starts on a successful one.", &buildeventsv1.BuildFinished{}},
		{"test", "sluice.test.testrun.started", "dev.cdevents.testsuiterun.started.0.3.0", "testSuiteRun",
			"Tests started for a successful build.", &testeventsv1.TestRunStarted{}},
		{"test", "sluice.test.testrun.finished", "dev.cdevents.testsuiterun.finished.0.3.0", "testSuiteRun",
			"Tests ended, with passed/failed/skipped counts; release starts on a passed one.", &testeventsv1.TestRunFinished{}},
		{"release", "sluice.release.release.published", "dev.cdeventsx.sluice-release.published.0.1.0", "release",
			"A new version was released, with its changelog and artifacts.", &releaseeventsv1.ReleasePublished{}},
		{"release", "sluice.release.service.deployed", "dev.cdevents.service.deployed.0.3.0", "service",
			"A release was deployed to an environment and verified.", &releaseeventsv1.ServiceDeployed{}},
		{"release", "sluice.release.deployment.failed", "dev.cdeventsx.sluice-deployment.failed.0.1.0", "deployment",
			"A deploy command or its verification failed.", &releaseeventsv1.DeploymentFailed{}},
		{"release", "sluice.release.service.rolledback", "dev.cdevents.service.rolledback.0.3.0", "service",
			"An environment was rolled back to an earlier verified release.", &releaseeventsv1.ServiceRolledBack{}},
		{"release", "sluice.release.run.finished", "dev.cdeventsx.sluice-release.finished.0.1.0", "release",
			"The release stage of a run ended: succeeded, failed or skipped.", &releaseeventsv1.ReleaseFinished{}},
		{"notify", "sluice.notify.delivery.succeeded", "dev.cdeventsx.sluice-delivery.succeeded.0.1.0", "delivery",
			"An event was delivered to a subscriber.", &notifyeventsv1.DeliverySucceeded{}},
		{"notify", "sluice.notify.delivery.failed", "dev.cdeventsx.sluice-delivery.failed.0.1.0", "delivery",
			"Every attempt to deliver an event to a subscriber failed; it was dead-lettered.", &notifyeventsv1.DeliveryFailed{}},
	}
}

// KindOf returns the kind whose payload is msg's type.
func KindOf(msg proto.Message) (Kind, error) {
	name := msg.ProtoReflect().Descriptor().FullName()
	for _, k := range Catalogue() {
		if k.PayloadName() == name {
			return k, nil
		}
	}
	return Kind{}, fmt.Errorf("no event kind has payload %s", name)
}

// KindByType returns the kind with the CloudEvents type t.
func KindByType(t string) (Kind, bool) {
	for _, k := range Catalogue() {
		if k.Type == t {
			return k, true
		}
	}
	return Kind{}, false
}

// DeadLetterSubject is where a service's consumer puts messages it gave up on.
func DeadLetterSubject(service, consumer string) string {
	return "sluice.deadletter." + service + "." + consumer
}
