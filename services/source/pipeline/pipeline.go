// Package pipeline parses and validates a repository's pipeline file,
// .sluice.yaml, into a sourcev1.Pipeline. The format is documented in
// docs/pipeline.md.
package pipeline

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"buf.build/go/protovalidate"
	"go.yaml.in/yaml/v3"

	"github.com/sluicehq/sluice/platform/artifacts"
	"github.com/sluicehq/sluice/platform/pathglob"
	"github.com/sluicehq/sluice/platform/stepcache"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/services/source/domain"
)

// The limits of a pipeline: the same as the rules of sluice.source.v1.Pipeline
// (proto/sluice/source/v1/pipeline.proto), which every stage checks when
// the pipeline reaches it in an event. docs/pipeline.md lists them. Lengths
// in characters, sizes in bytes.
const (
	maxNameLength    = 63    // step, artifact and environment names
	maxSteps         = 100   // per section
	maxArtifacts     = 100   // build.artifacts
	maxCaches        = 10    // build.cache, test.cache
	maxCachePaths    = 20    // a cache's paths
	maxReports       = 50    // test.reports
	maxBranches      = 50    // release.branches
	maxBranchLength  = 255   // one branch name
	maxEnvironments  = 20    // release.environments
	maxCommandSize   = 65536 // run, deploy and verify.command
	maxEnvVars       = 100   // one env mapping
	maxEnvNameLength = 128   // one variable's name
	maxEnvValueSize  = 8192  // one variable's value
	maxPathLength    = 1024  // artifact and report paths
	maxURLLength     = 2048  // verify.http
	maxServices      = 10    // build.services, test.services
	maxImageLength   = 255   // step and service images
	maxCommandArgs   = 64    // one service's command
	maxArgSize       = 4096  // one argument of it
)

// Limits bound what reading one pipeline file may cost. The source
// service's settings max-pipeline-size and max-pipeline-alias-nodes set
// them; a zero field takes its default.
type Limits struct {
	// MaxSize is the most bytes the file may hold.
	MaxSize int
	// MaxAliasNodes is the most YAML nodes the file's aliases may stand
	// for, all aliases together: an alias counts every node of its
	// anchor's value, the nodes of the aliases inside that value included.
	// It keeps a "billion laughs" file, whose aliases of aliases make a
	// few kilobytes stand for billions of nodes, from costing more to read
	// than a file that writes out that many nodes.
	MaxAliasNodes int
}

// The limits of a pipeline file by default.
const (
	DefaultMaxSize       = 1 << 20
	DefaultMaxAliasNodes = 100_000
)

// WithDefaults returns l with its zero fields set to their defaults.
func (l Limits) WithDefaults() Limits {
	if l.MaxSize == 0 {
		l.MaxSize = DefaultMaxSize
	}
	if l.MaxAliasNodes == 0 {
		l.MaxAliasNodes = DefaultMaxAliasNodes
	}
	return l
}

// Parse is ParseLimited with the default limits.
func Parse(file string, data []byte) (*sourcev1.Pipeline, error) {
	return ParseLimited(file, data, Limits{})
}

// ParseLimited parses and validates a pipeline file. file is the name used
// in messages (e.g. ".sluice.yaml"). On bad input the error is an *Errors
// holding every problem found, sorted by position. A file over one of
// limits is refused before anything else is checked. A pipeline
// ParseLimited returns passes the rules of its proto (protovalidate): it
// checks them last, as a line of defence behind its own checks.
func ParseLimited(file string, data []byte, limits Limits) (*sourcev1.Pipeline, error) {
	p := &parser{file: file, limits: limits.WithDefaults()}
	return p.finish(p.parse(data))
}

