package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shipteam/ship/internal/api"
	"github.com/shipteam/ship/internal/command"
	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/release"
	"github.com/shipteam/ship/internal/runtime"
)

// runner runs one parsed command against the API.
type runner struct {
	c    *api.Client
	env  Env
	json bool
	// logPoll is how often `logs -f` asks for new lines.
	logPoll time.Duration
}

func (r *runner) run(ctx context.Context, cmd command.Command) error {
	switch cmd.Verb {
	case "apps":
		return r.apps(ctx)
	case "status":
		if cmd.App == "" {
			return r.apps(ctx)
		}
		return r.status(ctx, cmd)
	case "deploy":
		return r.deploy(ctx, cmd)
	case "promote":
		rel, err := r.c.Promote(ctx, cmd.App, cmd.Env)
		if err != nil {
			return err
		}
		return r.afterRelease(ctx, cmd, rel, "promoting")
	case "abort":
		rel, err := r.c.Abort(ctx, cmd.App, cmd.Env, cmd.Reason)
		if err != nil {
			return err
		}
		if r.json {
			return r.printJSON(rel)
		}
		fmt.Fprintf(r.env.Stdout, "release %d of %s %s aborted: canary weight 0, %s keeps serving\n",
			rel.ID, rel.App, rel.Version, orNone(rel.FromVersion))
		return nil
	case "rollback":
		rel, err := r.c.Rollback(ctx, cmd.App, cmd.Env, cmd.To)
		if err != nil {
			return err
		}
		return r.afterRelease(ctx, cmd, rel, "rolling back")
	case "scale":
		st, err := r.c.Scale(ctx, cmd.App, cmd.Env, cmd.Replicas)
		if err != nil {
			return err
		}
		if r.json {
			return r.printJSON(st)
		}
		// The count asked, not st.Stable.Desired: on Kubernetes an HPA
		// (or a cache a moment behind) still shows the old count.
		fmt.Fprintf(r.env.Stdout, "%s %s: stable %s scaled to %d (ready %d)\n",
			st.App, st.Env, orNone(st.Stable.Version), cmd.Replicas, st.Stable.Ready)
		return nil
	case "reclaim":
		return r.reclaim(ctx, cmd)
	case "history":
		return r.history(ctx, cmd)
	case "lock":
		st, err := r.c.Lock(ctx, cmd.App, cmd.Env, cmd.Reason)
		if err != nil {
			return err
		}
		if r.json {
			return r.printJSON(st)
		}
		fmt.Fprintf(r.env.Stdout, "%s %s locked: %s\n", st.App, st.Env, cmd.Reason)
		return nil
	case "unlock":
		st, err := r.c.Unlock(ctx, cmd.App, cmd.Env)
		if err != nil {
			return err
		}
		if r.json {
			return r.printJSON(st)
		}
		fmt.Fprintf(r.env.Stdout, "%s %s unlocked\n", st.App, st.Env)
		return nil
	case "logs":
		return r.logs(ctx, cmd)
	}
	return &usageErr{fmt.Sprintf("the CLI does not handle %q", cmd.Verb)}
}

// reclaim prints what was forced back, then one line per field another
// manager lost.
func (r *runner) reclaim(ctx context.Context, cmd command.Command) error {
	res, err := r.c.Reclaim(ctx, cmd.App, cmd.Env)
	if err != nil {
		return err
	}
	if r.json {
		return r.printJSON(res)
	}
	fmt.Fprintln(r.env.Stdout, res.Summary())
	return nil
}

