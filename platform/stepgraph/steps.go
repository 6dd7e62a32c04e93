package stepgraph

import (
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

// Nodes are the graph of a stage's steps as the pipeline gives them;
// pipelineParallel bounds the steps of each pipeline that run at once
// (BuildSpec.pipeline_max_parallel, TestSpec's).
func Nodes(steps []*sourcev1.Step, pipelineParallel map[string]int32) []Node {
	nodes := make([]Node, 0, len(steps))
	for _, st := range steps {
		nodes = append(nodes, Node{
			PipelineParallel: int(pipelineParallel[st.GetPipeline()]),
			Pipeline:         st.GetPipeline(),
			Name:             st.GetName(),
			Group:            st.GetMatrixOf(),
			Matrix:           st.GetMatrix(),
			DependsOn:        st.GetDependsOn(),
			When:             st.GetWhen(),
			Retries:          int(st.GetRetry()),
			AllowFailure:     st.GetAllowFailure(),
		})
	}
	return nodes
}

// StepLabel is Label of a pipeline's step.
func StepLabel(st *sourcev1.Step) string { return Label(st.GetPipeline(), st.GetName()) }

// FactsOf are the facts of a run for its steps' conditions: its ref and
// branch, what triggered it, what its commits changed.
func FactsOf(repository, commit, ref, branch string, trigger sourcev1.Trigger, changes *sourcev1.Changes) Facts {
	f := Facts{Repository: repository, Commit: commit, Ref: ref, Branch: branch,
		Changed: changes.GetPaths(), ChangedKnown: changes.GetComplete()}
	const tags = "refs/tags/"
	if len(ref) > len(tags) && ref[:len(tags)] == tags {
		f.Tag = ref[len(tags):]
	}
	switch {
	case trigger == sourcev1.Trigger_TRIGGER_MANUAL:
		f.Event = "manual"
	case trigger == sourcev1.Trigger_TRIGGER_PULL_REQUEST:
		f.Event = "pull_request"
	case trigger == sourcev1.Trigger_TRIGGER_SCHEDULE:
		f.Event = "schedule"
	case f.Tag != "":
		f.Event = "tag"
	default:
		f.Event = "push"
	}
	return f
}
