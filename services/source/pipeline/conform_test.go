package pipeline

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"

	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

// limitCase is a file at or just over one of the limits pipeline.proto
// sets: at the limit it is accepted, over it refused with want.
type limitCase struct {
	name string
	yaml string
	// want is the one problem reported; "" when the file is accepted.
	want string
}

// repeat is item(0), item(1), ... item(n-1).
func repeat(n int, item func(i int) string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = item(i)
	}
	return out
}

// lines is head followed by n lines, line(i) each.
func lines(head string, n int, line func(i int) string) string {
	var b strings.Builder
	b.WriteString(head)
	for i := range n {
		b.WriteString(line(i) + "\n")
	}
	return b.String()
}

// stepsYAML is a build section of n steps named s0, s1, ...
func stepsYAML(n int) string {
	return lines("version: 1\nbuild:\n  steps:\n", n, func(i int) string { return fmt.Sprintf("    - {name: s%d, run: make}", i) })
}

// listYAML is "version: 1" and section: {key: [item(0), item(1), ...]}.
func listYAML(section, key string, n int, item func(i int) string) string {
	items := make([]string, n)
	for i := range items {
		items[i] = item(i)
	}
	return fmt.Sprintf("version: 1\n%s:\n  %s: [%s]\n", section, key, strings.Join(items, ", "))
}

// envYAML is one step with n variables V0, V1, ...
func envYAML(n int) string {
	return lines("version: 1\nbuild:\n  steps:\n    - name: a\n      run: make\n      env:\n", n,
		func(i int) string { return fmt.Sprintf("        V%d: x", i) })
}

func stepYAML(field, value string) string {
	return fmt.Sprintf("version: 1\nbuild:\n  steps:\n    - name: a\n      run: make\n      %s: %s\n", field, value)
}

func environmentYAML(lines string) string {
	return "version: 1\nrelease:\n  branches: [main]\n  environments:\n    - name: staging\n      deploy: ./deploy.sh\n" + lines
}

