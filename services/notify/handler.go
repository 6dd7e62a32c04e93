package notify

import (
	"context"
	"log/slog"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/platform/audit"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/paging"
	"github.com/sluicehq/sluice/platform/rpcserver"
	notifyv1 "github.com/sluicehq/sluice/proto/gen/sluice/notify/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/notify/v1/notifyv1connect"
	"github.com/sluicehq/sluice/services/notify/domain"
)

// Handler is the NotifyService Connect handler: request in, Service call,
// response out (converted by convert.go).
type Handler struct {
	svc *Service
}

var _ notifyv1connect.NotifyServiceHandler = (*Handler)(nil)

// NewHandler makes the handler.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

// NewRoute mounts h on the server with validation and error mapping.
func NewRoute(h *Handler, log *slog.Logger, guard *auth.Guard, recorder *audit.Recorder) rpcserver.Route {
	path, handler := notifyv1connect.NewNotifyServiceHandler(h, rpcserver.HandlerOptions(log, guard, recorder)...)
	return rpcserver.Route{Path: path, Handler: handler, Service: notifyv1connect.NotifyServiceName}
}

// CreateSubscription implements NotifyService.
func (h *Handler) CreateSubscription(ctx context.Context, req *notifyv1.CreateSubscriptionRequest) (*notifyv1.CreateSubscriptionResponse, error) {
	sub, err := h.svc.CreateSubscription(ctx, subscriptionFromProto(req))
	if err != nil {
		return nil, err
	}
	return &notifyv1.CreateSubscriptionResponse{Subscription: subscriptionToProto(sub)}, nil
}

// ListSubscriptions implements NotifyService.
func (h *Handler) ListSubscriptions(ctx context.Context, req *notifyv1.ListSubscriptionsRequest) (*notifyv1.ListSubscriptionsResponse, error) {
	page, err := paging.Request(req.GetPageSize(), 0, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	subs, next, err := h.svc.ListSubscriptions(ctx, page)
	if err != nil {
		return nil, err
	}
	res := &notifyv1.ListSubscriptionsResponse{NextPageToken: next}
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
	filter, page, err := deliveriesQuery(ctx, req)
	if err != nil {
		return nil, err
	}
	list, next, err := h.svc.ListDeliveries(ctx, filter, page)
	if err != nil {
		return nil, err
	}
	res := &notifyv1.ListDeliveriesResponse{NextPageToken: next}
	for _, d := range list {
		res.Deliveries = append(res.Deliveries, deliveryToProto(d))
	}
	return res, nil
}

// ListDeadLetters implements NotifyService.
func (h *Handler) ListDeadLetters(ctx context.Context, req *notifyv1.ListDeadLettersRequest) (*notifyv1.ListDeadLettersResponse, error) {
	page, err := paging.Request(req.GetPageSize(), 0, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	filter := domain.DeadLetterFilter{Service: req.GetService(), Consumer: req.GetConsumer()}
	list, next, err := h.svc.ListDeadLetters(ctx, filter, page, req.GetIncludeBody())
	if err != nil {
		return nil, err
	}
	res := &notifyv1.ListDeadLettersResponse{NextPageToken: next}
	for _, d := range list {
		res.DeadLetters = append(res.DeadLetters, deadLetterToProto(d))
	}
	return res, nil
}

// WatchEvents implements NotifyService.
func (h *Handler) WatchEvents(ctx context.Context, req *notifyv1.WatchEventsRequest, stream *connect.ServerStream[notifyv1.WatchEventsResponse]) error {
	// Sending nothing sends the response headers: the client's call returns
	// once the watch is in place.
	watching := func() error { return stream.Send(nil) }
	scope := ScopeOf(ctx)
	return h.svc.Watch(ctx, req.GetFilter(), watching, func(w WatchedEvent) error {
		if !scope.Allows(repositoryOf(w.Event.Payload)) {
			return nil
		}
		return stream.Send(&notifyv1.WatchEventsResponse{Event: watchedEventToProto(w)})
	})
}
