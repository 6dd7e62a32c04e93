package source

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/forge"
	"github.com/sluicehq/sluice/platform/gitauth"
	"github.com/sluicehq/sluice/platform/rpcserver"
	"github.com/sluicehq/sluice/services/source/domain"
	"github.com/sluicehq/sluice/services/source/gitmirror"
)

// The webhook use case: a push to a watched branch, announced by a forge's
// webhook, starts a run, once per delivery id (Push). Below it, the HTTP route that receives
// the webhooks, checks their signatures and calls Push.

// PushResult says what a webhook push did.
type PushResult struct {
	// Outcome is "queued" (a run was made), "duplicate" (this delivery
	// made a run before), "duplicate commit" (the commit has a run on the
	// branch already, made by another delivery, the poll or by hand: a
	// replayed or second webhook makes none), "ignored", "seen" (the
	// branch's head when the repository was registered: history starts no
	// run) or "cancelled" (a closed pull request's runs). RunID is the run
	// made, or the existing one (the first cancelled).
	Outcome string
	RunID   string
	Reason  string
}

// Push handles a push a webhook announced, of a branch or a tag: it
// fetches the mirror and starts a run (once per delivery id) when the
// pipeline file at the pushed commit asks for one (its on: section,
// domain.Unwanted; without one, pushes to the repository's branch run).
func (s *Service) Push(ctx context.Context, repo domain.Repository, deliveryID, ref, after string) (PushResult, error) {
	if res, seen, err := s.delivered(ctx, repo, deliveryID); seen || err != nil {
		return res, err
	}
	branch := ""
	if b, ok := strings.CutPrefix(ref, "refs/heads/"); ok {
		branch = b
	}
	switch {
	case branch == "" && domain.Tag(ref) == "":
		return PushResult{Outcome: "ignored", Reason: fmt.Sprintf("push to %s, which is neither a branch nor a tag", ref)}, nil
	case after == forge.ZeroSHA:
		return PushResult{Outcome: "ignored", Reason: fmt.Sprintf("%s was deleted", ref)}, nil
	case branch == repo.Branch:
		return s.pushWatched(ctx, repo, deliveryID, after)
	case domain.ReservedBranch(branch) != "":
		return PushResult{Outcome: "ignored", Reason: domain.ReservedBranch(branch)}, nil
	}
	return s.pushOther(ctx, repo, deliveryID, ref, branch, after)
}

// pushWatched handles a push to the repository's branch, whose last seen
// commit it moves on.
func (s *Service) pushWatched(ctx context.Context, repo domain.Repository, deliveryID, after string) (PushResult, error) {
	if runID, err := s.store.CommitRun(ctx, repo.ID, repo.Branch, after); err == nil {
		return duplicateCommit(repo, after, runID), nil
	} else if !errors.Is(err, apierror.ErrNotFound) {
		return PushResult{}, err
	}
	if after == repo.LastSeenCommit {
		return PushResult{Outcome: "seen", Reason: fmt.Sprintf("commit %s was the head of %s when the repository was registered", after, repo.Branch)}, nil
	}
	if err := s.fetch(ctx, repo); err != nil {
		return PushResult{}, err
	}
	if _, err := s.mirrors.Commit(repo.ID, after); err != nil {
		if errors.Is(err, gitmirror.ErrNotFound) {
			return PushResult{}, fmt.Errorf("after: commit %s is not in repository %q after fetching it: %w", after, repo.Name, apierror.ErrFailedPrecondition)
		}
		return PushResult{}, err
	}
	// A push to an ancestor of what was seen (an old delivery arriving
	// late) still gets its run, but does not move the branch back.
	older := false
	if repo.LastSeenCommit != "" {
		newer, err := s.mirrors.Log(ctx, repo.ID, repo.LastSeenCommit, after, 1)
		if err != nil {
			return PushResult{}, err
		}
		older = len(newer) == 0
	}
	run, err := s.startRun(ctx, repo, branchHead(repo.Branch, after), domain.TriggerWebhook, func(tx *sql.Tx, run domain.Run) error {
		return recordDelivery(ctx, tx, repo, run, domain.TriggerWebhook, deliveryID, func() error {
			return moveSeen(ctx, tx, repo, after, older)
		})
	})
	if errors.Is(err, errDuplicateDelivery) {
		runID, err := s.store.DeliveryRun(ctx, repo.ID, deliveryID)
		return PushResult{Outcome: "duplicate", RunID: runID, Reason: "duplicate delivery"}, err
	}
	if errors.Is(err, errSkipRun) {
		return PushResult{Outcome: "seen", Reason: fmt.Sprintf("commit %s was the head of %s when the repository was registered", after, repo.Branch)}, nil
	}
	if existing := new(existingRun); errors.As(err, &existing) {
		return duplicateCommit(repo, after, existing.RunID), nil
	}
	if no := new(unwantedRun); errors.As(err, &no) {
		// Seen all the same, so that the poll does not look again.
		if !older {
			if err := s.markSeen(ctx, repo, after); err != nil {
				return PushResult{}, err
			}
		}
		return PushResult{Outcome: "ignored", Reason: no.Reason}, nil
	}
	if err != nil {
		return PushResult{}, err
	}
	return PushResult{Outcome: "queued", RunID: run.ID}, nil
}

