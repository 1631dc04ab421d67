package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/cosmoslease/cosmoslease/internal/az"
	"github.com/cosmoslease/cosmoslease/internal/ncrontab"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// What setup provisions for the lease, and what it costs. The lease needs little: measured through the local
// server (docs/operating.md, "Requests and request units"), a scheduled occurrence in three regions costs a few
// dozen RU and a held lease a replace every RenewInterval, under 1 RU/s on average. Cosmos DB bills provisioned
// throughput per region and hour whatever is used, so the template provisions the least Azure allows.

// defaultSchedule is main.bicep's default leaseTimerSchedule (a test keeps them equal).
const defaultSchedule = "0 */1 * * * *"

// minAutoscaleMax is the lowest autoscale maximum Azure accepts: it scales between 100 and 1,000 RU/s ("Frequently
// asked questions about autoscale provisioned throughput in Azure Cosmos DB": "you can set autoscale with a maximum
// RU/s as low as 1,000 RU/s (scales between 100 RU/s and 1,000 RU/s)"). minManualThroughput is the least manual
// throughput of a container.
const (
	minAutoscaleMax     = 1000
	minManualThroughput = 400
)

// listPrices are the pay-as-you-go list prices of setup's estimate, in US dollars for East US, written down on
// pricesDate. Prices differ by region, currency and agreement and change over time; the estimate says so.
var listPrices = struct {
	// Cosmos DB, from Microsoft's "Understand your Azure Cosmos DB bill" (learn.microsoft.com azure/cosmos-db/
	// understand-your-bill, its examples use the US list prices): provisioned throughput in a single-write-region
	// account $0.008 per 100 RU/s per hour, billed in every region of the account; storage $0.25 per GB-month per
	// region. Autoscale bills the highest RU/s it reached in the hour, at least 10 % of the maximum, at 1.5 times
	// the manual rate ("Frequently asked questions about autoscale provisioned throughput": "In single write
	// region accounts, the autoscale rate per 100 RU/s is 1.5x the standard (manual) provisioned throughput
	// rate"). The free tier takes the first 1,000 RU/s and 25 GB of the account, across its regions, off the bill
	// ("Azure Cosmos DB lifetime free tier"; understand-your-bill, "Billing examples with free tier accounts").
	// Serverless: $0.25 per million RU (understand-your-bill, "Billing example - serverless container").
	CosmosManualPer100RUHour float64
	CosmosAutoscaleFactor    float64
	CosmosStoragePerGBMonth  float64
	CosmosServerlessPerMRU   float64
	CosmosFreeRUs            float64
	CosmosFreeGB             float64

	// Flex Consumption on demand, East US, as the Azure Functions pricing page gave them (azure.microsoft.com
	// pricing/details/functions renders its prices in the browser, so they were taken from a third-party guide that
	// quoted the page on 2025-05-22): execution time $0.000026 per GB-s and $0.40 per million executions, less a monthly grant of
	// 100,000 GB-s and 250,000 executions per subscription. Billed: the instance's memory while it executes
	// ("Estimating consumption-based costs", Flex Consumption: "The total amount of memory provisioned while each on
	// demand instance is actively executing functions").
	FlexOnDemandPerGBs            float64
	FlexExecutionsPerMillion      float64
	FlexFreeGBs                   float64
	FlexFreeExecutions            float64
	FlexAlwaysReadyBaselinePerGBs float64
	FlexAlwaysReadyPerGBs         float64

	// Blob storage, hot LRS, per GB-month: the apps' packages and the host's small blobs.
	BlobHotLRSPerGBMonth float64
}{
	CosmosManualPer100RUHour: 0.008,
	CosmosAutoscaleFactor:    1.5,
	CosmosStoragePerGBMonth:  0.25,
	CosmosServerlessPerMRU:   0.25,
	CosmosFreeRUs:            1000,
	CosmosFreeGB:             25,

	FlexOnDemandPerGBs:       0.000026,
	FlexExecutionsPerMillion: 0.40,
	FlexFreeGBs:              100_000,
	FlexFreeExecutions:       250_000,
	// Not verified against Microsoft's page here: the always-ready baseline and execution rates and the blob rate
	// are the East US list prices as last seen; `setup` marks the lines that use them.
	FlexAlwaysReadyBaselinePerGBs: 0.000004,
	FlexAlwaysReadyPerGBs:         0.000016,
	BlobHotLRSPerGBMonth:          0.018,
}