// finish checks what parse made of a file beyond the parser's own checks,
// and returns it or every problem found.
func (p *parser) finish(pipeline *sourcev1.Pipeline) (*sourcev1.Pipeline, error) {
	file := p.file
	// An env or a command is within its limit but an alias may repeat it
	// in every step: what a file of 1 MiB stands for may be hundreds of
	// megabytes. Its size is known without encoding it (proto.Size adds
	// up lengths), and JSON takes more bytes than protobuf's binary
	// encoding but for at most a few per field: twice the bound in binary
	// is surely over it in JSON, refused before the rules and the
	// encoding go through every byte.
	if len(p.errs) == 0 && proto.Size(pipeline) > 2*MaxEncodedSize {
		p.errs = append(p.errs, Error{File: file, Line: 1, Column: 1,
			Message: fmt.Sprintf("the pipeline is more than %d bytes once encoded; at most %d", 2*MaxEncodedSize, MaxEncodedSize),
			Hint:    encodedSizeHint})
	}
	if len(p.errs) == 0 {
		errs, err := conform(file, pipeline)
		if err != nil {
			return nil, err
		}
		p.errs = errs
	}
	if len(p.errs) == 0 {
		if n := encodedSize(pipeline); n > MaxEncodedSize {
			p.errs = append(p.errs, Error{File: file, Line: 1, Column: 1,
				Message: fmt.Sprintf("the pipeline is %d bytes once encoded; at most %d", n, MaxEncodedSize),
				Hint:    encodedSizeHint})
		}
	}
	if len(p.errs) > 0 {
		errs := p.errs
		slices.SortStableFunc(errs, func(a, b Error) int {
			return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
		})
		return nil, &errs
	}
	return pipeline, nil
}

// MaxEncodedSize bounds a pipeline as the run's events carry it (JSON, in
// run.requested, build.finished and testrun.finished). Every field is
// within its own limit, but a file of many long commands would still make
// events larger than NATS takes (1 MiB by default), and an event NATS
// refuses would hold up the publisher's outbox.
const MaxEncodedSize = 256 << 10

const encodedSizeHint = "the run's events carry the whole pipeline: move long commands into scripts in the repository"

func encodedSize(p *sourcev1.Pipeline) int {
	b, err := protojson.Marshal(p)
	if err != nil {
		return 0 // conform has accepted p: it marshals
	}
	return len(b)
}

// conform checks pipeline against the rules of its proto. The parser's own
// checks refuse everything these rules refuse, with a position and a hint
// (FuzzParse holds them to it); should one ever miss something, the
// pipeline is still refused here, the message naming the field (as
// "build.steps[0].run: ..."), rather than accepted and then refused when
// its run is published. An error that is not a violation is returned as
// it is: it is a bug, not a problem of the file.
func conform(file string, pipeline *sourcev1.Pipeline) (Errors, error) {
	err := protovalidate.Validate(pipeline)
	if err == nil {
		return nil, nil
	}
	var invalid *protovalidate.ValidationError
	if !errors.As(err, &invalid) {
		return nil, fmt.Errorf("check the pipeline against its rules: %w", err)
	}
	errs := make(Errors, 0, len(invalid.Violations))
	for _, v := range invalid.Violations {
		errs = append(errs, Error{File: file, Message: v.String()})
	}
	return errs, nil
}

func (p *parser) parse(data []byte) *sourcev1.Pipeline {
	p.limits = p.limits.WithDefaults()
	if len(data) > p.limits.MaxSize {
		p.errs = append(p.errs, Error{File: p.file,
			Message: fmt.Sprintf("the file is %d bytes; at most %d are allowed", len(data), p.limits.MaxSize),
			Hint:    "the source service's max-pipeline-size setting sets the limit"})
		return nil
	}
	root := p.document(data)
	if root == nil {
		return nil
	}
	pipeline := &sourcev1.Pipeline{}
	present := p.fields(root,
		field{key: "version", decode: p.version},
		field{key: "build", decode: func(n *yaml.Node) { pipeline.Build = p.build(n) }},
		field{key: "test", decode: func(n *yaml.Node) { pipeline.Test = p.test(n) }},
		field{key: "release", decode: func(n *yaml.Node) { pipeline.Release = p.release(n) }},
		field{key: "concurrency", decode: func(n *yaml.Node) { pipeline.Concurrency = p.concurrency(n) }},
		field{key: "on", decode: func(n *yaml.Node) { pipeline.On = p.triggers(n) }},
		field{key: "statuses", decode: func(n *yaml.Node) {
			pipeline.Statuses = sourcev1.CommitStatuses(p.keyword(n, "statuses", `"run" (one commit status for the run) or "stages" (one per stage)`,
				[]string{"run", "stages"}, []int32{int32(sourcev1.CommitStatuses_COMMIT_STATUSES_UNSPECIFIED), int32(sourcev1.CommitStatuses_COMMIT_STATUSES_STAGES)}))
		}},
	)
	if present == nil {
		return nil // root is not a mapping, which fields reported
	}
	p.partOfRun(root)
	if !present["version"] {
		p.errorAt(root, `start the file with "version: 1"`, `missing required key "version"`)
	}
	if !present["build"] && !present["test"] && !present["release"] {
		p.errorAt(root, "add a build, test or release section", "the pipeline has nothing to do")
	}
	return pipeline
}