// pushOther handles a push to another branch than the repository's, or
// of a tag (branch ""): such pushes run only when the pipeline file at
// the commit names them in its on: section. A tag runs the commit it
// points to, however the forge gave after (an annotated tag's object).
func (s *Service) pushOther(ctx context.Context, repo domain.Repository, deliveryID, ref, branch, after string) (PushResult, error) {
	if branch != "" {
		if runID, err := s.store.CommitRun(ctx, repo.ID, branch, after); err == nil {
			return duplicateCommitOn(branch, after, runID), nil
		} else if !errors.Is(err, apierror.ErrNotFound) {
			return PushResult{}, err
		}
	}
	if err := s.fetch(ctx, repo); err != nil {
		return PushResult{}, err
	}
	res := branchHead(branch, after)
	if branch == "" {
		r, err := s.mirrors.Resolve(repo.ID, ref)
		if errors.Is(err, gitmirror.ErrNotCommit) {
			return PushResult{Outcome: "ignored", Reason: fmt.Sprintf("tag %s points to no commit", domain.Tag(ref))}, nil
		}
		if errors.Is(err, gitmirror.ErrNotFound) {
			return PushResult{}, fmt.Errorf("ref: tag %s is not in repository %q after fetching it: %w", domain.Tag(ref), repo.Name, apierror.ErrFailedPrecondition)
		}
		if err != nil {
			return PushResult{}, err
		}
		res = gitmirror.Resolved{Commit: r.Commit, Ref: ref}
	} else if _, err := s.mirrors.Commit(repo.ID, after); err != nil {
		if errors.Is(err, gitmirror.ErrNotFound) {
			return PushResult{}, fmt.Errorf("after: commit %s is not in repository %q after fetching it: %w", after, repo.Name, apierror.ErrFailedPrecondition)
		}
		return PushResult{}, err
	}
	run, err := s.startRun(ctx, repo, res, domain.TriggerWebhook, func(tx *sql.Tx, run domain.Run) error {
		return recordDelivery(ctx, tx, repo, run, domain.TriggerWebhook, deliveryID, nil)
	})
	var existing *existingRun
	var no *unwantedRun
	switch {
	case errors.Is(err, errDuplicateDelivery):
		runID, err := s.store.DeliveryRun(ctx, repo.ID, deliveryID)
		return PushResult{Outcome: "duplicate", RunID: runID, Reason: "duplicate delivery"}, err
	case errors.As(err, &existing):
		return duplicateCommitOn(domain.CommitKey(branch, ref), res.Commit, existing.RunID), nil
	case errors.As(err, &no):
		return PushResult{Outcome: "ignored", Reason: no.Reason}, nil
	case err != nil:
		return PushResult{}, err
	}
	return PushResult{Outcome: "queued", RunID: run.ID}, nil
}

// moveSeen moves the repository's last seen commit on to after, in the
// transaction of its push's run, unless the push was of an older commit.
func moveSeen(ctx context.Context, tx *sql.Tx, repo domain.Repository, after string, older bool) error {
	// Compare and set against what was read before the (slow) fetch. A
	// poll or another delivery that ran this commit meanwhile won
	// already (startRun found its run); one that moved the branch on
	// makes this delivery's CAS fail.
	cur, err := lastSeen(ctx, tx, repo.ID)
	if err != nil {
		return err
	}
	if cur == after {
		return errSkipRun
	}
	if !older {
		ok, err := setLastSeen(ctx, tx, repo.ID, after, &cur)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("repository %q changed while its push was handled; deliver it again: %w", repo.Name, apierror.ErrUnavailable)
		}
	}
	return nil
}

