package evidence

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Settings are [evidence] in tcpnorm.toml.
type Settings struct {
	Dir      string // one file per policy: Dir/POLICY.pcapng
	MaxBytes int64  // a file reaching this is rotated
	Keep     int    // rotated files kept per policy: POLICY.pcapng.1 (newest) .. .Keep
}

// Counters are the recorder's metrics; any may be nil.
type Counters struct {
	Packets *prometheus.CounterVec // by policy: packet copies written
	Dropped prometheus.Counter     // records dropped: the queue was full
	Errors  *prometheus.CounterVec // by op: open, write, rotate
}

// Backlog bounds the records waiting for the writer.
const Backlog = 256

// File is the evidence file of a policy under dir.
func File(dir, policy string) string { return filepath.Join(dir, policy+".pcapng") }

// Files lists a policy's evidence files that exist, oldest first (the
// rotated ones, then the current one).
func Files(s Settings, policy string) []string {
	var out []string
	base := File(s.Dir, policy)
	for i := max(s.Keep, 0); i >= 1; i-- {
		if p := fmt.Sprintf("%s.%d", base, i); exists(p) {
			out = append(out, p)
		}
	}
	if exists(base) {
		out = append(out, base)
	}
	return out
}

func exists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// Recorder writes records to the policies' evidence files on its own
// goroutine (Run). Offer never blocks.
type Recorder struct {
	ch       chan Record
	settings atomic.Pointer[Settings]
	log      *slog.Logger
	c        Counters

	// Owned by Run.
	files   map[string]*file
	dir     string // Settings.Dir the open files are in
	lastLog map[string]time.Time
	buf     []byte
}

type file struct {
	f    *os.File
	size int64
}

// NewRecorder returns a recorder writing with s; nothing is created until
// the first record.
func NewRecorder(s Settings, log *slog.Logger, c Counters) *Recorder {
	r := &Recorder{
		ch:      make(chan Record, Backlog),
		log:     log,
		c:       c,
		files:   map[string]*file{},
		lastLog: map[string]time.Time{},
	}
	r.Configure(s)
	return r
}

// Configure changes the settings (a reload); files open in another
// directory are closed.
func (r *Recorder) Configure(s Settings) { r.settings.Store(&s) }

// Settings are the settings in force.
func (r *Recorder) Settings() Settings { return *r.settings.Load() }

// Offer queues a copy of rec for writing, or drops and counts it if the
// queue is full. It never blocks and does not allocate.
func (r *Recorder) Offer(rec *Record) {
	select {
	case r.ch <- *rec:
	default:
		if r.c.Dropped != nil {
			r.c.Dropped.Inc()
		}
	}
}

// Run writes queued records until ctx is done, then writes what is still
// queued and closes the files.
func (r *Recorder) Run(ctx context.Context) {
	defer r.closeAll()
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case rec := <-r.ch:
					r.write(&rec)
				default:
					return
				}
			}
		case rec := <-r.ch:
			r.write(&rec)
		}
	}
}

func (r *Recorder) closeAll() {
	for name, f := range r.files {
		f.f.Close()
		delete(r.files, name)
	}
}

// write appends rec's copies to its policy's file, rotating it first if
// they would take it past MaxBytes.
func (r *Recorder) write(rec *Record) {
	s := r.settings.Load()
	if s.Dir != r.dir {
		r.closeAll()
		r.dir = s.Dir
	}
	name := rec.Policy.Name
	rc, sc := rec.comments()
	rx, rxLen := rec.Received()
	b := appendPacket(r.buf[:0], rec.Time, rx, rxLen, rc)
	copies := 1
	if sc != "" {
		tx, txLen := rec.Sent()
		if tx == nil {
			tx, txLen = rx, rxLen
		}
		b = appendPacket(b, rec.Time, tx, txLen, sc)
		copies++
	}
	r.buf = b
	f := r.files[name]
	if f != nil && f.size > 0 && f.size+int64(len(b)) > s.MaxBytes {
		f.f.Close()
		delete(r.files, name)
		f = nil
		if err := rotate(File(s.Dir, name), s.Keep); err != nil {
			r.fail("rotate", name, err)
		}
	}
	if f == nil {
		var err error
		if f, err = open(File(s.Dir, name), name); err != nil {
			r.fail("open", name, err)
			return
		}
		r.files[name] = f
	}
	n, err := f.f.Write(b)
	f.size += int64(n)
	if err != nil {
		r.fail("write", name, err)
		// Reopened on the next record: a short write leaves a partial
		// block at the end, which readers stop at.
		f.f.Close()
		delete(r.files, name)
		return
	}
	if r.c.Packets != nil {
		r.c.Packets.WithLabelValues(name).Add(float64(copies))
	}
}

// open opens (creating dir and file) a policy's evidence file for
// appending; a new or empty file gets the pcapng header first, and one
// that is not pcapng is moved aside to PATH.bad.
func open(path, policy string) (*file, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	size := st.Size()
	if size > 0 {
		var magic [4]byte
		if _, err := f.ReadAt(magic[:], 0); err != nil || magic != [4]byte{0x0a, 0x0d, 0x0d, 0x0a} {
			f.Close()
			if err := os.Rename(path, path+".bad"); err != nil {
				return nil, fmt.Errorf("%s is not a pcapng file and cannot be moved aside: %w", path, err)
			}
			return open(path, policy)
		}
	}
	if size == 0 {
		var hdr bytes.Buffer
		if err := writeHeader(&hdr, policy); err != nil {
			f.Close()
			return nil, err
		}
		n, err := f.Write(hdr.Bytes())
		if err != nil {
			f.Close()
			return nil, err
		}
		size = int64(n)
	}
	return &file{f: f, size: size}, nil
}

// rotate renames path to path.1, path.1 to path.2 ..., dropping what
// would become path.(keep+1). keep 0 just removes path.
func rotate(path string, keep int) error {
	if keep <= 0 {
		return ignoreMissing(os.Remove(path))
	}
	if err := ignoreMissing(os.Remove(fmt.Sprintf("%s.%d", path, keep))); err != nil {
		return err
	}
	for i := keep - 1; i >= 1; i-- {
		if err := ignoreMissing(os.Rename(fmt.Sprintf("%s.%d", path, i), fmt.Sprintf("%s.%d", path, i+1))); err != nil {
			return err
		}
	}
	return ignoreMissing(os.Rename(path, path+".1"))
}

func ignoreMissing(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// fail counts an error and logs it, at most once per 10 s per policy and
// operation.
func (r *Recorder) fail(op, policy string, err error) {
	if r.c.Errors != nil {
		r.c.Errors.WithLabelValues(op).Inc()
	}
	key := op + " " + policy
	if now := time.Now(); now.Sub(r.lastLog[key]) >= 10*time.Second {
		r.lastLog[key] = now
		r.log.Warn("evidence not written", "policy", policy, "op", op, "err", err)
	}
}
