module github.com/sluicehq/sluice/e2e

go 1.26.8

require (
	github.com/sluicehq/sluice/platform v0.0.0
	github.com/sluicehq/sluice/proto v0.0.0
	github.com/sluicehq/sluice/services/source v0.0.0
	github.com/sluicehq/sluice/services/build v0.0.0
	github.com/sluicehq/sluice/services/test v0.0.0
	github.com/sluicehq/sluice/services/release v0.0.0
	github.com/sluicehq/sluice/services/notify v0.0.0
)

replace (
	github.com/sluicehq/sluice/platform => ../platform
	github.com/sluicehq/sluice/proto => ../proto
	github.com/sluicehq/sluice/services/source => ../services/source
	github.com/sluicehq/sluice/services/build => ../services/build
	github.com/sluicehq/sluice/services/test => ../services/test
	github.com/sluicehq/sluice/services/release => ../services/release
	github.com/sluicehq/sluice/services/notify => ../services/notify
)
