package forge_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/platform/forge"
)

const secret = "s3cret-of-the-repository"

func hexMAC(body []byte, key string) string {
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signed is a webhook request's headers as each forge sends it, signed
// with key.
func signed(kind forge.Kind, event string, body []byte, key string) http.Header {
	h := http.Header{}
	switch kind {
	case forge.GitHub:
		h.Set("X-GitHub-Event", event)
		h.Set("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
		h.Set("X-Hub-Signature-256", "sha256="+hexMAC(body, key))
	case forge.Gitea:
		h.Set("X-Gitea-Event", event)
		h.Set("X-Gitea-Delivery", "f6266f16-1bf3-46a5-9ea4-602e06ead473")
		h.Set("X-Gitea-Signature", hexMAC(body, key))
	case forge.GitLab:
		h.Set("X-Gitlab-Event", event)
		h.Set("X-Gitlab-Event-UUID", "13792a34-cac6-4fda-95a8-c58e00a3954e")
		h.Set("X-Gitlab-Token", key)
	}
	return h
}

func TestSignatures(t *testing.T) {
	t.Parallel()
	cases := []struct {
		kind        forge.Kind
		event, file string
		header      string
	}{
		{forge.GitHub, "push", "github-push.json", "X-Hub-Signature-256"},
		{forge.Gitea, "push", "gitea-push.json", "X-Gitea-Signature"},
		{forge.GitLab, "Push Hook", "gitlab-push.json", "X-Gitlab-Token"},
	}
	for _, c := range cases {
		t.Run(string(c.kind), func(t *testing.T) {
			t.Parallel()
			body := fixture(t, c.file)
			ev, err := forge.ParseWebhook(c.kind, signed(c.kind, c.event, body, secret), body, secret)
			if err != nil || ev.Kind != forge.EventPush {
				t.Fatalf("good signature: %+v, %v", ev, err)
			}

			bad := signed(c.kind, c.event, body, "another-secret")
			if _, err := forge.ParseWebhook(c.kind, bad, body, secret); !errors.Is(err, forge.ErrSignature) || !strings.Contains(err.Error(), "wrong "+c.header) {
				t.Errorf("wrong key: %v", err)
			}

			tampered := append([]byte(nil), body...)
			tampered[len(tampered)-3] ^= 1
			if _, err := forge.ParseWebhook(c.kind, signed(c.kind, c.event, body, secret), tampered, secret); c.kind != forge.GitLab && !errors.Is(err, forge.ErrSignature) {
				t.Errorf("tampered body: %v", err)
			}

			missing := signed(c.kind, c.event, body, secret)
			missing.Del(c.header)
			if _, err := forge.ParseWebhook(c.kind, missing, body, secret); !errors.Is(err, forge.ErrSignature) || !strings.Contains(err.Error(), "missing "+c.header) {
				t.Errorf("missing signature: %v", err)
			}

			if _, err := forge.ParseWebhook(c.kind, signed(c.kind, c.event, body, ""), body, ""); !errors.Is(err, forge.ErrSignature) {
				t.Errorf("no secret on the repository: %v", err)
			}
		})
	}
}

// Another forge's signature is no signature: a GitHub-signed request to
// the Gitea path, or a Gitea-signed one to GitHub's, is refused.
func TestAnotherForgesSignatureIsRefused(t *testing.T) {
	t.Parallel()
	body := fixture(t, "github-push.json")
	if _, err := forge.ParseWebhook(forge.Gitea, signed(forge.GitHub, "push", body, secret), body, secret); !errors.Is(err, forge.ErrSignature) {
		t.Errorf("GitHub's signature on Gitea's path: %v", err)
	}
	if _, err := forge.ParseWebhook(forge.GitHub, signed(forge.Gitea, "push", body, secret), body, secret); !errors.Is(err, forge.ErrSignature) {
		t.Errorf("Gitea's signature on GitHub's path: %v", err)
	}
	if _, err := forge.ParseWebhook(forge.GitLab, signed(forge.GitHub, "Push Hook", body, secret), body, secret); !errors.Is(err, forge.ErrSignature) {
		t.Errorf("GitHub's signature on GitLab's path: %v", err)
	}
}

func TestForgejoHeaders(t *testing.T) {
	t.Parallel()
	body := fixture(t, "gitea-push.json")
	h := http.Header{}
	h.Set("X-Forgejo-Event", "push")
	h.Set("X-Forgejo-Delivery", "d1")
	h.Set("X-Forgejo-Signature", hexMAC(body, secret))
	ev, err := forge.ParseWebhook(forge.Gitea, h, body, secret)
	if err != nil || ev.Kind != forge.EventPush || ev.Delivery != "d1" {
		t.Fatalf("%+v, %v", ev, err)
	}
}

func TestEvents(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		kind  forge.Kind
		event string
		file  string
		want  forge.Event
	}{
		{"github push", forge.GitHub, "push", "github-push.json", forge.Event{
			Kind: forge.EventPush, Name: "push", Delivery: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
			Ref: "refs/heads/main", Before: "6113728f27ae82c7b1a177c8d03f9e96e0adf246", After: "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
		}},
		{"github pull request", forge.GitHub, "pull_request", "github-pull_request.json", forge.Event{
			Kind: forge.EventPullRequest, Name: "pull_request", Delivery: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
			PullRequest: forge.PullRequest{Number: 2, Action: forge.PullRequestOpened, HeadSHA: "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
				HeadRef: "changes", BaseRef: "main", Title: "Update the README with new information."},
		}},
		{"gitea push", forge.Gitea, "push", "gitea-push.json", forge.Event{
			Kind: forge.EventPush, Name: "push", Delivery: "f6266f16-1bf3-46a5-9ea4-602e06ead473",
			Ref: "refs/heads/main", Before: "28e1879d029cb852e4844d9c718537df08844e03", After: "bffeb74224043ba2feb48d137756c8a9331c449a",
		}},
		{"gitea pull request from a fork, synchronized", forge.Gitea, "pull_request", "gitea-pull_request.json", forge.Event{
			Kind: forge.EventPullRequest, Name: "pull_request", Delivery: "f6266f16-1bf3-46a5-9ea4-602e06ead473",
			PullRequest: forge.PullRequest{Number: 7, Action: forge.PullRequestUpdated, HeadSHA: "4e2f0b8b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f",
				HeadRef: "hi", BaseRef: "main", Title: "Say hi", FromFork: true},
		}},
		{"gitlab push", forge.GitLab, "Push Hook", "gitlab-push.json", forge.Event{
			Kind: forge.EventPush, Name: "Push Hook", Delivery: "13792a34-cac6-4fda-95a8-c58e00a3954e",
			Ref: "refs/heads/master", Before: "95790bf891e76fee5e1747ab589903a6a1f80f22", After: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
		}},
		{"gitlab tag push", forge.GitLab, "Tag Push Hook", "gitlab-tag_push.json", forge.Event{
			Kind: forge.EventTag, Name: "Tag Push Hook", Delivery: "13792a34-cac6-4fda-95a8-c58e00a3954e",
			Ref: "refs/tags/v1.0.0", Before: forge.ZeroSHA, After: "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7",
		}},
		{"gitlab merge request", forge.GitLab, "Merge Request Hook", "gitlab-merge_request.json", forge.Event{
			Kind: forge.EventPullRequest, Name: "Merge Request Hook", Delivery: "13792a34-cac6-4fda-95a8-c58e00a3954e",
			PullRequest: forge.PullRequest{Number: 1, Action: forge.PullRequestOpened, HeadSHA: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
				HeadRef: "ms-viewport", BaseRef: "master", Title: "MS-Viewport"},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			body := fixture(t, c.file)
			got, err := forge.ParseWebhook(c.kind, signed(c.kind, c.event, body, secret), body, secret)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestActionsAndRefs(t *testing.T) {
	t.Parallel()
	sign := func(kind forge.Kind, event, body string) (forge.Event, error) {
		return forge.ParseWebhook(kind, signed(kind, event, []byte(body), secret), []byte(body), secret)
	}
	sha := "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"
	pr := func(action string) string {
		return `{"action":"` + action + `","number":3,"pull_request":{"title":"t","head":{"ref":"f","sha":"` + sha + `","repo":{"full_name":"o/r"}},"base":{"ref":"main","repo":{"full_name":"o/r"}}}}`
	}
	for action, want := range map[string]forge.PullRequestAction{
		"opened": forge.PullRequestOpened, "synchronize": forge.PullRequestUpdated, "reopened": forge.PullRequestReopened,
		"closed": forge.PullRequestClosed, "edited": forge.PullRequestOther, "labeled": forge.PullRequestOther,
	} {
		ev, err := sign(forge.GitHub, "pull_request", pr(action))
		if err != nil || ev.PullRequest.Action != want || ev.PullRequest.FromFork {
			t.Errorf("github %s: %+v, %v", action, ev.PullRequest, err)
		}
	}
	mr := func(action, oldrev string) string {
		return `{"object_kind":"merge_request","object_attributes":{"iid":4,"action":"` + action + `","oldrev":"` + oldrev +
			`","source_branch":"f","target_branch":"main","source_project_id":2,"target_project_id":1,"last_commit":{"id":"` + sha + `"}}}`
	}
	for _, c := range []struct {
		action, oldrev string
		want           forge.PullRequestAction
	}{
		{"open", "", forge.PullRequestOpened}, {"update", sha, forge.PullRequestUpdated}, {"update", "", forge.PullRequestOther},
		{"reopen", "", forge.PullRequestReopened}, {"close", "", forge.PullRequestClosed}, {"merge", "", forge.PullRequestClosed},
		{"approved", "", forge.PullRequestOther},
	} {
		ev, err := sign(forge.GitLab, "Merge Request Hook", mr(c.action, c.oldrev))
		if err != nil || ev.PullRequest.Action != c.want || !ev.PullRequest.FromFork {
			t.Errorf("gitlab %s (oldrev %q): %+v, %v", c.action, c.oldrev, ev.PullRequest, err)
		}
	}
	// A pull request whose head repository was deleted is a fork's.
	ev, err := sign(forge.GitHub, "pull_request", `{"action":"opened","number":3,"pull_request":{"head":{"ref":"f","sha":"`+sha+`"},"base":{"ref":"main","repo":{"full_name":"o/r"}}}}`)
	if err != nil || !ev.PullRequest.FromFork {
		t.Errorf("deleted head repository: %+v, %v", ev.PullRequest, err)
	}

	for ref, want := range map[string]forge.EventKind{
		"refs/heads/release/1.x": forge.EventPush, "refs/tags/v1.2.3": forge.EventTag,
		"refs/notes/commits": forge.EventOther, "refs/heads/": forge.EventOther,
	} {
		ev, err := sign(forge.GitHub, "push", `{"ref":"`+ref+`","after":"`+sha+`"}`)
		if err != nil || ev.Kind != want {
			t.Errorf("push to %s: %+v, %v", ref, ev, err)
		}
	}
	ev, err = sign(forge.Gitea, "push", `{"ref":"refs/heads/gone","after":"`+forge.ZeroSHA+`"}`)
	if err != nil || !ev.Deleted {
		t.Errorf("deleted branch: %+v, %v", ev, err)
	}
	for _, event := range []string{"issues", "create", "release"} {
		ev, err := sign(forge.GitHub, event, `{}`)
		if err != nil || ev.Kind != forge.EventOther || ev.Name != event {
			t.Errorf("%s: %+v, %v", event, ev, err)
		}
	}
	if ev, err := sign(forge.GitHub, "ping", `{"zen":"hi"}`); err != nil || ev.Kind != forge.EventPing {
		t.Errorf("ping: %+v, %v", ev, err)
	}
}

// Hostile bodies are refused with an error naming what is wrong, never a
// panic.
func TestMalformed(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 300)
	cases := []struct {
		kind        forge.Kind
		event, body string
		want        string
	}{
		{forge.GitHub, "push", `{"ref":`, "not a push event"},
		{forge.GitHub, "push", `{"ref":"refs/heads/main","after":"nope"}`, `after: "nope" is not a full commit sha`},
		{forge.GitHub, "push", `{"ref":"refs/heads/` + long + `","after":"` + forge.ZeroSHA + `"}`, "ref: longer than 255"},
		{forge.GitHub, "pull_request", `{"action":"opened","number":1,"pull_request":{"head":{"ref":"f","sha":"x"}}}`, "pull_request.head.sha"},
		{forge.GitHub, "pull_request", `{"action":"opened","pull_request":{}}`, "number: missing"},
		{forge.Gitea, "pull_request", `[]`, "not a pull_request event"},
		{forge.GitLab, "Merge Request Hook", `{"object_attributes":{"iid":1,"action":"open","last_commit":{"id":"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"}}}`, "pull_request.head.ref"},
		{forge.GitLab, "Push Hook", `{"ref":"refs/heads/main","after":""}`, "after:"},
		{forge.GitHub, "", `{}`, "missing X-GitHub-Event"},
		{forge.GitLab, "", `{}`, "missing X-Gitlab-Event"},
	}
	for _, c := range cases {
		h := signed(c.kind, c.event, []byte(c.body), secret)
		if c.event == "" {
			h.Del("X-GitHub-Event")
			h.Del("X-Gitlab-Event")
		}
		_, err := forge.ParseWebhook(c.kind, h, []byte(c.body), secret)
		if !errors.Is(err, forge.ErrMalformed) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %s %.60s: got %v, want %q", c.kind, c.event, c.body, err, c.want)
		}
	}
	h := signed(forge.GitHub, "push", []byte(`{}`), secret)
	h.Set("X-GitHub-Delivery", long)
	if _, err := forge.ParseWebhook(forge.GitHub, h, []byte(`{}`), secret); !errors.Is(err, forge.ErrMalformed) || !strings.Contains(err.Error(), "X-GitHub-Delivery") {
		t.Errorf("overlong delivery: %v", err)
	}
}

func FuzzParseWebhook(f *testing.F) {
	for _, name := range []string{"github-push.json", "github-pull_request.json", "gitea-pull_request.json", "gitlab-merge_request.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, c := range []struct {
			kind   forge.Kind
			events []string
		}{
			{forge.GitHub, []string{"push", "pull_request"}},
			{forge.Gitea, []string{"push", "pull_request"}},
			{forge.GitLab, []string{"Push Hook", "Tag Push Hook", "Merge Request Hook"}},
		} {
			for _, event := range c.events {
				ev, err := forge.ParseWebhook(c.kind, signed(c.kind, event, body, secret), body, secret)
				if err == nil && (ev.Kind == forge.EventPush || ev.Kind == forge.EventTag) && len(ev.After) < 40 {
					t.Fatalf("accepted a push without a sha: %+v", ev)
				}
				if err != nil && !errors.Is(err, forge.ErrMalformed) {
					t.Fatalf("a signed body was refused as unsigned: %v", err)
				}
			}
		}
	})
}
