package source

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/rpcserver"
)

// WebhookPath is where GitHub-style webhooks are received:
// POST /webhooks/github/<repository name or id>.
const WebhookPath = "/webhooks/github/"

// maxWebhookBody bounds a webhook's body.
const maxWebhookBody = 1 << 20

var fullSHA = regexp.MustCompile(`^[0-9a-f]{40}$`)

// NewWebhookRoute mounts the webhook receiver.
func NewWebhookRoute(svc *Service, log *slog.Logger) rpcserver.Route {
	return rpcserver.Route{Path: WebhookPath, Handler: NewWebhookHandler(svc, log)}
}

// NewWebhookHandler receives GitHub-style webhooks: it checks the
// X-Hub-Signature-256 HMAC with the repository's secret, answers ping, and
// turns a push to the watched branch into a run, once per
// X-GitHub-Delivery.
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
	name := strings.TrimPrefix(r.URL.Path, WebhookPath)
	if name == "" || strings.Contains(name, "/") {
		reply(w, http.StatusNotFound, webhookReply{Error: "the URL must be " + WebhookPath + "<repository>"})
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
	if !validSignature(body, repo.WebhookSecret, r.Header.Get("X-Hub-Signature-256")) {
		reply(w, http.StatusUnauthorized, webhookReply{Error: "missing or wrong X-Hub-Signature-256"})
		return
	}
	switch event := r.Header.Get("X-GitHub-Event"); event {
	case "ping":
		reply(w, http.StatusOK, webhookReply{Status: "pong"})
		return
	case "push":
	case "":
		reply(w, http.StatusBadRequest, webhookReply{Error: "missing X-GitHub-Event"})
		return
	default:
		reply(w, http.StatusAccepted, webhookReply{Status: "ignored", Reason: fmt.Sprintf("event %q is not handled", event)})
		return
	}
	delivery := r.Header.Get("X-GitHub-Delivery")
	if delivery == "" || len(delivery) > 200 {
		reply(w, http.StatusBadRequest, webhookReply{Error: "missing or overlong X-GitHub-Delivery"})
		return
	}
	var push struct {
		Ref   string `json:"ref"`
		After string `json:"after"`
	}
	if err := json.Unmarshal(body, &push); err != nil {
		reply(w, http.StatusBadRequest, webhookReply{Error: "the body is not a push event: " + err.Error()})
		return
	}
	if !fullSHA.MatchString(push.After) {
		reply(w, http.StatusBadRequest, webhookReply{Error: fmt.Sprintf("after: %q is not a full commit sha", push.After)})
		return
	}
	res, err := h.svc.Push(ctx, repo, delivery, push.Ref, push.After)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	switch res.Outcome {
	case "queued":
		reply(w, http.StatusAccepted, webhookReply{Status: "queued", RunID: res.RunID})
	case "duplicate":
		reply(w, http.StatusOK, webhookReply{Status: "duplicate delivery", RunID: res.RunID})
	case "seen":
		reply(w, http.StatusOK, webhookReply{Status: "seen", Reason: res.Reason})
	default:
		reply(w, http.StatusAccepted, webhookReply{Status: "ignored", Reason: res.Reason})
	}
}

// fail answers an error: its kind picks the status; an unexpected one is
// logged here, once, and not shown.
func (h *webhook) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, apierror.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, apierror.ErrInvalidArgument):
		code = http.StatusBadRequest
	case errors.Is(err, apierror.ErrFailedPrecondition):
		code = http.StatusUnprocessableEntity
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

// validSignature checks "sha256=<hex HMAC-SHA256(body, secret)>".
func validSignature(body []byte, secret, header string) bool {
	hexSig, ok := strings.CutPrefix(header, "sha256=")
	if !ok || secret == "" {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}
