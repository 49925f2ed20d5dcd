module github.com/spotflow-go/spotflowhttp

go 1.25.0

require (
	github.com/cenkalti/backoff/v4 v4.3.0
	github.com/jarcoal/httpmock v1.4.2
	github.com/standard-webhooks/standard-webhooks/libraries v0.0.1
	go.uber.org/goleak v1.3.0
	golang.org/x/time v0.15.0
)
