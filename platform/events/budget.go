package events

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/sluicehq/sluice/platform/cut"
)

// MaxBody is every event's size budget: New keeps an event's body (its
// CDEvent JSON) within it by cutting the free text its kind declares
// (Kind.CutFields), each cut marked (cut.Text). NATS refuses a message over
// its max_payload (1 MiB by default); the budget leaves room for the
// headers. An event whose other fields alone exceed the budget is made as
// it is: should NATS refuse it, the outbox relay dead-letters it.
const MaxBody = 768 << 10

// cutField is a payload field of free text that New may cut to keep an
// event within MaxBody: a string, or a list of strings.
type cutField struct {
	// path is the field's name in the payload, through singular message
	// fields: "release.changelog".
	path string
	// last keeps a list's last items (a step's last log lines) and cuts
	// its first; otherwise a list keeps its first items, a string its start.
	last bool
}

// CutFields are the JSON paths (as in customData) of the payload fields New
// may cut to keep an event of the kind within MaxBody.
func (k Kind) CutFields() []string {
	out := make([]string, 0, len(k.cut))
	for _, c := range k.cut {
		var names []string
		desc := k.payload.ProtoReflect().Descriptor()
		for _, name := range strings.Split(c.path, ".") {
			fd := desc.Fields().ByName(protoreflect.Name(name))
			names = append(names, fd.JSONName())
			desc = fd.Message()
		}
		out = append(out, strings.Join(names, "."))
	}
	return out
}

// checkCutFields panics when a cut path does not name a string or a list
// of strings of the kind's payload: the catalogue is wrong.
func (k Kind) checkCutFields() {
	for _, c := range k.cut {
		desc := k.payload.ProtoReflect().Descriptor()
		names := strings.Split(c.path, ".")
		for i, name := range names {
			fd := desc.Fields().ByName(protoreflect.Name(name))
			switch {
			case fd == nil:
				panic(fmt.Sprintf("events: %s has no field %s", k.PayloadName(), c.path))
			case i < len(names)-1 && (fd.Kind() != protoreflect.MessageKind || fd.IsList() || fd.IsMap()):
				panic(fmt.Sprintf("events: %s: %s is not a message", k.PayloadName(), name))
			case i == len(names)-1 && (fd.Kind() != protoreflect.StringKind || fd.IsMap()):
				panic(fmt.Sprintf("events: %s: %s is not text", k.PayloadName(), c.path))
			case c.last && i == len(names)-1 && !fd.IsList():
				panic(fmt.Sprintf("events: %s: %s is not a list", k.PayloadName(), c.path))
			}
			desc = fd.Message()
		}
	}
}

// fitPasses bounds how often fit measures and cuts again: a cut is sized
// from the raw text, and JSON escapes, and fields that appear more often
// than others (in customData and in the subject content), make the body
// shrink by more or less than planned.
const fitPasses = 4

// markRoom is what fit reserves in the budget for each field's mark.
const markRoom = 64

// fit returns e within MaxBody, with its payload a copy whose free-text
// fields are cut, the largest first, to a common size (the fewest bytes
// cut in all); e as it is when it fits, or when cutting cannot make it.
func (e Event) fit() (Event, error) {
	if len(e.Kind.cut) == 0 {
		return e, nil // nothing to cut: NATS takes it, or the relay dead-letters it
	}
	body, err := e.Body()
	if err != nil || len(body) <= MaxBody {
		return e, err
	}
	orig := e.Payload
	fields := e.Kind.cutFieldsOf(orig)
	sizes := make([]int, len(fields))
	text := 0
	for i, f := range fields {
		sizes[i] = f.encodedSize()
		text += sizes[i]
	}
	// The body without the text tells what the text takes in it, each field
	// as often as it appears: the text must keep within what is left.
	fixed, err := e.withoutText()
	if err != nil || text == 0 {
		return e, err
	}
	inBody := max(float64(len(body)-fixed)/float64(text), 1)
	room := float64(MaxBody-fixed-markRoom*len(fields)) / inBody
	for range fitPasses {
		level := max(waterLevel(sizes, text-int(room)), cut.MinMax)
		// Each pass cuts the text as it came, so that the marks count
		// everything cut.
		e.Payload = proto.Clone(orig)
		for i, f := range e.Kind.cutFieldsOf(e.Payload) {
			if sizes[i] > level {
				f.cutTo(level * fields[i].rawSize() / sizes[i])
			}
		}
		if body, err = e.refresh(); err != nil {
			return Event{}, err
		}
		if len(body) <= MaxBody {
			break
		}
		room -= float64(len(body)-MaxBody)/inBody + 1
	}
	if err := protovalidate.Validate(e.Payload); err != nil {
		return Event{}, fmt.Errorf("%s cut to its size budget: %w: %w", e.Kind.Type, ErrInvalidEvent, err)
	}
	return e, nil
}

