package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/validate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/sluicehq/sluice/proto/gen/sluice/audit/v1"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/build/v1/buildv1connect"
	notifyv1 "github.com/sluicehq/sluice/proto/gen/sluice/notify/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/notify/v1/notifyv1connect"
	releasev1 "github.com/sluicehq/sluice/proto/gen/sluice/release/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/release/v1/releasev1connect"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/test/v1/testv1connect"
)

// fakePlatform stands in for the five services over real Connect HTTP, with
// the same request validation the services have. Each fake serves what a
// test puts in it and records what it was asked.
type fakePlatform struct {
	url     string
	source  *fakeSource
	build   *fakeBuild
	test    *fakeTest
	release *fakeRelease
	notify  *fakeNotify
	audit   *fakeAudit
}

// startFake serves a fake platform until the test ends. withDetails false
// validates without error details, as a server that elides them does.
func startFake(t *testing.T, withDetails bool) *fakePlatform {
	t.Helper()
	opts := []validate.Option{}
	if !withDetails {
		opts = append(opts, validate.WithoutErrorDetails())
	}
	h := connect.WithInterceptors(validate.NewInterceptor(opts...))
	f := &fakePlatform{
		source:  &fakeSource{repos: map[string]*sourcev1.Repository{}, runs: map[string]*sourcev1.Run{}},
		build:   &fakeBuild{logs: map[string][]*buildv1.LogLine{}},
		test:    &fakeTest{logs: map[string][]*testv1.LogLine{}},
		release: &fakeRelease{logs: map[string][]*releasev1.LogLine{}},
		notify:  &fakeNotify{},
		audit:   &fakeAudit{},
	}
	mux := http.NewServeMux()
	mux.Handle(sourcev1connect.NewSourceServiceHandler(f.source, h))
	mux.Handle(buildv1connect.NewBuildServiceHandler(f.build, h))
	mux.Handle(testv1connect.NewTestServiceHandler(f.test, h))
	mux.Handle(releasev1connect.NewReleaseServiceHandler(f.release, h))
	mux.Handle(notifyv1connect.NewNotifyServiceHandler(f.notify, h))
	mux.Handle(sourcev1connect.NewAuditServiceHandler(f.audit, h))
	mux.Handle(sourcev1connect.NewSecretServiceHandler(sourcev1connect.UnimplementedSecretServiceHandler{}, h))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

// env points the CLI at the fake.
func (f *fakePlatform) env() map[string]string { return map[string]string{"SLUICE_SERVER": f.url} }

type fakeSource struct {
	sourcev1connect.UnimplementedSourceServiceHandler
	mu    sync.Mutex
	repos map[string]*sourcev1.Repository
	runs  map[string]*sourcev1.Run
	added []*sourcev1.CreateRepositoryRequest
}

func (f *fakeSource) addRepo(r *sourcev1.Repository) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.repos[r.GetName()] = r
	f.repos[r.GetId()] = r
}

func (f *fakeSource) addRun(r *sourcev1.Run) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runs[r.GetId()] = r
}

func (f *fakeSource) CreateRepository(_ context.Context, req *sourcev1.CreateRepositoryRequest) (*sourcev1.CreateRepositoryResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.added = append(f.added, req)
	return &sourcev1.CreateRepositoryResponse{Created: true, Repository: &sourcev1.Repository{Name: req.GetName(), Url: req.GetUrl(), Branch: "main", Forge: req.GetForge()}}, nil
}

// ListRepositories pages one repository at a time, in name order, so a
// caller that does not follow next_page_token sees only the first.
func (f *fakeSource) ListRepositories(_ context.Context, req *sourcev1.ListRepositoriesRequest) (*sourcev1.ListRepositoriesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	for key, r := range f.repos {
		if key == r.GetName() && key > req.GetPageToken() {
			names = append(names, key)
		}
	}
	slices.Sort(names)
	res := &sourcev1.ListRepositoriesResponse{}
	if len(names) > 0 {
		res.Repositories = append(res.Repositories, f.repos[names[0]])
	}
	if len(names) > 1 {
		res.NextPageToken = names[0]
	}
	return res, nil
}

