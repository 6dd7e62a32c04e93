// Package natsprovision applies the JetStream declarations under
// deploy/nats (streams, consumers, object stores) idempotently. Each service
// applies the streams and object stores it owns and the consumers it owns;
// nothing is created implicitly by a client.
package natsprovision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Options tune the applied declarations for a deployment.
type Options struct {
	// Replicas, when > 0, overrides num_replicas of streams and object
	// stores (3 in a clustered deployment).
	Replicas int
	// WaitForStreams bounds the wait for another service's stream that one
	// of our consumers reads, and the retries while NATS is unreachable.
	// Zero waits until ctx ends: services start in any order, and a
	// service is not ready until its declarations are applied.
	WaitForStreams time.Duration
	// Log, when set, is told about each wait and retry.
	Log *slog.Logger
}

// StreamOwner maps a stream file name to the service that owns it; the
// DEADLETTER stream is shared and applied by every service.
func StreamOwner(stream string) string {
	switch stream {
	case "DEADLETTER":
		return "*"
	default:
		return strings.ToLower(stream)
	}
}

// ConsumerFile is the on-disk form of a consumer declaration.
type ConsumerFile struct {
	Stream string                   `json:"stream"`
	Config jetstream.ConsumerConfig `json:"config"`
}

// ObjectStoreFile is the on-disk form of an object store declaration.
type ObjectStoreFile struct {
	Owner  string                      `json:"owner"`
	Config jetstream.ObjectStoreConfig `json:"config"`
}

// Declarations are the parsed files.
type Declarations struct {
	Streams      []jetstream.StreamConfig
	Consumers    map[string][]ConsumerFile // by owning service
	ObjectStores []ObjectStoreFile
}

// Load reads and checks every declaration in fsys.
func Load(fsys fs.FS) (Declarations, error) {
	d := Declarations{Consumers: map[string][]ConsumerFile{}}
	streams, err := fs.Glob(fsys, "streams/*.json")
	if err != nil {
		return d, err
	}
	sort.Strings(streams)
	for _, name := range streams {
		var cfg jetstream.StreamConfig
		if err := readJSON(fsys, name, &cfg); err != nil {
			return d, err
		}
		if cfg.Name != strings.TrimSuffix(path.Base(name), ".json") {
			return d, fmt.Errorf("%s: name %q does not match the file name", name, cfg.Name)
		}
		d.Streams = append(d.Streams, cfg)
	}
	consumers, err := fs.Glob(fsys, "consumers/*/*.json")
	if err != nil {
		return d, err
	}
	sort.Strings(consumers)
	for _, name := range consumers {
		var c ConsumerFile
		if err := readJSON(fsys, name, &c); err != nil {
			return d, err
		}
		if c.Config.Durable != strings.TrimSuffix(path.Base(name), ".json") {
			return d, fmt.Errorf("%s: durable_name %q does not match the file name", name, c.Config.Durable)
		}
		if c.Stream == "" {
			return d, fmt.Errorf("%s: stream is empty", name)
		}
		owner := path.Base(path.Dir(name))
		d.Consumers[owner] = append(d.Consumers[owner], c)
	}
	stores, err := fs.Glob(fsys, "objectstores/*.json")
	if err != nil {
		return d, err
	}
	sort.Strings(stores)
	for _, name := range stores {
		var o ObjectStoreFile
		if err := readJSON(fsys, name, &o); err != nil {
			return d, err
		}
		if o.Owner == "" || o.Config.Bucket == "" {
			return d, fmt.Errorf("%s: owner and config.bucket are required", name)
		}
		d.ObjectStores = append(d.ObjectStores, o)
	}
	return d, nil
}

func readJSON(fsys fs.FS, name string, v any) error {
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("deploy/nats/%s: %w", name, err)
	}
	return nil
}

// Apply creates or updates what service owns: its streams, the shared
// dead-letter stream, its object stores and its consumers. It waits (up to
// Options.WaitForStreams) for streams of other services its consumers read.
func Apply(ctx context.Context, js jetstream.JetStream, fsys fs.FS, service string, opts Options) error {
	d, err := Load(fsys)
	if err != nil {
		return err
	}
	if err := d.applyStores(ctx, js, service, opts); err != nil {
		return err
	}
	return d.applyConsumers(ctx, js, service, opts)
}

// ApplyAll applies every service's declarations (used by the all-in-one
// process and by tests): all streams first, then all consumers.
func ApplyAll(ctx context.Context, js jetstream.JetStream, fsys fs.FS, opts Options) error {
	d, err := Load(fsys)
	if err != nil {
		return err
	}
	for _, s := range Services() {
		if err := d.applyStores(ctx, js, s, opts); err != nil {
			return err
		}
	}
	for _, s := range Services() {
		if err := d.applyConsumers(ctx, js, s, opts); err != nil {
			return err
		}
	}
	return nil
}

// Services are the five service names, in pipeline order.
func Services() []string { return []string{"source", "build", "test", "release", "notify"} }

func (d Declarations) applyStores(ctx context.Context, js jetstream.JetStream, service string, opts Options) error {
	for _, cfg := range d.Streams {
		owner := StreamOwner(cfg.Name)
		if owner != service && owner != "*" {
			continue
		}
		if opts.Replicas > 0 {
			cfg.Replicas = opts.Replicas
		}
		err := retry(ctx, opts, "apply stream "+cfg.Name, func(ctx context.Context) error {
			_, err := js.CreateOrUpdateStream(ctx, cfg)
			return err
		})
		if err != nil {
			return err
		}
	}
	for _, o := range d.ObjectStores {
		if o.Owner != service {
			continue
		}
		cfg := o.Config
		if opts.Replicas > 0 {
			cfg.Replicas = opts.Replicas
		}
		err := retry(ctx, opts, "apply object store "+cfg.Bucket, func(ctx context.Context) error {
			_, err := js.CreateOrUpdateObjectStore(ctx, cfg)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (d Declarations) applyConsumers(ctx context.Context, js jetstream.JetStream, service string, opts Options) error {
	for _, c := range d.Consumers[service] {
		what := fmt.Sprintf("apply consumer %s on %s", c.Config.Durable, c.Stream)
		err := retry(ctx, opts, what, func(ctx context.Context) error {
			if _, err := js.Stream(ctx, c.Stream); err != nil {
				if errors.Is(err, jetstream.ErrStreamNotFound) {
					return fmt.Errorf("stream %s does not exist yet (its service has not started?): %w", c.Stream, err)
				}
				return err
			}
			_, err := js.CreateOrUpdateConsumer(ctx, c.Stream, c.Config)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// retry runs op until it succeeds, ctx ends or Options.WaitForStreams
// passes: the stream it needs may belong to a service that starts later,
// and NATS itself may not be up yet.
func retry(ctx context.Context, opts Options, what string, op func(context.Context) error) error {
	if opts.WaitForStreams > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.WaitForStreams)
		defer cancel()
	}
	delay := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := op(callCtx)
		cancel()
		if err == nil {
			return nil
		}
		if opts.Log != nil && (attempt == 1 || attempt%20 == 0) {
			opts.Log.Warn("nats declarations: waiting", slog.String("for", what), slog.Int("attempt", attempt), slog.Any("error", err))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (gave up: %w)", what, err, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}