// document returns the top-level node of the file's single YAML document,
// or nil after reporting why there is none.
func (p *parser) document(data []byte) *yaml.Node {
	decoder := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := decoder.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errs = append(p.errs, emptyFile(p.file))
		} else {
			p.syntaxError(err)
		}
		return nil
	}
	var extra yaml.Node
	switch err := decoder.Decode(&extra); {
	case err == nil:
		p.errorAt(&extra, "", "only one YAML document is allowed")
	case !errors.Is(err, io.EOF):
		p.syntaxError(err)
	}
	if !p.checkAliases(&doc) {
		return nil
	}
	if len(doc.Content) == 0 || resolve(doc.Content[0]).ShortTag() == "!!null" {
		p.errs = append(p.errs, emptyFile(p.file))
		return nil
	}
	return doc.Content[0]
}

func emptyFile(file string) Error {
	return Error{
		File:    file,
		Line:    1,
		Column:  1,
		Message: "the pipeline file is empty",
		Hint:    `start with "version: 1" and add a build, test or release section`,
	}
}

// syntaxError reports a yaml.v3 syntax error, taking the line from its
// "yaml: line N: problem" message. yaml.v3 gives no column.
func (p *parser) syntaxError(err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if number, problem, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(number); err == nil {
				line, msg = n, problem
			}
		}
	}
	p.errs = append(p.errs, Error{File: p.file, Line: line, Message: "invalid YAML: " + msg})
}

func (p *parser) version(n *yaml.Node) {
	n = resolve(n)
	switch {
	case n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int":
		p.errorAt(n, "write version: 1", "expected a number, got %s", describe(n))
	case n.Value != "1":
		p.errorAt(n, "", "unsupported version %s; the only supported version is 1", n.Value)
	}
}

func (p *parser) build(n *yaml.Node) *sourcev1.BuildSpec {
	build := &sourcev1.BuildSpec{}
	p.fields(n,
		field{key: "steps", decode: func(n *yaml.Node) { build.Steps = p.steps(n) }},
		field{key: "artifacts", decode: func(n *yaml.Node) { build.Artifacts = p.artifacts(n) }},
		field{key: "services", decode: func(n *yaml.Node) { build.Services = p.services(n) }},
		field{key: "max_parallel", decode: func(n *yaml.Node) { build.MaxParallel = p.maxParallelSteps(n) }},
		field{key: "cache", decode: func(n *yaml.Node) { build.Caches = p.caches(n) }},
	)
	return build
}

func (p *parser) test(n *yaml.Node) *sourcev1.TestSpec {
	test := &sourcev1.TestSpec{}
	p.fields(n,
		field{key: "steps", decode: func(n *yaml.Node) { test.Steps = p.steps(n) }},
		field{key: "reports", decode: func(n *yaml.Node) { test.Reports = p.reports(n) }},
		field{key: "services", decode: func(n *yaml.Node) { test.Services = p.services(n) }},
		field{key: "max_parallel", decode: func(n *yaml.Node) { test.MaxParallel = p.maxParallelSteps(n) }},
		field{key: "cache", decode: func(n *yaml.Node) { test.Caches = p.caches(n) }},
	)
	return test
}

func (p *parser) steps(n *yaml.Node) []*sourcev1.Step {
	var drafts []*draft
	names := make(map[string]int)
	for _, item := range p.list(n, "steps", maxSteps) {
		d := &draft{step: &sourcev1.Step{}, node: item}
		p.decodeStep(item, d, names)
		drafts = append(drafts, d)
	}
	return p.expand(drafts)
}

func (p *parser) artifacts(n *yaml.Node) []*sourcev1.ArtifactSpec {
	var artifacts []*sourcev1.ArtifactSpec
	names := make(map[string]int)
	for _, item := range p.list(n, "artifacts", maxArtifacts) {
		artifact := &sourcev1.ArtifactSpec{}
		p.fields(item,
			field{key: "name", required: true, decode: func(n *yaml.Node) { artifact.Name = p.name(n, "artifact", names) }},
			field{key: "path", required: true, decode: func(n *yaml.Node) { artifact.Path = p.artifactPath(n) }},
		)
		artifacts = append(artifacts, artifact)
	}
	return artifacts
}

