package pipeline

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

const file = ".sluice.yaml"

// validCases are files Parse accepts, with what it makes of them.
var validCases = []struct {
	name string
	yaml string
	want *sourcev1.Pipeline
}{
	{
		name: "full",
		yaml: `
version: 1
build:
  steps:
    - name: compile
      run: go build -o bin/hello .
      timeout: 5m
      env:
        CGO_ENABLED: 0
        GOFLAGS: -trimpath
        VERBOSE: true
        RATIO: 0.5
    - name: package
      run: |
        tar czf bin/hello.tgz bin/hello
        echo done
  artifacts:
    - name: hello
      path: bin/hello
    - name: hello-tgz
      path: ./bin/hello.tgz
test:
  steps:
    - name: unit
      run: go test -json ./... > reports/go-test.json
      timeout: 1h30m
  reports:
    - path: reports/go-test.json
      format: go-test-json
    - path: reports/*.xml
      format: junit
release:
  branches: [main, release-1.x]
  environments:
    - name: staging
      deploy: ./deploy.sh staging
      deploy_timeout: 2m
      env: {PORT: "18080", DEBUG: false}
      verify:
        http: http://127.0.0.1:18080/healthz
        timeout: 30s
    - name: production
      deploy: ./deploy.sh production
      on_interrupt: redeploy
      verify:
        command: curl -f https://example.com/healthz
`,
		want: &sourcev1.Pipeline{
			Build: &sourcev1.BuildSpec{
				Steps: []*sourcev1.Step{
					{
						Name:    "compile",
						Run:     "go build -o bin/hello .",
						Timeout: durationpb.New(5 * time.Minute),
						Env:     map[string]string{"CGO_ENABLED": "0", "GOFLAGS": "-trimpath", "VERBOSE": "true", "RATIO": "0.5"},
					},
					{Name: "package", Run: "tar czf bin/hello.tgz bin/hello\necho done\n"},
				},
				Artifacts: []*sourcev1.ArtifactSpec{
					{Name: "hello", Path: "bin/hello"},
					{Name: "hello-tgz", Path: "./bin/hello.tgz"},
				},
			},
			Test: &sourcev1.TestSpec{
				Steps: []*sourcev1.Step{{
					Name:    "unit",
					Run:     "go test -json ./... > reports/go-test.json",
					Timeout: durationpb.New(90 * time.Minute),
				}},
				Reports: []*sourcev1.ReportSpec{
					{Path: "reports/go-test.json", Format: sourcev1.ReportFormat_REPORT_FORMAT_GO_TEST_JSON},
					{Path: "reports/*.xml", Format: sourcev1.ReportFormat_REPORT_FORMAT_JUNIT_XML},
				},
			},
			Release: &sourcev1.ReleaseSpec{
				Branches: []string{"main", "release-1.x"},
				Environments: []*sourcev1.EnvironmentSpec{
					{
						Name:          "staging",
						Deploy:        "./deploy.sh staging",
						DeployTimeout: durationpb.New(2 * time.Minute),
						Env:           map[string]string{"PORT": "18080", "DEBUG": "false"},
						Verify: &sourcev1.VerifySpec{
							Check:   &sourcev1.VerifySpec_Http{Http: "http://127.0.0.1:18080/healthz"},
							Timeout: durationpb.New(30 * time.Second),
						},
					},
					{
						Name:        "production",
						Deploy:      "./deploy.sh production",
						OnInterrupt: sourcev1.OnInterrupt_ON_INTERRUPT_REDEPLOY,
						Verify: &sourcev1.VerifySpec{
							Check: &sourcev1.VerifySpec_Command{Command: "curl -f https://example.com/healthz"},
						},
					},
				},
			},
		},
	},
	{
		name: "build only",
		yaml: "version: 1\nbuild:\n  steps:\n    - {name: a, run: make}\n",
		want: &sourcev1.Pipeline{Build: &sourcev1.BuildSpec{
			Steps: []*sourcev1.Step{{Name: "a", Run: "make"}},
		}},
	},
	{
		name: "empty sections",
		yaml: "version: 1\ntest: {}\nrelease:\n  branches: [main]\n",
		want: &sourcev1.Pipeline{
			Test:    &sourcev1.TestSpec{},
			Release: &sourcev1.ReleaseSpec{Branches: []string{"main"}},
		},
	},
	{
		name: "secrets",
		yaml: `
version: 1
build:
  steps:
    - name: publish
      run: ./publish.sh
      env:
        REGISTRY: registry.example.com
        TOKEN: {secret: REGISTRY_TOKEN}
release:
  branches: [main]
  environments:
    - name: prod
      deploy: ./deploy.sh
      env:
        KUBECONFIG_DATA: {secret: PROD_KUBECONFIG}
`,
		want: &sourcev1.Pipeline{
			Build: &sourcev1.BuildSpec{Steps: []*sourcev1.Step{{
				Name: "publish", Run: "./publish.sh",
				Env:     map[string]string{"REGISTRY": "registry.example.com"},
				Secrets: map[string]string{"TOKEN": "REGISTRY_TOKEN"},
			}}},
			Release: &sourcev1.ReleaseSpec{Branches: []string{"main"}, Environments: []*sourcev1.EnvironmentSpec{{
				Name: "prod", Deploy: "./deploy.sh",
				Env:     map[string]string{},
				Secrets: map[string]string{"KUBECONFIG_DATA": "PROD_KUBECONFIG"},
			}}},
		},
	},
	{
		name: "aliases",
		yaml: `
version: 1
build:
  steps:
    - name: a
      run: make a
      env: &common {GOOS: linux}
    - name: b
      run: make b
      env: *common
`,
		want: &sourcev1.Pipeline{Build: &sourcev1.BuildSpec{
			Steps: []*sourcev1.Step{
				{Name: "a", Run: "make a", Env: map[string]string{"GOOS": "linux"}},
				{Name: "b", Run: "make b", Env: map[string]string{"GOOS": "linux"}},
			},
		}},
	},
	{
		name: "concurrency",
		yaml: `
version: 1
build:
  steps: [{name: a, run: x}]
concurrency:
  group: branch
  limit: 2
  cancel_superseded: true
`,
		want: &sourcev1.Pipeline{
			Build:       &sourcev1.BuildSpec{Steps: []*sourcev1.Step{{Name: "a", Run: "x"}}},
			Concurrency: &sourcev1.Concurrency{Group: sourcev1.ConcurrencyScope_CONCURRENCY_SCOPE_BRANCH, Limit: 2, CancelSuperseded: true},
		},
	},
	{
		name: "caches",
		yaml: `version: 1
build:
  steps: [{name: a, run: x}]
  cache:
    - key: "go-${{ hashFiles('**/go.sum') }}"
      paths: [~/go/pkg/mod, ~/.cache/go-build]
test:
  steps: [{name: t, run: y}]
  cache:
    - {key: tools, paths: [.tools]}
`,
		want: &sourcev1.Pipeline{
			Build: &sourcev1.BuildSpec{
				Steps:  []*sourcev1.Step{{Name: "a", Run: "x"}},
				Caches: []*sourcev1.CacheSpec{{Key: "go-${{ hashFiles('**/go.sum') }}", Paths: []string{"~/go/pkg/mod", "~/.cache/go-build"}}},
			},
			Test: &sourcev1.TestSpec{
				Steps:  []*sourcev1.Step{{Name: "t", Run: "y"}},
				Caches: []*sourcev1.CacheSpec{{Key: "tools", Paths: []string{".tools"}}},
			},
		},
	},
}