func limitCases() []limitCase {
	artifact := func(i int) string { return fmt.Sprintf("{name: a%d, path: a%d}", i, i) }
	report := func(i int) string { return fmt.Sprintf("{path: r%d.xml, format: junit}", i) }
	branch := func(i int) string { return fmt.Sprintf("b%d", i) }
	environment := func(i int) string { return fmt.Sprintf("{name: e%d, deploy: ./deploy.sh}", i) }
	withBranch := func(s string) string { return strings.Replace(s, "release:\n", "release:\n  branches: [main]\n", 1) }
	// on.tag and on.push.paths: a build, then the list at line 5.
	onList := func(key string, n int, item func(i int) string) string {
		return strings.Replace(listYAML("on", key, n, item), "version: 1\n", "version: 1\nbuild:\n  steps: [{name: a, run: x}]\n", 1)
	}
	cronAt := func(i int) string { return fmt.Sprintf(`{cron: "%d 3 * * *"}`, i) }
	onPaths := func(n int, item func(i int) string) string {
		return strings.Replace(onList("push", 0, nil), "push: []", "push:\n    paths: ["+strings.Join(repeat(n, item), ", ")+"]", 1)
	}
	return []limitCase{
		{"schedules at the limit", onList("schedule", maxSchedules, cronAt), ""},
		{"schedules over the limit", onList("schedule", maxSchedules+1, cronAt), `.sluice.yaml:5:13: too many schedules: 11, at most 10 are allowed`},
		{"tag patterns at the limit", onList("tag", maxPatterns, branch), ""},
		{"tag patterns over the limit", onList("tag", maxPatterns+1, branch), `.sluice.yaml:5:8: too many tag patterns: 51, at most 50 are allowed`},
		{"tag pattern at the limit", onList("tag", 1, func(int) string { return strings.Repeat("t", maxPatternLength) }), ""},
		{"tag pattern over the limit", onList("tag", 1, func(int) string { return strings.Repeat("t", maxPatternLength+1) }),
			`.sluice.yaml:5:9: tag pattern is longer than 255 characters`},
		{"path pattern at the limit", onPaths(1, func(int) string { return strings.Repeat("p", maxPathPattern) }), ""},
		{"path pattern over the limit", onPaths(1, func(int) string { return strings.Repeat("p", maxPathPattern+1) }),
			`.sluice.yaml:6:13: path pattern is longer than 1024 characters`},
		{"steps at the limit", stepsYAML(maxSteps), ""},
		{"steps over the limit", stepsYAML(maxSteps + 1), `.sluice.yaml:4:5: too many steps: 101, at most 100 are allowed`},
		{"artifacts at the limit", listYAML("build", "artifacts", maxArtifacts, artifact), ""},
		{"artifacts over the limit", listYAML("build", "artifacts", maxArtifacts+1, artifact), `.sluice.yaml:3:14: too many artifacts: 101, at most 100 are allowed`},
		{"reports at the limit", listYAML("test", "reports", maxReports, report), ""},
		{"reports over the limit", listYAML("test", "reports", maxReports+1, report), `.sluice.yaml:3:12: too many reports: 51, at most 50 are allowed`},
		{"branches at the limit", listYAML("release", "branches", maxBranches, branch), ""},
		{"branches over the limit", listYAML("release", "branches", maxBranches+1, branch), `.sluice.yaml:3:13: too many branches: 51, at most 50 are allowed`},
		{"environments at the limit", withBranch(listYAML("release", "environments", maxEnvironments, environment)), ""},
		{"environments over the limit", withBranch(listYAML("release", "environments", maxEnvironments+1, environment)), `.sluice.yaml:4:17: too many environments: 21, at most 20 are allowed`},
		{"branch name at the limit", listYAML("release", "branches", 1, func(int) string { return strings.Repeat("é", maxBranchLength) }), ""},
		{"branch name over the limit", listYAML("release", "branches", 1, func(int) string { return strings.Repeat("b", maxBranchLength+1) }),
			`.sluice.yaml:3:14: branch name "` + strings.Repeat("b", maxBranchLength+1) + `" is longer than 255 characters`},
		{"command at the limit", stepYAML("timeout", "1s") + "    - {name: b, run: " + strings.Repeat("x", maxCommandSize) + "}\n", ""},
		{"command over the limit", stepYAML("timeout", "1s") + "    - {name: b, run: " + strings.Repeat("x", maxCommandSize+1) + "}\n",
			`.sluice.yaml:7:22: command is 65537 bytes long; at most 65536 are allowed (hint: put the commands in a script in the repository and run that)`},
		{"deploy over the limit", "version: 1\nrelease:\n  branches: [main]\n  environments:\n    - {name: e, deploy: " + strings.Repeat("x", maxCommandSize+1) + "}\n",
			`.sluice.yaml:5:25: command is 65537 bytes long; at most 65536 are allowed (hint: put the commands in a script in the repository and run that)`},
		{"verify command over the limit", environmentYAML("      verify: {command: " + strings.Repeat("x", maxCommandSize+1) + "}\n"),
			`.sluice.yaml:7:25: command is 65537 bytes long; at most 65536 are allowed (hint: put the commands in a script in the repository and run that)`},
		{"a NUL in a command", stepYAML("timeout", "1s") + "    - {name: b, run: \"a\\0b\"}\n", `.sluice.yaml:7:22: command must not contain a NUL character`},
		{"variables at the limit", envYAML(maxEnvVars), ""},
		{"variables over the limit", envYAML(maxEnvVars + 1), `.sluice.yaml:7:9: too many environment variables: 101, at most 100 are allowed`},
		{"variable name at the limit", stepYAML("env", "{"+strings.Repeat("V", maxEnvNameLength)+": x}"), ""},
		{"variable name over the limit", stepYAML("env", "{"+strings.Repeat("V", maxEnvNameLength+1)+": x}"),
			`.sluice.yaml:6:13: environment variable name "` + strings.Repeat("V", maxEnvNameLength+1) + `" is longer than 128 characters`},
		{"variable value at the limit", stepYAML("env", "{V: "+strings.Repeat("x", maxEnvValueSize)+"}"), ""},
		{"variable value over the limit", environmentYAML("      env: {V: " + strings.Repeat("x", maxEnvValueSize+1) + "}\n"),
			`.sluice.yaml:7:16: the value of V is 8193 bytes long; at most 8192 are allowed (hint: keep a long value in a file in the repository)`},
		{"a NUL in a value", stepYAML("env", `{V: "a\0"}`), `.sluice.yaml:6:16: the value of V must not contain a NUL character`},
		{"path at the limit", listYAML("build", "artifacts", 1, func(int) string { return "{name: a, path: " + strings.Repeat("p", maxPathLength) + "}" }), ""},
		{"path over the limit", listYAML("test", "reports", 1, func(int) string { return "{path: " + strings.Repeat("p", maxPathLength+1) + ", format: junit}" }),
			`.sluice.yaml:3:20: path is longer than 1024 characters`},
		{"URL at the limit", environmentYAML("      verify: {http: http://h/" + strings.Repeat("u", maxURLLength-len("http://h/")) + "}\n"), ""},
		{"URL over the limit", environmentYAML("      verify: {http: http://h/" + strings.Repeat("u", maxURLLength+1-len("http://h/")) + "}\n"),
			`.sluice.yaml:7:22: URL is longer than 2048 characters`},
		{"URL with a space", environmentYAML("      verify: {http: \"http://h/a b\"}\n"),
			`.sluice.yaml:7:22: invalid URL "http://h/a b": must be a valid URI (hint: percent-encode what a URL cannot hold as it is (a space is "%20"))`},
		{"URL with two fragments", environmentYAML("      verify: {http: \"http://h/#a#b\"}\n"),
			`.sluice.yaml:7:22: invalid URL "http://h/#a#b": must be a valid URI (hint: percent-encode what a URL cannot hold as it is (a space is "%20"))`},
		{"URL in capitals", environmentYAML("      verify: {http: \"HTTP://h/\"}\n"),
			`.sluice.yaml:7:22: invalid URL "HTTP://h/": expected an absolute http:// or https:// URL (hint: e.g. http://127.0.0.1:8080/healthz)`},
	}
}

