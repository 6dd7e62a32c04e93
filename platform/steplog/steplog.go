// Package steplog stores step output as sequence-numbered lines per run,
// serves it from any sequence number, and lets readers wait for more. The
// build and test services keep their steps' logs with it, and release
// its deploy, verify and rollback logs.
package steplog

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sluicehq/sluice/platform/cut"
	"github.com/sluicehq/sluice/platform/runner"
	"github.com/sluicehq/sluice/platform/sqldb"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations creates the step_logs tables.
func Migrations() sqldb.Migrations {
	return sqldb.Embedded("steplog", migrationFiles)
}

// Streams a line can come from.
const (
	Stdout = "stdout"
	Stderr = "stderr"
	// Meta lines are written by Sluice itself (step banners, exit codes).
	Meta = "meta"
)

// MaxLineBytes is the longest line stored; a longer line is cut, at a
// character boundary, with a mark that says how much (platform/cut).
const MaxLineBytes = 16 << 10

// Line is one stored line.
type Line struct {
	Seq    int64
	Step   string
	Stream string
	Text   string
	Time   time.Time
}

// Limits bound one run's log. Past either, output lines are dropped and
// counted, and the log says so: a marker line when the limit is reached,
// and the count of what was dropped when the writer closes. Sluice's own
// lines (Meta: banners, exit codes) are always stored.
type Limits struct {
	// MaxLines is the most output lines a run's log keeps.
	MaxLines int
	// MaxBytes is the most bytes of output text a run's log keeps.
	MaxBytes int
}

// DefaultLimits are the limits of a Store made by New.
var DefaultLimits = Limits{MaxLines: 500_000, MaxBytes: 256 << 20}

// Flags is what RegisterFlags needs of a service's flags
// (*servicekit.Flags).
type Flags interface {
	IntVar(p *int, name, usage string)
}

// RegisterFlags registers --log-max-lines and --log-max-bytes, with
// DefaultLimits for what is still zero.
func (l *Limits) RegisterFlags(f Flags) {
	if l.MaxLines == 0 {
		l.MaxLines = DefaultLimits.MaxLines
	}
	if l.MaxBytes == 0 {
		l.MaxBytes = DefaultLimits.MaxBytes
	}
	f.IntVar(&l.MaxLines, "log-max-lines", "most output lines a run's log keeps; later lines are dropped and counted in the log")
	f.IntVar(&l.MaxBytes, "log-max-bytes", "most bytes of output a run's log keeps; later lines are dropped and counted in the log")
}

// Validate refuses limits below what a log needs to say anything.
func (l Limits) Validate() error {
	if l.MaxLines < 0 || (l.MaxLines > 0 && l.MaxLines < 100) {
		return fmt.Errorf("log-max-lines is %d; it must be at least 100", l.MaxLines)
	}
	if l.MaxBytes < 0 || (l.MaxBytes > 0 && l.MaxBytes < 64<<10) {
		return fmt.Errorf("log-max-bytes is %d; it must be at least 65536", l.MaxBytes)
	}
	return nil
}

func (l Limits) withDefaults() Limits {
	if l.MaxLines <= 0 {
		l.MaxLines = DefaultLimits.MaxLines
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultLimits.MaxBytes
	}
	return l
}

// Store keeps the lines in the service's database.
type Store struct {
	db     *sqldb.DB
	limits Limits
	sup    *runner.Supervisor

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every append or completion
}

