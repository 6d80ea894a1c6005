package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// MaxFileSize bounds one spec file; specs are a page of YAML.
const MaxFileSize = 1 << 20

// parsed is one app with where its fields are, for cross-file checks.
type parsed struct {
	app  App
	root *yaml.Node
	at   func(path string) (int, int)
	// label is FieldError.App for problems of this app: "" when file and
	// line say which app it is.
	label string
}

// Parse reads the apps in one spec file's bytes: a single app (a mapping
// with name, port, ...), several apps as YAML documents separated by
// "---", or a ship.yaml-style mapping `apps: [ ... ]`. Every default is
// filled in. name is used in error messages and as each App's Source. All
// problems are returned together as *FieldErrors joined by errors.Join.
func Parse(name string, data []byte) ([]App, error) {
	ps, err := parseFile(name, data)
	if err != nil {
		return nil, err
	}
	apps := make([]App, len(ps))
	for i, p := range ps {
		apps[i] = p.app
	}
	return apps, nil
}

// LoadFile reads and parses one spec file. Relative paths in the apps'
// run sections resolve against the file's directory.
func LoadFile(path string) ([]App, error) {
	ps, err := loadFile(path)
	if err != nil {
		return nil, err
	}
	apps := make([]App, len(ps))
	for i, p := range ps {
		apps[i] = p.app
	}
	return apps, nil
}

func loadFile(path string) ([]parsed, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &FieldError{File: path, Msg: fmt.Sprintf("cannot read spec: %v", err)}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, &FieldError{File: path, Msg: fmt.Sprintf("cannot read spec: %v", err)}
	}
	ps, err := parseFile(path, data)
	if err != nil {
		return nil, err
	}
	base, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, &FieldError{File: path, Msg: fmt.Sprintf("cannot resolve directory: %v", err)}
	}
	for i := range ps {
		ps[i].app.BaseDir = base
	}
	return ps, nil
}

// LoadDir loads every *.yaml and *.yml file directly in dir (one app per
// file, or a ship.yaml with `apps:`); names starting with '.' are skipped
// (editor backups). The problems of every file are joined; an app name or
// a fixed port used twice is an error naming both places. A folder without
// any app is an error, since it almost always means a wrong path.
func LoadDir(dir string) (*Catalog, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("load apps: %w", err)
	}
	var errs []error
	var all []parsed
	for _, e := range entries {
		name := e.Name()
		ext := strings.ToLower(filepath.Ext(name))
		if e.IsDir() || strings.HasPrefix(name, ".") || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		ps, err := loadFile(filepath.Join(dir, name))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		all = append(all, ps...)
	}
	if err := crossCheck(all); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("load apps: no app specs (*.yaml, *.yml) in %s", dir)
	}
	apps := make([]App, len(all))
	for i, p := range all {
		apps[i] = p.app
	}
	return newCatalog(apps), nil // defaulted, validated and cross-checked above
}