// caches decodes a stage's cache: entries; a key template that does not
// compile is reported at its place inside the value.
func (p *parser) caches(n *yaml.Node) []*sourcev1.CacheSpec {
	var caches []*sourcev1.CacheSpec
	for _, item := range p.list(n, "cache", maxCaches) {
		c := &sourcev1.CacheSpec{}
		p.fields(item,
			field{key: "key", required: true, decode: func(n *yaml.Node) { c.Key = p.cacheKey(n) }},
			field{key: "paths", required: true, decode: func(n *yaml.Node) { c.Paths = p.cachePaths(n) }},
		)
		caches = append(caches, c)
	}
	return caches
}

func (p *parser) cacheKey(n *yaml.Node) string {
	s, ok := p.str(n)
	if !ok {
		return ""
	}
	_, err := stepcache.ParseKey(s)
	var ke *stepcache.KeyError
	switch {
	case errors.As(err, &ke):
		p.errorInValue(n, ke.Line, ke.Column, "cache key: "+cutQuoted(ke.Message), "see docs/pipeline.md, \"Caches\"")
	case err != nil:
		p.errorAt(resolve(n), "", "cache key: %v", err)
	}
	return s
}

func (p *parser) cachePaths(n *yaml.Node) []string {
	items := p.list(n, "paths", maxCachePaths)
	if len(items) == 0 {
		p.errorAt(resolve(n), "", "a cache needs at least one path")
	}
	var paths []string
	for _, item := range items {
		s, ok := p.str(item)
		if !ok {
			continue
		}
		rel, home := strings.CutPrefix(s, "~/")
		switch {
		case s == "~" || (strings.HasPrefix(s, "~") && !home):
			p.errorAt(resolve(item), `write "~/" and a path for the steps' home`, "path %q: only the steps' own home (~/) may be named", s)
		case home && path.Clean(rel) == ".":
			p.errorAt(resolve(item), "", "path %q names the whole home; name the directories to keep", s)
		default:
			p.relativePath(item, false)
		}
		if slices.Contains(paths, s) {
			p.errorAt(resolve(item), "", "path %q is listed twice", s)
		}
		paths = append(paths, s)
	}
	return paths
}

// artifactPath decodes an artifact's path: a file, a directory or a glob.
func (p *parser) artifactPath(n *yaml.Node) string {
	s := p.relativePath(n, false)
	if artifacts.IsGlob(s) && !artifacts.ValidGlob(s) {
		p.errorAt(resolve(n), `globs are *, ?, [...], {a,b} and ** for any folders`, "invalid glob pattern %q", s)
	}
	return s
}

func (p *parser) reports(n *yaml.Node) []*sourcev1.ReportSpec {
	var reports []*sourcev1.ReportSpec
	for _, item := range p.list(n, "reports", maxReports) {
		report := &sourcev1.ReportSpec{}
		p.fields(item,
			field{key: "path", required: true, decode: func(n *yaml.Node) { report.Path = p.relativePath(n, true) }},
			field{key: "format", required: true, decode: func(n *yaml.Node) { report.Format = p.reportFormat(n) }},
		)
		reports = append(reports, report)
	}
	return reports
}

func (p *parser) reportFormat(n *yaml.Node) sourcev1.ReportFormat {
	return sourcev1.ReportFormat(p.keyword(n, "report format", `the formats are "go-test-json" and "junit"`,
		[]string{"go-test-json", "junit"},
		[]int32{int32(sourcev1.ReportFormat_REPORT_FORMAT_GO_TEST_JSON), int32(sourcev1.ReportFormat_REPORT_FORMAT_JUNIT_XML)}))
}

func (p *parser) onInterrupt(n *yaml.Node) sourcev1.OnInterrupt {
	return sourcev1.OnInterrupt(p.keyword(n, "on_interrupt", `on_interrupt is "rollback" or "redeploy"`,
		[]string{"rollback", "redeploy"},
		[]int32{int32(sourcev1.OnInterrupt_ON_INTERRUPT_ROLLBACK), int32(sourcev1.OnInterrupt_ON_INTERRUPT_REDEPLOY)}))
}

