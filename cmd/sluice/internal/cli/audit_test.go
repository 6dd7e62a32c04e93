package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/sluicehq/sluice/proto/gen/sluice/audit/v1"
)

func TestAuditShowsTheLogPageByPage(t *testing.T) {
	t.Parallel()
	f := startFake(t, true)
	at := timestamppb.New(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC))
	for i := range 3 {
		f.audit.entries = append(f.audit.entries,
			&auditv1.AuditEntry{Id: "e" + string(rune('a'+i)), Time: at, Service: "source", Action: "secret.set", ActorKind: "user",
				ActorId: "abcdefghijklmnop", ActorName: "ci", ActorRole: "admin", Repository: "app", Target: "DEPLOY_KEY", Outcome: "ok"})
	}
	f.audit.entries = append(f.audit.entries,
		&auditv1.AuditEntry{Id: "ed", Time: at, Service: "release", Action: "deployment.rollback", ActorKind: "anonymous",
			Repository: "app", Target: "staging\x1b[31m", Outcome: "unauthenticated"})

	r := run(t, f.env(), "audit", "--repo", "app", "--action", "secret.", "--actor", "ci", "--since", "24h", "--limit", "2")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "ACTION") || !strings.Contains(lines[1], "abcdefghijklmnop (ci)") ||
		!strings.Contains(lines[1], "secret.set") || !strings.Contains(lines[1], "DEPLOY_KEY") {
		t.Fatalf("--limit 2 printed:\n%s", r.stdout)
	}
	req := f.audit.asked()[0]
	since := req.GetSince().AsTime()
	if req.GetRepository() != "app" || req.GetAction() != "secret." || req.GetActor() != "ci" || req.GetPageSize() != 2 ||
		time.Since(since) < 23*time.Hour || time.Since(since) > 25*time.Hour || req.GetUntil() != nil {
		t.Errorf("request %v", req)
	}

	// Without --limit it reads on to the end (the fake pages by 50, the
	// CLI asks for at most what is left of its limit).
	r = run(t, f.env(), "audit", "-o", "json")
	var out struct {
		Entries []struct {
			ID        string `json:"id"`
			ActorKind string `json:"actorKind"`
			Outcome   string `json:"outcome"`
		} `json:"entries"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || len(out.Entries) != 4 || out.Entries[3].Outcome != "unauthenticated" {
		t.Fatalf("-o json: %v\n%s", err, r.stdout)
	}
	r = run(t, f.env(), "audit")
	if strings.Contains(r.stdout, "\x1b") || !strings.Contains(r.stdout, "anonymous") {
		t.Errorf("a hostile target must be sanitized and an anonymous actor named:\n%q", r.stdout)
	}

	for _, bad := range [][]string{{"--limit", "0"}, {"--limit", "10001"}, {"--since", "banana"}, {"--until", "yesterday"}} {
		if r := run(t, f.env(), append([]string{"audit"}, bad...)...); r.code != 2 {
			t.Errorf("sluice audit %v: exit %d, want 2 (usage)", bad, r.code)
		}
	}
	if r := run(t, f.env(), "audit", "--until", "2026-01-02T15:04:05Z"); r.code != 0 {
		t.Errorf("--until a time: exit %d %s", r.code, r.stderr)
	}
	if asked := f.audit.asked(); !asked[len(asked)-1].GetUntil().AsTime().Equal(time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)) {
		t.Errorf("--until sent %v", asked[len(asked)-1].GetUntil())
	}
}
