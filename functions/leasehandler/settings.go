package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/config"
	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
	"github.com/cosmoslease/cosmoslease/internal/runs"
	"github.com/cosmoslease/cosmoslease/internal/store/cosmosstore"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// App settings the handler reads, beside the CosmosLeasing__* names the CLI reads too.
const (
	// settingSchedule is required: LeaseTimer's function.json binds %LeaseTimerSchedule%, and the host does not
	// load a function whose %setting% does not resolve. The handler reads the same value to know the gaps.
	settingSchedule = "LeaseTimerSchedule"
	settingLeaseKey = "LeaseTimerLeaseKey"
	// settingRetention is how long run records are kept (TimeSpan or Go duration; default 30 days).
	settingRetention = "LeaseTimerRunRetention"
	settingRegion    = "LeaseTimerRegion" // overrides REGION_NAME, which the platform sets
)

// settings is the handler's configuration, checked once at start; a problem is reported on every invocation.
type settings struct {
	opts  cosmoslease.Options
	key   string
	sched *schedule
	// retention is how long run records are kept after their last write (their ttl).
	retention time.Duration
	// instance names this process (opts.OwnerID names the region's app, whichever process runs it).
	instance string
	// budget splits the host's functionTimeout between the work and finishing in time.
	budget budget
}

// loadSettings reads the app settings (environment variables). Durations in CosmosLeasing__DefaultLeaseDuration
// use TimeSpan text, as in the CLI's files.
func loadSettings(getenv func(string) string) (*settings, error) {
	raw := config.FromEnv(getenv)
	var err error
	s := &settings{key: orDefault(getenv(settingLeaseKey), runs.DefaultLeaseKey), retention: runs.DefaultRetention}
	if _, err := leasedoc.ID(s.key); err != nil {
		return nil, fmt.Errorf("%s: %v", settingLeaseKey, err)
	}
	expr := getenv(settingSchedule)
	if strings.TrimSpace(expr) == "" {
		return nil, fmt.Errorf("the app setting %s is not set: the host does not load LeaseTimer without it (its function.json binds %%%s%%); set it to an NCRONTAB expression such as 0 */5 * * * *", settingSchedule, settingSchedule)
	}
	if s.sched, err = parseSchedule(expr); err != nil {
		return nil, err
	}
	longest := s.sched.longest

	cs, _ := raw.Get(config.KeyConnectionString)
	ep, _ := raw.Get(config.KeyAccountEndpoint)
	switch {
	case cs != "":
		if _, _, err := cosmosstore.ParseConnectionString(cs); err != nil {
			return nil, fmt.Errorf("CosmosLeasing__ConnectionString: %v", err)
		}
		s.opts.ConnectionString = cs
	case ep != "":
		if ph := config.Placeholder(ep); ph != "" {
			return nil, fmt.Errorf("CosmosLeasing__AccountEndpoint is still the placeholder %s: set it to the account endpoint", ph)
		}
		if err := cosmosstore.CheckEndpoint(ep); err != nil {
			return nil, fmt.Errorf("CosmosLeasing__AccountEndpoint: %v", err)
		}
		s.opts.Endpoint = ep // DefaultAzureCredential: the app's managed identity (AZURE_CLIENT_ID for a user-assigned one)
	default:
		return nil, fmt.Errorf("no Cosmos DB account configured: set the app setting CosmosLeasing__AccountEndpoint (managed identity) or CosmosLeasing__ConnectionString")
	}
	s.opts.Database, _ = raw.Get(config.KeyDatabaseName)
	s.opts.Container, _ = raw.Get(config.KeyContainerName)
	s.opts.PartitionKeyPath, _ = raw.Get(config.KeyPartitionKeyPath)
	if err := runs.CheckPartitionKeyPath(orDefault(s.opts.PartitionKeyPath, cosmoslease.DefaultPartitionKeyPath)); err != nil {
		return nil, fmt.Errorf("CosmosLeasing__PartitionKeyPath: %v", err)
	}
	timeout, err := readFunctionTimeout(getenv, hostDirs())
	if err != nil {
		return nil, err
	}
	s.budget = newBudget(timeout)
	if v := getenv(settingRetention); v != "" {
		if s.retention, err = config.ParseDuration(v); err != nil || s.retention < time.Second || s.retention > runs.MaxRetention {
			return nil, fmt.Errorf("%s %q is not a duration from 1 s to 68 years, such as 30.00:00:00 (30 days, the default)", settingRetention, v)
		}
	}

	// The lease must outlive the longest gap between ticks, so the active region keeps it from one tick to
	// the next; by default it lasts three gaps, so a region that stops firing is replaced after about three.
	d := 3 * longest
	if v, _ := raw.Get(config.KeyDefaultLeaseDuration); v != "" {
		if d, err = config.ParseDuration(v); err != nil {
			return nil, fmt.Errorf("CosmosLeasing__DefaultLeaseDuration: %v", err)
		}
	}
	// Between ticks nothing renews, so the holder's validity (RenewDeadline, 5/6 of the lease) must cover the
	// longest gap with a tenth to spare for late ticks.
	deadline := d - max(time.Second, d/6)
	if need := longest + longest/10; deadline < need {
		return nil, fmt.Errorf("CosmosLeasing__DefaultLeaseDuration (%s) is too short for the schedule %q, whose ticks can be %s apart: the active region would lose the lease between ticks; use at least %s, or leave it unset (three gaps, %s)",
			config.FormatTimeSpan(d), s.sched.expr, longest, config.FormatTimeSpan((need*6+4)/5), config.FormatTimeSpan(3*longest))
	}
	s.opts.LeaseDuration, s.opts.RenewDeadline, s.opts.RenewInterval = d, deadline, d/3
	s.opts.RetryPeriod = min(d/12, 5*time.Second)
	s.opts.ManualRenew = true // renewed by ticks, and while work runs; a region that stops firing loses it

	// The lease's owner is the region's app, the same for every process it ever starts; the process is only its
	// instance. The host kills its handler (SIGKILL, no SIGTERM) on timeouts and restarts, so a process never
	// gets to release; its successor in the same region takes the lease over at once, at the next epoch, instead
	// of leaving every region idle until it expires. That is safe because the timer fires each occurrence on one
	// instance of the app, every occurrence is claimed at most once, and the epoch fences the work.
	region := strings.TrimSpace(orDefault(getenv(settingRegion), getenv("REGION_NAME")))
	if region == "" {
		return nil, fmt.Errorf("the region is unknown: Azure sets REGION_NAME; elsewhere (func start) set the app setting %s, such as eastus", settingRegion)
	}
	site := orDefault(getenv("WEBSITE_SITE_NAME"), hostname())
	s.opts.Region = region
	s.opts.OwnerID = site + "@" + strings.ToLower(strings.ReplaceAll(region, " ", ""))
	s.opts.TakeOverSameOwner = true
	s.instance = instanceID(getenv)
	s.opts.Hostname = s.instance
	return s, nil
}

// instanceID names this process's instance of the app as the host does on Linux Consumption and Flex
// (WEBSITE_POD_NAME, then CONTAINER_NAME), then as App Service does (WEBSITE_INSTANCE_ID), then by hostname,
// which containers can share.
func instanceID(getenv func(string) string) string {
	for _, k := range []string{"WEBSITE_POD_NAME", "CONTAINER_NAME", "WEBSITE_INSTANCE_ID"} {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			return v
		}
	}
	return hostname()
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "unknown-host"
	}
	return h
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