// acceptedByTheParser decodes data with the parser's own checks only,
// without the protovalidate check Parse makes last: nil when they refuse
// it.
func acceptedByTheParser(data []byte) *sourcev1.Pipeline {
	p := &parser{file: file}
	pipeline := p.parse(data)
	if len(p.errs) > 0 {
		return nil
	}
	return pipeline
}

// checkConforms fails when the parser's own checks accept data while the
// rules of pipeline.proto refuse the pipeline, or it cannot be encoded:
// such a pipeline would fail its run only when it is published.
func checkConforms(t *testing.T, data []byte) {
	t.Helper()
	pipeline := acceptedByTheParser(data)
	if pipeline == nil {
		return
	}
	if err := protovalidate.Validate(pipeline); err != nil {
		t.Fatalf("the parser accepts a pipeline that pipeline.proto refuses: %v\nfile:\n%s", err, data)
	}
	if _, err := proto.Marshal(pipeline); err != nil {
		t.Fatalf("the parser accepts a pipeline that cannot be encoded: %v\nfile:\n%s", err, data)
	}
	if _, err := Parse(file, data); err != nil {
		t.Fatalf("Parse refuses what its checks accept: %v", err)
	}
}

// seeds are every file of this package's tests.
func seeds() []string {
	var out []string
	for _, c := range validCases {
		out = append(out, c.yaml)
	}
	for _, c := range errorCases {
		out = append(out, c.yaml)
	}
	for _, c := range limitCases() {
		out = append(out, c.yaml)
	}
	out = append(out, stepModelPipeline)
	for _, c := range stepModelErrorCases {
		out = append(out, c.yaml)
	}
	return out
}

func TestLimits(t *testing.T) {
	t.Parallel()
	for _, c := range limitCases() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse(file, []byte(c.yaml))
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("Parse refused a file within the limits: %v", err)
			case c.want != "" && (err == nil || err.Error() != c.want):
				t.Fatalf("Parse error:\n%v\nwant:\n%v", err, c.want)
			}
		})
	}
}