// crossCheck finds what only shows across apps: a name defined twice and
// two locally runnable apps whose fixed ports (port+i per environment)
// collide on one host.
func crossCheck(all []parsed) error {
	var errs []*FieldError
	byName := map[string]parsed{}
	type owner struct {
		p   parsed
		env string
	}
	byPort := map[string]owner{}
	fail := func(p parsed, field, format string, args ...any) {
		l, c := p.at(field)
		errs = append(errs, &FieldError{File: p.app.Source, Line: l, Column: c, App: p.label, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	for _, p := range all {
		a := p.app
		if first, dup := byName[a.Name]; dup {
			if at := first.place("name"); at != "" {
				fail(p, "name", "app %q is already defined at %s", a.Name, at)
			} else {
				fail(p, "name", "app %q is defined twice", a.Name)
			}
			continue
		}
		byName[a.Name] = p
		// Only apps the embedded runtime can start share this machine's
		// ports; on Kubernetes every Service has its own address.
		if a.Port == 0 || a.Run.Command == "" {
			continue
		}
		for _, env := range a.Environments {
			port := a.PortFor(env)
			key := a.Listen + ":" + strconv.Itoa(port)
			if o, dup := byPort[key]; dup {
				at := o.p.place("port")
				if at != "" {
					at = " at " + at
				}
				fail(p, "port", "%s (environment %s) is also used by app %s (environment %s)%s", key, env, o.p.app.Name, o.env, at)
				break
			}
			byPort[key] = owner{p, env}
		}
	}
	return joinSorted(errs)
}

// place is FILE:LINE:COLUMN of field of p, as far as it is known; "" for
// an app built in Go.
func (p parsed) place(field string) string {
	if p.app.Source == "" {
		return ""
	}
	l, c := p.at(field)
	if l == 0 {
		return p.app.Source
	}
	return fmt.Sprintf("%s:%d:%d", p.app.Source, l, c)
}

// parserProblems are the messages of yaml.v3's parser (parserc.go), as
// opposed to its scanner; see syntaxError.
var parserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func parseFile(name string, data []byte) (ps []parsed, err error) {
	if len(data) > MaxFileSize {
		return nil, &FieldError{File: name, Line: 1, Column: 1, Msg: fmt.Sprintf("file is larger than %d bytes", MaxFileSize)}
	}
	if !utf8.Valid(data) {
		line, col := invalidUTF8At(data)
		return nil, &FieldError{File: name, Line: line, Column: col, Msg: "file is not valid UTF-8"}
	}
	docs, err := documents(data)
	if err != nil {
		return nil, syntaxError(name, data, err)
	}
	var errs []*FieldError
	for _, doc := range docs {
		root := doc
		if len(doc.Content) == 1 {
			root = doc.Content[0]
		}
		r := resolve(root)
		if r == nil || len(doc.Content) == 0 || isNull(r) {
			continue // an empty document between "---" lines
		}
		if r.Kind == yaml.MappingNode && hasKey(r, "apps") {
			p, e := listFile(name, r)
			ps, errs = append(ps, p...), append(errs, e...)
			continue
		}
		p, e := oneApp(name, root, "")
		ps, errs = append(ps, p), append(errs, e...)
	}
	if len(ps) == 0 && len(errs) == 0 {
		errs = append(errs, &FieldError{File: name, Line: 1, Column: 1, Msg: "no app in this file; an app spec needs at least name and run.command"})
	}
	if len(errs) > 0 {
		return nil, joinSorted(errs)
	}
	return ps, nil
}

// documents splits data into its YAML documents. yaml.v3 is not known to
// panic on hostile input since v3.0.0, but a spec loader is an edge that
// must never take ship down, so a panic becomes a syntax error.
func documents(data []byte) (docs []*yaml.Node, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err == io.EOF {
			return docs, nil
		} else if err != nil {
			return nil, err
		}
		docs = append(docs, &n)
	}
}

// syntaxError turns a yaml.v3 parse error ("yaml: line 3: ...") into a
// positioned FieldError.
func syntaxError(name string, data []byte, err error) *FieldError {
	msg := err.Error()
	line := 0
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	// yaml.v3 reports parser (not scanner) errors with a 0-based line,
	// and leaves the line out when it is 0.
	if parserProblems[msg] {
		line++
	}
	if line < 1 {
		line = 1
	}
	if n := bytes.Count(data, []byte("\n")) + 1; line > n {
		line = n
	}
	return &FieldError{File: name, Line: line, Msg: "invalid YAML: " + msg}
}

func invalidUTF8At(data []byte) (line, col int) {
	line, col = 1, 1
	for len(data) > 0 {
		r, size := utf8.DecodeRune(data)
		if r == utf8.RuneError && size <= 1 {
			return line, col
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		data = data[size:]
	}
	return line, col
}

func hasKey(m *yaml.Node, key string) bool {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := m.Content[i]; k.Kind == yaml.ScalarNode && k.Value == key {
			return true
		}
	}
	return false
}

// listFile reads `apps: [...]`; field paths are prefixed apps[i].
func listFile(name string, m *yaml.Node) (ps []parsed, errs []*FieldError) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Kind == yaml.ScalarNode && strings.HasPrefix(k.Value, "x-") {
			continue // an extension field: a place for anchors, ignored
		}
		if k.Kind != yaml.ScalarNode || k.Value != "apps" {
			msg := fmt.Sprintf("unknown field %s; a file with apps: holds only the list of apps (and x- fields)", describe(resolveOrSelf(k)))
			errs = append(errs, &FieldError{File: name, Line: max(k.Line, 1), Column: k.Column, Msg: msg})
			continue
		}
		seq := resolve(v)
		if seq == nil || seq.Kind != yaml.SequenceNode {
			errs = append(errs, &FieldError{File: name, Line: max(v.Line, 1), Column: v.Column, Field: "apps", Msg: "must be a list of apps"})
			continue
		}
		for j, e := range seq.Content {
			p, e := oneApp(name, e, fmt.Sprintf("apps[%d]", j))
			ps, errs = append(ps, p), append(errs, e...)
		}
	}
	return ps, errs
}

