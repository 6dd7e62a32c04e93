package forge

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/google/go-github/v84/github"
	gitlab "gitlab.com/gitlab-org/api/client-go/v2"
)

// EventKind is what a webhook announced, in Sluice's terms.
type EventKind string

// The events Sluice acts on; Other is any event it does not.
const (
	EventPing        EventKind = "ping"
	EventPush        EventKind = "push"
	EventTag         EventKind = "tag"
	EventPullRequest EventKind = "pull_request"
	EventOther       EventKind = "other"
)

// PullRequestAction is what happened to a pull (merge) request.
type PullRequestAction string

// Opened, Updated (new commits on its head), Reopened and Closed (merged
// or not); Other is any other change (a title, a label, a review).
const (
	PullRequestOpened   PullRequestAction = "opened"
	PullRequestUpdated  PullRequestAction = "updated"
	PullRequestReopened PullRequestAction = "reopened"
	PullRequestClosed   PullRequestAction = "closed"
	PullRequestOther    PullRequestAction = "other"
)

// PullRequest is the part of a pull (GitLab: merge) request event Sluice
// needs.
type PullRequest struct {
	Number int64
	Action PullRequestAction
	// HeadSHA is the commit to build; HeadRef its branch, in the fork for
	// a pull request from one; BaseRef the branch it would merge into.
	HeadSHA, HeadRef, BaseRef string
	// FromFork is true when the head is in another repository than the
	// base (or in one that was deleted): such a pull request never gets
	// secrets.
	FromFork bool
	Title    string
}

// Event is one checked webhook.
type Event struct {
	Kind EventKind
	// Name is the forge's own name of the event (push, Merge Request
	// Hook, ...), for what Sluice says of an event it ignores.
	Name string
	// Delivery identifies the delivery; a redelivery has the same one.
	Delivery string
	// Ref, Before and After are a push's (EventPush: refs/heads/...;
	// EventTag: refs/tags/...). After is the ref's new value, the all-zero
	// sha when it was deleted (Deleted).
	Ref, Before, After string
	Deleted            bool
	PullRequest        PullRequest
}

// Errors of ParseWebhook. ErrSignature: the request is not from the
// forge (answer 401); ErrMalformed: it is, but cannot be read (400). Both
// are wrapped with a message naming the header or field.
var (
	ErrSignature = errors.New("webhook signature")
	ErrMalformed = errors.New("malformed webhook")
)

// MaxDeliveryID bounds a delivery id header.
const MaxDeliveryID = 200

// ZeroSHA is the "after" of a push that deleted its ref.
const ZeroSHA = "0000000000000000000000000000000000000000"

var fullSHA = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)

// ParseWebhook checks a webhook of forge kind against the repository's
// secret, then reads it. The signature is checked before anything of the
// body is parsed:
//
//   - GitHub: X-Hub-Signature-256, "sha256=" and the hex HMAC-SHA256 of the
//     body keyed by the secret; the event is X-GitHub-Event, the delivery
//     X-GitHub-Delivery.
//   - Gitea and Forgejo: X-Gitea-Signature (Forgejo: X-Forgejo-Signature),
//     the hex HMAC-SHA256 without a prefix; X-Gitea-Event and
//     X-Gitea-Delivery (or the X-Forgejo-* ones).
//   - GitLab: X-Gitlab-Token, the secret itself, compared in constant
//     time; X-Gitlab-Event and Idempotency-Key (or X-Gitlab-Event-UUID).
func ParseWebhook(kind Kind, h http.Header, body []byte, secret string) (Event, error) {
	if secret == "" {
		return Event{}, fmt.Errorf("the repository has no webhook secret: %w", ErrSignature)
	}
	switch kind {
	case GitHub:
		if err := checkHMAC(body, secret, "X-Hub-Signature-256", "sha256=", h.Get("X-Hub-Signature-256")); err != nil {
			return Event{}, err
		}
		return parseGitHubStyle(h.Get("X-GitHub-Event"), "X-GitHub-Event", h.Get("X-GitHub-Delivery"), "X-GitHub-Delivery", body)
	case Gitea:
		sigHeader, eventHeader, deliveryHeader := "X-Gitea-Signature", "X-Gitea-Event", "X-Gitea-Delivery"
		if h.Get(sigHeader) == "" && h.Get("X-Forgejo-Signature") != "" {
			sigHeader, eventHeader, deliveryHeader = "X-Forgejo-Signature", "X-Forgejo-Event", "X-Forgejo-Delivery"
		}
		if err := checkHMAC(body, secret, sigHeader, "", h.Get(sigHeader)); err != nil {
			return Event{}, err
		}
		return parseGitHubStyle(h.Get(eventHeader), eventHeader, h.Get(deliveryHeader), deliveryHeader, body)
	case GitLab:
		token := h.Get("X-Gitlab-Token")
		if token == "" {
			return Event{}, fmt.Errorf("missing X-Gitlab-Token: %w", ErrSignature)
		}
		if subtle.ConstantTimeCompare([]byte(token), []byte(secret)) != 1 {
			return Event{}, fmt.Errorf("wrong X-Gitlab-Token: %w", ErrSignature)
		}
		// Idempotency-Key stays the same when GitLab retries a delivery;
		// older GitLabs send only X-Gitlab-Event-UUID.
		delivery, header := h.Get("Idempotency-Key"), "Idempotency-Key (or X-Gitlab-Event-UUID)"
		if delivery == "" {
			delivery = h.Get("X-Gitlab-Event-UUID")
		}
		return parseGitLab(h.Get("X-Gitlab-Event"), delivery, header, body)
	}
	return Event{}, fmt.Errorf("forge %q has no webhooks: %w", kind, ErrMalformed)
}

