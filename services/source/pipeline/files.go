package pipeline

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"

	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/services/source/domain"
)

// A commit's pipelines are those of .sluice.yaml and of each file
// .sluice/<name>.yaml, the pipeline <name>. A run holds those of them whose
// on: section wants its change, merged into one sourcev1.Pipeline whose
// steps say which pipeline they are of (Step.pipeline): build and test run
// each pipeline's steps as a graph of its own (platform/stepgraph).

// Source is one pipeline file of a commit.
type Source struct {
	// Path is the file's path in the repository.
	Path string
	Data []byte
}

// Named is the pipeline of one file.
type Named = domain.NamedPipeline

// MaxFiles bounds the files of .sluice/ a commit may have.
const MaxFiles = 20

// pipelineName is what a file's name under .sluice/ must be, less .yaml.
var pipelineName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// NameOf is the pipeline name of the file at path: "" for .sluice.yaml,
// <name> for .sluice/<name>.yaml; ok is false for another path, or a name
// a pipeline cannot have.
func NameOf(file string) (name string, ok bool) {
	if file == domain.PipelineFile {
		return "", true
	}
	dir, base := path.Split(file)
	name, isYAML := strings.CutSuffix(base, domain.PipelineSuffix)
	if dir != domain.PipelineDir+"/" || !isYAML || len(name) > maxNameLength || !pipelineName.MatchString(name) {
		return "", false
	}
	return name, true
}

// ParseFiles parses a commit's pipeline files, .sluice.yaml first (when it
// has one) and then .sluice/*.yaml by name, each under limits. Beyond each
// file's own checks: a file under .sluice/ must be named as a pipeline is
// and may not set what is the whole run's (concurrency:, statuses:), and
// at most one file may have a release: section. The error is an *Errors
// holding every problem of every file.
func ParseFiles(files []Source, limits Limits) ([]Named, error) {
	var (
		out      []Named
		problems Errors
		released string // the file with the release: section
	)
	for _, f := range files {
		name, ok := NameOf(f.Path)
		if !ok {
			problems = append(problems, Error{File: f.Path,
				Message: fmt.Sprintf("a pipeline file is %s or %s/<name>%s", domain.PipelineFile, domain.PipelineDir, domain.PipelineSuffix),
				Hint:    "a name is lowercase letters, digits, \"-\" and \"_\", starting with a letter or digit, at most 63 characters"})
			continue
		}
		p := &parser{file: f.Path, limits: limits.WithDefaults(), part: name != "", releasedBy: released}
		pl, err := p.finish(p.parse(f.Data))
		var bad *Errors
		switch {
		case errors.As(err, &bad):
			problems = append(problems, *bad...)
			continue
		case err != nil:
			return nil, err
		}
		if pl.GetRelease() != nil {
			released = f.Path
		}
		out = append(out, Named{Name: name, Path: f.Path, Pipeline: pl})
	}
	if len(problems) > 0 {
		return nil, &problems
	}
	return out, nil
}

// runWide are the top-level keys that set what is the whole run's, which
// only .sluice.yaml may have.
var runWide = []string{"concurrency", "statuses"}

// partOfRun reports, for a file under .sluice/, the keys of root that only
// .sluice.yaml may have, and a release: section when another file has
// the run's.
func (p *parser) partOfRun(root *yaml.Node) {
	if !p.part && p.releasedBy == "" {
		return
	}
	root = resolve(root)
	// fields has reported what is wrong with the mapping itself.
	for i := 0; i+1 < len(root.Content); i += 2 {
		key := resolve(root.Content[i])
		switch {
		case p.part && indexOf(runWide, key.Value) >= 0:
			p.errorAt(key, "set it in "+domain.PipelineFile,
				"%s: is a setting of the whole run, which only %s may have", key.Value, domain.PipelineFile)
		case p.releasedBy != "" && key.Value == "release":
			p.errorAt(key, "a run makes one release: keep one release: section",
				"release: %s has the run's release section already", p.releasedBy)
		}
	}
}

