package config

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// DefaultMaxStale bounds how long a lookup's last answer stands in for it
// while it fails ([dns] max_stale).
const DefaultMaxStale = 24 * time.Hour

// lastKnown keeps the last answer of every lookup, by name and record
// type. A failing lookup uses its own last answer, and only that: every
// lookup that succeeds replaces its part of a policy's addresses at once
// (an MX host that moved is left even while another record of the domain
// fails). An answer older than maxStale is dropped, with a warning.
type lastKnown struct {
	mu       sync.Mutex
	answers  map[string]knownAnswer
	maxStale time.Duration
	now      func() time.Time
}

type knownAnswer struct {
	ans     answer
	at      time.Time // when it was answered
	failing time.Time // since when the lookup fails; zero: it does not
}

func newLastKnown(maxStale time.Duration, now func() time.Time) *lastKnown {
	if maxStale <= 0 {
		maxStale = DefaultMaxStale
	}
	return &lastKnown{answers: map[string]knownAnswer{}, maxStale: maxStale, now: now}
}

// setMaxStale applies [dns] max_stale (0: the default), on start and reload.
func (k *lastKnown) setMaxStale(d time.Duration) {
	if d <= 0 {
		d = DefaultMaxStale
	}
	k.mu.Lock()
	k.maxStale = d
	k.mu.Unlock()
}

func lookupKey(name string, qtype uint16) string {
	return strings.ToLower(dns.Fqdn(name)) + "/" + dns.TypeToString[qtype]
}

// lookupKeep looks name/qtype up. On failure the error goes to c, saying
// since when the lookup fails and whether its last answer stands in; ok
// reports an answer to use, fresh or last known.
func (r *resolver) lookupKeep(ctx context.Context, c *collector, name string, qtype uint16) (ans answer, ok bool) {
	ans, err := r.lookup(ctx, name, qtype)
	k := r.known
	if k == nil {
		if err != nil {
			c.fail(err)
		}
		return ans, err == nil
	}
	key := lookupKey(name, qtype)
	now := k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	if err == nil {
		k.answers[key] = knownAnswer{ans: ans, at: now}
		return ans, true
	}
	prev, had := k.answers[key]
	if !had {
		c.fail(err)
		return answer{}, false
	}
	if prev.failing.IsZero() {
		prev.failing = now
	}
	if now.Sub(prev.at) > k.maxStale {
		delete(k.answers, key)
		c.fail(fmt.Errorf("%w (failing since %s; its last answer, of %s, is older than max_stale %v and dropped)",
			err, prev.failing.UTC().Format(time.RFC3339), prev.at.UTC().Format(time.RFC3339), k.maxStale))
		return answer{}, false
	}
	k.answers[key] = prev
	c.fail(fmt.Errorf("%w (failing since %s; using its answer of %s)",
		err, prev.failing.UTC().Format(time.RFC3339), prev.at.UTC().Format(time.RFC3339)))
	return prev.ans, true
}
