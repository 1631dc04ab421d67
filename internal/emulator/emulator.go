// Package emulator holds the conventions of the Azure Cosmos DB emulator — its well-known endpoint and key —
// and the provisioning that only emulator mode may do: creating a missing database and container, defined as
// infra/main.bicep defines it in Azure.
package emulator

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/infra"
)

// DefaultEndpoint is where the official emulator listens.
const DefaultEndpoint = "https://localhost:8081/"

// Key is the emulator's published, well-known account key. It is not a secret.
const Key = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="

// ConnectionString for an emulator at endpoint.
func ConnectionString(endpoint string) string {
	return "AccountEndpoint=" + endpoint + ";AccountKey=" + Key + ";"
}

// IsLoopback reports whether the endpoint's host is this machine.
func IsLoopback(endpoint string) bool {
	u, err := url.Parse(endpoint)
	if err != nil {
		return false
	}
	if u.Hostname() == "localhost" {
		return true
	}
	ip := net.ParseIP(u.Hostname())
	return ip != nil && ip.IsLoopback()
}

// Transport talks to an emulator. The official emulator serves https with a self-signed certificate, so
// certificate checks are skipped — only for a loopback endpoint.
func Transport(endpoint string) policy.Transporter {
	if !IsLoopback(endpoint) {
		return &http.Client{}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // loopback emulator only
	return &http.Client{Transport: tr}
}

// LeaseContainer is the lease container's definition: infra/lease-container.json (default TTL −1, so only items
// with their own ttl expire; an indexing policy with only the paths the queries use), with the partition key path
// indexed as main.bicep indexes it.
func LeaseContainer(id, pkPath string) (azcosmos.ContainerProperties, error) {
	var def struct {
		DefaultTTL     int32                   `json:"defaultTtl"`
		IndexingPolicy azcosmos.IndexingPolicy `json:"indexingPolicy"`
	}
	if err := json.Unmarshal(infra.LeaseContainerJSON, &def); err != nil {
		return azcosmos.ContainerProperties{}, fmt.Errorf("infra/lease-container.json: %v", err)
	}
	def.IndexingPolicy.IncludedPaths = append(def.IndexingPolicy.IncludedPaths, azcosmos.IncludedPath{Path: pkPath + "/?"})
	return azcosmos.ContainerProperties{ID: id, PartitionKeyDefinition: azcosmos.PartitionKeyDefinition{Paths: []string{pkPath}},
		DefaultTimeToLive: &def.DefaultTTL, IndexingPolicy: &def.IndexingPolicy}, nil
}

// EnsureContainer creates the database and the container (LeaseContainer) when they are missing. An existing
// container is left as it is.
func EnsureContainer(ctx context.Context, endpoint, database, container, pkPath string) error {
	props, err := LeaseContainer(container, pkPath)
	if err != nil {
		return err
	}
	key, err := azcosmos.NewKeyCredential(Key)
	if err != nil {
		return err
	}
	client, err := azcosmos.NewClientWithKey(endpoint, key, &azcosmos.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: Transport(endpoint)}})
	if err != nil {
		return err
	}
	defer client.Close()
	if _, err := client.CreateDatabase(ctx, azcosmos.DatabaseProperties{ID: database}, nil); err != nil && !isConflict(err) {
		return fmt.Errorf("create database %s on the emulator at %s: %w", database, endpoint, err)
	}
	db, err := client.NewDatabase(database)
	if err != nil {
		return err
	}
	_, err = db.CreateContainer(ctx, props, nil)
	if err != nil && !isConflict(err) {
		return fmt.Errorf("create container %s on the emulator at %s: %w", container, endpoint, err)
	}
	return nil
}

func isConflict(err error) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusConflict
}