// keyword decodes one of words into the enum value at the same index; 0,
// the unspecified value, after an error naming what, with the closest
// word or hint.
func (p *parser) keyword(n *yaml.Node, what, hint string, words []string, values []int32) int32 {
	s, ok := p.str(n)
	if !ok {
		return 0
	}
	if i := slices.Index(words, s); i >= 0 {
		return values[i]
	}
	if c := closest(s, words); c != "" {
		hint = fmt.Sprintf("did you mean %q?", c)
	}
	p.errorAt(resolve(n), hint, "unknown %s %q", what, s)
	return 0
}

// maxConcurrencyLimit bounds a concurrency group's limit.
const maxConcurrencyLimit = 100

func (p *parser) concurrency(n *yaml.Node) *sourcev1.Concurrency {
	c := &sourcev1.Concurrency{}
	p.fields(n,
		field{key: "group", required: true, decode: func(n *yaml.Node) {
			c.Group = sourcev1.ConcurrencyScope(p.keyword(n, "concurrency group", `the groups are "branch" and "repository"`,
				[]string{"branch", "repository"},
				[]int32{int32(sourcev1.ConcurrencyScope_CONCURRENCY_SCOPE_BRANCH), int32(sourcev1.ConcurrencyScope_CONCURRENCY_SCOPE_REPOSITORY)}))
		}},
		field{key: "limit", decode: func(n *yaml.Node) { c.Limit = int32(p.integer(n, "limit", 1, maxConcurrencyLimit)) }},
		field{key: "cancel_superseded", decode: func(n *yaml.Node) { c.CancelSuperseded = p.boolean(n) }},
	)
	return c
}

// The limits of an on: section, as in pipeline.proto's Triggers.
const (
	maxPatterns      = 50   // on.push.branches, on.push.paths, on.tag
	maxPatternLength = 255  // a branch or tag pattern
	maxPathPattern   = 1024 // a path pattern
	maxCronLength    = 100  // on.schedule[].cron
)

// triggers decodes the on: section: which pushes start a run.
func (p *parser) triggers(n *yaml.Node) *sourcev1.Triggers {
	on := &sourcev1.Triggers{}
	p.fields(n,
		field{key: "push", decode: func(n *yaml.Node) {
			on.Push = &sourcev1.PushTrigger{}
			p.fields(n,
				field{key: "branches", decode: func(n *yaml.Node) {
					on.Push.Branches = p.patterns(n, "branches", "branch", maxPatternLength)
				}},
				field{key: "paths", decode: func(n *yaml.Node) {
					on.Push.Paths = p.patterns(n, "paths", "path", maxPathPattern)
				}},
			)
		}},
		field{key: "tag", decode: func(n *yaml.Node) { on.Tags = p.patterns(n, "tag", "tag", maxPatternLength) }},
		field{key: "schedule", decode: func(n *yaml.Node) { on.Schedules = p.schedules(n) }},
	)
	return on
}

// neverFiresAfter is a time a schedule that fires at all fires after
// (robfig/cron looks five years ahead).
var neverFiresAfter = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// maxSchedules bounds on.schedule.
const maxSchedules = 10

// schedules decodes on.schedule: cron expressions (domain.ParseSchedule),
// each with the branch it runs.
func (p *parser) schedules(n *yaml.Node) []*sourcev1.Schedule {
	var schedules []*sourcev1.Schedule
	seen := map[string]int{}
	for _, item := range p.list(n, "schedules", maxSchedules) {
		sc := &sourcev1.Schedule{}
		var at *yaml.Node
		p.fields(item,
			field{key: "cron", required: true, decode: func(n *yaml.Node) { at, sc.Cron = resolve(n), p.cron(n) }},
			field{key: "branch", decode: func(n *yaml.Node) { sc.Branch = p.branchName(n, "leave branch out for the repository's branch") }},
		)
		if at != nil && sc.Cron != "" {
			key := sc.Cron + "\x00" + sc.Branch
			if line, ok := seen[key]; ok {
				p.errorAt(at, "", "the same schedule is listed twice (first at line %d)", line)
			}
			seen[key] = at.Line
		}
		schedules = append(schedules, sc)
	}
	return schedules
}