// TestAcceptedPipelinesConform runs every file of the tests through the
// parser's own checks: each one they accept passes protovalidate.
func TestAcceptedPipelinesConform(t *testing.T) {
	t.Parallel()
	accepted := 0
	for _, s := range seeds() {
		checkConforms(t, []byte(s))
		if acceptedByTheParser([]byte(s)) != nil {
			accepted++
		}
	}
	if accepted < len(validCases) {
		t.Fatalf("only %d of the files were accepted; the test checks nothing", accepted)
	}
}

// FuzzParse holds the parser to the rules of pipeline.proto: whatever its
// own checks accept, protovalidate accepts too. And whatever the file, the
// message refusing it fits in a run's events. Its corpus,
// testdata/fuzz/FuzzParse, holds hostile files (aliases standing for
// billions of nodes or for megabytes of values, deep nesting, many long
// problems). Run it with go test -fuzz FuzzParse ./services/source/pipeline
// or make fuzz.
func FuzzParse(f *testing.F) {
	for _, s := range seeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkConforms(t, data)
		if _, err := Parse(file, data); err != nil && len(err.Error()) > maxMessage {
			t.Fatalf("the message is %d bytes long; a run's reason holds at most %d", len(err.Error()), maxMessage)
		}
	})
}

// maxMessage bounds what Parse's message may take of a run's events:
// MaxListed lines and the count of the rest, each line quoting at most
// maxQuoted bytes of the file (escaped, up to 10 bytes each: \U0010ffff)
// in the message, and again in a hint.
const maxMessage = (MaxListed + 1) * (2*10*maxQuoted + 512)

// TestConformNamesTheField checks the last line of defence: a pipeline
// that breaks the proto's rules is refused with errors naming each field.
func TestConformNamesTheField(t *testing.T) {
	t.Parallel()
	bad := &sourcev1.Pipeline{
		Build: &sourcev1.BuildSpec{Steps: []*sourcev1.Step{{Name: "Bad", Run: "make"}, {Name: "ok"}}},
		Release: &sourcev1.ReleaseSpec{Environments: []*sourcev1.EnvironmentSpec{{
			Name: "e", Deploy: "x", Verify: &sourcev1.VerifySpec{Check: &sourcev1.VerifySpec_Http{Http: "http://h/a b"}},
		}}},
	}
	errs, err := conform(file, bad)
	if err != nil {
		t.Fatal(err)
	}
	got := errs.Error()
	for _, want := range []string{
		".sluice.yaml: build.steps[0].name: does not match regex pattern",
		".sluice.yaml: build.steps[1].run: must be at least 1 characters",
		".sluice.yaml: release.environments[0].verify.http: must be a valid URI",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("conform reported:\n%s\nwant a line with %q", got, want)
		}
	}
	if errs, err := conform(file, validCases[0].want); err != nil || len(errs) != 0 {
		t.Fatalf("conform refused a valid pipeline: %v %v", errs, err)
	}
	var asErrors *Errors
	if _, err := Parse(file, []byte(validCases[0].yaml)); errors.As(err, &asErrors) {
		t.Fatalf("Parse: %v", err)
	}
}

// A file whose every field is within its limit may still make events too
// large for NATS: the pipeline's encoded size is bounded too, so such a
// file fails its run at source like any invalid file (as 12 commands of
// 65000 quotes would: each quote is two bytes in JSON).
func TestEncodedSizeIsBounded(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("version: 1\nbuild:\n  steps:\n")
	for i := range 12 {
		fmt.Fprintf(&b, "    - name: s%d\n      run: '%s'\n", i, strings.Repeat(`"`, 65000))
	}
	_, err := Parse(".sluice.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "bytes once encoded; at most") {
		t.Fatalf("Parse: %v; want the encoded size refused", err)
	}
	// Within the bound it parses.
	small := "version: 1\nbuild:\n  steps:\n    - name: s\n      run: '" + strings.Repeat(`"`, 65000) + "'\n"
	if _, err := Parse(".sluice.yaml", []byte(small)); err != nil {
		t.Fatalf("one long command: %v", err)
	}
}
