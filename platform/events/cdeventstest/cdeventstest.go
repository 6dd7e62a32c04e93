// Package cdeventstest checks Sluice's events against the CDEvents
// specification in tests. A dev.cdevents.* body must validate against the
// official CDEvents v0.5.1 JSON schema of its type (testdata/cdevents-v0.5.1,
// copied from the specification); a custom dev.cdeventsx.* body against the
// rules CDEvents sets for custom events: the context and subject of every
// standard schema, a type dev.cdeventsx.<tool>-<subject>.<predicate>.<version>
// and any content.
package cdeventstest

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/sluicehq/sluice/platform/events"
)

//go:embed testdata/cdevents-v0.5.1/schemas
var schemaFiles embed.FS

const (
	schemaDir = "testdata/cdevents-v0.5.1/schemas"
	// customTypePattern is the form CDEvents gives custom types (its
	// custom/schema.json).
	customTypePattern = `^dev\.cdeventsx\.[a-zA-Z0-9]+-[a-zA-Z]+\.[a-zA-Z]+\.[0-9]\.[0-9]\.[0-9]$`
	// customTemplate is the standard schema whose context and subject rules
	// the custom schema is made from; any standard schema would do.
	customTemplate = "pipelinerunqueued.json"
	// customID places the custom schema beside the standard ones, so that
	// its $ref to links/ resolves the same way.
	customID = "https://cdevents.dev/0.5.1/schema/custom"
)

// Validator holds the compiled schemas.
type Validator struct {
	byType map[string]*jsonschema.Schema
	custom *jsonschema.Schema
}

// New compiles the schemas, with format assertions on (a "uri" must be an
// absolute URI, a "date-time" RFC 3339).
func New() (*Validator, error) {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	ids := map[string]string{} // event type -> schema id
	var custom any
	err := fs.WalkDir(schemaFiles, schemaDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := schemaFiles.ReadFile(path)
		if err != nil {
			return err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		id, _ := get(doc, "$id").(string)
		if id == "" {
			return fmt.Errorf("%s has no $id", path)
		}
		if err := c.AddResource(id, doc); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if strings.Contains(strings.TrimPrefix(path, schemaDir+"/"), "/") {
			return nil // links/: only referenced
		}
		typ, err := eventType(doc)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		ids[typ] = id
		if strings.HasSuffix(path, "/"+customTemplate) {
			if custom, err = customSchema(data); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load the CDEvents schemas: %w", err)
	}
	if custom == nil {
		return nil, fmt.Errorf("load the CDEvents schemas: %s is missing", customTemplate)
	}
	if err := c.AddResource(customID, custom); err != nil {
		return nil, err
	}
	v := &Validator{byType: map[string]*jsonschema.Schema{}}
	for typ, id := range ids {
		if v.byType[typ], err = c.Compile(id); err != nil {
			return nil, fmt.Errorf("compile %s: %w", id, err)
		}
	}
	if v.custom, err = c.Compile(customID); err != nil {
		return nil, fmt.Errorf("compile the custom schema: %w", err)
	}
	return v, nil
}

// eventType is the one type a standard schema allows (context.type's enum).
func eventType(doc any) (string, error) {
	enum, _ := get(doc, "properties", "context", "properties", "type", "enum").([]any)
	if len(enum) != 1 {
		return "", fmt.Errorf("context.type allows %d types, want 1", len(enum))
	}
	typ, _ := enum[0].(string)
	return typ, nil
}

// customSchema is the standard schema data made into one for custom
// types: the type is any custom type, the content any object.
func customSchema(data []byte) (any, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	root, _ := doc.(map[string]any)
	ctx, _ := get(doc, "properties", "context", "properties").(map[string]any)
	subject, _ := get(doc, "properties", "subject", "properties").(map[string]any)
	if root == nil || ctx == nil || subject == nil {
		return nil, fmt.Errorf("%s has no context or subject properties", customTemplate)
	}
	root["$id"] = customID
	ctx["type"] = map[string]any{"type": "string", "pattern": customTypePattern}
	subject["content"] = map[string]any{"type": "object", "additionalProperties": true}
	return doc, nil
}

func get(doc any, keys ...string) any {
	for _, k := range keys {
		m, ok := doc.(map[string]any)
		if !ok {
			return nil
		}
		doc = m[k]
	}
	return doc
}

// Types are the standard event types the validator has schemas for.
func (v *Validator) Types() []string {
	types := make([]string, 0, len(v.byType))
	for t := range v.byType {
		types = append(types, t)
	}
	slices.Sort(types)
	return types
}

// Validate checks one CDEvent body: against the schema of its
// context.type, or for a custom type the custom rules; its specversion must
// be the one Sluice follows.
func (v *Validator) Validate(body []byte) error {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	typ, _ := get(doc, "context", "type").(string)
	var schema *jsonschema.Schema
	switch {
	case strings.HasPrefix(typ, "dev.cdevents."):
		if schema = v.byType[typ]; schema == nil {
			return fmt.Errorf("no CDEvents v0.5.1 schema has type %q (copy its schema into testdata if it is a v0.5.1 type)", typ)
		}
	case strings.HasPrefix(typ, "dev.cdeventsx."):
		schema = v.custom
	default:
		return fmt.Errorf("context.type %q is neither a CDEvents type nor a custom one", typ)
	}
	if err := schema.Validate(doc); err != nil {
		return fmt.Errorf("%s: %w", typ, err)
	}
	if sv, _ := get(doc, "context", "specversion").(string); sv != events.CDEventsVersion {
		return fmt.Errorf("%s: context.specversion %q, want %q", typ, sv, events.CDEventsVersion)
	}
	return nil
}

// ValidateMessage checks a message as Sluice publishes it: a valid CDEvent
// body whose CloudEvents binary-mode headers agree with it.
func (v *Validator) ValidateMessage(header nats.Header, body []byte) error {
	if err := v.Validate(body); err != nil {
		return err
	}
	var ev struct {
		Context struct {
			ID, Source, Type string
			ChainID          string `json:"chainId"`
		}
		Subject struct{ ID string }
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return err
	}
	var errs []error
	for _, h := range []struct{ name, want string }{
		{events.HeaderSpecVersion, "1.0"},
		{events.HeaderID, ev.Context.ID},
		{events.HeaderSource, ev.Context.Source},
		{events.HeaderType, ev.Context.Type},
		{events.HeaderSubject, ev.Subject.ID},
		{events.HeaderChainID, ev.Context.ChainID},
		{events.HeaderContentType, "application/json"},
		{nats.MsgIdHdr, ev.Context.ID},
	} {
		if got := header.Get(h.name); got != h.want {
			errs = append(errs, fmt.Errorf("header %s is %q, the body says %q", h.name, got, h.want))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: %w", ev.Context.Type, err)
	}
	return nil
}
