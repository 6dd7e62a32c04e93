package notify

import (
	"context"
	"log/slog"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/platform/prototime"
	"github.com/sluicehq/sluice/platform/rpcserver"
	notifyv1 "github.com/sluicehq/sluice/proto/gen/sluice/notify/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/notify/v1/notifyv1connect"
	"github.com/sluicehq/sluice/services/notify/domain"
)

// Handler is the NotifyService Connect handler.
type Handler struct {
	svc *Service
}

var _ notifyv1connect.NotifyServiceHandler = (*Handler)(nil)

// NewHandler makes the handler.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

// NewRoute mounts h on the server with validation and error mapping.
func NewRoute(h *Handler, log *slog.Logger) rpcserver.Route {
	path, handler := notifyv1connect.NewNotifyServiceHandler(h, rpcserver.HandlerOptions(log)...)
	return rpcserver.Route{Path: path, Handler: handler, Service: notifyv1connect.NotifyServiceName}
}

// CreateSubscription implements NotifyService.
func (h *Handler) CreateSubscription(ctx context.Context, req *notifyv1.CreateSubscriptionRequest) (*notifyv1.CreateSubscriptionResponse, error) {
	sub, err := h.svc.CreateSubscription(ctx, domain.Subscription{
		URL:        req.GetUrl(),
		Secret:     req.GetSecret(),
		EventTypes: req.GetEventTypes(),
		Repository: req.GetRepository(),
	})
	if err != nil {
		return nil, err
	}
	return &notifyv1.CreateSubscriptionResponse{Subscription: subscriptionToProto(sub)}, nil
}

// ListSubscriptions implements NotifyService.
func (h *Handler) ListSubscriptions(ctx context.Context, _ *notifyv1.ListSubscriptionsRequest) (*notifyv1.ListSubscriptionsResponse, error) {
	subs, err := h.svc.ListSubscriptions(ctx)
	if err != nil {
		return nil, err
	}
	res := &notifyv1.ListSubscriptionsResponse{}
	for _, sub := range subs {
		res.Subscriptions = append(res.Subscriptions, subscriptionToProto(sub))
	}
	return res, nil
}

// DeleteSubscription implements NotifyService.
func (h *Handler) DeleteSubscription(ctx context.Context, req *notifyv1.DeleteSubscriptionRequest) (*notifyv1.DeleteSubscriptionResponse, error) {
	if err := h.svc.DeleteSubscription(ctx, req.GetId()); err != nil {
		return nil, err
	}
	return &notifyv1.DeleteSubscriptionResponse{}, nil
}

// ListDeliveries implements NotifyService.
func (h *Handler) ListDeliveries(ctx context.Context, req *notifyv1.ListDeliveriesRequest) (*notifyv1.ListDeliveriesResponse, error) {
	list, err := h.svc.ListDeliveries(ctx, req.GetSubscriptionId(), int(req.GetLimit()))
	if err != nil {
		return nil, err
	}
	res := &notifyv1.ListDeliveriesResponse{}
	for _, d := range list {
		res.Deliveries = append(res.Deliveries, deliveryToProto(d))
	}
	return res, nil
}

// WatchEvents implements NotifyService.
func (h *Handler) WatchEvents(ctx context.Context, req *notifyv1.WatchEventsRequest, stream *connect.ServerStream[notifyv1.WatchEventsResponse]) error {
	// Sending nothing sends the response headers: the client's call returns
	// once the watch is in place.
	watching := func() error { return stream.Send(nil) }
	return h.svc.Watch(ctx, req.GetFilter(), watching, func(w WatchedEvent) error {
		return stream.Send(&notifyv1.WatchEventsResponse{Event: &notifyv1.Event{
			Id:          w.Event.ID,
			Type:        w.Event.Kind.Type,
			Source:      w.Source,
			Subject:     w.Event.SubjectID,
			Time:        prototime.Timestamp(w.Event.Time),
			NatsSubject: w.NATSSubject,
			Data:        string(w.Data),
		}})
	})
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
