package resizer

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// SignCommand is `resizer sign [--signing-key KEY] PATH?QUERY`: it prints the
// path with its s= signature appended. The key may come from
// RESIZER_SIGNING_KEY instead of the flag. It returns the exit code.
func SignCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("resizer sign", flag.ContinueOnError)
	fs.SetOutput(stderr)
	key := fs.String("signing-key", getenv("RESIZER_SIGNING_KEY"), "HMAC key [$RESIZER_SIGNING_KEY]")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: resizer sign [--signing-key KEY] '/v1/resize?url=...&w=300'\n\n"+
			"Prints the path and query with s= appended, signed with KEY (or $RESIZER_SIGNING_KEY).\n")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 || !strings.HasPrefix(fs.Arg(0), "/") {
		fs.Usage()
		return 2
	}
	if *key == "" {
		fmt.Fprintln(stderr, "resizer sign: no key: give --signing-key or set RESIZER_SIGNING_KEY")
		return 2
	}
	fmt.Fprintln(stdout, SignURL(*key, fs.Arg(0)))
	return 0
}
