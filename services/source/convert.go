package source

import (
	"slices"

	"github.com/sluicehq/sluice/platform/prototime"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/services/source/domain"
)

func repositoryToProto(r domain.Repository) *sourcev1.Repository {
	return &sourcev1.Repository{
		Id:             r.ID,
		Name:           r.Name,
		Url:            r.URL,
		Branch:         r.Branch,
		CreateTime:     prototime.Timestamp(r.CreatedAt),
		WebhookSecret:  r.WebhookSecret,
		LastSeenCommit: r.LastSeenCommit,
	}
}

func runToProto(r domain.Run) *sourcev1.Run {
	out := &sourcev1.Run{
		Id:             r.ID,
		RepositoryId:   r.RepositoryID,
		Repository:     r.Repository,
		Commit:         r.Commit,
		Ref:            r.Ref,
		Branch:         r.Branch,
		Trigger:        triggerToProto(r.Trigger),
		Status:         runStatusToProto(r.Status),
		CreateTime:     prototime.Timestamp(r.CreatedAt),
		EndTime:        prototime.Timestamp(r.EndedAt),
		FailureReason:  r.FailureReason,
		ReleaseVersion: r.ReleaseVersion,
		CommitMessage:  r.CommitMessage,
		Pipeline:       r.Pipeline,
	}
	for _, s := range r.Stages {
		out.Stages = append(out.Stages, &sourcev1.Stage{
			Name:         s.Name,
			Status:       stageStatusToProto(s.Status),
			StartTime:    prototime.Timestamp(s.StartedAt),
			EndTime:      prototime.Timestamp(s.EndedAt),
			Reason:       s.Reason,
			FailedStep:   s.FailedStep,
			ExitCode:     int32(s.ExitCode),
			LastLogLines: slices.Clone(s.LastLogLines),
			Detail:       s.Detail,
		})
	}
	return out
}

func commitToProto(c domain.Commit) *sourcev1.Commit {
	return &sourcev1.Commit{Sha: c.SHA, Message: c.Message, Author: c.Author, Time: prototime.Timestamp(c.Time)}
}

func triggerToProto(t domain.Trigger) sourcev1.Trigger {
	switch t {
	case domain.TriggerManual:
		return sourcev1.Trigger_TRIGGER_MANUAL
	case domain.TriggerPoll:
		return sourcev1.Trigger_TRIGGER_POLL
	case domain.TriggerWebhook:
		return sourcev1.Trigger_TRIGGER_WEBHOOK
	}
	return sourcev1.Trigger_TRIGGER_UNSPECIFIED
}

func runStatusToProto(s domain.RunStatus) sourcev1.RunStatus {
	switch s {
	case domain.RunQueued:
		return sourcev1.RunStatus_RUN_STATUS_QUEUED
	case domain.RunRunning:
		return sourcev1.RunStatus_RUN_STATUS_RUNNING
	case domain.RunSucceeded:
		return sourcev1.RunStatus_RUN_STATUS_SUCCEEDED
	case domain.RunFailed:
		return sourcev1.RunStatus_RUN_STATUS_FAILED
	case domain.RunCancelled:
		return sourcev1.RunStatus_RUN_STATUS_CANCELLED
	}
	return sourcev1.RunStatus_RUN_STATUS_UNSPECIFIED
}

func stageStatusToProto(s domain.StageStatus) sourcev1.StageStatus {
	switch s {
	case domain.StagePending:
		return sourcev1.StageStatus_STAGE_STATUS_PENDING
	case domain.StageRunning:
		return sourcev1.StageStatus_STAGE_STATUS_RUNNING
	case domain.StageSucceeded:
		return sourcev1.StageStatus_STAGE_STATUS_SUCCEEDED
	case domain.StageFailed:
		return sourcev1.StageStatus_STAGE_STATUS_FAILED
	case domain.StageSkipped:
		return sourcev1.StageStatus_STAGE_STATUS_SKIPPED
	}
	return sourcev1.StageStatus_STAGE_STATUS_UNSPECIFIED
}
