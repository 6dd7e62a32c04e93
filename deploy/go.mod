module github.com/sluicehq/sluice/deploy

go 1.27.3
