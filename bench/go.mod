module github.com/spotflow-go/spotflowhttp/bench

go 1.25.0

replace github.com/spotflow-go/spotflowhttp => ../

require (
	github.com/cenkalti/backoff/v4 v4.3.0
	github.com/failsafe-go/failsafe-go v0.9.8
	github.com/go-redis/redis_rate/v10 v10.0.1
	github.com/hashicorp/go-retryablehttp v0.7.8
	github.com/redis/go-redis/v9 v9.22.0
	github.com/spotflow-go/spotflowhttp v0.0.0-20261207032907-5bbada89ea1c
	github.com/spotflow-go/spotflowhttp/redislimit v0.0.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	go.uber.org/atomic v1.11.0 // indirect
	golang.org/x/sys v0.30.0 // indirect
)

require (
	github.com/bits-and-blooms/bitset v1.24.4 // indirect
	github.com/hashicorp/go-cleanhttp v0.5.2 // indirect
	github.com/influxdata/tdigest v0.0.1 // indirect
	github.com/jarcoal/httpmock v1.4.2 // indirect
	github.com/standard-webhooks/standard-webhooks/libraries v0.0.1 // indirect
	golang.org/x/time v0.15.0 // indirect
)

replace github.com/spotflow-go/spotflowhttp/redislimit => ../redislimit
