package source

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/services/source/domain"
)

// admissionTick is how often the admission pass runs without being woken:
// it admits what a replica that died between a run's end and its own pass
// left waiting.
const admissionTick = 5 * time.Second

// admissionLock serialises the admission passes of the replicas.
const admissionLock = "source-admission"

// Admit lets waiting runs start until ctx ends: at once when woken (a run
// was made, or one ended) and every admissionTick. The module runs it as a
// loop.
func (s *Service) Admit(ctx context.Context) error {
	t := time.NewTicker(admissionTick)
	defer t.Stop()
	for {
		if err := s.admitOnce(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("admission: letting waiting runs start failed; tried again at the next run's end or in "+admissionTick.String(), slog.Any("error", err))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.admission:
		case <-t.C:
		}
	}
}

// wakeAdmission has the admission pass run soon.
func (s *Service) wakeAdmission() {
	select {
	case s.admission <- struct{}{}:
	default:
	}
}

// admitOnce admits the waiting runs that have room now (domain.Admit),
// publishing the RunRequested of each.
func (s *Service) admitOnce(ctx context.Context) error {
	unlock, err := s.store.Lock(ctx, admissionLock)
	if err != nil {
		return err
	}
	defer unlock()
	var admitted []domain.Run
	err = s.store.InTx(ctx, func(tx *sql.Tx) error {
		admitted = nil
		waiting, active, err := admissionState(ctx, tx)
		if err != nil || len(waiting) == 0 {
			return err
		}
		now := time.Now().UTC()
		for _, id := range domain.Admit(waiting, active, s.cfg.activeRunLimits()) {
			run, err := runByID(ctx, tx, id)
			if err != nil {
				// One run that cannot be read (a pipeline stored by a newer
				// version, say) must not hold back every other.
				s.log.Error("admission: a waiting run cannot be read; it keeps waiting (cancel it with sluice cancel)", slog.String("run_id", id), slog.Any("error", err))
				continue
			}
			ev, err := events.New(runRequestedToProto(run), run.ID, run.ID)
			if err != nil {
				s.log.Error("admission: a waiting run's RunRequested is not valid; it keeps waiting (cancel it with sluice cancel)", slog.String("run_id", id), slog.Any("error", err))
				continue
			}
			run.AdmittedAt = now
			ok, err := admitRun(ctx, tx, run)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			if err := events.Enqueue(ctx, tx, ev); err != nil {
				return err
			}
			admitted = append(admitted, run)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("admit waiting runs: %w", err)
	}
	if len(admitted) == 0 {
		return nil
	}
	s.outbox.Kick()
	s.changes.notify()
	for _, run := range admitted {
		s.log.Info("run requested", slog.String("run_id", run.ID), slog.String("repository", run.Repository),
			slog.String("commit", run.Commit), slog.String("trigger", string(run.Trigger)),
			slog.Duration("waited", run.AdmittedAt.Sub(run.CreatedAt)))
	}
	return nil
}
