package stepcache

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/bmatcuk/doublestar/v4"
	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"

	"github.com/sluicehq/sluice/platform/stepfile"
	"github.com/sluicehq/sluice/platform/stepgraph"
)

// A cache's key is a template: text with ${{ expression }} parts, each an
// expression of expr-lang (https://expr-lang.org) that gives a string. It
// sees these names:
//
//	branch, tag, ref, event, commit, repository   as in when: conditions
//
// and this function:
//
//	hashFiles(glob...)  the sha256 (32 hex digits) of the workspace's
//	                    files that match one of the globs ("**" for any
//	                    folders), "" when none does
//
// "go-${{ hashFiles('**/go.sum') }}" names a cache that changes when a
// go.sum does. The key it gives must be 1 to MaxKeyLength letters, digits,
// ".", "-" and "_".

// MaxKeyLength bounds an evaluated key.
const MaxKeyLength = 128

// MaxTemplateLength bounds a key template, in bytes.
const MaxTemplateLength = 512

const (
	// maxTemplateNodes bounds one expression's syntax tree.
	maxTemplateNodes = 100
	// maxHashedFiles and maxHashedBytes bound what one key's hashFiles
	// calls read.
	maxHashedFiles = 10000
	maxHashedBytes = 512 << 20
)

var keyPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

// keyEnv is what a key's expressions are compiled against.
type keyEnv struct {
	Branch     string `expr:"branch"`
	Tag        string `expr:"tag"`
	Ref        string `expr:"ref"`
	Event      string `expr:"event"`
	Commit     string `expr:"commit"`
	Repository string `expr:"repository"`

	HashFiles func(globs ...string) string `expr:"hashFiles"`
}

// Key is a compiled key template.
type Key struct {
	source string
	parts  []keyPart
}

// keyPart is literal text, or an expression when program is set.
type keyPart struct {
	text    string
	program *vm.Program
}

// KeyError is a key template that does not compile: Line and Column (both
// from 1) are its position inside the template's text.
type KeyError struct {
	Line, Column int
	Message      string
}

func (e *KeyError) Error() string { return fmt.Sprintf("%d:%d: %s", e.Line, e.Column, e.Message) }

// ParseKey checks and compiles a key template.
func ParseKey(source string) (*Key, error) {
	if len(source) > MaxTemplateLength {
		return nil, &KeyError{Line: 1, Column: 1, Message: fmt.Sprintf("the key is %d bytes; at most %d", len(source), MaxTemplateLength)}
	}
	if strings.TrimSpace(source) == "" {
		return nil, &KeyError{Line: 1, Column: 1, Message: "the key is empty"}
	}
	k := &Key{source: source}
	rest, offset := source, 0
	for rest != "" {
		open := strings.Index(rest, "${{")
		literal := rest
		if open >= 0 {
			literal = rest[:open]
		}
		if i := strings.Index(literal, "}}"); i >= 0 {
			return nil, keyErrorAt(source, offset+i, "}} without ${{")
		}
		if literal != "" {
			k.parts = append(k.parts, keyPart{text: literal})
		}
		if open < 0 {
			break
		}
		body := rest[open+3:]
		end := strings.Index(body, "}}")
		if end < 0 {
			return nil, keyErrorAt(source, offset+open, "${{ is not closed by }}")
		}
		program, err := compileKeyExpr(body[:end])
		if err != nil {
			var ke *KeyError
			if errors.As(err, &ke) {
				// The position inside the expression, moved to the template.
				return nil, keyErrorAt(source, offset+open+3+offsetOf(body[:end], ke.Line, ke.Column), ke.Message)
			}
			return nil, keyErrorAt(source, offset+open, err.Error())
		}
		k.parts = append(k.parts, keyPart{program: program})
		consumed := open + 3 + end + 2
		rest, offset = rest[consumed:], offset+consumed
	}
	return k, nil
}

// String is the template's text.
func (k *Key) String() string { return k.source }

func compileKeyExpr(text string) (*vm.Program, error) {
	if strings.TrimSpace(text) == "" {
		return nil, &KeyError{Line: 1, Column: 1, Message: "the expression is empty"}
	}
	program, _, err := stepgraph.CompileExpression("a cache key", text, keyEnv{}, maxTemplateNodes, expr.AsKind(reflect.String))
	var ce *stepgraph.ConditionError
	if errors.As(err, &ce) {
		return nil, &KeyError{Line: ce.Line, Column: ce.Column, Message: ce.Message}
	}
	return program, err
}

// offsetOf is the byte offset of line:col (from 1, in characters) in
// text.
func offsetOf(text string, line, col int) int {
	off := 0
	for l := 1; l < line; l++ {
		i := strings.IndexByte(text[off:], '\n')
		if i < 0 {
			break
		}
		off += i + 1
	}
	// Columns count characters, not bytes.
	for range col - 1 {
		if off >= len(text) {
			break
		}
		_, size := utf8.DecodeRuneInString(text[off:])
		off += size
	}
	return off
}

