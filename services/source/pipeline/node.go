package pipeline

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// maxDuration bounds every timeout in the file; maxDurationText is how
// messages spell it.
const (
	maxDuration     = 24 * time.Hour
	maxDurationText = "24h"
)

// parser collects the problems found while decoding one file.
type parser struct {
	file   string
	limits Limits
	errs   Errors
	// expanded counts the bytes matrix cells add to the pipeline.
	expanded int
	// part: the file is one of .sluice/, whose pipelines a run holds
	// beside .sluice.yaml's; releasedBy is another file that has the
	// run's release: section ("" for none).
	part       bool
	releasedBy string
}

// maxQuoted bounds a string of the file that a message quotes: a value
// may be as long as the file, and an alias may put it in many places.
const maxQuoted = 300

// errorAt reports a problem at n. A string argument longer than maxQuoted
// is cut to that, ending in "…", before it is formatted.
func (p *parser) errorAt(n *yaml.Node, hint, format string, args ...any) {
	for i, a := range args {
		if s, ok := a.(string); ok {
			args[i] = cutQuoted(s)
		}
	}
	p.errs = append(p.errs, Error{
		File:    p.file,
		Line:    n.Line,
		Column:  n.Column,
		Message: fmt.Sprintf(format, args...),
		Hint:    hint,
	})
}

// cutQuoted cuts s to maxQuoted bytes at a character boundary, ending in
// "…" when anything was taken off.
func cutQuoted(s string) string {
	if len(s) <= maxQuoted {
		return s
	}
	keep := maxQuoted
	for keep > 0 && !utf8.RuneStart(s[keep]) {
		keep--
	}
	return s[:keep] + "…"
}

// field is one known key of a mapping and how to decode its value.
type field struct {
	key      string
	required bool
	decode   func(value *yaml.Node)
}

// fields decodes the mapping n by calling, in file order, the decode function
// of each key present. It reports unknown, duplicate and missing required
// keys, and returns the set of keys present (nil if n is not a mapping).
func (p *parser) fields(n *yaml.Node, fields ...field) map[string]bool {
	pairs, ok := p.mapping(n)
	if !ok {
		return nil
	}
	known := make([]string, len(fields))
	for i, f := range fields {
		known[i] = f.key
	}
	present := make(map[string]bool)
	for _, kv := range pairs {
		i := indexOf(known, kv.key.Value)
		if i < 0 {
			hint := ""
			if c := closest(kv.key.Value, known); c != "" {
				hint = fmt.Sprintf("did you mean %q?", c)
			}
			p.errorAt(kv.key, hint, "unknown key %q", kv.key.Value)
			continue
		}
		present[kv.key.Value] = true
		fields[i].decode(kv.value)
	}
	for _, f := range fields {
		if f.required && !present[f.key] {
			p.errorAt(n, "", "missing required key %q", f.key)
		}
	}
	return present
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// pair is one key and its value in a mapping.
type pair struct{ key, value *yaml.Node }

// mapping returns the pairs of the mapping n. Keys that are not scalars and
// keys already defined are reported and left out.
func (p *parser) mapping(n *yaml.Node) ([]pair, bool) {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		p.errorAt(n, "", "expected a mapping, got %s", describe(n))
		return nil, false
	}
	var pairs []pair
	seen := make(map[string]*yaml.Node)
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, value := n.Content[i], n.Content[i+1]
		if key.Kind != yaml.ScalarNode {
			p.errorAt(key, "", "expected a string key, got %s", describe(key))
			continue
		}
		if first, dup := seen[key.Value]; dup {
			p.errorAt(key, "", "mapping key %q already defined at line %d", key.Value, first.Line)
			continue
		}
		seen[key.Value] = key
		pairs = append(pairs, pair{key, value})
	}
	return pairs, true
}

// list returns the items of the list n, which may hold at most limit of
// them; beyond that it reports the list and returns only the first limit.
func (p *parser) list(n *yaml.Node, what string, limit int) []*yaml.Node {
	n = resolve(n)
	if n.Kind != yaml.SequenceNode {
		p.errorAt(n, "", "expected a list, got %s", describe(n))
		return nil
	}
	if len(n.Content) > limit {
		p.errorAt(n, "", "too many %s: %d, at most %d are allowed", what, len(n.Content), limit)
		return n.Content[:limit]
	}
	return n.Content
}

// str returns the text of n, which must be a string scalar.
func (p *parser) str(n *yaml.Node) (string, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		hint := ""
		if n.Kind == yaml.ScalarNode && n.ShortTag() != "!!null" {
			hint = fmt.Sprintf("quote it: %q", cutQuoted(n.Value))
		}
		p.errorAt(n, hint, "expected a string, got %s", describe(n))
		return "", false
	}
	return n.Value, true
}