func (f *fakeSource) GetRepository(_ context.Context, req *sourcev1.GetRepositoryRequest) (*sourcev1.GetRepositoryResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.repos[req.GetRepository()]
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("repository %q: not found", req.GetRepository()))
	}
	return &sourcev1.GetRepositoryResponse{Repository: r}, nil
}

func (f *fakeSource) ListRuns(_ context.Context, req *sourcev1.ListRunsRequest) (*sourcev1.ListRunsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.repos[req.GetRepository()]; !ok && req.GetRepository() != "" {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("repository %q: not found", req.GetRepository()))
	}
	res := &sourcev1.ListRunsResponse{}
	for _, r := range f.runs {
		if req.GetRepository() == "" || req.GetRepository() == r.GetRepository() {
			res.Runs = append(res.Runs, r)
		}
	}
	return res, nil
}

func (f *fakeSource) GetRun(_ context.Context, req *sourcev1.GetRunRequest) (*sourcev1.GetRunResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.runs[req.GetRunId()]
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("run %q: not found", req.GetRunId()))
	}
	return &sourcev1.GetRunResponse{Run: r}, nil
}

// WatchRun sends the run as it is now and ends.
func (f *fakeSource) WatchRun(_ context.Context, req *sourcev1.WatchRunRequest, stream *connect.ServerStream[sourcev1.WatchRunResponse]) error {
	f.mu.Lock()
	r, ok := f.runs[req.GetRunId()]
	f.mu.Unlock()
	if !ok {
		return connect.NewError(connect.CodeNotFound, fmt.Errorf("run %q: not found", req.GetRunId()))
	}
	return stream.Send(&sourcev1.WatchRunResponse{Run: r})
}

type fakeBuild struct {
	buildv1connect.UnimplementedBuildServiceHandler
	mu     sync.Mutex
	logs   map[string][]*buildv1.LogLine
	builds map[string]*buildv1.Build // by run id
}

func (f *fakeBuild) GetBuild(_ context.Context, req *buildv1.GetBuildRequest) (*buildv1.GetBuildResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.builds[req.GetRunId()]
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("build: not found"))
	}
	return &buildv1.GetBuildResponse{Build: b}, nil
}

func (f *fakeBuild) GetLogs(_ context.Context, req *buildv1.GetLogsRequest) (*buildv1.GetLogsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	lines, ok := f.logs[req.GetRunId()]
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("build: not found"))
	}
	res := &buildv1.GetLogsResponse{Complete: true}
	for _, l := range lines {
		if l.GetSeq() >= req.GetFromSeq() && (req.GetStep() == "" || req.GetStep() == l.GetStep()) {
			res.Lines = append(res.Lines, l)
		}
	}
	return res, nil
}

func (f *fakeBuild) TailLogs(ctx context.Context, req *buildv1.TailLogsRequest, stream *connect.ServerStream[buildv1.TailLogsResponse]) error {
	res, err := f.GetLogs(ctx, &buildv1.GetLogsRequest{RunId: req.GetRunId(), Step: req.GetStep(), FromSeq: req.GetFromSeq()})
	if err != nil {
		return err
	}
	return stream.Send(&buildv1.TailLogsResponse{Lines: res.GetLines()})
}

type fakeTest struct {
	testv1connect.UnimplementedTestServiceHandler
	mu   sync.Mutex
	logs map[string][]*testv1.LogLine
	runs map[string]*testv1.TestRun // by run id
}

func (f *fakeTest) GetTestRun(_ context.Context, req *testv1.GetTestRunRequest) (*testv1.GetTestRunResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.runs[req.GetRunId()]
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("test run: not found"))
	}
	return &testv1.GetTestRunResponse{TestRun: r}, nil
}