// containerCases are pipelines with steps in images and services.
var containerCases = []struct {
	name string
	yaml string
	want *sourcev1.Pipeline
}{{
	name: "images and services",
	yaml: `
version: 1
build:
  services:
    - name: cache
      image: registry.example.com:5000/team/cache@sha256:` + strings.Repeat("a", 64) + `
  steps:
    - {name: compile, run: go build ./..., image: "golang:1.25"}
    - {name: host, run: make}
test:
  services:
    - name: db
      image: postgres:17
      command: [postgres, -c, fsync=off]
      env: {POSTGRES_PASSWORD: test}
  steps:
    - {name: unit, run: go test ./..., image: golang:1.25, env: {DATABASE_URL: "postgres://postgres:test@db/postgres"}}
`,
	want: &sourcev1.Pipeline{
		Build: &sourcev1.BuildSpec{
			Services: []*sourcev1.ServiceSpec{{Name: "cache", Image: "registry.example.com:5000/team/cache@sha256:" + strings.Repeat("a", 64)}},
			Steps: []*sourcev1.Step{
				{Name: "compile", Run: "go build ./...", Image: "golang:1.25"},
				{Name: "host", Run: "make"},
			},
		},
		Test: &sourcev1.TestSpec{
			Services: []*sourcev1.ServiceSpec{{Name: "db", Image: "postgres:17", Command: []string{"postgres", "-c", "fsync=off"}, Env: map[string]string{"POSTGRES_PASSWORD": "test"}}},
			Steps:    []*sourcev1.Step{{Name: "unit", Run: "go test ./...", Image: "golang:1.25", Env: map[string]string{"DATABASE_URL": "postgres://postgres:test@db/postgres"}}},
		},
	},
}}