// pricesDate is when listPrices were written down.
const pricesDate = "2026-12-07"

const (
	hoursPerMonth = 730
	// instanceGB is the memory of the template's Flex Consumption instances (instanceMemoryMB: 512).
	instanceGB = 0.5
	// billedSecondsPerInvocation is what the estimate counts for an invocation that only takes part in the
	// election (a standby that sees the occurrence claimed, or the preferred region's claim and records around
	// work that returns at once): about a second, watching with one point read a second.
	billedSecondsPerInvocation = 1.0
	// packageGB is about the size of one app's deployment package and host blobs.
	packageGB = 0.02
)

// checkThroughput settles the lease container's throughput from --throughput and --autoscale-max.
func checkThroughput(c *ucli.Context, p *plan) error {
	switch {
	case p.serverless && (c.IsSet("throughput") || c.IsSet("autoscale-max")):
		return usagef("a serverless account has no provisioned throughput: drop --serverless, or --throughput and --autoscale-max")
	case p.serverless && c.IsSet("free-tier") && c.Bool("free-tier"):
		return usagef("the Cosmos DB free tier is not available for serverless accounts: drop --serverless, or --free-tier")
	case c.IsSet("throughput") && c.IsSet("autoscale-max"):
		return usagef("--throughput %d and --autoscale-max %d: the container has either manual or autoscale throughput; drop one of them", p.throughput, p.autoscaleMax)
	case c.IsSet("throughput") && (p.throughput < minManualThroughput || p.throughput%100 != 0):
		return usagef("--throughput %d: give 400 RU/s or more, in steps of 100 (or leave it out for autoscale, billed from 100 RU/s)", p.throughput)
	case c.IsSet("autoscale-max") && (p.autoscaleMax < minAutoscaleMax || p.autoscaleMax%1000 != 0):
		return usagef("--autoscale-max %d: give 1000 RU/s or more, in steps of 1000", p.autoscaleMax)
	}
	if p.throughput == 0 && p.autoscaleMax == 0 {
		p.autoscaleMax = minAutoscaleMax
	}
	return nil
}

// chooseFreeTier settles the free tier: --free-tier as given, else on when no Cosmos DB account of the
// subscription has it already (az cosmosdb list), for it can be set only when an account is created and only one
// account per subscription may have it.
func (a *App) chooseFreeTier(ctx context.Context, c *ucli.Context, p *plan) error {
	if p.serverless {
		return nil
	}
	if c.IsSet("free-tier") && !c.Bool("free-tier") {
		return nil
	}
	out, err := a.Az.Run(ctx, "cosmosdb", "list", "--subscription", p.subscription, "--output", "json")
	var accounts []struct {
		Name           string `json:"name"`
		ID             string `json:"id"`
		EnableFreeTier bool   `json:"enableFreeTier"`
	}
	if err == nil {
		err = json.Unmarshal(out, &accounts)
	}
	if errors.Is(err, az.ErrNotLoggedIn) {
		return err
	}
	if err != nil {
		if c.IsSet("free-tier") {
			fmt.Fprintf(a.Stderr, "note: could not list the subscription's Cosmos DB accounts (%v); if one already has the free tier, Azure will refuse the deployment.\n", err)
			p.freeTier = true
		} else {
			fmt.Fprintf(a.Stderr, "note: could not tell whether an account of the subscription has the Cosmos DB free tier (%v), so it is not applied; --free-tier applies it.\n", err)
		}
		return nil
	}
	for _, acc := range accounts {
		if acc.EnableFreeTier {
			if c.IsSet("free-tier") {
				return usagef("--free-tier: Cosmos DB account %s already has the subscription's free tier (one account per subscription may): drop --free-tier", acc.Name)
			}
			fmt.Fprintf(a.Stderr, "note: Cosmos DB account %s has the subscription's free tier, so this account is billed in full.\n", acc.Name)
			return nil
		}
	}
	p.freeTier = true
	return nil
}

