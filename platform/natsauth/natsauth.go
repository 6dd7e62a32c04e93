// Package natsauth is NATS security as code: it derives a NATS user per
// service, and what each one may publish and subscribe to, from the
// JetStream declarations under deploy/nats (which service owns which
// stream, consumer and object store, and who reads the object stores) and
// a small table of what the declarations cannot say. It renders them as
// the server's auth config, deploy/nats/auth.conf, which `make generate`
// writes and a test keeps in step.
//
// Each service user may publish its own events (sluice.<service>.>), its
// own dead letters (sluice.deadletter.<service>.>), its own audit entries
// (sluice.audit.<service>), and exactly the
// JetStream API, ack and object store subjects its code uses; it may
// subscribe to its own reply subjects only (_INBOX_<service>.>, see
// InboxPrefix). The admin user may do anything in the account.
package natsauth

import (
	"bytes"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/natsprovision"
)

// Account is the NATS account every Sluice user is in, with JetStream.
const Account = "SLUICE"

// Admin is the user with every right in the account, for operators and
// tools (the nats CLI, backups).
const Admin = "admin"

// InboxPrefix is the prefix of the reply subjects of service's
// connections (nats.CustomInboxPrefix): its user may subscribe to
// InboxPrefix(service)+".>" and nothing else, so no service reads
// another's replies.
func InboxPrefix(service string) string { return "_INBOX_" + service }

// PasswordEnv is the variable of the server's environment that holds
// user's password: NATS_<USER>_PASSWORD.
func PasswordEnv(user string) string {
	return "NATS_" + strings.ToUpper(strings.ReplaceAll(user, "-", "_")) + "_PASSWORD"
}

// Rule is one subject a user may use, and why.
type Rule struct {
	Subject string
	Why     string
}

// User is a NATS user and its permissions.
type User struct {
	Name string
	// All is true for the admin: no permissions block, every subject.
	All bool
	// Publish and Subscribe are the allowed subjects, in a stable order.
	Publish, Subscribe []Rule
}

// extra is what a service's code does that no declaration says.
type extra struct {
	// watchesEvents: it reads every service's event stream with ordered
	// (ephemeral, library-named) consumers, and deletes them when done.
	watchesEvents bool
	// readsDeadLetters: it reads the DEADLETTER stream message by message
	// (direct get), to list the dead letters with their bodies, and with
	// headers-only ordered consumers (library-named), which it deletes when
	// done, to list them without.
	readsDeadLetters bool
}

// extras is the explicit part of the table. Keep it small: whatever can
// be said in a file under deploy/nats belongs there.
var extras = map[string]extra{
	// services/notify Service.Watch: the live event stream (sluice events);
	// Service.ListDeadLetters: sluice deadletters.
	"notify": {watchesEvents: true, readsDeadLetters: true},
}

// Users derives the admin and one user per service from the
// declarations.
func Users(d natsprovision.Declarations) ([]User, error) {
	users := []User{{Name: Admin, All: true}}
	for svc := range extras {
		if !slices.Contains(natsprovision.Services(), svc) {
			return nil, fmt.Errorf("natsauth: extras name %q, which is not a service", svc)
		}
	}
	for _, svc := range natsprovision.Services() {
		u, err := serviceUser(d, svc)
		if err != nil {
			return nil, err
		}
		users = append(users, u)
	}
	return users, nil
}

// rules collects rules without duplicates, keeping the first reason.
type rules struct{ list []Rule }

func (r *rules) add(why string, subjects ...string) {
	for _, s := range subjects {
		if !slices.ContainsFunc(r.list, func(x Rule) bool { return x.Subject == s }) {
			r.list = append(r.list, Rule{Subject: s, Why: why})
		}
	}
}

const api = "$JS.API."

