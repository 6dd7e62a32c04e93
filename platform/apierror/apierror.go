// Package apierror holds the error kinds services return from their domain
// and application code, and the one place they become Connect codes: the
// interceptor every handler gets.
package apierror

import (
	"context"
	"errors"
	"log/slog"

	"connectrpc.com/connect"
)

// Error kinds. Wrap them with %w and a message that tells the user what was
// wrong: fmt.Errorf("repository %q: %w", name, apierror.ErrNotFound).
var (
	ErrNotFound           = errors.New("not found")
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrAlreadyExists      = errors.New("already exists")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrUnavailable        = errors.New("unavailable")
	// ErrUnauthenticated: the caller sent no credential Sluice knows.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrPermissionDenied: the caller's credential does not allow the call.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrDataLoss: stored data is not what was recorded (an artifact
	// whose content fails its digest).
	ErrDataLoss = errors.New("data loss")
)

var codes = []struct {
	kind error
	code connect.Code
}{
	{ErrNotFound, connect.CodeNotFound},
	{ErrInvalidArgument, connect.CodeInvalidArgument},
	{ErrAlreadyExists, connect.CodeAlreadyExists},
	{ErrFailedPrecondition, connect.CodeFailedPrecondition},
	{ErrUnavailable, connect.CodeUnavailable},
	{ErrUnauthenticated, connect.CodeUnauthenticated},
	{ErrPermissionDenied, connect.CodePermissionDenied},
	{ErrDataLoss, connect.CodeDataLoss},
}

// ToConnect maps err to a Connect error. Errors of a known kind keep their
// message; anything else becomes an internal error without details (the
// caller logs it).
func ToConnect(err error) (cerr *connect.Error, known bool) {
	if err == nil {
		return nil, true
	}
	if ce := new(connect.Error); errors.As(err, &ce) {
		return ce, true
	}
	switch {
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, err), true
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, err), true
	}
	for _, c := range codes {
		if errors.Is(err, c.kind) {
			return connect.NewError(c.code, err), true
		}
	}
	return connect.NewError(connect.CodeInternal, errors.New("internal error; the service log has the details")), false
}

// Interceptor maps handler errors to Connect codes and logs the unexpected
// ones once.
func Interceptor(log *slog.Logger) connect.Interceptor {
	return &interceptor{log: log}
}

type interceptor struct{ log *slog.Logger }

func (i *interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		res, err := next(ctx, req)
		if err == nil || req.Spec().IsClient {
			return res, err
		}
		return res, i.mapErr(ctx, req.Spec().Procedure, err)
	}
}

func (i *interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i *interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		err := next(ctx, conn)
		if err == nil {
			return nil
		}
		return i.mapErr(ctx, conn.Spec().Procedure, err)
	}
}

func (i *interceptor) mapErr(ctx context.Context, procedure string, err error) error {
	cerr, known := ToConnect(err)
	if !known {
		i.log.ErrorContext(ctx, "request failed", slog.String("procedure", procedure), slog.Any("error", err))
	}
	return cerr
}