// costLine is one line of the estimate.
type costLine struct {
	what, detail string
	usd          float64
}

// estimate is the monthly cost of what setup will create, at listPrices. The Function Apps' execution is given
// for all regions healthy and, separately, for the preferred region down all month.
type estimate struct {
	lines               []costLine
	failedOverUSD       float64
	failedOverDetail    string
	occurrencesPerMonth float64
	unverified          bool
}

func (e estimate) total() float64 {
	var t float64
	for _, l := range e.lines {
		t += l.usd
	}
	return t
}

// occurrencesPerMonth counts the occurrences of schedule in a month of hoursPerMonth, the month Azure's hourly
// prices are multiplied by (extrapolated past 100,000).
func occurrencesPerMonth(s *ncrontab.Schedule) float64 {
	const limit = 100_000
	start := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC) // a Monday
	end := start.Add(hoursPerMonth * time.Hour)
	n, t := 0, start.Add(-time.Nanosecond) // Next is strictly after: count an occurrence at start
	for n < limit {
		t = s.Next(t)
		if t.IsZero() || !t.Before(end) {
			return float64(n)
		}
		n++
	}
	return float64(n) * float64(end.Sub(start)) / float64(t.Sub(start))
}

// estimateCost prices the plan.
func estimateCost(p *plan) (estimate, error) {
	var e estimate
	pr := listPrices
	cosmosRegions := float64(len(p.allRegions()) + len(p.witness))
	schedule, err := ncrontab.Parse(p.schedule)
	if err != nil {
		return e, err
	}
	e.occurrencesPerMonth = occurrencesPerMonth(schedule)

	// Cosmos DB throughput.
	switch {
	case p.serverless:
		// A few dozen RU per occurrence in one region (docs/operating.md); 50 is a generous round figure.
		ru := e.occurrencesPerMonth * 50
		e.lines = append(e.lines, costLine{"Cosmos DB", fmt.Sprintf("serverless: about %s RU a month for %s occurrences (50 RU each, generously)", thousands(int(ru)), thousands(int(e.occurrencesPerMonth))),
			ru / 1e6 * pr.CosmosServerlessPerMRU})
	default:
		var perRegion, rate float64
		var detail string
		if p.throughput > 0 {
			perRegion, rate = float64(p.throughput), pr.CosmosManualPer100RUHour
			detail = fmt.Sprintf("%s RU/s manual × %d regions", thousands(p.throughput), int(cosmosRegions))
		} else {
			perRegion, rate = float64(p.autoscaleMax)/10, pr.CosmosManualPer100RUHour*pr.CosmosAutoscaleFactor
			detail = fmt.Sprintf("autoscale up to %s RU/s, billed from %s RU/s × %d regions", thousands(p.autoscaleMax), thousands(int(perRegion)), int(cosmosRegions))
		}
		billed := perRegion * cosmosRegions
		if p.freeTier {
			detail += fmt.Sprintf(", less the free tier's %s RU/s", thousands(int(pr.CosmosFreeRUs)))
			billed = max(0, billed-pr.CosmosFreeRUs)
		}
		e.lines = append(e.lines, costLine{"Cosmos DB", detail, billed / 100 * rate * hoursPerMonth})
	}
	// Cosmos DB storage: leases and run records, well under a GB, in every region.
	storage := 0.01 * cosmosRegions
	if p.freeTier {
		storage = max(0, storage-pr.CosmosFreeGB)
	}
	e.lines = append(e.lines, costLine{"Cosmos DB storage", fmt.Sprintf("under 0.01 GB × %d regions", int(cosmosRegions)), storage * pr.CosmosStoragePerGBMonth})

	if !p.functions {
		return e, nil
	}
	n := float64(len(p.allRegions()))
	delay := cosmoslease.DefaultFailoverDelay.Seconds()
	// The handler's own timer LeaseTrigger (manual runs, cosmoslease trigger) ticks every minute in every region.
	triggerTicks := hoursPerMonth * 60.0
	executions := (e.occurrencesPerMonth + triggerTicks) * n
	healthyGBs := executions * billedSecondsPerInvocation * instanceGB
	// With the preferred region down, the next region claims after one delay and the others watch until it has.
	failedGBs := e.occurrencesPerMonth*instanceGB*(n-1)*(delay+billedSecondsPerInvocation) + triggerTicks*(n-1)*billedSecondsPerInvocation*instanceGB
	execCost := func(gbs, execs float64) float64 {
		if p.alwaysReady > 0 {
			// Executions on always-ready instances: no free grant.
			return gbs*pr.FlexAlwaysReadyPerGBs + execs/1e6*pr.FlexExecutionsPerMillion
		}
		return max(0, gbs-pr.FlexFreeGBs)*pr.FlexOnDemandPerGBs + max(0, execs-pr.FlexFreeExecutions)/1e6*pr.FlexExecutionsPerMillion
	}
	grant := fmt.Sprintf(", less the monthly grant of %s GB-s and %s executions per subscription", thousands(int(pr.FlexFreeGBs)), thousands(int(pr.FlexFreeExecutions)))
	if p.alwaysReady > 0 {
		grant = " at the always-ready rate (no free grant)"
		e.unverified = true
	}
	e.lines = append(e.lines, costLine{"Function Apps", fmt.Sprintf("%s occurrences of %q and %s LeaseTrigger ticks × %d regions: %s executions, about %s GB-s with every region healthy (the election only; your work's own time comes on top)%s",
		thousands(int(e.occurrencesPerMonth)), p.schedule, thousands(int(triggerTicks)), int(n), thousands(int(executions)), thousands(int(healthyGBs)), grant), execCost(healthyGBs, executions)})
	e.failedOverUSD = execCost(failedGBs, executions)
	e.failedOverDetail = fmt.Sprintf("about %s GB-s: the next region starts %s late and the others watch until it has claimed", thousands(int(failedGBs)), cosmoslease.DefaultFailoverDelay)
	if p.alwaysReady > 0 {
		baseline := float64(p.alwaysReady) * n * instanceGB * hoursPerMonth * 3600
		e.lines = append(e.lines, costLine{"Always ready", fmt.Sprintf("%d instance(s) of %g GB × %d regions, billed every second: %s GB-s", p.alwaysReady, instanceGB, int(n), thousands(int(baseline))),
			baseline * pr.FlexAlwaysReadyBaselinePerGBs})
	}
	e.unverified = true // the blob rate below
	e.lines = append(e.lines, costLine{"Storage accounts", fmt.Sprintf("%d, about %g GB each (their transactions not counted)", int(n), packageGB), n * packageGB * pr.BlobHotLRSPerGBMonth})
	return e, nil
}

