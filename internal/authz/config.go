package authz

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// NoRole as default_role gives authenticated identities nothing by
// default (not even read).
const NoRole = "none"

// Config is the auth config file (docs/permissions.md): roles beyond the
// built-in ones, grants, and the role every authenticated identity holds.
type Config struct {
	// DefaultRole every authenticated identity holds on every app and
	// environment: "" means viewer (reads keep working), NoRole nothing.
	DefaultRole string
	Roles       []Role
	Grants      []Grant
}

// FieldError is one problem in an auth config, with where it is:
// FILE:LINE:COLUMN: FIELD: MSG (the parts known).
type FieldError struct {
	File   string
	Line   int
	Column int
	Field  string // e.g. grants[2].role
	Msg    string
}

func (e *FieldError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", loc, e.Line)
		if e.Column > 0 {
			loc = fmt.Sprintf("%s:%d", loc, e.Column)
		}
	}
	s := e.Msg
	if e.Field != "" {
		s = e.Field + ": " + s
	}
	if loc != "" {
		s = loc + ": " + s
	}
	return s
}

// Validate reports every problem at once, each a *FieldError naming the
// field (without a line: Parse adds those).
func (c Config) Validate() error { return joinProblems(c.problems()) }

func (c Config) problems() []*FieldError {
	var errs []*FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	builtin := Builtin()
	known := map[string]bool{}
	for n := range builtin {
		known[n] = true
	}
	for i, r := range c.Roles {
		f := "roles." + r.Name
		switch {
		case r.Name == "" || !roleName(r.Name):
			add(fmt.Sprintf("roles[%d]", i), "role name %q: use letters, digits, . _ -", r.Name)
		case builtin[r.Name].Name != "":
			add(f, "%s is a built-in role (%s); pick another name", r.Name, actionsText(builtin[r.Name].Actions))
		case known[r.Name]:
			add(f, "role %s is declared twice", r.Name)
		}
		known[r.Name] = true
		if len(r.Actions) == 0 {
			add(f+".actions", "a role needs at least one action (one of %s)", actionsText(ReleaseActions))
		}
		for j, a := range r.Actions {
			if !slices.Contains(ReleaseActions, a) {
				msg := fmt.Sprintf("unknown action %q (want one of %s)", a, actionsText(ReleaseActions))
				if a == Tokens {
					msg = "tokens is for the built-in admin role only"
				}
				add(fmt.Sprintf("%s.actions[%d]", f, j), "%s", msg)
			}
		}
		errs = append(errs, globProblems(f+".apps", r.Apps)...)
		errs = append(errs, globProblems(f+".envs", r.Envs)...)
	}
	if c.DefaultRole != "" && c.DefaultRole != NoRole && !known[c.DefaultRole] {
		add("default_role", "unknown role %q (roles: %s, or %s)", c.DefaultRole, strings.Join(sortedKeys(known), ", "), NoRole)
	}
	for i, g := range c.Grants {
		f := fmt.Sprintf("grants[%d]", i)
		if g.Role == "" {
			add(f+".role", "a grant needs a role")
		} else if !known[g.Role] {
			add(f+".role", "unknown role %q (roles: %s)", g.Role, strings.Join(sortedKeys(known), ", "))
		}
		if len(g.Users) == 0 && len(g.Groups) == 0 {
			add(f, "names no users and no groups")
		}
		for j, u := range g.Users {
			uf := fmt.Sprintf("%s.users[%d]", f, j)
			switch {
			case !u.Valid():
				add(uf, "%q is not an identity: want KIND:ID with KIND one of %s (token:alice, slack:U0123)", u, strings.Join(kinds, ", "))
			case u.Kind() == KindSlack && strings.HasPrefix(u.ID(), "S"):
				add(uf, "%s looks like a Slack user group; put it under groups", u)
			case u.Kind() == KindToken && !tokenUser.MatchString(u.ID()):
				add(uf, "%s: token user names are 1-64 of a-z 0-9 . _ - (as `ship token create` takes them)", u)
			}
		}
		for j, gr := range g.Groups {
			gf := fmt.Sprintf("%s.groups[%d]", f, j)
			switch {
			case !gr.Valid() || gr.Kind() != KindSlack:
				add(gf, "%q is not a group: want slack:S… (a Slack user group ID)", gr)
			case !strings.HasPrefix(gr.ID(), "S"):
				add(gf, "%s is not a Slack user group ID (they start with S); users go under users", gr)
			}
		}
		errs = append(errs, globProblems(f+".apps", g.Apps)...)
		errs = append(errs, globProblems(f+".envs", g.Envs)...)
	}
	return errs
}