// refresh derives e's content from its payload again and encodes it.
func (e *Event) refresh() ([]byte, error) {
	var err error
	if e.Content, err = e.Kind.Content(e.Payload); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	return e.Body()
}

// withoutText is the size of e's body with its cut fields empty.
func (e Event) withoutText() (int, error) {
	e.Payload = proto.Clone(e.Payload)
	for _, f := range e.Kind.cutFieldsOf(e.Payload) {
		f.msg.Clear(f.fd)
	}
	body, err := e.refresh()
	return len(body), err
}

// waterLevel is the largest size such that cutting every size above it
// down to it cuts at least excess bytes in all; 0 when even cutting all
// of them to nothing cuts less.
func waterLevel(sizes []int, excess int) int {
	sorted := slices.Clone(sizes)
	slices.SortFunc(sorted, func(a, b int) int { return b - a })
	saved := 0
	for i, s := range sorted {
		next := 0
		if i+1 < len(sorted) {
			next = sorted[i+1]
		}
		if step := (i + 1) * (s - next); saved+step >= excess {
			return s - (excess-saved+i)/(i+1)
		}
		saved += (i + 1) * (s - next)
	}
	return 0
}

// textField is one free-text field of a payload, to measure and cut.
type textField struct {
	msg  protoreflect.Message
	fd   protoreflect.FieldDescriptor
	last bool
}

// cutFieldsOf are payload's cut fields that are set.
func (k Kind) cutFieldsOf(payload proto.Message) []textField {
	var out []textField
	for _, c := range k.cut {
		m := payload.ProtoReflect()
		names := strings.Split(c.path, ".")
		for _, name := range names[:len(names)-1] {
			fd := m.Descriptor().Fields().ByName(protoreflect.Name(name))
			if !m.Has(fd) {
				m = nil
				break
			}
			m = m.Mutable(fd).Message()
		}
		if m == nil {
			continue
		}
		fd := m.Descriptor().Fields().ByName(protoreflect.Name(names[len(names)-1]))
		if m.Has(fd) {
			out = append(out, textField{msg: m, fd: fd, last: c.last})
		}
	}
	return out
}

func (f textField) lines() []string {
	list := f.msg.Get(f.fd).List()
	lines := make([]string, list.Len())
	for i := range lines {
		lines[i] = list.Get(i).String()
	}
	return lines
}

// rawSize is the field's text in bytes (a list's items each with one byte
// more, as cut counts them).
func (f textField) rawSize() int {
	if !f.fd.IsList() {
		return len(f.msg.Get(f.fd).String())
	}
	n := 0
	for _, l := range f.lines() {
		n += len(l) + 1
	}
	return n
}

// encodedSize is the field's size in the event's JSON.
func (f textField) encodedSize() int {
	var v any = f.msg.Get(f.fd).String()
	if f.fd.IsList() {
		v = f.lines()
	}
	b, err := json.Marshal(v)
	if err != nil {
		return f.rawSize()
	}
	return len(b)
}

// cutTo cuts the field to limit bytes, as cut counts them.
func (f textField) cutTo(limit int) {
	limit = max(limit, cut.MinMax)
	if !f.fd.IsList() {
		f.msg.Set(f.fd, protoreflect.ValueOfString(cut.Text(f.msg.Get(f.fd).String(), limit)))
		return
	}
	var lines []string
	if f.last {
		lines = cut.LastLines(f.lines(), limit)
	} else {
		lines = cut.FirstLines(f.lines(), limit)
	}
	list := f.msg.NewField(f.fd).List()
	for _, l := range lines {
		list.Append(protoreflect.ValueOfString(l))
	}
	f.msg.Set(f.fd, protoreflect.ValueOfList(list))
}