// Merge is the pipeline of a run that holds pipelines: their steps, each
// saying its pipeline, in order; their services, caches, artifacts and
// reports (the same service, cache or report in two is one; two artifacts
// or differing services of one name are an error); the release of the one
// that has it; concurrency, statuses and on of .sluice.yaml's. A stage of
// several pipelines runs at most the most steps at once any of them asks
// for, and each pipeline at most its own max_parallel. The error is an
// *Errors naming the files.
func Merge(pipelines []Named) (*sourcev1.Pipeline, error) {
	if len(pipelines) == 1 && pipelines[0].Name == "" {
		return pipelines[0].Pipeline, nil
	}
	out := &sourcev1.Pipeline{}
	var problems Errors
	problem := func(file, format string, args ...any) {
		problems = append(problems, Error{File: file, Message: fmt.Sprintf(format, args...)})
	}
	var build, test stage
	artifacts := map[string]string{} // by name, the file
	for _, n := range pipelines {
		p := n.Pipeline
		if n.Name == "" {
			out.Concurrency, out.Statuses, out.On = p.GetConcurrency(), p.GetStatuses(), p.GetOn()
		}
		if p.GetRelease() != nil {
			out.Release = p.GetRelease()
		}
		if b := p.GetBuild(); b != nil {
			build.add(n, b.GetSteps(), b.GetServices(), b.GetCaches(), b.GetMaxParallel(), problem)
			for _, a := range b.GetArtifacts() {
				if other, ok := artifacts[a.GetName()]; ok {
					problem(n.Path, "build: artifact %s: %s has an artifact of that name; artifacts of a run's pipelines need names of their own", a.GetName(), other)
					continue
				}
				artifacts[a.GetName()] = n.Path
				build.artifacts = append(build.artifacts, a)
			}
		}
		if t := p.GetTest(); t != nil {
			test.add(n, t.GetSteps(), t.GetServices(), t.GetCaches(), t.GetMaxParallel(), problem)
			for _, r := range t.GetReports() {
				if !containsEqual(test.reports, r) {
					test.reports = append(test.reports, r)
				}
			}
		}
	}
	if build.present {
		out.Build = &sourcev1.BuildSpec{Steps: build.steps, Artifacts: build.artifacts, Services: build.services, MaxParallel: build.maxParallel, Caches: build.caches,
			PipelineMaxParallel: build.pipelineParallel()}
		build.bound("build", problem)
	}
	if test.present {
		out.Test = &sourcev1.TestSpec{Steps: test.steps, Reports: test.reports, Services: test.services, MaxParallel: test.maxParallel, Caches: test.caches,
			PipelineMaxParallel: test.pipelineParallel()}
		test.bound("test", problem)
		if len(test.reports) > maxReports {
			problem(domain.PipelineDir, "test: the run's pipelines have %d reports together; at most %d", len(test.reports), maxReports)
		}
	}
	if len(build.artifacts) > maxArtifacts {
		problem(domain.PipelineDir, "build: the run's pipelines have %d artifacts together; at most %d", len(build.artifacts), maxArtifacts)
	}
	if len(problems) == 0 {
		if n := encodedSize(out); n > MaxEncodedSize {
			problems = append(problems, Error{File: domain.PipelineDir, Message: fmt.Sprintf("the run's pipelines are %d bytes once encoded together; at most %d", n, MaxEncodedSize), Hint: encodedSizeHint})
		}
	}
	if len(problems) == 0 {
		errs, err := conform(domain.PipelineDir, out)
		if err != nil {
			return nil, err
		}
		problems = errs
	}
	if len(problems) > 0 {
		return nil, &problems
	}
	return out, nil
}

// stage is a stage of the merged pipeline as Merge builds it.
type stage struct {
	present     bool
	steps       []*sourcev1.Step
	services    []*sourcev1.ServiceSpec
	caches      []*sourcev1.CacheSpec
	artifacts   []*sourcev1.ArtifactSpec
	reports     []*sourcev1.ReportSpec
	maxParallel int32
	unbounded   bool               // a pipeline left max_parallel to the service
	serviceOf   map[string]service // by name, the first
	byPipeline  map[string]int32   // the max_parallel of those that have one
	pipelines   int
}

func (s *stage) add(n Named, steps []*sourcev1.Step, services []*sourcev1.ServiceSpec, caches []*sourcev1.CacheSpec, maxParallel int32, problem func(string, string, ...any)) {
	s.present = true
	for _, st := range steps {
		st = proto.CloneOf(st)
		st.Pipeline = n.Name
		s.steps = append(s.steps, st)
	}
	if s.serviceOf == nil {
		s.serviceOf = map[string]service{}
	}
	for _, svc := range services {
		if first, ok := s.serviceOf[svc.GetName()]; ok {
			if !proto.Equal(first.spec, svc) {
				problem(n.Path, "service %s: %s has a different service of that name; a stage's services share one network, where a name is one host", svc.GetName(), first.file)
			}
			continue
		}
		s.serviceOf[svc.GetName()] = service{file: n.Path, spec: svc}
		s.services = append(s.services, svc)
	}
	for _, c := range caches {
		if !containsEqual(s.caches, c) {
			s.caches = append(s.caches, c)
		}
	}
	if maxParallel == 0 {
		s.unbounded = true
	} else {
		if s.byPipeline == nil {
			s.byPipeline = map[string]int32{}
		}
		s.byPipeline[n.Name] = maxParallel
	}
	s.maxParallel = max(s.maxParallel, maxParallel)
	if s.unbounded {
		s.maxParallel = 0
	}
	s.pipelines++
}

// pipelineParallel is pipeline_max_parallel of the stage: none when it
// holds one pipeline, whose max_parallel is the stage's.
func (s *stage) pipelineParallel() map[string]int32 {
	if s.pipelines < 2 {
		return nil
	}
	return s.byPipeline
}

// bound reports what the stage holds more of than one stage may.
func (s *stage) bound(name string, problem func(string, string, ...any)) {
	for _, b := range []struct {
		what     string
		has, max int
	}{{"steps", len(s.steps), maxSteps}, {"services", len(s.services), maxServices}, {"caches", len(s.caches), maxCaches}} {
		if b.has > b.max {
			problem(domain.PipelineDir, "%s: the run's pipelines have %d %s together; at most %d", name, b.has, b.what, b.max)
		}
	}
}

// service is a service of a stage, and the file it is first in.
type service struct {
	file string
	spec *sourcev1.ServiceSpec
}

func containsEqual[M proto.Message](list []M, m M) bool {
	for _, x := range list {
		if proto.Equal(x, m) {
			return true
		}
	}
	return false
}
