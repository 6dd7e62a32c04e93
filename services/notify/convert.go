package notify

import (
	"context"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/sluicehq/sluice/platform/paging"
	"github.com/sluicehq/sluice/platform/prototime"
	notifyeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/notify/events/v1"
	notifyv1 "github.com/sluicehq/sluice/proto/gen/sluice/notify/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	"github.com/sluicehq/sluice/services/notify/domain"
)

// Conversions between the domain and the protos: the API's messages and
// the events notify publishes.

// --- the API ---

func subscriptionFromProto(req *notifyv1.CreateSubscriptionRequest) domain.Subscription {
	return domain.Subscription{
		URL:        req.GetUrl(),
		Secret:     req.GetSecret(),
		EventTypes: req.GetEventTypes(),
		Repository: req.GetRepository(),
	}
}

func deadLetterToProto(d domain.DeadLetter) *notifyv1.DeadLetter {
	return &notifyv1.DeadLetter{
		Sequence:    d.Sequence,
		Time:        prototime.Timestamp(d.Time),
		Service:     d.Service,
		Consumer:    d.Consumer,
		Reason:      d.Reason,
		Subject:     d.Subject,
		Stream:      d.Stream,
		EventId:     d.EventID,
		EventType:   d.EventType,
		EventSource: d.EventSource,
		RunId:       d.RunID,
		BodySize:    int64(d.BodySize),
		Body:        d.Body,
	}
}

func subscriptionToProto(s domain.Subscription) *notifyv1.Subscription {
	return &notifyv1.Subscription{
		Id:         s.ID,
		Url:        s.URL,
		EventTypes: s.EventTypes,
		Repository: s.Repository,
		CreateTime: prototime.Timestamp(s.CreatedAt),
	}
}

func deliveryToProto(d domain.Delivery) *notifyv1.Delivery {
	p := &notifyv1.Delivery{
		Id:             d.ID,
		SubscriptionId: d.SubscriptionID,
		EventId:        d.EventID,
		EventType:      d.EventType,
		Subject:        d.Subject,
		Repository:     d.Repository,
		Status:         statusToProto(d.Status),
		CreateTime:     prototime.Timestamp(d.CreatedAt),
		LastError:      d.LastError,
	}
	if d.Status == domain.StatusPending {
		p.NextAttemptTime = prototime.Timestamp(d.NextAttemptAt)
	}
	for _, a := range d.Attempts {
		p.Attempts = append(p.Attempts, &notifyv1.Attempt{
			Number:     int32(a.Number),
			Time:       prototime.Timestamp(a.Time),
			HttpStatus: int32(a.HTTPStatus),
			Error:      a.Error,
			DurationMs: a.Duration.Milliseconds(),
		})
	}
	return p
}

func statusToProto(s domain.Status) notifyv1.DeliveryStatus {
	switch s {
	case domain.StatusPending:
		return notifyv1.DeliveryStatus_DELIVERY_STATUS_PENDING
	case domain.StatusSucceeded:
		return notifyv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED
	case domain.StatusDead:
		return notifyv1.DeliveryStatus_DELIVERY_STATUS_DEAD
	}
	return notifyv1.DeliveryStatus_DELIVERY_STATUS_UNSPECIFIED
}

func watchedEventToProto(w WatchedEvent) *notifyv1.Event {
	return &notifyv1.Event{
		Id:          w.Event.ID,
		Type:        w.Event.Kind.Type,
		Source:      w.Source,
		Subject:     w.Event.SubjectID,
		Time:        prototime.Timestamp(w.Event.Time),
		NatsSubject: w.NATSSubject,
		Data:        string(w.Data),
	}
}

// DefaultDeliveriesLimit is how many deliveries ListDeliveries returns
// when neither page_size nor limit is set.
const DefaultDeliveriesLimit = 100

// deliveriesQuery is what a ListDeliveries request asks for: its filter
// and its page (page_size, else the older limit, else 100).
func deliveriesQuery(ctx context.Context, req *notifyv1.ListDeliveriesRequest) (DeliveryFilter, paging.Page, error) {
	limit := req.GetLimit()
	if limit == 0 {
		limit = DefaultDeliveriesLimit
	}
	page, err := paging.Request(req.GetPageSize(), limit, req.GetPageToken())
	return DeliveryFilter{SubscriptionID: req.GetSubscriptionId(), RunID: req.GetRunId(), Scope: ScopeOf(ctx)}, page, err
}

// --- the events notify publishes ---

func deliverySucceededToProto(d domain.Delivery, a domain.Attempt) *notifyeventsv1.DeliverySucceeded {
	return &notifyeventsv1.DeliverySucceeded{
		DeliveryId:     d.ID,
		SubscriptionId: d.SubscriptionID,
		EventId:        d.EventID,
		EventType:      d.EventType,
		Attempts:       int32(a.Number),
	}
}

func deliveryFailedToProto(d domain.Delivery, a domain.Attempt) *notifyeventsv1.DeliveryFailed {
	return &notifyeventsv1.DeliveryFailed{
		DeliveryId:     d.ID,
		SubscriptionId: d.SubscriptionID,
		EventId:        d.EventID,
		EventType:      d.EventType,
		Attempts:       int32(a.Number),
		LastError:      a.Error,
	}
}

// repositoryRefName is the message events use to name their repository.
func repositoryRefName() protoreflect.FullName {
	return (&sourceeventsv1.RepositoryRef{}).ProtoReflect().Descriptor().FullName()
}

// repositoryOf returns the repository name an event payload carries in its
// top-level `repository` field of type RepositoryRef, or "" when it has
// none. It works on any payload, so new event types need no change here.
func repositoryOf(payload proto.Message) string {
	if payload == nil {
		return ""
	}
	m := payload.ProtoReflect()
	fd := m.Descriptor().Fields().ByName("repository")
	if fd == nil || fd.Cardinality() == protoreflect.Repeated || fd.Message() == nil ||
		fd.Message().FullName() != repositoryRefName() || !m.Has(fd) {
		return ""
	}
	ref := m.Get(fd).Message()
	name := ref.Descriptor().Fields().ByName("name")
	if name == nil || name.Kind() != protoreflect.StringKind {
		return ""
	}
	return ref.Get(name).String()
}