// checkHMAC checks header = prefix + hex(HMAC-SHA256(body, secret)).
func checkHMAC(body []byte, secret, name, prefix, header string) error {
	if header == "" {
		return fmt.Errorf("missing %s: %w", name, ErrSignature)
	}
	hexSig, ok := strings.CutPrefix(header, prefix)
	got, err := hex.DecodeString(hexSig)
	if !ok || err != nil {
		return fmt.Errorf("%s is not %shex: %w", name, prefix, ErrSignature)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return fmt.Errorf("wrong %s: %w", name, ErrSignature)
	}
	return nil
}

func checkDelivery(delivery, header string) error {
	if delivery == "" || len(delivery) > MaxDeliveryID {
		return fmt.Errorf("missing or overlong %s: %w", header, ErrMalformed)
	}
	return nil
}

func malformed(what string, err error) error {
	return fmt.Errorf("the body is not a %s event: %w: %w", what, err, ErrMalformed)
}

// parseGitHubStyle reads GitHub's events, and Gitea's, whose payloads
// have GitHub's shape (its pull request "synchronized" is GitHub's
// "synchronize").
func parseGitHubStyle(name, eventHeader, delivery, deliveryHeader string, body []byte) (Event, error) {
	ev := Event{Kind: EventOther, Name: name, Delivery: delivery}
	switch name {
	case "":
		return ev, fmt.Errorf("missing %s: %w", eventHeader, ErrMalformed)
	case "ping":
		ev.Kind = EventPing
		return ev, nil
	case "push", "pull_request":
	default:
		return ev, nil
	}
	if err := checkDelivery(delivery, deliveryHeader); err != nil {
		return ev, err
	}
	payload, err := github.ParseWebHook(name, body)
	if err != nil {
		return ev, malformed(name, err)
	}
	switch p := payload.(type) {
	case *github.PushEvent:
		return pushEvent(ev, p.GetRef(), p.GetBefore(), p.GetAfter())
	case *github.PullRequestEvent:
		pr := p.GetPullRequest()
		number := int64(p.GetNumber())
		if number == 0 {
			number = int64(pr.GetNumber())
		}
		ev.Kind = EventPullRequest
		ev.PullRequest = PullRequest{
			Number:  number,
			Action:  githubAction(p.GetAction()),
			HeadSHA: pr.GetHead().GetSHA(),
			HeadRef: pr.GetHead().GetRef(),
			BaseRef: pr.GetBase().GetRef(),
			Title:   pr.GetTitle(),
			FromFork: pr.GetHead().GetRepo() == nil ||
				!strings.EqualFold(pr.GetHead().GetRepo().GetFullName(), pr.GetBase().GetRepo().GetFullName()),
		}
		return checkPullRequest(ev)
	}
	return ev, nil
}

