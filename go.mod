module github.com/spotflow-go/spotflowhttp

go 1.25.0

require (
	github.com/cenkalti/backoff/v4 v4.3.0
	github.com/jarcoal/httpmock v1.4.2
	github.com/standard-webhooks/standard-webhooks/libraries v0.0.1
	go.etcd.io/bbolt v1.4.3
	go.uber.org/goleak v1.3.0
	golang.org/x/time v0.15.0
)

require golang.org/x/sys v0.29.0 // indirect
