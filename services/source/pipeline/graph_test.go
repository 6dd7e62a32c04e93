package pipeline

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

// stepModelPipeline uses every key of the step model.
const stepModelPipeline = `version: 1
build:
  max_parallel: 3
  steps:
    - name: deps
      run: go mod download
    - name: unit
      image: sluice-go:${{ matrix.go }}
      run: go test -tags ${{matrix.db}} ./...
      env:
        GOTOOLCHAIN: go${{ matrix.go }}
      matrix:
        go: ["1.26", 1.27]
        db: [Postgres]
      depends_on: [deps]
      retry: 2
    - name: lint
      run: go vet ./...
      depends_on: [deps]
      allow_failure: true
      when: branch == "main" || changed("**/*.go")
    - name: report
      run: ./report.sh
      depends_on: [unit, lint]
      when: >-
        always()
`

func TestParseStepModel(t *testing.T) {
	t.Parallel()
	got, err := Parse(file, []byte(stepModelPipeline))
	if err != nil {
		t.Fatal(err)
	}
	want := &sourcev1.Pipeline{Build: &sourcev1.BuildSpec{MaxParallel: 3, Steps: []*sourcev1.Step{
		{Name: "deps", Run: "go mod download"},
		{Name: "unit-1_26-postgres", Image: "sluice-go:1.26", Run: "go test -tags Postgres ./...", Env: map[string]string{"GOTOOLCHAIN": "go1.26"},
			DependsOn: []string{"deps"}, Retry: 2, MatrixOf: "unit", Matrix: map[string]string{"go": "1.26", "db": "Postgres"}},
		{Name: "unit-1_27-postgres", Image: "sluice-go:1.27", Run: "go test -tags Postgres ./...", Env: map[string]string{"GOTOOLCHAIN": "go1.27"},
			DependsOn: []string{"deps"}, Retry: 2, MatrixOf: "unit", Matrix: map[string]string{"go": "1.27", "db": "Postgres"}},
		{Name: "lint", Run: "go vet ./...", DependsOn: []string{"deps"}, AllowFailure: true, When: `branch == "main" || changed("**/*.go")`},
		{Name: "report", Run: "./report.sh", DependsOn: []string{"unit-1_26-postgres", "unit-1_27-postgres", "lint"}, When: "always()"},
	}}}
	if !proto.Equal(got, want) {
		t.Errorf("Parse mismatch\ngot:\n%v\nwant:\n%v", prototext.Format(got), prototext.Format(want))
	}
}

func TestParseStepModelErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range stepModelErrorCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			assertParseErrors(t, tt.yaml, tt.want)
		})
	}
}