func githubAction(action string) PullRequestAction {
	switch action {
	case "opened":
		return PullRequestOpened
	case "synchronize", "synchronized":
		return PullRequestUpdated
	case "reopened":
		return PullRequestReopened
	case "closed":
		return PullRequestClosed
	}
	return PullRequestOther
}

// pushEvent fills a push to a branch or a tag; a push to another kind of
// ref (refs/notes/..., refs/pull/...) is Other.
func pushEvent(ev Event, ref, before, after string) (Event, error) {
	switch {
	case strings.HasPrefix(ref, "refs/heads/") && len(ref) > len("refs/heads/"):
		ev.Kind = EventPush
	case strings.HasPrefix(ref, "refs/tags/") && len(ref) > len("refs/tags/"):
		ev.Kind = EventTag
	default:
		ev.Kind = EventOther
		return ev, nil
	}
	if len(ref) > 255 {
		return ev, fmt.Errorf("ref: longer than 255 bytes: %w", ErrMalformed)
	}
	if !fullSHA.MatchString(after) {
		return ev, fmt.Errorf("after: %q is not a full commit sha: %w", after, ErrMalformed)
	}
	ev.Ref, ev.Before, ev.After = ref, before, after
	ev.Deleted = strings.Trim(after, "0") == ""
	return ev, nil
}

func checkPullRequest(ev Event) (Event, error) {
	pr := ev.PullRequest
	switch {
	case pr.Number <= 0:
		return ev, fmt.Errorf("number: missing: %w", ErrMalformed)
	case pr.Action == PullRequestOther || pr.Action == PullRequestClosed:
		return ev, nil
	case !fullSHA.MatchString(pr.HeadSHA):
		return ev, fmt.Errorf("pull_request.head.sha: %q is not a full commit sha: %w", pr.HeadSHA, ErrMalformed)
	case pr.HeadRef == "" || len(pr.HeadRef) > 255:
		return ev, fmt.Errorf("pull_request.head.ref: missing or longer than 255 bytes: %w", ErrMalformed)
	case len(pr.BaseRef) > 255 || len(pr.Title) > 4096:
		return ev, fmt.Errorf("pull_request.base.ref or title: too long: %w", ErrMalformed)
	}
	return ev, nil
}

// parseGitLab reads GitLab's push, tag push and merge request hooks.
func parseGitLab(name, delivery, deliveryHeader string, body []byte) (Event, error) {
	ev := Event{Kind: EventOther, Name: name, Delivery: delivery}
	switch gitlab.EventType(name) {
	case "":
		return ev, fmt.Errorf("missing X-Gitlab-Event: %w", ErrMalformed)
	case gitlab.EventTypePush, gitlab.EventTypeTagPush, gitlab.EventTypeMergeRequest:
	default:
		return ev, nil
	}
	if err := checkDelivery(delivery, deliveryHeader); err != nil {
		return ev, err
	}
	payload, err := gitlab.ParseWebhook(gitlab.EventType(name), body)
	if err != nil {
		return ev, malformed(name, err)
	}
	switch p := payload.(type) {
	case *gitlab.PushEvent:
		return pushEvent(ev, p.Ref, p.Before, p.After)
	case *gitlab.TagEvent:
		return pushEvent(ev, p.Ref, p.Before, p.After)
	case *gitlab.MergeEvent:
		a := p.ObjectAttributes
		action := PullRequestOther
		switch a.Action {
		case "open":
			action = PullRequestOpened
		case "reopen":
			action = PullRequestReopened
		case "close", "merge":
			action = PullRequestClosed
		case "update":
			// An update with oldrev moved the head; without it, the title,
			// labels or the like changed.
			if a.OldRev != "" {
				action = PullRequestUpdated
			}
		}
		ev.Kind = EventPullRequest
		ev.PullRequest = PullRequest{
			Number:   a.IID,
			Action:   action,
			HeadSHA:  a.LastCommit.ID,
			HeadRef:  a.SourceBranch,
			BaseRef:  a.TargetBranch,
			Title:    a.Title,
			FromFork: a.SourceProjectID != a.TargetProjectID,
		}
		return checkPullRequest(ev)
	}
	return ev, nil
}
