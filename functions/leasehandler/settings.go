package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/config"
	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
	"github.com/cosmoslease/cosmoslease/internal/ncrontab"
	"github.com/cosmoslease/cosmoslease/internal/store/cosmosstore"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// App settings the handler reads, beside the CosmosLeasing__* names the CLI reads too.
const (
	// settingSchedule is required: LeaseTimer's function.json binds %LeaseTimerSchedule%, and the host does not
	// load a function whose %setting% does not resolve. The handler reads the same value to name occurrences.
	settingSchedule = "LeaseTimerSchedule"
	settingLeaseKey = "LeaseTimerLeaseKey"
	// settingRetention is how long run records are kept (TimeSpan or Go duration; default 30 days).
	settingRetention = "LeaseTimerRunRetention"
	settingRegion    = "LeaseTimerRegion" // overrides REGION_NAME, which the platform sets
	// settingPreferred lists Azure regions, most preferred first; default: the Cosmos DB account's order.
	settingPreferred = "LeaseTimerPreferredRegions"
	// settingFailoverDelay is how much later each rank of region contends for an occurrence (default 10 s).
	settingFailoverDelay = "LeaseTimerFailoverDelay"
	// settingRetryAbandoned runs an occurrence whose claimer died mid-work once more (at least once).
	settingRetryAbandoned = "LeaseTimerRetryAbandoned"
)

// defaultLeaseDuration is the lease's default here: it is held only while an occurrence's work runs, so it is
// short, and a region that dies mid-work frees it within that long.
const defaultLeaseDuration = 30 * time.Second

// settings is the handler's configuration, checked once at start; a problem is reported on every invocation.
type settings struct {
	opts  cosmoslease.Options
	key   string
	sched *ncrontab.Schedule
	// retention is how long run records are kept after their occurrence (their ttl is set so).
	retention time.Duration
	// instance names this process (opts.OwnerID names the region's app, whichever process runs it).
	instance string
	// budget splits the host's functionTimeout between the work and finishing in time.
	budget budget
	// preferred are the regions in order of preference, normalised (lower case, no spaces); empty means the
	// Cosmos DB account's order, read when the handler connects.
	preferred      []string
	delay          time.Duration
	retryAbandoned bool
}