// tokenUser is what a token's user name may be (internal/api's rule).
var tokenUser = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

func globProblems(field string, globs []string) []*FieldError {
	var errs []*FieldError
	if globs != nil && len(globs) == 0 {
		errs = append(errs, &FieldError{Field: field, Msg: `empty list: leave it out, or use ["*"] for all`})
	}
	for i, g := range globs {
		if _, err := path.Match(g, ""); err != nil || g == "" || strings.ContainsAny(g, "/ \t\n") {
			errs = append(errs, &FieldError{Field: fmt.Sprintf("%s[%d]", field, i), Msg: fmt.Sprintf("%q is not a name or glob (path.Match: * ? [a-z])", g)})
		}
	}
	return errs
}

func roleName(s string) bool {
	return len(s) <= 64 && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
	})
}

func actionsText(as []Action) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func joinProblems(ps []*FieldError) error {
	if len(ps) == 0 {
		return nil
	}
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = p
	}
	return errors.Join(errs...)
}

// Load reads the auth config at file ("" means none: the defaults, where
// every authenticated identity may read and nothing else unless its token
// carries a role).
func Load(file string) (Config, error) {
	if file == "" {
		return Config{}, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return Config{}, fmt.Errorf("auth config: %w", err)
	}
	return Parse(file, b)
}

// maxNodes bounds the YAML nodes a config may have, so aliases that fan
// out cannot make loading slow.
const maxNodes = 100_000

// Parse decodes an auth config. Unknown keys, wrong types and every check
// of Validate are reported together, each as FILE:LINE:COLUMN: FIELD: MSG.
func Parse(file string, b []byte) (Config, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return Config{}, nil
		}
		return Config{}, &FieldError{File: file, Line: yamlErrLine(err), Msg: "not YAML: " + err.Error()}
	}
	p := &parser{file: file, pos: map[string]*yaml.Node{}, budget: maxNodes}
	c := p.config(&doc)
	if len(p.errs) == 0 {
		for _, e := range c.problems() {
			e.File = file
			if n := p.at(e.Field); n != nil {
				e.Line, e.Column = n.Line, n.Column
			}
			p.errs = append(p.errs, e)
		}
	}
	if err := joinProblems(p.errs); err != nil {
		return Config{}, err
	}
	for i := range c.Grants {
		c.Grants[i].Where = fmt.Sprintf("%s:%d", file, p.at(fmt.Sprintf("grants[%d]", i)).Line)
	}
	return c, nil
}

func yamlErrLine(err error) int {
	var line int
	if _, e := fmt.Sscanf(strings.TrimPrefix(err.Error(), "yaml: "), "line %d:", &line); e == nil {
		return line
	}
	return 0
}

type parser struct {
	file   string
	errs   []*FieldError
	pos    map[string]*yaml.Node // field path -> node
	budget int
}

// at finds the node of field or of its closest parent.
func (p *parser) at(field string) *yaml.Node {
	for f := field; f != ""; {
		if n := p.pos[f]; n != nil {
			return n
		}
		i := strings.LastIndexAny(f, ".[")
		if i < 0 {
			break
		}
		f = f[:i]
	}
	return p.pos[""]
}

func (p *parser) errorf(n *yaml.Node, field, format string, args ...any) {
	if len(p.errs) >= 50 {
		return
	}
	e := &FieldError{File: p.file, Field: field, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	p.errs = append(p.errs, e)
}

func (p *parser) resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 64; i++ {
		n = n.Alias
	}
	p.budget--
	if n == nil || n.Kind == yaml.AliasNode || p.budget < 0 {
		return nil
	}
	return n
}