// stepModelErrorCases are files of the step model Parse refuses, with
// every problem it reports.
var stepModelErrorCases = []struct {
	name, yaml string
	want       []string
}{
	{
		name: "depends_on",
		yaml: `version: 1
build:
  steps:
    - {name: a, run: x, depends_on: [b]}
    - {name: b, run: x, depends_on: [c, b, unti]}
    - {name: unit, run: x, depends_on: [a, a]}
`,
		want: []string{
			`.sluice.yaml:5:38: the stage has no step "c"`,
			`.sluice.yaml:5:41: a step cannot depend on itself`,
			`.sluice.yaml:5:44: the stage has no step "unti" (hint: did you mean "unit"?)`,
			`.sluice.yaml:6:44: step "a" is already listed`,
		},
	},
	{
		name: "cycle",
		yaml: `version: 1
test:
  steps:
    - {name: a, run: x, depends_on: [c]}
    - {name: b, run: x, depends_on: [a]}
    - {name: c, run: x, depends_on: [b]}
`,
		want: []string{`.sluice.yaml:4:37: depends_on makes a cycle: a -> c -> b -> a`},
	},
	{
		// c has no depends_on but calls always(): it waits for the
		// steps above it, a among them.
		name: "cycle through a condition",
		yaml: `version: 1
test:
  steps:
    - {name: a, run: x, depends_on: [c]}
    - {name: c, run: x, when: always()}
`,
		want: []string{`.sluice.yaml:4:37: depends_on makes a cycle: a -> c -> a`},
	},
	{
		name: "conditions",
		yaml: `version: 1
build:
  steps:
    - {name: a, run: x, when: 'branch =='}
    - name: b
      run: x
      when: status("nope") == "failed"
    - {name: c, run: x, when: branch}
    - {name: d, run: x, when: "changed('[')"}
    - {name: e, run: x, when: 3}
`,
		want: []string{
			`.sluice.yaml:4:40: condition: unexpected token EOF (hint: see docs/pipeline.md, "Conditions")`,
			`.sluice.yaml:7:20: condition: status("nope"): the stage has no step "nope" (hint: see docs/pipeline.md, "Conditions")`,
			`.sluice.yaml:8:31: condition: expected bool, but got string (hint: see docs/pipeline.md, "Conditions")`,
			`.sluice.yaml:9:40: condition: changed("["): not a valid glob (hint: see docs/pipeline.md, "Conditions")`,
			`.sluice.yaml:10:31: expected a string, got a number (hint: quote it: "3")`,
		},
	},
	{
		name: "retry, allow_failure, max_parallel",
		yaml: `version: 1
test:
  max_parallel: 0
  steps:
    - {name: a, run: x, retry: 6}
    - {name: b, run: x, retry: two, allow_failure: yes}
`,
		want: []string{
			`.sluice.yaml:3:17: max_parallel must be from 1 to 64, got 0`,
			`.sluice.yaml:5:32: retry must be from 0 to 5, got 6`,
			`.sluice.yaml:6:32: expected a whole number, got a string`,
			`.sluice.yaml:6:52: expected a boolean, got a string (hint: write true or false)`,
		},
	},
	{
		name: "matrix",
		yaml: `version: 1
build:
  steps:
    - name: a
      run: echo ${{ matrix.go }} ${{ matrix.os }}
      matrix: {go: [1.26, "1.26"], "bad-axis": [x]}
    - name: b
      run: echo ${{ matrix.go }}
    - name: c
      run: x
      matrix: {v: [x, X]}
    - name: d
      image: "Sluice:${{ matrix.v }}"
      run: x
      matrix: {v: [[1]]}
    - name: e
      run: x
      matrix: {a: [1,2,3,4,5,6,7,8], b: [1,2,3,4,5,6,7,8,9]}
`,
		want: []string{
			`.sluice.yaml:5:12: ${{ matrix.os }}: the matrix has no axis "os"`,
			`.sluice.yaml:6:27: value "1.26" is already listed`,
			`.sluice.yaml:6:36: invalid matrix axis name "bad-axis" (hint: use letters, digits and _, starting with a letter or _, at most 63)`,
			`.sluice.yaml:8:12: ${{ matrix.go }}: the step has no matrix (hint: add a matrix to the step, or remove the reference)`,
			`.sluice.yaml:11:15: the matrix makes step name "c-x", which another step has (hint: rename the step)`,
			`.sluice.yaml:15:20: expected a value (a string, a number or a boolean), got a list`,
			`.sluice.yaml:18:15: the matrix makes 72 steps; at most 64 are allowed`,
		},
	},
	{
		name: "matrix values past a limit",
		yaml: `version: 1
build:
  steps:
    - name: f
      run: x
      env:
        LONG: "${{ matrix.v }}` + strings.Repeat("z", 8177) + `"
      matrix: {v: [abcdefghijabcdefghij]}
`,
		want: []string{
			`.sluice.yaml:7:9: with the matrix's values in it, the value of LONG is 8197 bytes long; at most 8192 are allowed`,
		},
	},
}

func TestMatrixRefs(t *testing.T) {
	t.Parallel()
	s := "${{ matrix.a }}x${{matrix.B_2}}${{ other }}${{ matrix.c ${{\tmatrix.d\t}}${{ matrix.e"
	var got []string
	matrixRefs(s, func(start, end int, name string) { got = append(got, name+"="+s[start:end]) })
	if want := "a=${{ matrix.a }} B_2=${{matrix.B_2}} d=${{\tmatrix.d\t}}"; strings.Join(got, " ") != want {
		t.Errorf("refs %q, want %q", strings.Join(got, " "), want)
	}
}
