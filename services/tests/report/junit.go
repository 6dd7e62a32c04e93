package report

import (
	"bufio"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

type junitCase struct {
	Name      string         `xml:"name,attr"`
	Classname string         `xml:"classname,attr"`
	Time      string         `xml:"time,attr"`
	Failures  []junitProblem `xml:"failure"`
	Errors    []junitProblem `xml:"error"`
	Skipped   *junitProblem  `xml:"skipped"`
	SystemOut []string       `xml:"system-out"`
	SystemErr []string       `xml:"system-err"`
}

// MaxJUnitDepth is how deep the elements of a JUnit report may nest: the
// parser follows nested suites by recursion, and the decoder holds every
// open element, so a report of millions of nested elements would overflow
// the stack (which kills the process) or fill the memory. Reports nest a
// handful of levels.
const MaxJUnitDepth = 100

// ParseJUnitXML reads a JUnit XML report: a <testsuites> root holding
// <testsuite> elements, or a bare <testsuite> root. Nested suites become
// suites of their own. A case with <failure> or <error> failed, one with
// <skipped> was skipped. Suites without cases are left out. Syntax errors,
// broken structure and elements nested deeper than MaxJUnitDepth are
// *Error values with the line encoding/xml gives.
func ParseJUnitXML(r io.Reader) (Report, error) {
	raw := xml.NewDecoder(bufio.NewReader(r))
	raw.CharsetReader = charsetReader
	// The parser's decoder reads the tokens through depthLimit, which
	// counts the open elements; raw reads the bytes, and knows the line.
	dec := xml.NewTokenDecoder(&depthLimit{dec: raw})
	p := &junitParser{dec: dec, raw: raw}

	root, err := p.root()
	if err != nil {
		return Report{}, err
	}
	switch root.Name.Local {
	case "testsuites":
		err = p.suites()
	case "testsuite":
		err = p.suite(root, "")
	default:
		err = &Error{Line: p.line(), Msg: fmt.Sprintf("root element is <%s>; a JUnit report has <testsuites> or <testsuite>", root.Name.Local)}
	}
	if err != nil {
		return Report{}, err
	}
	// Only comments and white space may follow the root element.
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Report{}, p.syntax(err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			return Report{}, &Error{Line: p.line(), Msg: fmt.Sprintf("element <%s> after the root element", se.Name.Local)}
		}
	}
	return Report{Suites: p.out}, nil
}

// depthLimit passes on the tokens of dec, failing with an *Error once
// elements nest more than MaxJUnitDepth deep.
type depthLimit struct {
	dec   *xml.Decoder
	depth int
}

func (l *depthLimit) Token() (xml.Token, error) {
	tok, err := l.dec.RawToken()
	switch tok.(type) {
	case xml.StartElement:
		l.depth++
		if l.depth > MaxJUnitDepth {
			line, _ := l.dec.InputPos()
			return nil, &Error{Line: line, Msg: fmt.Sprintf("elements nest more than %d deep; at most %d levels are read", MaxJUnitDepth, MaxJUnitDepth)}
		}
	case xml.EndElement:
		l.depth--
	}
	return tok, err
}

type junitParser struct {
	// dec is the decoder the parser reads; raw the one below it, which
	// reads the file.
	dec, raw *xml.Decoder
	out      []Suite
}

func (p *junitParser) line() int {
	line, _ := p.raw.InputPos()
	return line
}

// syntax turns a decoder error into an *Error with its line: the line the
// file was read up to (dec, which checks that the elements match, knows
// no line).
func (p *junitParser) syntax(err error) error {
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		return &Error{Line: p.line(), Msg: "XML syntax error: " + se.Msg}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return &Error{Line: p.line(), Msg: "XML syntax error: unexpected end of file"}
	}
	return &Error{Line: p.line(), Msg: err.Error()}
}

