// Package deploy carries Sluice's infrastructure declarations that the
// binaries apply themselves: the NATS JetStream streams, consumers and object
// stores under nats/. The files are the source of truth; the binaries embed
// them so that a service image needs nothing beside its binary.
package deploy

import (
	"embed"
	"io/fs"
)

//go:embed nats
var natsFiles embed.FS

// NATS returns the declarations under deploy/nats, rooted at that folder:
// streams/<STREAM>.json, consumers/<service>/<durable>.json and
// objectstores/<name>.json, and auth.conf, the NATS users and permissions
// generated from them (platform/natsauth).
func NATS() fs.FS {
	sub, err := fs.Sub(natsFiles, "nats")
	if err != nil {
		// fs.Sub fails only for an invalid path, and "nats" is valid.
		panic(err)
	}
	return sub
}