// printEstimate writes the estimate, before setup asks for confirmation.
func printEstimate(w io.Writer, e estimate, p *plan) {
	fmt.Fprintf(w, "Estimated monthly cost at list prices (US dollars, East US, pay-as-you-go, as of %s; your region, currency and agreement may differ; docs/operating.md):\n", pricesDate)
	for _, l := range e.lines {
		fmt.Fprintf(w, "  %-17s %9s  %s\n", l.what, usd(l.usd), l.detail)
	}
	fmt.Fprintf(w, "  %-17s %9s  a month with every region healthy", "total", usd(e.total()))
	if p.functions {
		fmt.Fprintf(w, "; Function Apps %s a month with the preferred region down all month (%s)", usd(e.failedOverUSD), e.failedOverDetail)
	}
	fmt.Fprintln(w, ".")
	fmt.Fprintln(w, "  Not counted: Application Insights and Log Analytics ingestion (the first 5 GB a month are free per billing account), bandwidth between regions.")
	if e.unverified {
		fmt.Fprintln(w, "  The always-ready and blob storage rates were not checked against Microsoft's pricing page when written down.")
	}
}

func usd(v float64) string {
	if v > 0 && v < 0.005 {
		return "< $0.01"
	}
	s := fmt.Sprintf("$%.2f", v)
	if v >= 1000 {
		whole := strings.Split(s[1:], ".")
		s = "$" + thousands(atoiSafe(whole[0])) + "." + whole[1]
	}
	return s
}

func atoiSafe(s string) int {
	n := 0
	for _, r := range s {
		n = n*10 + int(r-'0')
	}
	return n
}