func (p *junitParser) root() (xml.StartElement, error) {
	for {
		tok, err := p.dec.Token()
		if errors.Is(err, io.EOF) {
			return xml.StartElement{}, &Error{Msg: "no root element; a JUnit report has <testsuites> or <testsuite>"}
		}
		if err != nil {
			return xml.StartElement{}, p.syntax(err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			return se, nil
		}
	}
}

func (p *junitParser) suites() error {
	for {
		tok, err := p.dec.Token()
		if err != nil {
			return p.syntax(err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Local == "testsuite" {
				if err := p.suite(t, ""); err != nil {
					return err
				}
				continue
			}
			if err := p.dec.Skip(); err != nil {
				return p.syntax(err)
			}
		case xml.EndElement:
			return nil
		}
	}
}

func (p *junitParser) suite(start xml.StartElement, parent string) error {
	line := p.line()
	name := attr(start, "name")
	if name == "" {
		name = parent
	}
	suiteTime, err := parseTime(attr(start, "time"))
	if err != nil {
		return &Error{Line: line, Msg: fmt.Sprintf("<testsuite name=%q>: %v", name, err)}
	}
	// Reserve the suite's place before nested suites.
	idx := len(p.out)
	p.out = append(p.out, Suite{Name: cutName(name)})
	var cases []Case
	var sum float64
	for {
		tok, err := p.dec.Token()
		if err != nil {
			return p.syntax(err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			switch t.Name.Local {
			case "testcase":
				caseLine := p.line()
				var jc junitCase
				if err := p.dec.DecodeElement(&jc, &t); err != nil {
					return p.syntax(err)
				}
				c, secs, err := junitToCase(jc, name)
				if err != nil {
					return &Error{Line: caseLine, Msg: err.Error()}
				}
				sum += secs
				cases = append(cases, c)
			case "testsuite":
				if err := p.suite(t, name); err != nil {
					return err
				}
			default:
				if err := p.dec.Skip(); err != nil {
					return p.syntax(err)
				}
			}
		case xml.EndElement:
			s := &p.out[idx]
			s.Cases = cases
			if suiteTime >= 0 {
				s.Duration = seconds(suiteTime)
			} else {
				s.Duration = seconds(sum)
			}
			if len(cases) == 0 {
				p.out = append(p.out[:idx], p.out[idx+1:]...)
			}
			return nil
		}
	}
}

func junitToCase(jc junitCase, suite string) (Case, float64, error) {
	if strings.TrimSpace(jc.Name) == "" {
		return Case{}, 0, errors.New("<testcase> without a name attribute")
	}
	secs, err := parseTime(jc.Time)
	if err != nil {
		return Case{}, 0, fmt.Errorf("<testcase name=%q>: %w", jc.Name, err)
	}
	secs = max(secs, 0)
	name := jc.Name
	if jc.Classname != "" && jc.Classname != suite && jc.Classname != jc.Name {
		name = jc.Classname + "." + jc.Name
	}
	c := Case{Name: cutName(name), Status: Passed, Duration: seconds(secs)}
	problems := append(append([]junitProblem(nil), jc.Failures...), jc.Errors...)
	switch {
	case len(problems) > 0:
		c.Status = Failed
		var b strings.Builder
		for _, pr := range problems {
			writeLine(&b, pr.Message)
			writeLine(&b, pr.Text)
		}
		for _, s := range jc.SystemOut {
			writeLine(&b, s)
		}
		for _, s := range jc.SystemErr {
			writeLine(&b, s)
		}
		c.Output = lastLines(b.String())
	case jc.Skipped != nil:
		c.Status = Skipped
	}
	return c, secs, nil
}

func writeLine(b *strings.Builder, s string) {
	s = strings.Trim(s, "\r\n")
	if strings.TrimSpace(s) == "" {
		return
	}
	b.WriteString(s)
	b.WriteByte('\n')
}

func attr(se xml.StartElement, name string) string {
	for _, a := range se.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// parseTime reads a time attribute in seconds; -1 when absent. Thousands
// separators ("1,234.5", written by some tools) are accepted.
func parseTime(s string) (float64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return -1, nil
	}
	f, err := strconv.ParseFloat(strings.ReplaceAll(s, ",", ""), 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("time %q is not a number of seconds", s)
	}
	return f, nil
}

// charsetReader accepts the encodings JUnit writers declare besides UTF-8.
func charsetReader(label string, in io.Reader) (io.Reader, error) {
	switch strings.ToLower(label) {
	case "us-ascii", "ascii":
		return in, nil
	case "iso-8859-1", "latin1", "latin-1", "iso8859-1":
		return latin1Reader{r: bufio.NewReader(in)}, nil
	}
	return nil, fmt.Errorf("unsupported encoding %q (use UTF-8)", label)
}

// latin1Reader decodes ISO-8859-1 into UTF-8.
type latin1Reader struct {
	r *bufio.Reader
}

func (l latin1Reader) Read(p []byte) (int, error) {
	n := 0
	for n+utf8.UTFMax <= len(p) {
		b, err := l.r.ReadByte()
		if err != nil {
			if n > 0 && errors.Is(err, io.EOF) {
				return n, nil
			}
			return n, err
		}
		n += utf8.EncodeRune(p[n:], rune(b))
	}
	if n == 0 {
		return 0, io.ErrShortBuffer
	}
	return n, nil
}
