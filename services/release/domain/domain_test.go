package domain

import (
	"strings"
	"testing"
)

func TestParseVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    Version
		wantErr string
	}{
		{in: "v0.1.0", want: Version{0, 1, 0}},
		{in: "v1.22.333", want: Version{1, 22, 333}},
		{in: "v10.0.0", want: Version{10, 0, 0}},
		{in: "1.2.3", wantErr: "want vMAJOR.MINOR.PATCH"},
		{in: "v1.2", wantErr: "want vMAJOR.MINOR.PATCH"},
		{in: "v1.2.3.4", wantErr: "want vMAJOR.MINOR.PATCH"},
		{in: "v1.02.3", wantErr: `"02" is not a number without leading zeros`},
		{in: "v1.2.x", wantErr: `"x" is not a number`},
		{in: "v1..3", wantErr: `"" is not a number`},
		{in: "v1.2.3-rc1", wantErr: `"3-rc1" is not a number`},
		{in: "v1.2.3-rc.1", wantErr: "want vMAJOR.MINOR.PATCH"},
		{in: "v-1.2.3", wantErr: `"-1" is not a number`},
		{in: "", wantErr: "want vMAJOR.MINOR.PATCH"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseVersion(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseVersion(%q) error = %v, want it to contain %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseVersion(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseVersion(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if got.String() != tt.in {
				t.Fatalf("String() = %q, want %q", got.String(), tt.in)
			}
		})
	}
}

func TestVersionCompare(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		want int
	}{
		{"v0.1.0", "v0.1.0", 0},
		{"v0.1.0", "v0.2.0", -1},
		{"v0.10.0", "v0.9.0", 1}, // numeric, not lexical
		{"v1.0.0", "v0.99.99", 1},
		{"v1.2.3", "v1.2.4", -1},
		{"v2.0.0", "v10.0.0", -1},
	}
	for _, tt := range tests {
		a, b := mustParse(t, tt.a), mustParse(t, tt.b)
		if got := a.Compare(b); got != tt.want {
			t.Errorf("%s.Compare(%s) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := b.Compare(a); got != -tt.want {
			t.Errorf("%s.Compare(%s) = %d, want %d", tt.b, tt.a, got, -tt.want)
		}
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		msg  string
		want Change
	}{
		{"feat: add greeting", ChangeFeature},
		{"feat(api): add greeting", ChangeFeature},
		{"Feat: capitalised type", ChangeFeature},
		{"fix: off by one", ChangeFix},
		{"fix(parser): off by one\n\nlonger body", ChangeFix},
		{"feat!: drop v1", ChangeBreaking},
		{"fix!: change default", ChangeBreaking},
		{"refactor(core)!: rename everything", ChangeBreaking},
		{"chore: bump deps\n\nBREAKING CHANGE: needs Go 1.26", ChangeBreaking},
		{"feat: x\n\nBREAKING-CHANGE: y", ChangeBreaking},
		{"docs: readme", ChangeOther},
		{"chore(deps): bump", ChangeOther},
		{"Update README", ChangeOther},
		{"feature: not a conventional type", ChangeOther},
		{"feat add greeting (no colon)", ChangeOther},
		{"fix typo in feat: handler", ChangeOther},
		{"mention of BREAKING CHANGE: in the subject only", ChangeOther},
		{"", ChangeOther},
	}
	for _, tt := range tests {
		if got := Classify(tt.msg); got != tt.want {
			t.Errorf("Classify(%q) = %d, want %d", tt.msg, got, tt.want)
		}
	}
}

func TestNextVersion(t *testing.T) {
	t.Parallel()
	prev := func(s string) *Version { v := mustParse(t, s); return &v }
	commits := func(msgs ...string) []Commit {
		var cs []Commit
		for _, m := range msgs {
			cs = append(cs, Commit{SHA: "0123456789abcdef0123456789abcdef01234567", Message: m})
		}
		return cs
	}
	tests := []struct {
		name    string
		prev    *Version
		commits []Commit
		want    string
	}{
		{"first release", nil, commits("feat!: everything"), "v0.1.0"},
		{"first release without commits", nil, nil, "v0.1.0"},
		{"fix bumps patch", prev("v0.1.0"), commits("fix: a"), "v0.1.1"},
		{"other bumps patch", prev("v0.1.3"), commits("docs: a", "chore: b"), "v0.1.4"},
		{"no commits bump patch", prev("v1.2.3"), nil, "v1.2.4"},
		{"feature bumps minor and resets patch", prev("v0.1.4"), commits("fix: a", "feat: b"), "v0.2.0"},
		{"breaking bumps major from 0", prev("v0.9.2"), commits("feat: a", "fix!: b", "docs: c"), "v1.0.0"},
		{"breaking footer bumps major", prev("v1.4.2"), commits("chore: x\n\nBREAKING CHANGE: y"), "v2.0.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NextVersion(tt.prev, tt.commits).String(); got != tt.want {
				t.Fatalf("NextVersion = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestChangelog(t *testing.T) {
	t.Parallel()
	commits := []Commit{
		{SHA: "aaaaaaa111111111111111111111111111111111", Message: "docs: explain deploys"},
		{SHA: "bbbbbbb222222222222222222222222222222222", Message: "fix(api): nil pointer\n\nbody text"},
		{SHA: "ccccccc333333333333333333333333333333333", Message: "feat: greet users"},
		{SHA: "ddddddd444444444444444444444444444444444", Message: "feat!: drop the v1 API"},
		{SHA: "eeeeeee555555555555555555555555555555555", Message: "feat(ui): dark mode"},
	}
	want := `### Breaking changes

- feat!: drop the v1 API (ddddddd)

### Features

- feat: greet users (ccccccc)
- feat(ui): dark mode (eeeeeee)

### Fixes

- fix(api): nil pointer (bbbbbbb)

### Other

- docs: explain deploys (aaaaaaa)
`
	if got := Changelog(commits); got != want {
		t.Fatalf("Changelog =\n%s\nwant\n%s", got, want)
	}
	if got := Changelog(commits[2:3]); got != "### Features\n\n- feat: greet users (ccccccc)\n" {
		t.Fatalf("Changelog of one feature = %q", got)
	}
	if got := Changelog(nil); got != "No changes.\n" {
		t.Fatalf("Changelog(nil) = %q", got)
	}
}

func TestSkipReason(t *testing.T) {
	t.Parallel()
	env := []Environment{{Name: "staging", Deploy: "./deploy.sh"}}
	tests := []struct {
		name   string
		spec   ReleaseSpec
		branch string
		want   string
	}{
		{"released", ReleaseSpec{Present: true, Branches: []string{"main"}, Environments: env}, "main", ""},
		{"second branch", ReleaseSpec{Present: true, Branches: []string{"main", "release"}, Environments: env}, "release", ""},
		{"no section", ReleaseSpec{}, "main", "the pipeline has no release section"},
		{"no branches", ReleaseSpec{Present: true, Environments: env}, "main", "the pipeline's release section lists no branches"},
		{"no environments", ReleaseSpec{Present: true, Branches: []string{"main"}}, "main", "the pipeline's release section has no environments"},
		{"other branch", ReleaseSpec{Present: true, Branches: []string{"main", "release"}, Environments: env}, "feature",
			`branch "feature" is not a release branch (main, release)`},
		{"no branch", ReleaseSpec{Present: true, Branches: []string{"main"}, Environments: env}, "",
			"the run is not on a branch or a tag; release branches: main"},
		{"tag", ReleaseSpec{Present: true, Tags: []string{"v*"}, Environments: env}, "refs/tags/v1.2.0", ""},
		{"tag not listed", ReleaseSpec{Present: true, Branches: []string{"main"}, Tags: []string{"v*"}, Environments: env}, "refs/tags/nightly",
			`tag "nightly" is not a release tag (v*)`},
		{"no tags", ReleaseSpec{Present: true, Branches: []string{"main"}, Environments: env}, "refs/tags/v1.0.0",
			`tag "v1.0.0": the pipeline's release section lists no tags`},
		{"tags only, a branch", ReleaseSpec{Present: true, Tags: []string{"v*"}, Environments: env}, "main",
			"the pipeline's release section lists no branches"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.spec.SkipReason(tt.branch); got != tt.want {
				t.Fatalf("SkipReason(%q) = %q, want %q", tt.branch, got, tt.want)
			}
		})
	}
}

func TestTarget(t *testing.T) {
	t.Parallel()
	tests := []struct{ branch, ref, want string }{
		{"main", "refs/heads/main", "main"},
		{"", "refs/tags/v1.0.0", "refs/tags/v1.0.0"},
		{"", "0123456789012345678901234567890123456789", ""},
		{"pull/3", "refs/pull/3/head", "pull/3"},
		{"refs/tags/v9.9.9", "refs/heads/refs/tags/v9.9.9", ""}, // a branch named like a tag is no tag
		{"", "refs/heads/main", ""},
	}
	for _, tt := range tests {
		if got := Target(tt.branch, tt.ref); got != tt.want {
			t.Errorf("Target(%q, %q) = %q, want %q", tt.branch, tt.ref, got, tt.want)
		}
	}
}

func TestTagVersion(t *testing.T) {
	t.Parallel()
	for tag, want := range map[string]string{"v1.2.3": "v1.2.3", "1.2.3": "v1.2.3", "v10.0.1": "v10.0.1", "v999999.999999.999999": "v999999.999999.999999"} {
		if v, ok := TagVersion(tag); !ok || v.String() != want {
			t.Errorf("TagVersion(%q) = %v, %v; want %s", tag, v, ok, want)
		}
	}
	for _, tag := range []string{"nightly", "v1.2", "v1.2.3-rc.1", "v01.2.3", "vv1.2.3", "", "v1000000.0.0", "v9223372036854775807.0.0", "v1.0.99999999999999999999"} {
		if v, ok := TagVersion(tag); ok {
			t.Errorf("TagVersion(%q) = %v, want none", tag, v)
		}
	}
}

func TestFailureSummary(t *testing.T) {
	t.Parallel()
	tests := []struct{ reason, want string }{
		{"verification failed: GET http://x/: 503 after 30s", "verification failed on staging: GET http://x/: 503 after 30s"},
		{"deploy exited with code 3", "deploy exited with code 3 on staging"},
		{InterruptedReason, "interrupted on staging: the release service stopped during the deploy"},
	}
	for _, tt := range tests {
		if got := FailureSummary("staging", tt.reason); got != tt.want {
			t.Errorf("FailureSummary(%q) = %q, want %q", tt.reason, got, tt.want)
		}
	}
}

func mustParse(t *testing.T, s string) Version {
	t.Helper()
	v, err := ParseVersion(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestStepMatches(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		filter, step string
		want         bool
	}{
		{"", "deploy:staging", true},
		{"deploy", "deploy:staging", true},
		{"deploy", "deploy:production", true},
		{"deploy", "verify:staging", false},
		{"deploy:staging", "deploy:staging", true},
		{"deploy:staging", "deploy:production", false},
		{"deploy", "", false},
		{"deploy", "deployment:staging", false},
	} {
		if got := StepMatches(tt.filter, tt.step); got != tt.want {
			t.Errorf("StepMatches(%q, %q) = %v, want %v", tt.filter, tt.step, got, tt.want)
		}
	}
}

func TestWithLastLines(t *testing.T) {
	t.Parallel()
	if got := WithLastLines("deploy exited with code 1 on staging", "deploy:staging", nil); got != "deploy exited with code 1 on staging" {
		t.Errorf("without lines: %q", got)
	}
	got := WithLastLines("deploy exited with code 1 on staging", "deploy:staging", []string{"one", "two"})
	if want := "deploy exited with code 1 on staging\nlast lines of deploy:staging:\n| one\n| two"; got != want {
		t.Errorf("with lines: %q, want %q", got, want)
	}
}
