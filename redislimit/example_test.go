package redislimit_test

import (
	"crypto/sha256"
	"encoding/hex"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/redislimit"
)

// Every process using the same key shares Spotflow's live-key limit of 300
// requests a minute. The name is a hash of the key, never the key itself.
func Example() {
	key := os.Getenv("SPOTFLOW_API_KEY")
	sum := sha256.Sum256([]byte(key))
	name := hex.EncodeToString(sum[:8])

	rdb := redis.NewClient(&redis.Options{
		Addr:                  "localhost:6379",
		ContextTimeoutEnabled: true, // so that a stuck Redis costs only the limiter's timeout
	})
	defer rdb.Close()
	l, err := redislimit.New(rdb, name, redis_rate.Limit{Rate: 300, Period: time.Minute, Burst: 30})
	if err != nil {
		log.Fatal(err) // an empty name, say; New does not dial Redis
	}

	client := &http.Client{Transport: spotflowhttp.NewTransport(nil, spotflowhttp.WithLimiter(l))}
	_ = client // use it for every call to Spotflow
}
