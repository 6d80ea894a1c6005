package spec

import (
	"errors"
	"fmt"
	"sort"
)

// FieldError is one problem in a spec file, with where it is. Parse and the
// loaders return every problem of a file joined with errors.Join; each
// joined error is a *FieldError (use errors.As, or Problems to list them).
type FieldError struct {
	File   string // as given to Parse or LoadFile
	Line   int    // 1-based; 0 when unknown (an App validated outside a file)
	Column int    // 1-based; 0 when unknown
	// App names the app when the problem is not found in a file (NewCatalog
	// of apps built in Go); "" otherwise, where the file and line say it.
	App   string
	Field string // field path, e.g. strategy.steps[2].weight; "" for the file itself
	Msg   string
}

// Error formats as FILE:LINE:COLUMN: app APP: FIELD: MSG, leaving out the
// parts that are unknown or empty.
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
	if e.App != "" {
		s = "app " + e.App + ": " + s
	}
	if loc != "" {
		s = loc + ": " + s
	}
	return s
}

// Problems lists the *FieldErrors inside err (as returned by Parse,
// LoadFile, LoadDir or App.Validate), in order.
func Problems(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if fe, ok := e.(*FieldError); ok {
			out = append(out, fe)
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		var fe *FieldError
		if errors.As(e, &fe) {
			out = append(out, fe)
		}
	}
	walk(err)
	return out
}

// joinSorted joins problems ordered by file and position so the output
// reads top to bottom.
func joinSorted(errs []*FieldError) error {
	if len(errs) == 0 {
		return nil
	}
	sort.SliceStable(errs, func(i, j int) bool {
		a, b := errs[i], errs[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return errors.Join(out...)
}