func serviceUser(d natsprovision.Declarations, svc string) (User, error) {
	var pub rules
	pub.add("its events", "sluice."+svc+".>")
	pub.add("its dead letters", "sluice.deadletter."+svc+".>")
	pub.add("its audit entries", "sluice.audit."+svc)

	for _, s := range d.Streams {
		owner := natsprovision.StreamOwner(s.Name)
		if owner != svc && owner != "*" {
			continue
		}
		why := "stream " + s.Name + ": create or update it, read its state"
		if owner == "*" {
			why = "stream " + s.Name + " (every service applies it): create or update it, read its state"
		}
		pub.add(why, api+"STREAM.UPDATE."+s.Name, api+"STREAM.CREATE."+s.Name, api+"STREAM.INFO."+s.Name)
	}

	for _, c := range d.Consumers[svc] {
		if !slices.ContainsFunc(d.Streams, func(s jetstream.StreamConfig) bool { return s.Name == c.Stream }) {
			return User{}, fmt.Errorf("natsauth: consumer %s/%s reads stream %s, which is not declared", svc, c.Config.Durable, c.Stream)
		}
		name := consumerName(c.Config)
		why := "consumer " + c.Stream + "/" + name + ": wait for its stream, create or update it, pull, ack"
		pub.add(why,
			api+"STREAM.INFO."+c.Stream,
			consumerCreateSubject(c.Stream, c.Config),
			api+"CONSUMER.INFO."+c.Stream+"."+name,
			api+"CONSUMER.MSG.NEXT."+c.Stream+"."+name,
			"$JS.ACK."+c.Stream+"."+name+".>",
		)
	}

	for _, o := range d.ObjectStores {
		stream := "OBJ_" + o.Config.Bucket
		if o.Owner == svc {
			why := "object store " + o.Config.Bucket + " (its own): create or update it, put objects (replacing one purges its old chunks)"
			pub.add(why,
				api+"STREAM.UPDATE."+stream, api+"STREAM.CREATE."+stream, api+"STREAM.INFO."+stream,
				"$O."+o.Config.Bucket+".>",
				api+"DIRECT.GET."+stream+".>",
				api+"STREAM.PURGE."+stream,
			)
		}
		if slices.Contains(o.Readers, svc) || (o.Owner == svc && o.OwnerReads) {
			why := "object store " + o.Config.Bucket + " (a reader): open it, get objects with an ordered consumer and flow control"
			if o.Owner == svc {
				why = "object store " + o.Config.Bucket + " (its own, read back): get objects with an ordered consumer and flow control"
			}
			pub.add(why,
				api+"STREAM.INFO."+stream,
				api+"DIRECT.GET."+stream+".>",
				api+"CONSUMER.CREATE."+stream+".>",
				api+"CONSUMER.DELETE."+stream+".*",
				"$JS.FC."+stream+".>",
			)
		}
	}

	for _, k := range d.KeyValues {
		stream := "KV_" + k.Config.Bucket
		switch k.Owner {
		case svc:
			pub.add("key-value bucket "+k.Config.Bucket+" (its own): create or update it (nats.go reads the account's info first), put and delete keys",
				api+"INFO", api+"STREAM.UPDATE."+stream, api+"STREAM.CREATE."+stream, api+"STREAM.INFO."+stream,
				"$KV."+k.Config.Bucket+".>",
			)
		case "*":
			pub.add("key-value bucket "+k.Config.Bucket+" (every service applies it): create or update it (nats.go reads the account's info first), put and delete its own keys",
				api+"INFO", api+"STREAM.UPDATE."+stream, api+"STREAM.CREATE."+stream, api+"STREAM.INFO."+stream,
				"$KV."+k.Config.Bucket+"."+svc+".>",
			)
		}
		if k.ReadBy(svc) {
			pub.add("key-value bucket "+k.Config.Bucket+" (a reader): open it, watch it with an ordered consumer and flow control",
				api+"STREAM.INFO."+stream,
				api+"CONSUMER.CREATE."+stream,
				api+"CONSUMER.CREATE."+stream+".>",
				api+"CONSUMER.DELETE."+stream+".*",
				"$JS.FC."+stream+".>",
			)
		}
	}

	if extras[svc].watchesEvents {
		for _, s := range d.Streams {
			owner := natsprovision.StreamOwner(s.Name)
			if owner == "*" {
				continue
			}
			why := "watch " + s.Name + " live with ordered consumers (any name: NATS has no partial wildcards)"
			pub.add(why,
				api+"CONSUMER.CREATE."+s.Name+".*.>",
				api+"CONSUMER.MSG.NEXT."+s.Name+".*",
				api+"CONSUMER.DELETE."+s.Name+".*",
			)
		}
	}

	if extras[svc].readsDeadLetters {
		dl := natsprovision.DeadLetterStream
		pub.add("list the dead letters: read stream DEADLETTER message by message (direct get), or their headers only with ordered consumers (any name)",
			api+"STREAM.INFO."+dl, api+"DIRECT.GET."+dl,
			api+"CONSUMER.CREATE."+dl+".*.>", api+"CONSUMER.MSG.NEXT."+dl+".*", api+"CONSUMER.DELETE."+dl+".*")
	}

	var sub rules
	sub.add("its replies (nats.CustomInboxPrefix)", InboxPrefix(svc)+".>")
	return User{Name: svc, Publish: pub.list, Subscribe: sub.list}, nil
}

