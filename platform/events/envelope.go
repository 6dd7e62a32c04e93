package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"buf.build/go/protovalidate"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/platform/ids"
)

// CloudEvents binary-mode headers, as the CloudEvents NATS binding names them.
const (
	HeaderID          = "ce-id"
	HeaderSource      = "ce-source"
	HeaderType        = "ce-type"
	HeaderSubject     = "ce-subject"
	HeaderTime        = "ce-time"
	HeaderSpecVersion = "ce-specversion"
	HeaderContentType = "content-type"
	HeaderTraceparent = "traceparent"
	// HeaderChainID carries the CDEvents chainId (the run id) so consumers
	// can filter without decoding the body.
	HeaderChainID = "ce-chainid"

	cloudEventsVersion = "1.0"
	// CDEventsVersion is the CDEvents specification every body follows
	// (context.specversion); each standard type validates against the JSON
	// schema of this version.
	CDEventsVersion = "0.5.1"
	jsonContentType = "application/json"
)

// ErrInvalidEvent marks an event that can never be handled: it does not
// decode or does not validate. Consumers dead-letter such events at once.
var ErrInvalidEvent = errors.New("invalid event")

// Event is one Sluice event: a CDEvent in a CloudEvents envelope whose
// customData is a typed protobuf payload.
type Event struct {
	ID   string
	Kind Kind
	// SubjectID is the CDEvents subject id (a build id, a run id, ...); it
	// is also the CloudEvents subject.
	SubjectID string
	// ChainID links every event of one run.
	ChainID string
	Time    time.Time
	// Content is the CDEvents subject content: derived from the payload by
	// New (Kind.Content), as received by Decode.
	Content     map[string]any
	Payload     proto.Message
	Traceparent string
	// Received is the message as it came from NATS; nil for an event made
	// here. Forward it, not a re-encoding, to keep what a newer producer
	// put in it.
	Received *nats.Msg
}

// New makes an event for payload, with a fresh id, the current time, the
// kind the payload belongs to, and the CDEvents subject content derived from
// the payload. The payload must validate and carry what the content needs.
// An event over its size budget (MaxBody) gets a copy of payload whose free
// text is cut to fit, each cut marked (Kind.CutFields); payload itself is
// left as it is.
func New(payload proto.Message, subjectID, chainID string) (Event, error) {
	kind, err := KindOf(payload)
	if err != nil {
		return Event{}, err
	}
	return newOfKind(kind, payload, subjectID, chainID)
}