func (f *fakeTest) GetLogs(_ context.Context, req *testv1.GetLogsRequest) (*testv1.GetLogsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	lines, ok := f.logs[req.GetRunId()]
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("test run: not found"))
	}
	res := &testv1.GetLogsResponse{Complete: true}
	for _, l := range lines {
		if l.GetSeq() >= req.GetFromSeq() && (req.GetStep() == "" || req.GetStep() == l.GetStep()) {
			res.Lines = append(res.Lines, l)
		}
	}
	return res, nil
}

type fakeRelease struct {
	releasev1connect.UnimplementedReleaseServiceHandler
	mu          sync.Mutex
	asked       []string // the repositories asked about
	rollbacks   []*releasev1.RollbackRequest
	rollbackErr error
	// rollbackFails, when set, is why the redeployed release did not verify.
	rollbackFails string
	releases      []*releasev1.Release
	// logs are the release logs by run id.
	logs map[string][]*releasev1.LogLine
}

// releaseStepMatches is the release service's step filter: a kind
// ("deploy") selects it in every environment ("deploy:staging").
func releaseStepMatches(filter, step string) bool {
	kind, _, _ := strings.Cut(step, ":")
	return filter == "" || filter == step || filter == kind
}

func (f *fakeRelease) GetLogs(_ context.Context, req *releasev1.GetLogsRequest) (*releasev1.GetLogsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	lines, ok := f.logs[req.GetRunId()]
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("run %q has no release stage: not found", req.GetRunId()))
	}
	res := &releasev1.GetLogsResponse{Complete: true, Steps: []string{"deploy", "verify", "rollback"}}
	for _, l := range lines {
		if !slices.Contains(res.Steps, l.GetStep()) {
			res.Steps = append(res.Steps, l.GetStep())
		}
		if l.GetSeq() >= req.GetFromSeq() && releaseStepMatches(req.GetStep(), l.GetStep()) {
			res.Lines = append(res.Lines, l)
		}
	}
	return res, nil
}

func (f *fakeRelease) TailLogs(ctx context.Context, req *releasev1.TailLogsRequest, stream *connect.ServerStream[releasev1.TailLogsResponse]) error {
	res, err := f.GetLogs(ctx, &releasev1.GetLogsRequest{RunId: req.GetRunId(), Step: req.GetStep(), FromSeq: req.GetFromSeq()})
	if err != nil {
		return err
	}
	return stream.Send(&releasev1.TailLogsResponse{Lines: res.GetLines()})
}

func (f *fakeRelease) ListReleases(_ context.Context, req *releasev1.ListReleasesRequest) (*releasev1.ListReleasesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, req.GetRepository())
	return &releasev1.ListReleasesResponse{Releases: f.releases}, nil
}

func (f *fakeRelease) ListDeployments(_ context.Context, req *releasev1.ListDeploymentsRequest) (*releasev1.ListDeploymentsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, req.GetRepository())
	return &releasev1.ListDeploymentsResponse{}, nil
}

func (f *fakeRelease) Rollback(_ context.Context, req *releasev1.RollbackRequest) (*releasev1.RollbackResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rollbacks = append(f.rollbacks, req)
	if f.rollbackErr != nil {
		return nil, f.rollbackErr
	}
	d := &releasev1.Deployment{Environment: req.GetEnvironment(), Version: req.GetToVersion(), Status: releasev1.DeploymentStatus_DEPLOYMENT_STATUS_VERIFIED}
	if f.rollbackFails != "" {
		d.Status, d.Reason = releasev1.DeploymentStatus_DEPLOYMENT_STATUS_FAILED, f.rollbackFails
		d.Id, d.FailedStep, d.LastLogLines = "rb-1", "rollback:"+req.GetEnvironment(), []string{"health: down\x1b[2J"}
	}
	return &releasev1.RollbackResponse{Deployment: d}, nil
}

func (f *fakeRelease) calls() ([]string, []*releasev1.RollbackRequest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string{}, f.asked...), append([]*releasev1.RollbackRequest{}, f.rollbacks...)
}

