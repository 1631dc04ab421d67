package cosmoslease_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"strconv"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// The examples run against the local Cosmos-protocol server that the tests start (or the endpoint they are
// pointed at), each in a container of its own. In your code, Options names your account instead:
//
//	cosmoslease.Options{Endpoint: "https://myaccount.documents.azure.com:443/", OwnerID: "us-east-1", Region: "us-east"}

var (
	mu         sync.Mutex
	containers = map[string]string{}
)

// options are the example's connection: the test server and a container made for the example.
func options(example, owner, region string) cosmoslease.Options {
	srv, err := cosmostest.Shared()
	if err != nil {
		log.Fatal(err)
	}
	mu.Lock()
	name := containers[example]
	if name == "" {
		name = "example-" + example + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		if err := srv.CreateContainer(name, cosmoslease.DefaultPartitionKeyPath); err != nil {
			log.Fatal(err)
		}
		containers[example] = name
	}
	mu.Unlock()
	return cosmoslease.Options{ConnectionString: srv.ConnectionString, Endpoint: srv.Endpoint, Database: srv.Database,
		Container: name, OwnerID: owner, Region: region,
		// Short timings, so the example finishes quickly; the defaults are a 60 s lease renewed every 40 s.
		LeaseDuration: 6 * time.Second}
}

func open(opts cosmoslease.Options) *cosmoslease.Client {
	c, err := cosmoslease.Open(context.Background(), opts)
	if err != nil {
		log.Fatal(err)
	}
	return c
}

// One attempt: the first instance gets the lease; the second learns who holds it.
func ExampleClient_TryAcquire() {
	ctx := context.Background()
	east := open(options("tryacquire", "us-east-1", "us-east"))
	defer east.Close()
	west := open(options("tryacquire", "eu-west-1", "eu-west"))
	defer west.Close()

	lease, err := east.TryAcquire(ctx, "nightly-report")
	if err != nil {
		log.Fatal(err)
	}
	defer lease.Release(context.Background())
	fmt.Println("us-east-1 holds it at epoch", lease.Epoch())

	_, err = west.TryAcquire(ctx, "nightly-report")
	var held *cosmoslease.HeldError
	if errors.As(err, &held) {
		fmt.Printf("eu-west-1: held by %s (region %s) at epoch %d\n", held.Holder.Owner, held.Holder.Region, held.Holder.Epoch)
	}
	// Output:
	// us-east-1 holds it at epoch 1
	// eu-west-1: held by us-east-1 (region us-east) at epoch 1
}

// Work under the lease's context: it ends when the lease is lost (or released), and context.Cause says why.
func ExampleClient_Acquire() {
	c := open(options("acquire", "us-east-1", "us-east"))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lease, err := c.Acquire(ctx, "reconciler") // stands by until this instance holds it
	if err != nil {
		log.Fatal(err)
	}
	stopped := make(chan error)
	go func() {
		<-lease.Context().Done() // the lost-lease signal
		stopped <- context.Cause(lease.Context())
	}()
	fmt.Println("working at epoch", lease.Epoch())
	if err := lease.Release(context.Background()); err != nil {
		log.Fatal(err)
	}
	err = <-stopped
	fmt.Println("work stopped:", err, "| lost:", errors.Is(err, cosmoslease.ErrLeaseLost))
	// Output:
	// working at epoch 1
	// work stopped: lease released | lost: false
}

// A superseded holder's write is refused by Cosmos DB itself: the fence stores the epoch in the item and writes
// only while no later epoch has.
func ExampleLease_Fence() {
	ctx := context.Background()
	east := open(options("fence", "us-east-1", "us-east"))
	defer east.Close()
	west := open(options("fence", "eu-west-1", "eu-west"))
	defer west.Close()
	pk := azcosmos.NewPartitionKeyString("totals")
	add := func(n float64) func([]byte) ([]byte, error) {
		return func(cur []byte) ([]byte, error) {
			item := map[string]any{"id": "daily-total", "leaseKey": "totals", "total": 0.0}
			if cur != nil {
				if err := json.Unmarshal(cur, &item); err != nil {
					return nil, err
				}
			}
			item["total"] = item["total"].(float64) + n
			return json.Marshal(item)
		}
	}

	first, err := east.TryAcquire(ctx, "totals")
	if err != nil {
		log.Fatal(err)
	}
	old := first.Fence(east.Container()) // kept by a holder that is about to be superseded
	if _, err := old.UpdateItem(ctx, pk, "daily-total", add(10)); err != nil {
		log.Fatal(err)
	}
	_ = first.Release(ctx) // or paused past its lease: either way another instance takes over

	second, err := west.TryAcquire(ctx, "totals")
	if err != nil {
		log.Fatal(err)
	}
	defer second.Release(context.Background())
	if _, err := second.Fence(west.Container()).UpdateItem(ctx, pk, "daily-total", add(5)); err != nil {
		log.Fatal(err)
	}

	_, err = old.UpdateItem(ctx, pk, "daily-total", add(10)) // the superseded holder writes late
	var fenced *cosmoslease.FencedError
	if errors.As(err, &fenced) {
		fmt.Println(err)
	}
	// Output:
	// fenced off: item "daily-total" was written at epoch 2, after this holder's epoch 1
}

// Scheduled work that fires in every region and runs in one: each region calls RunOnce for the same occurrence,
// with its rank in the preference order. The preferred region runs it; the others skip it as soon as they see it
// claimed, long before their own turn would come.
func ExampleClient_RunOnce() {
	occurrence := time.Now().UTC().Truncate(time.Second) // the schedule's occurrence now firing
	regions := []string{"eastus", "westeurope", "southeastasia"}
	results := make([]cosmoslease.RunResult, len(regions))
	var wg sync.WaitGroup
	for rank, region := range regions {
		c := open(options("runonce", region+"-app", region))
		defer c.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			results[rank], err = c.RunOnce(context.Background(), "nightly-report", occurrence,
				cosmoslease.RunOptions{Rank: rank, FailoverDelay: 10 * time.Second},
				func(ctx context.Context, run cosmoslease.Run) error {
					// The work: ctx ends if the lease is lost; fence downstream writes with run.Epoch
					// (run.Fence for Cosmos DB items).
					return nil
				})
			if err != nil {
				log.Fatal(err)
			}
		}()
	}
	wg.Wait()
	for rank, res := range results {
		fmt.Printf("%s: %s", regions[rank], res.Status)
		if res.Status == cosmoslease.RunSkipped {
			fmt.Printf(" (claimed by %s)", res.Record.Owner)
		}
		fmt.Println()
	}
	// Output:
	// eastus: executed
	// westeurope: skipped (claimed by eastus-app)
	// southeastasia: skipped (claimed by eastus-app)
}
