// Package suggest finds the "did you mean" for a mistyped name: a spec
// field, a CLI verb or flag. It is pure and bounded: long inputs get no
// suggestion rather than a quadratic cost.
package suggest

import "strings"

// maxLen bounds the words compared; longer ones are not typos of a name.
const maxLen = 64

// Closest returns the known name closest to got: one equal to it ignoring
// case, '-' and '_', else one within edit distance 2 (1 for words of up to
// four letters), else "".
func Closest(got string, known []string) string {
	if len(got) > maxLen {
		return ""
	}
	g := strings.ToLower(got)
	best, bestD := "", 3
	if len(got) <= 4 {
		bestD = 2
	}
	for _, k := range known {
		if fold(k) == fold(got) {
			return k
		}
		if d := distance(g, strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func fold(s string) string {
	return strings.NewReplacer("-", "", "_", "").Replace(strings.ToLower(s))
}

// distance is the Levenshtein distance, in two rows.
func distance(a, b string) int {
	if len(b) > maxLen {
		return maxLen
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