func (r *runner) printJSON(v any) error {
	enc := json.NewEncoder(r.env.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (r *runner) deploy(ctx context.Context, cmd command.Command) error {
	rel, err := r.c.Deploy(ctx, cmd.App, api.DeployRequest{
		Env: cmd.Env, Version: cmd.Version, Canary: cmd.Canary, Steps: cmd.Steps, Rolling: cmd.Rolling,
	})
	if err != nil {
		return err
	}
	return r.afterRelease(ctx, cmd, rel, "deploying")
}

// afterRelease reports an accepted release and, when waiting, follows it.
// Waiting is the default on a terminal; scripts ask for it with --wait
// (then the exit code says how the release ended).
func (r *runner) afterRelease(ctx context.Context, cmd command.Command, rel release.Release, doing string) error {
	wait := cmd.Wait || (r.env.TTY && !r.json)
	if !r.json {
		note := ""
		if cmd.Verb != "promote" {
			note = planNote(rel)
		}
		fmt.Fprintf(r.env.Stdout, "release %d: %s %s %s in %s%s\n", rel.ID, doing, rel.App, rel.Version, rel.Env, note)
	}
	if !wait {
		if r.json {
			return r.printJSON(rel)
		}
		return nil
	}
	held := cmd.Verb == "deploy" && rel.HoldAt > 0
	final, err := r.watch(ctx, rel, held)
	if err != nil {
		return err
	}
	if final.State.Terminal() || (held && final.State == release.Paused) {
		if err := r.waitWeight(ctx, final); err != nil {
			return err
		}
	}
	if r.json {
		if err := r.printJSON(final); err != nil {
			return err
		}
	}
	return outcome(final)
}

func planNote(rel release.Release) string {
	if p := rel.Plan(); p != "" {
		return " (" + p + ")"
	}
	return ""
}

// releaseFailed is a release that ended badly: exit code 1.
type releaseFailed struct{ rel release.Release }

func (e *releaseFailed) Error() string {
	msg := fmt.Sprintf("release %d of %s %s %s", e.rel.ID, e.rel.App, e.rel.Version, strings.ReplaceAll(string(e.rel.State), "_", " "))
	if e.rel.Reason != "" {
		msg += ": " + e.rel.Reason
	}
	return msg
}

func outcome(rel release.Release) error {
	switch rel.State {
	case release.Aborted, release.Failed, release.RolledBack:
		return &releaseFailed{rel}
	}
	return nil
}

func (r *runner) apps(ctx context.Context) error {
	apps, err := r.c.Apps(ctx)
	if err != nil {
		return err
	}
	if r.json {
		return r.printJSON(apps)
	}
	tw := tabwriter.NewWriter(r.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tENV\tENDPOINT\tSTABLE\tCANARY\tWEIGHT\tRELEASE")
	for _, a := range apps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s%%\t%s\n", a.App, a.Env, a.Endpoint,
			track(a.Stable), track(a.Canary), pct(a.Weight), releaseNote(a.Release))
	}
	return tw.Flush()
}

func track(t engine.TrackView) string {
	if t.Version == "" && t.Desired == 0 {
		return "-"
	}
	s := fmt.Sprintf("%s %d/%d", orNone(t.Version), t.Ready, t.Desired)
	if t.Failed {
		s += " FAILED"
	}
	return s
}

func releaseNote(rel *release.Release) string {
	if rel == nil {
		return "-"
	}
	return fmt.Sprintf("#%d %s %s", rel.ID, rel.Version, rel.State)
}

func (r *runner) status(ctx context.Context, cmd command.Command) error {
	st, err := r.c.Status(ctx, cmd.App, cmd.Env)
	if err != nil {
		return err
	}
	if r.json {
		return r.printJSON(st)
	}
	w := r.env.Stdout
	fmt.Fprintf(w, "%s (%s)  %s\n", st.App, st.Env, st.Endpoint)
	fmt.Fprintf(w, "  stable  %s\n", trackLine(st.Stable))
	fmt.Fprintf(w, "  canary  %s  weight %s%%%s\n", trackLine(st.Canary), pct(st.Weight), askedNote(st))
	if rel := st.Release; rel != nil {
		fmt.Fprintf(w, "  release #%d %s %s by %s (%s)%s\n", rel.ID, rel.Version, rel.State, rel.Actor, rel.Source, stepNote(*rel))
		if rel.Reason != "" {
			fmt.Fprintf(w, "          %s\n", rel.Reason)
		}
	}
	if a := st.Analysis; a != nil {
		fmt.Fprintf(w, "  analysis %s: canary %s errors over %d requests, stable %s over %d%s\n", a.Verdict,
			rate(a.CanaryErrorRate), a.CanaryRequests, rate(a.StableErrorRate), a.StableRequests, reasonNote(a.Reason))
	}
	if l := st.Lock; l != nil {
		fmt.Fprintf(w, "  LOCKED by %s since %s: %s\n", l.Actor, l.Since.Local().Format(time.DateTime), l.Reason)
	}
	if st.Note != "" {
		fmt.Fprintf(w, "  note: %s\n", st.Note)
	}
	return nil
}

func trackLine(t engine.TrackView) string {
	if t.Version == "" && t.Desired == 0 {
		return "-"
	}
	s := fmt.Sprintf("%s  %d/%d ready", orNone(t.Version), t.Ready, t.Desired)
	if t.Restarts > 0 {
		s += fmt.Sprintf(", %d restarts", t.Restarts)
	}
	if t.Failed {
		s += "  FAILED: " + t.Reason
	}
	return s
}

// askedNote says what weight the release asked for when the router put
// another in force (replica ratios round it); the status note says why.
func askedNote(st engine.AppStatus) string {
	if st.WeightAsked == 0 {
		return ""
	}
	return fmt.Sprintf(" (%s%% asked)", pct(st.WeightAsked))
}

func stepNote(rel release.Release) string {
	if rel.State.Terminal() || len(rel.Steps) == 0 {
		return ""
	}
	return fmt.Sprintf(", step %d/%d at %s%%", rel.Step+1, len(rel.Steps), pct(rel.Weight))
}

func reasonNote(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

func (r *runner) history(ctx context.Context, cmd command.Command) error {
	limit := cmd.Lines
	rels, err := r.c.History(ctx, cmd.App, cmd.Env, limit)
	if err != nil {
		return err
	}
	if r.json {
		return r.printJSON(rels)
	}
	tw := tabwriter.NewWriter(r.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tVERSION\tFROM\tKIND\tSTATE\tBY\tVIA\tSTARTED\tREASON")
	for _, rel := range rels {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", rel.ID, rel.Version, orNone(rel.FromVersion),
			rel.Kind, rel.State, rel.Actor, rel.Source, rel.Created.Local().Format(time.DateTime), rel.Reason)
	}
	return tw.Flush()
}

func (r *runner) logs(ctx context.Context, cmd command.Command) error {
	n := cmd.Lines
	if n <= 0 {
		n = 100
	}
	lines, err := r.c.Logs(ctx, cmd.App, cmd.Env, cmd.LogVersion, n)
	if err != nil {
		return err
	}
	if r.json && !cmd.Follow {
		return r.printJSON(lines) // one array; with -f, one object per line
	}
	seen := map[string]bool{}
	print := func(ls []runtime.LogLine) error {
		for _, l := range ls {
			k := logKey(l)
			if seen[k] {
				continue
			}
			seen[k] = true
			if err := r.printLog(r.env.Stdout, l); err != nil {
				return err
			}
		}
		return nil
	}
	if err := print(lines); err != nil {
		return err
	}
	if !cmd.Follow {
		return nil
	}
	// Follow by polling: the runtime keeps a ring of recent lines, so new
	// lines are those not seen before.
	poll := r.logPoll
	if poll == 0 {
		poll = time.Second
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		lines, err := r.c.Logs(ctx, cmd.App, cmd.Env, cmd.LogVersion, 1000)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := print(lines); err != nil {
			return err
		}
	}
}

func logKey(l runtime.LogLine) string {
	return l.Time.Format(time.RFC3339Nano) + "\x00" + l.Instance + "\x00" + l.Version + "\x00" + l.Stream + "\x00" + l.Text
}

func (r *runner) printLog(w io.Writer, l runtime.LogLine) error {
	if r.json {
		b, err := json.Marshal(l)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	_, err := fmt.Fprintf(w, "%s %s %s %s| %s\n", l.Time.Local().Format("15:04:05.000"), l.Version, l.Instance, streamTag(l.Stream), l.Text)
	return err
}

func streamTag(s string) string {
	switch s {
	case "stderr":
		return "err "
	case "ship":
		return "ship "
	}
	return ""
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// pct formats a weight without trailing zeros or sign: 1, 0.5, 12.5.
func pct(w release.Weight) string { return w.Number() }

func rate(f float64) string { return fmt.Sprintf("%.1f%%", f*100) }