func (p *parser) cron(n *yaml.Node) string {
	s, ok := p.str(n)
	if !ok {
		return ""
	}
	if len(s) > maxCronLength {
		p.errorAt(resolve(n), "", "cron expression is longer than %d characters", maxCronLength)
		return s
	}
	if domain.NextFire(s, neverFiresAfter).IsZero() {
		if _, err := domain.ParseSchedule(s); err == nil {
			p.errorAt(resolve(n), "", "cron %q never fires", s)
			return s
		}
	}
	if _, err := domain.ParseSchedule(s); err != nil {
		p.errorAt(resolve(n), `five fields, minute hour day-of-month month day-of-week, in UTC: "0 3 * * *" is 03:00 every day; or @daily, @hourly, ...`,
			"cron %q: %s", s, strings.TrimPrefix(err.Error(), domain.ErrSchedule.Error()+": "))
	}
	return s
}

// patterns decodes a list of globs (see pipeline.proto's Triggers): of
// branches, tags or paths, what says which.
func (p *parser) patterns(n *yaml.Node, key, what string, maxLength int) []string {
	items := p.list(n, what+" patterns", maxPatterns)
	if len(items) == 0 && resolve(n).Kind == yaml.SequenceNode {
		p.errorAt(resolve(n), "leave the key out instead", "%s must list at least one %s pattern", key, what)
	}
	var patterns []string
	for _, item := range items {
		s, ok := p.str(item)
		item = resolve(item)
		switch {
		case !ok:
		case s == "":
			p.errorAt(item, "", "%s pattern must not be empty", what)
		case utf8.RuneCountInString(s) > maxLength:
			p.errorAt(item, "", "%s pattern is longer than %d characters", what, maxLength)
		case !pathglob.Valid(s):
			p.errorAt(item, `globs are *, ?, [...], {a,b} (not nested, at most 64 combinations) and ** across "/"`, "invalid %s pattern %q", what, s)
		case what == "path" && strings.HasPrefix(s, "/"):
			p.errorAt(item, `write "services/api/**", not "/services/api/**"`, "path pattern %q: paths are relative to the repository's root", s)
		case slices.Contains(patterns, s):
			p.errorAt(item, "", "%s pattern %q is listed twice", what, s)
		}
		patterns = append(patterns, s)
	}
	return patterns
}

func (p *parser) release(n *yaml.Node) *sourcev1.ReleaseSpec {
	release := &sourcev1.ReleaseSpec{}
	var branches *yaml.Node
	p.fields(n,
		field{key: "branches", decode: func(n *yaml.Node) {
			branches = resolve(n)
			release.Branches = p.branches(n)
		}},
		field{key: "environments", decode: func(n *yaml.Node) { release.Environments = p.environments(n) }},
		field{key: "tags", decode: func(n *yaml.Node) { release.Tags = p.patterns(n, "tags", "tag", maxPatternLength) }},
	)
	// A branches value of the wrong type has been reported already.
	noBranches := branches == nil || (branches.Kind == yaml.SequenceNode && len(branches.Content) == 0)
	if len(release.Environments) > 0 && noBranches && len(release.Tags) == 0 {
		p.errorAt(resolve(n), "list the branches to release, e.g. branches: [main], or the tags, e.g. tags: [\"v*\"]",
			"release has environments but no branches or tags")
	}
	return release
}

func (p *parser) branches(n *yaml.Node) []string {
	var branches []string
	for _, item := range p.list(n, "branches", maxBranches) {
		branches = append(branches, p.branchName(item, ""))
	}
	return branches
}

// branchName decodes a branch's name; hint is for an empty one.
func (p *parser) branchName(n *yaml.Node, hint string) string {
	branch, ok := p.str(n)
	switch {
	case !ok:
	case branch == "":
		p.errorAt(resolve(n), hint, "branch name must not be empty")
	case utf8.RuneCountInString(branch) > maxBranchLength:
		p.errorAt(resolve(n), "", "branch name %q is longer than %d characters", branch, maxBranchLength)
	}
	return branch
}

func (p *parser) environments(n *yaml.Node) []*sourcev1.EnvironmentSpec {
	var environments []*sourcev1.EnvironmentSpec
	names := make(map[string]int)
	for _, item := range p.list(n, "environments", maxEnvironments) {
		env := &sourcev1.EnvironmentSpec{}
		p.fields(item,
			field{key: "name", required: true, decode: func(n *yaml.Node) { env.Name = p.name(n, "environment", names) }},
			field{key: "deploy", required: true, decode: func(n *yaml.Node) { env.Deploy = p.command(n) }},
			field{key: "deploy_timeout", decode: func(n *yaml.Node) { env.DeployTimeout = p.duration(n) }},
			field{key: "env", decode: func(n *yaml.Node) { env.Env, env.Secrets = p.env(n) }},
			field{key: "verify", decode: func(n *yaml.Node) { env.Verify = p.verify(n) }},
			field{key: "on_interrupt", decode: func(n *yaml.Node) { env.OnInterrupt = p.onInterrupt(n) }},
		)
		environments = append(environments, env)
	}
	return environments
}