// New makes a store over db (which must have Migrations applied) whose
// logs are bounded by limits (zero fields: DefaultLimits').
func New(db *sqldb.DB, limits Limits, opts ...Option) *Store {
	s := &Store{db: db, limits: limits.withDefaults(), changed: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Option changes a Store from its defaults.
type Option func(*Store)

// GuardedBy guards the writers' background flushes with sup: a flush that
// panics is logged and counted, and the next one tries again (without it,
// runner's default Supervisor does, counting nowhere).
func GuardedBy(sup *runner.Supervisor) Option { return func(s *Store) { s.sup = sup } }

func (s *Store) signal() {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

func (s *Store) changes() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// ErrSuperseded is what a Writer's Flush and Close wrap once another
// writer opened the run's log (a worker took the run over): the lines this
// one had not stored are dropped, so they cannot take the numbers of the
// new writer's lines.
var ErrSuperseded = errors.New("another writer took the run's log over")

// Writer appends a run's lines in order. It is safe for concurrent use.
//
// One writer holds a run's log at a time: opening a writer supersedes the
// one before, whose later flushes store nothing (ErrSuperseded), and when
// that one had not closed the log (its worker crashed, or lost the run)
// the new writer's first line says that the lines it had not stored yet
// are lost. So a log stays gapless, continues after the earlier writer's
// last stored line, and never hides a loss.
type Writer struct {
	store *Store
	runID string
	// holder is this writer's number in step_log_state.writer.
	holder int64

	mu      sync.Mutex
	next    int64
	pending []Line
	// lines and bytes are the output kept so far (stored and pending);
	// droppedLines and droppedBytes what the limits turned away.
	lines, bytes               int64
	droppedLines, droppedBytes int64
	// superseded is set once another writer held the log: no more lines
	// are stored; refused counts those dropped.
	superseded bool
	refused    int64

	stop chan struct{}
	done chan struct{}
}

// Writer opens the run's log for appending, continuing after the lines
// already stored (a worker that takes over a run keeps numbering), and
// supersedes any writer that held it before. It flushes buffered lines
// every interval until Close.
func (s *Store) Writer(ctx context.Context, runID string, interval time.Duration) (*Writer, error) {
	w := &Writer{store: s, runID: runID, stop: make(chan struct{}), done: make(chan struct{})}
	var abandoned int
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO step_log_state (run_id, complete) VALUES ($1, 0) ON CONFLICT (run_id) DO NOTHING`, runID); err != nil {
			return err
		}
		// The update locks the row: an earlier writer's flush that has not
		// yet checked that it holds the log waits, and then finds it does not.
		if _, err := tx.ExecContext(ctx, `UPDATE step_log_state SET writer = writer + 1 WHERE run_id = $1`, runID); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `SELECT writer, writing FROM step_log_state WHERE run_id = $1`, runID).Scan(&w.holder, &abandoned); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE step_log_state SET writing = 1 WHERE run_id = $1`, runID); err != nil {
			return err
		}
		// The next number follows every stored line, Sluice's own
		// included; the limits count output only.
		var last sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT MAX(seq),
			COALESCE(SUM(CASE WHEN stream <> $2 THEN 1 ELSE 0 END), 0),
			COALESCE(SUM(CASE WHEN stream <> $2 THEN OCTET_LENGTH(text) ELSE 0 END), 0)
			FROM step_logs WHERE run_id = $1`, runID, Meta).Scan(&last, &w.lines, &w.bytes); err != nil {
			return err
		}
		w.next = last.Int64 + 1
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open log of run %s: %w", runID, err)
	}
	if abandoned != 0 {
		w.add("", Meta, fmt.Sprintf("--- the log's earlier writer did not close it (its worker stopped or lost the run): the lines it had not stored by then are lost (a writer stores its lines every %s)", interval))
	}
	go w.flushLoop(interval)
	return w, nil
}

func (w *Writer) flushLoop(interval time.Duration) {
	defer close(w.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.store.sup.Guard("step log flush", func() { _ = w.Flush(context.Background()) })
		}
	}
}

// Append buffers one line and returns its sequence number. An output line
// past the store's Limits is dropped and counted instead (0 is returned);
// the first one dropped leaves a line that says the limit was reached, and
// Close stores the count. Once another writer took the log over, every
// line is dropped (0).
func (w *Writer) Append(step, stream, text string) int64 {
	text = cut.Text(text, MaxLineBytes)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.superseded {
		w.refused++
		return 0
	}
	if stream != Meta {
		limits := w.store.limits
		if w.lines+1 > int64(limits.MaxLines) || w.bytes+int64(len(text)) > int64(limits.MaxBytes) {
			if w.droppedLines == 0 {
				w.add(step, Meta, fmt.Sprintf("--- the run's log reached its limit (log-max-lines %d, log-max-bytes %d): later output is not stored; what was dropped is counted at the end", limits.MaxLines, limits.MaxBytes))
			}
			w.droppedLines++
			w.droppedBytes += int64(len(text))
			return 0
		}
		w.lines++
		w.bytes += int64(len(text))
	}
	return w.add(step, stream, text)
}

// add buffers one line and returns its sequence number; w.mu is held.
func (w *Writer) add(step, stream, text string) int64 {
	seq := w.next
	w.next++
	w.pending = append(w.pending, Line{Seq: seq, Step: step, Stream: stream, Text: sqldb.Text(text), Time: time.Now().UTC()})
	return seq
}

// Flush stores the buffered lines. A failed flush keeps them buffered for
// the next flush (Close's last one included). Once
// another writer took the log over, the lines are dropped and the error
// wraps ErrSuperseded.
func (w *Writer) Flush(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flush(ctx, false)
}

// flush stores the pending lines, and with closing gives the log up; w.mu
// is held.
func (w *Writer) flush(ctx context.Context, closing bool) error {
	if w.superseded {
		return fmt.Errorf("store log lines of run %s: %d lines not stored: %w", w.runID, w.refused, ErrSuperseded)
	}
	if len(w.pending) == 0 && !closing {
		return nil
	}
	err := w.store.db.InTx(ctx, func(tx *sql.Tx) error {
		// Checking the holder locks the row until the commit, so a writer
		// opening meanwhile numbers after these lines.
		res, err := tx.ExecContext(ctx, `UPDATE step_log_state SET writing = CASE WHEN $3 THEN 0 ELSE writing END WHERE run_id = $1 AND writer = $2`,
			w.runID, w.holder, closing)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrSuperseded
		}
		for _, l := range w.pending {
			if _, err := tx.ExecContext(ctx,
				`INSERT INTO step_logs (run_id, seq, step, stream, text, at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
				w.runID, l.Seq, l.Step, l.Stream, l.Text, l.Time.UnixNano()); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, ErrSuperseded) {
		w.superseded, w.refused, w.pending = true, int64(len(w.pending)), nil
		return fmt.Errorf("store log lines of run %s: %d lines not stored: %w", w.runID, w.refused, ErrSuperseded)
	}
	if err != nil {
		return fmt.Errorf("store log lines of run %s: %w", w.runID, err)
	}
	w.pending = w.pending[:0]
	w.store.signal()
	return nil
}

// Close stops the flush loop and stores what is left, with the count of
// the lines the limits dropped, if any, and gives the log up: the next
// writer continues it without a word about lost lines.
func (w *Writer) Close(ctx context.Context) error {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.droppedLines > 0 && !w.superseded {
		w.add("", Meta, fmt.Sprintf("--- %d lines (%d bytes) of output were dropped: the run's log had reached its limit", w.droppedLines, w.droppedBytes))
		w.droppedLines, w.droppedBytes = 0, 0
	}
	return w.flush(ctx, true)
}

// Complete marks the run's log as finished: readers stop waiting.
func (s *Store) Complete(ctx context.Context, runID string) error {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO step_log_state (run_id, complete) VALUES ($1, 1) ON CONFLICT (run_id) DO UPDATE SET complete = 1`, runID)
	if err != nil {
		return fmt.Errorf("complete log of run %s: %w", runID, err)
	}
	s.signal()
	return nil
}

// CompleteIn marks the run's log as finished in tx, the transaction that
// announces the end of what wrote it, so that nobody learns of the end
// before the log says it is complete. Call Store.Complete after the commit
// to wake the readers waiting for more.
func CompleteIn(ctx context.Context, tx *sql.Tx, runID string) error {
	_, err := tx.ExecContext(ctx,
		`INSERT INTO step_log_state (run_id, complete) VALUES ($1, 1) ON CONFLICT (run_id) DO UPDATE SET complete = 1`, runID)
	if err != nil {
		return fmt.Errorf("complete log of run %s: %w", runID, err)
	}
	return nil
}

// Reopen marks the run's log as in progress again (a worker took it over).
func (s *Store) Reopen(ctx context.Context, runID string) error {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO step_log_state (run_id, complete) VALUES ($1, 0) ON CONFLICT (run_id) DO UPDATE SET complete = 0`, runID)
	if err != nil {
		return fmt.Errorf("reopen log of run %s: %w", runID, err)
	}
	return nil
}