// consumerName is the name nats.go gives a declared consumer.
func consumerName(cfg jetstream.ConsumerConfig) string {
	if cfg.Name != "" {
		return cfg.Name
	}
	return cfg.Durable
}

// consumerCreateSubject is the subject jetstream.CreateOrUpdateConsumer
// publishes to (nats.go v1.55.0, jetstream/consumer.go upsertConsumer):
// the filter is part of the subject only when it is the one FilterSubject.
func consumerCreateSubject(stream string, cfg jetstream.ConsumerConfig) string {
	if cfg.FilterSubject != "" && len(cfg.FilterSubjects) == 0 {
		return api + "CONSUMER.CREATE." + stream + "." + consumerName(cfg) + "." + cfg.FilterSubject
	}
	return api + "CONSUMER.CREATE." + stream + "." + consumerName(cfg)
}

// Header is the first lines of the generated file.
const Header = `# NATS users and permissions of Sluice: one user per service, and admin.
# Code generated by platform/natsauth (make generate) from deploy/nats; DO NOT EDIT.
# Include it in the server config (include ./auth.conf) and set every
# password variable it names in the server's environment.
`

// Render returns the server's auth config for users: an accounts block
// with the one account, for a server config to include. Passwords are
// references to the server's environment (PasswordEnv).
func Render(users []User) []byte {
	var b bytes.Buffer
	b.WriteString(Header)
	b.WriteString("accounts {\n")
	fmt.Fprintf(&b, "  %s {\n", Account)
	b.WriteString("    jetstream: enabled\n")
	b.WriteString("    users: [\n")
	for _, u := range users {
		if u.All {
			fmt.Fprintf(&b, "      { user: %s, password: $%s }\n", u.Name, PasswordEnv(u.Name))
			continue
		}
		b.WriteString("      {\n")
		fmt.Fprintf(&b, "        user: %s\n", u.Name)
		fmt.Fprintf(&b, "        password: $%s\n", PasswordEnv(u.Name))
		b.WriteString("        permissions: {\n")
		writeAllow(&b, "publish", u.Publish)
		writeAllow(&b, "subscribe", u.Subscribe)
		b.WriteString("        }\n")
		b.WriteString("      }\n")
	}
	b.WriteString("    ]\n")
	b.WriteString("  }\n")
	b.WriteString("}\n")
	return b.Bytes()
}

func writeAllow(b *bytes.Buffer, what string, rs []Rule) {
	fmt.Fprintf(b, "          %s: { allow: [\n", what)
	why := ""
	for _, r := range rs {
		if r.Why != why {
			fmt.Fprintf(b, "            # %s\n", r.Why)
			why = r.Why
		}
		fmt.Fprintf(b, "            %q\n", r.Subject)
	}
	b.WriteString("          ] }\n")
}

// Generate loads the declarations in fsys (deploy.NATS()) and renders
// their auth config.
func Generate(fsys fs.FS) ([]byte, error) {
	d, err := natsprovision.Load(fsys)
	if err != nil {
		return nil, fmt.Errorf("natsauth: %w", err)
	}
	users, err := Users(d)
	if err != nil {
		return nil, err
	}
	return Render(users), nil
}
