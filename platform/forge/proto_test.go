package forge_test

import (
	"testing"

	"github.com/sluicehq/sluice/platform/forge"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

func TestProtoRoundTrip(t *testing.T) {
	t.Parallel()
	for _, kind := range forge.Kinds() {
		r := forge.Repo{Kind: kind, URL: "https://git.example.com", Project: "a/b"}
		if got := forge.RepoFromProto(r.Proto()); got != r {
			t.Errorf("%s: %+v", kind, got)
		}
	}
	if (forge.Repo{}).Proto() != nil || !forge.RepoFromProto(nil).IsZero() ||
		!forge.RepoFromProto(&sourcev1.Forge{Url: "https://x", Project: "a/b"}).IsZero() {
		t.Error("no forge does not round-trip as none")
	}
	for _, s := range []forge.State{forge.StatePending, forge.StateRunning, forge.StateSuccess, forge.StateFailure, forge.StateError, forge.StateCancelled} {
		if s.Proto() == sourceeventsv1.CommitStatusState_COMMIT_STATUS_STATE_UNSPECIFIED || forge.StateFromProto(s.Proto()) != s {
			t.Errorf("state %s: %v", s, s.Proto())
		}
	}
}
