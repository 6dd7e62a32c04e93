package pipeline

import "go.yaml.in/yaml/v3"

// checkAliases refuses a document whose aliases stand for more than
// p.limits.MaxAliasNodes nodes, or one with an alias inside the value it
// stands for, reporting the alias that passes the limit; it returns
// whether the document may be decoded. The decoder follows an alias to its
// anchor's value, so without this a "billion laughs" file (a list of ten
// aliases of a list of ten aliases of ...) would cost as much as the
// billions of nodes it stands for, and a file that fits in 1 MiB could
// take gigabytes of problems to report.
//
// One walk over the document as written counts every node: the value of
// an anchor ends before any alias of it starts (or the alias is inside
// it), so each alias finds its value's size already counted, the sizes of
// the aliases inside that value included. It costs one visit per node
// written, however far the aliases would expand.
func (p *parser) checkAliases(doc *yaml.Node) bool {
	w := aliasWalk{limit: p.limits.MaxAliasNodes, size: make(map[*yaml.Node]int)}
	w.walk(doc)
	if w.bad == nil {
		return true
	}
	if w.recursive {
		p.errorAt(w.bad, "", "alias *%s stands for a value that holds the alias itself", w.bad.Value)
	} else {
		p.errorAt(w.bad, "an alias stands for a copy of its anchor's whole value, the aliases in it included; the source service's max-pipeline-alias-nodes setting sets the limit",
			"the aliases stand for more than %d YAML nodes; at most %d are allowed", w.limit, w.limit)
	}
	return false
}

type aliasWalk struct {
	limit int
	// reached counts the nodes the aliases walked so far stand for, at
	// most limit+1.
	reached int
	// size is the number of nodes an anchored node stands for, its
	// aliases' included, at most limit+1; -1 while it is being walked.
	size map[*yaml.Node]int
	// bad is the alias that passed the limit or is inside its own value.
	bad       *yaml.Node
	recursive bool
}

// walk returns the number of nodes n stands for (at most limit+1: more
// is over the limit however many), or 0 once w.bad is set.
func (w *aliasWalk) walk(n *yaml.Node) int {
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return 1
		}
		size, walked := w.size[n.Alias]
		if !walked {
			// Not met yet: only in a document the decoder never makes
			// (its value ends before the alias or holds it). Counting
			// its nodes here too may count them twice, which errs on the
			// side of the limit.
			size = w.walk(n.Alias)
			if w.bad != nil {
				return 0
			}
		}
		if size < 0 {
			w.bad, w.recursive = n, true
			return 0
		}
		w.reached = min(w.reached+size, w.limit+1)
		if w.reached > w.limit {
			w.bad = n
			return 0
		}
		return size
	}
	if n.Anchor != "" {
		w.size[n] = -1
	}
	total := 1
	for _, c := range n.Content {
		total = min(total+w.walk(c), w.limit+1)
		if w.bad != nil {
			return 0
		}
	}
	if n.Anchor != "" {
		w.size[n] = total
	}
	return total
}
