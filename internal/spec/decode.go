package spec

import (
	"fmt"
	"github.com/shipteam/ship/internal/release"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/shipteam/ship/internal/suggest"
)

// decoder walks a yaml.Node tree into an App by reflection over the yaml
// tags. It is stricter than yaml.Node.Decode: unknown and duplicate keys are
// errors, a wrong type is an error at that value's line and column, and it
// remembers which field paths the file set (and where), so that defaults
// apply only to what is absent and validation can point at the value.
type decoder struct {
	file  string
	errs  []*FieldError
	nodes map[string]*yaml.Node // field path -> the value node the file gave
	// budget bounds the nodes visited, so aliases that fan out ("billion
	// laughs") cannot make loading a spec slow.
	budget int
}

const nodeBudget = 100_000

var (
	durationType = reflect.TypeOf(Duration(0))
	weightType   = reflect.TypeOf(release.Weight(0))
)

// maxProblems bounds what one app reports; past it the rest is noise.
const maxProblems = 50

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	if len(d.errs) > maxProblems {
		return
	}
	if len(d.errs) == maxProblems {
		format, args = "too many problems; fix these first", nil
	}
	e := &FieldError{File: d.file, Field: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	if e.Line == 0 {
		e.Line = 1
	}
	d.errs = append(d.errs, e)
}

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 64; i++ {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.AliasNode {
		return nil
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// describe names what a node is, for "must be X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "nothing"
		}
		return strconv.Quote(n.Value)
	}
	return "an unexpected node"
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// value decodes n into v, which is addressable. tag is the struct tag of
// the field v came from (for ship:"percent").
func (d *decoder) value(path string, n *yaml.Node, v reflect.Value, tag reflect.StructTag) {
	if !d.spend(n, path) {
		return
	}
	at := n
	n = resolve(n)
	if n == nil {
		d.errorf(at, path, "alias cannot be resolved")
		return
	}
	d.nodes[path] = at
	if v.Type() == durationType {
		if d.scalar(path, at, n, "a duration such as 30s") {
			dur, err := parseDuration(n.Value)
			if err != nil {
				d.errorf(at, path, "%v", err)
				return
			}
			v.SetInt(int64(dur))
		}
		return
	}
	if v.Type() == weightType {
		if d.scalar(path, at, n, "a percentage such as 10%") {
			w, err := release.ParseWeight(n.Value)
			if err != nil {
				d.errorf(at, path, "must be a percentage such as 1, 10%% or 0.5%% (at most two decimals), got %q", n.Value)
				return
			}
			v.SetInt(int64(w))
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.structure(path, at, n, v)
	case reflect.Pointer:
		if isNull(n) {
			v.SetZero()
			return
		}
		p := reflect.New(v.Type().Elem())
		d.structure(path, at, n, p.Elem())
		v.Set(p)
	case reflect.Slice:
		d.slice(path, at, n, v)
	case reflect.Map:
		d.mapping(path, at, n, v)
	case reflect.String:
		if d.scalar(path, at, n, "a string") {
			v.SetString(n.Value)
		}
	case reflect.Int:
		if !d.scalar(path, at, n, "an integer") {
			return
		}
		var i int
		if n.Tag != "!!int" || n.Decode(&i) != nil {
			d.errorf(at, path, "must be an integer, got %s", describe(n))
			return
		}
		v.SetInt(int64(i))
	case reflect.Float64:
		if !d.scalar(path, at, n, "a number") {
			return
		}
		var f float64
		if (n.Tag != "!!int" && n.Tag != "!!float") || n.Decode(&f) != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			d.errorf(at, path, "must be a number, got %s", describe(n))
			return
		}
		v.SetFloat(f)
	case reflect.Bool:
		if !d.scalar(path, at, n, "true or false") {
			return
		}
		var b bool
		if n.Tag != "!!bool" || n.Decode(&b) != nil {
			d.errorf(at, path, "must be true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	default:
		d.errorf(at, path, "cannot decode into %s", v.Type())
	}
}

// spend takes one unit of the node budget, reporting once when it runs out.
func (d *decoder) spend(n *yaml.Node, path string) bool {
	d.budget--
	if d.budget >= 0 {
		return true
	}
	if d.budget == -1 {
		d.errorf(n, path, "spec is too large (more than %d values, counting aliases and merges)", nodeBudget)
	}
	return false
}

// scalar reports whether n is a non-null scalar, recording an error if not.
func (d *decoder) scalar(path string, at, n *yaml.Node, want string) bool {
	if n.Kind == yaml.ScalarNode && !isNull(n) {
		return true
	}
	d.errorf(at, path, "must be %s, got %s", want, describe(n))
	return false
}

type fieldInfo struct {
	index int
	tag   reflect.StructTag
}

func yamlFields(t reflect.Type) (map[string]fieldInfo, []string) {
	m := map[string]fieldInfo{}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = fieldInfo{index: i, tag: f.Tag}
		names = append(names, name)
	}
	return m, names
}

// structure decodes a mapping into a struct. Merge keys (<<: *base) are
// applied first so the mapping's own keys override them.
func (d *decoder) structure(path string, at, n *yaml.Node, v reflect.Value) {
	if !d.spend(at, path) {
		return
	}
	if isNull(n) {
		return // "kube:" with nothing under it: keep the defaults
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(at, path, "must be a mapping of fields, got %s", describe(n))
		return
	}
	fields, names := yamlFields(v.Type())
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			d.merge(path, n.Content[i+1], v)
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, path, "keys must be plain field names, got %s", describe(resolveOrSelf(k)))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.errorf(k, joinPath(path, k.Value), "set twice (first at line %d)", first.Line)
			continue
		}
		seen[k.Value] = k
		if strings.HasPrefix(k.Value, "x-") {
			continue // an extension field: a place for anchors, ignored
		}
		f, ok := fields[k.Value]
		if !ok {
			msg := fmt.Sprintf("unknown field %q", k.Value)
			if s := suggest.Closest(k.Value, names); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			} else {
				msg += fmt.Sprintf(" (known: %s)", strings.Join(names, ", "))
			}
			d.errorf(k, path, "%s", msg)
			continue
		}
		d.value(joinPath(path, k.Value), val, v.Field(f.index), f.tag)
	}
}