// recordDelivery records, in the transaction of the run it made, the
// webhook delivery (a second delivery of it is errDuplicateDelivery), then
// runs check (when not nil), then records the change it announced
// (ChangeReceived).
func recordDelivery(ctx context.Context, tx *sql.Tx, repo domain.Repository, run domain.Run, trigger domain.Trigger, deliveryID string, check func() error) error {
	if err := insertDelivery(ctx, tx, repo.ID, deliveryID, run.ID, run.CreatedAt); err != nil {
		return err
	}
	if check != nil {
		if err := check(); err != nil {
			return err
		}
	}
	return enqueueChange(ctx, tx, repo, run, trigger, deliveryID)
}

// enqueueChange records, in the transaction of the run it made, the change
// a webhook delivery (deliveryID) or the poll ("") noticed: ChangeReceived.
func enqueueChange(ctx context.Context, tx *sql.Tx, repo domain.Repository, run domain.Run, trigger domain.Trigger, deliveryID string) error {
	ev, err := events.New(changeReceivedToProto(repo, run, trigger, deliveryID), run.Commit, run.ID)
	if err != nil {
		return err
	}
	return events.Enqueue(ctx, tx, ev)
}

// markSeen moves the repository's last seen commit on to commit, which
// has a run or needs none, so that the poll does not look at it again.
func (s *Service) markSeen(ctx context.Context, repo domain.Repository, commit string) error {
	return s.store.InTx(ctx, func(tx *sql.Tx) error {
		was := repo.LastSeenCommit
		_, err := setLastSeen(ctx, tx, repo.ID, commit, &was)
		return err
	})
}

// delivered answers a delivery that made a run before (seen).
func (s *Service) delivered(ctx context.Context, repo domain.Repository, deliveryID string) (PushResult, bool, error) {
	runID, err := s.store.DeliveryRun(ctx, repo.ID, deliveryID)
	switch {
	case err == nil:
		return PushResult{Outcome: "duplicate", RunID: runID, Reason: "duplicate delivery"}, true, nil
	case errors.Is(err, apierror.ErrNotFound):
		return PushResult{}, false, nil
	}
	return PushResult{}, false, err
}

// duplicateCommit is the answer to a push of a commit that has a run.
func duplicateCommit(repo domain.Repository, commit, runID string) PushResult {
	return duplicateCommitOn(repo.Branch, commit, runID)
}

// duplicateCommitOn is the answer to a push of a commit that has a run on
// branch (or ref).
func duplicateCommitOn(branch, commit, runID string) PushResult {
	return PushResult{Outcome: "duplicate commit", RunID: runID,
		Reason: fmt.Sprintf("commit %s already has run %s on %s", commit, runID, branch)}
}

// webhookRepository finds the repository a webhook URL names, with the
// secret that signs its webhooks.
func (s *Service) webhookRepository(ctx context.Context, idOrName string) (domain.Repository, error) {
	repo, err := s.store.Repository(ctx, idOrName)
	if err != nil {
		return repo, err
	}
	return s.withWebhookSecret(repo)
}

// WebhookPath is where the forges' webhooks are received:
// POST /webhooks/<forge>/<repository name or id>, forge github, gitea
// (forgejo) or gitlab. Each forge's signature scheme is checked
// (forge.ParseWebhook).
const WebhookPath = "/webhooks/"

// maxWebhookBody bounds a webhook's body.
const maxWebhookBody = 1 << 20

// NewWebhookRoute mounts the webhook receiver.
func NewWebhookRoute(svc *Service, log *slog.Logger) rpcserver.Route {
	return rpcserver.Route{Path: WebhookPath, Handler: NewWebhookHandler(svc, log)}
}

// NewWebhookHandler receives the forges' webhooks: it checks the
// signature with the repository's secret in the scheme of the forge the
// path names, answers ping, and turns a push to the watched branch into a
// run, once per delivery id.
func NewWebhookHandler(svc *Service, log *slog.Logger) http.Handler {
	return &webhook{svc: svc, log: log}
}

type webhook struct {
	svc *Service
	log *slog.Logger
}

// webhookReply is every answer's JSON body.
type webhookReply struct {
	Status string `json:"status,omitempty"`
	RunID  string `json:"run_id,omitempty"`
	Reason string `json:"reason,omitempty"`
	Error  string `json:"error,omitempty"`
}

func reply(w http.ResponseWriter, code int, body webhookReply) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