func (p *parser) verify(n *yaml.Node) *sourcev1.VerifySpec {
	verify := &sourcev1.VerifySpec{}
	present := p.fields(n,
		field{key: "http", decode: func(n *yaml.Node) { verify.Check = &sourcev1.VerifySpec_Http{Http: p.httpURL(n)} }},
		field{key: "command", decode: func(n *yaml.Node) { verify.Check = &sourcev1.VerifySpec_Command{Command: p.command(n)} }},
		field{key: "timeout", decode: func(n *yaml.Node) { verify.Timeout = p.duration(n) }},
	)
	switch {
	case present == nil:
	case present["http"] && present["command"]:
		p.errorAt(resolve(n), "", `verify takes only one of "http" and "command"`)
	case !present["http"] && !present["command"]:
		p.errorAt(resolve(n), "", `verify needs one of "http" or "command"`)
	}
	return verify
}

func (p *parser) httpURL(n *yaml.Node) string {
	s, ok := p.str(n)
	if !ok {
		return ""
	}
	n = resolve(n)
	u, err := url.Parse(s)
	switch {
	case utf8.RuneCountInString(s) > maxURLLength:
		p.errorAt(n, "", "URL is longer than %d characters", maxURLLength)
	case err != nil || !strings.HasPrefix(s, u.Scheme+"://") || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		p.errorAt(n, "e.g. http://127.0.0.1:8080/healthz",
			"invalid URL %q: expected an absolute http:// or https:// URL", s)
	default:
		if problem := uriProblem(s); problem != "" {
			p.errorAt(n, `percent-encode what a URL cannot hold as it is (a space is "%20")`, "invalid URL %q: %s", s, problem)
		}
	}
	return s
}

// uriProblem says why s is not a URI as RFC 3986 defines it ("" when it
// is one), by the same rule as verify.http's in pipeline.proto: net/url
// takes more than the RFC allows (a space, a second "#", ...).
func uriProblem(s string) string {
	err := protovalidate.Validate(&sourcev1.VerifySpec{Check: &sourcev1.VerifySpec_Http{Http: s}})
	var invalid *protovalidate.ValidationError
	if !errors.As(err, &invalid) || len(invalid.Violations) == 0 {
		return ""
	}
	return invalid.Violations[0].Proto.GetMessage()
}

// name decodes a step, artifact or environment name and reports it if it
// is malformed or already in seen, which maps names to their line.
func (p *parser) name(n *yaml.Node, kind string, seen map[string]int) string {
	return p.nameBy(n, kind, seen, validName, `use lowercase letters, digits, "-" and "_", starting with a letter or digit`)
}

// nameBy decodes a name that valid accepts (hint says what it accepts),
// as name does.
func (p *parser) nameBy(n *yaml.Node, kind string, seen map[string]int, valid func(string) bool, hint string) string {
	s, ok := p.str(n)
	if !ok {
		return ""
	}
	n = resolve(n)
	switch {
	case !valid(s):
		p.errorAt(n, hint, "invalid %s name %q", kind, s)
	case len(s) > maxNameLength:
		p.errorAt(n, "", "%s name %q is longer than %d characters", kind, s, maxNameLength)
	case seen[s] > 0:
		p.errorAt(n, "", "duplicate %s name %q (first defined at line %d)", kind, s, seen[s])
	default:
		seen[s] = n.Line
	}
	return s
}

// validName reports whether s matches ^[a-z0-9][a-z0-9_-]*$.
func validName(s string) bool {
	for i, r := range s {
		switch {
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9':
		case (r == '-' || r == '_') && i > 0:
		default:
			return false
		}
	}
	return s != ""
}