// keyErrorAt is a KeyError at byte offset off of source.
func keyErrorAt(source string, off int, msg string) *KeyError {
	before := source[:off]
	line := strings.Count(before, "\n") + 1
	col := utf8.RuneCountInString(before[strings.LastIndexByte(before, '\n')+1:]) + 1
	return &KeyError{Line: line, Column: col, Message: msg}
}

// Eval gives the key for a run whose facts are facts and whose files are
// in workspace. The error says why no key could be made: an expression
// failed, hashFiles read too much, or the key is not a valid one.
func (k *Key) Eval(facts stepgraph.Facts, workspace string) (string, error) {
	var hashErr error
	h := &hasher{workspace: workspace, files: maxHashedFiles, bytes: maxHashedBytes, sums: map[string]string{}}
	env := keyEnv{
		Branch: facts.Branch, Tag: facts.Tag, Ref: facts.Ref, Event: facts.Event, Commit: facts.Commit, Repository: facts.Repository,
		HashFiles: func(globs ...string) string {
			if hashErr != nil {
				return ""
			}
			sum, err := h.hash(globs)
			if err != nil {
				hashErr = err
			}
			return sum
		},
	}
	var b strings.Builder
	for _, p := range k.parts {
		if p.program == nil {
			b.WriteString(p.text)
			continue
		}
		out, err := expr.Run(p.program, env)
		if hashErr != nil {
			return "", hashErr
		}
		if err != nil {
			return "", fmt.Errorf("key %q: %w", k.source, err)
		}
		s, _ := out.(string)
		b.WriteString(s)
		if b.Len() > MaxKeyLength {
			break
		}
	}
	key := b.String()
	if !keyPattern.MatchString(key) {
		return "", fmt.Errorf("key %q gives %q; a key must be 1 to %d letters, digits, \".\", \"-\" and \"_\"", k.source, truncate(key, MaxKeyLength+8), MaxKeyLength)
	}
	return key, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// hasher is the hashFiles of one key: what its calls may read, all
// together, and what they gave (by their globs).
type hasher struct {
	workspace    string
	files, bytes int64
	sums         map[string]string
}

// hash hashes the regular files of the workspace that match one of globs:
// each one's path and content, in path order. Nothing outside the
// workspace is read (os.Root), symbolic links included.
func (h *hasher) hash(globs []string) (string, error) {
	memo := strings.Join(globs, "\x00")
	if sum, ok := h.sums[memo]; ok {
		return sum, nil
	}
	sum, err := h.hashFiles(globs)
	if err == nil {
		h.sums[memo] = sum
	}
	return sum, err
}

func (h *hasher) hashFiles(globs []string) (string, error) {
	workspace := h.workspace
	root, err := os.OpenRoot(workspace)
	if err != nil {
		return "", fmt.Errorf("hashFiles: %w", err)
	}
	defer root.Close()
	fsys := root.FS()
	var paths []string
	for _, g := range globs {
		g = strings.TrimPrefix(g, "./")
		if !doublestar.ValidatePattern(g) || !fs.ValidPath(strings.TrimSuffix(g, "/")) {
			return "", fmt.Errorf("hashFiles(%q): not a glob relative to the workspace", g)
		}
		err := doublestar.GlobWalk(fsys, g, func(p string, d fs.DirEntry) error {
			if !d.Type().IsRegular() {
				return nil
			}
			paths = append(paths, p)
			if h.files--; h.files < 0 {
				return fmt.Errorf("hashFiles: more than %d files match, all its calls together", maxHashedFiles)
			}
			return nil
		}, doublestar.WithNoFollow())
		if err != nil {
			return "", fmt.Errorf("hashFiles(%q): %w", g, err)
		}
	}
	if len(paths) == 0 {
		return "", nil
	}
	slices.Sort(paths)
	paths = slices.Compact(paths)
	all := sha256.New()
	for _, p := range paths {
		f, _, err := stepfile.Open(root, p)
		if err != nil {
			return "", fmt.Errorf("hashFiles: %w", err)
		}
		fh := sha256.New()
		n, err := io.Copy(fh, io.LimitReader(f, h.bytes+1))
		_ = f.Close()
		if err != nil {
			return "", fmt.Errorf("hashFiles: read %s: %w", p, err)
		}
		if h.bytes -= n; h.bytes < 0 {
			return "", fmt.Errorf("hashFiles: the matching files hold more than %d bytes, all its calls together", maxHashedBytes)
		}
		fmt.Fprintf(all, "%s\x00%x\n", p, fh.Sum(nil))
	}
	return hex.EncodeToString(all.Sum(nil))[:32], nil
}