// command returns the shell command in n, which must not be blank.
func (p *parser) command(n *yaml.Node) string {
	s, ok := p.str(n)
	switch {
	case !ok:
	case strings.TrimSpace(s) == "":
		p.errorAt(resolve(n), "", "command must not be empty")
	case len(s) > maxCommandSize:
		p.errorAt(resolve(n), "put the commands in a script in the repository and run that",
			"command is %d bytes long; at most %d are allowed", len(s), maxCommandSize)
	case strings.ContainsRune(s, 0):
		p.errorAt(resolve(n), "", "command must not contain a NUL character")
	}
	return s
}

// duration decodes a Go duration such as "90s" or "1h30m" that is greater
// than zero and at most maxDuration.
func (p *parser) duration(n *yaml.Node) *durationpb.Duration {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		p.errorAt(n, "", "expected a duration, got %s", describe(n))
		return nil
	}
	d, err := time.ParseDuration(n.Value)
	switch {
	case err != nil:
		p.errorAt(n, `use a Go duration such as "90s", "5m" or "1h30m"`, "invalid duration %q", n.Value)
	case d <= 0:
		p.errorAt(n, "", "duration %q must be greater than zero", n.Value)
	case d > maxDuration:
		p.errorAt(n, "", "duration %q must be at most %s", n.Value, maxDurationText)
	default:
		return durationpb.New(d)
	}
	return nil
}

// env decodes a mapping of environment variables. Values may be strings,
// numbers or booleans; they keep their text as written.
// env decodes an env mapping: a variable's value is a string, or
// {secret: NAME} for the value of a secret, which goes into secrets.
func (p *parser) env(n *yaml.Node) (env, secrets map[string]string) {
	pairs, ok := p.mapping(n)
	if !ok {
		return nil, nil
	}
	if len(pairs) > maxEnvVars {
		p.errorAt(resolve(n), "", "too many environment variables: %d, at most %d are allowed", len(pairs), maxEnvVars)
		pairs = pairs[:maxEnvVars]
	}
	env = make(map[string]string, len(pairs))
	for _, kv := range pairs {
		name := kv.key.Value
		switch {
		case !validEnvName(name):
			p.errorAt(kv.key, `use letters, digits and "_", not starting with a digit`,
				"invalid environment variable name %q", name)
		case len(name) > maxEnvNameLength:
			p.errorAt(kv.key, "", "environment variable name %q is longer than %d characters", name, maxEnvNameLength)
		case strings.HasPrefix(name, "SLUICE_"):
			p.errorAt(kv.key, "Sluice sets the SLUICE_ variables itself; choose another name",
				"environment variable name %q is reserved", name)
		}
		value := resolve(kv.value)
		if value.Kind == yaml.ScalarNode {
			switch value.ShortTag() {
			case "!!str", "!!int", "!!float", "!!bool":
				switch {
				case len(value.Value) > maxEnvValueSize:
					p.errorAt(value, "keep a long value in a file in the repository",
						"the value of %s is %d bytes long; at most %d are allowed", name, len(value.Value), maxEnvValueSize)
				case strings.ContainsRune(value.Value, 0):
					p.errorAt(value, "", "the value of %s must not contain a NUL character", name)
				}
				env[name] = value.Value
				continue
			}
		}
		if value.Kind == yaml.MappingNode {
			if secret := p.secretRef(value, name); secret != "" {
				if secrets == nil {
					secrets = make(map[string]string)
				}
				secrets[name] = secret
			}
			continue
		}
		hint := `or {secret: NAME} for a secret's value`
		if value.ShortTag() == "!!null" {
			hint = `write "" for an empty value`
		}
		p.errorAt(value, hint, "expected a string, got %s", describe(value))
	}
	return env, secrets
}

// secretRef decodes {secret: NAME}, the value of variable.
func (p *parser) secretRef(n *yaml.Node, variable string) string {
	var secret string
	p.fields(n, field{key: "secret", required: true, decode: func(v *yaml.Node) {
		s, ok := p.str(v)
		switch {
		case !ok:
		case len(s) > maxEnvNameLength || !validEnvName(s):
			p.errorAt(resolve(v), "`sluice secret ls` lists the names; they use letters, digits and \"_\", not starting with a digit",
				"invalid secret name %q for %s", s, variable)
		default:
			secret = s
		}
	}})
	return secret
}

// validEnvName reports whether s matches ^[A-Za-z_][A-Za-z0-9_]*$.
func validEnvName(s string) bool {
	for i, r := range s {
		switch {
		case 'A' <= r && r <= 'Z', 'a' <= r && r <= 'z', r == '_':
		case '0' <= r && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return s != ""
}

// resolve follows an alias to the node it refers to.
func resolve(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

// describe names the YAML type of n for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return "a string"
		case "!!null":
			return "nothing"
		case "!!int", "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!timestamp":
			return "a timestamp"
		}
		return "a value tagged " + n.ShortTag()
	}
	return "an unexpected YAML node"
}
