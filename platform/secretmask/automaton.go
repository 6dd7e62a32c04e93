package secretmask

// span is the byte range [start, end) of a run of masked bytes.
type span struct{ start, end int }

// denseDepth is the depth up to which a state of the automaton gets a full
// transition row. Log text keeps the automaton at the root or one or two
// bytes into a pattern almost all the time, so those rows answer nearly
// every byte with one table lookup, while the deep states along each
// pattern (most of the states) cost only their own edges and a fail link.
const denseDepth = 2

// automaton is a byte-level Aho–Corasick automaton over a set of patterns.
//
// Masking marks the union of every occurrence of every pattern. All the
// patterns that end at one position are suffixes of each other, so the
// longest of them covers the rest: each state keeps the length of the
// longest pattern that ends there, its own or one reached through its fail
// links (the output links folded into one number), and a scan reports one
// range per position where any pattern ends.
//
// A state is named by a ref. Dense states (depth <= denseDepth; the root is
// ref 0) have refs 0, stride, 2*stride, ...: the offset of their row in
// dense. Sparse states have refs from denseLimit on and keep their goto
// edges and fail link. A transition to a state where a pattern ends is
// stored as ^ref (negative), so the scan tests for a match with one sign
// check.
type automaton struct {
	class      [256]uint16 // byte -> column of a dense row; 0 for bytes in no pattern
	stride     int         // columns per dense row
	dense      []int       // dense rows: the (flagged) ref of the next state
	denseLimit int         // refs below this are dense

	// Per sparse state i (ref denseLimit+i): its edges are
	// edgeByte/edgeNext[edgeOff[i]:edgeOff[i+1]], edgeNext flagged.
	fail     []int
	edgeOff  []int32
	edgeByte []byte
	edgeNext []int

	// Per state, by index (see index): the length of the longest pattern
	// ending there, and the length of the longest suffix of the input that
	// a later byte could extend to a pattern (the state's depth when it has
	// edges, else that of its fail state).
	longest []int32
	hold    []int32
	nDense  int
	maxLen  int
}

// trie is the trie of the patterns, in flat arrays by node (the root is
// node 0), with the fail links once they are computed.
type trie struct {
	first   []int32 // first child, 0 for none
	sibling []int32 // next child of the same parent, 0 for none
	label   []byte  // the byte of the edge from the parent
	depth   []int32
	own     []int32 // length of the pattern that ends here, or 0
	fail    []int32
	root    [256]int32 // the root's child on each byte, 0 for none
}

func (t *trie) add(parent int32, b byte) int32 {
	c := int32(len(t.label))
	t.first = append(t.first, 0)
	t.sibling = append(t.sibling, t.first[parent])
	t.first[parent] = c
	t.label = append(t.label, b)
	t.depth = append(t.depth, t.depth[parent]+1)
	t.own = append(t.own, 0)
	if parent == 0 {
		t.root[b] = c
	}
	return c
}

// next returns the child of u on b, or 0.
func (t *trie) next(u int32, b byte) int32 {
	if u == 0 {
		return t.root[b]
	}
	c := t.first[u]
	for c != 0 && t.label[c] != b {
		c = t.sibling[c]
	}
	return c
}

