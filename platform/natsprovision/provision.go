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
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/natsconn"
	"github.com/sluicehq/sluice/platform/retry"
)

// MaxReplicas is the most replicas a JetStream stream may have.
const MaxReplicas = 5

// CheckReplicas refuses a replica count Options.Replicas cannot take:
// 0 (keep the declared count) to MaxReplicas.
func CheckReplicas(n int) error {
	if n < 0 || n > MaxReplicas {
		return fmt.Errorf("NATS replicas is %d; it must be 1 to %d (0 keeps the declared count)", n, MaxReplicas)
	}
	return nil
}

// Options tune the applied declarations for a deployment.
type Options struct {
	// Replicas, when > 0, overrides num_replicas of streams and object
	// stores (3 in a clustered deployment); the declared consumers have
	// num_replicas 0, so they follow their stream.
	Replicas int
	// WaitForStreams bounds the wait for another service's stream that one
	// of our consumers reads, and the retries while NATS is unreachable.
	// Zero waits until ctx ends: services start in any order, and a
	// service is not ready until its declarations are applied.
	WaitForStreams time.Duration
	// Log, when set, is told about each wait and retry.
	Log *slog.Logger
	// CallTimeout bounds each JetStream request (default 10s). A request
	// to a subject the NATS user may not publish to gets no answer: it
	// fails after CallTimeout with an error naming the subject, and is not
	// retried.
	CallTimeout time.Duration
}

// StreamOwner maps a stream file name to the service that owns it; the
// DEADLETTER and AUDIT streams are shared and applied by every service.
func StreamOwner(stream string) string {
	switch stream {
	case DeadLetterStream, "AUDIT":
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
	// Owner creates the store and writes to it.
	Owner string `json:"owner"`
	// Readers are the other services that read objects from it (their
	// NATS users get the rights to).
	Readers []string `json:"readers,omitempty"`
	// OwnerReads says that the owner reads its objects back too (release's
	// deploy state), which needs the readers' rights as well as its own.
	OwnerReads bool                        `json:"owner_reads,omitempty"`
	Config     jetstream.ObjectStoreConfig `json:"config"`
}

// KeyValueFile is the on-disk form of a key-value bucket declaration.
type KeyValueFile struct {
	// Owner creates the bucket and writes to it; "*": every service
	// applies it and writes only keys under its own name (<service>.>).
	Owner string `json:"owner"`
	// Readers are the other services that watch it; "*": all of them.
	Readers []string                 `json:"readers,omitempty"`
	Config  jetstream.KeyValueConfig `json:"config"`
}

// ReadBy reports whether service may read the bucket.
func (k KeyValueFile) ReadBy(service string) bool {
	return k.Owner == service || k.Owner == "*" || slices.Contains(k.Readers, service) || slices.Contains(k.Readers, "*")
}

// Declarations are the parsed files.
type Declarations struct {
	Streams      []jetstream.StreamConfig
	Consumers    map[string][]ConsumerFile // by owning service
	ObjectStores []ObjectStoreFile
	KeyValues    []KeyValueFile
}

// DeadLetterStream is the stream every service's dead letters go to,
// under sluice.deadletter.<service>.<consumer> (platform/events).
const DeadLetterStream = "DEADLETTER"

// OutboxDurable is no consumer's name: a service's outbox relay
// dead-letters the events NATS refuses under
// sluice.deadletter.<service>.outbox (platform/events), beside its
// consumers' dead letters, so no consumer may be named so.
const OutboxDurable = "outbox"

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
		if owner := StreamOwner(cfg.Name); owner != "*" && !slices.Contains(Services(), owner) {
			return d, fmt.Errorf("%s: stream %s belongs to no service (its name must be a service's, upper case)", name, cfg.Name)
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
		if c.Config.Durable == OutboxDurable {
			return d, fmt.Errorf("%s: the name %q is taken by the outbox's dead letters (sluice.deadletter.<service>.%s)", name, OutboxDurable, OutboxDurable)
		}
		owner := path.Base(path.Dir(name))
		if !slices.Contains(Services(), owner) {
			return d, fmt.Errorf("%s: %q is not a service (%s)", name, owner, strings.Join(Services(), ", "))
		}
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
		for _, r := range o.Readers {
			if r == o.Owner || !slices.Contains(Services(), r) {
				return d, fmt.Errorf("%s: reader %q is not another service (%s)", name, r, strings.Join(Services(), ", "))
			}
		}
		d.ObjectStores = append(d.ObjectStores, o)
	}
	keyValues, err := fs.Glob(fsys, "keyvalues/*.json")
	if err != nil {
		return d, err
	}
	sort.Strings(keyValues)
	for _, name := range keyValues {
		var k KeyValueFile
		if err := readJSON(fsys, name, &k); err != nil {
			return d, err
		}
		if k.Config.Bucket != strings.TrimSuffix(path.Base(name), ".json") {
			return d, fmt.Errorf("%s: bucket %q does not match the file name", name, k.Config.Bucket)
		}
		if k.Owner != "*" && !slices.Contains(Services(), k.Owner) {
			return d, fmt.Errorf("%s: owner %q is not a service or *", name, k.Owner)
		}
		for _, r := range k.Readers {
			if r != "*" && (r == k.Owner || !slices.Contains(Services(), r)) {
				return d, fmt.Errorf("%s: reader %q is not another service or *", name, r)
			}
		}
		d.KeyValues = append(d.KeyValues, k)
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
// dead-letter stream, its object stores and key-value buckets (and those
// every service applies) and its consumers. It waits (up to
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
		err := apply(ctx, js, opts, "apply stream "+cfg.Name, func(ctx context.Context) error {
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
		err := apply(ctx, js, opts, "apply object store "+cfg.Bucket, func(ctx context.Context) error {
			_, err := js.CreateOrUpdateObjectStore(ctx, cfg)
			return err
		})
		if err != nil {
			return err
		}
	}
	for _, k := range d.KeyValues {
		if k.Owner != service && k.Owner != "*" {
			continue
		}
		cfg := k.Config
		if opts.Replicas > 0 {
			cfg.Replicas = opts.Replicas
		}
		err := apply(ctx, js, opts, "apply key-value bucket "+cfg.Bucket, func(ctx context.Context) error {
			_, err := js.CreateOrUpdateKeyValue(ctx, cfg)
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
		err := apply(ctx, js, opts, what, func(ctx context.Context) error {
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

// apply runs op until it succeeds, ctx ends or Options.WaitForStreams
// passes: the stream it needs may belong to a service that starts later,
// and NATS itself may not be up yet. A subject the NATS user may not use
// ends it at once with an error naming the subject.
func apply(ctx context.Context, js jetstream.JetStream, opts Options, what string, op func(context.Context) error) error {
	if opts.WaitForStreams > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.WaitForStreams)
		defer cancel()
	}
	callTimeout := opts.CallTimeout
	if callTimeout <= 0 {
		callTimeout = 10 * time.Second
	}
	nc := js.Conn()
	wait := retry.Backoff{Initial: 250 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.2}
	err := retry.Do(ctx, wait, func(ctx context.Context) error {
		before := nc.LastError()
		callCtx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		err := op(callCtx)
		if err == nil {
			return nil
		}
		if refused := natsconn.CheckRefused(nc, before); refused != nil {
			return retry.Permanent(refused)
		}
		return err
	}, retry.OnRetry(func(try int, err error, _ time.Duration) {
		if opts.Log != nil && (try == 1 || try%20 == 0) {
			opts.Log.Warn("nats declarations: waiting", slog.String("for", what), slog.Int("attempt", try), slog.Any("error", err))
		}
	}))
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