type fakeNotify struct {
	notifyv1connect.UnimplementedNotifyServiceHandler
	mu          sync.Mutex
	deadLetters []*notifyv1.DeadLetter
	requests    []*notifyv1.ListDeadLettersRequest
}

// ListDeadLetters serves deadLetters, page_size at a time (its page token
// is the index of the page's first one), bodies only when asked, and
// records the requests.
func (f *fakeNotify) ListDeadLetters(_ context.Context, req *notifyv1.ListDeadLettersRequest) (*notifyv1.ListDeadLettersResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, proto.CloneOf(req))
	page, next := fakePage(f.deadLetters, req.GetPageToken(), req.GetPageSize())
	res := &notifyv1.ListDeadLettersResponse{NextPageToken: next}
	for _, d := range page {
		d = proto.CloneOf(d)
		if !req.GetIncludeBody() {
			d.Body = ""
		}
		res.DeadLetters = append(res.DeadLetters, d)
	}
	return res, nil
}

// asked is the ListDeadLetters requests the fake was sent, in order.
func (f *fakeNotify) asked() []*notifyv1.ListDeadLettersRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

func (f *fakeNotify) CreateSubscription(_ context.Context, req *notifyv1.CreateSubscriptionRequest) (*notifyv1.CreateSubscriptionResponse, error) {
	return &notifyv1.CreateSubscriptionResponse{Subscription: &notifyv1.Subscription{Id: "sub-1", Url: req.GetUrl()}}, nil
}

func (f *fakeNotify) WatchEvents(context.Context, *notifyv1.WatchEventsRequest, *connect.ServerStream[notifyv1.WatchEventsResponse]) error {
	return nil
}

// helloRun is a finished run of repository hello with a build step and a
// test step.
func helloRun(id string, status sourcev1.RunStatus) *sourcev1.Run {
	now := time.Now()
	return &sourcev1.Run{
		Id: id, Repository: "hello", Commit: "0c01456670710cc2bc28ab7d05b5146f7dcfd7e0", Status: status,
		CreateTime: timestamppb.New(now.Add(-time.Minute)), EndTime: timestamppb.New(now), ReleaseVersion: "v0.1.0",
		CommitMessage: "feat: hello",
		Pipeline: &sourcev1.Pipeline{
			Build: &sourcev1.BuildSpec{Steps: []*sourcev1.Step{{Name: "compile", Run: "go build"}}},
			Test:  &sourcev1.TestSpec{Steps: []*sourcev1.Step{{Name: "unit", Run: "go test"}}},
		},
	}
}

// fakeAudit serves entries, newest first, page_size at a time (its page
// token is the index of the page's first entry), and records the requests.
type fakeAudit struct {
	sourcev1connect.UnimplementedAuditServiceHandler
	mu       sync.Mutex
	entries  []*auditv1.AuditEntry
	requests []*sourcev1.ListAuditEntriesRequest
}

func (f *fakeAudit) ListAuditEntries(_ context.Context, req *sourcev1.ListAuditEntriesRequest) (*sourcev1.ListAuditEntriesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, proto.CloneOf(req))
	page, next := fakePage(f.entries, req.GetPageToken(), req.GetPageSize())
	return &sourcev1.ListAuditEntriesResponse{Entries: page, NextPageToken: next}, nil
}

// fakePage is a page of items as the fakes page them: size at a time (0
// means 50), the token the index of the page's first item.
func fakePage[T any](items []T, token string, size int32) ([]T, string) {
	from := 0
	if token != "" {
		from, _ = strconv.Atoi(token)
	}
	if size == 0 {
		size = 50
	}
	to := min(from+int(size), len(items))
	if to < len(items) {
		return items[from:to], strconv.Itoa(to)
	}
	return items[from:to], ""
}

// asked is the requests the fake was sent, in order.
func (f *fakeAudit) asked() []*sourcev1.ListAuditEntriesRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}
