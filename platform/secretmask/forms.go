package secretmask

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"strings"
)

// minLineLen is how long a line of a multi-line value must be, trimmed, to
// be masked on its own.
const minLineLen = 8

// minEmbeddedBase64 is how long the part of a base64 stream that depends
// only on the value must be to be masked where the value is embedded in a
// longer base64 stream.
const minEmbeddedBase64 = 8

// forms returns every form of v that is masked (see the package comment),
// without duplicates; nothing for the empty string.
func forms(v string) []string {
	if v == "" {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	add := func(f string) {
		if f != "" && !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	add(v)

	if strings.Contains(v, "\n") {
		lf := strings.ReplaceAll(v, "\r\n", "\n")
		add(lf)
		add(strings.ReplaceAll(lf, "\n", "\r\n"))
		for line := range strings.SplitSeq(lf, "\n") {
			if line = strings.TrimSpace(line); len(line) >= minLineLen {
				add(line)
			}
		}
	}

	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		add(enc.EncodeToString([]byte(v)))
		raw := enc.WithPadding(base64.NoPadding)
		add(raw.EncodeToString([]byte(v)))
		for _, core := range embeddedBase64(raw, v) {
			add(core)
		}
	}

	h := hex.EncodeToString([]byte(v))
	add(h)
	add(strings.ToUpper(h))

	add(url.QueryEscape(v))
	add(url.PathEscape(v))

	add(jsonBody(v, true))
	add(jsonBody(v, false))
	return out
}

// embeddedBase64 returns, for each of the three positions v can have
// relative to the 3-byte groups of a longer base64 stream, the characters
// of the stream that depend on v's bytes only, when there are at least
// minEmbeddedBase64 of them. raw must be an encoding without padding.
func embeddedBase64(raw *base64.Encoding, v string) []string {
	var cores []string
	for align := range 3 {
		buf := make([]byte, align, align+len(v))
		enc := raw.EncodeToString(append(buf, v...))
		// Character k stands for bits [6k, 6k+6) of the stream, and v has
		// bits [8*align, 8*(align+len(v))).
		first := (8*align + 5) / 6
		end := 8 * (align + len(v)) / 6
		if end-first >= minEmbeddedBase64 {
			cores = append(cores, enc[first:end])
		}
	}
	return cores
}

// jsonBody returns v as a JSON string without its quotes, with or without
// the HTML escaping of json.Marshal.
func jsonBody(v string, escapeHTML bool) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(escapeHTML)
	if err := enc.Encode(v); err != nil {
		return "" // a string always encodes
	}
	s := strings.TrimSuffix(b.String(), "\n")
	return s[1 : len(s)-1]
}