func init() { validCases = append(validCases, containerCases...) }

func TestParseValid(t *testing.T) {
	t.Parallel()
	for _, tt := range validCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(file, []byte(tt.yaml))
			if err != nil {
				t.Fatalf("Parse: unexpected error:\n%v", err)
			}
			if !proto.Equal(got, tt.want) {
				t.Errorf("Parse mismatch\ngot:\n%v\nwant:\n%v", prototext.Format(got), prototext.Format(tt.want))
			}
		})
	}
}

// errorCases are files Parse refuses, with every problem it reports.
var errorCases = []struct {
	name string
	yaml string
	want []string
}{
	{
		name: "concurrency",
		yaml: `version: 1
build:
  steps: [{name: a, run: x}]
concurrency:
  group: branches
  limit: 0
  cancel_superseded: "yes"
  queue: fifo
`,
		want: []string{
			`.sluice.yaml:5:10: unknown concurrency group "branches" (hint: did you mean "branch"?)`,
			`.sluice.yaml:6:10: limit must be from 1 to 100, got 0`,
			`.sluice.yaml:7:22: expected a boolean, got a string (hint: write true or false)`,
			`.sluice.yaml:8:3: unknown key "queue"`,
		},
	},
	{
		name: "caches",
		yaml: `version: 1
build:
  steps: [{name: a, run: x}]
  cache:
    - key: "go-${{ hashFile('go.sum') }}"
      paths: [/root/go, ~root/x, ~/, a/../../b, .c, .c, ~/./]
    - key: go-${{ 1..3 }}
      paths: []
    - paths: [x]
      size: 3
`,
		want: []string{
			`.sluice.yaml:5:20: cache key: unknown name hashFile (hint: see docs/pipeline.md, "Caches")`,
			`.sluice.yaml:6:15: path "/root/go" must be relative to the workspace`,
			`.sluice.yaml:6:25: path "~root/x": only the steps' own home (~/) may be named (hint: write "~/" and a path for the steps' home)`,
			`.sluice.yaml:6:34: path "~/" names the whole home; name the directories to keep`,
			`.sluice.yaml:6:38: path "a/../../b" must not contain ".."`,
			`.sluice.yaml:6:53: path ".c" is listed twice`,
			`.sluice.yaml:6:57: path "~/./" names the whole home; name the directories to keep`,
			`.sluice.yaml:7:18: cache key: expected string, but got []interface {} (hint: see docs/pipeline.md, "Caches")`,
			`.sluice.yaml:8:14: a cache needs at least one path`,
			`.sluice.yaml:9:7: missing required key "key"`,
			`.sluice.yaml:10:7: unknown key "size"`,
		},
	},
	{
		name: "artifact glob",
		yaml: "version: 1\nbuild:\n  steps: [{name: a, run: x}]\n  artifacts: [{name: web, path: \"dist/[a\"}]\n",
		want: []string{`.sluice.yaml:4:33: invalid glob pattern "dist/[a" (hint: globs are *, ?, [...], {a,b} and ** for any folders)`},
	},
	{
		name: "concurrency without a group",
		yaml: "version: 1\nbuild:\n  steps: [{name: a, run: x}]\nconcurrency: {limit: 2}\n",
		want: []string{`.sluice.yaml:4:14: missing required key "group"`},
	},
	{
		name: "statuses of an unknown kind",
		yaml: "version: 1\nbuild:\n  steps: [{name: a, run: x}]\nstatuses: stage\n",
		want: []string{`.sluice.yaml:4:11: unknown statuses "stage" (hint: did you mean "stages"?)`},
	},
	// on:
	{
		name: "on with an unknown trigger",
		yaml: "version: 1\nbuild:\n  steps: [{name: a, run: x}]\non:\n  pull: {}\n",
		want: []string{`.sluice.yaml:5:3: unknown key "pull" (hint: did you mean "push"?)`},
	},
	{
		name: "on.push.branches malformed",
		yaml: "version: 1\nbuild:\n  steps: [{name: a, run: x}]\non:\n  push:\n    branches: [main, \"release/[\", main, \"\"]\n",
		want: []string{
			`.sluice.yaml:6:22: invalid branch pattern "release/[" (hint: globs are *, ?, [...], {a,b} (not nested, at most 64 combinations) and ** across "/")`,
			`.sluice.yaml:6:35: branch pattern "main" is listed twice`,
			`.sluice.yaml:6:41: branch pattern must not be empty`,
		},
	},
	{
		name: "on.push.paths absolute, empty list of tags",
		yaml: "version: 1\nbuild:\n  steps: [{name: a, run: x}]\non:\n  push:\n    paths: [/src/**]\n  tag: []\n",
		want: []string{
			`.sluice.yaml:6:13: path pattern "/src/**": paths are relative to the repository's root (hint: write "services/api/**", not "/services/api/**")`,
			`.sluice.yaml:7:8: tag must list at least one tag pattern (hint: leave the key out instead)`,
		},
	},
	{
		name: "on.schedule malformed",
		yaml: "version: 1\nbuild:\n  steps: [{name: a, run: x}]\non:\n  schedule:\n    - cron: \"61 * * * *\"\n    - cron: \"@every 1s\"\n    - {cron: \"0 3 * * *\", branch: \"\"}\n    - branch: main\n    - cron: \"CRON_TZ=Europe/Paris 0 3 * * *\"\n    - cron: \"@daily\"\n    - cron: \"@daily\"\n    - cron: \"0 0 30 2 *\"\n",
		want: []string{
			`.sluice.yaml:6:13: cron "61 * * * *": end of range (61) above maximum (59): 61 (hint: five fields, minute hour day-of-month month day-of-week, in UTC: "0 3 * * *" is 03:00 every day; or @daily, @hourly, ...)`,
			`.sluice.yaml:7:13: cron "@every 1s": @every is not taken; write five fields, e.g. "*/15 * * * *" (hint: five fields, minute hour day-of-month month day-of-week, in UTC: "0 3 * * *" is 03:00 every day; or @daily, @hourly, ...)`,
			`.sluice.yaml:8:35: branch name must not be empty (hint: leave branch out for the repository's branch)`,
			`.sluice.yaml:9:7: missing required key "cron"`,
			`.sluice.yaml:10:13: cron "CRON_TZ=Europe/Paris 0 3 * * *": schedules are in UTC; leave out the time zone (hint: five fields, minute hour day-of-month month day-of-week, in UTC: "0 3 * * *" is 03:00 every day; or @daily, @hourly, ...)`,
			`.sluice.yaml:12:13: the same schedule is listed twice (first at line 11)`,
			`.sluice.yaml:13:13: cron "0 0 30 2 *" never fires`,
		},
	},
	{
		name: "on.tag not a list",
		yaml: "version: 1\nbuild:\n  steps: [{name: a, run: x}]\non:\n  tag: v*\n",
		want: []string{`.sluice.yaml:5:8: expected a list, got a string`},
	},
	// The file as a whole.
	{
		name: "empty file",
		yaml: "",
		want: []string{`.sluice.yaml:1:1: the pipeline file is empty (hint: start with "version: 1" and add a build, test or release section)`},
	},
	{
		name: "only comments",
		yaml: "# nothing yet\n",
		want: []string{`.sluice.yaml:1:1: the pipeline file is empty (hint: start with "version: 1" and add a build, test or release section)`},
	},
	{
		name: "syntax error with line",
		yaml: "version: 1\nbuild: a: b\n",
		want: []string{`.sluice.yaml:2: invalid YAML: mapping values are not allowed in this context`},
	},
	{
		name: "syntax error without line",
		yaml: "version: 1: 2\n",
		want: []string{`.sluice.yaml: invalid YAML: mapping values are not allowed in this context`},
	},
	{
		name: "two documents",
		yaml: "version: 1\nbuild: {}\n---\nversion: 1\n",
		want: []string{`.sluice.yaml:3:1: only one YAML document is allowed`},
	},
	{
		name: "top level is a list",
		yaml: "- version: 1\n",
		want: []string{`.sluice.yaml:1:1: expected a mapping, got a list`},
	},
	{
		name: "nothing to do and no version",
		yaml: "# a comment\nbiuld: {}\n",
		want: []string{
			`.sluice.yaml:2:1: unknown key "biuld" (hint: did you mean "build"?)`,
			`.sluice.yaml:2:1: missing required key "version" (hint: start the file with "version: 1")`,
			`.sluice.yaml:2:1: the pipeline has nothing to do (hint: add a build, test or release section)`,
		},
	},
	{
		name: "null document",
		yaml: "~\n",
		want: []string{`.sluice.yaml:1:1: the pipeline file is empty (hint: start with "version: 1" and add a build, test or release section)`},
	},
	{
		name: "unsupported version",
		yaml: "version: 2\nbuild: {}\n",
		want: []string{`.sluice.yaml:1:10: unsupported version 2; the only supported version is 1`},
	},
	{
		name: "version is a string",
		yaml: "version: \"1\"\nbuild: {}\n",
		want: []string{`.sluice.yaml:1:10: expected a number, got a string (hint: write version: 1)`},
	},
	{
		name: "duplicate key",
		yaml: "version: 1\nbuild: {}\nversion: 1\n",
		want: []string{`.sluice.yaml:3:1: mapping key "version" already defined at line 1`},
	},

	{
		name: "merge key",
		yaml: "version: 1\nbuild:\n  steps:\n    - &a {name: a, run: make}\n    - <<: *a\n      name: b\n",
		want: []string{
			`.sluice.yaml:5:7: unknown key "<<"`,
			`.sluice.yaml:5:7: missing required key "run"`,
		},
	},

	// Keys and types.
	{
		name: "unknown keys",
		yaml: "version: 1\nbuild:\n  stpes: []\n  caches: true\n",
		want: []string{
			`.sluice.yaml:3:3: unknown key "stpes" (hint: did you mean "steps"?)`,
			`.sluice.yaml:4:3: unknown key "caches" (hint: did you mean "cache"?)`,
		},
	},
	{
		name: "wrong types",
		yaml: `version: 1
build:
test: []
release:
  branches: main
  environments:
    - name: 42
      deploy: [./deploy.sh]
      verify: http://localhost/
`,
		want: []string{
			`.sluice.yaml:2:7: expected a mapping, got nothing`,
			`.sluice.yaml:3:7: expected a mapping, got a list`,
			`.sluice.yaml:5:13: expected a list, got a string`,
			`.sluice.yaml:7:13: expected a string, got a number (hint: quote it: "42")`,
			`.sluice.yaml:8:15: expected a string, got a list`,
			`.sluice.yaml:9:15: expected a mapping, got a string`,
		},
	},

	// Steps.
	{
		name: "step missing keys",
		yaml: "version: 1\nbuild:\n  steps:\n    - timeout: 5 minutes\n",
		want: []string{
			`.sluice.yaml:4:7: missing required key "name"`,
			`.sluice.yaml:4:7: missing required key "run"`,
			`.sluice.yaml:4:16: invalid duration "5 minutes" (hint: use a Go duration such as "90s", "5m" or "1h30m")`,
		},
	},
	{
		name: "images and services",
		yaml: `version: 1
build:
  services:
    - {name: DB, image: postgres}
    - {name: cache, image: "Redis:7"}
    - {name: cache, image: redis, command: []}
    - {name: web, image: nginx, env: {TOKEN: {secret: T}}}
    - {image: x}
  steps:
    - {name: a, run: make, image: "golang:1.25 "}
    - {name: b, run: make, image: ""}
    - {name: c, run: make, image: [golang]}
`,
		want: []string{
			`.sluice.yaml:4:14: invalid service name "DB" (hint: a service's name is the host name the steps reach it by: lowercase letters, digits and "-", starting with a letter)`,
			`.sluice.yaml:5:28: invalid image "Redis:7": expected [registry/]name[:tag][@sha256:digest], in lowercase (hint: e.g. golang:1.25, docker.io/library/postgres:17 or registry.example.com:5000/team/tool@sha256:<64 hex digits>)`,
			`.sluice.yaml:6:14: duplicate service name "cache" (first defined at line 5)`,
			`.sluice.yaml:6:44: command must not be empty (hint: leave command out to run the image's own)`,
			`.sluice.yaml:7:38: a service's env cannot take secrets (hint: give the service a value of its own, for the tests only)`,
			`.sluice.yaml:8:7: missing required key "name"`,
			`.sluice.yaml:10:35: invalid image "golang:1.25 ": expected [registry/]name[:tag][@sha256:digest], in lowercase (hint: e.g. golang:1.25, docker.io/library/postgres:17 or registry.example.com:5000/team/tool@sha256:<64 hex digits>)`,
			`.sluice.yaml:11:35: image must not be empty`,
			`.sluice.yaml:12:35: expected a string, got a list`,
		},
	},
	{
		name: "step names",
		yaml: `version: 1
build:
  steps:
    - {name: compile, run: make}
    - {name: Compile, run: make}
    - {name: -x, run: make}
    - {name: compile, run: make}
    - {name: ` + strings.Repeat("a", 64) + `, run: make}
test:
  steps:
    - {name: compile, run: make}
`,
		want: []string{
			`.sluice.yaml:5:14: invalid step name "Compile" (hint: use lowercase letters, digits, "-" and "_", starting with a letter or digit)`,
			`.sluice.yaml:6:14: invalid step name "-x" (hint: use lowercase letters, digits, "-" and "_", starting with a letter or digit)`,
			`.sluice.yaml:7:14: duplicate step name "compile" (first defined at line 4)`,
			`.sluice.yaml:8:14: step name "` + strings.Repeat("a", 64) + `" is longer than 63 characters`,
		},
	},
	{
		name: "step run and timeouts",
		yaml: `version: 1
test:
  steps:
    - name: a
      run: "  "
      timeout: 5 minutes
    - name: b
      run: make
      timeout: 0s
    - name: c
      run: make
      timeout: 25h
    - name: d
      run: make
      timeout: 30
    - name: e
      run:
      timeout: {}
`,
		want: []string{
			`.sluice.yaml:5:12: command must not be empty`,
			`.sluice.yaml:6:16: invalid duration "5 minutes" (hint: use a Go duration such as "90s", "5m" or "1h30m")`,
			`.sluice.yaml:9:16: duration "0s" must be greater than zero`,
			`.sluice.yaml:12:16: duration "25h" must be at most 24h`,
			`.sluice.yaml:15:16: invalid duration "30" (hint: use a Go duration such as "90s", "5m" or "1h30m")`,
			`.sluice.yaml:17:11: expected a string, got nothing`,
			`.sluice.yaml:18:16: expected a duration, got a mapping`,
		},
	},
	{
		name: "step env",
		yaml: `version: 1
build:
  steps:
    - name: a
      run: make
      env:
        MY-VAR: x
        1ST: x
        SLUICE_COMMIT: x
        EMPTY:
        LIST: [a]
        OK: x
        OK: y
`,
		want: []string{
			`.sluice.yaml:7:9: invalid environment variable name "MY-VAR" (hint: use letters, digits and "_", not starting with a digit)`,
			`.sluice.yaml:8:9: invalid environment variable name "1ST" (hint: use letters, digits and "_", not starting with a digit)`,
			`.sluice.yaml:9:9: environment variable name "SLUICE_COMMIT" is reserved (hint: Sluice sets the SLUICE_ variables itself; choose another name)`,
			`.sluice.yaml:10:15: expected a string, got nothing (hint: write "" for an empty value)`,
			`.sluice.yaml:11:15: expected a string, got a list (hint: or {secret: NAME} for a secret's value)`,
			`.sluice.yaml:13:9: mapping key "OK" already defined at line 12`,
		},
	},
	{
		name: "secret references",
		yaml: `version: 1
build:
  steps:
    - name: a
      run: make
      env:
        A: {secret: 1BAD}
        B: {secret: [x]}
        C: {secrt: X}
        D: {}
release:
  branches: [main]
  environments:
    - name: prod
      deploy: ./deploy.sh
      env:
        E: {secret: "has space"}
`,
		want: []string{
			`.sluice.yaml:7:21: invalid secret name "1BAD" for A (hint: ` + "`sluice secret ls`" + ` lists the names; they use letters, digits and "_", not starting with a digit)`,
			`.sluice.yaml:8:21: expected a string, got a list`,
			`.sluice.yaml:9:12: missing required key "secret"`,
			`.sluice.yaml:9:13: unknown key "secrt" (hint: did you mean "secret"?)`,
			`.sluice.yaml:10:12: missing required key "secret"`,
			`.sluice.yaml:17:21: invalid secret name "has space" for E (hint: ` + "`sluice secret ls`" + ` lists the names; they use letters, digits and "_", not starting with a digit)`,
		},
	},

	// Artifacts and reports.
	{
		name: "artifacts",
		yaml: `version: 1
build:
  artifacts:
    - name: a
    - {name: b, path: /usr/bin/b}
    - {name: c, path: ../c}
    - {name: d, path: "out/../../d"}
    - {name: e, path: ""}
    - {name: a, path: a}
`,
		want: []string{
			`.sluice.yaml:4:7: missing required key "path"`,
			`.sluice.yaml:5:23: path "/usr/bin/b" must be relative to the workspace`,
			`.sluice.yaml:6:23: path "../c" must not contain ".."`,
			`.sluice.yaml:7:23: path "out/../../d" must not contain ".."`,
			`.sluice.yaml:8:23: path must not be empty`,
			`.sluice.yaml:9:14: duplicate artifact name "a" (first defined at line 4)`,
		},
	},
	{
		name: "reports",
		yaml: `version: 1
test:
  reports:
    - {path: a.json, format: gotest-json}
    - {path: a.xml, format: xml}
    - {path: "reports/[.xml", format: junit}
    - {path: a.json}
`,
		want: []string{
			`.sluice.yaml:4:30: unknown report format "gotest-json" (hint: did you mean "go-test-json"?)`,
			`.sluice.yaml:5:29: unknown report format "xml" (hint: the formats are "go-test-json" and "junit")`,
			`.sluice.yaml:6:14: invalid glob pattern "reports/[.xml"`,
			`.sluice.yaml:7:7: missing required key "format"`,
		},
	},

	// Release.
	{
		name: "environments without branches",
		yaml: "version: 1\nrelease:\n  environments:\n    - {name: staging, deploy: ./deploy.sh}\n",
		want: []string{
			`.sluice.yaml:3:3: release has environments but no branches or tags (hint: list the branches to release, e.g. branches: [main], or the tags, e.g. tags: ["v*"])`,
		},
	},
	{
		name: "empty branch list",
		yaml: "version: 1\nrelease:\n  branches: []\n  environments:\n    - {name: staging, deploy: ./deploy.sh}\n",
		want: []string{
			`.sluice.yaml:3:3: release has environments but no branches or tags (hint: list the branches to release, e.g. branches: [main], or the tags, e.g. tags: ["v*"])`,
		},
	},
	{
		name: "environments",
		yaml: `version: 1
release:
  branches: [main, ""]
  environments:
    - name: staging
      deploy_timout: 2m
    - name: staging
      deploy: ./deploy.sh
      deploy_timeout: -1s
      verify:
        http: http://localhost/healthz
        command: curl -f http://localhost/healthz
    - name: prod
      deploy: ./deploy.sh
      verify:
        timeout: 10s
    - name: prod2
      deploy: ./deploy.sh
      verify: {http: "ftp://example.com/"}
    - name: prod3
      deploy: ./deploy.sh
      verify: {http: /healthz}
    - name: prod4
      deploy: ./deploy.sh
      on_interrupt: redeplay
    - name: prod5
      deploy: ./deploy.sh
      on_interrupt: retry
`,
		want: []string{
			`.sluice.yaml:3:20: branch name must not be empty`,
			`.sluice.yaml:5:7: missing required key "deploy"`,
			`.sluice.yaml:6:7: unknown key "deploy_timout" (hint: did you mean "deploy_timeout"?)`,
			`.sluice.yaml:7:13: duplicate environment name "staging" (first defined at line 5)`,
			`.sluice.yaml:9:23: duration "-1s" must be greater than zero`,
			`.sluice.yaml:11:9: verify takes only one of "http" and "command"`,
			`.sluice.yaml:16:9: verify needs one of "http" or "command"`,
			`.sluice.yaml:19:22: invalid URL "ftp://example.com/": expected an absolute http:// or https:// URL (hint: e.g. http://127.0.0.1:8080/healthz)`,
			`.sluice.yaml:22:22: invalid URL "/healthz": expected an absolute http:// or https:// URL (hint: e.g. http://127.0.0.1:8080/healthz)`,
			`.sluice.yaml:25:21: unknown on_interrupt "redeplay" (hint: did you mean "redeploy"?)`,
			`.sluice.yaml:28:21: unknown on_interrupt "retry" (hint: on_interrupt is "rollback" or "redeploy")`,
		},
	},
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range errorCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			assertParseErrors(t, tt.yaml, tt.want)
		})
	}
}

