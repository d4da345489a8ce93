//go:build linux

package nfq

import (
	"context"
	"errors"
)

// Pool is the workers of queues First .. First+Count-1.
type Pool struct {
	Workers []*Worker
	failed  chan error
}

// StartPool opens and starts one worker per queue, base.Queue being
// replaced by each queue number. On error it closes the ones started.
func StartPool(ctx context.Context, base Config, first uint16, count int) (*Pool, error) {
	if count < 1 || int(first)+count-1 > 65535 {
		return nil, errors.New("nfq: bad queue range")
	}
	p := &Pool{failed: make(chan error, count)}
	for i := 0; i < count; i++ {
		cfg := base
		cfg.Queue = first + uint16(i)
		cfg.index = i
		w, err := Open(cfg)
		if err == nil {
			w.onFail = p.fail
			err = w.Start(ctx)
			if err != nil {
				w.Close()
			}
		}
		if err != nil {
			p.Close()
			return nil, err
		}
		p.Workers = append(p.Workers, w)
	}
	return p, nil
}

func (p *Pool) fail(err error) {
	select {
	case p.failed <- err:
	default:
	}
}

// Failed delivers the error of a worker that ended on its own.
func (p *Pool) Failed() <-chan error { return p.failed }

// Close stops every worker.
func (p *Pool) Close() error {
	var errs []error
	for _, w := range p.Workers {
		errs = append(errs, w.Close())
	}
	p.Workers = nil
	return errors.Join(errs...)
}
