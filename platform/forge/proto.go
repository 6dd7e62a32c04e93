package forge

import (
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

// The API's and the events' names of forges and commit status states:
// source writes them, notify and the CLI read them.

var protoKinds = map[Kind]sourcev1.ForgeKind{
	None:   sourcev1.ForgeKind_FORGE_KIND_UNSPECIFIED,
	GitHub: sourcev1.ForgeKind_FORGE_KIND_GITHUB,
	Gitea:  sourcev1.ForgeKind_FORGE_KIND_GITEA,
	GitLab: sourcev1.ForgeKind_FORGE_KIND_GITLAB,
}

// Proto is r as the API and the events carry it; nil for no forge.
func (r Repo) Proto() *sourcev1.Forge {
	if r.IsZero() {
		return nil
	}
	return &sourcev1.Forge{Kind: protoKinds[r.Kind], Url: r.URL, Project: r.Project}
}

// RepoFromProto reads a Repo from the API or an event; nil or an
// unspecified kind is no forge.
func RepoFromProto(f *sourcev1.Forge) Repo {
	for kind, k := range protoKinds {
		if k == f.GetKind() && kind != None {
			return Repo{Kind: kind, URL: f.GetUrl(), Project: f.GetProject()}
		}
	}
	return Repo{}
}

var protoStates = map[State]sourceeventsv1.CommitStatusState{
	StatePending:   sourceeventsv1.CommitStatusState_COMMIT_STATUS_STATE_PENDING,
	StateRunning:   sourceeventsv1.CommitStatusState_COMMIT_STATUS_STATE_RUNNING,
	StateSuccess:   sourceeventsv1.CommitStatusState_COMMIT_STATUS_STATE_SUCCESS,
	StateFailure:   sourceeventsv1.CommitStatusState_COMMIT_STATUS_STATE_FAILURE,
	StateError:     sourceeventsv1.CommitStatusState_COMMIT_STATUS_STATE_ERROR,
	StateCancelled: sourceeventsv1.CommitStatusState_COMMIT_STATUS_STATE_CANCELLED,
}

// Proto is s as CommitStatusChanged carries it.
func (s State) Proto() sourceeventsv1.CommitStatusState { return protoStates[s] }

// StateFromProto reads a state from CommitStatusChanged; "" for an
// unspecified one.
func StateFromProto(p sourceeventsv1.CommitStatusState) State {
	for s, v := range protoStates {
		if v == p {
			return s
		}
	}
	return ""
}