// assertParseErrors checks that Parse refuses yaml with exactly want.
func assertParseErrors(t *testing.T, yaml string, want []string) {
	t.Helper()
	got, err := Parse(file, []byte(yaml))
	if got != nil {
		t.Errorf("Parse returned a pipeline with an error: %v", got)
	}
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Parse error = %v (%T), want *Errors", err, err)
	}
	if w := strings.Join(want, "\n"); err.Error() != w {
		t.Errorf("Parse errors:\n%v\nwant:\n%v", err, w)
	}
	if len(*errs) != len(want) {
		t.Errorf("got %d errors, want %d", len(*errs), len(want))
	}
}

func TestErrorString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  Error
		want string
	}{
		{Error{File: "f", Line: 3, Column: 7, Message: "bad"}, "f:3:7: bad"},
		{Error{File: "f", Line: 3, Column: 7, Message: "bad", Hint: "fix it"}, "f:3:7: bad (hint: fix it)"},
		{Error{File: "f", Line: 3, Message: "bad"}, "f:3: bad"},
		{Error{File: "f", Message: "bad"}, "f: bad"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	errs := Errors{{File: "f", Line: 1, Column: 1, Message: "a"}, {File: "f", Line: 2, Column: 1, Message: "b"}}
	if got, want := errs.Error(), "f:1:1: a\nf:2:1: b"; got != want {
		t.Errorf("Errors.Error() = %q, want %q", got, want)
	}
}

func TestClosest(t *testing.T) {
	t.Parallel()
	known := []string{"name", "run", "timeout", "env"}
	tests := map[string]string{
		"nmae":    "name", //nolint:misspell // a deliberate typo, the input under test
		"Name":    "name",
		"runs":    "run",
		"timout":  "timeout",
		"envs":    "env",
		"command": "",
		"on":      "",
		"x":       "",
	}
	for in, want := range tests {
		if got := closest(in, known); got != want {
			t.Errorf("closest(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestStatuses(t *testing.T) {
	t.Parallel()
	for text, want := range map[string]sourcev1.CommitStatuses{
		"":                   sourcev1.CommitStatuses_COMMIT_STATUSES_UNSPECIFIED,
		"statuses: run\n":    sourcev1.CommitStatuses_COMMIT_STATUSES_UNSPECIFIED,
		"statuses: stages\n": sourcev1.CommitStatuses_COMMIT_STATUSES_STAGES,
	} {
		p, err := Parse(".sluice.yaml", []byte("version: 1\nbuild:\n  steps: [{name: a, run: x}]\n"+text))
		if err != nil || p.GetStatuses() != want {
			t.Errorf("%q: %v, %v", text, p.GetStatuses(), err)
		}
	}
}

func TestTriggers(t *testing.T) {
	t.Parallel()
	p, err := Parse(".sluice.yaml", []byte(`version: 1
build:
  steps: [{name: a, run: x}]
on:
  push:
    branches: [main, "release/**"]
    paths: ["services/api/**", go.mod]
  tag: ["v*"]
  schedule:
    - cron: "0 3 * * *"
    - cron: "@hourly"
      branch: release/1
`))
	if err != nil {
		t.Fatal(err)
	}
	want := &sourcev1.Triggers{
		Push:      &sourcev1.PushTrigger{Branches: []string{"main", "release/**"}, Paths: []string{"services/api/**", "go.mod"}},
		Tags:      []string{"v*"},
		Schedules: []*sourcev1.Schedule{{Cron: "0 3 * * *"}, {Cron: "@hourly", Branch: "release/1"}},
	}
	if !proto.Equal(p.GetOn(), want) {
		t.Errorf("on = %v, want %v", p.GetOn(), want)
	}
}