func newOfKind(kind Kind, payload proto.Message, subjectID, chainID string) (Event, error) {
	if err := protovalidate.Validate(payload); err != nil {
		return Event{}, fmt.Errorf("%s: %w: %w", kind.Type, ErrInvalidEvent, err)
	}
	if subjectID == "" {
		return Event{}, fmt.Errorf("%s: %w: empty subject id", kind.Type, ErrInvalidEvent)
	}
	content, err := kind.Content(payload)
	if err != nil {
		return Event{}, fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	return Event{
		ID:        ids.New(),
		Kind:      kind,
		SubjectID: subjectID,
		ChainID:   chainID,
		Time:      time.Now().UTC(),
		Content:   content,
		Payload:   payload,
	}.fit()
}

// Source is the CloudEvents source of a service's events.
func Source(service string) string { return "/sluice/" + service }

type cdEvent struct {
	Context               cdContext       `json:"context"`
	Subject               cdSubject       `json:"subject"`
	CustomData            json.RawMessage `json:"customData,omitempty"`
	CustomDataContentType string          `json:"customDataContentType,omitempty"`
}

type cdContext struct {
	SpecVersion string    `json:"specversion"`
	ID          string    `json:"id"`
	Source      string    `json:"source"`
	Type        string    `json:"type"`
	Timestamp   time.Time `json:"timestamp"`
	ChainID     string    `json:"chainId,omitempty"`
}

// cdSubject has no type: CDEvents v0.5 schemas forbid one (the event type
// names the subject).
type cdSubject struct {
	ID      string         `json:"id"`
	Source  string         `json:"source"`
	Content map[string]any `json:"content"`
}

// Body returns the CDEvent JSON of e.
func (e Event) Body() ([]byte, error) {
	custom, err := protojson.MarshalOptions{UseProtoNames: false}.Marshal(e.Payload)
	if err != nil {
		return nil, fmt.Errorf("marshal %s payload: %w", e.Kind.Type, err)
	}
	content := e.Content
	if content == nil {
		content = map[string]any{}
	}
	return json.Marshal(cdEvent{
		Context: cdContext{
			SpecVersion: CDEventsVersion,
			ID:          e.ID,
			Source:      Source(e.Kind.Service),
			Type:        e.Kind.Type,
			Timestamp:   e.Time,
			ChainID:     e.ChainID,
		},
		Subject: cdSubject{
			ID:      e.SubjectID,
			Source:  Source(e.Kind.Service),
			Content: content,
		},
		CustomData:            custom,
		CustomDataContentType: jsonContentType,
	})
}

// Msg encodes e as a NATS message in CloudEvents binary mode, with
// Nats-Msg-Id set to the event id for publish de-duplication.
func (e Event) Msg() (*nats.Msg, error) {
	body, err := e.Body()
	if err != nil {
		return nil, err
	}
	m := nats.NewMsg(e.Kind.Subject)
	m.Data = body
	m.Header.Set(HeaderSpecVersion, cloudEventsVersion)
	m.Header.Set(HeaderID, e.ID)
	m.Header.Set(HeaderSource, Source(e.Kind.Service))
	m.Header.Set(HeaderType, e.Kind.Type)
	m.Header.Set(HeaderSubject, e.SubjectID)
	m.Header.Set(HeaderTime, e.Time.Format(time.RFC3339Nano))
	m.Header.Set(HeaderContentType, jsonContentType)
	if e.ChainID != "" {
		m.Header.Set(HeaderChainID, e.ChainID)
	}
	if e.Traceparent != "" {
		m.Header.Set(HeaderTraceparent, e.Traceparent)
	}
	m.Header.Set(nats.MsgIdHdr, e.ID)
	return m, nil
}

// Decode turns a received NATS message back into an Event with a typed,
// validated payload. Errors wrap ErrInvalidEvent.
func Decode(subject string, header nats.Header, data []byte) (Event, error) {
	typ := header.Get(HeaderType)
	kind, ok := kindByAnyType(typ)
	if typ == AuditType {
		kind, ok = AuditKind(strings.TrimPrefix(subject, AuditSubjectPrefix)), strings.HasPrefix(subject, AuditSubjectPrefix)
	}
	if !ok {
		return Event{}, fmt.Errorf("%w: unknown ce-type %q on %s", ErrInvalidEvent, typ, subject)
	}
	var body cdEvent
	if err := json.Unmarshal(data, &body); err != nil {
		return Event{}, fmt.Errorf("%w: %s body: %w", ErrInvalidEvent, typ, err)
	}
	payload := kind.NewPayload()
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body.CustomData, payload); err != nil {
		return Event{}, fmt.Errorf("%w: %s customData: %w", ErrInvalidEvent, typ, err)
	}
	if err := protovalidate.Validate(payload); err != nil {
		return Event{}, fmt.Errorf("%w: %s: %w", ErrInvalidEvent, typ, err)
	}
	id := header.Get(HeaderID)
	if id == "" {
		id = body.Context.ID
	}
	if id == "" {
		return Event{}, fmt.Errorf("%w: %s without ce-id", ErrInvalidEvent, typ)
	}
	return Event{
		ID:          id,
		Kind:        kind,
		SubjectID:   body.Subject.ID,
		ChainID:     body.Context.ChainID,
		Time:        body.Context.Timestamp,
		Content:     body.Subject.Content,
		Payload:     payload,
		Traceparent: header.Get(HeaderTraceparent),
		Received:    &nats.Msg{Subject: subject, Header: header, Data: data},
	}, nil
}