// oneApp decodes, defaults and validates the app at node n.
func oneApp(name string, n *yaml.Node, prefix string) (parsed, []*FieldError) {
	d := &decoder{file: name, nodes: map[string]*yaml.Node{}, budget: nodeBudget}
	a := withDefaults()
	d.value(prefix, n, reflect.ValueOf(&a).Elem(), "")
	a.Source = name

	full := func(path string) string {
		if prefix == "" {
			return path
		}
		if path == "" {
			return prefix
		}
		return prefix + "." + path
	}
	// A step the file gave without a pause gets the default for its place.
	for i := range a.Strategy.Steps {
		if _, set := d.nodes[full(fmt.Sprintf("strategy.steps[%d].pause", i))]; !set {
			a.Strategy.Steps[i].Pause = defaultPause(a.Strategy.Steps, i)
		}
	}

	at := func(path string) (int, int) {
		for p := path; ; {
			if n, ok := d.nodes[p]; ok {
				return max(n.Line, 1), n.Column
			}
			i := strings.LastIndexAny(p, ".[")
			if i < 0 {
				break
			}
			p = p[:i]
		}
		if n, ok := d.nodes[prefix]; ok {
			return max(n.Line, 1), n.Column
		}
		return max(n.Line, 1), n.Column
	}
	// Validation runs even when decoding failed, so one run reports every
	// problem; a field that failed to decode keeps its (valid) default and
	// is not reported twice.
	c := &checker{file: name, at: at}
	pre := prefix
	if pre != "" {
		pre += "."
	}
	c.app(&a, pre)
	errs := append(d.errs, c.errs...)
	local := func(path string) (int, int) { return at(full(path)) }
	return parsed{app: a, root: n, at: local}, errs
}

// NewCatalog checks apps as LoadDir checks a folder of spec files, and
// indexes them by name. An app that has not had its defaults (built in Go
// without SetDefaults) gets them first, so App{Name: "web", Run: ...} is
// the same app as a file with only those two fields; an app from Parse,
// LoadFile, LoadDir or SetDefaults is taken as it is (a zero there was
// chosen). Then every app is validated, and the apps together (a name
// twice, a fixed port twice): every problem is returned, joined, each a
// *FieldError naming the app (FieldError.App) and the field.
func NewCatalog(apps ...App) (*Catalog, error) {
	all := make([]parsed, len(apps))
	var errs []*FieldError
	for i, a := range apps {
		if !a.defaulted {
			a.SetDefaults()
		}
		c := &checker{file: a.Source, appName: appLabel(a.Name, i), at: noPosition}
		c.app(&a, "")
		errs = append(errs, c.errs...)
		all[i] = parsed{app: a, at: noPosition, label: c.appName}
	}
	if err := errors.Join(joinSorted(errs), crossCheck(all)); err != nil {
		return nil, err
	}
	out := make([]App, len(all))
	for i, p := range all {
		out[i] = p.app
	}
	return newCatalog(out), nil
}

// appLabel names the i-th app given to NewCatalog in its messages.
func appLabel(name string, i int) string {
	switch {
	case name == "":
		return fmt.Sprintf("#%d (no name)", i+1)
	case ValidName(name):
		return name
	default:
		return strconv.Quote(name)
	}
}

// newCatalog indexes apps that are checked already, names unique.
func newCatalog(apps []App) *Catalog {
	c := &Catalog{byName: make(map[string]App, len(apps)), all: apps}
	for _, a := range apps {
		c.byName[a.Name] = a
	}
	sort.Slice(c.all, func(i, j int) bool { return c.all[i].Name < c.all[j].Name })
	return c
}

// Catalog is the set of apps ship knows, by name. It is read-only after
// loading; reload by loading a new Catalog.
type Catalog struct {
	byName map[string]App
	all    []App
}

// Get returns the app called name.
func (c *Catalog) Get(name string) (App, bool) {
	if c == nil {
		return App{}, false
	}
	a, ok := c.byName[name]
	return a, ok
}

// All returns every app sorted by name (a new slice).
func (c *Catalog) All() []App {
	if c == nil {
		return nil
	}
	return append([]App(nil), c.all...)
}

// Names returns every app name, sorted.
func (c *Catalog) Names() []string {
	if c == nil {
		return nil
	}
	out := make([]string, len(c.all))
	for i, a := range c.all {
		out[i] = a.Name
	}
	return out
}

// Len is the number of apps.
func (c *Catalog) Len() int {
	if c == nil {
		return 0
	}
	return len(c.all)
}
