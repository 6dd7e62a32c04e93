package servicekit

import (
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/deploy"
	"github.com/sluicehq/sluice/platform/natsprovision"
)

// A processed-events retention that does not outlast the streams a
// service reads is refused at start: a replayed event whose record was
// pruned would be handled twice.
func TestRetentionMustOutlastTheStreamsRead(t *testing.T) {
	t.Parallel()
	decl, err := natsprovision.Load(deploy.NATS())
	if err != nil {
		t.Fatal(err)
	}
	for _, service := range natsprovision.Services() {
		err := checkRetention(service, decl, 7*24*time.Hour)
		if len(decl.Consumers[service]) > 0 && (err == nil || !strings.Contains(err.Error(), "processed-events-retention is 168h0m0s; it must be longer than the max_age of the stream")) {
			t.Errorf("%s: a week's retention: %v; want it refused", service, err)
		}
		if err := checkRetention(service, decl, DefaultProcessedEventsRetention); err != nil {
			t.Errorf("%s: the default retention refused: %v", service, err)
		}
	}
}
