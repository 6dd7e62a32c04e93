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
	// WaitForStreams is how long to wait for another service's stream that
	// one of our consumers reads (default 1 minute).
	WaitForStreams time.Duration
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
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("apply stream %s: %w", cfg.Name, err)
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
		if _, err := js.CreateOrUpdateObjectStore(ctx, cfg); err != nil {
			return fmt.Errorf("apply object store %s: %w", cfg.Bucket, err)
		}
	}
	return nil
}

func (d Declarations) applyConsumers(ctx context.Context, js jetstream.JetStream, service string, opts Options) error {
	wait := opts.WaitForStreams
	if wait == 0 {
		wait = time.Minute
	}
	for _, c := range d.Consumers[service] {
		if err := waitForStream(ctx, js, c.Stream, wait); err != nil {
			return fmt.Errorf("apply consumer %s: %w", c.Config.Durable, err)
		}
		if _, err := js.CreateOrUpdateConsumer(ctx, c.Stream, c.Config); err != nil {
			return fmt.Errorf("apply consumer %s on %s: %w", c.Config.Durable, c.Stream, err)
		}
	}
	return nil
}

func waitForStream(ctx context.Context, js jetstream.JetStream, name string, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		_, err := js.Stream(ctx, name)
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stream %s does not exist (its service has not started?): %w", name, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}
