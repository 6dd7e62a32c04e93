// Package stagespec turns a stage's part of a pipeline (pipeline.proto:
// its steps' images, its services) into what executor.Backend.Open takes,
// the same way for the build and the test stage.
package stagespec

import (
	"maps"
	"slices"

	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/stepgraph"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

// Services are the stage's services.
func Services(pb []*sourcev1.ServiceSpec) []executor.Service {
	var out []executor.Service
	for _, s := range pb {
		out = append(out, executor.Service{
			Name: s.GetName(), Image: s.GetImage(),
			Command: slices.Clone(s.GetCommand()), Env: maps.Clone(s.GetEnv()),
		})
	}
	return out
}

// Images are the images of the steps that name one, by step name
// (stepgraph.StepLabel).
func Images(steps []*sourcev1.Step) map[string]string {
	out := map[string]string{}
	for _, st := range steps {
		if st.GetImage() != "" {
			out[stepgraph.StepLabel(st)] = st.GetImage()
		}
	}
	return out
}

// RunEnv are the variables every step and service of a run's stage gets.
func RunEnv(runID, commit, branch, repository string) map[string]string {
	return map[string]string{
		"SLUICE_RUN_ID":     runID,
		"SLUICE_COMMIT":     commit,
		"SLUICE_BRANCH":     branch,
		"SLUICE_REPOSITORY": repository,
	}
}