// newAutomaton builds the automaton for patterns, which must be non-empty
// and distinct. It returns nil when there are no patterns.
func newAutomaton(patterns []string) *automaton {
	if len(patterns) == 0 {
		return nil
	}
	a := &automaton{}

	size := 1
	for _, p := range patterns {
		size += len(p)
	}
	t := &trie{
		first:   make([]int32, 1, size),
		sibling: make([]int32, 1, size),
		label:   make([]byte, 1, size),
		depth:   make([]int32, 1, size),
		own:     make([]int32, 1, size),
	}
	var used [256]bool
	for _, p := range patterns {
		cur := int32(0)
		for i := 0; i < len(p); i++ {
			used[p[i]] = true
			nx := t.next(cur, p[i])
			if nx == 0 {
				nx = t.add(cur, p[i])
			}
			cur = nx
		}
		t.own[cur] = int32(len(p))
		a.maxLen = max(a.maxLen, len(p))
	}
	n := len(t.label)
	a.stride = 1
	for b := range 256 {
		if used[b] {
			a.class[b] = uint16(a.stride)
			a.stride++
		}
	}

	// Breadth-first, so that a fail link always points to a state done
	// before: the fail links, the longest pattern of each state and, for
	// the dense states, their rows (of trie nodes for now), each completed
	// from the row of its fail state. Breadth-first order is depth order,
	// so the dense states come first.
	t.fail = make([]int32, n)
	longest := make([]int32, n)
	index := make([]int32, n) // trie node -> state index
	order := make([]int32, 1, n)
	var rows []int32
	// delta is the transition from f on b, which the trie lacks.
	delta := func(f int32, b byte) int32 {
		for t.depth[f] > denseDepth {
			if nx := t.next(f, b); nx != 0 {
				return nx
			}
			f = t.fail[f]
		}
		return rows[int(index[f])*a.stride+int(a.class[b])]
	}
	for qi := 0; qi < len(order); qi++ {
		u := order[qi]
		index[u] = int32(qi)
		if t.depth[u] <= denseDepth {
			a.nDense = qi + 1
			if u == 0 {
				rows = append(rows, make([]int32, a.stride)...)
			} else {
				f := int(index[t.fail[u]])
				rows = append(rows, rows[f*a.stride:(f+1)*a.stride]...)
			}
			row := rows[qi*a.stride:]
			for c := t.first[u]; c != 0; c = t.sibling[c] {
				row[a.class[t.label[c]]] = c
			}
		}
		for c := t.first[u]; c != 0; c = t.sibling[c] {
			if u != 0 {
				t.fail[c] = delta(t.fail[u], t.label[c])
			}
			longest[c] = max(t.own[c], longest[t.fail[c]])
			order = append(order, c)
		}
	}

	a.denseLimit = a.nDense * a.stride
	ref := func(u int32) int {
		i := int(index[u])
		r := a.denseLimit + i - a.nDense
		if i < a.nDense {
			r = i * a.stride
		}
		if longest[u] > 0 {
			return ^r
		}
		return r
	}
	a.dense = make([]int, len(rows))
	for k, u := range rows {
		a.dense[k] = ref(u)
	}

	a.longest = make([]int32, n)
	a.hold = make([]int32, n)
	for i, u := range order {
		a.longest[i] = longest[u]
		if t.first[u] != 0 {
			a.hold[i] = t.depth[u]
		} else {
			a.hold[i] = a.hold[index[t.fail[u]]] // a shallower state
		}
	}

	// Sparse states: their own edges and fail link.
	sparse := order[a.nDense:]
	a.fail = make([]int, len(sparse))
	a.edgeOff = make([]int32, len(sparse)+1)
	a.edgeByte = make([]byte, 0, n-a.nDense)
	a.edgeNext = make([]int, 0, n-a.nDense)
	for i, u := range sparse {
		a.fail[i] = unflag(ref(t.fail[u]))
		for c := t.first[u]; c != 0; c = t.sibling[c] {
			a.edgeByte = append(a.edgeByte, t.label[c])
			a.edgeNext = append(a.edgeNext, ref(c))
		}
		a.edgeOff[i+1] = int32(len(a.edgeByte))
	}
	return a
}

func unflag(r int) int {
	if r < 0 {
		return ^r
	}
	return r
}

// index returns the state index of the (unflagged) ref r.
func (a *automaton) index(r int) int {
	if r < a.denseLimit {
		return r / a.stride
	}
	return a.nDense + r - a.denseLimit
}

// sparseNext is the transition from the sparse state s on b.
func (a *automaton) sparseNext(s int, b byte) int {
	for s >= a.denseLimit {
		i := s - a.denseLimit
		for e := a.edgeOff[i]; e < a.edgeOff[i+1]; e++ {
			if a.edgeByte[e] == b {
				return a.edgeNext[e]
			}
		}
		s = a.fail[i]
	}
	return a.dense[s+int(a.class[b])]
}

// scan runs the automaton over buf from the root and merges the range of
// every pattern occurrence into runs, which must be sorted and disjoint and
// end before any occurrence can (the ranges arrive in order of their end).
// Ranges that overlap or touch become one run. It returns the runs and how
// many bytes at the end of buf could start an occurrence that ends after
// buf (at most the longest pattern less one).
func (a *automaton) scan(buf []byte, runs []span) ([]span, int) {
	s := 0
	dense, limit, class := a.dense, a.denseLimit, &a.class
	for i, b := range buf {
		var nx int
		if s < limit {
			nx = dense[s+int(class[b])]
		} else {
			nx = a.sparseNext(s, b)
		}
		if nx < 0 {
			nx = ^nx
			runs = addRange(runs, i+1-int(a.longest[a.index(nx)]), i+1)
		}
		s = nx
	}
	return runs, int(a.hold[a.index(s)])
}

// addRange merges [start, end) into runs. Within a scan end is at least
// the end of the last run, but not after the run a stream starts a scan
// with (the bytes a match already covered, which may reach past the end of
// a shorter match that the next bytes complete): a merged run ends where
// the later of the two ends.
func addRange(runs []span, start, end int) []span {
	for len(runs) > 0 && start <= runs[len(runs)-1].end {
		last := runs[len(runs)-1]
		start, end = min(start, last.start), max(end, last.end)
		runs = runs[:len(runs)-1]
	}
	return append(runs, span{start, end})
}
