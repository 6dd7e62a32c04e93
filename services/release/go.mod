module github.com/sluicehq/sluice/services/release

go 1.26.8

require (
	github.com/sluicehq/sluice/platform v0.0.0
	github.com/sluicehq/sluice/proto v0.0.0
)

replace (
	github.com/sluicehq/sluice/platform => ../../platform
	github.com/sluicehq/sluice/proto => ../../proto
)