// relativePath decodes a path inside the workspace: not absolute and
// without "..". With glob, it may be a path.Match pattern.
func (p *parser) relativePath(n *yaml.Node, glob bool) string {
	s, ok := p.str(n)
	if !ok {
		return ""
	}
	n = resolve(n)
	switch {
	case s == "":
		p.errorAt(n, "", "path must not be empty")
	case utf8.RuneCountInString(s) > maxPathLength:
		p.errorAt(n, "", "path is longer than %d characters", maxPathLength)
	case path.IsAbs(s):
		p.errorAt(n, "", "path %q must be relative to the workspace", s)
	case slices.Contains(strings.Split(s, "/"), ".."):
		p.errorAt(n, "", `path %q must not contain ".."`, s)
	case glob:
		if _, err := path.Match(s, ""); err != nil {
			p.errorAt(n, "", "invalid glob pattern %q", s)
		}
	}
	return s
}

func (p *parser) services(n *yaml.Node) []*sourcev1.ServiceSpec {
	var services []*sourcev1.ServiceSpec
	names := make(map[string]int)
	for _, item := range p.list(n, "services", maxServices) {
		svc := &sourcev1.ServiceSpec{}
		p.fields(item,
			field{key: "name", required: true, decode: func(n *yaml.Node) { svc.Name = p.serviceName(n, names) }},
			field{key: "image", required: true, decode: func(n *yaml.Node) { svc.Image = p.image(n) }},
			field{key: "command", decode: func(n *yaml.Node) { svc.Command = p.args(n) }},
			field{key: "env", decode: func(n *yaml.Node) { svc.Env = p.serviceEnv(n) }},
		)
		services = append(services, svc)
	}
	return services
}

// serviceName decodes a service's name, the host name its stage's steps
// reach it by.
func (p *parser) serviceName(n *yaml.Node, seen map[string]int) string {
	return p.nameBy(n, "service", seen, validHostName,
		`a service's name is the host name the steps reach it by: lowercase letters, digits and "-", starting with a letter`)
}

// validHostName reports whether s matches ^[a-z][a-z0-9-]*$.
func validHostName(s string) bool {
	for i, r := range s {
		switch {
		case 'a' <= r && r <= 'z':
		case ('0' <= r && r <= '9' || r == '-') && i > 0:
		default:
			return false
		}
	}
	return s != ""
}

// image decodes a container image reference, by the rule of Step.image in
// pipeline.proto.
func (p *parser) image(n *yaml.Node) string {
	s, ok := p.str(n)
	if !ok {
		return ""
	}
	p.checkImage(resolve(n), s)
	return s
}

// checkImage reports at n what is wrong with the image reference s.
func (p *parser) checkImage(n *yaml.Node, s string) {
	switch {
	case s == "":
		p.errorAt(n, "", "image must not be empty")
	case len(s) > maxImageLength:
		p.errorAt(n, "", "image is longer than %d characters", maxImageLength)
	default:
		err := protovalidate.Validate(&sourcev1.Step{Name: "x", Run: "x", Image: s})
		var invalid *protovalidate.ValidationError
		if errors.As(err, &invalid) && len(invalid.Violations) > 0 {
			p.errorAt(n, `e.g. golang:1.25, docker.io/library/postgres:17 or registry.example.com:5000/team/tool@sha256:<64 hex digits>`,
				"invalid image %q: expected [registry/]name[:tag][@sha256:digest], in lowercase", s)
		}
	}
}

// args decodes a command given as a list of arguments.
func (p *parser) args(n *yaml.Node) []string {
	var args []string
	for _, item := range p.list(n, "command arguments", maxCommandArgs) {
		s, ok := p.str(item)
		switch {
		case !ok:
		case len(s) > maxArgSize:
			p.errorAt(resolve(item), "", "argument is %d bytes long; at most %d are allowed", len(s), maxArgSize)
		case strings.ContainsRune(s, 0):
			p.errorAt(resolve(item), "", "argument must not contain a NUL character")
		}
		args = append(args, s)
	}
	if len(args) == 0 && resolve(n).Kind == yaml.SequenceNode {
		p.errorAt(resolve(n), "leave command out to run the image's own", "command must not be empty")
	}
	return args
}

// serviceEnv decodes a service's env: plain values only (a service gets
// no secrets).
func (p *parser) serviceEnv(n *yaml.Node) map[string]string {
	env, secrets := p.env(n)
	if len(secrets) > 0 {
		p.errorAt(resolve(n), "give the service a value of its own, for the tests only", "a service's env cannot take secrets")
	}
	return env
}