// mapping walks a mapping node, calling f for each known key; unknown and
// repeated keys are errors.
func (p *parser) mapping(n *yaml.Node, field string, keys []string, f func(key string, v *yaml.Node)) {
	n = p.resolve(n)
	if n == nil {
		p.errorf(nil, field, "too deeply nested or too large")
		return
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, field, "must be a mapping")
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		sub := join(field, k.Value)
		switch {
		case !slices.Contains(keys, k.Value):
			p.errorf(k, sub, "unknown field (known: %s)", strings.Join(keys, ", "))
		case seen[k.Value]:
			p.errorf(k, sub, "given twice")
		default:
			seen[k.Value] = true
			p.pos[sub] = v
			f(k.Value, v)
		}
	}
}

func join(field, key string) string {
	if field == "" {
		return key
	}
	return field + "." + key
}

func (p *parser) scalar(n *yaml.Node, field string) string {
	n = p.resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.errorf(n, field, "must be a single value")
		return ""
	}
	return n.Value
}

func (p *parser) list(n *yaml.Node, field string) []string {
	n = p.resolve(n)
	if n == nil || n.Kind != yaml.SequenceNode {
		p.errorf(n, field, "must be a list, e.g. [a, b]")
		return nil
	}
	out := []string{}
	for i, x := range n.Content {
		f := fmt.Sprintf("%s[%d]", field, i)
		p.pos[f] = x
		out = append(out, p.scalar(x, f))
	}
	return out
}

func (p *parser) config(doc *yaml.Node) Config {
	var c Config
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	p.pos[""] = doc
	if doc.Kind == yaml.ScalarNode && doc.Tag == "!!null" {
		return c
	}
	p.mapping(doc, "", []string{"default_role", "roles", "grants"}, func(key string, v *yaml.Node) {
		switch key {
		case "default_role":
			c.DefaultRole = p.scalar(v, key)
		case "roles":
			c.Roles = p.roles(v)
		case "grants":
			c.Grants = p.grants(v)
		}
	})
	return c
}

// roles reads NAME: {actions: [...], apps: [...], envs: [...]} in file order.
func (p *parser) roles(n *yaml.Node) []Role {
	n = p.resolve(n)
	if n == nil || n.Kind != yaml.MappingNode {
		p.errorf(n, "roles", "must be a mapping of role name to {actions, apps, envs}")
		return nil
	}
	var out []Role
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		f := "roles." + k.Value
		p.pos[f] = k
		r := Role{Name: k.Value}
		p.mapping(v, f, []string{"actions", "apps", "envs"}, func(key string, v *yaml.Node) {
			switch key {
			case "actions":
				for _, a := range p.list(v, f+".actions") {
					r.Actions = append(r.Actions, Action(a))
				}
				if r.Actions == nil {
					r.Actions = []Action{}
				}
			case "apps":
				r.Apps = p.list(v, f+".apps")
			case "envs":
				r.Envs = p.list(v, f+".envs")
			}
		})
		out = append(out, r)
	}
	return out
}

func (p *parser) grants(n *yaml.Node) []Grant {
	n = p.resolve(n)
	if n == nil || n.Kind != yaml.SequenceNode {
		p.errorf(n, "grants", "must be a list of grants")
		return nil
	}
	var out []Grant
	for i, x := range n.Content {
		f := fmt.Sprintf("grants[%d]", i)
		p.pos[f] = x
		var g Grant
		p.mapping(x, f, []string{"role", "users", "groups", "apps", "envs"}, func(key string, v *yaml.Node) {
			switch key {
			case "role":
				g.Role = p.scalar(v, f+".role")
			case "users":
				g.Users = identities(p.list(v, f+".users"))
			case "groups":
				g.Groups = identities(p.list(v, f+".groups"))
			case "apps":
				g.Apps = p.list(v, f+".apps")
			case "envs":
				g.Envs = p.list(v, f+".envs")
			}
		})
		out = append(out, g)
	}
	return out
}

func identities(s []string) []Identity {
	out := make([]Identity, len(s))
	for i, x := range s {
		out[i] = Identity(x)
	}
	return out
}
