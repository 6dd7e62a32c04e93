package domain

import (
	"slices"
	"strings"
	"testing"
)

func TestParseEnvironmentBranches(t *testing.T) {
	t.Parallel()
	e, err := ParseEnvironmentBranches(" production=main , staging=main|release/*, qa=**, frozen=, *=main|develop")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		env, branch string
		want        bool
	}{
		{"production", "main", true},
		{"production", "release/1.2", false},
		{"production", "feature", false},
		{"staging", "main", true},
		{"staging", "release/1.2", true},
		{"staging", "release/1.2/hotfix", false}, // * stays within one part
		{"staging", "release", false},
		{"qa", "feature/x/y", true},
		{"frozen", "main", false},
		{"dev", "develop", true}, // not named: the * entry
		{"dev", "master", false},
		{"production", "", false}, // a run not on a branch deploys nowhere
	} {
		if got := e.Allows(tt.env, tt.branch); got != tt.want {
			t.Errorf("Allows(%s, %q) = %v, want %v", tt.env, tt.branch, got, tt.want)
		}
	}
	if got := e.Describe("frozen"); got != "no branch" {
		t.Errorf("Describe(frozen) = %q", got)
	}
	if got := e.Describe("staging"); got != "main|release/*" {
		t.Errorf("Describe(staging) = %q", got)
	}

	// Empty, and entries without *: environments not named take main|master.
	for _, s := range []string{"", "  ", "production=main"} {
		e, err := ParseEnvironmentBranches(s)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if !e.Allows("staging", "main") || !e.Allows("staging", "master") || e.Allows("staging", "feature") {
			t.Errorf("%q: staging allows %s, want main|master", s, e.Describe("staging"))
		}
	}
	var zero EnvironmentBranches
	if !zero.Allows("staging", "main") || zero.Allows("staging", "feature") {
		t.Errorf("the zero value allows %s, want the default", zero.Describe("staging"))
	}
}

func TestParseEnvironmentBranchesNamesTheBadEntry(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want string }{
		{"production", `entry "production": want ENVIRONMENT=BRANCHES`},
		{"production=main,,staging=main", "entry 2 is empty"},
		{"production=main,", "entry 2 is empty"},
		{"Production=main", `entry "Production=main": "Production" is not an environment name`},
		{"=main", `entry "=main": "" is not an environment name`},
		{"../x=main", `"../x" is not an environment name`},
		{"staging=main||dev", `entry "staging=main||dev": an empty branch pattern`},
		{"staging=release/[", `entry "staging=release/[": branch pattern "release/[": syntax error in pattern`},
		{"staging=my branch", `branch pattern "my branch" has a space`},
		{"staging=main,staging=dev", `entry "staging=dev": environment staging is named twice`},
		{"*=main,*=dev", `entry "*=dev": environment * is named twice`},
	} {
		_, err := ParseEnvironmentBranches(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseEnvironmentBranches(%q) = %v, want an error containing %q", tt.in, err, tt.want)
		}
	}
}

func TestDeployable(t *testing.T) {
	t.Parallel()
	spec := ReleaseSpec{Present: true, Branches: []string{"main", "hotfix"}, Environments: []Environment{
		{Name: "staging", Deploy: "d"}, {Name: "production", Deploy: "d"},
	}}
	platform, err := ParseEnvironmentBranches("production=main,staging=main|hotfix")
	if err != nil {
		t.Fatal(err)
	}
	allowed, refused := spec.Deployable("hotfix", platform)
	if len(allowed) != 1 || allowed[0].Name != "staging" || !slices.Equal(refused, []string{"production"}) {
		t.Fatalf("Deployable(hotfix) = %v, %v; want staging, refused production", allowed, refused)
	}
	allowed, refused = spec.Deployable("main", platform)
	if len(allowed) != 2 || len(refused) != 0 {
		t.Fatalf("Deployable(main) = %v, %v; want both", allowed, refused)
	}
}