// Page is a slice of a run's log.
type Page struct {
	Lines []Line
	// Next is the sequence number to ask for next.
	Next int64
	// Complete is true when the log is finished and Lines reach its end.
	Complete bool
}

// Read returns up to limit lines from fromSeq on (1 when 0), only of step
// when step is not empty.
func (s *Store) Read(ctx context.Context, runID, step string, fromSeq int64, limit int) (Page, error) {
	if fromSeq < 1 {
		fromSeq = 1
	}
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	// Read completion first: lines stored before it was set are all visible.
	var complete int
	err := s.db.Reader().QueryRowContext(ctx, `SELECT complete FROM step_log_state WHERE run_id = $1`, runID).Scan(&complete)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return Page{}, fmt.Errorf("read log of run %s: %w", runID, err)
	}
	q := `SELECT seq, step, stream, text, at FROM step_logs WHERE run_id = $1 AND seq >= $2 AND ($3 = '' OR step = $3) ORDER BY seq LIMIT $4`
	rows, err := s.db.Reader().QueryContext(ctx, q, runID, fromSeq, step, limit+1)
	if err != nil {
		return Page{}, fmt.Errorf("read log of run %s: %w", runID, err)
	}
	defer rows.Close()
	page := Page{Next: fromSeq}
	for rows.Next() {
		var l Line
		var at int64
		if err := rows.Scan(&l.Seq, &l.Step, &l.Stream, &l.Text, &at); err != nil {
			return Page{}, fmt.Errorf("read log of run %s: %w", runID, err)
		}
		l.Time = sqldb.Time(at)
		page.Lines = append(page.Lines, l)
	}
	if err := rows.Err(); err != nil {
		return Page{}, fmt.Errorf("read log of run %s: %w", runID, err)
	}
	more := len(page.Lines) > limit
	if more {
		page.Lines = page.Lines[:limit]
	}
	if n := len(page.Lines); n > 0 {
		page.Next = page.Lines[n-1].Seq + 1
	}
	page.Complete = complete == 1 && !more
	return page, nil
}

// Tail calls fn with every line from fromSeq on as lines arrive, until the
// log is complete (returns nil) or ctx ends.
func (s *Store) Tail(ctx context.Context, runID, step string, fromSeq int64, fn func([]Line) error) error {
	next := fromSeq
	for {
		changed := s.changes()
		page, err := s.Read(ctx, runID, step, next, 1000)
		if err != nil {
			return err
		}
		if len(page.Lines) > 0 {
			if err := fn(page.Lines); err != nil {
				return err
			}
		}
		next = page.Next
		if page.Complete {
			return nil
		}
		if len(page.Lines) > 0 {
			continue
		}
		// Another replica may be writing: poll as well as wait.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-time.After(500 * time.Millisecond):
		}
	}
}
