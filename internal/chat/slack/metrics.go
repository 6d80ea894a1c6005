package slack

import "github.com/prometheus/client_golang/prometheus"

// Collector exposes Stats as Prometheus counters (ship_slack_*), so a
// Slack outage shows on ship's /metrics: register it next to ship's others.
func (b *Bot) Collector() prometheus.Collector { return statsCollector{b} }

type statsCollector struct{ b *Bot }

var statsDescs = []struct {
	desc *prometheus.Desc
	get  func(Stats) int64
}{
	{prometheus.NewDesc("ship_slack_commands_total", "Slash commands accepted.", nil, nil), func(s Stats) int64 { return s.Commands }},
	{prometheus.NewDesc("ship_slack_interactions_total", "Button presses accepted.", nil, nil), func(s Stats) int64 { return s.Interactions }},
	{prometheus.NewDesc("ship_slack_unauthorized_total", "Requests refused with 401 (bad or missing signature or token, stale, replayed).", nil, nil), func(s Stats) int64 { return s.Unauthorized }},
	{prometheus.NewDesc("ship_slack_refused_total", "Commands and presses refused by permissions or channel rules.", nil, nil), func(s Stats) int64 { return s.Refused }},
	{prometheus.NewDesc("ship_slack_calls_total", "Slack Web API and response_url calls (first attempts).", nil, nil), func(s Stats) int64 { return s.SlackCalls }},
	{prometheus.NewDesc("ship_slack_retries_total", "Slack calls retried after 429, 5xx or network errors.", nil, nil), func(s Stats) int64 { return s.SlackRetries }},
	{prometheus.NewDesc("ship_slack_failures_total", "Slack calls and replies given up (each also logged).", nil, nil), func(s Stats) int64 { return s.SlackFailures }},
	{prometheus.NewDesc("ship_slack_response_url_posts_total", "Messages delivered through response_url.", nil, nil), func(s Stats) int64 { return s.ResponseURLPosts }},
	{prometheus.NewDesc("ship_slack_events_dropped_total", "Engine events the notifier could not track.", nil, nil), func(s Stats) int64 { return s.EventsDropped }},
	{prometheus.NewDesc("ship_slack_busy_total", "Commands refused because too much work was in flight.", nil, nil), func(s Stats) int64 { return s.Busy }},
}

func (c statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range statsDescs {
		ch <- d.desc
	}
}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.b.Stats()
	for _, d := range statsDescs {
		ch <- prometheus.MustNewConstMetric(d.desc, prometheus.CounterValue, float64(d.get(s)))
	}
}