func (h *webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		reply(w, http.StatusMethodNotAllowed, webhookReply{Error: "use POST"})
		return
	}
	kindName, name, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, WebhookPath), "/")
	kind, err := forge.ParseKind(kindName)
	if err != nil || name == "" || strings.Contains(name, "/") {
		reply(w, http.StatusNotFound, webhookReply{Error: "the URL must be " + WebhookPath + "<forge>/<repository>, forge github, gitea or gitlab"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
	if err != nil {
		if mbe := new(http.MaxBytesError); errors.As(err, &mbe) {
			reply(w, http.StatusRequestEntityTooLarge, webhookReply{Error: fmt.Sprintf("the body is larger than %d bytes", maxWebhookBody)})
			return
		}
		reply(w, http.StatusBadRequest, webhookReply{Error: "cannot read the body"})
		return
	}
	ctx := r.Context()
	repo, err := h.svc.webhookRepository(ctx, name)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	ev, err := forge.ParseWebhook(kind, r.Header, body, repo.WebhookSecret)
	switch {
	case errors.Is(err, forge.ErrSignature):
		reply(w, http.StatusUnauthorized, webhookReply{Error: err.Error()})
		return
	case err != nil:
		reply(w, http.StatusBadRequest, webhookReply{Error: err.Error()})
		return
	}
	// The sender knows the secret; a webhook of another forge than the
	// repository's is a misconfiguration it is told of.
	if !repo.Forge.IsZero() && repo.Forge.Kind != kind {
		reply(w, http.StatusConflict, webhookReply{Error: fmt.Sprintf("repository %q is on %s: its webhooks go to %s%s/%s", repo.Name, repo.Forge.Kind, WebhookPath, repo.Forge.Kind, repo.Name)})
		return
	}
	var res PushResult
	switch ev.Kind {
	case forge.EventPing:
		reply(w, http.StatusOK, webhookReply{Status: "pong"})
		return
	case forge.EventPush, forge.EventTag:
		after := ev.After
		if ev.Deleted {
			after = forge.ZeroSHA // of any length: the branch is gone
		}
		res, err = h.svc.Push(ctx, repo, ev.Delivery, ev.Ref, after)
	case forge.EventPullRequest:
		res, err = h.svc.PullRequest(ctx, repo, kind, ev.Delivery, ev.PullRequest)
	default:
		reply(w, http.StatusAccepted, webhookReply{Status: "ignored", Reason: fmt.Sprintf("event %q is not handled", ev.Name)})
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	switch res.Outcome {
	case "queued":
		reply(w, http.StatusAccepted, webhookReply{Status: "queued", RunID: res.RunID})
	case "duplicate":
		reply(w, http.StatusOK, webhookReply{Status: "duplicate delivery", RunID: res.RunID})
	case "duplicate commit":
		reply(w, http.StatusOK, webhookReply{Status: "duplicate commit", RunID: res.RunID, Reason: res.Reason})
	case "seen":
		reply(w, http.StatusOK, webhookReply{Status: "seen", Reason: res.Reason})
	case "cancelled":
		reply(w, http.StatusAccepted, webhookReply{Status: "cancelled", RunID: res.RunID, Reason: res.Reason})
	default:
		reply(w, http.StatusAccepted, webhookReply{Status: "ignored", Reason: res.Reason})
	}
}

// fail answers an error: its kind picks the status; an unexpected one is
// logged here, once, and not shown. A refused credential (a failed
// precondition: trying again does not mend it) is shown and logged, as
// the operator, not the forge, has to set a new one.
func (h *webhook) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, apierror.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, apierror.ErrInvalidArgument):
		code = http.StatusBadRequest
	case errors.Is(err, apierror.ErrFailedPrecondition):
		code = http.StatusUnprocessableEntity
		if gitauth.Refused(err) {
			h.log.Error("webhook: the repository's credential was refused", slog.String("path", r.URL.Path), slog.Any("error", err))
		}
	case errors.Is(err, apierror.ErrUnavailable):
		code = http.StatusServiceUnavailable
	}
	if code == http.StatusInternalServerError || code == http.StatusServiceUnavailable {
		if r.Context().Err() == nil {
			h.log.Error("webhook failed", slog.String("path", r.URL.Path), slog.Any("error", err))
		}
		reply(w, code, webhookReply{Error: "the webhook could not be handled; the service log has the details"})
		return
	}
	reply(w, code, webhookReply{Error: err.Error()})
}