// loadSettings reads the app settings (environment variables). Durations use TimeSpan text (00:00:30) or Go's
// (30s), as in the CLI's files.
func loadSettings(getenv func(string) string) (*settings, error) {
	raw := config.FromEnv(getenv)
	var err error
	s := &settings{key: orDefault(getenv(settingLeaseKey), config.TimerLeaseKey), retention: cosmoslease.DefaultRunRetention,
		delay: cosmoslease.DefaultFailoverDelay}
	if _, err := leasedoc.ID(s.key); err != nil {
		return nil, fmt.Errorf("%s: %v", settingLeaseKey, err)
	}
	expr := getenv(settingSchedule)
	if strings.TrimSpace(expr) == "" {
		return nil, fmt.Errorf("the app setting %s is not set: the host does not load LeaseTimer without it (its function.json binds %%%s%%); set it to an NCRONTAB expression such as 0 */5 * * * *", settingSchedule, settingSchedule)
	}
	if s.sched, err = ncrontab.Parse(expr); err != nil {
		return nil, fmt.Errorf("%s %v", settingSchedule, err)
	}

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
	if err := cosmoslease.CheckRunPartitionKeyPath(s.opts.PartitionKeyPath); err != nil {
		return nil, fmt.Errorf("CosmosLeasing__PartitionKeyPath: %v", err)
	}
	timeout, err := readFunctionTimeout(getenv, hostDirs())
	if err != nil {
		return nil, err
	}
	s.budget = newBudget(timeout)

	// Run records must outlive every late tick and past-due replay of their occurrence, or it could run twice.
	least := max(cosmoslease.MinRunRetention, 2*s.sched.Longest())
	if v := getenv(settingRetention); v != "" {
		if s.retention, err = config.ParseDuration(v); err != nil || s.retention > cosmoslease.MaxRunRetention {
			return nil, fmt.Errorf("%s %q is not a duration up to 68 years, such as 30.00:00:00 (30 days, the default)", settingRetention, v)
		}
		if s.retention < least {
			return nil, fmt.Errorf("%s (%s) is too short: a run record must outlive every late tick and past-due replay of its occurrence, so keep records at least a day and at least two of the schedule's longest gaps (%s); use at least %s",
				settingRetention, config.FormatTimeSpan(s.retention), config.FormatTimeSpan(s.sched.Longest()), config.FormatTimeSpan(least))
		}
	} else if s.retention < least {
		s.retention = least
	}

	// The lease is held only while an occurrence's work runs, renewed meanwhile, and released when it ends; so
	// it is short, whatever the schedule.
	d := defaultLeaseDuration
	if v, _ := raw.Get(config.KeyDefaultLeaseDuration); v != "" {
		if d, err = config.ParseDuration(v); err != nil {
			return nil, fmt.Errorf("CosmosLeasing__DefaultLeaseDuration: %v", err)
		}
	}
	if d < 6*time.Second || d > 10*time.Minute {
		return nil, fmt.Errorf("CosmosLeasing__DefaultLeaseDuration (%s) must be from 00:00:06 to 00:10:00: the lease is held while an occurrence's work runs and renewed meanwhile, and a region that dies mid-work holds it that long (default %s)",
			config.FormatTimeSpan(d), config.FormatTimeSpan(defaultLeaseDuration))
	}
	s.opts.LeaseDuration = d

	if v := getenv(settingFailoverDelay); v != "" {
		if s.delay, err = config.ParseDuration(v); err != nil || s.delay < time.Second || s.delay > time.Hour {
			return nil, fmt.Errorf("%s %q is not a duration from 00:00:01 to 01:00:00, such as 00:00:10 (the default)", settingFailoverDelay, v)
		}
	}
	if v := strings.TrimSpace(getenv(settingRetryAbandoned)); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("%s %q is not true or false", settingRetryAbandoned, v)
		}
		s.retryAbandoned = b
	}
	if s.preferred, err = cosmoslease.ParseRegions(getenv(settingPreferred)); err != nil {
		return nil, fmt.Errorf("%s: %v", settingPreferred, strings.TrimPrefix(err.Error(), cosmoslease.ErrInvalid.Error()+": "))
	}
	if b := s.budget; b.timeout > 0 && time.Duration(max(len(s.preferred), 1))*s.delay >= b.work/2 {
		return nil, fmt.Errorf("%s (%s) is too long for functionTimeout (%s): the last of %d regions would wait %s before contending; use a shorter delay",
			settingFailoverDelay, config.FormatTimeSpan(s.delay), config.FormatTimeSpan(b.timeout), max(len(s.preferred), 1),
			time.Duration(max(len(s.preferred), 1))*s.delay)
	}

	// The lease's owner is the region's app, the same for every process it ever starts; the process is only its
	// instance.
	region := strings.TrimSpace(orDefault(getenv(settingRegion), getenv("REGION_NAME")))
	if region == "" {
		return nil, fmt.Errorf("the region is unknown: Azure sets REGION_NAME; elsewhere (func start) set the app setting %s, such as eastus", settingRegion)
	}
	site := orDefault(getenv("WEBSITE_SITE_NAME"), hostname())
	s.opts.Region = region
	s.opts.OwnerID = site + "@" + cosmoslease.NormalizeRegion(region)
	s.instance = instanceID(getenv)
	s.opts.Hostname = s.instance
	return s, nil
}

// rank is this region's place in the preference order (the setting, or else the account's regions), and the
// number of ranks in use.
func (s *settings) rank(account []string) (rank, n int) {
	return cosmoslease.Rank(s.opts.Region, s.preferred, account)
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