func resolveOrSelf(n *yaml.Node) *yaml.Node {
	if r := resolve(n); r != nil {
		return r
	}
	return n
}

func (d *decoder) merge(path string, n *yaml.Node, v reflect.Value) {
	r := resolve(n)
	if r == nil {
		d.errorf(n, path, "merge (<<) alias cannot be resolved")
		return
	}
	switch r.Kind {
	case yaml.MappingNode:
		d.structure(path, n, r, v)
	case yaml.SequenceNode:
		// Earlier mappings in the list take precedence, as in YAML's merge spec.
		for i := len(r.Content) - 1; i >= 0; i-- {
			if m := resolve(r.Content[i]); m != nil && m.Kind == yaml.MappingNode {
				d.structure(path, r.Content[i], m, v)
			} else {
				d.errorf(r.Content[i], path, "merge (<<) needs mappings")
			}
		}
	default:
		d.errorf(n, path, "merge (<<) needs a mapping, got %s", describe(r))
	}
}

func (d *decoder) slice(path string, at, n *yaml.Node, v reflect.Value) {
	if isNull(n) {
		v.SetZero()
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(at, path, "must be a list, got %s", describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, e := range n.Content {
		p := fmt.Sprintf("%s[%d]", path, i)
		elem := s.Index(i)
		// A step may be written as just its weight: "- 10" or "- 10%".
		if elem.Type() == reflect.TypeOf(Step{}) {
			if r := resolve(e); r != nil && r.Kind == yaml.ScalarNode && !isNull(r) {
				d.nodes[p] = e
				f, _ := elem.Type().FieldByName("Weight")
				d.value(p+".weight", e, elem.FieldByIndex(f.Index), f.Tag)
				continue
			}
		}
		d.value(p, e, elem, "")
	}
	v.Set(s)
}

func (d *decoder) mapping(path string, at, n *yaml.Node, v reflect.Value) {
	if isNull(n) {
		v.SetZero()
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(at, path, "must be a mapping of NAME: value, got %s", describe(n))
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" || isNull(k) {
			d.errorf(k, path, "keys must be plain names, got %s", describe(resolveOrSelf(k)))
			continue
		}
		p := joinPath(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.errorf(k, p, "set twice (first at line %d)", first.Line)
			continue
		}
		seen[k.Value] = k
		ev := reflect.New(v.Type().Elem()).Elem()
		d.value(p, val, ev, "")
		m.SetMapIndex(reflect.ValueOf(k.Value), ev)
	}
	v.Set(m)
}

// parseDuration reads "30s", "5m", "1h30m", "250ms" or "0".
func parseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return 0, fmt.Errorf("duration %q needs a unit, e.g. %ss or %sms", s, s, s)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("must be a duration such as 30s, 5m or 250ms, got %q", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("must not be negative, got %q", s)
	}
	return Duration(v), nil
}
