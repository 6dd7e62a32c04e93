package apierror_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/platform/apierror"
)

func TestToConnect(t *testing.T) {
	tests := []struct {
		err     error
		code    connect.Code
		known   bool
		message string
	}{
		{fmt.Errorf("repository %q: %w", "x", apierror.ErrNotFound), connect.CodeNotFound, true, `repository "x": not found`},
		{fmt.Errorf("bad ref: %w", apierror.ErrInvalidArgument), connect.CodeInvalidArgument, true, "bad ref: invalid argument"},
		{fmt.Errorf("wrapped: %w", context.Canceled), connect.CodeCanceled, true, "wrapped: context canceled"},
		{errors.New("disk on fire"), connect.CodeInternal, false, "internal error; the service log has the details"},
		{connect.NewError(connect.CodeAborted, errors.New("x")), connect.CodeAborted, true, "x"},
	}
	for _, tt := range tests {
		got, known := apierror.ToConnect(tt.err)
		if got.Code() != tt.code || known != tt.known || got.Message() != tt.message {
			t.Errorf("ToConnect(%v) = %v %q known=%v, want %v %q known=%v", tt.err, got.Code(), got.Message(), known, tt.code, tt.message, tt.known)
		}
	}
}
